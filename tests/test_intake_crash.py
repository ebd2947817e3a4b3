"""Acceptance (intake, never lost): ``kill -9`` the intake while a client sends 1,000 webhooks (half
of them CloudEvents to ``POST /events``, half ERPNext quotation webhooks to ``POST
/webhooks/erpnext/acme-fm``) and retries whatever was not answered 202; the intake is started again. Every event is on
``maintenance.events`` exactly once: those answered 202 before the kill were stored before the
answer, and the retries of those whose answer the kill swallowed are recognised by the restarted
intake (its deduplication window is read back from the topic)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from broker.embedded import free_port
from broker.kafka import ensure_topics, read_events_file
from broker.platforms.emulator import sample_bytes
from broker.platforms.emulator.erpnext import webhook
from broker.settings import TOPIC_EVENTS
from tests.conftest import EXAMPLES, wait_ready
from tests.test_intake import _records

pytestmark = pytest.mark.integration

N = 1000
TOKEN = "crash-test-token"
FRAPPE_SECRET = b"crash-test-frappe-secret"
QUOTE = json.loads(sample_bytes("erpnext", "webhook_quotation_on_submit.body.json"))


class IntakeProcess:
    """``python -m broker ingest`` on ``port``, its output in ``log``."""

    def __init__(self, config: Path, bootstrap: str, port: int, log: Path) -> None:
        self.args = [sys.executable, "-m", "broker", "ingest", "--config", str(config), "--port", str(port)]
        self.env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "ACME_INTAKE_TOKEN": TOKEN,
            "ACME_FRAPPE_SECRET": FRAPPE_SECRET.decode(),
            # the test's Kafka is a Tansu: no idempotent producers, one record per batch
            "BROKER_PRODUCER_IDEMPOTENCE": "false",
            "BROKER_PRODUCER_MAX_BATCH_SIZE": "1",
        }
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> IntakeProcess:
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=open(self.log, "ab"),  # noqa: SIM115 - the intake process owns the file until it exits
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_ready(self.url, self.proc, self.log)
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def test_kill_9_while_1000_events_are_sent_stores_each_exactly_once(kafka, tmp_path):
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text())
    raw["tenants"]["acme-fm"]["intake"] = [{"name": "bridge", "token_env": "ACME_INTAKE_TOKEN"}]
    raw["tenants"]["acme-fm"]["webhooks"] = {
        "erpnext": {"secret_env": "ACME_FRAPPE_SECRET", "default_site": "LIS-HAL-ROOF"}
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    ensure_topics(kafka, 4, [TOPIC_EVENTS])
    template = next(json.loads(r) for r in read_events_file(EXAMPLES / "events.ndjson") if b'"acme-fm"' in r)
    bodies: dict[str, tuple[str, bytes, dict[str, str]]] = {}  # event id -> (path, body, headers)
    events_headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/cloudevents+json"}
    for i in range(N):
        if i % 2:
            headers, body = webhook(FRAPPE_SECRET, {**QUOTE, "name": f"SAL-QTN-K{i:04d}"})
            bodies[f"erpnext:Quotation:SAL-QTN-K{i:04d}:on_submit"] = ("/webhooks/erpnext/acme-fm", body, headers)
            continue
        event = {**template, "id": f"crash-{i:04d}", "data": {**template["data"], "work_order_id": f"K{i:04d}"}}
        event["data"].pop("quote_id", None)
        bodies[event["id"]] = ("/events", json.dumps(event).encode(), events_headers)
    intake = IntakeProcess(config, kafka, free_port(), tmp_path / "intake.log").start()
    answered: Counter[str] = Counter()  # 202 answers per event
    attempts: Counter[str] = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + 180

    def send(event_id: str) -> None:
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                with lock:
                    attempts[event_id] += 1
                path, body, headers = bodies[event_id]
                try:
                    response = client.post(f"{intake.url}{path}", content=body, headers=headers)
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                if response.status_code == 202:
                    with lock:
                        answered[event_id] += 1
                    return
                assert response.status_code == 503, response.text
                time.sleep(0.05)

    def kill_and_restart() -> None:
        while sum(answered.values()) < N // 3:
            time.sleep(0.001)
        intake.kill()
        time.sleep(0.5)  # requests in flight fail, new ones are refused: the clients retry
        intake.start()

    killer = threading.Thread(target=kill_and_restart)
    killer.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(send, bodies))
        killer.join(60)
    finally:
        intake.kill()
    assert sorted(answered) == sorted(bodies) and set(answered.values()) == {1}
    retried = sum(1 for n in attempts.values() if n > 1)
    assert retried > 0, "the kill interrupted no request: nothing was retried"
    stored = Counter(json.loads(value)["id"] for _, value in _records(kafka))
    assert stored == Counter(dict.fromkeys(bodies, 1)), {k: v for k, v in stored.items() if v != 1}
