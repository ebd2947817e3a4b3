"""The status database on SQLite and PostgreSQL: migrations, one transaction per batch with its
offsets, the compare-and-set against a second writer, and the read API the console uses.

The PostgreSQL cases start a throwaway server from Debian's ``postgresql`` package
(``tests/postgres_support.py``): skipped without it, saying what to install, failed when ``CI`` is set.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal as D

import pytest
from sqlalchemy import event, func, inspect, select

from broker.statusdb import store
from broker.statusdb.mapping import Consumed
from broker.statusdb.read import (
    InvoiceFilter,
    count_invoices,
    document_history,
    get_invoice,
    list_invoices,
    status_counts,
)
from broker.statusdb.schema import CONSUMER_OFFSETS, INVOICE_EVENTS, INVOICES, METADATA, PAYMENTS
from broker.statusdb.store import DatabaseError, OffsetConflictError, load_offsets, migrate, open_database, write_batch
from tests.postgres_support import fresh_database, temporary_postgres
from tests.status_view_support import as_bytes, invoice, not_billable, outcome, payment

T0 = 1_772_445_600_000  # 2026-03-02T10:00:00Z in ms


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@pytest.fixture(scope="module")
def postgres_server():
    with temporary_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'db' / 'status.db'}"  # the folder is created
    else:
        url = fresh_database(request.getfixturevalue("postgres_server"), f"status_{uuid.uuid4().hex[:12]}")
    engine = open_database(url)
    assert migrate(engine) == "0002"
    yield engine
    engine.dispose()


class Log:
    """Records appended to topic partitions with increasing offsets and timestamps."""

    def __init__(self):
        self.next: dict[tuple[str, int], int] = {}
        self.ms = T0

    def __call__(self, topic: str, value: bytes | None, key: str, *, partition: int = 0, headers=()) -> Consumed:
        offset = self.next.get((topic, partition), 0)
        self.next[(topic, partition)] = offset + 1
        self.ms += 10
        return Consumed(topic, partition, offset, key.encode(), value, tuple(headers), self.ms)


def test_the_migrated_schema_is_the_declared_one(engine):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, METADATA) == []
        assert context.get_current_revision() == "0002"
    assert migrate(engine) == "0002"  # again: nothing to do
    assert set(inspect(engine).get_table_names()) == {
        "alembic_version",
        "invoices",
        "invoice_events",
        "payments",
        "dead_letters",
        "unreadable_records",
        "consumer_offsets",
        "audit_log",  # the console's (0002)
    }


def _scenario() -> list[Consumed]:
    """acme-fm WO 1001 r1 delivered, paid, then replaced by r2 (credited); WO 1002 not billable;
    WO 1003 priced, waiting; nordic-hvac WO 2001 dead-lettered."""
    log = Log()
    r1, r2, w3 = invoice(), invoice(revision=2, hours="3"), invoice(wo="1003", hours="1")
    n1 = invoice(tenant="nordic-hvac", wo="2001", hours="10")
    dlq_headers = [("dlq.stage", b"deliver"), ("dlq.error.class", b"permanent"), ("dlq.tenant", b"nordic-hvac")]
    return [
        log("billing.invoices", as_bytes(r1), r1.order_key),
        log("billing.deliveries", as_bytes(outcome(r1)), r1.invoice_key, partition=1),
        log("billing.payments", payment(r1), r1.invoice_key),
        log("billing.invoices", as_bytes(not_billable()), "acme-fm:wo:1002"),
        log("billing.invoices", as_bytes(w3), w3.order_key, partition=2),
        log("billing.invoices", as_bytes(n1), n1.order_key, partition=3),
        log("billing.dlq", as_bytes(n1), n1.order_key, headers=dlq_headers),
        log("billing.deliveries", as_bytes(outcome(n1, "dead_lettered", error="permanent: 400")), n1.invoice_key),
        log("billing.invoices", as_bytes(r2), r2.order_key),
        log(
            "billing.deliveries",
            as_bytes(
                outcome(r2, amendment="credited", replaced=r1.invoice_key, credit_note_number="ACME-WO-1001-R1-CN")
            ),
            r2.invoice_key,
            partition=1,
        ),
    ]


def test_a_batch_and_what_the_console_reads(engine):
    ends = write_batch(engine, _scenario(), {})
    assert (
        ends
        == load_offsets(engine)
        == {
            ("billing.invoices", 0): 3,
            ("billing.invoices", 2): 1,
            ("billing.invoices", 3): 1,
            ("billing.deliveries", 0): 1,
            ("billing.deliveries", 1): 2,
            ("billing.payments", 0): 1,
            ("billing.dlq", 0): 1,
        }
    )
    rows = list_invoices(engine)
    assert [(r.invoice_key, r.status) for r in rows] == [  # the most recently changed first (r2's outcome: both)
        ("acme-fm:wo:1001:r1", "replaced"),
        ("acme-fm:wo:1001:r2", "delivered"),
        ("nordic-hvac:wo:2001:r1", "dead_lettered"),
        ("acme-fm:wo:1003:r1", "built"),
        ("acme-fm:wo:1002:r1", "not_billable"),
    ]
    assert status_counts(engine) == {"delivered": 1, "replaced": 1, "dead_lettered": 1, "built": 1, "not_billable": 1}
    assert status_counts(engine, InvoiceFilter(tenant="acme-fm")) == {
        "delivered": 1,
        "replaced": 1,
        "built": 1,
        "not_billable": 1,
    }
    keys = lambda flt: [r.invoice_key for r in list_invoices(engine, flt)]  # noqa: E731
    assert keys(InvoiceFilter(search="1001")) == ["acme-fm:wo:1001:r1", "acme-fm:wo:1001:r2"]
    assert keys(InvoiceFilter(search="acme-wo-1003")) == ["acme-fm:wo:1003:r1"]  # our number, any case
    assert keys(InvoiceFilter(search="%")) == []  # LIKE wildcards are searched for, not used
    assert keys(InvoiceFilter(status=["built", "dead_lettered"])) == ["nordic-hvac:wo:2001:r1", "acme-fm:wo:1003:r1"]
    assert keys(InvoiceFilter(billing_system="xero", client_id="CLI-HAL", tenants={"nordic-hvac"})) == [
        "nordic-hvac:wo:2001:r1"
    ]
    assert keys(InvoiceFilter(tenants=set())) == []
    assert count_invoices(engine, InvoiceFilter(tenant="acme-fm")) == 4
    assert [r.invoice_key for r in list_invoices(engine, limit=2, offset=1)] == [
        "acme-fm:wo:1001:r2",
        "nordic-hvac:wo:2001:r1",
    ]

    r1 = get_invoice(engine, "acme-fm:wo:1001:r1")
    assert (r1.total, r1.net_total, r1.tax_total, r1.currency) == (D("123.00"), D("100.00"), D("23.00"), "EUR")
    assert (r1.payment_state, r1.amount_paid, r1.amount_due) == ("paid", D("123.00"), D("0.00"))
    assert (r1.replaced_by, r1.replaced_at, r1.external_number) == (
        "acme-fm:wo:1001:r2",
        at(T0 + 100),
        "ACME-WO-1001-R1",
    )
    r2 = get_invoice(engine, "acme-fm:wo:1001:r2")
    assert (r2.total, r2.replaces, r2.amendment, r2.credit_note_number, r2.updated_at) == (
        D("147.60"),
        "acme-fm:wo:1001:r1",
        "credited",
        "ACME-WO-1001-R1-CN",
        at(T0 + 100),
    )
    dead = get_invoice(engine, "nordic-hvac:wo:2001:r1")
    assert (dead.dead_letter, dead.dead_letter_class, dead.error) == ("billing.dlq:0:0", "permanent", "permanent: 400")
    assert get_invoice(engine, "acme-fm:wo:404:r1") is None

    history = document_history(engine, "acme-fm:wo:1001")
    assert [v.invoice_key for v in history.versions] == ["acme-fm:wo:1001:r1", "acme-fm:wo:1001:r2"]
    assert [(e.id, e.invoice_key, e.kind, e.name, e.at) for e in history.events] == [
        ("billing.invoices:0:0", "acme-fm:wo:1001:r1", "invoice", "r1", at(T0 + 10)),
        ("billing.deliveries:1:0", "acme-fm:wo:1001:r1", "outcome", "created", at(T0 + 20)),
        ("billing.payments:0:0", "acme-fm:wo:1001:r1", "payment", "billing.invoice.paid", at(T0 + 30)),
        ("billing.invoices:0:2", "acme-fm:wo:1001:r2", "invoice", "r2", at(T0 + 90)),
        ("billing.deliveries:1:1", "acme-fm:wo:1001:r2", "outcome", "created", at(T0 + 100)),
    ]
    assert history.events[3].detail["lines"][0]["total"] == "147.60"
    assert [e.kind for e in document_history(engine, "nordic-hvac:wo:2001").events] == [
        "invoice",
        "dead_letter",
        "outcome",
    ]
    with engine.connect() as connection:
        amount = connection.execute(select(PAYMENTS.c.amount, PAYMENTS.c.paid_at)).one()
    assert tuple(amount) == (D("123.00"), datetime(2026, 3, 10, 9, 30, tzinfo=UTC))
    with pytest.raises(ValueError, match="limit=0 is not between 1 and 1000"):
        list_invoices(engine, limit=0)


def _counts(engine) -> tuple[int, int, dict]:
    with engine.connect() as connection:
        invoices = connection.execute(select(func.count()).select_from(INVOICES)).scalar_one()
        events = connection.execute(select(func.count()).select_from(INVOICE_EVENTS)).scalar_one()
    return invoices, events, load_offsets(engine)


def test_a_batch_that_fails_half_way_writes_nothing_and_is_written_once_later(engine, monkeypatch):
    records = _scenario()
    real = store._insert_ignoring_duplicates

    def crash_on_payments(connection, table, rows):
        if table is PAYMENTS:
            raise RuntimeError("crash after the invoices and their history were written")
        real(connection, table, rows)

    monkeypatch.setattr(store, "_insert_ignoring_duplicates", crash_on_payments)
    with pytest.raises(RuntimeError, match="crash after"):
        write_batch(engine, records, {})
    assert _counts(engine) == (0, 0, {})
    monkeypatch.setattr(store, "_insert_ignoring_duplicates", real)
    ends = write_batch(engine, records, {})
    assert _counts(engine) == (5, 10, ends)
    # the same records again past the offsets' guard (which a restart never does): still one row each
    assert write_batch(engine, records, ends) == ends
    assert _counts(engine)[:2] == (5, 10)


def test_a_second_writer_with_stale_offsets_writes_nothing(engine):
    first, second = _scenario()[:5], _scenario()[5:]
    ends = write_batch(engine, first, {})
    before = _counts(engine)
    with pytest.raises(OffsetConflictError, match=r"billing.deliveries:1: the stored offset is no longer None"):
        write_batch(engine, second, {})  # it believes nothing is stored yet
    stale = {**ends, ("billing.invoices", 0): 1}
    with pytest.raises(OffsetConflictError, match=r"billing.invoices:0: the stored offset is no longer 1"):
        write_batch(engine, second, stale)
    assert _counts(engine) == before
    write_batch(engine, second, ends)
    assert _counts(engine)[:2] == (5, 10)
    with engine.connect() as connection:
        rows = connection.execute(select(CONSUMER_OFFSETS.c.topic, CONSUMER_OFFSETS.c.updated_at)).all()
    assert all(updated.tzinfo is UTC for _, updated in rows)


def test_a_migration_that_fails_half_way_leaves_no_half_schema(tmp_path):
    engine = open_database(f"sqlite:///{tmp_path / 'status.db'}")
    created = []

    def fail_on_the_third_table(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("CREATE TABLE"):
            created.append(statement)
            if len(created) == 3:
                raise RuntimeError("killed while migrating")

    event.listen(engine, "before_cursor_execute", fail_on_the_third_table)
    with pytest.raises(RuntimeError, match="killed while migrating"):
        migrate(engine)
    event.remove(engine, "before_cursor_execute", fail_on_the_third_table)
    assert inspect(engine).get_table_names() == []
    assert migrate(engine) == "0002"
    assert "invoices" in inspect(engine).get_table_names()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "'not a url' is not a database URL (e.g. sqlite:///status.db)"),
        (
            "mysql://broker:s3cret@db/status",
            "mysql://broker:***@db/status: the status view runs on sqlite or postgresql, not mysql",
        ),
        ("postgresql+nodriver://broker@db/status", "postgresql+nodriver://broker@db/status: database driver missing"),
    ],
)
def test_a_wrong_database_url_is_refused_naming_it(url, message):
    with pytest.raises(DatabaseError) as caught:
        open_database(url)
    assert str(caught.value).startswith(message)
    assert "s3cret" not in str(caught.value)


def test_a_bare_postgresql_url_means_psycopg_3():
    engine = open_database("postgresql://broker:s3cret@127.0.0.1:1/status")
    assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    assert store.shown_url(engine) == "postgresql+psycopg://broker:***@127.0.0.1:1/status"


def test_a_record_the_database_refuses_is_kept_as_unreadable_and_the_others_are_written(engine):
    from broker.statusdb.schema import UNREADABLE

    log = Log()
    good, bad = invoice(wo="1001"), invoice(wo="1002")
    records = [
        log("billing.invoices", as_bytes(good), good.order_key),
        log("billing.deliveries", as_bytes(outcome(bad, attempts=10**20)), bad.invoice_key),  # beyond 64 bits
        log("billing.deliveries", as_bytes(outcome(good)), good.invoice_key),
    ]
    ends = write_batch(engine, records, {})
    assert ends == load_offsets(engine) == {("billing.invoices", 0): 1, ("billing.deliveries", 0): 2}
    assert [(r.invoice_key, r.status) for r in list_invoices(engine)] == [("acme-fm:wo:1001:r1", "delivered")]
    with engine.connect() as connection:
        (refused,) = connection.execute(select(UNREADABLE)).mappings().all()
    assert (refused["topic"], refused["offset"], refused["record_key"]) == (
        "billing.deliveries",
        0,
        "acme-fm:wo:1002:r1",
    )
    assert refused["error"].startswith("refused by the database: ")
