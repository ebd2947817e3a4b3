"""The status view's record-to-row mapping and status rules (pure: no database, no Kafka)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest

from broker.statusdb.mapping import Consumed, InvoiceChange, derive_status, invoice_key_parts, map_record, merge
from broker.statusdb.schema import Money, UtcDateTime
from tests.status_view_support import as_bytes, cancel, invoice, not_billable, outcome, payment

T0 = 1_772_445_600_000  # 2026-03-02T10:00:00Z in ms


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def rec(topic, value, *, key=b"acme-fm:wo:1001", partition=0, offset=0, ms=T0, headers=()) -> Consumed:
    return Consumed(topic, partition, offset, key, value, tuple(headers), ms)


def apply(*changes: InvoiceChange) -> dict:
    row = None
    for change in changes:
        row = merge(row, change)
    return row


def test_an_invoice_record_sets_the_priced_columns_and_a_history_row():
    inv = invoice(hours="2.5")
    mapped = map_record(rec("billing.invoices", as_bytes(inv), partition=2, offset=7))
    assert mapped.unreadable is None and mapped.payment is None and mapped.dead_letter is None
    event = dict(mapped.event)
    detail = event.pop("detail")
    assert event == {
        "topic": "billing.invoices",
        "partition": 2,
        "offset": 7,
        "invoice_key": "acme-fm:wo:1001:r1",
        "order_key": "acme-fm:wo:1001",
        "tenant": "acme-fm",
        "kind": "invoice",
        "name": "r1",
        "at": at(T0),
    }
    assert detail["total"] == "123.00" and detail["lines"][0]["quantity"] == "2.5"
    (change,) = mapped.invoices
    row = merge(None, change)
    assert {k: v for k, v in row.items() if v is not None} == {
        "invoice_key": "acme-fm:wo:1001:r1",
        "order_key": "acme-fm:wo:1001",
        "tenant": "acme-fm",
        "client_id": "CLI-HAL",
        "client_name": "Hotel Atlântico Lisboa, S.A.",
        "billing_system": "xero",
        "document": "wo",
        "document_id": "1001",
        "revision": 1,
        "invoice_number": "ACME-WO-1001-R1",
        "currency": "EUR",
        "net_total": D("100.00"),
        "tax_total": D("23.00"),
        "total": D("123.00"),
        "issue_date": date(2026, 3, 2),
        "due_date": date(2026, 4, 1),
        "priced_state": "built",
        "priced_at": at(T0),
        "status": "built",
        "updated_at": at(T0),
    }


def test_an_outcome_read_before_its_invoice_gives_the_same_row():
    inv = invoice()
    priced = map_record(rec("billing.invoices", as_bytes(inv), ms=T0)).invoices
    delivered = map_record(rec("billing.deliveries", as_bytes(outcome(inv)), key=b"acme-fm:wo:1001:r1", ms=T0 + 90))
    assert delivered.event["kind"] == "outcome" and delivered.event["name"] == "created"
    in_order = apply(*priced, *delivered.invoices)
    reversed_ = apply(*delivered.invoices, *priced)
    assert in_order == reversed_
    assert in_order["status"] == "delivered"
    assert (in_order["outcome"], in_order["external_id"], in_order["external_number"]) == (
        "created",
        "X-ACME-WO-1001-R1",
        "ACME-WO-1001-R1",
    )
    assert (in_order["billed_total"], in_order["total"], in_order["attempts"]) == (D("123.00"), D("123.00"), 1)
    assert (in_order["outcome_at"], in_order["updated_at"]) == (at(T0 + 90), at(T0 + 90))


def test_an_outcome_alone_makes_a_row_from_its_key():
    inv = invoice(tenant="nordic-hvac", wo="A:7")  # an id with a colon: the order key is the key without :rN
    row = apply(
        *map_record(rec("billing.deliveries", as_bytes(outcome(inv, "dead_lettered", error="permanent: 400")))).invoices
    )
    assert (row["invoice_key"], row["order_key"], row["tenant"]) == (
        "nordic-hvac:wo:A:7:r1",
        "nordic-hvac:wo:A:7",
        "nordic-hvac",
    )
    assert (row["status"], row["error"], row["billing_system"], row["total"]) == (
        "dead_lettered",
        "permanent: 400",
        "xero",
        D("123.00"),
    )
    assert row["priced_state"] is None and row["client_id"] is None
    assert invoice_key_parts("acme-fm:wo:1001") == ("acme-fm", "acme-fm:wo:1001")


def test_a_later_outcome_keeps_the_billing_system_ids_it_does_not_carry():
    inv = invoice()
    created = map_record(rec("billing.deliveries", as_bytes(outcome(inv)), ms=T0)).invoices
    again = map_record(
        rec("billing.deliveries", as_bytes(outcome(inv, "cancelled", billed_total="0")), ms=T0 + 5)
    ).invoices
    row = apply(*created, *again)
    assert (row["status"], row["outcome"], row["external_id"], row["billed_total"]) == (
        "cancelled",
        "cancelled",
        "X-ACME-WO-1001-R1",
        D("0"),
    )


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # (kind, ms) in the order read -> status: the record that reached Kafka last wins, whatever the read order
        ((("priced", 0), ("outcome", 10), ("payment", 20)), "paid"),
        ((("payment", 20), ("outcome", 10), ("priced", 0)), "paid"),
        ((("priced", 0), ("payment", 20), ("cancel", 30)), "cancelled"),
        ((("cancel", 30), ("payment", 20), ("priced", 0)), "cancelled"),
        ((("priced", 0), ("outcome", 10), ("replaced", 40), ("payment", 20)), "replaced"),
        # a platform retried the old revision after the replacement: priced again, then already delivered
        ((("priced", 0), ("outcome", 10), ("replaced", 40), ("priced", 50), ("outcome", 60)), "replaced"),
        ((("outcome", 60), ("priced", 50), ("replaced", 40)), "replaced"),
        ((("priced", 0), ("replaced", 40), ("payment", 50)), "paid"),  # a payment read later still shows
        ((("priced", 0), ("dlq", 10)), "dead_lettered"),
        ((("dlq", 10), ("priced", 30)), "built"),  # replayed: priced again after the dead letter
        ((("priced", 10), ("outcome", 10)), "delivered"),  # the same millisecond: the outcome ranks higher
    ],
)
def test_the_status_is_the_state_of_the_latest_record(order, expected):
    inv = invoice()
    r2 = invoice(revision=2, hours="3")
    records = {
        "priced": rec("billing.invoices", as_bytes(inv)),
        "outcome": rec("billing.deliveries", as_bytes(outcome(inv))),
        "cancel": rec("billing.deliveries", as_bytes(outcome(inv, "cancelled", billed_total="0"))),
        "payment": rec("billing.payments", payment(inv), key=b"acme-fm:wo:1001:r1"),
        "replaced": rec(
            "billing.deliveries", as_bytes(outcome(r2, amendment="credited", replaced="acme-fm:wo:1001:r1"))
        ),
        "dlq": rec("billing.dlq", as_bytes(inv), headers=[("dlq.stage", b"deliver"), ("dlq.error.class", b"auth")]),
    }
    changes = []
    for kind, ms in order:
        base = records[kind]
        found = map_record(Consumed(base.topic, 0, 0, base.key, base.value, base.headers, T0 + ms)).invoices
        changes += [c for c in found if c.invoice_key == "acme-fm:wo:1001:r1"]
    assert apply(*changes)["status"] == expected


def test_a_replacing_outcome_marks_the_version_it_replaced():
    r1, r2 = invoice(), invoice(revision=2, hours="3")
    mapped = map_record(
        rec(
            "billing.deliveries",
            as_bytes(outcome(r2, amendment="credited", replaced=r1.invoice_key, credit_note_number="CN-1")),
            key=b"acme-fm:wo:1001:r2",
            ms=T0 + 50,
        )
    )
    own, other = mapped.invoices
    assert (own.invoice_key, own.kind, own.columns["replaces"], own.columns["credit_note_number"]) == (
        "acme-fm:wo:1001:r2",
        "outcome",
        "acme-fm:wo:1001:r1",
        "CN-1",
    )
    assert (other.invoice_key, other.kind, dict(other.columns)) == (
        "acme-fm:wo:1001:r1",
        "replaced",
        {"replaced_by": "acme-fm:wo:1001:r2", "replaced_at": at(T0 + 50)},
    )
    older = InvoiceChange(
        "acme-fm:wo:1001:r1", "replaced", at(T0), {"replaced_by": "acme-fm:wo:1001:r0", "replaced_at": at(T0)}
    )
    assert apply(other, older)["replaced_by"] == "acme-fm:wo:1001:r2"  # an older replacement read later: ignored


def test_not_billable_and_document_changes():
    nb = map_record(rec("billing.invoices", as_bytes(not_billable()), key=b"acme-fm:wo:1002"))
    row = apply(*nb.invoices)
    assert (row["status"], row["reason"], row["document_id"], row["revision"], row["total"]) == (
        "not_billable",
        "everything is covered by contract C-1",
        "1002",
        1,
        None,
    )
    assert (nb.event["kind"], nb.event["name"]) == ("not_billable", "covered_by_contract")
    change = map_record(rec("billing.invoices", as_bytes(cancel(invoice()))))
    assert change.invoices == ()  # a change is history only; its outcome (cancelled) sets the state
    assert (change.event["invoice_key"], change.event["kind"], change.event["name"]) == (
        "acme-fm:wo:1001:r1",
        "change",
        "cancel",
    )


def test_a_payment_record():
    inv = invoice()
    mapped = map_record(
        rec(
            "billing.payments",
            payment(inv, "partially_paid", amount="50.00", due="73.00"),
            key=b"acme-fm:wo:1001:r1",
            offset=3,
        )
    )
    assert mapped.payment == {
        "topic": "billing.payments",
        "partition": 0,
        "offset": 3,
        "event_id": "xero:payment:ACME-WO-1001-R1:partially_paid",
        "invoice_key": "acme-fm:wo:1001:r1",
        "tenant": "acme-fm",
        "type": "billing.invoice.partially_paid",
        "state": "partially_paid",
        "amount": D("50.00"),
        "amount_paid": D("50.00"),
        "amount_due": D("73.00"),
        "currency": "EUR",
        "billing_system": "xero",
        "external_id": "X-ACME-WO-1001-R1",
        "paid_at": datetime(2026, 3, 10, 9, 30, tzinfo=UTC),
        "recorded_at": at(T0),
    }
    row = apply(*mapped.invoices)
    assert (row["status"], row["amount_paid"], row["amount_due"]) == ("partially_paid", D("50.00"), D("73.00"))


def test_dead_letters_of_each_stage():
    inv = invoice()
    headers = [
        ("dlq.topic", b"billing.invoices"),
        ("dlq.partition", b"1"),
        ("dlq.offset", b"42"),
        ("dlq.stage", b"deliver"),
        ("dlq.error.class", b"permanent"),
        ("dlq.exception.type", b"PermanentError"),
        ("dlq.message", b"Xero 400: ContactID 'x' not found"),
        ("dlq.tenant", b"acme-fm"),
        ("dlq.connector", b"xero"),
        ("dlq.http.status", b"400"),
        ("dlq.attempts", b"1"),
        ("dlq.first.failure", b"2026-03-02T10:00:01+00:00"),
        ("dlq.replay.count", b"0"),
    ]
    mapped = map_record(rec("billing.dlq", as_bytes(inv), partition=3, offset=9, headers=headers))
    row = dict(mapped.dead_letter)
    assert row.pop("headers")["dlq.message"] == "Xero 400: ContactID 'x' not found"
    assert row.pop("value_preview").startswith('{"status":"invoice"')
    assert row == {
        "topic": "billing.dlq",
        "partition": 3,
        "offset": 9,
        "record_key": "acme-fm:wo:1001",
        "tenant": "acme-fm",
        "stage": "deliver",
        "error_class": "permanent",
        "exception_type": "PermanentError",
        "message": "Xero 400: ContactID 'x' not found",
        "connector": "xero",
        "http_status": 400,
        "attempts": 1,
        "replay_count": 0,
        "original_topic": "billing.invoices",
        "original_partition": 1,
        "original_offset": 42,
        "invoice_key": "acme-fm:wo:1001:r1",
        "order_key": "acme-fm:wo:1001",
        "value_size": len(as_bytes(inv)),
        "truncated": False,
        "first_failure": datetime(2026, 3, 2, 10, 0, 1, tzinfo=UTC),
        "dead_lettered_at": at(T0),
    }
    assert {k: v for k, v in apply(*mapped.invoices).items() if k.startswith("dead")} == {
        "dead_letter": "billing.dlq:3:9",
        "dead_letter_class": "permanent",
        "dead_lettered_at": at(T0),
    }
    assert mapped.event["detail"]["original"] == "billing.invoices:1:42"
    # a decode-stage dead letter: not JSON, NUL bytes (PostgreSQL refuses them in text), no invoice key
    garbage = map_record(
        rec(
            "billing.dlq",
            b"\x00{oops",
            key=b"acme-fm:wo:9",
            headers=[("dlq.stage", b"decode"), ("dlq.error.class", b"not_json")],
        )
    )
    assert (garbage.dead_letter["value_preview"], garbage.dead_letter["invoice_key"], garbage.invoices) == (
        "\ufffd{oops",
        None,
        (),
    )
    assert (garbage.event["order_key"], garbage.event["kind"], garbage.event["name"]) == (
        "acme-fm:wo:9",
        "dead_letter",
        "not_json",
    )


@pytest.mark.parametrize(
    ("topic", "value", "error"),
    [
        (
            "billing.invoices",
            b"{not json",
            "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("billing.invoices", b'{"status": "draft"}', "status='draft' is not invoice, not_billable or change"),
        (
            "billing.invoices",
            b'{"status": "invoice", "invoice_key": "k"}',
            "not a valid invoice: invoice_number: Field required (and 22 more)",
        ),
        ("billing.deliveries", None, "no value (a tombstone)"),
        (
            "billing.payments",
            b'{"type": "billing.invoice.paid", "data": {"amount": 12.5}}',
            "data.amount=12.5: amounts are decimal strings",
        ),
        (
            "billing.payments",
            b'{"type": "billing.invoice.paid", "data": {"amount": "1e999x"}}',
            "data.amount='1e999x' is not a decimal number",
        ),
        (
            "billing.payments",
            b'{"type": "invoice.paid", "data": {}}',
            "type='invoice.paid' is not a billing.invoice.* CloudEvent",
        ),
        ("other.topic", b"{}", "topic 'other.topic' is not one the status view reads"),
    ],
)
def test_an_unreadable_record_is_kept_with_the_reason(topic, value, error):
    mapped = map_record(rec(topic, value, offset=5))
    assert mapped.event is None and mapped.invoices == ()
    assert mapped.unreadable == {
        "topic": topic,
        "partition": 0,
        "offset": 5,
        "record_key": "acme-fm:wo:1001",
        "error": error,
        "at": at(T0),
    }


def test_money_and_times_refuse_what_would_lose_exactness():
    from sqlalchemy.dialects import postgresql, sqlite

    money, when = Money(), UtcDateTime()
    assert money.process_bind_param(D("123.40"), sqlite.dialect()) == "123.40"
    assert money.process_result_value("123.40", sqlite.dialect()) == D("123.40")
    with pytest.raises(TypeError, match=r"amount 1.5 \(float\) is not a finite Decimal"):
        money.process_bind_param(1.5, sqlite.dialect())
    with pytest.raises(TypeError, match="amount 'abc' is not a decimal number"):
        money.process_bind_param("abc", sqlite.dialect())
    lisbon_summer = datetime.fromisoformat("2026-07-01T12:00:00+01:00")
    assert when.process_bind_param(lisbon_summer, sqlite.dialect()) == datetime(2026, 7, 1, 11, 0)
    assert when.process_bind_param(lisbon_summer, postgresql.dialect()) == datetime(2026, 7, 1, 11, 0, tzinfo=UTC)
    assert when.process_result_value(datetime(2026, 7, 1, 11, 0), sqlite.dialect()) == datetime(
        2026, 7, 1, 11, 0, tzinfo=UTC
    )
    with pytest.raises(TypeError, match="is not a timezone-aware datetime"):
        when.process_bind_param(datetime(2026, 7, 1), sqlite.dialect())


def test_a_row_without_any_state_is_unknown():
    assert derive_status({}) == "unknown"
