"""Process settings read from the environment (the tenant configuration is a separate YAML file).

=============================  ===========================================================  ==================
Variable                       Meaning                                                      Default
=============================  ===========================================================  ==================
``KAFKA_BOOTSTRAP_SERVERS``    ``host:port[,host:port]`` of the Kafka cluster. Unset: the    (embedded Tansu)
                               CLI starts an embedded, in-memory Tansu broker.
``BROKER_CONFIG``              Path of the tenant configuration YAML (``--config``).        (none)
``BROKER_APP_ID``              Faust app id = Kafka consumer group id.                      ``maintenance-billing-broker``
``BROKER_TOPIC_PARTITIONS``    Partitions of the topics the broker creates.                 ``4``
``BROKER_METRICS_HOST``        Address of the Prometheus ``/metrics`` endpoint.             ``127.0.0.1``
``BROKER_METRICS_PORT``        Port of the ``/metrics`` endpoint (0 = disabled).            ``9108``
``BROKER_DATA_DIR``            Faust data directory (table state).                          ``.broker-data``
``BROKER_LOG_LEVEL``           Python log level.                                            ``WARNING``
=============================  ===========================================================  ==================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TOPIC_EVENTS = "maintenance.events"
TOPIC_INVOICES = "billing.invoices"
TOPIC_DELIVERIES = "billing.deliveries"
TOPIC_DLQ = "billing.dlq"
ALL_TOPICS = (TOPIC_EVENTS, TOPIC_INVOICES, TOPIC_DELIVERIES, TOPIC_DLQ)


@dataclass(frozen=True)
class Settings:
    """Process settings; build with :meth:`from_env`."""

    bootstrap_servers: str | None = None
    config_path: str | None = None
    app_id: str = "maintenance-billing-broker"
    topic_partitions: int = 4
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9108
    data_dir: str = ".broker-data"
    log_level: str = "WARNING"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "Settings":
        """Read the variables in the module docstring. Raises ``ValueError`` naming a bad variable."""
        env = os.environ if environ is None else environ

        def _int(name: str, default: int) -> int:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                return int(raw)
            except ValueError:
                raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None

        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            config_path=env.get("BROKER_CONFIG") or None,
            app_id=env.get("BROKER_APP_ID") or cls.app_id,
            topic_partitions=_int("BROKER_TOPIC_PARTITIONS", cls.topic_partitions),
            metrics_host=env.get("BROKER_METRICS_HOST") or cls.metrics_host,
            metrics_port=_int("BROKER_METRICS_PORT", cls.metrics_port),
            data_dir=env.get("BROKER_DATA_DIR") or cls.data_dir,
            log_level=env.get("BROKER_LOG_LEVEL") or cls.log_level,
        )
