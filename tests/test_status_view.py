"""``broker status-view`` on the embedded Kafka (Tansu): the issue's acceptance test — the process
killed at random moments while 1,000 outcomes flow ends with exactly one row per invoice, none
missing, and one history row per outcome record (on SQLite and on PostgreSQL; a bigger variant is
``slow``) — and the view reading every topic, including ``billing.payments`` created after it started.

The PostgreSQL cases start a throwaway server from Debian's ``postgresql`` package
(``tests/postgres_support.py``): skipped without it, saying what to install, failed when ``CI`` is set."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal as D
from pathlib import Path

import pytest
from sqlalchemy import func, select

from broker.kafka import ensure_topics
from broker.settings import TOPIC_DELIVERIES, TOPIC_DLQ, TOPIC_INVOICES, TOPIC_PAYMENTS
from broker.statusdb.read import InvoiceFilter, document_history, get_invoice, list_invoices, status_counts
from broker.statusdb.schema import INVOICE_EVENTS, INVOICES, UNREADABLE
from broker.statusdb.service import StatusView
from broker.statusdb.store import load_offsets, migrate, open_database
from tests.delivery_support import publish_records
from tests.postgres_support import fresh_database, temporary_postgres
from tests.status_view_support import as_bytes, invoice, outcome, payment

pytestmark = pytest.mark.integration

OUTCOMES = 1000


class ViewProcess:
    """``python -m broker status-view`` as a subprocess; ``kill()`` sends SIGKILL, ``stop()`` SIGTERM."""

    def __init__(self, db_url: str, bootstrap: str, tmp_path: Path):
        self.args = [sys.executable, "-m", "broker", "status-view", "--db", db_url]
        self.env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "BROKER_LOG_LEVEL": "WARNING"}
        self.log_path = tmp_path / "status-view.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ViewProcess:
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=open(self.log_path, "ab"),  # noqa: SIM115 - the process owns the file until it exits
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(20)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _feed(bootstrap: str, invoices: list, slow: threading.Event, chunk: int = 20) -> None:
    """Publish each invoice, then its outcome, ``chunk`` at a time (one record per produce batch: Tansu),
    pausing between chunks while ``slow`` is set."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, batch_size=0)
    try:
        for start in range(0, len(invoices), chunk):
            part = invoices[start : start + chunk]
            futures = [producer.send(TOPIC_INVOICES, key=i.order_key.encode(), value=as_bytes(i)) for i in part]
            futures += [
                producer.send(TOPIC_DELIVERIES, key=i.invoice_key.encode(), value=as_bytes(outcome(i))) for i in part
            ]
            producer.flush()
            for future in futures:
                future.get(timeout=30)
            if slow.is_set():
                time.sleep(0.25)
    finally:
        producer.close()


def _topic_ends(bootstrap: str) -> dict[tuple[str, int], int]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(t, p) for t in (TOPIC_INVOICES, TOPIC_DELIVERIES) for p in range(4)]
        return {(tp.topic, tp.partition): end for tp, end in consumer.end_offsets(tps).items() if end}
    finally:
        consumer.close()


def _events_by_topic(engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(select(INVOICE_EVENTS.c.topic, func.count()).group_by(INVOICE_EVENTS.c.topic))
        return dict(rows.all())


@pytest.fixture(scope="module")
def postgres_server():
    with temporary_postgres() as url:
        yield url


def _database(kind: str, request, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'status.db'}"
    return fresh_database(request.getfixturevalue("postgres_server"), f"status_{uuid.uuid4().hex[:12]}")


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_killed_at_random_moments_while_1000_outcomes_flow_it_ends_with_one_row_per_invoice(
    database, request, kafka, tmp_path
):
    _chaos(_database(database, request, tmp_path), kafka, tmp_path, outcomes=OUTCOMES, kills=4, seed=122)


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_killed_ten_times_while_10000_outcomes_flow(database, request, kafka, tmp_path):
    _chaos(_database(database, request, tmp_path), kafka, tmp_path, outcomes=10_000, kills=10, seed=1210, chunk=100)


def _chaos(url: str, bootstrap: str, tmp_path: Path, *, outcomes: int, kills: int, seed: int, chunk: int = 20) -> None:
    """Feed ``outcomes`` invoices and their outcomes while the view is SIGKILLed ``kills`` times at
    seeded random moments (0.8-2.4 s after each start), then let it finish; check every row."""
    ensure_topics(bootstrap, 4, [TOPIC_INVOICES, TOPIC_DELIVERIES, TOPIC_PAYMENTS, TOPIC_DLQ])
    invoices = [invoice(tenant=("acme-fm", "nordic-hvac")[i % 2], wo=str(5000 + i)) for i in range(outcomes)]
    view = ViewProcess(url, bootstrap, tmp_path)
    slow = threading.Event()
    slow.set()
    feeder = threading.Thread(target=_feed, args=(bootstrap, invoices, slow, chunk), daemon=True)
    rng = random.Random(seed)
    at_kill: list[int] = []
    engine = open_database(url)
    try:
        feeder.start()
        for _ in range(kills):
            view.start()
            time.sleep(rng.uniform(0.8, 2.4))  # start-up and migration included: a kill may land anywhere
            view.kill()
            at_kill.append(_events_by_topic(engine).get(TOPIC_DELIVERIES, 0) if _migrated(engine) else 0)
        slow.clear()
        view.start()
        feeder.join(120)
        assert not feeder.is_alive()
        deadline = time.monotonic() + 120
        while _events_by_topic(engine) != {TOPIC_INVOICES: outcomes, TOPIC_DELIVERIES: outcomes}:
            assert time.monotonic() < deadline, f"{_events_by_topic(engine)}; at the kills: {at_kill}\n{view.log()}"
            assert view.proc is not None and view.proc.poll() is None, view.log()
            time.sleep(0.2)
        assert view.stop() == 0, view.log()
    finally:
        view.kill()
    print(f"outcomes in the database at each kill: {at_kill}")
    assert any(0 < n < outcomes for n in at_kill), f"no kill while outcomes flowed: {at_kill}"
    assert "status view stopped:" in view.log()

    expected = {i.invoice_key for i in invoices}
    with engine.connect() as connection:
        keys = [k for (k,) in connection.execute(select(INVOICES.c.invoice_key))]
        per_outcome = connection.execute(
            select(INVOICE_EVENTS.c.invoice_key, func.count())
            .where(INVOICE_EVENTS.c.topic == TOPIC_DELIVERIES)
            .group_by(INVOICE_EVENTS.c.invoice_key)
        ).all()
        unreadable = connection.execute(select(func.count()).select_from(UNREADABLE)).scalar_one()
    assert len(keys) == len(set(keys)) == outcomes and set(keys) == expected  # one row each, none missing
    assert {k for k, _ in per_outcome} == expected and {n for _, n in per_outcome} == {1}  # no doubled history
    assert unreadable == 0
    assert status_counts(engine) == {"delivered": outcomes}
    assert status_counts(engine, InvoiceFilter(tenant="nordic-hvac")) == {"delivered": outcomes // 2}
    row = get_invoice(engine, f"nordic-hvac:wo:{5000 + outcomes - 1}:r1")
    assert row is not None
    assert (row.total, row.external_number, row.outcome) == (
        D("123.00"),
        f"ACME-WO-{5000 + outcomes - 1}-R1",
        "created",
    )
    assert load_offsets(engine) == _topic_ends(bootstrap)  # every record written, the offsets with them
    engine.dispose()


def _migrated(engine) -> bool:
    from sqlalchemy import inspect

    return "invoice_events" in inspect(engine).get_table_names()


def test_the_view_reads_every_topic_and_payments_once_the_topic_exists(kafka, tmp_path):
    ensure_topics(kafka, 2, [TOPIC_INVOICES, TOPIC_DELIVERIES, TOPIC_DLQ])  # no billing.payments yet
    engine = open_database(f"sqlite:///{tmp_path / 'status.db'}")
    migrate(engine)
    view = StatusView(engine, kafka, poll_seconds=0.1, refresh_seconds=0.2)
    stop = threading.Event()
    runner = threading.Thread(target=view.run, args=(stop,), daemon=True)
    runner.start()
    r1, r2 = invoice(wo="1001"), invoice(wo="1002", hours="1")
    try:
        publish_records(kafka, TOPIC_INVOICES, [(r.order_key.encode(), as_bytes(r)) for r in (r1, r2)])
        publish_records(kafka, TOPIC_DELIVERIES, [(r1.invoice_key.encode(), as_bytes(outcome(r1)))])
        publish_records(
            kafka,
            TOPIC_DLQ,
            [(r2.order_key.encode(), as_bytes(r2))],
            headers=[("dlq.stage", b"deliver"), ("dlq.error.class", b"auth"), ("dlq.tenant", b"acme-fm")],
        )
        publish_records(kafka, TOPIC_INVOICES, [(b"acme-fm:wo:1003", b"not json")])
        _wait(lambda: view.written == 5, "the first five records")
        ensure_topics(kafka, 2, [TOPIC_PAYMENTS])
        publish_records(
            kafka,
            TOPIC_PAYMENTS,
            [(r1.invoice_key.encode(), payment(r1, "partially_paid", amount="23.00", due="100.00"))],
        )
        _wait(lambda: view.written == 6, "the payment")
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert [(r.invoice_key, r.status) for r in list_invoices(engine, InvoiceFilter(tenant="acme-fm"))] == [
        ("acme-fm:wo:1001:r1", "partially_paid"),
        ("acme-fm:wo:1002:r1", "dead_lettered"),
    ]
    paid = get_invoice(engine, r1.invoice_key)
    assert (paid.amount_paid, paid.amount_due, paid.external_id) == (D("23.00"), D("100.00"), "X-ACME-WO-1001-R1")
    assert [(e.kind, e.name) for e in document_history(engine, "acme-fm:wo:1002").events] == [
        ("invoice", "r1"),
        ("dead_letter", "auth"),
    ]
    with engine.connect() as connection:
        unreadable = connection.execute(select(UNREADABLE.c.record_key, UNREADABLE.c.error)).all()
    assert [tuple(r) for r in unreadable] == [
        ("acme-fm:wo:1003", "not JSON: Expecting value: line 1 column 1 (char 0)")
    ]
    assert sum(load_offsets(engine).values()) == 6


def _wait(predicate, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_wrong_database_url_stops_the_command_naming_it(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker",
            "status-view",
            "--bootstrap-servers",
            "127.0.0.1:9",
            "--db",
            "mysql://u:pw@h/db",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "status database: mysql://u:***@h/db: the status view runs on sqlite or postgresql, not mysql" in " ".join(
        done.stderr.split()
    )
