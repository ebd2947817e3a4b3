"""Process settings read from the environment (the tenant configuration is a separate YAML file).

==================================  ====================================================  ==============================
Variable                            Meaning                                               Default
==================================  ====================================================  ==============================
``KAFKA_BOOTSTRAP_SERVERS``         ``host:port[,host:port]`` of the Kafka cluster.       (embedded Tansu)
                                    Unset: the CLI starts an embedded, in-memory Tansu
                                    broker.
``BROKER_CONFIG``                   Path of the tenant configuration YAML                 (none)
                                    (``--config``).
``BROKER_APP_ID``                   Faust app id = Kafka consumer group id.               ``maintenance-billing-broker``
``BROKER_TOPIC_PARTITIONS``         Partitions of the topics the broker creates.          ``4``
``BROKER_METRICS_HOST``             Address of the Prometheus ``/metrics`` endpoint.      ``127.0.0.1``
``BROKER_METRICS_PORT``             Port of the ``/metrics`` endpoint (0 = disabled).     ``9108``
``BROKER_DATA_DIR``                 Faust data directory (table state).                   ``.broker-data``
``BROKER_LOG_LEVEL``                Python log level.                                     ``WARNING``
``BROKER_STORE``                    Where the worker keeps its tables (the delivery        ``memory``
                                    ledger, allowances, quotes): ``memory`` (rebuilt from
                                    the changelog topics at start) or ``rocksdb`` (on
                                    disk in ``BROKER_DATA_DIR``, so a restart replays
                                    only what it missed; needs the ``rocksdb`` extra).
``BROKER_LOG_FORMAT``               ``text`` or ``json`` (one JSON object per line; one    ``text``
                                    line per invoice outcome at INFO either way:
                                    ``broker/logs.py``).
``BROKER_REBALANCE_TIMEOUT``        Seconds the group waits for members to rejoin a       ``5``
                                    rebalance.
``BROKER_SESSION_TIMEOUT``          Seconds without heartbeat before a member (a crashed  ``10``
                                    worker) is removed from the consumer group.
``BROKER_PERIOD_CHECK_SECONDS``     How often a worker looks for periods of periodically  ``30``
                                    invoiced clients that are over, to close them.
``BROKER_PERIOD_GRACE_SECONDS``     How long after a period's end (the tenant's local     ``3600``
                                    midnight) it stays open for the last day's events
                                    still on their way.
``BROKER_PRODUCER_MAX_BATCH_SIZE``  Producer batch size in bytes; ``1`` sends one record  ``16384``
                                    per batch, which the embedded Tansu needs (it
                                    reports a wrong end offset after multi-record
                                    batches, so table recovery after a crash would miss
                                    records), except on the internal by-client topic
                                    (nothing reads it to its end: it batches as by
                                    default). ``broker run`` without
                                    ``KAFKA_BOOTSTRAP_SERVERS`` and ``broker demo`` use
                                    ``1``.
``BROKER_PRODUCER_IDEMPOTENCE``     ``false`` turns off the idempotent producer of        ``true``
                                    ``broker ingest`` (Tansu has none; without
                                    ``KAFKA_BOOTSTRAP_SERVERS`` it is off).
``BROKER_FETCH_MAX_WAIT_MS``        Longest a worker's fetch request waits at the broker  ``100``
                                    for records (Faust's own: 1,500). Each Kafka hop of
                                    the pipeline can wait this long on the embedded
                                    Tansu; lower = more fetch requests while idle
                                    (``docs/operations.md``, "Latency").
``BROKER_PRODUCER_LINGER_MS``       Milliseconds the worker's and the intake's producers   ``0``
                                    wait to fill a batch before sending (latency against
                                    fewer, larger produce requests).
``BROKER_COMMIT_INTERVAL``          Seconds between the worker's offset commits (Faust     ``1``
                                    reads this variable too); after a crash up to this
                                    much work is consumed again (not billed twice: the
                                    delivery ledger).
==================================  ====================================================  ==============================

Delivery (see ``docs/delivery.md``):

================================  ========================================================  ====================
Variable                          Meaning                                                   Default
================================  ========================================================  ====================
``BROKER_RETRY_BUDGET``           Seconds of in-line retrying (backoff + jitter) per        ``15``
                                  attempt cycle before an invoice is parked.
``BROKER_RETRY_INITIAL``          First backoff wait in seconds (doubles, with jitter).     ``0.5``
``BROKER_RETRY_MAX``              Longest backoff wait in seconds.                          ``5``
``BROKER_RETRY_AFTER_INLINE``     A ``Retry-After`` up to this many seconds is waited        ``10``
                                  in line; a longer one parks the tenant's invoices.
``BROKER_PARK_DELAYS``            Comma-separated delays (seconds) of the retry topics      ``10,60,300,1800``
                                  ``billing.invoices.retry.1`` .. ``.N``.
``BROKER_PARK_MAX_SECONDS``       A parked invoice still failing this long after its first  ``86400``
                                  failure is dead-lettered.
``BROKER_LANE_MAX_QUEUED``        Invoices of one tenant waiting in memory (rate limit)     ``1000``
                                  before further ones are parked on a retry topic.
``BROKER_DLQ_REPLAY_LIMIT``       ``broker dlq replay`` refuses records already replayed    ``3``
                                  this many times.
``BROKER_BATCH_MAX``              Most invoices per batched create call, for billing        ``0``
                                  systems with a batch endpoint (Xero 50, QuickBooks 30);
                                  ``0``: the connector's size, ``1``: no batching.
``BROKER_BATCH_LINGER_MS``        Milliseconds a batched create waits for more invoices     ``50``
                                  after the first (latency of a lone invoice).
================================  ========================================================  ====================

HTTP intake, ``broker ingest`` (see ``docs/intake.md``):

====================================  ======================================================  ====================
Variable                              Meaning                                                 Default
====================================  ======================================================  ====================
``BROKER_INTAKE_HOST``                Address the intake listens on.                          ``127.0.0.1``
``BROKER_INTAKE_PORT``                Port of the intake.                                     ``8088``
``BROKER_INTAKE_MAX_BODY_BYTES``      Largest request body; larger ones get 413.              ``1048576``
``BROKER_INTAKE_DEDUP_SECONDS``       How long an accepted event id is remembered: the same   ``86400``
                                      source and id again publishes nothing.
``BROKER_INTAKE_DEDUP_MAX``           Most event ids remembered (the oldest are forgotten).   ``200000``
``BROKER_INTAKE_TOLERANCE``           Seconds a signed timestamp may be off from now.         ``300``
``BROKER_INTAKE_PUBLISH_TIMEOUT``     Seconds to wait for Kafka's acknowledgement before      ``10``
                                      answering 503 with ``Retry-After``.
====================================  ======================================================  ====================

Status view, ``broker status-view`` (see ``docs/status-view.md``):

====================================  ======================================================  ====================
Variable                              Meaning                                                 Default
====================================  ======================================================  ====================
``BROKER_STATUS_DB``                  SQLAlchemy URL of the status database (``--db``):       ``sqlite:///``
                                      ``sqlite:///path`` or                                   ``<BROKER_DATA_DIR>``
                                      ``postgresql://user:password@host/db``.                 ``/status.db``
====================================  ======================================================  ====================
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TOPIC_EVENTS = "maintenance.events"
TOPIC_INVOICES = "billing.invoices"
TOPIC_DELIVERIES = "billing.deliveries"
TOPIC_DLQ = "billing.dlq"
#: Payment changes read back from the billing systems (CloudEvents ``billing.invoice.paid`` ...; the status view
#: reads it when it exists: ``broker/statusdb/mapping.py``). Not in :data:`ALL_TOPICS`: the worker does not use it.
TOPIC_PAYMENTS = "billing.payments"
#: Operators' decisions on invoices held for approval (CloudEvents ``billing.invoice.approved`` / ``.rejected``,
#: keyed by the document's order key like ``billing.invoices``, the same partition count: ``docs/approval.md``).
TOPIC_APPROVALS = "billing.approvals"
ALL_TOPICS = (TOPIC_EVENTS, TOPIC_INVOICES, TOPIC_DELIVERIES, TOPIC_DLQ, TOPIC_APPROVALS)
#: Retry (parking) topics are ``billing.invoices.retry.<level>``, level 1..len(park_delays).
TOPIC_RETRY_PREFIX = TOPIC_INVOICES + ".retry."


def retry_topic(level: int) -> str:
    """Name of the retry topic of ``level`` (1-based): ``billing.invoices.retry.1``."""
    return f"{TOPIC_RETRY_PREFIX}{level}"


@dataclass(frozen=True)
class DeliverySettings:
    """Retry, parking and replay policy of the ``deliver`` stage (variables in the module docstring)."""

    retry_budget: float = 15.0
    retry_initial: float = 0.5
    retry_max: float = 5.0
    retry_after_inline: float = 10.0
    park_delays: tuple[float, ...] = (10.0, 60.0, 300.0, 1800.0)
    park_max_seconds: float = 86400.0
    lane_max_queued: int = 1000
    dlq_replay_limit: int = 3
    batch_max: int = 0
    batch_linger: float = 0.05

    @property
    def retry_topics(self) -> tuple[str, ...]:
        """``billing.invoices.retry.1`` .. ``.N``, one per park delay."""
        return tuple(retry_topic(i) for i in range(1, len(self.park_delays) + 1))


@dataclass(frozen=True)
class IntakeSettings:
    """``broker ingest`` settings (module docstring): listen address, body limit (bytes), event-id
    deduplication window (seconds) and size, signed-timestamp tolerance and publish timeout (seconds)."""

    host: str = "127.0.0.1"
    port: int = 8088
    max_body_bytes: int = 1024 * 1024
    dedup_seconds: float = 86400.0
    dedup_max: int = 200_000
    tolerance: float = 300.0
    publish_timeout: float = 10.0


#: Every ``BROKER_*`` variable the broker reads (:func:`unknown_variables` warns about others).
KNOWN_VARIABLES = frozenset(
    {
        "BROKER_APP_ID",
        "BROKER_BATCH_LINGER_MS",
        "BROKER_BATCH_MAX",
        "BROKER_CALLBACKS_HOST",
        "BROKER_CALLBACKS_PORT",
        "BROKER_COMMIT_INTERVAL",
        "BROKER_CONFIG",
        "BROKER_CONSOLE_HOST",
        "BROKER_CONSOLE_OPERATORS",
        "BROKER_CONSOLE_OPERATORS_FILE",
        "BROKER_CONSOLE_PORT",
        "BROKER_CONSOLE_SECRET",
        "BROKER_DATA_DIR",
        "BROKER_DLQ_REPLAY_LIMIT",
        "BROKER_FETCH_MAX_WAIT_MS",
        "BROKER_INTAKE_DEDUP_MAX",
        "BROKER_INTAKE_DEDUP_SECONDS",
        "BROKER_INTAKE_HOST",
        "BROKER_INTAKE_MAX_BODY_BYTES",
        "BROKER_INTAKE_PORT",
        "BROKER_INTAKE_PUBLISH_TIMEOUT",
        "BROKER_INTAKE_TOLERANCE",
        "BROKER_LANE_MAX_QUEUED",
        "BROKER_LOG_FORMAT",
        "BROKER_LOG_LEVEL",
        "BROKER_METRICS_HOST",
        "BROKER_METRICS_PORT",
        "BROKER_PARK_DELAYS",
        "BROKER_PARK_MAX_SECONDS",
        "BROKER_PAYMENTS_HOST",
        "BROKER_PAYMENTS_PORT",
        "BROKER_PERIOD_CHECK_SECONDS",
        "BROKER_PERIOD_GRACE_SECONDS",
        "BROKER_PRODUCER_IDEMPOTENCE",
        "BROKER_PRODUCER_LINGER_MS",
        "BROKER_PRODUCER_MAX_BATCH_SIZE",
        "BROKER_REBALANCE_TIMEOUT",
        "BROKER_RETRY_AFTER_INLINE",
        "BROKER_RETRY_BUDGET",
        "BROKER_RETRY_INITIAL",
        "BROKER_RETRY_MAX",
        "BROKER_SESSION_TIMEOUT",
        "BROKER_STATUS_DB",
        "BROKER_STORE",
        "BROKER_STRICT_CONFIG",
        "BROKER_TOKEN_DIR",
        "BROKER_TOKEN_STORE",
        "BROKER_UPDATE_GOLDEN",
        "BROKER_TOPIC_PARTITIONS",
    }
)


def unknown_variables(environ: dict[str, str] | None = None) -> list[str]:
    """A warning for each ``BROKER_*`` variable in ``environ`` (default: the process environment)
    that the broker does not read — a typo is otherwise silently ignored — with the closest known
    name when one is close (``BROKER_LOG_LEVL: unknown variable; did you mean BROKER_LOG_LEVEL?``)."""
    import difflib

    env = os.environ if environ is None else environ
    out = []
    for name in sorted(n for n in env if n.startswith("BROKER_") and n not in KNOWN_VARIABLES):
        close = difflib.get_close_matches(name, sorted(KNOWN_VARIABLES), n=1, cutoff=0.8)
        out.append(f"{name}: unknown variable" + (f"; did you mean {close[0]}?" if close else " (ignored)"))
    return out


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
    log_format: str = "text"
    store: str = "memory"
    rebalance_timeout: float = 5.0
    session_timeout: float = 10.0
    period_check_seconds: float = 30.0
    period_grace_seconds: float = 3600.0
    producer_max_batch_size: int = 16384
    producer_idempotence: bool = True
    #: latency settings (module docstring; ``docs/operations.md``, "Latency"): milliseconds, milliseconds, seconds
    fetch_max_wait_ms: int = 100
    producer_linger_ms: int = 0
    commit_interval: float = 1.0
    delivery: DeliverySettings = DeliverySettings()
    intake: IntakeSettings = IntakeSettings()

    @property
    def all_topics(self) -> tuple[str, ...]:
        """Every topic the worker uses: :data:`ALL_TOPICS` plus the retry topics."""
        return ALL_TOPICS + self.delivery.retry_topics

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        """Read the variables in the module docstring. Raises ``ValueError`` naming a bad variable."""
        env = os.environ if environ is None else environ

        def _int(name: str, default: int, bounds: tuple[int, int] | None = None) -> int:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                value = int(raw)
            except ValueError:
                raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None
            if bounds is not None and not bounds[0] <= value <= bounds[1]:
                raise ValueError(f"environment variable {name}={raw!r} must be between {bounds[0]} and {bounds[1]}")
            return value

        def _float(name: str, default: float, minimum: float = 0.0) -> float:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"environment variable {name}={raw!r} is not a number") from None
            if not value >= minimum or value == float("inf"):
                raise ValueError(f"environment variable {name}={raw!r} must be a finite number >= {minimum:g}")
            return value

        def _bool(name: str, default: bool) -> bool:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"environment variable {name}={raw!r} is not true or false")

        def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
            raw = (env.get(name) or "").strip().lower()
            if raw == "":
                return default
            if raw not in allowed:
                raise ValueError(f"environment variable {name}={env.get(name)!r} is not one of {', '.join(allowed)}")
            return raw

        def _delays(name: str, default: tuple[float, ...]) -> tuple[float, ...]:
            raw = env.get(name)
            if raw in (None, ""):
                return default
            try:
                values = tuple(float(part) for part in raw.split(",") if part.strip())
            except ValueError:
                raise ValueError(
                    f"environment variable {name}={raw!r} is not a comma-separated list of seconds"
                ) from None
            if not values or any(not v > 0 or v == float("inf") for v in values):
                raise ValueError(
                    f"environment variable {name}={raw!r}: every delay must be a positive number of seconds"
                )
            return values

        d = DeliverySettings
        delivery = DeliverySettings(
            retry_budget=_float("BROKER_RETRY_BUDGET", d.retry_budget),
            retry_initial=_float("BROKER_RETRY_INITIAL", d.retry_initial),
            retry_max=_float("BROKER_RETRY_MAX", d.retry_max),
            retry_after_inline=_float("BROKER_RETRY_AFTER_INLINE", d.retry_after_inline),
            park_delays=_delays("BROKER_PARK_DELAYS", d.park_delays),
            park_max_seconds=_float("BROKER_PARK_MAX_SECONDS", d.park_max_seconds),
            lane_max_queued=max(1, _int("BROKER_LANE_MAX_QUEUED", d.lane_max_queued)),
            dlq_replay_limit=_int("BROKER_DLQ_REPLAY_LIMIT", d.dlq_replay_limit),
            batch_max=max(0, _int("BROKER_BATCH_MAX", d.batch_max)),
            batch_linger=_float("BROKER_BATCH_LINGER_MS", d.batch_linger * 1000) / 1000,
        )
        i = IntakeSettings
        intake = IntakeSettings(
            host=env.get("BROKER_INTAKE_HOST") or i.host,
            port=_int("BROKER_INTAKE_PORT", i.port),
            max_body_bytes=max(1, _int("BROKER_INTAKE_MAX_BODY_BYTES", i.max_body_bytes)),
            dedup_seconds=_float("BROKER_INTAKE_DEDUP_SECONDS", i.dedup_seconds),
            dedup_max=max(1, _int("BROKER_INTAKE_DEDUP_MAX", i.dedup_max)),
            tolerance=_float("BROKER_INTAKE_TOLERANCE", i.tolerance, 1.0),
            publish_timeout=_float("BROKER_INTAKE_PUBLISH_TIMEOUT", i.publish_timeout, 0.1),
        )
        return cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            config_path=env.get("BROKER_CONFIG") or None,
            app_id=env.get("BROKER_APP_ID") or cls.app_id,
            topic_partitions=_int("BROKER_TOPIC_PARTITIONS", cls.topic_partitions),
            metrics_host=env.get("BROKER_METRICS_HOST") or cls.metrics_host,
            metrics_port=_int("BROKER_METRICS_PORT", cls.metrics_port),
            data_dir=env.get("BROKER_DATA_DIR") or cls.data_dir,
            log_level=env.get("BROKER_LOG_LEVEL") or cls.log_level,
            log_format=_choice("BROKER_LOG_FORMAT", cls.log_format, ("text", "json")),
            store=_choice("BROKER_STORE", cls.store, ("memory", "rocksdb")),
            rebalance_timeout=_float("BROKER_REBALANCE_TIMEOUT", cls.rebalance_timeout, 0.1),
            session_timeout=_float("BROKER_SESSION_TIMEOUT", cls.session_timeout, 0.5),
            period_check_seconds=_float("BROKER_PERIOD_CHECK_SECONDS", cls.period_check_seconds, 0.1),
            period_grace_seconds=_float("BROKER_PERIOD_GRACE_SECONDS", cls.period_grace_seconds, 0.0),
            producer_max_batch_size=max(1, _int("BROKER_PRODUCER_MAX_BATCH_SIZE", cls.producer_max_batch_size)),
            producer_idempotence=_bool("BROKER_PRODUCER_IDEMPOTENCE", cls.producer_idempotence),
            fetch_max_wait_ms=_int("BROKER_FETCH_MAX_WAIT_MS", cls.fetch_max_wait_ms, (1, 60_000)),
            producer_linger_ms=_int("BROKER_PRODUCER_LINGER_MS", cls.producer_linger_ms, (0, 60_000)),
            commit_interval=_float("BROKER_COMMIT_INTERVAL", cls.commit_interval, 0.1),
            delivery=delivery,
            intake=intake,
        )
