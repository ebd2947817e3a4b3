"""The invoice lifecycle without Kafka: reopen / cancel events, their change records, content fingerprints,
corrections, ignored event types, and the Deliverer's and the ledger's decisions with a scripted connector
(broker/events.py, broker/pricing/changes.py, broker/pricing/fingerprint.py, broker/delivery/changes.py)."""

from __future__ import annotations

import copy
import hashlib
import json
import time
from datetime import date
from decimal import Decimal as D

import pytest
import yaml

from broker.config import DEFAULT_IGNORED_EVENT_TYPES, ConfigError, Tenant, parse_config
from broker.delivery import (
    AlreadyDelivered,
    Cancelled,
    Corrected,
    Dead,
    Delivered,
    DictLedgerStore,
    Held,
    InvoiceLedger,
    Park,
    RecordMeta,
    Superseded,
    Withheld,
    apply_change,
)
from broker.dlq import ContentConflictError
from broker.events import (
    EventDecodeError,
    QuoteCancelled,
    WorkOrderCancelled,
    WorkOrderReopened,
    parse_billable_event,
    parse_event,
)
from broker.pricing import PricingError, price_event
from broker.pricing.changes import document_change
from broker.pricing.fingerprint import _canonical as fingerprint_canonical
from broker.pricing.fingerprint import content_fingerprint
from connectors.sdk.errors import RetryableError
from connectors.sdk.interface import Capabilities, DeliveryResult
from connectors.sdk.invoice import DocumentChange
from connectors.sdk.lifecycle import Retirement
from tests.conftest import EXAMPLES
from tests.test_delivery_units import ScriptedConnector, deliverer_with, run
from tests.test_xero_connector import line, make_invoice

ORDER = "acme:wo:ACME-WO-1"


def change_event(kind: str = "maintenance.work_order.cancelled", **data) -> dict:
    body = {"work_order_id": "1001", "revision": 2, "client_id": "CLI-HAL", **data}
    if kind == "maintenance.quote.cancelled":
        body["quote_id"] = body.pop("work_order_id")
    return {
        "specversion": "1.0",
        "id": "evt-change-1",
        "source": "/platforms/test",
        "type": kind,
        "time": "2026-07-03T23:30:00Z",
        "tenant": "acme-fm",
        "data": body,
    }


# =========================================================================== events
@pytest.mark.parametrize(
    ("kind", "cls", "key"),
    [
        ("maintenance.work_order.reopened", WorkOrderReopened, "acme-fm:wo:1001:r2:reopen"),
        ("maintenance.work_order.cancelled", WorkOrderCancelled, "acme-fm:wo:1001:r2:cancel"),
        ("maintenance.quote.cancelled", QuoteCancelled, "acme-fm:qt:1001:r2:cancel"),
    ],
)
def test_change_events_parse_with_the_keys_of_their_document(kind, cls, key):
    event = parse_event(json.dumps(change_event(kind, reason="Client called it off")))
    assert type(event) is cls
    assert event.change_key == key
    assert event.partition_key == key.rsplit(":", 2)[0]  # the document's key: ordered with its invoices
    assert event.data.reason == "Client called it off"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"revision": True}, "field 'data.revision': Input should be a valid integer (got True)"),
        ({"revision": 0}, "field 'data.revision': Input should be greater than or equal to 1 (got 0)"),
        ({"reason": "x" * 501}, "field 'data.reason': String should have at most 500 characters (got 'xxxx"),
        ({"reason": ""}, "field 'data.reason': String should have at least 1 character (got '')"),
        (
            {"reason": "Stop\u202eevil"},
            "field 'data.reason': control character U+202E (RIGHT-TO-LEFT OVERRIDE) at position 4 is not allowed",
        ),
        ({"lines": []}, "field 'data.lines': Extra inputs are not permitted (got [])"),
    ],
)
def test_change_events_are_strict(data, message):
    with pytest.raises(EventDecodeError) as err:
        parse_event(json.dumps(change_event(**data)))
    assert err.value.error_class == "invalid"
    assert str(err.value).startswith(message)


def test_a_change_event_needs_its_revision_and_client():
    raw = change_event()
    del raw["data"]["revision"], raw["data"]["client_id"]
    with pytest.raises(EventDecodeError) as err:
        parse_event(json.dumps(raw))
    assert str(err.value) == "field 'data.revision': is required; field 'data.client_id': is required"


def test_previews_refuse_change_events_and_unknown_types_carry_their_type():
    with pytest.raises(EventDecodeError) as err:
        parse_billable_event(json.dumps(change_event()))
    assert str(err.value).startswith(
        "field 'type': maintenance.work_order.cancelled is a lifecycle change, not priced into an invoice"
    )
    with pytest.raises(EventDecodeError) as err:
        parse_event(json.dumps({**change_event(), "type": "maintenance.work_order.created"}))
    assert (err.value.error_class, err.value.event_type) == ("unknown_type", "maintenance.work_order.created")


# =========================================================================== change records (pricing)
def example_tenant(tenant_id: str = "acme-fm") -> Tenant:
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    return Tenant.model_validate(raw["tenants"][tenant_id])


def test_document_change_keeps_the_document_key_and_dates_credit_notes_in_the_tenant_zone():
    tenant = example_tenant()
    assert tenant.timezone == "Europe/Lisbon"
    change = document_change(parse_event(json.dumps(change_event())), "acme-fm", tenant)
    assert change == DocumentChange(
        action="cancel",
        change_key="acme-fm:wo:1001:r2:cancel",
        order_key="acme-fm:wo:1001",
        tenant="acme-fm",
        billing_system="xero",
        event_id="evt-change-1",
        event_type="maintenance.work_order.cancelled",
        event_time=change.event_time,
        document="wo",
        document_id="1001",
        revision=2,
        client_id="CLI-HAL",
        reason="WO 1001 r2 cancelled",  # no reason given
        issue_date=date(2026, 7, 4),  # 23:30 UTC is 00:30 on the 4th in Lisbon (summer time)
    )
    assert change.subject_key == "acme-fm:wo:1001:r2" and change.invoice_key == change.change_key
    reopened = document_change(
        parse_event(json.dumps(change_event("maintenance.quote.cancelled", reason="Out of budget"))),
        "acme-fm",
        tenant,
    )
    assert (reopened.document, reopened.reason, reopened.order_key) == ("qt", "Out of budget", "acme-fm:qt:1001")
    with pytest.raises(PricingError, match="tenant: event belongs to another tenant than 'nordic-hvac'"):
        document_change(parse_event(json.dumps(change_event())), "nordic-hvac", tenant)


# =========================================================================== fingerprints
def test_fingerprint_is_sha256_of_the_documented_canonical_json():
    inv = make_invoice(
        lines=[line("Labour", "1.50", "40.00", "60.00", "23", "13.80", "73.80")],
        net="60.00",
        tax="13.80",
        total="73.80",
        legal_notes=("Isento",),
        contact_id="C-1",
    )
    canonical = (
        '{"client_id":"CLI-HAL","client_name":"Hotel Atlântico Lisboa, S.A.",'
        '"contact_id":"C-1","currency":"EUR","legal_notes":["Isento"],'
        '"lines":[{"account_code":null,"description":"Labour","discount_percent":"0","kind":"labour",'
        '"net":"60","quantity":"1.5","tax":"13.8","tax_rate":"23","tax_type":null,"total":"73.8",'
        '"unit":"un","unit_price":"40"}],"net_total":"60","tax_inclusive":false,"tax_total":"13.8",'
        '"total":"73.8","v":1}'
    )
    assert content_fingerprint(inv) == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("24.50", "24.5"),
        ("100", "100"),
        ("1E+2", "100"),
        ("100.000", "100"),
        ("-0.00", "0"),
        ("0E-8", "0"),
        ("0.0000001", "0.0000001"),
        ("1E-7", "0.0000001"),
        ("-12.30", "-12.3"),
        ("12345678901234567890.10", "12345678901234567890.1"),
    ],
)
def test_fingerprint_writes_a_decimal_as_its_plain_value(value, text):
    assert fingerprint_canonical(D(value)) == text


def test_fingerprint_refuses_a_value_json_cannot_hold():
    with pytest.raises(TypeError, match="cannot fingerprint a value of type date"):
        fingerprint_canonical(date(2026, 3, 9))


def test_fingerprint_ignores_times_ids_and_cost_but_not_what_is_billed():
    inv = make_invoice()
    base = content_fingerprint(inv)
    same = inv.model_copy(
        update={
            "event_id": "evt-2",
            "event_time": inv.event_time.replace(hour=18),
            "issue_date": date(2026, 3, 9),
            "invoice_number": "OTHER",
            "notes": ["Site: S9"],
            "cost_total": D("99.00"),
            "lines": [ln.model_copy(update={"source": "time_entry:X", "cost": D("5")}) for ln in inv.lines],
        }
    )
    assert content_fingerprint(same) == base
    trailing = inv.model_copy(update={"total": D("209.4100")})  # the same value
    assert content_fingerprint(trailing) == base
    priced_up = inv.model_copy(update={"lines": [inv.lines[0].model_copy(update={"unit_price": D("43.00")})]})
    assert content_fingerprint(priced_up) != base
    assert content_fingerprint(inv.model_copy(update={"legal_notes": ["Reverse charge"]})) != base
    assert content_fingerprint(inv.model_copy(update={"client_name": "Hotel B"})) != base


def test_pricing_stamps_the_fingerprint_of_what_it_priced():
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    config = parse_config(raw)
    event = {
        **change_event("maintenance.work_order.completed"),
        "data": {
            "work_order_id": "1001",
            "client_id": "CLI-HAL",
            "site_id": "S1",
            "time_entries": [{"id": "TE-1", "technician_id": "T31", "duration_seconds": 3600}],
        },
    }
    invoice = price_event(parse_event(json.dumps(event)), "acme-fm", config.tenant("acme-fm"))
    assert invoice.fingerprint == content_fingerprint(invoice) and invoice.fingerprint.startswith("sha256:")
    later = {**event, "id": "evt-again", "time": "2026-07-04T08:00:00Z"}  # a re-sent webhook, later
    again = price_event(parse_event(json.dumps(later)), "acme-fm", config.tenant("acme-fm"))
    assert again.fingerprint == invoice.fingerprint


# =========================================================================== tenant configuration
def test_tenant_ignored_event_types_and_corrections_policy():
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    tenant = parse_config(raw).tenant("acme-fm")
    assert tenant.ignored_event_types == list(DEFAULT_IGNORED_EVENT_TYPES) and tenant.corrections == "amend"
    bad = copy.deepcopy(raw)
    bad["tenants"]["acme-fm"]["ignored_event_types"] = ["maintenance.x.y", "maintenance.quote.cancelled"]
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    assert (
        "tenants.acme-fm.ignored_event_types: Value error, item 1, 'maintenance.quote.cancelled', is an event type "
        "the broker handles (list only types it does not know)"
    ) in str(err.value)
    bad["tenants"]["acme-fm"]["ignored_event_types"] = ["WorkOrderCreated"]
    with pytest.raises(ConfigError, match=r"tenants.acme-fm.ignored_event_types.0: String should match pattern"):
        parse_config(bad)
    bad["tenants"]["acme-fm"]["ignored_event_types"] = []
    bad["tenants"]["acme-fm"]["corrections"] = "ignore"
    with pytest.raises(ConfigError, match=r"tenants.acme-fm.corrections: Input should be 'amend' or 'reject'"):
        parse_config(bad)


# =========================================================================== the deliverer: corrections
META = RecordMeta("billing.invoices", 0, 10)


def at(offset: int) -> RecordMeta:
    return RecordMeta("billing.invoices", 0, offset)


class LifecycleConnector(ScriptedConnector):
    """The scripted connector with ``cancel`` (answers from ``retirements``, then ``voided``) and a switch
    for ``capabilities.amendments``."""

    def __init__(self, script, ledger=None, retirements=(), amendments=True):
        super().__init__(script, ledger)
        self.retirements = list(retirements)
        self.capabilities = Capabilities(amendments=amendments, native_idempotency=True)

    async def cancel(self, previous, *, key, reason, issued):
        entry = self.ledger.entry(key) if self.ledger else {}
        self.calls.append(("cancel", previous.number, key, reason, issued, entry.get("state"), entry.get("uncertain")))
        step = self.retirements.pop(0) if self.retirements else "voided"
        if isinstance(step, BaseException):
            raise step
        if step == "credited":
            return Retirement("credited", previous.number, "PAID", D("209.41"), "cn-1", previous.number + "-CN")
        return Retirement(step, previous.number, "AUTHORISED")


def rev(n: int, *, total: str = "209.41", tax: str = "39.16", net: str = "170.25"):
    """Revision ``n`` of work order ACME-WO-1, fingerprinted; another total gives other content."""
    inv = make_invoice(f"ACME-WO-1-R{n}", key=f"{ORDER}:r{n}", net=net, tax=tax, total=total)
    inv = inv.model_copy(update={"revision": n, "order_key": ORDER, "document_id": "ACME-WO-1"})
    if total != "209.41":  # other content: one line carrying the whole amount
        inv = inv.model_copy(update={"lines": [line("Labour", "1", net, net, "23", tax, total)]})
    return inv.model_copy(update={"fingerprint": content_fingerprint(inv)})


def delivered(ledger: InvoiceLedger, inv, external_id: str, *, origin: str = "billing.invoices:0:5"):
    """``inv`` as the deliver stage records a delivery of it."""
    ledger.delivered(inv, DeliveryResult(inv.invoice_key, external_id, inv.invoice_number, True), 1, origin=origin)


def test_a_correction_amends_under_a_new_number_and_a_repeat_changes_nothing():
    ledger = InvoiceLedger(DictLedgerStore())
    r1 = rev(1)
    delivered(ledger, r1, "id-r1")
    fixed = rev(1, total="123.00", tax="23.00", net="100.00")  # same key, other content
    assert fixed.invoice_key == r1.invoice_key and fixed.fingerprint != r1.fingerprint
    conn = LifecycleConnector(["ok"], ledger)
    out = run(deliverer_with(conn).process(fixed, ledger, at(20)))
    assert isinstance(out, Corrected) and isinstance(out.outcome, Delivered)
    assert (out.invoice.invoice_key, out.invoice.invoice_number, out.invoice.corrects) == (
        f"{ORDER}:r1:c1",
        "ACME-WO-1-R1-C1",
        f"{ORDER}:r1",
    )
    assert conn.calls == [("amend", "ACME-WO-1-R1-C1", "ACME-WO-1-R1")]
    assert out.outcome.amendment["previous_invoice_key"] == f"{ORDER}:r1"
    ledger.delivered(
        out.invoice, out.outcome.result, 1, amendment=out.outcome.amendment, origin="billing.invoices:0:20"
    )
    billed = ledger.order(ORDER)["delivered"]
    assert (billed["invoice_key"], billed["total"], billed["correction"], billed["fingerprint"]) == (
        f"{ORDER}:r1:c1",
        "123.00",
        1,
        fixed.fingerprint,
    )
    d = deliverer_with(conn)
    again = run(d.process(fixed, ledger, at(21)))  # the same correction re-sent
    assert isinstance(again, AlreadyDelivered) and again.entry["external_number"] == "ACME-WO-1-R1-C1"
    old = run(d.process(r1, ledger, at(5)))  # the first content, consumed again after a crash
    assert isinstance(old, AlreadyDelivered) and old.entry["invoice_key"] == f"{ORDER}:r1:c1"
    assert len(conn.calls) == 1
    conn.script.append("ok")
    back = run(d.process(r1, ledger, at(30)))  # the first content sent again later: a second correction
    assert isinstance(back, Corrected) and back.invoice.invoice_number == "ACME-WO-1-R1-C2"
    assert conn.calls[-1] == ("amend", "ACME-WO-1-R1-C2", "ACME-WO-1-R1-C1")


def test_a_correction_the_tenant_rejects_is_a_content_conflict_naming_both_totals(monkeypatch):
    ledger = InvoiceLedger(DictLedgerStore())
    delivered(ledger, rev(1), "id-r1")
    conn = LifecycleConnector([], ledger)
    d = deliverer_with(conn)
    monkeypatch.setattr(d, "corrections", lambda tenant: "reject")
    out = run(d.process(rev(1, total="123.00", tax="23.00", net="100.00"), ledger, at(20)))
    assert isinstance(out, Dead) and out.error_class == "content_conflict" == ContentConflictError.error_class
    text = str(out.error)
    assert text.startswith(f"{ORDER}:r1 (ACME-WO-1-R1) arrived again with other content: total 123.00 EUR (sha256:")
    assert "while xero bills it as ACME-WO-1-R1 with total 209.41 EUR (sha256:" in text
    assert conn.calls == []


def test_a_correction_of_an_amended_revision_is_superseded():
    ledger = InvoiceLedger(DictLedgerStore())
    delivered(ledger, rev(1), "id-r1")
    delivered(ledger, rev(2), "id-r2")
    out = run(
        deliverer_with(LifecycleConnector([], ledger)).process(
            rev(1, total="1.23", tax="0.23", net="1.00"), ledger, META
        )
    )
    assert isinstance(out, Superseded) and out.by["invoice_key"] == f"{ORDER}:r2"


# =========================================================================== the deliverer: cancel and reopen
def cancel_change(revision: int = 1, action: str = "cancel") -> DocumentChange:
    return DocumentChange(
        action=action,
        change_key=f"{ORDER}:r{revision}:{action}",
        order_key=ORDER,
        tenant="acme",
        billing_system="xero",
        event_id="evt-c",
        event_type=f"maintenance.work_order.{action}ed" if action == "cancel" else "maintenance.work_order.reopened",
        event_time=make_invoice().event_time,
        document="wo",
        document_id="ACME-WO-1",
        revision=revision,
        client_id="CLI-HAL",
        reason="Client cancelled",
        issue_date=date(2026, 3, 5),
    )


def test_cancel_writes_pending_durably_then_retires_and_later_revisions_up_to_it_are_not_billed():
    store = DictLedgerStore()
    ledger = InvoiceLedger(store)
    delivered(ledger, rev(1), "id-r1")
    conn = LifecycleConnector([], ledger, retirements=["voided"])
    d = deliverer_with(conn)
    change = cancel_change(1)
    out = run(apply_change(d, change, ledger, META))
    assert isinstance(out, Cancelled)
    # the change was pending and uncertain (durably: one flush) when the billing system was called
    assert conn.calls == [
        ("cancel", "ACME-WO-1-R1", change.change_key, "Client cancelled", date(2026, 3, 5), "pending", True)
    ]
    assert store.flushes == 1
    assert (out.cancel["state"], out.cancel["action"], out.cancel["retired"]["external_id"]) == (
        "done",
        "voided",
        "id-r1",
    )
    assert ledger.entry(f"{ORDER}:r1")["state"] == "cancelled"
    assert ledger.entry(change.change_key)["state"] == "cancelled"
    assert ledger.order(ORDER)["delivered"] is None
    late = run(d.process(rev(1), ledger, META))  # the completion re-sent: not billed
    assert isinstance(late, Withheld) and (late.kind, late.billed, late.revision) == ("cancelled", None, 1)
    again = run(apply_change(d, change, ledger, META))  # the cancellation consumed again
    assert isinstance(again, Cancelled) and again.amendment is None and len(conn.calls) == 1
    conn.script.append("ok")
    r2 = run(d.process(rev(2, total="50.00", tax="9.35", net="40.65"), ledger, META))  # reinstated: created
    assert isinstance(r2, Delivered) and conn.calls[-1][0] == "deliver"


def test_a_cancel_interrupted_after_its_call_is_repeated_once_more_and_nothing_else():
    store = DictLedgerStore()
    ledger = InvoiceLedger(store)
    delivered(ledger, rev(1), "id-r1")
    change = cancel_change(1)
    ledger.withdraw(change)
    run(ledger.begin_attempt(change))  # the worker wrote pending, called, and died before recording it
    conn = LifecycleConnector([], ledger, retirements=["none"])  # the billing system had retired it
    out = run(apply_change(deliverer_with(conn), change, ledger, META))
    assert isinstance(out, Cancelled) and out.cancel["action"] == "none"
    assert [c[0] for c in conn.calls] == ["cancel"] and out.cancel["retired"]["external_number"] == "ACME-WO-1-R1"


def test_cancel_drops_parked_and_queued_revisions_and_a_create_only_connector_is_dead():
    ledger = InvoiceLedger(DictLedgerStore())
    delivered(ledger, rev(1), "id-r1")
    ledger.parked_at(rev(2), b"{}", META, due=time.time() + 5, reason="retryable", level=1)
    ledger.queue_behind(rev(3), b"{}", META)
    conn = LifecycleConnector([], ledger, amendments=False)
    out = run(apply_change(deliverer_with(conn), cancel_change(2), ledger, META))
    assert isinstance(out, Dead) and out.error_class == "permanent" and conn.calls == []
    assert str(out.error).startswith(
        f"{ORDER} was cancelled (revision 2) while ACME-WO-1-R1 (revision 1) is billed in fake; the fake connector "
        "cannot retire invoices (capabilities.amendments is false), so it still bills it"
    )
    assert ledger.parked(ORDER) == []
    assert [ledger.entry(f"{ORDER}:r{n}")["state"] for n in (1, 2, 3)] == ["delivered", "cancelled", "cancelled"]
    assert ledger.order(ORDER)["cancelled"]["revision"] == 3  # what was completed before the cancellation
    ledger.failed(cancel_change(2), out.error_class, out.error, 0)
    late = run(deliverer_with(conn).process(rev(3), ledger, META))
    assert isinstance(late, Withheld) and late.billed["external_number"] == "ACME-WO-1-R1"  # still billed


def test_a_cancel_the_billing_system_cannot_take_now_is_parked():
    ledger = InvoiceLedger(DictLedgerStore())
    delivered(ledger, rev(1), "id-r1")
    conn = LifecycleConnector([], ledger, retirements=[RetryableError("503")] * 50)
    out = run(apply_change(deliverer_with(conn), cancel_change(1), ledger, META))
    assert isinstance(out, Park) and out.reason == "retryable" and out.level == 1
    assert ledger.order(ORDER)["cancelled"]["state"] == "pending"
    assert ledger.entry(cancel_change(1).change_key)["attempts"] == len(conn.calls) >= 2


def test_reopen_holds_the_billed_invoice_until_a_later_revision_amends_it():
    ledger = InvoiceLedger(DictLedgerStore())
    delivered(ledger, rev(1), "id-r1")
    ledger.parked_at(rev(2), b"{}", META, due=time.time() + 5, reason="retryable", level=1)
    conn = LifecycleConnector(["ok"], ledger)
    d = deliverer_with(conn)
    out = run(apply_change(d, cancel_change(2, "reopen"), ledger, META))
    assert isinstance(out, Held) and out.billed["external_id"] == "id-r1"
    assert [e["invoice_key"] for e in out.dropped] == [f"{ORDER}:r2"]
    assert ledger.entry(f"{ORDER}:r2")["state"] == "held" and ledger.parked(ORDER) == []
    fixed_r1 = rev(1, total="10.00", tax="1.87", net="8.13")  # other content for a held revision
    held = run(d.process(fixed_r1, ledger, at(30)))
    assert isinstance(held, Withheld) and (held.kind, held.billed["external_number"]) == ("held", "ACME-WO-1-R1")
    r2 = run(d.process(rev(2, total="99.00", tax="18.51", net="80.49"), ledger, at(31)))
    assert isinstance(held, Withheld) and isinstance(r2, Withheld)  # revision 2 was reopened: still held
    r3 = run(d.process(rev(3, total="99.00", tax="18.51", net="80.49"), ledger, at(32)))
    assert isinstance(r3, Delivered) and conn.calls == [("amend", "ACME-WO-1-R3", "ACME-WO-1-R1")]
