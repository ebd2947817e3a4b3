"""The worker's HTTP endpoint: ``/metrics``, ``/healthz`` (alive) and ``/readyz`` (ready, with reasons).

``broker run`` serves it on ``BROKER_METRICS_HOST:BROKER_METRICS_PORT`` (:func:`serve`), in a thread:

* ``GET /healthz`` -> 200 ``{"status": "ok"}`` while the process runs;
* ``GET /readyz`` -> 200 or 503 with ``{"status": "ok"|"not_ready", "checks": {name: {"ok", "detail"}}}``:
  ``kafka`` (a metadata request to the bootstrap servers answered within
  :attr:`KafkaProbe.timeout` seconds, the result kept :attr:`KafkaProbe.ttl` seconds),
  ``partitions`` (the consumer group finished its first assignment and is not rebalancing),
  ``tables`` (the changelog-backed tables are recovered), ``tenants`` (every tenant's connector
  and secrets loaded; the broken ones are named);
* ``GET /metrics`` -> the Prometheus exposition; any other path 404.

The Faust app updates :class:`Health` from its event loop once a second (:meth:`Health.observe`);
the HTTP thread only reads it. A port in use is :class:`PortInUse`, with a message saying what to
change, not a traceback.
"""

from __future__ import annotations

import errno
import json
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from broker.kafka_security import bootstrap_bound, client_options

__all__ = ["Health", "KafkaProbe", "PortInUse", "serve"]


class PortInUse(Exception):  # noqa: N818 - the name is the message
    """The endpoint's port is taken (another worker on this host?)."""


class KafkaProbe:
    """Whether the Kafka cluster at ``bootstrap`` answers a metadata request within ``timeout``
    seconds; the answer is kept ``ttl`` seconds. ``connect``: builds the client (kafka-python
    ``KafkaConsumer`` by default; tests pass their own)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        timeout: float = 3.0,
        ttl: float = 5.0,
        connect: Callable[[str, float], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.bootstrap = bootstrap
        self.timeout = timeout
        self.ttl = ttl
        self.connect = connect or _kafka_consumer
        self.clock = clock
        self._lock = threading.Lock()
        self._checked: tuple[float, str | None] | None = None

    def problem(self) -> str | None:
        """None when Kafka answered, else the reason (naming the address tried)."""
        with self._lock:
            now = self.clock()
            if self._checked is not None and now - self._checked[0] < self.ttl:
                return self._checked[1]
            try:
                client = self.connect(self.bootstrap, self.timeout)
                try:
                    client.topics()
                finally:
                    client.close()
                found = None
            except Exception as exc:  # noqa: BLE001 - any failure is "not reachable", with its reason
                found = (
                    f"Kafka at {self.bootstrap} did not answer within {self.timeout:g} s: {type(exc).__name__}: {exc}"
                )
            self._checked = (self.clock(), found)
            return found


def _kafka_consumer(bootstrap: str, timeout: float) -> Any:
    from kafka import KafkaConsumer

    millis = max(100, int(timeout * 1000))
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        request_timeout_ms=max(millis, 1001),  # kafka-python wants it above the session timeout
        connections_max_idle_ms=max(millis, 1001) + 1,
        session_timeout_ms=1000,
        heartbeat_interval_ms=300,
        **bootstrap_bound(timeout),
        **client_options(),
    )


class Health:
    """What ``/readyz`` reports (module docstring). ``tenants``: how many tenants run;
    ``broken``: tenant id -> why it does not (a missing secret, an unloadable connector)."""

    def __init__(self, probe: KafkaProbe, *, tenants: int, broken: Mapping[str, str] | None = None):
        self.probe = probe
        self.tenants = tenants
        self.broken = dict(broken or {})
        self._lock = threading.Lock()
        self._assigned: int | None = None  # None: no assignment finished yet
        self._rebalancing = True
        self._recovering = True

    def observe(self, *, assigned: int | None, rebalancing: bool, recovering: bool) -> None:
        """Called from the app's loop: partitions assigned (None before the first assignment),
        whether a rebalance or a table recovery is under way."""
        with self._lock:
            self._assigned, self._rebalancing, self._recovering = assigned, rebalancing, recovering

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, body)`` of ``/readyz``."""
        with self._lock:
            assigned, rebalancing, recovering = self._assigned, self._rebalancing, self._recovering
        kafka = self.probe.problem()
        checks = {
            "kafka": (kafka is None, kafka or f"{self.probe.bootstrap} answered"),
            "partitions": (
                assigned is not None and not rebalancing,
                "waiting for the first assignment"
                if assigned is None
                else "rebalancing"
                if rebalancing
                else f"{assigned} assigned",
            ),
            "tables": (not recovering, "recovering from the changelogs" if recovering else "recovered"),
            "tenants": (
                not self.broken,
                f"{self.tenants} running"
                if not self.broken
                else "; ".join(f"{tenant}: {why}" for tenant, why in sorted(self.broken.items())),
            ),
        }
        ready = all(ok for ok, _ in checks.values())
        body = {
            "status": "ok" if ready else "not_ready",
            "checks": {name: {"ok": ok, "detail": detail} for name, (ok, detail) in checks.items()},
        }
        return ready, body


def serve(host: str, port: int, health: Health | None = None) -> ThreadingHTTPServer | None:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``host:port`` in a daemon thread (``port``
    0: nothing is served; ``health`` None: ``/readyz`` answers 200 once serving). Raises
    :class:`PortInUse` when the port is taken."""
    if not port:
        return None

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - no access log
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/") or "/"
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._json(200, {"status": "ok"})
            elif path == "/readyz":
                ready, body = health.readiness() if health is not None else (True, {"status": "ok", "checks": {}})
                self._json(200 if ready else 503, body)
            else:
                self._json(404, {"status": "not_found", "paths": ["/metrics", "/healthz", "/readyz"]})

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"{host}:{port} is in use (another worker on this host?): set BROKER_METRICS_PORT to a free "
                "port, or 0 to serve no metrics and health endpoints"
            ) from None
        raise
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="broker-health", daemon=True).start()
    return server
