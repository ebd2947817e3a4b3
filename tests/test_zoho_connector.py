"""ZohoConnector against the Zoho emulator on loopback (real HTTP, no mocks). Money by hand in comments."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from decimal import Decimal as D

import httpx
import pytest

from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    MissingScopeError,
    NumberConflictError,
    PermanentError,
    RateLimitedError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.oauth2 import MemoryTokenStore
from connectors.zoho import ZohoConnector, ZohoSettings
from connectors.zoho.emulator import DEFAULT_ORG, ZohoEmulator

SECRET = "zoho-unit-secret-9a7c"
REFRESH = "1000.unit.refresh.token"
CUSTOMER = "460000099000001"


@pytest.fixture
def emulators(monkeypatch):
    monkeypatch.setenv("ZOHO_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("ZOHO_REFRESH_TOKEN", REFRESH)
    started: list[ZohoEmulator] = []

    def make(**kwargs) -> ZohoEmulator:
        kwargs.setdefault(
            "contacts", {CUSTOMER: {"contact_name": "Hotel Atlântico Lisboa, S.A.", "email": "contas@hotel.example"}}
        )
        emu = ZohoEmulator(
            client_id="1000.UNIT", client_secret=SECRET, refresh_token=REFRESH, hang_seconds=1, **kwargs
        ).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
        assert emu.server_errors == []


def settings(emu: ZohoEmulator, **overrides) -> dict:
    return {
        "data_center": "eu",
        "api_url": emu.url,
        "accounts_url": emu.url,
        "organization_id": DEFAULT_ORG,
        "client_id": "1000.UNIT",
        "client_secret_env": "ZOHO_CLIENT_SECRET",
        "refresh_token_env": "ZOHO_REFRESH_TOKEN",
        **overrides,
    }


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
    net="190.25",
    tax="43.76",
    total="234.01",
    inclusive=False,
) -> Invoice:
    if lines is None:
        lines = [
            line(
                "HVAC labour (Ana Costa)", "3.25", "42.00", "136.50", "23", "31.40", "167.90"
            ),  # 23 % = 31.395 -> 31.40
            line("Contactor 25A", "2", "18.75", "33.75", "23", "7.76", "41.51", discount="10", kind="part", unit="un"),
            line("Filter G4", "2", "10.00", "20.00", "23", "4.60", "24.60", kind="part", unit="un"),
        ]
    return Invoice(
        invoice_key=f"acme:wo:{number}:r1",
        invoice_number=number,
        order_key=f"acme:wo:{number}",
        tenant="acme",
        billing_system="zoho",
        event_id="e",
        event_type="maintenance.work_order.completed",
        event_time=datetime(2026, 3, 2, 10, tzinfo=UTC),
        document="wo",
        document_id=number,
        revision=1,
        client_id="CLI-HAL",
        client_name="Hotel Atlântico Lisboa, S.A.",
        contact_id=contact_id,
        site_id="S1",
        currency="EUR",
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
    )


def run(settings_dict, fn, store=None):
    async def go():
        connector = ZohoConnector(settings_dict, tenant="acme", token_store=store or MemoryTokenStore())
        try:
            return await fn(connector)
        finally:
            await connector.aclose()

    return asyncio.run(go())


def api_calls(emu):
    return [(m, p, s) for m, p, s in emu.calls if p.startswith("/invoice/v3")]


# --------------------------------------------------------------------------- settings
def test_data_centre_urls_and_validation():
    s = ZohoSettings(
        data_center="com.au", organization_id="1", client_id="c", client_secret_env="A", refresh_token_env="B"
    )
    assert (s.api_base, s.accounts_base) == ("https://www.zohoapis.com.au", "https://accounts.zoho.com.au")
    assert (
        ZohoSettings(organization_id="1", client_id="c", client_secret_env="A", refresh_token_env="B").api_base
        == "https://www.zohoapis.com"
    )
    with pytest.raises(ConfigError) as info:
        ZohoConnector(
            {
                "data_center": "fr",
                "organization_id": "1",
                "client_id": "c",
                "client_secret_env": "A",
                "refresh_token_env": "B",
            },
            tenant="t",
        )
    assert "billing.settings.data_center" in str(info.value) and "'fr'" in str(info.value)
    with pytest.raises(ConfigError):
        ZohoConnector(
            {
                "organization_id": "1",
                "client_id": "c",
                "client_secret_env": "A",
                "refresh_token_env": "B",
                "send_email": True,
                "invoice_status": "draft",
            },
            tenant="t",
        )


# --------------------------------------------------------------------------- happy path
def test_deliver_creates_checks_and_marks_sent(emulators):
    emu = emulators()

    async def go(c):
        await c.check()
        return await c.deliver(make_invoice())

    result = run(settings(emu), go)
    [inv] = emu.invoices()
    assert result.created and result.external_id == inv["invoice_id"] and result.external_number == "ACME-WO-1-R1"
    # Zoho: item totals 136.50 + 33.75 + 20.00 = 190.25; one 23 % tax on 190.25 = 43.7575 -> 43.76; total 234.01
    assert (inv["sub_total"], inv["tax_total"], inv["total"], inv["adjustment"]) == (
        D("190.25"),
        D("43.76"),
        D("234.01"),
        D("0.00"),
    )
    assert inv["status"] == "sent" and inv["reference_number"] == "WO ACME-WO-1-R1" and inv["customer_id"] == CUSTOMER
    assert [(li["rate"], li["quantity"]) for li in inv["line_items"]] == [
        (D("42.00"), D("3.25")),
        (D("33.75"), D(1)),
        (D("10.00"), D(2)),
    ]
    assert api_calls(emu) == [
        ("GET", "/invoice/v3/organizations", 200),
        ("GET", "/invoice/v3/settings/taxes", 200),
        ("POST", "/invoice/v3/invoices", 201),
        ("POST", f"/invoice/v3/invoices/{inv['invoice_id']}/status/sent", 200),
    ]
    assert emu.refresh_count == 1


def test_per_tax_rounding_is_balanced_by_an_adjustment(emulators):
    emu = emulators()
    lines = [
        line(f"Washer kit {n}", "1", "1.05", "1.05", "23", "0.24", "1.29", kind="part", unit="un") for n in range(5)
    ]
    # ours 5 x 0.24 = 1.20 tax, total 6.45; Zoho: 5.25 x 23 % = 1.2075 -> 1.21, so adjustment -0.01
    result = run(settings(emu), lambda c: c.deliver(make_invoice(lines=lines, net="5.25", tax="1.20", total="6.45")))
    [inv] = emu.invoices()
    assert (inv["tax_total"], inv["adjustment"], inv["total"]) == (D("1.21"), D("-0.01"), D("6.45"))
    assert inv["adjustment_description"] == "Rounding (tax per line)" and result.details["adjustment"] == "-0.01"


def test_inclusive_invoice(emulators):
    emu = emulators()
    lines = [
        line("Boiler service", "1", "123.00", "100.00", "23", "23.00", "123.00"),
        line("Travel", "0.5", "45.00", "18.29", "23", "4.21", "22.50", kind="travel"),
    ]
    run(
        settings(emu, invoice_status="draft"),
        lambda c: c.deliver(make_invoice(lines=lines, inclusive=True, net="118.29", tax="27.21", total="145.50")),
    )
    [inv] = emu.invoices()
    # Zoho: gross 145.50 with one inclusive 23 % tax: 145.50 x 23 / 123 = 27.2073 -> 27.21; total 145.50
    assert inv["is_inclusive_tax"] is True and (inv["tax_total"], inv["total"], inv["status"]) == (
        D("27.21"),
        D("145.50"),
        "draft",
    )


# --------------------------------------------------------------------------- uniqueness = idempotency
def test_reused_number_is_looked_up_and_recorded_as_delivered(emulators):
    emu = emulators()
    first = run(settings(emu), lambda c: c.deliver(make_invoice()))
    second = run(settings(emu), lambda c: c.deliver(make_invoice()))
    assert second.created is False and second.external_id == first.external_id and second.details["duplicate"] is True
    assert len(emu.invoices()) == 1
    assert ("POST", "/invoice/v3/invoices", 400) in emu.calls
    # the same number on another customer's invoice is not ours
    other = emu.contacts()[0]["contact_id"]
    emu.seed_contacts["460000099000002"] = {"contact_name": "Other"}
    emu.reset_state()
    run(settings(emu), lambda c: c.deliver(make_invoice(contact_id="460000099000002")))
    with pytest.raises(PermanentError) as info:
        run(settings(emu), lambda c: c.deliver(make_invoice(contact_id=other)))
    assert "another customer" in str(info.value)


def test_lost_create_answer_is_reconciled(emulators):
    emu = emulators()
    emu.inject_fault("timeout_after_commit", method="POST", path="/invoices")

    async def go(c):
        with pytest.raises(UncertainOutcomeError):
            await c.deliver(make_invoice())
        assert await c.find("ACME-WO-1-R1") is None  # still a draft: not what the tenant wants yet
        return await c.deliver(make_invoice())

    result = run(settings(emu, timeout_seconds=0.3), go)
    [inv] = emu.invoices()
    assert result.created is False and result.external_id == inv["invoice_id"] and inv["status"] == "sent"
    found = run(settings(emu), lambda c: c.find("ACME-WO-1-R1"))
    assert found is not None and found.total == D("234.01") and found.status == "sent"


def test_send_email_once(emulators):
    emu = emulators()
    run(settings(emu, send_email=True), lambda c: c.deliver(make_invoice()))
    again = run(settings(emu, send_email=True), lambda c: c.deliver(make_invoice()))
    assert again.created is False and [e["to"] for e in emu.emails] == [["contas@hotel.example"]]
    assert emu.invoices()[0]["is_emailed"] is True and emu.invoices()[0]["status"] == "sent"


# --------------------------------------------------------------------------- auth
def test_expired_token_is_refreshed_once_and_stored(emulators):
    emu = emulators()
    store = MemoryTokenStore()
    run(settings(emu), lambda c: c.deliver(make_invoice("ACME-WO-1-R1")), store=store)
    run(
        settings(emu), lambda c: c.deliver(make_invoice("ACME-WO-2-R1")), store=store
    )  # a new connector reuses the stored token
    assert emu.refresh_count == 1
    emu.expire_access_tokens()
    run(settings(emu), lambda c: c.deliver(make_invoice("ACME-WO-3-R1")), store=store)
    assert emu.refresh_count == 2 and emu.refresh_token_uses == [REFRESH, REFRESH]  # Zoho refresh tokens do not rotate
    assert ("GET", "/invoice/v3/settings/taxes", 401) in emu.calls


def test_refused_refresh_and_token_rate_limit(emulators, monkeypatch, caplog):
    emu = emulators(token_limit=1)
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("ZOHO_REFRESH_TOKEN", "1000.not.a.real.token")
    with pytest.raises(AuthError) as info:
        run(settings(emu), lambda c: c.check())
    assert "invalid_code" in str(info.value) and "ZOHO_REFRESH_TOKEN" in str(info.value)
    assert "1000.not.a.real.token" not in str(info.value) + caplog.text
    monkeypatch.setenv("ZOHO_REFRESH_TOKEN", REFRESH)
    run(settings(emu), lambda c: c.check())
    with pytest.raises(RateLimitedError) as info:  # 2nd grant for this refresh token within the window: Access Denied
        run(settings(emu), lambda c: c.check())
    assert info.value.retry_after == 60


def test_missing_scope_and_unknown_organisation(emulators):
    emu = emulators(scope_denied=("/invoices",))
    with pytest.raises(MissingScopeError):
        run(settings(emu), lambda c: c.deliver(make_invoice()))
    with pytest.raises(UnknownAccountError) as info:
        run(settings(emu, organization_id="777"), lambda c: c.check())
    assert "777" in str(info.value)
    with pytest.raises(UnknownAccountError):
        run(settings(emu, organization_id="777"), lambda c: c.deliver(make_invoice()))


# --------------------------------------------------------------------------- limits and validation
def test_rate_limit_429_headers(emulators):
    emu = emulators(rate_limit_per_minute=3)

    async def go(c):
        await c.deliver(make_invoice())  # taxes + create + mark sent = 3 calls
        with pytest.raises(RateLimitedError) as info:
            await c.find("ACME-WO-1-R1")
        return info.value

    exc = run(settings(emu), go)
    assert exc.http_status == 429 and 1 <= exc.retry_after <= 60 and emu.count_429 == 1


def test_validation_errors_are_permanent(emulators):
    emu = emulators()
    with pytest.raises(PermanentError) as info:
        run(settings(emu), lambda c: c.deliver(make_invoice(contact_id="460000000000404")))
    assert info.value.http_status == 400 and "Contact does not exist" in str(info.value)
    with pytest.raises(PermanentError) as info:  # no 5 % tax in the organisation: refused before sending
        run(
            settings(emu),
            lambda c: c.deliver(
                make_invoice(
                    lines=[line("x", "1", "10.00", "10.00", "5", "0.50", "10.50")],
                    net="10.00",
                    tax="0.50",
                    total="10.50",
                )
            ),
        )
    assert "lines[1].tax_rate" in str(info.value) and "5%" in str(info.value)
    assert emu.invoices() == []


def test_contacts_found_by_name_or_created(emulators):
    emu = emulators()
    known = make_invoice("ACME-WO-1-R1", contact_id=None)
    run(settings(emu, create_contacts=False), lambda c: c.deliver(known))
    assert emu.invoices()[0]["customer_id"] == CUSTOMER
    new = make_invoice("ACME-WO-2-R1", contact_id=None).model_copy(
        update={"client_id": "CLI-NEW", "client_name": "Clínica do Parque"}
    )
    with pytest.raises(PermanentError) as info:
        run(settings(emu, create_contacts=False), lambda c: c.deliver(new))
    assert "CLI-NEW" in str(info.value)
    run(settings(emu), lambda c: c.deliver(new))
    assert [c["contact_name"] for c in emu.contacts()] == ["Hotel Atlântico Lisboa, S.A.", "Clínica do Parque"]


def test_authorize_flow_stores_a_refresh_token_the_connector_then_uses(emulators, tmp_path, monkeypatch):
    import threading

    import httpx

    from connectors.sdk.oauth2 import FileTokenStore, authorization_code_flow

    emu = emulators()
    store = FileTokenStore(tmp_path / "tokens")
    config = ZohoConnector(settings(emu), tenant="acme", token_store=store).oauth2_config()
    assert (
        config.extra_params == {"access_type": "offline", "prompt": "consent"}
        and "ZohoInvoice.invoices.CREATE" in config.scopes
    )

    def browser(url: str) -> None:
        assert httpx.URL(url).path == "/oauth/v2/auth"
        threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=10), daemon=True).start()

    result = asyncio.run(authorization_code_flow(config, store, show_url=browser, open_browser=False, timeout=20))
    assert result.tokens.refresh_token is not None
    monkeypatch.delenv("ZOHO_REFRESH_TOKEN")  # the stored token is enough from now on
    emu.expire_access_tokens()
    run(settings(emu), lambda c: c.deliver(make_invoice()), store=store)
    assert emu.refresh_token_uses == [result.tokens.refresh_token.get_secret_value()]


# --------------------------------------------------------------------------- lifecycle
ISSUED = date(2026, 3, 9)


def retire(emu, previous: ExternalInvoice, **overrides):
    return run(
        settings(emu, **overrides),
        lambda c: c.retire(previous, key="acme:wo:X:r2", reason="replaced by ACME-WO-1-R2", issued=ISSUED),
    )


def test_marker_legal_notes_and_find(emulators):
    emu = emulators()
    legal = "Autoliquidação - artigo 2.º, n.º 1, alínea j) do CIVA"
    invoice = make_invoice().model_copy(update={"legal_notes": [legal]})
    result = run(settings(emu), lambda c: c.deliver(invoice))
    [inv] = emu.invoices()
    assert inv["notes"] == f"{legal}\nbroker:acme:wo:ACME-WO-1-R1:r1"  # printed; the marker on the last line
    found = run(settings(emu), lambda c: c.find("ACME-WO-1-R1"))
    assert found == ExternalInvoice(
        result.external_id, "ACME-WO-1-R1", D("234.01"), "sent", marker="acme:wo:ACME-WO-1-R1:r1", paid=D("0.00")
    )


def test_foreign_invoice_under_our_number_is_never_adopted(emulators):
    emu = emulators()
    foreign = emu.plant_invoice("ACME-WO-1-R1", CUSTOMER, D("999.00"))
    with pytest.raises(NumberConflictError) as info:
        run(settings(emu), lambda c: c.deliver(make_invoice()))
    text = str(info.value)
    assert "999.00" in text and "234.01" in text and "does not carry our marker" in text
    assert (info.value.ours, info.value.theirs, info.value.external_id) == (D("234.01"), D("999.00"), foreign)
    [inv] = emu.invoices()
    assert (inv["invoice_id"], inv["status"], inv["total"]) == (foreign, "sent", D("999.00"))
    assert not any(p.endswith("/status/sent") for _, p, _ in emu.calls)


def test_retire_deletes_a_draft_and_voids_a_sent_invoice(emulators):
    emu = emulators()
    draft = run(settings(emu, invoice_status="draft"), lambda c: c.deliver(make_invoice("ACME-WO-1-R1")))
    sent = run(settings(emu), lambda c: c.deliver(make_invoice("ACME-WO-2-R1")))
    deleted = retire(emu, ExternalInvoice(draft.external_id, "ACME-WO-1-R1"))
    assert (deleted.action, deleted.previous_status) == ("deleted", "draft")
    voided = retire(emu, ExternalInvoice(sent.external_id, "ACME-WO-2-R1"))
    assert (voided.action, voided.previous_status, voided.paid) == ("voided", "sent", None)
    assert [(i["invoice_number"], i["status"], i["balance"]) for i in emu.invoices()] == [
        ("ACME-WO-2-R1", "void", D(0))
    ]
    # again: gone and void -> nothing more, no second DELETE or void
    again = [
        retire(emu, ExternalInvoice(r.external_id, n)) for r, n in ((draft, "ACME-WO-1-R1"), (sent, "ACME-WO-2-R1"))
    ]
    assert [(r.action, r.previous_status) for r in again] == [("none", None), ("none", "void")]
    writes = [(m, p.rsplit("/", 2)[-1]) for m, p, _ in api_calls(emu) if m in ("DELETE", "POST") and "/invoices/" in p]
    assert writes == [("POST", "sent"), ("DELETE", draft.external_id), ("POST", "void")]
    assert emu.balance() == D("0.00") and emu.creditnotes() == []


def test_retire_credits_a_paid_invoice_once(emulators):
    emu = emulators()
    first = run(settings(emu), lambda c: c.deliver(make_invoice()))
    emu.record_payment(first.external_id)  # 234.01 paid
    credited = retire(emu, ExternalInvoice(first.external_id, "ACME-WO-1-R1"))
    [note] = emu.creditnotes()
    assert (credited.action, credited.previous_status, credited.paid) == ("credited", "paid", D("234.01"))
    assert (credited.credit_note_id, credited.credit_note_number, credited.credit_note_total) == (
        note["creditnote_id"],
        "ACME-WO-1-R1-CN",
        D("234.01"),
    )
    # the invoice's lines copied: 136.50 + 33.75 + 20.00 = 190.25, 23 % = 43.76, total 234.01, unapplied
    assert (note["sub_total"], note["tax_total"], note["total"], note["balance"], note["status"]) == (
        D("190.25"),
        D("43.76"),
        D("234.01"),
        D("234.01"),
        "open",
    )
    assert (note["reference_number"], note["invoice_id"], note["date"], note["notes"]) == (
        "ACME-WO-1-R1",
        first.external_id,
        "2026-03-09",
        "replaced by ACME-WO-1-R2",
    )
    assert emu.invoices()[0]["status"] == "paid"  # never voided or deleted
    assert emu.balance() == D("-234.01")  # the customer's money, owed back or used later
    again = retire(emu, ExternalInvoice(first.external_id, "ACME-WO-1-R1"))
    assert (again.action, again.credit_note_id) == ("none", note["creditnote_id"]) and len(emu.creditnotes()) == 1


def test_retire_partially_paid_applies_the_credit_to_what_is_due(emulators):
    emu = emulators()
    first = run(settings(emu), lambda c: c.deliver(make_invoice()))
    emu.record_payment(first.external_id, D("100.00"))  # 134.01 still due
    emu.inject_fault("drop_after_commit", method="POST", path="/creditnotes")  # created, answer lost
    with pytest.raises(UncertainOutcomeError):
        retire(emu, ExternalInvoice(first.external_id, "ACME-WO-1-R1"))
    [note] = emu.creditnotes()
    assert (note["balance"], emu.invoices()[0]["balance"]) == (D("234.01"), D("134.01"))
    resumed = retire(emu, ExternalInvoice(first.external_id, "ACME-WO-1-R1"))
    assert (resumed.action, resumed.paid, resumed.credit_note_number) == ("none", D("100.00"), "ACME-WO-1-R1-CN")
    [note] = emu.creditnotes()  # found by its number, not issued twice
    [inv] = emu.invoices()
    # 134.01 of the 234.01 credit closes the invoice; 100.00 (the payment) stays as customer credit
    assert (inv["status"], inv["credits_applied"], inv["balance"]) == ("paid", D("134.01"), D("0.00"))
    assert (note["balance"], note["status"]) == (D("100.00"), "open") and emu.balance() == D("-100.00")


def test_retire_refuses_a_foreign_credit_note_under_our_number(emulators):
    emu = emulators()
    first = run(settings(emu), lambda c: c.deliver(make_invoice()))
    emu.record_payment(first.external_id)
    with httpx.Client(base_url=f"{emu.url}/invoice/v3") as raw:
        access = raw.post(
            f"{emu.url}/oauth/v2/token",
            data={
                "grant_type": "refresh_token",
                "client_id": "1000.UNIT",
                "client_secret": SECRET,
                "refresh_token": REFRESH,
            },
        ).json()["access_token"]
        made = raw.post(
            "/creditnotes",
            params={"ignore_auto_number_generation": "true"},
            json={
                "customer_id": CUSTOMER,
                "creditnote_number": "ACME-WO-1-R1-CN",
                "reference_number": "goodwill",
                "line_items": [{"name": "Goodwill", "rate": "10.00", "quantity": 1}],
            },
            headers={"Authorization": f"Zoho-oauthtoken {access}", "X-com-zoho-invoice-organizationid": DEFAULT_ORG},
        )
    assert made.status_code == 201
    with pytest.raises(NumberConflictError) as info:
        retire(emu, ExternalInvoice(first.external_id, "ACME-WO-1-R1"))
    assert "10.00" in str(info.value) and "234.01" in str(info.value) and info.value.number == "ACME-WO-1-R1-CN"
    assert len(emu.creditnotes()) == 1 and emu.invoices()[0]["status"] == "paid"


def test_retire_by_number_needs_our_marker(emulators):
    emu = emulators()
    emu.plant_invoice("ACME-WO-1-R1", CUSTOMER, D("50.00"))
    with pytest.raises(PermanentError) as info:
        retire(emu, ExternalInvoice("", "ACME-WO-1-R1"))
    assert "carries no broker marker" in str(info.value) and emu.invoices()[0]["status"] == "sent"
    assert retire(emu, ExternalInvoice("", "ACME-WO-9-R1")).action == "none"


def test_amend_voids_then_creates_and_repeats_nothing(emulators):
    emu = emulators()
    first = run(settings(emu), lambda c: c.deliver(make_invoice("ACME-WO-1-R1")))
    rev2 = make_invoice("ACME-WO-1-R2").model_copy(update={"invoice_key": "acme:wo:ACME-WO-1:r2", "revision": 2})
    previous = ExternalInvoice(first.external_id, "ACME-WO-1-R1")
    amended = run(settings(emu), lambda c: c.amend(rev2, previous))
    again = run(settings(emu), lambda c: c.amend(rev2, previous))
    assert (amended.details["amendment"], amended.details["previous_status"], amended.created) == (
        "voided",
        "sent",
        True,
    )
    assert (again.details["amendment"], again.external_id, again.created) == ("none", amended.external_id, False)
    assert [(i["invoice_number"], i["status"]) for i in emu.invoices()] == [
        ("ACME-WO-1-R1", "void"),
        ("ACME-WO-1-R2", "sent"),
    ]
    assert emu.balance() == D("234.01")
