"""The worker's ``/healthz`` and ``/readyz`` (:mod:`broker.health`): readiness with its reasons, a port
in use, and — acceptance — a worker whose Kafka stops answers 503 naming it, and 200 when it is back."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest
import yaml

from broker import metrics
from broker.demo import Tally
from broker.embedded import EmbeddedKafka, free_port
from broker.health import Health, KafkaProbe, PortInUse, serve
from broker.kafka import ensure_topics, publish
from broker.settings import TOPIC_EVENTS
from tests.conftest import write_config
from tests.delivery_support import metric, metrics_text, wait_for, work_order


class _Client:
    def __init__(self, fail: Exception | None) -> None:
        self.fail = fail

    def topics(self) -> set[str]:
        if self.fail is not None:
            raise self.fail
        return {"maintenance.events"}

    def close(self) -> None:
        pass


def test_readiness_names_what_is_not_ready():
    outcome: dict[str, Exception | None] = {"fail": None}
    now = [0.0]
    probe = KafkaProbe("k1:9092", timeout=2, ttl=5, connect=lambda *_: _Client(outcome["fail"]), clock=lambda: now[0])
    health = Health(probe, tenants=3)
    ready, body = health.readiness()
    assert not ready
    assert body == {
        "status": "not_ready",
        "checks": {
            "kafka": {"ok": True, "detail": "k1:9092 answered"},
            "partitions": {"ok": False, "detail": "waiting for the first assignment"},
            "tables": {"ok": False, "detail": "recovering from the changelogs"},
            "tenants": {"ok": True, "detail": "3 running"},
        },
    }
    health.observe(assigned=4, rebalancing=False, recovering=False)
    assert health.readiness() == (
        True,
        {
            "status": "ok",
            "checks": {
                "kafka": {"ok": True, "detail": "k1:9092 answered"},
                "partitions": {"ok": True, "detail": "4 assigned"},
                "tables": {"ok": True, "detail": "recovered"},
                "tenants": {"ok": True, "detail": "3 running"},
            },
        },
    )
    outcome["fail"] = OSError("connection refused")
    assert health.readiness()[0]  # the last answer is kept 5 s
    now[0] = 5.0
    ready, body = health.readiness()
    assert not ready and body["checks"]["kafka"] == {
        "ok": False,
        "detail": "Kafka at k1:9092 did not answer within 2 s: OSError: connection refused",
    }
    health.observe(assigned=0, rebalancing=True, recovering=False)
    assert health.readiness()[1]["checks"]["partitions"] == {"ok": False, "detail": "rebalancing"}
    broken = Health(probe, tenants=2, broken={"b": "secret XERO_B is not set", "a": "no connector 'x'"})
    assert broken.readiness()[1]["checks"]["tenants"] == {
        "ok": False,
        "detail": "a: no connector 'x'; b: secret XERO_B is not set",
    }


def test_the_endpoint_paths_and_a_port_in_use():
    probe = KafkaProbe("k:1", connect=lambda *_: _Client(None))
    health = Health(probe, tenants=1)
    port = free_port()
    server = serve("127.0.0.1", port, health)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        answer = httpx.get(f"{base}/readyz")
        assert answer.status_code == 503 and answer.json()["status"] == "not_ready"
        health.observe(assigned=1, rebalancing=False, recovering=False)
        assert httpx.get(f"{base}/readyz/").status_code == 200
        assert metrics.EVENTS_CONSUMED is not None  # the worker's metrics are registered
        metrics_page = httpx.get(f"{base}/metrics")
        assert metrics_page.status_code == 200 and "# TYPE broker_events_consumed_total counter" in metrics_page.text
        assert httpx.get(f"{base}/other").status_code == 404
        with pytest.raises(PortInUse) as taken:
            serve("127.0.0.1", port, health)
        assert str(taken.value) == (
            f"127.0.0.1:{port} is in use (another worker on this host?): set BROKER_METRICS_PORT to a free port, "
            "or 0 to serve no metrics and health endpoints"
        )
        assert serve("127.0.0.1", 0, health) is None
    finally:
        assert server is not None
        server.shutdown()


def _readyz(port: int) -> tuple[int, dict]:
    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
    except httpx.HTTPError as exc:
        return 0, {"error": str(exc)}
    return answer.status_code, answer.json()


def _wait_for(port: int, status: int, timeout: float, worker) -> dict:
    deadline = time.monotonic() + timeout
    seen: tuple[int, dict] = (0, {})
    while time.monotonic() < deadline:
        seen = _readyz(port)
        if seen[0] == status:
            return seen[1]
        time.sleep(0.5)
    raise AssertionError(f"/readyz never answered {status}; last {seen}\n{worker.log()[-3000:]}")


@pytest.mark.integration
def test_readyz_of_a_worker_whose_kafka_stops_is_503_naming_it_and_200_when_it_is_back(xero, worker_factory, tmp_path):
    with EmbeddedKafka() as kafka_broker:
        _stop_and_resume(kafka_broker, worker_factory(write_config(tmp_path, xero.url), kafka_broker.bootstrap))


def _stop_and_resume(kafka_broker: EmbeddedKafka, worker) -> None:
    _wait_for(worker.metrics_port, 200, 90, worker)
    os.killpg(kafka_broker.proc.pid, signal.SIGSTOP)  # Kafka stops answering (and keeps its data)
    try:
        body = _wait_for(worker.metrics_port, 503, 30, worker)
        assert body["checks"]["kafka"]["ok"] is False
        assert body["checks"]["kafka"]["detail"].startswith(
            f"Kafka at {kafka_broker.bootstrap} did not answer within 3 s"
        )
    finally:
        os.killpg(kafka_broker.proc.pid, signal.SIGCONT)
    body = _wait_for(worker.metrics_port, 200, 90, worker)
    assert body["status"] == "ok" and body["checks"]["kafka"] == {
        "ok": True,
        "detail": f"{kafka_broker.bootstrap} answered",
    }
    assert worker.proc.poll() is None
    worker.kill()  # after the freeze its graceful stop waits out the group's session (20 s for nothing)


@pytest.mark.integration
def test_a_tenant_that_cannot_run_is_named_and_the_others_deliver(kafka, xero, worker_factory, tmp_path):
    config = write_config(tmp_path, xero.url)
    raw = yaml.safe_load(config.read_text())
    raw["tenants"]["nordic-hvac"]["billing"]["settings"]["client_secret_env"] = "NORDIC_XERO_SECRET_MISSING"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    ensure_topics(kafka, 4)
    worker = worker_factory(config, kafka)
    expected = (
        "nordic-hvac: missing secret: environment variable NORDIC_XERO_SECRET_MISSING "
        "(named by tenants.nordic-hvac.billing.settings.client_secret_env) is not set"
    )
    publish(kafka, TOPIC_EVENTS, [work_order("acme-fm", "H1"), work_order("nordic-hvac", "H2")])
    tally = Tally(kafka)
    try:
        wait_for(
            lambda: tally.poll() >= 0 and len({o["invoice_key"] for o in tally.outcomes}) >= 2 and len(tally.dead) >= 1,
            timeout=90,
            what="2 outcomes and the dead letter",
            workers=[worker],
        )
    finally:
        tally.close()
    wait_for(
        lambda: all(c["ok"] for n, c in _readyz(worker.metrics_port)[1]["checks"].items() if n != "tenants"),
        timeout=30,
        what="kafka, partitions and tables ready",
        workers=[worker],
    )
    status, body = _readyz(worker.metrics_port)
    assert status == 503 and body["checks"]["tenants"] == {"ok": False, "detail": expected}
    outcomes = {o["invoice_key"]: o["outcome"] for o in tally.outcomes}
    assert outcomes == {"acme-fm:wo:H1:r1": "created", "nordic-hvac:wo:H2:r1": "dead_lettered"}
    [dead] = tally.dead
    assert dead["headers"]["dlq.error.class"] == "config"
    assert "NORDIC_XERO_SECRET_MISSING" in dead["headers"]["dlq.message"]
    assert "tenant nordic-hvac cannot run: missing secret" in worker.log()
    wait_for(
        lambda: (
            metric(metrics_text(worker), "broker_tenants", state="unavailable") == 1
            and metric(metrics_text(worker), "broker_tenants", state="ok") == 1
        ),
        timeout=30,
        what="broker_tenants counts one unavailable and one ok tenant",
        workers=[worker],
    )
