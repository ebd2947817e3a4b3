"""How the broker authenticates to Kafka: TLS and SASL settings from the environment, for every client.

Managed Kafka (Confluent Cloud, Amazon MSK, Aiven) needs TLS and usually SASL. One set of variables
configures every client the broker opens — the Faust worker, aiokafka (intake, outcome reader) and
kafka-python (topic creation, ``broker publish``, the DLQ tools, the lag sampler, ``/readyz``):

===============================  =========================================================  ============
Variable                         Meaning                                                    Default
===============================  =========================================================  ============
``KAFKA_SECURITY_PROTOCOL``      ``PLAINTEXT``, ``SSL``, ``SASL_PLAINTEXT`` or ``SASL_SSL``  ``PLAINTEXT``
``KAFKA_SASL_MECHANISM``         ``PLAIN``, ``SCRAM-SHA-256`` or ``SCRAM-SHA-512``          ``PLAIN``
``KAFKA_SASL_USERNAME``          SASL user (Confluent Cloud: the API key)                   —
``KAFKA_SASL_PASSWORD``          SASL password (Confluent Cloud: the API secret)            —
``KAFKA_SSL_CAFILE``             CA bundle to verify the brokers (default: the system's)    —
``KAFKA_SSL_CERTFILE``           client certificate, for mutual TLS (Aiven's access cert)   —
``KAFKA_SSL_KEYFILE``            the client certificate's key                               —
``KAFKA_SSL_CHECK_HOSTNAME``     ``false`` skips host name verification (tests only)        ``true``
===============================  =========================================================  ============

Examples: Confluent Cloud ``SASL_SSL`` + ``PLAIN`` with an API key and secret; Amazon MSK ``SASL_SSL``
+ ``SCRAM-SHA-512`` (port 9096) or ``SSL`` (9094); Aiven ``SSL`` with ``KAFKA_SSL_CAFILE``,
``KAFKA_SSL_CERTFILE`` and ``KAFKA_SSL_KEYFILE`` (its mTLS), or ``SASL_SSL`` + ``SCRAM-SHA-256``.
The password is never logged (``repr`` hides it).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "PROTOCOLS",
    "SASL_MECHANISMS",
    "KafkaSecurity",
    "bootstrap_bound",
    "client_options",
    "connect_timeout",
    "tool_options",
]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    """The TLS/SASL settings (module docstring); build with :meth:`from_env`."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    check_hostname: bool = True

    @property
    def uses_tls(self) -> bool:
        """Whether the connection is encrypted (``SSL``, ``SASL_SSL``)."""
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        """Whether the client authenticates with SASL."""
        return self.protocol.startswith("SASL_")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KafkaSecurity:
        """Read the variables; raises ``ValueError`` naming the variable and the value when one is
        wrong (an unknown protocol or mechanism, SASL without a user or password, a file that does
        not exist, a key without a certificate)."""
        env = os.environ if environ is None else environ
        protocol = (env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper()
        if protocol not in PROTOCOLS:
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol!r} is not one of {', '.join(PROTOCOLS)}")
        mechanism = (env.get("KAFKA_SASL_MECHANISM") or "PLAIN").strip().upper()
        if mechanism not in SASL_MECHANISMS:
            raise ValueError(f"KAFKA_SASL_MECHANISM={mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}")
        username = env.get("KAFKA_SASL_USERNAME") or None
        password = env.get("KAFKA_SASL_PASSWORD") or None
        if protocol.startswith("SASL_") and (username is None or password is None):
            missing = "KAFKA_SASL_USERNAME" if username is None else "KAFKA_SASL_PASSWORD"
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={protocol} needs {missing}")
        files = {}
        for name in ("KAFKA_SSL_CAFILE", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"):
            value = env.get(name) or None
            if value is not None and not Path(value).is_file():
                raise ValueError(f"{name}={value!r}: no such file")
            files[name] = value
        if files["KAFKA_SSL_KEYFILE"] and not files["KAFKA_SSL_CERTFILE"]:
            raise ValueError("KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE")
        check = (env.get("KAFKA_SSL_CHECK_HOSTNAME") or "true").strip().lower()
        if check not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"KAFKA_SSL_CHECK_HOSTNAME={check!r} is not true or false")
        return cls(
            protocol=protocol,
            sasl_mechanism=mechanism,
            username=username,
            password=password,
            cafile=files["KAFKA_SSL_CAFILE"],
            certfile=files["KAFKA_SSL_CERTFILE"],
            keyfile=files["KAFKA_SSL_KEYFILE"],
            check_hostname=check in ("true", "1", "yes"),
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (server verified against ``cafile`` or the system's CAs; the client
        certificate when given), or None without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=self.cafile)
        context.check_hostname = self.check_hostname
        if self.certfile:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's and aiokafka's clients (``KafkaConsumer``,
        ``KafkaProducer``, ``KafkaAdminClient``, ``AIOKafkaConsumer``, ``AIOKafkaProducer``: both
        libraries take the same names)."""
        out: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            out["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            out.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.username)
            out["sasl_plain_password"] = self.password
        return out

    def faust(self) -> dict[str, Any]:
        """Faust app settings: ``broker_credentials`` (empty without TLS or SASL)."""
        import faust

        if self.uses_sasl:
            credentials: Any = faust.SASLCredentials(
                username=self.username,
                password=self.password,
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context(),
            )
            return {"broker_credentials": credentials}
        if self.uses_tls:
            return {"broker_credentials": faust.SSLCredentials(self.ssl_context())}
        return {}


def client_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """:meth:`KafkaSecurity.client_options` of the environment (raises ``ValueError`` naming a bad variable)."""
    return KafkaSecurity.from_env(environ).client_options()


def connect_timeout(environ: Mapping[str, str] | None = None) -> float:
    """``KAFKA_CONNECT_TIMEOUT``: seconds a command-line tool waits for Kafka before it says it
    cannot reach it (default 10). Raises ``ValueError`` naming the variable."""
    env = os.environ if environ is None else environ
    raw = env.get("KAFKA_CONNECT_TIMEOUT") or "10"
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"KAFKA_CONNECT_TIMEOUT={raw!r} is not a number of seconds") from None
    if not 0.1 <= value <= 3600:
        raise ValueError(f"KAFKA_CONNECT_TIMEOUT={raw!r} is not between 0.1 and 3600 seconds")
    return value


def tool_options(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """:func:`client_options` plus the bootstrap bound of :func:`connect_timeout`, for kafka-python
    clients of the command-line tools (``publish``, ``dlq``, topic creation)."""
    return {**client_options(environ), **bootstrap_bound(connect_timeout(environ))}


def bootstrap_bound(seconds: float) -> dict[str, int]:
    """The kafka-python option that bounds the wait for the first broker to ``seconds``:
    ``bootstrap_timeout_ms`` in kafka-python 3, ``api_version_auto_timeout_ms`` in 2.x."""
    from kafka import KafkaConsumer

    v3 = "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG
    return {"bootstrap_timeout_ms" if v3 else "api_version_auto_timeout_ms": max(100, int(seconds * 1000))}
