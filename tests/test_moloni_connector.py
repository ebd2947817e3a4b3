"""MoloniConnector against the Moloni emulator on loopback (real HTTP, no mocks).

Covers what the conformance kit does not: the two-step flow resumed after each step is lost, the
totals check before closing, both rounding methods, e-mail on closing, the password grant, customer
lookup and creation, Moloni's 429 without Retry-After, and secrets kept out of logs. Money values
are computed by hand in the comments.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from connectors.moloni import MoloniConnector
from connectors.moloni.emulator import MoloniEmulator
from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    NumberConflictError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.oauth2 import MemoryTokenStore

SECRET = "moloni-client-SECRET-41"
REFRESH = "moloni-refresh-TOKEN-77"
PASSWORD = "moloni-PASSWORD-99"


@pytest.fixture
def emulators():
    started: list[MoloniEmulator] = []

    def make(**kwargs) -> MoloniEmulator:
        kwargs.setdefault("client_secret", SECRET)
        kwargs.setdefault("refresh_token", REFRESH)
        kwargs.setdefault("password", PASSWORD)
        kwargs.setdefault("hang_seconds", 1.0)
        emu = MoloniEmulator(**kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
        assert emu.server_errors == []


@pytest.fixture(autouse=True)
def secrets_env(monkeypatch):
    monkeypatch.setenv("MOLONI_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("MOLONI_REFRESH_TOKEN", REFRESH)
    monkeypatch.setenv("MOLONI_PASSWORD", PASSWORD)


def settings_for(emu: MoloniEmulator, **overrides) -> dict:
    base = {
        "api_url": emu.url,
        "client_id": "demo-client",
        "client_secret_env": "MOLONI_CLIENT_SECRET",
        "refresh_token_env": "MOLONI_REFRESH_TOKEN",
        "company_id": 5,
        "document_set_id": 7,
        "product_ids": {"labour": 101, "travel": 102, "part": 104, "expense": 105},
        "tax_ids": {"23": 1, "13": 2},
        "exemption_reason": "M07",
    }
    base.update(overrides)
    return base


def line(desc, qty, price, net, rate, tax, total, *, kind="labour", discount="0") -> InvoiceLine:
    return InvoiceLine(
        kind=kind,
        description=desc,
        quantity=D(qty),
        unit_price=D(price),
        discount_percent=D(discount),
        net=D(net),
        tax_rate=D(rate),
        tax=D(tax),
        total=D(total),
        source="test",
        rule="test",
    )


def make_invoice(number="ACME-WO-1-R1", lines=None, *, contact_id="201", client_id="CLI-HAL") -> Invoice:
    if lines is None:
        lines = [
            # 3.25 h x 42.00 = 136.50, VAT 31.395 -> 31.40
            line("HVAC labour", "3.25", "42.00", "136.50", "23", "31.40", "167.90"),
            # 2 x 18.75 = 37.50 less 10 % = 33.75, VAT 7.7625 -> 7.76
            line("Contactor 25A", "2", "18.75", "33.75", "23", "7.76", "41.51", kind="part", discount="10"),
        ]
    return Invoice(
        invoice_key=f"acme:wo:{number}:r1",
        invoice_number=number,
        order_key=f"acme:wo:{number}",
        tenant="acme",
        billing_system="moloni",
        event_id="e1",
        event_type="maintenance.work_order.completed",
        event_time=datetime(2026, 3, 2, 10, tzinfo=UTC),
        document="wo",
        document_id=number,
        revision=1,
        client_id=client_id,
        client_name="Hotel Atlântico Lisboa, S.A.",
        contact_id=contact_id,
        site_id="S1",
        currency="EUR",
        issue_date=date(2026, 3, 2),
        due_date=date(2026, 4, 1),
        reference=f"WO {number}",
        lines=lines,
        net_total=sum((ln.net for ln in lines), D("0.00")),
        tax_total=sum((ln.tax for ln in lines), D("0.00")),
        total=sum((ln.total for ln in lines), D("0.00")),
        cost_total=D("0"),
        margin=D("0"),
    )


# three lines of 2.37 at 23 %: per line 0.5451 -> 0.55 each, ours 7.11 + 1.65 = 8.76; Moloni "ao documento" 8.75
THREE = [line(f"Article {n}", "1", "2.37", "2.37", "23", "0.55", "2.92", kind="part") for n in range(3)]


def run(emu, fn, **overrides):
    async def go():
        connector = MoloniConnector(settings_for(emu, **overrides), tenant="acme", token_store=MemoryTokenStore())
        try:
            return await fn(connector)
        finally:
            await connector.aclose()

    return asyncio.run(go())


async def raises(exc_type, coro):
    with pytest.raises(exc_type) as info:
        await coro
    return info.value


def api_calls(emu) -> list[str]:
    return [
        path.split("/")[2] + "/" + path.split("/")[3]
        for _, path, _ in emu.calls
        if path.startswith("/v1/") and "grant" not in path
    ]


# --------------------------------------------------------------------------- the flow
def test_deliver_creates_verifies_closes_and_emails_with_our_totals(emulators):
    emu = emulators()

    async def go(c):
        await c.check()
        return await c.deliver(make_invoice())

    result = run(emu, go, send_email=True, email_message="Segue a fatura.")
    assert result.created is True and result.external_number == "FT 2026/1"
    assert result.details["steps"] == ["inserted draft", "closed"] and result.details["total_matches"] is True
    [doc] = emu.invoices()
    assert str(doc["document_id"]) == result.external_id and doc["status"] == 1 and doc["number"] == 1
    # gross 136.50 + 37.50 = 174.00, discount 3.75, VAT 31.40 + 7.76 = 39.16, payable 209.41
    assert (doc["gross_value"], doc["comercial_discount_value"], doc["taxes_value"], doc["net_value"]) == (
        D("174.00"),
        D("3.75"),
        D("39.16"),
        D("209.41"),
    )
    assert (
        doc["your_reference"] == "ACME-WO-1-R1"
        and doc["our_reference"] == "WO ACME-WO-1-R1"
        and doc["customer_id"] == 201
    )
    assert emu.emails == [
        {
            "document_id": doc["document_id"],
            "email": "contas@hotel-atlantico.example",
            "name": "Hotel Atlântico Lisboa, S.A.",
            "msg": "Segue a fatura.",
        }
    ]
    assert api_calls(emu) == [
        "companies/getAll",
        "invoices/getAll",
        "invoices/insert",
        "invoices/getOne",
        "customers/getOne",
        "invoices/update",
        "invoices/getOne",
    ]


def test_a_second_delivery_finds_the_closed_invoice_and_does_not_email_again(emulators):
    emu = emulators()

    async def go(c):
        first = await c.deliver(make_invoice())
        second = await c.deliver(make_invoice())
        return first, second, await c.find("ACME-WO-1-R1")

    first, second, found = run(emu, go, send_email=True)
    assert second.created is False and second.external_id == first.external_id
    assert second.details["steps"] == ["found closed invoice"]
    assert found.external_id == first.external_id and found.total == D("209.41") and found.status == "closed"
    assert len(emu.invoices()) == 1 and len(emu.emails) == 1


def test_draft_mode_leaves_a_draft_that_find_reports(emulators):
    emu = emulators()

    async def go(c):
        result = await c.deliver(make_invoice())
        return result, await c.find("ACME-WO-1-R1"), await c.deliver(make_invoice())

    result, found, again = run(emu, go, invoice_status="draft", send_email=True)
    assert result.details["status"] == "draft" and result.external_number == ""
    assert found is not None and found.status == "draft" and found.total == D("209.41")
    assert again.created is False and again.external_id == result.external_id
    assert [d["status"] for d in emu.invoices()] == [0] and emu.emails == []


def test_lost_insert_leaves_a_draft_that_the_next_delivery_closes(emulators):
    emu = emulators()
    emu.inject_fault("timeout_after_commit", only="invoices/insert")

    async def go(c):
        exc = await raises(UncertainOutcomeError, c.deliver(make_invoice()))
        held = emu.invoices()
        found = await c.find("ACME-WO-1-R1")  # a draft is not a delivered invoice
        return exc, held, found, await c.deliver(make_invoice())

    exc, held, found, again = run(emu, go, timeout_seconds=0.3)
    assert "reconcile" in str(exc)
    assert [d["status"] for d in held] == [0]
    assert found is None
    assert again.created is False and again.external_id == str(held[0]["document_id"])
    assert again.details["steps"] == ["found draft", "closed"]
    assert [(d["status"], d["number"]) for d in emu.invoices()] == [(1, 1)]


def test_lost_close_is_reconciled_by_find(emulators):
    emu = emulators()
    emu.inject_fault("drop_after_commit", only="invoices/update")

    async def go(c):
        await raises(UncertainOutcomeError, c.deliver(make_invoice()))
        return await c.find("ACME-WO-1-R1"), await c.deliver(make_invoice())

    found, again = run(emu, go)
    assert found is not None and found.status == "closed" and found.number == "FT 2026/1"
    assert again.external_id == found.external_id and again.details["steps"] == ["found closed invoice"]
    assert len(emu.invoices()) == 1


def test_closing_an_invoice_closed_meanwhile_counts_as_done(emulators):
    emu = emulators()

    async def go(c):
        draft = await c.deliver(make_invoice())
        stale = await c._get_one(int(draft.external_id))
        await c._api(
            "invoices/update", {"company_id": 5, "document_id": int(draft.external_id), "status": 1}, idempotent=False
        )
        return await c._close(make_invoice(), stale)

    assert run(emu, go, invoice_status="draft") is None
    assert [d["status"] for d in emu.invoices()] == [1]


# --------------------------------------------------------------------------- totals and rounding
def test_company_rounding_on_the_document_refuses_an_invoice_it_would_total_differently(emulators):
    emu = emulators(rounding_method="document")
    exc = run(
        emu,
        lambda c: raises(PermanentError, c.deliver(make_invoice("ACME-WO-3-R1", THREE))),
        rounding_method="document",
    )
    assert "total of 8.75" in str(exc) and "ours is 8.76" in str(exc) and "Arredondamento à linha" in str(exc)
    assert emu.invoices() == [] and "invoices/insert" not in api_calls(emu)
    # a single line has the same total under both methods: 100.00 + 23.00
    one = make_invoice("ACME-WO-4-R1", [line("Labour", "2", "50.00", "100.00", "23", "23.00", "123.00")])
    result = run(emu, lambda c: c.deliver(one), rounding_method="document")
    assert result.details["net_value"] == "123.00"


def test_a_draft_with_another_total_is_deleted_and_nothing_is_issued(emulators):
    emu = emulators(rounding_method="document")  # the company rounds on the document, the settings say "line"
    exc = run(emu, lambda c: raises(PermanentError, c.deliver(make_invoice("ACME-WO-3-R1", THREE))))
    assert "computed a total of 8.75" in str(exc) and "ours is 8.76" in str(exc) and "deleted" in str(exc)
    assert emu.invoices() == []
    assert api_calls(emu)[-2:] == ["invoices/getOne", "invoices/delete"]


def test_zero_rate_line_without_exemption_reason_is_refused_before_any_call(emulators):
    emu = emulators()
    exempt = make_invoice(lines=[line("Waste fee", "1", "12.50", "12.50", "0", "0.00", "12.50", kind="expense")])
    exc = run(emu, lambda c: raises(PermanentError, c.deliver(exempt)), exemption_reason=None)
    assert "line 1 ('Waste fee')" in str(exc) and "exemption_reason" in str(exc)
    assert emu.calls == []


# --------------------------------------------------------------------------- errors
def test_moloni_validation_errors_are_permanent_with_their_descriptions(emulators):
    emu = emulators()
    exc = run(emu, lambda c: raises(PermanentError, c.deliver(make_invoice(contact_id="999"))))
    assert "Moloni refused: Field 'customer_id' must be valid" in str(exc)
    assert exc.http_status is None and exc.moloni_errors == ["Field 'customer_id' must be valid"]
    assert emu.invoices() == []


def test_503_is_retryable_and_nothing_is_stored(emulators):
    emu = emulators()
    emu.inject_fault("503", only="invoices/insert")
    exc = run(emu, lambda c: raises(RetryableError, c.deliver(make_invoice())))
    assert type(exc) is RetryableError and exc.http_status == 503 and emu.invoices() == []


def test_429_uses_retry_after_or_the_plugins_two_seconds(emulators):
    emu = emulators()
    emu.inject_fault("429", retry_after=7)
    exc = run(emu, lambda c: raises(RateLimitedError, c.deliver(make_invoice())))
    assert exc.retry_after == 7 and exc.http_status == 429
    quiet = emulators(send_retry_after=False)
    quiet.inject_fault("429")
    assert run(quiet, lambda c: raises(RateLimitedError, c.deliver(make_invoice()))).retry_after == 2.0


# --------------------------------------------------------------------------- auth
def test_expired_access_token_is_refreshed_once(emulators):
    emu = emulators()

    async def go(c):
        await c.deliver(make_invoice("ACME-WO-1-R1"))
        emu.expire_access_tokens()
        return await c.deliver(make_invoice("ACME-WO-2-R1"))

    run(emu, go)
    assert emu.grant_requests == ["refresh_token", "refresh_token"] and emu.refresh_token_uses[0] == REFRESH
    assert emu.refresh_token_uses[1] != REFRESH  # the rotated token from the store was used
    assert [s for _, p, s in emu.calls if "grant" not in p].count(401) == 1


def test_token_refused_twice_is_auth_error_after_exactly_one_refresh(emulators):
    emu = emulators(access_token_ttl=0)
    exc = run(emu, lambda c: raises(AuthError, c.check()))
    assert exc.http_status == 401 and "after a token refresh" in str(exc)
    assert emu.grants_served == 2


def test_password_grant(emulators):
    emu = emulators()
    settings = {"refresh_token_env": None, "username": "demo@acme.example", "password_env": "MOLONI_PASSWORD"}
    result = run(emu, lambda c: c.deliver(make_invoice()), **settings)
    assert result.created and emu.grant_requests == ["password"]
    bad = run(emu, lambda c: raises(AuthError, c.check()), **{**settings, "username": "someone@else.example"})
    assert "invalid_grant" in str(bad) and "someone@else.example" in str(bad) and PASSWORD not in str(bad)


def test_bad_credentials_missing_secrets_and_unknown_company(emulators, monkeypatch):
    emu = emulators()
    monkeypatch.setenv("MOLONI_CLIENT_SECRET", "WRONG-secret-value-123")
    exc = run(emu, lambda c: raises(AuthError, c.check()))
    assert (
        "invalid_client" in str(exc) and "WRONG-secret-value-123" not in str(exc) and "MOLONI_CLIENT_SECRET" in str(exc)
    )
    monkeypatch.delenv("MOLONI_CLIENT_SECRET")
    exc = run(emu, lambda c: raises(ConfigError, c.check()))
    assert "MOLONI_CLIENT_SECRET" in str(exc) and "billing.settings.client_secret_env" in str(exc)
    monkeypatch.setenv("MOLONI_CLIENT_SECRET", SECRET)
    exc = run(emu, lambda c: raises(UnknownAccountError, c.check()), company_id=6)
    assert "unknown company 6" in str(exc) and "reach 5" in str(exc)


def test_settings_are_validated():
    base = {"client_id": "c", "client_secret_env": "S", "company_id": 5, "document_set_id": 7}
    with pytest.raises(ConfigError) as info:
        MoloniConnector(base, tenant="t")
    assert "refresh_token_env, or username and password_env" in str(info.value)
    with pytest.raises(ConfigError) as info:
        MoloniConnector({**base, "refresh_token_env": "R", "create_customers": True}, tenant="t")
    assert "customer_defaults" in str(info.value)
    with pytest.raises(ConfigError) as info:
        MoloniConnector({**base, "refresh_token_env": "R", "exemption_reason": "isento"}, tenant="t")
    assert "billing.settings.exemption_reason" in str(info.value)


def test_tokens_and_secrets_never_reach_the_logs(emulators, caplog):
    emu = emulators()
    caplog.set_level(logging.DEBUG)
    run(emu, lambda c: c.deliver(make_invoice()))
    assert "access_token=***" in caplog.text and "client_secret=***" in caplog.text
    for secret in (SECRET, REFRESH, *emu.issued_tokens):
        assert secret not in caplog.text


# --------------------------------------------------------------------------- customers
def test_customer_found_by_vat_number_or_created(emulators):
    emu = emulators()
    mapped = make_invoice("ACME-WO-5-R1", contact_id=None, client_id="CLI-HAL")
    new = make_invoice("ACME-WO-6-R1", contact_id=None, client_id="CLI-NEW")
    defaults = {"maturity_date_id": 11, "payment_method_id": 21, "address": "Rua do Cliente 1", "city": "Porto"}

    async def go(c):
        c.clients = {
            "CLI-HAL": SimpleNamespace(name="Hotel (renamed)", email=None, tax_number="500000000"),
            "CLI-NEW": SimpleNamespace(name="Oficina Nova, Lda.", email="geral@oficina.example", tax_number=None),
        }
        first = await c.deliver(mapped)
        second = await c.deliver(new)
        return first, second

    _first, _second = run(emu, go, create_customers=True, customer_defaults=defaults)
    docs = {d["your_reference"]: d for d in emu.invoices()}
    assert docs["ACME-WO-5-R1"]["customer_id"] == 201  # found by NIF
    created = emu.companies[5]["customers"][docs["ACME-WO-6-R1"]["customer_id"]]
    assert created == {
        "name": "Oficina Nova, Lda.",
        "vat": "999999990",
        "number": "CLI-NEW",
        "email": "geral@oficina.example",
        "address": "Rua do Cliente 1",
        "zip_code": "",
        "city": "Porto",
    }
    stranger = make_invoice("ACME-WO-7-R1", contact_id=None, client_id="CLI-X").model_copy(
        update={"client_name": "Desconhecido, Lda."}
    )
    refused = run(emu, lambda c: raises(PermanentError, c.deliver(stranger)))
    assert "client CLI-X" in str(refused) and "create_customers" in str(refused)


# --------------------------------------------------------------------------- ownership and the lifecycle
# The standard invoice: net 170.25 + VAT 39.16 = 209.41 (see make_invoice).
def retire(c, result, *, key="acme:wo:ACME-WO-1-R1:r2", reason="replaced by ACME-WO-1-R2"):
    previous = ExternalInvoice(result.external_id, result.external_number)
    return c.retire(previous, key=key, reason=reason, issued=date(2026, 3, 5))


def test_find_reads_back_our_marker_moloni_total_and_payments(emulators):
    emu = emulators()
    result = run(emu, lambda c: c.deliver(make_invoice()))
    [doc] = emu.invoices()
    assert doc["notes"] == "broker:acme:wo:ACME-WO-1-R1:r1" and doc["our_reference"] == "WO ACME-WO-1-R1"
    emu.mark_paid(int(result.external_id), D("100.00"))
    found = run(emu, lambda c: c.find("ACME-WO-1-R1"))
    assert (found.marker, found.total, found.paid, found.status) == (
        "acme:wo:ACME-WO-1-R1:r1",
        D("209.41"),
        D("100.00"),
        "closed",
    )


def test_a_foreign_invoice_under_our_number_is_a_number_conflict_and_nothing_changes(emulators):
    emu = emulators()
    foreign = emu.plant_foreign("ACME-WO-1-R1", D("999.00"))
    before = emu.invoices()
    exc = run(emu, lambda c: raises(NumberConflictError, c.deliver(make_invoice())))
    assert exc.error_class == "number_conflict" and exc.external_id == str(foreign)
    assert (exc.ours, exc.theirs) == (D("209.41"), D("999.00"))
    assert "999.00" in str(exc) and "209.41" in str(exc) and "does not carry our marker" in str(exc)
    assert emu.invoices() == before and emu.credit_notes() == []
    assert "invoices/insert" not in api_calls(emu) and "invoices/update" not in api_calls(emu)


def test_retire_deletes_a_draft_and_a_repeat_changes_nothing(emulators):
    emu = emulators()

    async def go(c):
        result = await c.deliver(make_invoice())
        return await retire(c, result), await retire(c, result)

    first, again = run(emu, go, invoice_status="draft")
    assert (first.action, first.previous_status, first.credit_note_number) == ("deleted", "draft", None)
    assert first.details == {"previous_reference": "ACME-WO-1-R1"}
    assert (again.action, again.details) == ("none", {"moloni": "invoice not found"})
    assert emu.invoices() == [] and emu.credit_notes() == []
    assert api_calls(emu).count("invoices/delete") == 1


def test_retire_credits_a_closed_invoice_in_full_once(emulators):
    emu = emulators()

    async def go(c):
        result = await c.deliver(make_invoice())
        return result, await retire(c, result), await retire(c, result, key="acme:wo:ACME-WO-1:cancel")

    result, credited, again = run(emu, go)
    [note] = emu.credit_notes()
    assert (credited.action, credited.previous_number, credited.previous_status) == ("credited", "FT 2026/1", "closed")
    assert (credited.credit_note_id, credited.credit_note_number) == (str(note["document_id"]), "ACME-WO-1-R1-CN")
    assert (credited.credit_note_total, credited.paid) == (D("209.41"), None)
    # the invoice's own two products, closed, numbered 1 in the credit notes of series 7, dated the 5th
    assert (note["status"], note["number"], note["date"], note["net_value"]) == (1, 1, "2026-03-05", D("209.41"))
    assert note["your_reference"] == "ACME-WO-1-R1-CN" and len(note["products"]) == 2
    assert note["associated_documents"] == [{"associated_id": int(result.external_id), "value": D("209.41")}]
    assert note["notes"] == "replaced by ACME-WO-1-R2\nbroker:acme:wo:ACME-WO-1-R1:r2"
    [invoice] = emu.invoices()
    assert (invoice["status"], invoice["reconciled_value"]) == (1, D("209.41"))  # closed, never changed
    assert emu.balance() == D("0.00")
    assert (again.action, again.credit_note_id, again.details["moloni"]) == (
        "none",
        credited.credit_note_id,
        "credit note already issued",
    )
    assert api_calls(emu).count("creditNotes/insert") == 1 and "invoices/delete" not in api_calls(emu)


def test_retire_credits_a_partly_paid_invoice_and_reports_the_payment(emulators):
    emu = emulators()
    result = run(emu, lambda c: c.deliver(make_invoice()))
    emu.mark_paid(int(result.external_id), D("100.00"))
    credited = run(emu, lambda c: retire(c, result))
    assert (credited.action, credited.paid, credited.credit_note_total) == ("credited", D("100.00"), D("209.41"))
    # 209.41 due less 100.00 paid = 109.41 settled by the credit note; its other 100.00 is owed back
    [note] = emu.credit_notes()
    assert note["reconciled_value"] == D("109.41") and emu.balance() == D("-100.00")


def test_a_lost_credit_note_insert_is_found_by_the_next_retire(emulators):
    emu = emulators()

    async def go(c):
        result = await c.deliver(make_invoice())
        emu.inject_fault("timeout_after_commit", only="creditNotes/insert")
        exc = await raises(UncertainOutcomeError, retire(c, result))
        return exc, await retire(c, result)

    exc, again = run(emu, go, timeout_seconds=0.3)
    [note] = emu.credit_notes()
    assert "creditNotes/insert" in str(exc)
    assert (again.action, again.credit_note_id, again.credit_note_total) == (
        "none",
        str(note["document_id"]),
        D("209.41"),
    )
    assert emu.balance() == D("0.00")


async def someone_credits(c, invoice_id: int, value: D, products: list, *, status: int) -> None:
    """A credit note under our credit-note reference ACME-WO-1-R1-CN, inserted outside ``retire``."""
    fields = {
        "company_id": 5,
        "date": "2026-03-04",
        "document_set_id": 7,
        "customer_id": 201,
        "your_reference": "ACME-WO-1-R1-CN",
        "associated_documents": [{"associated_id": invoice_id, "value": value}],
        "status": status,
        "products": products,
    }
    await c._api("creditNotes/insert", fields, idempotent=False)


def test_a_draft_credit_note_under_our_reference_is_closed_not_duplicated(emulators):
    emu = emulators()

    async def go(c):
        result = await c.deliver(make_invoice())
        doc = await c._get_one(int(result.external_id))
        products = [
            {k: p[k] for k in ("product_id", "name", "qty", "price", "discount")}
            | {"taxes": [{"tax_id": t["tax_id"]} for t in p["taxes"]]}
            for p in doc["products"]
        ]
        await someone_credits(c, int(result.external_id), D("209.41"), products, status=0)
        return await retire(c, result)

    credited = run(emu, go)
    [note] = emu.credit_notes()
    assert (note["status"], note["date"], str(note["document_id"])) == (1, "2026-03-04", credited.credit_note_id)
    assert credited.action == "credited" and credited.credit_note_total == D("209.41")
    assert api_calls(emu).count("creditNotes/insert") == 1 and api_calls(emu).count("creditNotes/update") == 1
    assert emu.balance() == D("0.00")


def test_a_credit_note_of_another_invoice_under_our_reference_is_a_number_conflict(emulators):
    emu = emulators()
    other = emu.plant_foreign("SOMEONE-ELSES", D("50.00"))

    async def go(c):
        result = await c.deliver(make_invoice())
        products = [{"product_id": 101, "name": "X", "qty": 1, "price": D("50.00"), "exemption_reason": "M07"}]
        await someone_credits(c, other, D("50.00"), products, status=1)
        return await raises(NumberConflictError, retire(c, result))

    exc = run(emu, go)
    assert (exc.number, exc.ours, exc.theirs) == ("ACME-WO-1-R1-CN", D("209.41"), D("50.00"))
    assert len(emu.credit_notes()) == 1 and emu.balance() == D("209.41")
