"""PayPalConnector against the PayPal emulator on loopback (real HTTP, no mocks).

Every emulator validates each request against the official spec (tests/specs/paypal/invoicing_v2.json) and
the tests assert it saw no invalid request and had no internal error. Money values are computed by hand.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.paypal import PayPalConnector
from connectors.paypal.emulator import SCOPE_READ, PayPalEmulator
from connectors.paypal.spec import make_request_validator, validate_document
from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    MissingScopeError,
    NumberConflictError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.oauth2 import FileTokenStore, MemoryTokenStore

SPEC = Path(__file__).resolve().parent / "specs" / "paypal" / "invoicing_v2.json"
SECRET = "pp-s3cr3t-CLIENT-value-42"
ACCOUNT = "billing@acme-fm.example"
CUSTOMER = "contas@hotel-atlantico.example"


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def validator():
    return make_request_validator(SPEC)


@pytest.fixture
def emulators(validator):
    started: list[PayPalEmulator] = []

    def make(**kwargs) -> PayPalEmulator:
        kwargs.setdefault("client_secret", SECRET)
        kwargs.setdefault("account_email", ACCOUNT)
        kwargs.setdefault("hang_seconds", 1.5)
        emu = PayPalEmulator(request_validator=validator, **kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
    for emu in started:
        assert emu.validation_failures == []
        assert emu.server_errors == []


@pytest.fixture(autouse=True)
def secret_env(monkeypatch):
    monkeypatch.setenv("PAYPAL_CLIENT_SECRET", SECRET)


def settings_for(emu: PayPalEmulator, **overrides) -> dict:
    base = {
        "api_url": emu.url,
        "client_id": "demo-client",
        "client_secret_env": "PAYPAL_CLIENT_SECRET",
        "client_emails": {"CLI-HAL": CUSTOMER},
    }
    base.update(overrides)
    return base


def line(description, qty, unit_price, net, rate, tax, total, *, kind="labour", unit="un", discount="0") -> InvoiceLine:
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
        source="test",
        rule="test",
    )


def standard_lines() -> list[InvoiceLine]:
    return [
        # 3.25 h x 42.00 = 136.50; 23 % = 31.395 -> 31.40
        line("HVAC labour (Ana Costa)", "3.25", "42.00", "136.50", "23", "31.40", "167.90", unit="h"),
        # 2 x 18.75 = 37.50 less 10 % = 33.75; 23 % = 7.7625 -> 7.76
        line("Contactor 25A", "2", "18.75", "33.75", "23", "7.76", "41.51", kind="part", discount="10"),
    ]


def make_invoice(
    number="ACME-WO-1-R1", *, lines=None, currency="EUR", issue=date(2026, 3, 2), due=date(2026, 4, 1)
) -> Invoice:
    lines = standard_lines() if lines is None else lines
    net = sum((ln.net for ln in lines), D(0))
    tax = sum((ln.tax for ln in lines), D(0))
    return Invoice(
        invoice_key=f"acme:wo:{number}:r1",
        invoice_number=number,
        order_key=f"acme:wo:{number}",
        tenant="acme",
        billing_system="paypal",
        event_id="evt-1",
        event_type="maintenance.work_order.completed",
        event_time=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
        document="wo",
        document_id=number,
        revision=1,
        client_id="CLI-HAL",
        client_name="Hotel Atlântico Lisboa, S.A.",
        contact_id=None,
        site_id="S1",
        currency=currency,
        issue_date=issue,
        due_date=due,
        reference=f"WO {number}",
        lines=lines,
        net_total=net,
        tax_total=tax,
        total=net + tax,
        cost_total=D(0),
        margin=net,
    )


def run(coro):
    return asyncio.run(coro)


async def with_connector(settings, fn, store=None):
    connector = PayPalConnector(settings, tenant="acme", token_store=store if store is not None else MemoryTokenStore())
    try:
        return await fn(connector)
    finally:
        await connector.aclose()


async def _raises(exc_type, coro):
    with pytest.raises(exc_type) as info:
        await coro
    return info.value


def api_calls(emu: PayPalEmulator) -> list[tuple[str, str, int]]:
    return [
        (
            m,
            p.replace(p.split("/")[4], "{id}") if p.count("/") >= 5 and p.startswith("/v2/invoicing/invoices/") else p,
            s,
        )
        for m, p, s in emu.calls
        if p.startswith("/v2/")
    ]


# --------------------------------------------------------------------------- happy path
def test_deliver_creates_sends_and_totals_match_to_the_cent(emulators):
    emu = emulators()

    async def go(c: PayPalConnector):
        await c.check()
        return await c.deliver(make_invoice())

    result = run(with_connector(settings_for(emu), go))
    assert result.created is True and result.external_number == "ACME-WO-1-R1"
    assert result.details["status"] == "SENT" and result.details["sent"] is True
    # net 136.50 + 33.75 = 170.25; tax 31.40 + 7.76 = 39.16; total 209.41
    assert result.details["total"] == "209.41" and result.details["total_matches"] is True
    assert result.details["emailed_to"] == CUSTOMER

    [stored] = emu.invoices()
    assert stored["id"] == result.external_id and stored["status"] == "SENT"
    assert stored["amount"]["value"] == "209.41"
    breakdown = stored["amount"]["breakdown"]
    assert breakdown["item_total"]["value"] == "174.00"  # 136.50 + 37.50 before the discount
    assert breakdown["discount"]["item_discount"]["value"] == "-3.75"
    assert breakdown["tax_total"]["value"] == "39.16"
    assert [i["tax"]["amount"]["value"] for i in stored["items"]] == ["31.40", "7.76"]
    assert stored["detail"]["payment_term"] == {"term_type": "NET_30", "due_date": "2026-04-01"}
    assert stored["detail"]["memo"] == "broker:acme:wo:ACME-WO-1-R1:r1"  # our ownership marker, private
    assert stored["primary_recipients"][0]["billing_info"] == {
        "business_name": "Hotel Atlântico Lisboa, S.A.",
        "email_address": CUSTOMER,
    }
    assert emu.emails == [
        {"invoice_id": stored["id"], "invoice_number": "ACME-WO-1-R1", "to": CUSTOMER, "subject": None, "note": None}
    ]
    # the stored invoice is a valid spec "invoice" as a response
    assert validate_document(SPEC, "invoice", emu._render(emu.invoice(stored["id"])), mode="read") == []
    assert api_calls(emu) == [
        ("GET", "/v2/invoicing/invoices", 200),  # check()
        ("POST", "/v2/invoicing/search-invoices", 200),  # lookup before create
        ("POST", "/v2/invoicing/invoices", 201),
        ("POST", "/v2/invoicing/invoices/{id}/send", 200),
    ]
    assert emu.token_requests == 1


def test_jpy_invoice_has_no_decimals_and_matches(emulators):
    emu = emulators()
    lines = [
        # 2.5 h x 4,800 = 12,000; 10 % = 1,200
        line("Technician labour", "2.5", "4800", "12000", "10", "1200", "13200", unit="h"),
        # 3 x 1,333 = 3,999; 10 % = 399.9 -> 400
        line("Filter cartridge", "3", "1333", "3999", "10", "400", "4399", kind="part"),
        # 1.5 x 1,999 = 2,998.5 -> our net 2,999 (collapsed to 1 x 2,999); 10 % = 299.9 -> 300
        line("Pump hire", "1.5", "1999", "2999", "10", "300", "3299", kind="expense"),
    ]
    result = run(
        with_connector(settings_for(emu), lambda c: c.deliver(make_invoice("NIP-WO-7-R1", lines=lines, currency="JPY")))
    )
    # net 18,998 + tax 1,900 = 20,898
    assert result.details["total"] == "20898" and result.details["total_matches"] is True
    [stored] = emu.invoices()
    assert [i["unit_amount"]["value"] for i in stored["items"]] == ["4800", "1333", "2999"]
    assert [i["tax"]["amount"]["value"] for i in stored["items"]] == ["1200", "400", "300"]
    assert stored["amount"]["breakdown"]["tax_total"]["value"] == "1900"


def test_draft_setting_leaves_the_invoice_unsent_and_unmailed(emulators):
    emu = emulators()
    result = run(with_connector(settings_for(emu, invoice_status="DRAFT"), lambda c: c.deliver(make_invoice())))
    assert result.details["status"] == "DRAFT" and result.details["sent"] is False
    assert emu.invoices()[0]["status"] == "DRAFT" and emu.emails == []
    # later the tenant switches to SENT: the same invoice is found and sent, not created again
    again = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    assert again.created is False and again.details["sent"] is True and again.details["status"] == "SENT"
    assert len(emu.invoices()) == 1 and [e["to"] for e in emu.emails] == [CUSTOMER]


def test_sent_without_email_to_recipient_and_with_options(emulators):
    emu = emulators()
    settings = settings_for(
        emu, email_to_recipient=False, email_copy_to_invoicer=True, email_subject="Fatura", email_note="Obrigado"
    )
    result = run(with_connector(settings, lambda c: c.deliver(make_invoice())))
    assert result.details["status"] == "SENT" and "emailed_to" not in result.details
    assert emu.emails == [
        {
            "invoice_id": result.external_id,
            "invoice_number": "ACME-WO-1-R1",
            "to": ACCOUNT,
            "subject": "Fatura",
            "note": "Obrigado",
        }
    ]


def test_future_invoice_date_is_scheduled(emulators):
    emu = emulators(today=lambda: date(2026, 3, 1))
    result = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice(issue=date(2026, 3, 2)))))
    assert result.details["status"] == "SCHEDULED"
    assert emu.invoices()[0]["status"] == "SCHEDULED" and emu.emails == []


def test_recipient_from_the_tenant_clients(emulators):
    emu = emulators()

    class Client:
        name, email, tax_number, contact_id = (
            "Hotel Atlântico Lisboa, S.A.",
            "faturas@hotel.example",
            "PT500000101",
            None,
        )

    async def go(c: PayPalConnector):
        c.clients = {"CLI-HAL": Client()}
        return await c.deliver(make_invoice())

    result = run(with_connector(settings_for(emu, client_emails={}), go))
    assert result.details["emailed_to"] == "faturas@hotel.example"
    assert emu.invoices()[0]["primary_recipients"][0]["billing_info"]["additional_info"] == "VAT PT500000101"


# --------------------------------------------------------------------------- a client without an e-mail address
class Crash(BaseException):
    """The worker dies (not an error the connector could handle)."""


def crash_before_send(c: PayPalConnector) -> None:
    """Kill the delivery after the create was answered, before the send step (the first time only)."""
    complete = c._complete

    async def dies(*args, **kwargs):
        c._complete = complete
        raise Crash

    c._complete = dies


def unsent_reason(draft_id: str) -> str:
    return (
        "client CLI-HAL (Hotel Atlântico Lisboa, S.A.) has no e-mail address, so PayPal cannot e-mail invoice "
        f"ACME-WO-1-R1; it was left as PayPal draft {draft_id} (settings.no_email = leave_unsent): add the "
        "customer's e-mail to the draft in PayPal and send it there, or replay once it is there"
    )


def test_client_without_email_is_marked_sent_for_sharing_by_link(emulators):
    emu = emulators()
    result = run(with_connector(settings_for(emu, client_emails={}), lambda c: c.deliver(make_invoice())))
    [stored] = emu.invoices()
    assert stored["primary_recipients"] == [{"billing_info": {"business_name": "Hotel Atlântico Lisboa, S.A."}}]
    assert stored["status"] == "SENT" and emu.emails == []  # PayPal marked it sent, e-mailed nobody
    assert result.created is True and result.details == {
        "status": "SENT",
        "total": "209.41",
        "total_matches": True,
        "sent": True,
        "no_email": "mark_sent",
        "payer_view_url": stored["detail"]["metadata"]["recipient_view_url"],
    }
    assert api_calls(emu) == [
        ("POST", "/v2/invoicing/search-invoices", 200),
        ("POST", "/v2/invoicing/invoices", 201),
        ("POST", "/v2/invoicing/invoices/{id}/send", 200),  # send_to_recipient false: true would be a 422
    ]


def test_client_without_email_left_unsent_is_a_reported_draft_not_a_stray_one(emulators):
    emu = emulators()
    settings = settings_for(emu, client_emails={}, no_email="leave_unsent")

    async def go(c: PayPalConnector):
        return await c.deliver(make_invoice()), await c.deliver(make_invoice())

    first, again = run(with_connector(settings, go))
    [stored] = emu.invoices()
    assert stored["status"] == "DRAFT" and emu.emails == []
    expected = {
        "status": "DRAFT",
        "total": "209.41",
        "total_matches": True,
        "sent": False,
        "no_email": "leave_unsent",
        "unsent_reason": unsent_reason(stored["id"]),
    }
    assert first.created is True and first.external_id == stored["id"] and first.details == expected
    assert again.created is False and again.external_id == stored["id"]
    assert again.details == {**expected, "duplicate": True, "found_by": "lookup"}
    assert api_calls(emu) == [
        ("POST", "/v2/invoicing/search-invoices", 200),
        ("POST", "/v2/invoicing/invoices", 201),
        ("POST", "/v2/invoicing/search-invoices", 200),  # the redelivery finds the draft: no second one, no send
    ]


@pytest.mark.parametrize(
    ("no_email", "status", "sent"), [("mark_sent", "SENT", True), ("leave_unsent", "DRAFT", False)]
)
def test_redelivery_after_a_crash_between_create_and_send_leaves_one_invoice(emulators, no_email, status, sent):
    emu = emulators()
    settings = settings_for(emu, client_emails={}, no_email=no_email)

    async def first_worker(c: PayPalConnector):
        crash_before_send(c)
        with pytest.raises(Crash):
            await c.deliver(make_invoice())

    run(with_connector(settings, first_worker))
    [draft] = emu.invoices()
    assert draft["status"] == "DRAFT"
    result = run(with_connector(settings, lambda c: c.deliver(make_invoice())))  # another worker, a new connector
    [stored] = emu.invoices()
    assert stored["id"] == draft["id"] == result.external_id and stored["status"] == status
    assert result.created is False and result.details["found_by"] == "lookup"
    assert (result.details["status"], result.details["sent"], result.details["no_email"]) == (status, sent, no_email)
    assert emu.emails == []
    sends = [("POST", "/v2/invoicing/invoices/{id}/send", 200)] if sent else []
    assert api_calls(emu) == [
        ("POST", "/v2/invoicing/search-invoices", 200),
        ("POST", "/v2/invoicing/invoices", 201),
        ("POST", "/v2/invoicing/search-invoices", 200),
        *sends,
    ]


def test_sending_to_recipient_without_email_is_what_paypal_refuses(emulators):
    """The old behaviour (``send_to_recipient: true`` for a client without an e-mail) fails against the emulator."""
    emu = emulators()
    settings = settings_for(emu, client_emails={}, invoice_status="DRAFT")
    draft = run(with_connector(settings, lambda c: c.deliver(make_invoice())))

    async def go(c: PayPalConnector):
        return await _raises(PermanentError, c._send_invoice(draft.external_id, make_invoice(), to_recipient=True))

    exc = run(with_connector(settings_for(emu, client_emails={}), go))
    assert exc.http_status == 422 and "MISSING_RECIPIENT_EMAIL" in str(exc)
    assert [i["status"] for i in emu.invoices()] == ["DRAFT"] and emu.emails == []


# --------------------------------------------------------------------------- idempotency
def test_second_delivery_is_found_by_lookup_not_created(emulators):
    emu = emulators()

    async def go(c: PayPalConnector):
        return await c.deliver(make_invoice()), await c.deliver(make_invoice())

    first, second = run(with_connector(settings_for(emu), go))
    assert first.created is True and second.created is False
    assert second.external_id == first.external_id and second.details["found_by"] == "lookup"
    assert second.details["sent"] is False and second.details["total_matches"] is True
    assert len(emu.invoices()) == 1 and len(emu.emails) == 1
    assert api_calls(emu)[-1] == ("POST", "/v2/invoicing/search-invoices", 200)


def test_duplicate_invoice_number_is_looked_up_and_recorded_as_success(emulators):
    emu = emulators()

    async def go(c: PayPalConnector):
        first = await c.deliver(make_invoice())
        emu.inject_fault("stale_search")  # the lookup before create misses it (search not yet consistent)
        second = await c.deliver(make_invoice())
        return first, second

    first, second = run(with_connector(settings_for(emu), go))
    assert second.created is False and second.external_id == first.external_id
    assert second.details["found_by"] == "DUPLICATE_INVOICE_NUMBER"
    assert len(emu.invoices()) == 1
    assert api_calls(emu)[-3:] == [
        ("POST", "/v2/invoicing/search-invoices", 200),
        ("POST", "/v2/invoicing/invoices", 422),
        ("POST", "/v2/invoicing/search-invoices", 200),
    ]


def test_duplicate_number_not_yet_searchable_is_retryable(emulators):
    emu = emulators()

    async def go(c: PayPalConnector):
        await c.deliver(make_invoice())
        emu.inject_fault("stale_search", times=2)
        exc = await _raises(RetryableError, c.deliver(make_invoice()))
        again = await c.deliver(make_invoice())  # search caught up
        return exc, again

    exc, again = run(with_connector(settings_for(emu), go))
    assert exc.http_status == 422 and "not return it yet" in str(exc)
    assert again.created is False and len(emu.invoices()) == 1


def test_find_matches_the_number_exactly(emulators):
    emu = emulators()

    async def go(c: PayPalConnector):
        await c.deliver(make_invoice("ACME-WO-1-R10"))
        await c.deliver(make_invoice("ACME-WO-1-R1"))
        await c.deliver(make_invoice("X-ACME-WO-1-R1"))
        return await c.find("ACME-WO-1-R1"), await c.find("ACME-WO-1"), await c.find("Z" * 26)

    found, partial, too_long = run(with_connector(settings_for(emu), go))
    assert (
        found is not None and found.number == "ACME-WO-1-R1" and found.total == D("209.41") and found.status == "SENT"
    )
    assert partial is None and too_long is None
    assert len(emu.invoices()) == 3


def test_cancelled_invoice_with_our_number_counts_as_delivered(emulators):
    emu = emulators()
    first = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    emu.set_status(first.external_id, "CANCELLED")
    again = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    assert again.created is False and again.details["status"] == "CANCELLED" and len(emu.invoices()) == 1


def test_existing_draft_with_another_total_is_not_sent(emulators):
    emu = emulators()
    other = make_invoice(lines=[line("Other work", "1", "50.00", "50.00", "23", "11.50", "61.50")])
    run(with_connector(settings_for(emu, invoice_status="DRAFT"), lambda c: c.deliver(other)))
    exc = run(with_connector(settings_for(emu), lambda c: _raises(NumberConflictError, c.deliver(make_invoice()))))
    # our marker, another total: never adopted nor sent
    assert "its total is 61.50, ours 209.41" in str(exc) and (exc.ours, exc.theirs) == (D("209.41"), D("61.50"))
    assert emu.invoices()[0]["status"] == "DRAFT" and emu.emails == []


# --------------------------------------------------------------------------- field limits and rejections
def test_field_limit_fails_before_any_http_call(emulators):
    emu = emulators()
    exc = run(
        with_connector(
            settings_for(emu), lambda c: _raises(PermanentError, c.deliver(make_invoice("ACME-WO-1234567890123-R123")))
        )
    )
    assert "detail.invoice_number" in str(exc) and "26 characters" in str(exc)
    assert emu.calls == []
    many = make_invoice(lines=[line(f"Bolt {i}", "1", "1.05", "1.05", "23", "0.24", "1.29") for i in range(500)])
    exc = run(with_connector(settings_for(emu), lambda c: _raises(PermanentError, c.deliver(many))))
    assert "items" in str(exc) and "500 lines" in str(exc) and emu.calls == []


def test_paypal_validation_error_is_permanent_with_the_issue(emulators):
    emu = emulators()
    exc = run(
        with_connector(
            settings_for(emu, invoicer_email="someone-else@example.com"),
            lambda c: _raises(PermanentError, c.deliver(make_invoice())),
        )
    )
    assert exc.http_status == 422
    assert (
        "UNPROCESSABLE_ENTITY" in str(exc)
        and "USER_NOT_FOUND /invoicer/email_address" in str(exc)
        and "debug_id" in str(exc)
    )
    assert emu.invoices() == []


# --------------------------------------------------------------------------- limits and faults
def test_rate_limit_429_with_retry_after(emulators):
    emu = emulators(rate_limit_per_minute=3)

    async def go(c: PayPalConnector):
        await c.deliver(make_invoice("A-1"))  # search, create, send = 3 calls
        return await _raises(RateLimitedError, c.deliver(make_invoice("A-2")))

    exc = run(with_connector(settings_for(emu), go))
    assert exc.http_status == 429 and 1 <= exc.retry_after <= 60 and "RATE_LIMIT_REACHED" in str(exc)
    assert len(emu.invoices()) == 1 and emu.count_429 == 1


def test_injected_429_carries_retry_after(emulators):
    emu = emulators(retry_after=7)
    emu.inject_fault("429")
    exc = run(with_connector(settings_for(emu), lambda c: _raises(RateLimitedError, c.deliver(make_invoice()))))
    assert exc.retry_after == 7.0


def test_503_is_retryable_then_success(emulators):
    emu = emulators()
    emu.inject_fault("503")

    async def go(c: PayPalConnector):
        exc = await _raises(RetryableError, c.deliver(make_invoice()))
        return exc, await c.deliver(make_invoice())

    exc, result = run(with_connector(settings_for(emu), go))
    assert exc.http_status == 503 and not isinstance(exc, UncertainOutcomeError) and "SERVICE_UNAVAILABLE" in str(exc)
    assert result.created is True and len(emu.invoices()) == 1


def test_timeout_after_create_is_uncertain_then_found_and_completed(emulators):
    emu = emulators()

    async def go(c: PayPalConnector):
        emu.inject_fault("timeout_after_commit", after=1)  # the lookup passes; the create is stored, its answer lost
        exc = await _raises(UncertainOutcomeError, c.deliver(make_invoice()))
        found = await c.find("ACME-WO-1-R1")
        again = await c.deliver(make_invoice())  # lookup first: the draft is found and sent, not created again
        return exc, found, again

    exc, found, again = run(with_connector(settings_for(emu, timeout_seconds=0.4), go))
    assert "reconcile" in str(exc)
    assert found is not None and found.status == "DRAFT" and found.total == D("209.41")
    assert again.created is False and again.external_id == found.external_id and again.details["sent"] is True
    assert again.details["status"] == "SENT" and len(emu.invoices()) == 1 and len(emu.emails) == 1


def test_connection_reset_before_create_is_uncertain_and_nothing_stored(emulators):
    emu = emulators()

    async def go(c: PayPalConnector):
        emu.inject_fault("reset", after=1)
        exc = await _raises(UncertainOutcomeError, c.deliver(make_invoice()))
        return exc, await c.deliver(make_invoice())

    exc, result = run(with_connector(settings_for(emu), go))
    assert "reconcile" in str(exc) and result.created is True and len(emu.invoices()) == 1


def test_lost_send_answer_is_checked_by_reading_the_invoice(emulators):
    emu = emulators()

    async def go(c: PayPalConnector):
        emu.inject_fault("timeout_after_commit", after=2)  # search and create pass; the send's answer is lost
        return await c.deliver(make_invoice())

    result = run(with_connector(settings_for(emu, timeout_seconds=0.4), go))
    assert result.details["status"] == "SENT" and len(emu.emails) == 1


def test_lost_search_answer_is_plain_retryable(emulators):
    emu = emulators()
    emu.inject_fault("timeout_after_commit", on="search")
    exc = run(
        with_connector(
            settings_for(emu, timeout_seconds=0.4), lambda c: _raises(RetryableError, c.deliver(make_invoice()))
        )
    )
    assert not isinstance(exc, UncertainOutcomeError) and "a read: retry it" in str(exc)
    assert emu.invoices() == []


def test_500_on_create_is_uncertain_on_search_retryable_on_send_checked(emulators):
    emu = emulators()

    async def go(c: PayPalConnector):
        emu.inject_fault("500", on="create")
        on_create = await _raises(UncertainOutcomeError, c.deliver(make_invoice()))  # PayPal may have stored it
        emu.inject_fault("500", on="search")
        on_search = await _raises(RetryableError, c.deliver(make_invoice()))
        emu.inject_fault("500", on="send")  # not applied: the invoice stays a draft
        on_send = await _raises(RetryableError, c.deliver(make_invoice()))
        return on_create, on_search, on_send, await c.deliver(make_invoice())

    on_create, on_search, on_send, result = run(with_connector(settings_for(emu), go))
    assert on_create.http_status == 500 and "INTERNAL_SERVER_ERROR" in str(on_create)
    assert not isinstance(on_search, UncertainOutcomeError) and on_search.http_status == 500
    assert not isinstance(on_send, UncertainOutcomeError) and "still a draft" in str(on_send)
    assert result.created is False and result.details["sent"] is True and result.details["status"] == "SENT"
    assert len(emu.invoices()) == 1 and len(emu.emails) == 1


def test_send_rejected_as_already_sent_counts_as_done(emulators):
    emu = emulators()
    first = run(with_connector(settings_for(emu, invoice_status="DRAFT"), lambda c: c.deliver(make_invoice())))
    invoice_id = first.external_id

    async def go(c: PayPalConnector):
        # someone sends it on paypal.com between our lookup and our send
        status = await c._send_invoice(invoice_id, make_invoice())
        return status, await c._send_invoice(invoice_id, make_invoice())

    status1, status2 = run(with_connector(settings_for(emu), go))
    assert (status1, status2) == ("SENT", "SENT")
    assert ("POST", "/v2/invoicing/invoices/{id}/send", 422) in api_calls(emu)


# --------------------------------------------------------------------------- auth
def test_expired_token_is_replaced_exactly_once_for_concurrent_calls(emulators):
    emu = emulators()

    async def go(c: PayPalConnector):
        await c.deliver(make_invoice("B-0"))
        emu.expire_access_tokens()
        return await asyncio.gather(*(c.deliver(make_invoice(f"B-{n}")) for n in range(1, 6)))

    results = run(with_connector(settings_for(emu), go))
    assert all(r.created for r in results) and len(emu.invoices()) == 6
    assert emu.token_requests == 2  # the first token, then one new token shared by the 5 deliveries


def test_token_refused_twice_is_auth_error_after_exactly_one_new_token(emulators):
    emu = emulators(access_token_ttl=0)  # every token is expired at once
    exc = run(with_connector(settings_for(emu), lambda c: _raises(AuthError, c.deliver(make_invoice()))))
    assert exc.http_status == 401 and "after a new access token" in str(exc) and "AUTHENTICATION_FAILURE" in str(exc)
    assert emu.token_requests == 2 and emu.invoices() == []


def test_workers_share_one_token_through_the_token_store(emulators, tmp_path):
    emu = emulators()
    store_dir = tmp_path / "tokens"

    async def go():
        a = PayPalConnector(settings_for(emu), tenant="acme", token_store=FileTokenStore(store_dir))
        b = PayPalConnector(settings_for(emu), tenant="acme", token_store=FileTokenStore(store_dir))
        try:
            await a.deliver(make_invoice("W-1"))
            await b.deliver(make_invoice("W-2"))  # adopts the stored token
            emu.expire_access_tokens()
            await asyncio.gather(a.deliver(make_invoice("W-3")), b.deliver(make_invoice("W-4")))
            return a.token_requests + b.token_requests
        finally:
            await a.aclose()
            await b.aclose()

    assert run(go()) == 2 == emu.token_requests  # one token, then one replacement shared by both workers
    [token_file] = list(store_dir.glob("*.json"))
    assert (token_file.stat().st_mode & 0o777) == 0o600 and len(emu.invoices()) == 4


def test_wrong_secret_is_auth_error_without_the_secret(emulators, monkeypatch, caplog):
    emu = emulators()
    wrong = "WRONG-paypal-secret-123456"
    monkeypatch.setenv("PAYPAL_CLIENT_SECRET", wrong)
    caplog.set_level(logging.DEBUG)
    holder = {}

    async def go(c: PayPalConnector):
        exc = await _raises(AuthError, c.deliver(make_invoice()))
        holder["state"] = repr(c) + repr(c.__dict__)
        return exc

    exc = run(with_connector(settings_for(emu), go))
    assert "invalid_client" in str(exc) and "PAYPAL_CLIENT_SECRET" in str(exc) and exc.http_status == 401
    for text in (str(exc), repr(exc), holder["state"], caplog.text):
        assert wrong not in text and SECRET not in text
    assert emu.invoices() == []


def test_missing_secret_variable_is_config_error(emulators, monkeypatch):
    emu = emulators()
    monkeypatch.delenv("PAYPAL_CLIENT_SECRET")
    exc = run(with_connector(settings_for(emu), lambda c: _raises(ConfigError, c.check())))
    assert "PAYPAL_CLIENT_SECRET" in str(exc) and "billing.settings.client_secret_env" in str(exc)


def test_missing_invoicing_scope(emulators):
    emu = emulators(scopes=("openid", "https://uri.paypal.com/services/payments/payment/authcapture"))
    exc = run(with_connector(settings_for(emu), lambda c: _raises(MissingScopeError, c.check())))
    assert "missing scope" in str(exc) and exc.missing == ("https://uri.paypal.com/services/invoicing",)
    exc2 = run(with_connector(settings_for(emu), lambda c: _raises(AuthError, c.deliver(make_invoice()))))
    assert exc2.http_status == 403 and "NOT_AUTHORIZED" in str(exc2)


def test_read_only_scope_can_check_but_not_create(emulators):
    emu = emulators(scopes=(SCOPE_READ,))
    run(with_connector(settings_for(emu), lambda c: c.check()))
    exc = run(with_connector(settings_for(emu), lambda c: _raises(AuthError, c.deliver(make_invoice()))))
    assert exc.http_status == 403 and "PERMISSION_DENIED" in str(exc)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError) as info:
        PayPalConnector(
            {"client_id": "c", "client_secret_env": "E", "invoice_status": "PAID", "surprise": 1}, tenant="t"
        )
    text = str(info.value)
    assert "billing.settings.invoice_status" in text and "billing.settings.surprise" in text
    with pytest.raises(ConfigError):
        PayPalConnector(
            {"client_id": "c", "client_secret_env": "E", "client_emails": {"CLI": "not-an-email"}}, tenant="t"
        )
    with pytest.raises(ConfigError) as no_email:
        PayPalConnector({"client_id": "c", "client_secret_env": "E", "no_email": "skip"}, tenant="t")
    assert "billing.settings.no_email" in str(no_email.value) and "'mark_sent' or 'leave_unsent'" in str(no_email.value)


def test_unreachable_api_is_retryable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = {
        "api_url": f"http://127.0.0.1:{port}",
        "client_id": "c",
        "client_secret_env": "PAYPAL_CLIENT_SECRET",
        "timeout_seconds": 1,
    }
    exc = run(with_connector(settings, lambda c: _raises(RetryableError, c.check())))
    assert "request not sent" in str(exc) and not isinstance(exc, UncertainOutcomeError)


def test_registered_entry_point():
    from connectors import registry

    assert registry.load("paypal") is PayPalConnector
    caps = PayPalConnector.capabilities
    assert caps.native_idempotency is False and caps.lookup_by_reference is True and caps.batch_size == 1
    assert caps.rate_limit_per_minute is None  # PayPal publishes none; a tenant may set its own:
    tuned = PayPalConnector(
        {"client_id": "c", "client_secret_env": "E", "rate_limit_per_minute": 30, "max_concurrency": 4}, tenant="t"
    )
    assert (tuned.settings.rate_limit_per_minute, tuned.settings.max_concurrency) == (30, 4)


# --------------------------------------------------------------------------- lifecycle
ISSUED = date(2026, 3, 9)


def revision_2() -> Invoice:
    """ACME-WO-1-R2: the standard lines (209.41) and one more hour at 42.00 + 23 % (9.66) = 261.07."""
    extra = line("Extra labour", "1", "42.00", "42.00", "23", "9.66", "51.66", unit="h")
    return make_invoice("ACME-WO-1-R2", lines=[*standard_lines(), extra])


def retire(emu, previous, **overrides):
    return run(
        with_connector(
            settings_for(emu, **overrides),
            lambda c: c.retire(previous, key="acme:wo:ACME-WO-1:cancel", reason="Work order cancelled", issued=ISSUED),
        )
    )


def deliver(emu, invoice, **overrides):
    return run(with_connector(settings_for(emu, **overrides), lambda c: c.deliver(invoice)))


def amend(emu, invoice, previous):
    return run(with_connector(settings_for(emu), lambda c: c.amend(invoice, previous)))


def test_marker_legal_notes_and_find(emulators):
    emu = emulators()
    legal = "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Directive 2006/112/EC)"
    result = deliver(emu, make_invoice().model_copy(update={"legal_notes": [legal]}), note="Obrigado")
    [stored] = emu.invoices()
    assert stored["detail"]["note"] == f"Obrigado\n{legal}"  # printed on the invoice, after the tenant's note
    assert stored["detail"]["memo"] == "broker:acme:wo:ACME-WO-1-R1:r1"
    emu.record_payment(result.external_id, D("9.41"))
    found = run(with_connector(settings_for(emu), lambda c: c.find("ACME-WO-1-R1")))
    assert found == ExternalInvoice(
        result.external_id,
        "ACME-WO-1-R1",
        D("209.41"),
        "PARTIALLY_PAID",
        marker="acme:wo:ACME-WO-1-R1:r1",
        paid=D("9.41"),
    )


def test_foreign_invoice_under_our_number_is_never_adopted(emulators):
    emu = emulators()
    foreign = emu.plant_invoice("ACME-WO-1-R1", D("999.00"))
    exc = run(with_connector(settings_for(emu), lambda c: _raises(NumberConflictError, c.deliver(make_invoice()))))
    assert "999.00" in str(exc) and "209.41" in str(exc) and "does not carry our marker" in str(exc)
    assert (exc.external_id, exc.theirs, exc.ours) == (foreign, D("999.00"), D("209.41"))
    assert [(i["id"], i["status"], i["amount"]["value"]) for i in emu.invoices()] == [(foreign, "SENT", "999.00")]
    assert [m for m, p, _ in api_calls(emu) if m != "POST" or "search" not in p] == []  # nothing but the lookup


def test_retire_deletes_drafts_and_scheduled_and_cancels_sent(emulators):
    emu = emulators(today=lambda: date(2026, 3, 2))
    draft = deliver(emu, make_invoice("ACME-WO-1-R1"), invoice_status="DRAFT")
    scheduled = deliver(emu, make_invoice("ACME-WO-2-R1", issue=date(2026, 3, 20), due=date(2026, 4, 19)))
    sent = deliver(emu, make_invoice("ACME-WO-3-R1"))
    assert (scheduled.details["status"], sent.details["status"]) == ("SCHEDULED", "SENT")
    results = [
        retire(emu, ExternalInvoice(r.external_id, r.external_number)) for r in (draft, scheduled, sent, draft, sent)
    ]
    assert [(r.action, r.previous_status) for r in results] == [
        ("deleted", "DRAFT"),
        ("deleted", "SCHEDULED"),
        ("voided", "SENT"),
        ("none", None),  # gone
        ("none", "CANCELLED"),
    ]
    assert [(i["detail"]["invoice_number"], i["status"]) for i in emu.invoices()] == [("ACME-WO-3-R1", "CANCELLED")]
    assert emu.emails[-1] == {
        "invoice_id": sent.external_id,
        "invoice_number": "ACME-WO-3-R1",
        "to": CUSTOMER,
        "subject": "Invoice cancelled",
        "note": "Work order cancelled",
    }
    assert emu.balance() == D("0.00")


def test_a_paid_invoice_is_never_cancelled_the_operator_refunds_it(emulators):
    emu = emulators()
    first = deliver(emu, make_invoice())
    emu.record_payment(first.external_id)
    previous = ExternalInvoice(first.external_id, "ACME-WO-1-R1")
    exc = run(
        with_connector(
            settings_for(emu),
            lambda c: _raises(PermanentError, c.retire(previous, key="k", reason="cancelled", issued=ISSUED)),
        )
    )
    assert not isinstance(exc, NumberConflictError)
    text = str(exc)
    assert "is PAID (total 209.41 EUR, paid 209.41 EUR)" in text and "no credit notes" in text
    assert f"/v2/invoicing/invoices/{first.external_id}/refunds" in text and "REFUNDED" in text
    assert emu.invoices()[0]["status"] == "PAID" and not any("/cancel" in p for _, p, _ in emu.calls)
    emu.set_status(first.external_id, "REFUNDED")  # the operator refunded it in PayPal
    assert retire(emu, previous).action == "none"


def test_a_paid_invoice_is_replaced_with_its_total_deducted(emulators):
    emu = emulators()
    first = deliver(emu, make_invoice())
    emu.record_payment(first.external_id)  # 209.41 paid
    previous = ExternalInvoice(first.external_id, "ACME-WO-1-R1")
    amended = amend(emu, revision_2(), previous)
    again = amend(emu, revision_2(), previous)
    assert {k: amended.details[k] for k in ("amendment", "previous_status", "previous_paid", "deducted")} == {
        "amendment": "deducted",
        "previous_status": "PAID",
        "previous_paid": "209.41",
        "deducted": "209.41",
    }
    assert (amended.created, amended.details["status"], amended.details["total"]) == (True, "SENT", "51.66")
    assert (again.external_id, again.created) == (amended.external_id, False)
    old, new = emu.invoices()
    assert old["status"] == "PAID"  # never cancelled: the payment stays recorded on it
    # 261.07 less the 209.41 already invoiced (and paid) = 51.66 due
    assert new["amount"]["breakdown"]["custom"] == {
        "label": "Already invoiced on ACME-WO-1-R1",
        "amount": {"currency_code": "EUR", "value": "-209.41"},
    }
    assert (new["amount"]["value"], new["status"], new["detail"]["memo"]) == (
        "51.66",
        "SENT",
        "broker:acme:wo:ACME-WO-1-R2:r1",
    )
    assert emu.balance() == D("261.07") - D("209.41")


def test_a_partly_paid_invoice_is_replaced_and_its_rest_stays_due(emulators):
    emu = emulators()
    first = deliver(emu, make_invoice())
    emu.record_payment(first.external_id, D("100.00"))  # 109.41 still due on R1
    amended = amend(emu, revision_2(), ExternalInvoice(first.external_id, "ACME-WO-1-R1"))
    assert (amended.details["amendment"], amended.details["previous_paid"], amended.details["total"]) == (
        "deducted",
        "100.00",
        "51.66",
    )
    # owed: 109.41 on R1 + 51.66 on R2 = 161.07 = 261.07 - 100.00 paid
    assert emu.balance() == D("161.07") == revision_2().total - D("100.00")


def test_a_revision_below_what_was_paid_needs_a_refund_first(emulators):
    emu = emulators()
    first = deliver(emu, make_invoice())
    emu.record_payment(first.external_id)
    smaller = make_invoice("ACME-WO-1-R2", lines=standard_lines()[:1])  # 167.90 < 209.41
    exc = run(
        with_connector(
            settings_for(emu),
            lambda c: _raises(PermanentError, c.amend(smaller, ExternalInvoice(first.external_id, "ACME-WO-1-R1"))),
        )
    )
    assert "totals only 167.90" in str(exc) and "Refund that invoice in full in PayPal" in str(exc)
    assert len(emu.invoices()) == 1
    emu.set_status(first.external_id, "REFUNDED")  # the operator did: the replay creates the revision in full
    replayed = amend(emu, smaller, ExternalInvoice(first.external_id, "ACME-WO-1-R1"))
    assert (replayed.details["amendment"], replayed.details["total"]) == ("none", "167.90")
    assert emu.balance() == D("167.90")


def test_an_unpaid_invoice_is_cancelled_then_replaced(emulators):
    emu = emulators()
    first = deliver(emu, make_invoice())
    amended = amend(emu, revision_2(), ExternalInvoice(first.external_id, "ACME-WO-1-R1"))
    again = amend(emu, revision_2(), ExternalInvoice(first.external_id, "ACME-WO-1-R1"))
    assert (amended.details["amendment"], amended.details["previous_status"]) == ("voided", "SENT")
    assert (again.details["amendment"], again.external_id) == ("none", amended.external_id)
    assert [(i["detail"]["invoice_number"], i["status"]) for i in emu.invoices()] == [
        ("ACME-WO-1-R1", "CANCELLED"),
        ("ACME-WO-1-R2", "SENT"),
    ]
    assert emu.balance() == D("261.07")


def test_retire_by_number_needs_our_marker(emulators):
    emu = emulators()
    emu.plant_invoice("ACME-WO-1-R1", D("50.00"))
    exc = run(
        with_connector(
            settings_for(emu),
            lambda c: _raises(
                PermanentError, c.retire(ExternalInvoice("", "ACME-WO-1-R1"), key="k", reason="x", issued=ISSUED)
            ),
        )
    )
    assert "carries no broker marker" in str(exc) and emu.invoices()[0]["status"] == "SENT"
    assert retire(emu, ExternalInvoice("", "ACME-WO-9-R1")).action == "none"
