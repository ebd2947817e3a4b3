"""Delivery building blocks without Kafka: rate limiter, idempotency keys, error table, ledger rules,
the Deliverer's decisions (with a scripted connector), DLQ helpers, settings, and the Xero connector's
amendments against the emulator (credit notes, deleting drafts) with spec validation."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import pytest

from broker.delivery import (
    AlreadyDelivered,
    Dead,
    Delivered,
    Deliverer,
    DictLedgerStore,
    InvoiceLedger,
    Park,
    RateLimiter,
    RecordMeta,
    Superseded,
    TenantState,
)
from broker.dlq import DeadLetter, DlqFilter, dlq_headers, redact, replay_group
from broker.settings import DeliverySettings, Settings
from connectors.sdk.errors import (
    AuthError,
    DuplicateError,
    PermanentError,
    Quota,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
    error_for_status,
    retry_after_seconds,
)
from connectors.sdk.idempotency import QUICKBOOKS_BATCH, STRIPE, generation, idempotency_key, make_key
from connectors.sdk.interface import Capabilities, DeliveryResult
from connectors.sdk.invoice import ExternalInvoice
from tests.test_xero_connector import CONTACT, ORG, REFRESH, SECRET, make_invoice, settings_for

META = RecordMeta("billing.invoices", 0, 7)


def run(coro):
    return asyncio.run(coro)


# =========================================================================== rate limiter
class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_sliding_window_counts_finish_times_and_margin():
    clock = FakeClock()
    lim = RateLimiter(3, 10.0, margin=0.5, clock=clock)

    async def go():
        slots = [await lim.acquire() for _ in range(3)]
        assert lim.delay() == pytest.approx(10.5)
        clock.now += 2.0  # the first call took 2 s (token refresh, queue): it counts from its finish
        lim.release(slots[0])
        for s in slots[1:]:
            lim.release(s)
        clock.now = 1010.6  # 10.6 s after the starts, but only 8.6 after the finishes
        assert lim.delay() == pytest.approx(12.5 - 10.6)
        clock.now = 1012.6
        assert lim.delay() == 0

    run(go())


def test_limiter_observes_server_quota_and_pauses():
    clock = FakeClock()
    lim = RateLimiter(60, 60.0, daily=5000, clock=clock)
    lim.observe(Quota(minute_remaining=10, day_remaining=4000))  # another client used 50 and 1000
    assert len(lim._stamps) == 50 and len(lim._day) == 1000
    lim.observe(Quota(minute_remaining=30))  # the server counts fewer than we do: nothing removed
    assert len(lim._stamps) == 50
    lim.pause(7)
    assert lim.delay() == pytest.approx(7)


# =========================================================================== idempotency keys
def test_idempotency_keys_from_business_identity_within_limits():
    key = idempotency_key("acme", "xero", "acme:wo:1:r2", "create")
    assert key == "acme:xero:acme:wo:1:r2:create"
    assert idempotency_key("acme", "xero", "acme:wo:1:r2", "credit") != key  # one key per step
    long_key = idempotency_key("acme", "xero", "acme:wo:" + "x" * 200 + ":r1", "create")
    assert len(long_key) <= 128 and long_key.endswith(long_key[-64:]) and ":sha256:" in long_key
    assert len(idempotency_key("acme", "qbo", "acme:wo:WO-2026-000123:r1", "create", QUICKBOOKS_BATCH)) == 36
    assert idempotency_key("açme", "stripe", "açme:wo:1:r1", "create", STRIPE) != idempotency_key(
        "acme", "stripe", "acme:wo:1:r1", "create", STRIPE
    )
    assert make_key("a b", STRIPE).startswith("a_b:sha256:")
    with generation(2):
        assert idempotency_key("acme", "xero", "acme:wo:1:r2", "create") == "acme:xero:acme:wo:1:r2:create.r2"
    assert idempotency_key("acme", "xero", "acme:wo:1:r2", "create") == key
    with pytest.raises(ValueError):
        idempotency_key("acme", "xero", "acme:wo:1:r2", "create:x")


# =========================================================================== error table
def test_default_status_table_and_retry_after():
    assert isinstance(error_for_status(503, "x"), RetryableError)
    assert isinstance(error_for_status(500, "x", method="PUT"), UncertainOutcomeError)
    assert not isinstance(error_for_status(500, "x", method="GET"), UncertainOutcomeError)
    assert isinstance(error_for_status(504, "x"), UncertainOutcomeError)
    assert isinstance(error_for_status(409, "x"), DuplicateError)
    assert isinstance(error_for_status(422, "x"), PermanentError)
    assert isinstance(error_for_status(401, "x"), AuthError)
    assert isinstance(error_for_status(418, "x"), PermanentError)
    limited = error_for_status(429, "x", retry_after=12)
    assert isinstance(limited, RateLimitedError) and limited.retry_after == 12 and limited.http_status == 429
    assert error_for_status(200, "x") is None
    assert error_for_status(409, "x", overrides={409: None}) is None
    assert isinstance(error_for_status(422, "x", overrides={422: RetryableError}), RetryableError)
    assert (
        retry_after_seconds("30") == 30 and retry_after_seconds(None, 60) == 60 and retry_after_seconds("soon", 5) == 5
    )
    later = datetime.now(UTC) + timedelta(seconds=90)
    assert 85 <= retry_after_seconds(format_datetime(later, usegmt=True)) <= 91
    assert Quota.from_headers({"X-MinLimit-Remaining": "59", "X-DayLimit-Remaining": "4999"}) == Quota(59, 4999)
    assert Quota.from_headers({}) is None


# =========================================================================== ledger
def test_ledger_pending_is_durable_before_the_call_and_orders_queue():
    store = DictLedgerStore()
    ledger = InvoiceLedger(store)
    inv = make_invoice("ACME-WO-1-R1", key="acme:wo:1:r1")
    run(ledger.begin_attempt(inv))
    assert store.flushes == 1 and ledger.is_uncertain("acme:wo:1:r1")
    run(ledger.begin_attempt(inv))  # already pending and durable: no second write
    assert store.flushes == 1
    ledger.parked_at(inv, b"{}", META, due=time.time() + 5, reason="retryable", level=1)
    r2 = make_invoice("ACME-WO-1-R2", key="acme:wo:1:r2").model_copy(update={"revision": 2, "order_key": inv.order_key})
    ledger.queue_behind(r2, b'{"x":1}', META)
    assert ledger.parked(inv.order_key) == ["acme:wo:1:r1", "acme:wo:1:r2"]
    assert ledger.entry("acme:wo:1:r2")["state"] == "queued" and ledger.entry("acme:wo:1:r2")["payload"] == '{"x":1}'
    ledger.delivered(inv, DeliveryResult(inv.invoice_key, "id-1", "ACME-WO-1-R1", True), 2)
    assert ledger.parked(inv.order_key) == ["acme:wo:1:r2"]
    assert ledger.latest_delivered(r2)["external_id"] == "id-1"
    assert ledger.entry("acme:wo:1:r1")["state"] == "delivered" and "payload" not in ledger.entry("acme:wo:1:r1")


def test_ledger_queue_is_changed_only_through_its_public_rules():
    """What the deliver stage does to a work order's queue: drop an unreadable key, take one out."""
    ledger = InvoiceLedger(DictLedgerStore())
    inv = make_invoice("ACME-WO-1-R1", key="acme:wo:1:r1")
    r2 = make_invoice("ACME-WO-1-R2", key="acme:wo:1:r2").model_copy(update={"revision": 2, "order_key": inv.order_key})
    ledger.parked_at(inv, b"{}", META, due=time.time() + 5, reason="retryable", level=1)
    ledger.queue_behind(r2, b"{}", META)
    ledger.drop_queued(inv.order_key, "acme:wo:1:r2")
    assert ledger.parked(inv.order_key) == ["acme:wo:1:r1"]
    assert ledger.entry("acme:wo:1:r2")["state"] == "queued"  # the entry itself is left alone
    ledger.unqueue(inv)
    assert ledger.order(inv.order_key) == {"parked": [], "delivered": None}


def test_delivery_package_does_not_import_the_deliver_stage():
    """The dependency goes one way: broker.deliver_stage uses broker.delivery, never the reverse."""
    import subprocess
    import sys

    code = "import sys, broker.delivery; print('broker.deliver_stage' in sys.modules, 'faust' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


# =========================================================================== the deliverer
class ScriptedConnector:
    """Answers ``deliver`` with the scripted results/exceptions in turn; records calls and ledger states."""

    name = "fake"
    capabilities = Capabilities(amendments=True, native_idempotency=True)

    def __init__(self, script, ledger=None, existing=None):
        self.script = list(script)
        self.ledger = ledger
        self.existing = existing
        self.calls: list[tuple] = []
        self.settings = None

    async def deliver(self, invoice):
        state = self.ledger.entry(invoice.invoice_key) if self.ledger else {}
        self.calls.append(("deliver", invoice.invoice_number, state.get("state"), state.get("uncertain")))
        return self._next(invoice)

    async def amend(self, invoice, previous: ExternalInvoice):
        self.calls.append(("amend", invoice.invoice_number, previous.number))
        result = self._next(invoice)
        return DeliveryResult(
            result.invoice_key,
            result.external_id,
            result.external_number,
            True,
            details={"amendment": "credited", "credit_note_number": previous.number + "-CN"},
        )

    def _next(self, invoice):
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return DeliveryResult(invoice.invoice_key, f"id-{invoice.invoice_number}", invoice.invoice_number, True)

    async def find(self, number):
        self.calls.append(("find", number))
        return self.existing

    async def aclose(self):
        pass


def ours(invoice, external_id: str) -> ExternalInvoice:
    """``invoice`` as the billing system holds it when we created it: our marker and our total."""
    return ExternalInvoice(external_id, invoice.invoice_number, invoice.total, "AUTHORISED", marker=invoice.invoice_key)


def deliverer_with(connector, **policy) -> Deliverer:
    d = Deliverer(
        config=None,
        policy=DeliverySettings(
            **{"retry_budget": 0.5, "retry_initial": 0.01, "retry_max": 0.02, "park_delays": (1.0, 5.0), **policy}
        ),
    )
    d._tenants["acme"] = TenantState("acme", "fake", connector, RateLimiter(1000, 60.0), asyncio.Semaphore(5))
    return d


def test_success_writes_pending_durably_before_calling():
    ledger = InvoiceLedger(DictLedgerStore())
    conn = ScriptedConnector(["ok"], ledger)
    out = run(deliverer_with(conn).process(make_invoice(), ledger, META))
    assert isinstance(out, Delivered) and out.attempts == 1 and not out.reconciled
    assert conn.calls == [("deliver", "ACME-WO-1-R1", "pending", True)]
    assert ledger.store.flushes == 1


def test_uncertain_outcome_is_reconciled_by_lookup_before_any_retry():
    ledger = InvoiceLedger(DictLedgerStore())
    inv = make_invoice()
    conn = ScriptedConnector([UncertainOutcomeError("read timeout")], ledger, existing=ours(inv, "ext-9"))
    out = run(deliverer_with(conn).process(inv, ledger, META))
    assert isinstance(out, Delivered) and out.reconciled and out.result.external_id == "ext-9"
    assert [c[0] for c in conn.calls] == ["deliver", "find"]


def test_crash_after_pending_means_lookup_first():
    ledger = InvoiceLedger(DictLedgerStore())
    inv = make_invoice()
    run(ledger.begin_attempt(inv))  # a worker wrote pending, called, and died
    conn = ScriptedConnector([], ledger, existing=ours(inv, "ext-1"))
    out = run(deliverer_with(conn).process(inv, ledger, META))
    assert isinstance(out, Delivered) and out.reconciled and conn.calls == [("find", inv.invoice_number)]


def test_a_foreign_document_found_after_a_crash_is_a_number_conflict():
    ledger = InvoiceLedger(DictLedgerStore())
    inv = make_invoice()
    run(ledger.begin_attempt(inv))  # a worker wrote pending, called, and died
    manual = ExternalInvoice("ext-m", inv.invoice_number, Decimal("999.00"), "AUTHORISED")
    out = run(deliverer_with(ScriptedConnector([], ledger, existing=manual)).process(inv, ledger, META))
    assert isinstance(out, Dead)
    assert out.error_class == "number_conflict"
    assert f"Total in the billing system: 999.00 EUR; ours: {inv.total} EUR" in str(out.error)
    assert ledger.entry(inv.invoice_key)["state"] == "pending"  # never recorded as delivered


def test_retryable_exhausted_parks_and_opens_the_tenant_circuit():
    ledger = InvoiceLedger(DictLedgerStore())
    conn = ScriptedConnector([RetryableError("503")] * 50, ledger)
    d = deliverer_with(conn)
    out = run(d.process(make_invoice(), ledger, META))
    assert isinstance(out, Park) and out.reason == "retryable" and out.level == 1 and out.attempted
    assert out.meta.parks == 1 and out.meta.first_failure is not None and out.meta.attempts >= 2
    assert d._tenants["acme"].circuit_open()
    calls = len(conn.calls)
    other = run(d.process(make_invoice("ACME-WO-2-R1", key="acme:wo:2:r1"), ledger, META))
    assert isinstance(other, Park) and not other.attempted and len(conn.calls) == calls  # no call while open
    assert not ledger.is_uncertain("acme:wo:1:r1")  # 503s said nothing was stored


def test_rate_limited_short_waits_long_parks():
    ledger = InvoiceLedger(DictLedgerStore())
    conn = ScriptedConnector([RateLimitedError("429", retry_after=0.05), "ok"], ledger)
    assert isinstance(run(deliverer_with(conn).process(make_invoice(), ledger, META)), Delivered)
    conn = ScriptedConnector([RateLimitedError("429 day", retry_after=3600)], ledger)
    out = run(deliverer_with(conn).process(make_invoice("ACME-WO-3-R1", key="acme:wo:3:r1"), ledger, META))
    assert isinstance(out, Park) and out.reason == "rate_limited" and out.due - time.time() > 3500
    assert out.level == 2  # the longest retry topic


def test_permanent_is_dead_at_once_and_auth_stops_the_tenant():
    ledger = InvoiceLedger(DictLedgerStore())
    conn = ScriptedConnector([PermanentError("bad contact", http_status=400)], ledger)
    out = run(deliverer_with(conn).process(make_invoice(), ledger, META))
    assert isinstance(out, Dead) and out.error_class == "permanent" and out.attempts == 1 and out.http_status == 400
    conn = ScriptedConnector([AuthError("refused after refresh", http_status=401)], ledger)
    d = deliverer_with(conn)
    out = run(d.process(make_invoice("ACME-WO-4-R1", key="acme:wo:4:r1"), ledger, META))
    assert isinstance(out, Dead) and out.error_class == "auth"
    out = run(d.process(make_invoice("ACME-WO-5-R1", key="acme:wo:5:r1"), ledger, META))
    assert isinstance(out, Dead) and out.error_class == "auth" and len(conn.calls) == 1


def test_duplicate_is_success_with_the_existing_id():
    ledger = InvoiceLedger(DictLedgerStore())
    inv = make_invoice()
    conn = ScriptedConnector([DuplicateError("409", existing=ours(inv, "ext-7"))], ledger)
    out = run(deliverer_with(conn).process(inv, ledger, META))
    assert isinstance(out, Delivered) and out.result.external_id == "ext-7" and not out.result.created


def test_a_duplicate_number_held_by_someone_else_is_a_number_conflict():
    ledger = InvoiceLedger(DictLedgerStore())
    inv = make_invoice()
    theirs = ExternalInvoice("ext-7", inv.invoice_number, inv.total, "AUTHORISED", marker=None)  # no marker
    conn = ScriptedConnector([DuplicateError("409", existing=theirs)], ledger)
    out = run(deliverer_with(conn).process(inv, ledger, META))
    assert isinstance(out, Dead)
    assert out.error_class == "number_conflict"
    assert f"does not carry our marker 'broker:{inv.invoice_key}'" in str(out.error)


def test_new_revision_amends_and_an_older_one_is_superseded():
    ledger = InvoiceLedger(DictLedgerStore())
    order = {"order_key": "acme:wo:ACME-WO-1"}
    r1 = make_invoice("ACME-WO-1-R1", key="acme:wo:ACME-WO-1:r1").model_copy(update=order)
    ledger.delivered(r1, DeliveryResult(r1.invoice_key, "id-r1", "ACME-WO-1-R1", True), 1)
    r2 = make_invoice("ACME-WO-1-R2", key="acme:wo:ACME-WO-1:r2").model_copy(update={"revision": 2, **order})
    conn = ScriptedConnector(["ok"], ledger)
    out = run(deliverer_with(conn).process(r2, ledger, META))
    assert isinstance(out, Delivered) and conn.calls[0] == ("amend", "ACME-WO-1-R2", "ACME-WO-1-R1")
    assert out.amendment["action"] == "credited" and out.amendment["previous_invoice_key"] == r1.invoice_key
    ledger.delivered(r2, out.result, 1, amendment=out.amendment)
    assert ledger.entry(r1.invoice_key)["superseded_by"] == r2.invoice_key
    late_r1 = make_invoice("ACME-WO-1-R1", key="acme:wo:ACME-WO-1:r1b").model_copy(update={"revision": 1, **order})
    assert isinstance(run(deliverer_with(conn).process(late_r1, ledger, META)), Superseded)
    assert isinstance(run(deliverer_with(conn).process(r2, ledger, META)), AlreadyDelivered)


def test_parking_stops_after_park_max_seconds():
    d = deliverer_with(ScriptedConnector([]), park_max_seconds=60)
    meta = RecordMeta("billing.invoices", 0, 1, parks=5, first_failure=time.time() - 59)
    out = d.park_decision(None, meta, "retryable", error=RetryableError("503"))
    assert isinstance(out, Dead) and out.error_class == "retryable"


# =========================================================================== DLQ helpers
def test_dlq_headers_filters_and_replay_group(monkeypatch):
    monkeypatch.setenv("XERO_CLIENT_SECRET", "very-secret-value")
    headers = dict(
        dlq_headers(
            topic="billing.invoices",
            partition=2,
            offset=9,
            stage="deliver",
            error_class="permanent",
            exc=PermanentError("Bearer abc.def failed with very-secret-value"),
            tenant="acme",
            connector="xero",
            http_status=400,
            attempts=1,
            idempotency_key="k",
            replay_count=2,
        )
    )
    assert set(headers) == {
        "dlq.topic",
        "dlq.partition",
        "dlq.offset",
        "dlq.stage",
        "dlq.error.class",
        "dlq.exception.type",
        "dlq.message",
        "dlq.tenant",
        "dlq.connector",
        "dlq.http.status",
        "dlq.attempts",
        "dlq.first.failure",
        "dlq.idempotency.key",
        "dlq.replay.count",
    }
    assert b"very-secret-value" not in headers["dlq.message"] and b"abc.def" not in headers["dlq.message"]
    assert redact("token Bearer xyz") == "token Bearer [REDACTED]"
    record = DeadLetter(
        "billing.dlq", 0, 3, b"acme:wo:1", b"{}", {k: v.decode() for k, v in headers.items()}, int(time.time() * 1000)
    )
    assert record.target_topic == "billing.invoices" and record.replay_count == 2 and record.id == "billing.dlq:0:3"
    assert DlqFilter(tenant="acme", error_class="permanent").matches(record)
    assert not DlqFilter(connector="quickbooks").matches(record)
    assert not DlqFilter(since=datetime.now(UTC) + timedelta(minutes=1)).matches(record)
    enrich = DeadLetter("billing.dlq", 0, 4, None, b"x", {"dlq.stage": "enrich"}, 0)
    assert enrich.target_topic == "maintenance.events"
    assert replay_group("app", DlqFilter()) == "app-dlq-replay"
    assert (
        replay_group("app", DlqFilter(tenant="a"))
        == replay_group("app", DlqFilter(tenant="a"))
        != replay_group("app", DlqFilter(tenant="b"))
    )


def test_delivery_settings_from_env():
    s = Settings.from_env({"BROKER_PARK_DELAYS": "5, 30", "BROKER_RETRY_BUDGET": "3", "BROKER_DLQ_REPLAY_LIMIT": "1"})
    assert s.delivery.park_delays == (5.0, 30.0) and s.delivery.retry_budget == 3 and s.delivery.dlq_replay_limit == 1
    assert s.all_topics[-2:] == ("billing.invoices.retry.1", "billing.invoices.retry.2")
    with pytest.raises(ValueError, match="BROKER_PARK_DELAYS"):
        Settings.from_env({"BROKER_PARK_DELAYS": "5,-1"})
    with pytest.raises(ValueError, match="BROKER_RETRY_BUDGET"):
        Settings.from_env({"BROKER_RETRY_BUDGET": "soon"})


# =========================================================================== Xero amendments (emulator)
@pytest.fixture
def xero_emu(xero_validator, monkeypatch):
    from connectors.xero.emulator import XeroEmulator

    monkeypatch.setenv("XERO_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("XERO_REFRESH_TOKEN", REFRESH)
    monkeypatch.setenv("BROKER_TOKEN_STORE", "memory")
    emu = XeroEmulator(
        request_validator=xero_validator,
        client_secret=SECRET,
        refresh_token=REFRESH,
        contacts={ORG: {CONTACT: "Hotel"}},
    ).start()
    yield emu
    emu.stop()
    assert emu.validation_failures == [] and emu.server_errors == []


def _amend(emu, status: str):
    from connectors.xero import XeroConnector

    async def go():
        c = XeroConnector(settings_for(emu, invoice_status=status), tenant="acme")
        try:
            r1 = await c.deliver(make_invoice("ACME-WO-9-R1", key="acme:wo:ACME-WO-9:r1"))
            r2 = make_invoice("ACME-WO-9-R2", key="acme:wo:ACME-WO-9:r2").model_copy(update={"revision": 2})
            first = await c.amend(r2, ExternalInvoice(r1.external_id, r1.external_number))
            again = await c.amend(r2, ExternalInvoice(r1.external_id, r1.external_number))  # a crash + retry
            return first, again
        finally:
            await c.aclose()

    return run(go())


def test_xero_amendment_of_an_unpaid_authorised_invoice_voids_it(xero_emu):
    first, again = _amend(xero_emu, "AUTHORISED")
    assert first.details["amendment"] == "voided"
    assert "credit_note_number" not in first.details
    assert again.details["amendment"] == "none"  # already voided: a repeat changes nothing
    assert xero_emu.credit_notes() == []
    status = {i["InvoiceNumber"]: i["Status"] for i in xero_emu.invoices()}
    assert status == {"ACME-WO-9-R1": "VOIDED", "ACME-WO-9-R2": "AUTHORISED"}


def test_xero_amendment_of_a_draft_deletes_it(xero_emu):
    first, again = _amend(xero_emu, "DRAFT")
    assert first.details["amendment"] == "deleted" and again.details["amendment"] == "none"
    statuses = {i["InvoiceNumber"]: i["Status"] for i in xero_emu.invoices()}
    assert statuses == {"ACME-WO-9-R1": "DELETED", "ACME-WO-9-R2": "DRAFT"}
    assert xero_emu.credit_notes() == []


def test_emulator_status_rules_credit_note_uniqueness_and_outage(xero_emu):
    import json
    import urllib.error
    import urllib.request

    from connectors.xero import XeroConnector

    async def go():
        c = XeroConnector(settings_for(xero_emu), tenant="acme")
        try:
            inv = await c.deliver(make_invoice("ACME-WO-8-R1", key="acme:wo:ACME-WO-8:r1"))
            url = f"{xero_emu.url}/api.xro/2.0/Invoices/{inv.external_id}"
            body = json.dumps({"Invoices": [{"InvoiceID": inv.external_id, "Status": "DELETED"}]}).encode()
            resp = await c.request("POST", url, content=body, headers={"Content-Type": "application/json"})
            assert (
                resp.status_code == 400 and "cannot be changed to DELETED" in resp.text
            )  # AUTHORISED: void, not delete
            body = json.dumps({"Invoices": [{"InvoiceID": inv.external_id, "Status": "VOIDED"}]}).encode()
            resp = await c.request("POST", url, content=body, headers={"Content-Type": "application/json"})
            assert resp.status_code == 200 and resp.json()["Invoices"][0]["Status"] == "VOIDED"
            note = {
                "Type": "ACCRECCREDIT",
                "Contact": {"ContactID": CONTACT},
                "Date": "2026-03-02",
                "CreditNoteNumber": "CN-X",
                "LineItems": [
                    {"Description": "x", "Quantity": 1, "UnitAmount": 10, "AccountCode": "200", "TaxType": "OUTPUT2"}
                ],
            }
            ok = await c.request(
                "PUT",
                f"{xero_emu.url}/api.xro/2.0/CreditNotes",
                content=json.dumps({"CreditNotes": [note]}).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert ok.status_code == 200 and str(ok.json()["CreditNotes"][0]["Total"]) == "12.3"
            dup = await c.request(
                "PUT",
                f"{xero_emu.url}/api.xro/2.0/CreditNotes",
                content=json.dumps({"CreditNotes": [note]}).encode(),
                headers={"Content-Type": "application/json"},
            )
            assert dup.status_code == 400 and "Credit Note # must be unique." in dup.text
            xero_emu.outage(0.5, tenant_id=ORG)
            with pytest.raises(RetryableError):
                await c.find("ACME-WO-8-R1")
            await asyncio.sleep(0.6)
            assert (await c.find("ACME-WO-8-R1")).status == "VOIDED"
        finally:
            await c.aclose()

    run(go())
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(urllib.request.Request(f"{xero_emu.url}/_emulator/outage", data=b"{}", method="POST"))


def test_uncertain_without_lookup_replays_the_key_or_asks_an_operator():
    ledger = InvoiceLedger(DictLedgerStore())
    conn = ScriptedConnector([UncertainOutcomeError("timeout"), "ok"], ledger)
    conn.capabilities = Capabilities(native_idempotency=True, lookup_by_reference=False)
    out = run(deliverer_with(conn).process(make_invoice(), ledger, META))
    assert isinstance(out, Delivered) and [c[0] for c in conn.calls] == ["deliver", "deliver"]  # same key again
    ledger = InvoiceLedger(DictLedgerStore())
    conn = ScriptedConnector([UncertainOutcomeError("timeout")], ledger)
    conn.capabilities = Capabilities(native_idempotency=False, lookup_by_reference=False)
    out = run(deliverer_with(conn).process(make_invoice(), ledger, META))
    assert isinstance(out, Dead) and out.error_class == "uncertain" and "check the billing system" in str(out.error)


# --------------------------------------------------------------------------- the deliver stage's offset check
def _stage_on(consumer: object) -> tuple[object, object]:
    """A deliver stage (only what ``_in_sequence`` uses) on an app with ``consumer``, and a partition."""
    from types import SimpleNamespace

    from broker.deliver_stage import DeliverStage, _Partition

    stage = DeliverStage.__new__(DeliverStage)
    stage.app = SimpleNamespace(consumer=consumer)  # type: ignore[assignment]
    return stage, _Partition()


def _taken(stage, part, tp, offset: int) -> bool:
    """Whether the stage takes the record of ``tp`` at ``offset`` (``_in_sequence``)."""
    from types import SimpleNamespace

    from faust.types.tuples import Message

    event = SimpleNamespace(message=Message(tp.topic, tp.partition, offset, 0.0, 0, {}, b"k", b"v", None))
    return asyncio.run(stage._in_sequence(part, event))


def test_offset_sequence():
    from broker.deliver_stage import offset_sequence

    assert offset_sequence(7, 7) == "next"
    assert offset_sequence(7, 6) == "repeat"
    assert offset_sequence(7, 8) == "hole"


def test_a_record_past_a_hole_is_not_taken_and_the_partition_is_sought_back():
    """The start offset is 10 and the first record to arrive is 11: it is not taken (so nothing can
    acknowledge past 10), the partition is sought back to 10 once (the timer seeks again after SEEK_AGAIN_AFTER),
    the hole is counted once; then 10, 11, 12 are taken in order and a repeated 11 is not."""
    from faust.types import TP

    from broker import deliver_stage, metrics

    tp = TP("billing.invoices", 3)

    class Consumer:
        def __init__(self) -> None:
            self.start_offsets = {tp: 10}
            self.seeks: list[tuple[TP, int]] = []

        async def seek(self, partition: TP, offset: int) -> None:
            self.seeks.append((partition, offset))

    consumer = Consumer()
    stage, part = _stage_on(consumer)
    holes = metrics.OFFSET_HOLES.labels(tp.topic)
    before = holes._value.get()
    assert _taken(stage, part, tp, 11) is False
    assert _taken(stage, part, tp, 12) is False
    assert consumer.seeks == [(tp, 10)]
    assert holes._value.get() - before == 1
    stage._suspended, stage._partitions = False, {tp: part}
    asyncio.run(stage._seek_holes_again())  # too soon
    assert consumer.seeks == [(tp, 10)]
    part.sought = (10, time.monotonic() - deliver_stage.SEEK_AGAIN_AFTER)
    assert _taken(stage, part, tp, 12) is False  # a record does not seek again: the timer does
    assert consumer.seeks == [(tp, 10)]
    asyncio.run(stage._seek_holes_again())
    assert consumer.seeks == [(tp, 10), (tp, 10)]
    assert holes._value.get() - before == 1
    assert [_taken(stage, part, tp, o) for o in (10, 11, 11, 12)] == [True, True, False, True]
    assert part.next_offset == 13
    part.sought = (10, time.monotonic() - deliver_stage.SEEK_AGAIN_AFTER)
    asyncio.run(stage._seek_holes_again())  # the hole is filled: no seek
    assert consumer.seeks == [(tp, 10), (tp, 10)]


def test_before_the_seek_nothing_is_taken_then_the_sequence_starts_at_the_start_offset():
    """Records that arrive before the consumer positioned the partition (no start offset yet) are not
    taken; after the seek the sequence starts at the start offset (here the log start, 0)."""
    from types import SimpleNamespace

    from faust.types import TP

    tp = TP("billing.invoices.retry.1", 0)
    consumer = SimpleNamespace(start_offsets={})
    stage, part = _stage_on(consumer)
    assert [_taken(stage, part, tp, o) for o in (2, 3)] == [False, False]
    assert part.next_offset is None
    consumer.start_offsets = {tp: 0}
    assert [_taken(stage, part, tp, o) for o in (0, 1, 0, 2)] == [True, True, False, True]
    assert part.next_offset == 3
