"""The operator console's tests share: a status database filled by the real mapping, three operators, the app.

The scenario (Kafka timestamps from 2026-03-02T10:00:00Z, 10 ms apart), checked against exact values:

* acme-fm WO 1001 r1: priced 123.00, delivered (Xero ``X-ACME-WO-1001-R1``), paid in full -> ``paid``;
* acme-fm WO 1002 r1: not billable (covered by contract C-1) -> ``not_billable``;
* acme-fm WO 1003 r1: 1 h, 49.20, client CLI-MON on Stripe, delivered, due 2026-04-01 -> ``delivered``, overdue;
* acme-fm WO 1004 r1: 5 h, 246.00, delivered, 100.00 paid, 146.00 due -> ``partially_paid``, overdue;
* nordic-hvac WO 2001 r1: 10 h, 492.00, dead-lettered by the deliver stage (permanent, HTTP 400) -> ``dead_lettered``.

Operators (password ``<name>-pw``): alice sees every tenant, bob acme-fm, carol nordic-hvac.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from broker.console.app import create_console_app
from broker.console.auth import Operator, SessionSigner, hash_password
from broker.statusdb.mapping import Consumed
from broker.statusdb.service import StatusView
from broker.statusdb.store import migrate, open_database, write_batch
from tests.status_view_support import as_bytes, invoice, not_billable, outcome, payment

T0 = 1_772_445_600_000  # 2026-03-02T10:00:00Z in ms
TODAY = date(2026, 4, 15)
SECRET = b"console-test-secret-0123456789-abcdef"
DLQ_HEADERS = (
    ("dlq.topic", b"billing.invoices"),
    ("dlq.partition", b"0"),
    ("dlq.offset", b"5"),
    ("dlq.stage", b"deliver"),
    ("dlq.error.class", b"permanent"),
    ("dlq.message", b"Xero 400: field 'Contact.ContactID': 'C-404' does not exist"),
    ("dlq.tenant", b"nordic-hvac"),
    ("dlq.connector", b"xero"),
    ("dlq.http.status", b"400"),
    ("dlq.attempts", b"1"),
    ("dlq.replay.count", b"0"),
)


def scenario() -> list[Consumed]:
    """The records of the module docstring's scenario, in the order they reached Kafka."""
    offsets: dict[tuple[str, int], itertools.count[int]] = {}
    clock = itertools.count(T0 + 10, 10)

    def rec(topic: str, value: bytes, key: str, headers: tuple[tuple[str, bytes], ...] = ()) -> Consumed:
        offset = next(offsets.setdefault((topic, 0), itertools.count()))
        return Consumed(topic, 0, offset, key.encode(), value, headers, next(clock))

    paid, monthly = (
        invoice(),
        invoice(wo="1003", hours="1").model_copy(
            update={"client_id": "CLI-MON", "client_name": "Monthly Client Lda", "billing_system": "stripe"}
        ),
    )
    partial, nordic = invoice(wo="1004", hours="5"), invoice(tenant="nordic-hvac", wo="2001", hours="10")
    return [
        rec("billing.invoices", as_bytes(paid), paid.order_key),
        rec("billing.deliveries", as_bytes(outcome(paid)), paid.invoice_key),
        rec("billing.payments", payment(paid), paid.invoice_key),
        rec("billing.invoices", as_bytes(not_billable()), "acme-fm:wo:1002"),
        rec("billing.invoices", as_bytes(monthly), monthly.order_key),
        rec("billing.deliveries", as_bytes(outcome(monthly)), monthly.invoice_key),
        rec("billing.invoices", as_bytes(partial), partial.order_key),
        rec("billing.deliveries", as_bytes(outcome(partial)), partial.invoice_key),
        rec("billing.payments", payment(partial, "partially_paid", amount="100.00", due="146.00"), partial.invoice_key),
        rec("billing.invoices", as_bytes(nordic), nordic.order_key),
        rec("billing.dlq", as_bytes(nordic), nordic.order_key, DLQ_HEADERS),
        rec(
            "billing.deliveries", as_bytes(outcome(nordic, "dead_lettered", error="permanent: 400")), nordic.invoice_key
        ),
    ]


def filled_database(folder: Path, records: list[Consumed] | None = None, *, url: str | None = None) -> Engine:
    """A migrated status database holding ``records`` (default: :func:`scenario`): SQLite in ``folder``, or ``url``."""
    engine = open_database(url or f"sqlite:///{folder / 'status.db'}")
    migrate(engine)
    write_batch(engine, scenario() if records is None else records, {})
    return engine


def operators() -> dict[str, Operator]:
    """alice (every tenant), bob (acme-fm), carol (nordic-hvac); passwords ``<name>-pw`` (cheap scrypt cost)."""
    tenants = {"alice": ["*"], "bob": ["acme-fm"], "carol": ["nordic-hvac"]}
    return {
        name: Operator(name, hash_password(f"{name}-pw", n=2**10), frozenset(seen)) for name, seen in tenants.items()
    }


def console_client(engine: Engine, **kw: Any) -> TestClient:
    """A test client of the console on ``engine`` for :func:`operators`, judging ``overdue`` on :data:`TODAY`."""
    app = create_console_app(engine, operators(), SessionSigner(SECRET), today=lambda: TODAY, **kw)
    return TestClient(app, follow_redirects=False)


@contextmanager
def status_view(bootstrap: str, folder: Path) -> Iterator[Engine]:
    """A migrated SQLite status database in ``folder`` that a :class:`StatusView` of ``bootstrap`` fills in a
    thread (fast polls, topics looked up again every half second) until the block ends; yields its engine."""
    engine = open_database(f"sqlite:///{folder / 'status.db'}")
    migrate(engine)
    view = StatusView(engine, bootstrap, poll_seconds=0.1, refresh_seconds=0.5)
    stop = threading.Event()
    runner = threading.Thread(target=view.run, args=(stop,), daemon=True)
    runner.start()
    try:
        yield engine
    finally:
        stop.set()
        runner.join(10)
        engine.dispose()
