"""StripeConnector against the Stripe emulator on loopback (real HTTP, no mocks).

The emulator validates every request against the official spec (tests/specs/stripe/spec3.yaml) and
each test asserts it saw no invalid request. Money values are computed by hand in the comments.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import httpx
import pytest

from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    NumberConflictError,
    PermanentError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.stripe import StripeConnector
from connectors.stripe.emulator import StripeEmulator
from connectors.stripe.spec import make_request_validator

SPEC = Path(__file__).resolve().parent / "specs" / "stripe" / "spec3.yaml"
KEY = "sk_test_51UnitTestKey000000000000000000"
CUSTOMER = "cus_HotelAtlantico"


@pytest.fixture(scope="module")
def validator():
    return make_request_validator(SPEC)


@pytest.fixture
def emulators(validator, monkeypatch):
    monkeypatch.setenv("STRIPE_SECRET_KEY", KEY)
    started: list[StripeEmulator] = []

    def make(**kwargs) -> StripeEmulator:
        kwargs.setdefault(
            "customers", {CUSTOMER: {"name": "Hotel Atlântico Lisboa, S.A.", "email": "contas@hotel.example"}}
        )
        kwargs.setdefault("rate_limit_per_second", 1000)  # several connectors in one test each pace at 20/s
        emu = StripeEmulator(api_keys=(KEY,), request_validator=validator, hang_seconds=1, **kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
    for emu in started:
        assert emu.validation_failures == []
        assert emu.server_errors == []


def settings(emu: StripeEmulator, **overrides) -> dict:
    return {"api_url": emu.url, "secret_key_env": "STRIPE_SECRET_KEY", **overrides}


def line(description, qty, unit_price, net, rate, tax, total, *, discount="0", kind="labour", unit="h") -> InvoiceLine:
    return InvoiceLine(
        kind=kind,
        description=description,
        quantity=D(qty),
        unit=unit,
        unit_price=D(unit_price),
        discount_percent=D(discount),
        net=D(net),
        tax_rate=D(rate),
        tax=D(tax),
        total=D(total),
        source="t",
        rule="t",
    )


def make_invoice(
    number="ACME-WO-1-R1",
    *,
    lines=None,
    contact_id=CUSTOMER,
    client_id="CLI-HAL",
    inclusive=False,
    net="190.25",
    tax="43.76",
    total="234.01",
    currency="EUR",
    key=None,
    legal_notes=(),
) -> Invoice:
    if lines is None:
        lines = [
            # 3.25 h x 42.00 = 136.50; 23 % = 31.395 -> 31.40
            line("HVAC labour (Ana Costa)", "3.25", "42.00", "136.50", "23", "31.40", "167.90"),
            # 2 x 18.75 = 37.50 less 10 % = 33.75; 23 % = 7.7625 -> 7.76
            line("Contactor 25A", "2", "18.75", "33.75", "23", "7.76", "41.51", discount="10", kind="part", unit="un"),
            # 2 x 10.00 = 20.00; 23 % = 4.60
            line("Filter G4", "2", "10.00", "20.00", "23", "4.60", "24.60", kind="part", unit="un"),
        ]
    return Invoice(
        invoice_key=key or f"acme:wo:{number}:r1",
        invoice_number=number,
        order_key=f"acme:wo:{number}",
        tenant="acme",
        billing_system="stripe",
        event_id="e",
        event_type="maintenance.work_order.completed",
        event_time=datetime(2026, 3, 2, 10, tzinfo=UTC),
        document="wo",
        document_id=number,
        revision=1,
        client_id=client_id,
        client_name="Hotel Atlântico Lisboa, S.A.",
        contact_id=contact_id,
        site_id="S1",
        currency=currency,
        issue_date=date(2026, 3, 2),
        due_date=date(2026, 4, 1),
        reference=f"WO {number}",
        tax_inclusive=inclusive,
        lines=lines,
        net_total=D(net),
        tax_total=D(tax),
        total=D(total),
        cost_total=D(0),
        margin=D(net),
        legal_notes=list(legal_notes),
    )


def run(settings_dict, fn, **kw):
    async def go():
        connector = StripeConnector(settings_dict, tenant="acme", **kw)
        try:
            return await fn(connector)
        finally:
            await connector.aclose()

    return asyncio.run(go())


def posts(emu: StripeEmulator) -> list[tuple[str, str | None]]:
    return [(path, key) for method, path, key, _ in emu.requests if method == "POST"]


# --------------------------------------------------------------------------- happy path
def test_deliver_builds_the_invoice_step_by_step_with_exact_totals(emulators):
    emu = emulators()
    pending = emu.add_pending_item(CUSTOMER, 5000, description="someone else's pending item")

    async def go(c):
        await c.check()
        return await c.deliver(make_invoice())

    result = run(settings(emu), go)
    assert result.created is True
    assert (
        result.details["total"] == "234.01" and result.details["tax"] == "43.76" and result.details["status"] == "open"
    )
    [inv] = emu.invoices()
    assert inv["id"] == result.external_id and result.external_number == inv["number"]
    # Stripe's own computation: lines 13650 + 3375 + 2000; tax per line 3140 + 776 + 460 = 4376
    assert [ln["amount"] for ln in inv["lines"]["data"]] == [13650, 3375, 2000]
    assert [ln["tax_amounts"][0]["amount"] for ln in inv["lines"]["data"]] == [3140, 776, 460]
    assert (inv["subtotal"], inv["tax"], inv["total"], inv["amount_due"]) == (19025, 4376, 23401, 23401)
    assert inv["status"] == "open" and inv["collection_method"] == "send_invoice" and inv["auto_advance"] is False
    assert (
        inv["metadata"]["broker_invoice_number"] == "ACME-WO-1-R1"
        and inv["custom_fields"][0]["value"] == "ACME-WO-1-R1"
    )
    # the pending item of the customer was not swept into our invoice
    assert [i["invoice"] for i in emu.invoice_items() if i["id"] == pending] == [None]
    # every POST carries its own key, derived from the invoice identity
    assert posts(emu) == [
        ("/v1/tax_rates", "acme:stripe:tax_rate:23:exclusive:" + posts(emu)[0][1].rsplit(":", 1)[1]),
        ("/v1/invoices", "acme:stripe:acme:wo:ACME-WO-1-R1:r1:invoice"),
        ("/v1/invoiceitems", "acme:stripe:acme:wo:ACME-WO-1-R1:r1:item-1"),
        ("/v1/invoiceitems", "acme:stripe:acme:wo:ACME-WO-1-R1:r1:item-2"),
        ("/v1/invoiceitems", "acme:stripe:acme:wo:ACME-WO-1-R1:r1:item-3"),
        (f"/v1/invoices/{inv['id']}/finalize", "acme:stripe:acme:wo:ACME-WO-1-R1:r1:finalize"),
    ]
    # the tax rate is reused, not created again, by the next invoice
    run(settings(emu), lambda c: c.deliver(make_invoice("ACME-WO-2-R1")))
    assert len(emu.tax_rates()) == 1 and len(emu.invoices()) == 2


def test_tax_inclusive_invoice_and_draft_status(emulators):
    emu = emulators()
    lines = [
        # gross 123.00, inclusive 23 %: 12300 x 23 / 123 = 2300
        line("Boiler service", "1", "123.00", "100.00", "23", "23.00", "123.00"),
        # gross 0.5 x 45.00 = 22.50: 2250 x 23 / 123 = 420.73 -> 421
        line("Travel", "0.5", "45.00", "18.29", "23", "4.21", "22.50", kind="travel"),
    ]
    result = run(
        settings(emu, invoice_status="draft"),
        lambda c: c.deliver(make_invoice(lines=lines, inclusive=True, net="118.29", tax="27.21", total="145.50")),
    )
    [inv] = emu.invoices()
    assert inv["status"] == "draft" and inv["number"] is None and result.external_number == "ACME-WO-1-R1"
    assert (inv["subtotal"], inv["tax"], inv["total"], inv["total_excluding_tax"]) == (14550, 2721, 14550, 11829)
    assert emu.tax_rates()[0]["inclusive"] is True


def test_zero_decimal_currency(emulators):
    emu = emulators()
    lines = [
        line("点検作業", "1.5", "8000", "12000", "10", "1200", "13200"),  # 12000 JPY, 10 % = 1200
        line("Discount", "1", "-1000", "-1000", "10", "-100", "-1100", kind="discount", unit="un"),
    ]
    run(
        settings(emu),
        lambda c: c.deliver(make_invoice(lines=lines, currency="JPY", net="11000", tax="1100", total="12100")),
    )
    [inv] = emu.invoices()
    assert inv["currency"] == "jpy" and (inv["total"], inv["tax"]) == (12100, 1100)


# --------------------------------------------------------------------------- verification before finalising
def test_total_mismatch_is_permanent_and_the_draft_is_not_finalised(emulators):
    emu = emulators()
    c = run(
        settings(emu),
        lambda c: c._tax_rate(
            __import__("connectors.stripe.mapper", fromlist=["TaxRateSpec"]).TaxRateSpec(D("20"), False, "VAT")
        ),
    )
    # the tenant maps 23 % to a Stripe rate that is really 20 %: Stripe computes 3805 tax instead of 4376
    with pytest.raises(PermanentError) as info:
        run(settings(emu, tax_rate_ids={"23": c}), lambda c: c.deliver(make_invoice()))
    assert "NOT finalised" in str(info.value) and "total 22830 != ours 23401" in str(info.value)
    [inv] = emu.invoices()
    assert inv["status"] == "draft" and not any(p.endswith("/finalize") for p, _ in posts(emu))


# --------------------------------------------------------------------------- idempotency, lookup and resumption
def test_repeat_is_found_by_listing_and_not_created_again(emulators):
    emu = emulators()
    first = run(settings(emu), lambda c: c.deliver(make_invoice()))
    emu.forget_idempotency_keys()  # as after Stripe's 24 h: only the lookup protects us now
    second = run(settings(emu), lambda c: c.deliver(make_invoice()))
    assert second.created is False and second.external_id == first.external_id and second.details["duplicate"] is True
    assert len(emu.invoices()) == 1


@pytest.mark.parametrize("where", ["/v1/invoices", "/v1/invoiceitems"])
def test_lost_response_mid_flow_is_resumed_not_duplicated(emulators, where):
    emu = emulators()
    emu.inject_fault("timeout_after_commit", method="POST", path=where)

    async def go(c):
        with pytest.raises(UncertainOutcomeError):
            await c.deliver(make_invoice())
        assert await c.find("ACME-WO-1-R1") is None  # an unfinished draft is not a delivered invoice
        return await c.deliver(make_invoice())

    result = run(settings(emu, timeout_seconds=0.3), go)
    [inv] = emu.invoices()
    assert result.external_id == inv["id"] and inv["status"] == "open" and inv["total"] == 23401
    assert inv["lines"]["total_count"] == 3


def test_half_built_draft_after_key_expiry_gets_only_the_missing_items(emulators):
    emu = emulators()
    emu.inject_fault("503", method="POST", path="/v1/invoiceitems", after=1)  # item 1 lands, item 2 fails
    with pytest.raises(RetryableError):
        run(settings(emu), lambda c: c.deliver(make_invoice()))
    assert emu.invoices()[0]["lines"]["total_count"] == 1 and emu.invoices()[0]["status"] == "draft"
    emu.forget_idempotency_keys()  # > 24 h later: only the lookup and the item metadata protect us
    result = run(settings(emu), lambda c: c.deliver(make_invoice()))
    [inv] = emu.invoices()
    assert result.details["resumed"] is True and inv["status"] == "open" and inv["total"] == 23401
    assert [ln["metadata"]["broker_line"] for ln in inv["lines"]["data"]] == ["1", "2", "3"]
    # item 1 once (found by its metadata, not re-posted), item 2 again after its 503, item 3
    assert [k.rsplit(":", 1)[1] for p, k in posts(emu) if p == "/v1/invoiceitems"] == ["item-1", "item-2", "item-3"]
    assert ("POST", "/v1/invoiceitems", 503) in emu.calls


def test_a_saved_500_is_uncertain_and_the_retry_uses_a_fresh_key(emulators):
    emu = emulators()
    emu.inject_fault("500_saved", method="POST", path="/v1/invoices")

    async def go(c):
        with pytest.raises(UncertainOutcomeError) as info:
            await c.deliver(make_invoice())
        assert "saved for its idempotency key" in str(info.value)
        return await c.deliver(make_invoice())

    result = run(settings(emu), go)
    keys = [k for p, k in posts(emu) if p == "/v1/invoices"]
    assert (
        keys[0] == "acme:stripe:acme:wo:ACME-WO-1-R1:r1:invoice"
        and keys[1].startswith(keys[0] + ":r")
        and len(keys) == 2
    )
    assert [i["id"] for i in emu.invoices()] == [result.external_id]


def test_find_falls_back_to_listing_while_search_lags(emulators):
    emu = emulators(search_delay=60)
    created = run(settings(emu), lambda c: c.deliver(make_invoice()))
    found = run(settings(emu), lambda c: c.find("ACME-WO-1-R1"))  # a fresh connector: search empty, list finds it
    assert found is not None and found.external_id == created.external_id and found.total == D("234.01")
    assert run(settings(emu), lambda c: c.find("ACME-WO-404-R1")) is None


# --------------------------------------------------------------------------- customers and e-mail
def test_customer_created_once_per_client_and_reused(emulators):
    emu = emulators()
    a = make_invoice("ACME-WO-1-R1", contact_id=None, client_id="CLI-NEW")
    b = make_invoice("ACME-WO-2-R1", contact_id=None, client_id="CLI-NEW")
    run(settings(emu), lambda c: c.deliver(a))
    run(settings(emu), lambda c: c.deliver(b))  # a new connector finds it by metadata['broker_client_id']
    created = [c for c in emu.customers() if c["metadata"].get("broker_client_id") == "CLI-NEW"]
    # the seeded customer has the same name: found by name and used, no new customer
    assert created == [] and {i["customer"] for i in emu.invoices()} == {CUSTOMER}
    other = make_invoice("ACME-WO-3-R1", contact_id=None, client_id="CLI-X").model_copy(
        update={"client_name": "Clínica do Parque"}
    )
    run(settings(emu), lambda c: c.deliver(other))
    run(
        settings(emu),
        lambda c: c.deliver(other.model_copy(update={"invoice_number": "ACME-WO-4-R1", "invoice_key": "acme:wo:4:r1"})),
    )
    assert [c["name"] for c in emu.customers() if c["metadata"].get("broker_client_id") == "CLI-X"] == [
        "Clínica do Parque"
    ]
    with pytest.raises(PermanentError) as info:
        run(
            settings(emu, create_customers=False),
            lambda c: c.deliver(
                make_invoice("ACME-WO-5-R1", contact_id=None, client_id="CLI-Z").model_copy(
                    update={"client_name": "Nobody"}
                )
            ),
        )
    assert "CLI-Z" in str(info.value) and "create_customers" in str(info.value)


def test_send_email_once(emulators):
    emu = emulators()
    result = run(settings(emu, send_email=True), lambda c: c.deliver(make_invoice()))
    again = run(settings(emu, send_email=True), lambda c: c.deliver(make_invoice()))
    assert result.details["emailed"] is True and again.created is False
    assert [(e["to"], e["amount_due"]) for e in emu.emails] == [("contas@hotel.example", 23401)]
    assert emu.invoices()[0]["metadata"]["broker_emailed"] == "true"


def test_settings_rules():
    with pytest.raises(ConfigError) as info:
        StripeConnector({"secret_key_env": "X", "send_email": True, "invoice_status": "draft"}, tenant="t")
    assert "send_email" in str(info.value)
    with pytest.raises(ConfigError) as info:
        StripeConnector({"secret_key_env": "X", "stripe_account": "bogus"}, tenant="t")
    assert "stripe_account" in str(info.value)


# --------------------------------------------------------------------------- auth and limits
def test_bad_and_expired_keys_are_auth_errors_without_the_key(emulators, monkeypatch, caplog):
    emu = emulators()
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_51WrongKey99999999999999999999")
    with pytest.raises(AuthError) as info:
        run(settings(emu), lambda c: c.check())
    assert info.value.http_status == 401 and "STRIPE_SECRET_KEY" in str(info.value)
    assert "sk_test_51WrongKey99999999999999999999" not in str(info.value) + caplog.text
    monkeypatch.setenv("STRIPE_SECRET_KEY", KEY)
    emu.expire_api_key(KEY)
    with pytest.raises(AuthError) as info:
        run(settings(emu), lambda c: c.deliver(make_invoice()))
    assert "api_key_expired" in str(info.value) and KEY not in str(info.value)


def test_connect_account_and_livemode_checks(emulators):
    emu = emulators()
    run(settings(emu, stripe_account="acct_1EmulatorConnected"), lambda c: c.check())
    with pytest.raises(UnknownAccountError):
        run(settings(emu, stripe_account="acct_1Nope"), lambda c: c.check())
    with pytest.raises(ConfigError) as info:
        run(settings(emu, livemode=True), lambda c: c.check())
    assert "test-mode key" in str(info.value)


def test_connector_paces_itself_under_the_rate_limit(emulators):
    emu = emulators(rate_limit_per_second=4)
    result = run(settings(emu, max_requests_per_second=4), lambda c: c.deliver(make_invoice()))
    assert result.created and emu.count_429 == 0  # 9 requests spread over > 2 s instead of 429s


# --------------------------------------------------------------------------- ownership and legal notes
REVERSE_CHARGE = "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Directive 2006/112/EC)"


def test_find_reads_the_marker_total_and_payment_and_legal_notes_print_in_the_footer(emulators):
    emu = emulators()
    inv = make_invoice(legal_notes=[REVERSE_CHARGE, " ", "Isento de IVA nos termos do artigo 9.º do CIVA"])

    async def go(c):
        created = await c.deliver(inv)
        emu.mark_paid(created.external_id)
        return await c.find(inv.invoice_number)

    found = run(settings(emu), go)
    assert found is not None
    assert (found.marker, found.total, found.paid, found.status) == (
        "acme:wo:ACME-WO-1-R1:r1",
        D("234.01"),
        D("234.01"),
        "paid",
    )
    [held] = emu.invoices()
    assert held["description"] == "WO ACME-WO-1-R1"  # the memo keeps our human reference
    assert held["footer"] == REVERSE_CHARGE + "\nIsento de IVA nos termos do artigo 9.º do CIVA"


@pytest.mark.parametrize("label", ["custom_field", "metadata"])
def test_a_foreign_invoice_labelled_with_our_number_is_a_conflict(emulators, label):
    emu = emulators()
    inv = make_invoice()
    labels = (
        {"custom_fields": [{"name": "Invoice ref", "value": "ACME-WO-1-R1"}]}
        if label == "custom_field"
        else {"metadata": {"broker_invoice_number": "ACME-WO-1-R1"}}
    )
    foreign = emu.add_invoice(CUSTOMER, 99900, **labels)
    with pytest.raises(NumberConflictError) as info:
        run(settings(emu), lambda c: c.deliver(inv))
    exc = info.value
    assert (exc.number, exc.ours, exc.theirs, exc.external_id) == ("ACME-WO-1-R1", D("234.01"), D("999.00"), foreign)
    assert "999.00" in str(exc) and "234.01" in str(exc)
    assert [(i["id"], i["total"], i["status"]) for i in emu.invoices()] == [(foreign, 99900, "open")]
    assert not any(p in ("/v1/invoices", "/v1/invoiceitems") for p, _ in posts(emu))  # nothing created


def test_a_void_foreign_invoice_is_no_conflict_but_ours_with_another_total_is(emulators):
    emu = emulators()
    old = emu.add_invoice(CUSTOMER, 99900, custom_fields=[{"name": "Invoice ref", "value": "ACME-WO-1-R1"}])
    voided = httpx.post(f"{emu.url}/v1/invoices/{old}/void", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert voided.status_code == 200 and voided.json()["status"] == "void"
    created = run(settings(emu), lambda c: c.deliver(make_invoice()))
    assert created.created is True and created.details["total"] == "234.01"
    # the same invoice key priced differently (one line less): our document, but not this invoice
    two_lines = make_invoice(lines=make_invoice().lines[:2], net="170.25", tax="39.16", total="209.41")
    with pytest.raises(NumberConflictError) as info:
        run(settings(emu), lambda c: c.deliver(two_lines))
    assert (info.value.ours, info.value.theirs) == (D("209.41"), D("234.01"))
    assert "its total is 234.01" in str(info.value)


# --------------------------------------------------------------------------- retire / amend / cancel
def _previous(result) -> ExternalInvoice:
    return ExternalInvoice(result.external_id, result.external_number)


CANCEL = {"key": "acme:wo:ACME-WO-1-R1:cancelled", "reason": "work order cancelled", "issued": date(2026, 3, 9)}


def _cancel_twice(emu: StripeEmulator, *, paid: bool = False, **overrides):
    async def go(c):
        created = await c.deliver(make_invoice())
        if paid:
            emu.mark_paid(created.external_id)
        first = await c.cancel(_previous(created), **CANCEL)
        again = await c.cancel(_previous(created), **CANCEL)
        return created, first, again

    return run(settings(emu, **overrides), go)


def test_retire_deletes_a_draft(emulators):
    emu = emulators()
    created, first, again = _cancel_twice(emu, invoice_status="draft")
    assert (first.action, first.previous_number, first.previous_status) == ("deleted", "ACME-WO-1-R1", "draft")
    assert (again.action, again.previous_status) == ("none", None)  # gone: 404
    assert emu.invoices() == [] and emu.invoice_items() == [] and emu.balance_minor() == 0
    assert ("DELETE", f"/v1/invoices/{created.external_id}", 200) in emu.calls


def test_retire_voids_an_open_unpaid_invoice(emulators):
    emu = emulators()
    created, first, again = _cancel_twice(emu)
    assert (first.action, first.previous_number, first.previous_status, first.paid) == (
        "voided",
        created.external_number,
        "open",
        None,
    )
    assert (again.action, again.previous_status) == ("none", "void")
    [inv] = emu.invoices()
    assert inv["status"] == "void" and emu.credit_notes() == [] and emu.balance_minor() == 0
    assert [k for p, k in posts(emu) if p.endswith("/void")] == ["acme:stripe:acme:wo:ACME-WO-1-R1:cancelled:void"]


def test_retire_credits_a_paid_invoice_to_the_customer_balance_once(emulators):
    emu = emulators()
    created, first, again = _cancel_twice(emu, paid=True)
    assert (first.action, first.previous_status, first.paid) == ("credited", "paid", D("234.01"))
    assert (first.credit_note_number, first.credit_note_total) == ("ACME-WO-1-R1-CN", D("234.01"))
    assert first.details == {"stripe_credit_note_number": f"{created.external_number}-CN-01"}
    assert (again.action, again.details) == ("none", {"credited_by": f"{created.external_number}-CN-01"})
    [note] = emu.credit_notes()
    assert note["id"] == first.credit_note_id
    assert (note["amount"], note["total"], note["type"], note["status"], note["reason"]) == (
        23401,
        23401,
        "post_payment",
        "issued",
        "order_change",
    )
    assert note["effective_at"] == 1773014400  # 2026-03-09 00:00 UTC
    assert note["memo"] == "Credit for ACME-WO-1-R1: work order cancelled"
    assert note["metadata"] == {
        "broker_credit_note_number": "ACME-WO-1-R1-CN",
        "broker_invoice_key": "acme:wo:ACME-WO-1-R1:r1",
        "broker_tenant": "acme",
        "broker_requested_by": "acme:wo:ACME-WO-1-R1:cancelled",
    }
    [inv] = emu.invoices()
    assert (inv["status"], inv["amount_paid"], inv["post_payment_credit_notes_amount"]) == ("paid", 23401, 23401)
    assert emu.customers()[0]["balance"] == -23401 and emu.balance_minor() == -23401  # the customer's credit
    # the credit note was created with credit_amount = its total, looked up before (and on the repeat)
    [(_, _, key, params)] = [r for r in emu.requests if r[:2] == ("POST", "/v1/credit_notes")]
    assert key == "acme:stripe:acme:wo:ACME-WO-1-R1:cancelled:credit_note" and params["credit_amount"] == "23401"
    assert len([r for r in emu.requests if r[:2] == ("GET", "/v1/credit_notes")]) == 2


def test_a_payment_arriving_before_the_void_turns_it_into_a_credit_note(emulators):
    emu = emulators()

    async def go(c):
        created = await c.deliver(make_invoice())
        real_post = c._post

        async def paid_meanwhile(path, data, key, note="", id_prefix=""):
            if path.endswith("/void"):
                emu.mark_paid(created.external_id)  # the customer pays between the read and the void
            return await real_post(path, data, key, note, id_prefix)

        c._post = paid_meanwhile
        return await c.retire(_previous(created), **CANCEL)

    retired = run(settings(emu), go)
    assert (retired.action, retired.previous_status, retired.paid) == ("credited", "paid", D("234.01"))
    [inv] = emu.invoices()
    assert inv["status"] == "paid" and emu.balance_minor() == -23401


def test_an_existing_credit_note_is_reused_and_one_not_ours_is_a_conflict(emulators):
    emu = emulators()

    async def go(c):
        mine = await c.deliver(make_invoice())
        theirs = await c.deliver(make_invoice("ACME-WO-2-R1"))
        for created in (mine, theirs):
            emu.mark_paid(created.external_id)
        # ours, issued by an earlier attempt whose answer was lost
        await c._post(
            "/v1/credit_notes",
            {
                "invoice": mine.external_id,
                "amount": 23401,
                "credit_amount": 23401,
                "metadata": {
                    "broker_credit_note_number": "ACME-WO-1-R1-CN",
                    "broker_invoice_key": "acme:wo:ACME-WO-1-R1:r1",
                },
            },
            "earlier",
        )
        reused = await c.retire(_previous(mine), **CANCEL)
        # a partial credit note someone labelled with our credit note number: never adopted
        await c._post(
            "/v1/credit_notes",
            {
                "invoice": theirs.external_id,
                "amount": 1000,
                "out_of_band_amount": 1000,
                "metadata": {"broker_credit_note_number": "ACME-WO-2-R1-CN"},
            },
            "by-hand",
        )
        with pytest.raises(NumberConflictError) as info:
            await c.retire(_previous(theirs), **CANCEL)
        return reused, info.value

    reused, conflict = run(settings(emu), go)
    assert reused.action == "none" and reused.details["credited_by"].endswith("-CN-01")
    assert (conflict.number, conflict.ours, conflict.theirs) == ("ACME-WO-2-R1-CN", D("234.01"), D("10.00"))
    assert len(emu.credit_notes()) == 2


def test_absent_invoice_retires_to_none(emulators):
    emu = emulators()
    retired = run(settings(emu), lambda c: c.retire(ExternalInvoice("in_Gone", "ABC-0001"), **CANCEL))
    assert (retired.action, retired.previous_number, retired.previous_status) == ("none", "ABC-0001", None)


def test_amend_of_a_paid_invoice_credits_it_and_the_credit_pays_part_of_the_new_one(emulators):
    emu = emulators()
    r1 = make_invoice("ACME-WO-9-R1", key="acme:wo:ACME-WO-9:r1")
    # 1 x 100.00 + 23 % = 123.00: less than revision 1's 234.01, so the credit covers all of it
    r2 = make_invoice(
        "ACME-WO-9-R2",
        key="acme:wo:ACME-WO-9:r2",
        lines=[line("HVAC labour (Ana Costa)", "1", "100.00", "100.00", "23", "23.00", "123.00")],
        net="100.00",
        tax="23.00",
        total="123.00",
    )

    async def go(c):
        first = await c.deliver(r1)
        emu.mark_paid(first.external_id)
        amended = await c.amend(r2, _previous(first))
        again = await c.amend(r2, _previous(first))
        return amended, again

    amended, again = run(settings(emu), go)
    assert (amended.details["amendment"], amended.details["previous_paid"]) == ("credited", "234.01")
    assert amended.details["credit_note_number"] == "ACME-WO-9-R1-CN"
    assert again.details["amendment"] == "none" and again.external_id == amended.external_id
    new = next(i for i in emu.invoices() if i["id"] == amended.external_id)
    # the 234.01 credit pays revision 2 (123.00) in full at finalisation; 111.01 of credit is left
    assert (new["total"], new["starting_balance"], new["amount_due"], new["status"]) == (12300, -23401, 0, "paid")
    assert emu.balance_minor() == -11101  # = 123.00 - 234.01
