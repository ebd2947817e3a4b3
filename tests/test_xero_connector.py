"""XeroConnector against the Xero emulator on loopback (real HTTP, no mocks).

Every emulator validates each request against the official OpenAPI spec (tests/specs/xero) and the
tests assert it saw no invalid request. Expected money values are computed by hand in comments.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    NumberConflictError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.money import dumps
from connectors.xero import XeroConnector, XeroSettings, idempotency_key
from connectors.xero.emulator import XeroEmulator
from connectors.xero.mapper import credit_note_for, invoice_to_xero, reference_for
from connectors.xero.spec import make_request_validator, validate_invoices_body

SPEC = Path(__file__).resolve().parent / "specs" / "xero" / "xero_accounting.yaml"
ORG = "00000000-0000-0000-0000-000000000001"
CONTACT = "3f1c2a10-5b1e-4c7a-9d01-00000000c001"
SECRET = "s3cr3t-client-VALUE-42"
REFRESH = "initial-refresh-TOKEN-77"


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def validator():
    return make_request_validator(SPEC)


@pytest.fixture
def emulators(validator):
    """Factory of started emulators (spec validation on); asserts no invalid request and no emulator bug."""
    started: list[XeroEmulator] = []

    def make(**kwargs) -> XeroEmulator:
        kwargs.setdefault("client_secret", SECRET)
        kwargs.setdefault("refresh_token", REFRESH)
        kwargs.setdefault("contacts", {ORG: {CONTACT: "Hotel Atlântico Lisboa, S.A."}})
        emu = XeroEmulator(request_validator=validator, **kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
    for emu in started:
        assert emu.validation_failures == []
        assert emu.server_errors == []


@pytest.fixture
def secrets_env(monkeypatch):
    monkeypatch.setenv("XERO_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("XERO_REFRESH_TOKEN", REFRESH)


def settings_for(emu: XeroEmulator, **overrides) -> dict:
    base = {
        "api_url": emu.url,
        "identity_url": emu.url,
        "xero_tenant_id": ORG,
        "client_id": "demo-client",
        "client_secret_env": "XERO_CLIENT_SECRET",
        "refresh_token_env": "XERO_REFRESH_TOKEN",
        "tax_types": {"23": "OUTPUT2", "0": "EXEMPTOUTPUT"},  # the emulator's codes; no rate has a default
    }
    base.update(overrides)
    return base


def line(description, qty, unit_price, net, rate, tax, total, *, discount="0", kind="labour", **kw) -> InvoiceLine:
    return InvoiceLine(
        kind=kind,
        description=description,
        quantity=D(qty),
        unit_price=D(unit_price),
        discount_percent=D(discount),
        net=D(net),
        tax_rate=D(rate),
        tax=D(tax),
        total=D(total),
        source="test",
        rule="test",
        **kw,
    )


def make_invoice(
    number="ACME-WO-1-R1",
    *,
    lines=None,
    tenant="acme",
    key=None,
    contact_id=CONTACT,
    inclusive=False,
    net="170.25",
    tax="39.16",
    total="209.41",
    legal_notes=(),
) -> Invoice:
    if lines is None:
        lines = [
            # 3.25 h x 42.00 = 136.50; 23 % of 136.50 = 31.395 -> 31.40
            line("HVAC labour (Ana Costa)", "3.25", "42.00", "136.50", "23", "31.40", "167.90"),
            # 2 x 18.75 = 37.50, less 10 % = 33.75; 23 % of 33.75 = 7.7625 -> 7.76
            line("Contactor 25A", "2", "18.75", "33.75", "23", "7.76", "41.51", discount="10", kind="part"),
        ]
    return Invoice(
        invoice_key=key or f"{tenant}:wo:{number}:r1",
        invoice_number=number,
        order_key=f"{tenant}:wo:{number}",
        tenant=tenant,
        billing_system="xero",
        event_id="evt-1",
        event_type="maintenance.work_order.completed",
        event_time=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
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
        cost_total=D("0"),
        margin=D(net),
        legal_notes=list(legal_notes),
    )


def run(coro):
    return asyncio.run(coro)


async def with_connector(settings, fn, **kw):
    connector = XeroConnector(settings, tenant="acme", **kw)
    try:
        return await fn(connector)
    finally:
        await connector.aclose()


# --------------------------------------------------------------------------- happy path
def test_deliver_creates_invoice_with_our_exact_totals(emulators, secrets_env):
    emu = emulators()

    async def go(c: XeroConnector):
        await c.check()
        return await c.deliver(make_invoice())

    result = run(with_connector(settings_for(emu), go))
    assert result.created is True
    assert result.external_number == "ACME-WO-1-R1"
    assert result.details["SubTotal"] == "170.25"
    assert result.details["TotalTax"] == "39.16"
    assert result.details["Total"] == "209.41"
    assert result.details["total_matches"] is True

    [stored] = emu.invoices(ORG)
    assert stored["InvoiceID"] == result.external_id
    assert (stored["SubTotal"], stored["TotalTax"], stored["Total"]) == (D("170.25"), D("39.16"), D("209.41"))
    assert [li["LineAmount"] for li in stored["LineItems"]] == [D("136.50"), D("33.75")]
    assert [li["TaxAmount"] for li in stored["LineItems"]] == [D("31.40"), D("7.76")]
    assert [li["TaxType"] for li in stored["LineItems"]] == ["OUTPUT2", "OUTPUT2"]
    assert [li["AccountCode"] for li in stored["LineItems"]] == ["200", "200"]
    assert stored["LineItems"][1]["DiscountRate"] == D("10")
    assert stored["Type"] == "ACCREC" and stored["Status"] == "AUTHORISED" and stored["CurrencyCode"] == "EUR"
    assert stored["Contact"]["ContactID"] == CONTACT
    assert stored["Reference"] == "WO ACME-WO-1-R1 broker:acme:wo:ACME-WO-1-R1:r1"  # human reference, then marker
    assert stored["DateString"] == "2026-03-02T00:00:00" and stored["DueDateString"] == "2026-04-01T00:00:00"
    # the PUT carried the deterministic idempotency key and asked for per-element errors
    assert ("PUT", "/api.xro/2.0/Invoices", 200) in emu.calls


def test_tax_inclusive_invoice_and_contact_by_name(emulators, secrets_env):
    emu = emulators()
    lines = [
        # gross 1 x 123.00; tax = 123.00 x 23/123 = 23.00; net 100.00
        line("Boiler service (fixed price)", "1", "123.00", "100.00", "23", "23.00", "123.00"),
        # gross 0.5 x 45.00 = 22.50; tax = 22.50 x 23/123 = 4.2073 -> 4.21; net 18.29
        line("Travel", "0.5", "45.00", "18.29", "23", "4.21", "22.50", kind="travel"),
    ]
    invoice = make_invoice(
        "ACME-WO-2-R1", lines=lines, inclusive=True, contact_id=None, net="118.29", tax="27.21", total="145.50"
    )
    result = run(with_connector(settings_for(emu), lambda c: c.deliver(invoice)))
    assert result.created and result.details["Total"] == "145.50"
    [stored] = emu.invoices()
    assert stored["LineAmountTypes"] == "Inclusive"
    assert (stored["SubTotal"], stored["TotalTax"], stored["Total"]) == (D("118.29"), D("27.21"), D("145.50"))
    assert stored["Contact"]["Name"] == "Hotel Atlântico Lisboa, S.A."  # matched the existing contact by name
    assert stored["Contact"]["ContactID"] == CONTACT


# --------------------------------------------------------------------------- idempotency / duplicates
def test_duplicate_invoice_number_is_success_with_the_existing_id(emulators, secrets_env):
    emu = emulators(idempotency_ttl=0)  # keys already expired: the second PUT really reaches the number check

    async def go(c: XeroConnector):
        first = await c.deliver(make_invoice())
        second = await c.deliver(make_invoice())
        return first, second

    first, second = run(with_connector(settings_for(emu), go))
    assert first.created is True and second.created is False
    assert second.external_id == first.external_id
    assert second.external_number == "ACME-WO-1-R1"
    assert second.details["duplicate"] is True and second.details["total_matches"] is True
    assert len(emu.invoices()) == 1
    # PUT (created), PUT (200 with "Invoice # must be unique."), GET lookup
    assert [c for c in emu.calls if c[1].startswith("/api.xro")] == [
        ("PUT", "/api.xro/2.0/Invoices", 200),
        ("PUT", "/api.xro/2.0/Invoices", 200),
        ("GET", "/api.xro/2.0/Invoices", 200),
    ]


def test_idempotency_key_replay_after_timeout_after_commit(emulators, secrets_env):
    emu = emulators(hang_seconds=3)
    emu.inject_fault("timeout_after_commit")

    async def go(c: XeroConnector):
        with pytest.raises(UncertainOutcomeError) as info:
            await c.deliver(make_invoice())
        found = await c.find("ACME-WO-1-R1")
        again = await c.deliver(make_invoice())  # same Idempotency-Key, same body: replayed by Xero
        return info.value, found, again

    exc, found, again = run(with_connector(settings_for(emu, timeout_seconds=0.5), go))
    assert "reconcile" in str(exc)
    assert found is not None and found.number == "ACME-WO-1-R1" and found.total == D("209.41")
    assert found.status == "AUTHORISED"
    assert again.external_id == found.external_id
    assert len(emu.invoices()) == 1


def test_idempotency_key_is_deterministic_and_bounded():
    inv = make_invoice()
    assert idempotency_key(inv, "create") == "acme:xero:acme:wo:ACME-WO-1-R1:r1:create"
    assert idempotency_key(inv, "create") == idempotency_key(make_invoice(), "create")
    assert idempotency_key(inv, "create") != idempotency_key(inv, "email")

    long_inv = make_invoice(key="acme:wo:" + "X" * 200 + ":r1")
    k1 = idempotency_key(long_inv, "create")
    assert len(k1) <= 128 and k1 == idempotency_key(long_inv, "create")
    assert k1.startswith("acme:xero:acme:wo:XXX")
    other = make_invoice(key="acme:wo:" + "X" * 200 + ":r2")
    assert idempotency_key(other, "create") != k1

    odd = make_invoice(key="acme:wo:Q 2026/019 ção:r1")
    k2 = idempotency_key(odd, "create")
    assert len(k2) <= 128
    assert all(ch.isascii() and (ch.isalnum() or ch in ":._-") for ch in k2)
    assert k2 != idempotency_key(make_invoice(key="acme:wo:Q_2026_019_ção:r1"), "create")


# --------------------------------------------------------------------------- limits
def test_rate_limit_429_with_retry_after(emulators, secrets_env):
    emu = emulators(rate_limit_per_minute=3)

    async def go(c: XeroConnector):
        for n in range(3):
            await c.deliver(make_invoice(f"ACME-WO-{n}-R1"))
        with pytest.raises(RateLimitedError) as info:
            await c.deliver(make_invoice("ACME-WO-9-R1"))
        return info.value

    exc = run(with_connector(settings_for(emu), go))
    assert 1 <= exc.retry_after <= 60
    assert exc.http_status == 429
    assert "minute" in str(exc)
    assert isinstance(exc, RetryableError)
    assert emu.count_429 == 1
    assert len(emu.invoices()) == 3


# --------------------------------------------------------------------------- auth
def test_expired_access_token_is_refreshed_once_and_rotated_token_used(emulators, secrets_env):
    emu = emulators()
    persisted: list[str] = []

    async def go(c: XeroConnector):
        await c.deliver(make_invoice("ACME-WO-1-R1"))
        emu.expire_access_tokens()
        await c.deliver(make_invoice("ACME-WO-2-R1"))
        emu.expire_access_tokens()
        return await c.find("ACME-WO-1-R1")

    found = run(with_connector(settings_for(emu), go, on_refresh_token=persisted.append))
    assert found is not None
    # initial token, then each refresh presents the token the previous refresh returned
    assert emu.refresh_token_uses[0] == REFRESH
    assert len(emu.refresh_token_uses) == 3
    assert emu.refresh_token_uses[1:] == persisted[:2]
    assert persisted[-1] == emu.current_refresh_token
    assert [c[2] for c in emu.calls if c[1].startswith("/api.xro")] == [200, 401, 200, 401, 200]
    assert len(emu.invoices()) == 2


def test_token_refused_twice_is_auth_error_after_exactly_one_refresh(emulators, secrets_env):
    emu = emulators(access_token_ttl=0)  # every token is already expired

    async def go(c: XeroConnector):
        with pytest.raises(AuthError) as info:
            await c.deliver(make_invoice())
        return info.value

    exc = run(with_connector(settings_for(emu), go))
    assert exc.http_status == 401 and "after a token refresh" in str(exc)
    assert len(emu.refresh_token_uses) == 2  # first token + exactly one refresh after the 401
    assert emu.invoices() == []


def test_wrong_client_secret_is_auth_error_without_the_secret(emulators, monkeypatch, caplog):
    emu = emulators()
    wrong = "WRONG-secret-value-123456"
    monkeypatch.setenv("XERO_CLIENT_SECRET", wrong)
    monkeypatch.setenv("XERO_REFRESH_TOKEN", REFRESH)
    caplog.set_level(logging.DEBUG)
    holder = {}

    async def go(c: XeroConnector):
        holder["repr"] = repr(c)
        with pytest.raises(AuthError) as info:
            await c.deliver(make_invoice())
        holder["repr_after"] = repr(c) + repr(c.__dict__)
        return info.value

    exc = run(with_connector(settings_for(emu), go))
    assert "invalid_client" in str(exc) and "XERO_CLIENT_SECRET" in str(exc)
    for text in (str(exc), repr(exc), holder["repr"], holder["repr_after"], caplog.text):
        assert wrong not in text
        assert REFRESH not in text
    assert emu.invoices() == []


def test_revoked_refresh_token_is_auth_error(emulators, monkeypatch):
    emu = emulators()
    monkeypatch.setenv("XERO_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("XERO_REFRESH_TOKEN", "not-a-token-the-emulator-issued")
    exc = run(with_connector(settings_for(emu), lambda c: _raises(AuthError, c.check())))
    assert "invalid_grant" in str(exc)


def test_missing_secret_environment_variable_is_config_error(emulators, monkeypatch):
    emu = emulators()
    monkeypatch.delenv("XERO_CLIENT_SECRET", raising=False)
    monkeypatch.setenv("XERO_REFRESH_TOKEN", REFRESH)
    exc = run(with_connector(settings_for(emu), lambda c: _raises(ConfigError, c.deliver(make_invoice()))))
    assert "XERO_CLIENT_SECRET" in str(exc) and "billing.settings.client_secret_env" in str(exc)


def test_check_unknown_organisation(emulators, secrets_env):
    emu = emulators()
    other = "99999999-0000-0000-0000-000000000009"
    exc = run(with_connector(settings_for(emu, xero_tenant_id=other), lambda c: _raises(ConfigError, c.check())))
    assert f"unknown organisation {other}" in str(exc)
    # and a call for that organisation is refused by Xero with 403 -> AuthError
    exc2 = run(
        with_connector(settings_for(emu, xero_tenant_id=other), lambda c: _raises(AuthError, c.deliver(make_invoice())))
    )
    assert exc2.http_status == 403


# --------------------------------------------------------------------------- transport / server faults
def test_503_is_retryable_and_nothing_is_stored(emulators, secrets_env):
    emu = emulators()
    emu.inject_fault("503")

    async def go(c: XeroConnector):
        with pytest.raises(RetryableError) as info:
            await c.deliver(make_invoice())
        assert emu.invoices() == []
        return info.value, await c.deliver(make_invoice())

    exc, result = run(with_connector(settings_for(emu), go))
    assert type(exc) is RetryableError and exc.http_status == 503
    assert result.created is True and len(emu.invoices()) == 1


def test_connection_reset_is_uncertain_and_lookup_finds_nothing(emulators, secrets_env):
    emu = emulators()
    emu.inject_fault("reset")

    async def go(c: XeroConnector):
        with pytest.raises(UncertainOutcomeError):
            await c.deliver(make_invoice())
        return await c.find("ACME-WO-1-R1")

    assert run(with_connector(settings_for(emu), go)) is None
    assert emu.invoices() == []


def test_connection_refused_is_retryable(secrets_env):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    settings = {
        "api_url": url,
        "identity_url": url,
        "xero_tenant_id": ORG,
        "client_id": "demo-client",
        "client_secret_env": "XERO_CLIENT_SECRET",
        "refresh_token_env": "XERO_REFRESH_TOKEN",
        "tax_types": {"23": "OUTPUT2"},
    }
    exc = run(with_connector(settings, lambda c: _raises(RetryableError, c.deliver(make_invoice()))))
    assert not isinstance(exc, UncertainOutcomeError)


# --------------------------------------------------------------------------- validation
def test_validation_error_is_permanent_with_xero_messages(emulators, secrets_env):
    emu = emulators()
    bad_account = make_invoice(
        lines=[
            line("Labour", "1", "30.00", "30.00", "23", "6.90", "36.90", account_code="999"),
        ],
        net="30.00",
        tax="6.90",
        total="36.90",
    )
    exc = run(with_connector(settings_for(emu), lambda c: _raises(PermanentError, c.deliver(bad_account))))
    assert exc.http_status == 400
    assert "Account code '999' is not a valid code for this document." in str(exc)

    unknown_contact = make_invoice("ACME-WO-3-R1", contact_id="12345678-1234-1234-1234-123456789abc")
    exc = run(with_connector(settings_for(emu), lambda c: _raises(PermanentError, c.deliver(unknown_contact))))
    assert "ContactID" in str(exc)
    assert emu.invoices() == []


def test_invalid_settings_are_config_errors():
    with pytest.raises(ConfigError) as info:
        XeroConnector(
            {
                "xero_tenant_id": ORG,
                "client_id": "x",
                "client_secret_env": "A",
                "refresh_token_env": "B",
                "colour": "red",
            },
            tenant="acme",
        )
    assert "billing.settings.colour" in str(info.value)
    with pytest.raises(ConfigError) as info:
        XeroConnector(
            {
                "xero_tenant_id": ORG,
                "client_id": "x",
                "client_secret_env": "A",
                "refresh_token_env": "B",
                "invoice_status": "PAID",
            },
            tenant="acme",
        )
    assert "billing.settings.invoice_status" in str(info.value)


# --------------------------------------------------------------------------- mapper
def test_mapper_output_validates_against_the_official_spec():
    settings = XeroSettings(
        xero_tenant_id=ORG,
        client_id="x",
        client_secret_env="A",
        refresh_token_env="B",
        tax_types={"23": "OUTPUT2", "13": "OUTPUT3", "0": "EXEMPTOUTPUT"},
        invoice_status="DRAFT",
    )
    invoices = [
        make_invoice(),
        make_invoice(contact_id=None, inclusive=True),
        make_invoice(
            lines=[
                line("Reduced-rate part", "4", "2.5", "10.00", "13.00", "1.30", "11.30", kind="part"),
                line("Exempt fee", "1", "5", "5.00", "0", "0.00", "5.00", kind="expense"),
                line(
                    "Mapped by tenant",
                    "1",
                    "1.0000",
                    "1.00",
                    "23",
                    "0.23",
                    "1.23",
                    tax_type="TAX001",
                    account_code="260",
                ),
            ],
            net="16.00",
            tax="1.53",
            total="17.53",
        ),
    ]
    elements = [invoice_to_xero(inv, settings) for inv in invoices]
    assert validate_invoices_body(SPEC, {"Invoices": elements}) == []
    assert [li["TaxType"] for li in elements[2]["LineItems"]] == ["OUTPUT3", "EXEMPTOUTPUT", "TAX001"]
    assert [li["AccountCode"] for li in elements[2]["LineItems"]] == ["200", "200", "260"]
    assert elements[0]["Contact"] == {"ContactID": CONTACT}
    assert elements[1]["Contact"] == {"Name": "Hotel Atlântico Lisboa, S.A."}
    assert elements[1]["LineAmountTypes"] == "Inclusive" and elements[0]["LineAmountTypes"] == "Exclusive"
    assert elements[1]["LineItems"][0]["LineAmount"] == D("167.90")  # gross for tax-inclusive
    assert elements[0]["Status"] == "DRAFT"
    assert "DiscountRate" not in elements[0]["LineItems"][0] and elements[0]["LineItems"][1]["DiscountRate"] == D("10")
    assert elements[0]["Date"] == "2026-03-02" and elements[0]["DueDate"] == "2026-04-01"
    # a spec violation is caught (read-only Total, misspelt field)
    broken = dict(elements[0], Total=D("1"))
    broken["LineItems"] = [dict(elements[0]["LineItems"][0], Taxamount=D("1"))]
    problems = validate_invoices_body(SPEC, {"Invoices": [broken]})
    assert any("read-only" in p for p in problems) and any("Taxamount" in p for p in problems)


def test_dumps_keeps_exact_decimal_text():
    body = dumps({"a": D("136.50"), "b": [D("0.10"), D("-0.00"), 3, None, True], "c": "ção", "d": D("1E+2")})
    assert body == '{"a":136.50,"b":[0.10,-0.00,3,null,true],"c":"ção","d":100}'.encode()
    with pytest.raises(TypeError):
        dumps({"x": 0.1})
    with pytest.raises(ValueError):
        dumps({"x": D("NaN")})


# --------------------------------------------------------------------------- util
async def _raises(exc_type, coro):
    with pytest.raises(exc_type) as info:
        await coro
    return info.value


def test_connector_survives_successive_event_loops(emulators, secrets_env):
    emu = emulators()
    connector = XeroConnector(settings_for(emu), tenant="acme")
    first = asyncio.run(connector.deliver(make_invoice("ACME-WO-1-R1")))
    second = asyncio.run(connector.deliver(make_invoice("ACME-WO-2-R1")))  # a new loop: new client, same tokens
    asyncio.run(connector.aclose())
    assert first.created and second.created
    assert len(emu.refresh_token_uses) == 1


# --------------------------------------------------------------------------- ownership and legal notes
REVERSE_CHARGE = "Reverse charge: VAT to be accounted for by the recipient (Art. 196 Directive 2006/112/EC)"


def test_reference_keeps_the_human_reference_and_ends_with_the_marker():
    inv = make_invoice()
    assert reference_for(inv) == "WO ACME-WO-1-R1 broker:acme:wo:ACME-WO-1-R1:r1"
    assert reference_for(inv.model_copy(update={"reference": ""})) == "broker:acme:wo:ACME-WO-1-R1:r1"
    long = reference_for(inv.model_copy(update={"reference": "x" * 300}))
    # 255 characters: 224 of the human reference, a space, the 30-character marker
    assert len(long) == 255 and long == "x" * 224 + " broker:acme:wo:ACME-WO-1-R1:r1"


def test_find_reads_the_marker_total_and_payment_back(emulators, secrets_env):
    emu = emulators()
    inv = make_invoice()

    async def go(c: XeroConnector):
        created = await c.deliver(inv)
        emu.mark_paid(created.external_id, D("9.41"), ORG)
        return await c.find(inv.invoice_number)

    found = run(with_connector(settings_for(emu), go))
    assert found is not None
    assert (found.marker, found.total, found.paid, found.status) == (
        "acme:wo:ACME-WO-1-R1:r1",
        D("209.41"),
        D("9.41"),
        "AUTHORISED",
    )


def test_legal_notes_are_description_only_lines_that_change_no_total(emulators, secrets_env):
    emu = emulators()
    inv = make_invoice(legal_notes=[REVERSE_CHARGE, "  ", "Isento de IVA nos termos do artigo 9.º do CIVA"])
    result = run(with_connector(settings_for(emu), lambda c: c.deliver(inv)))
    assert result.details["Total"] == "209.41" and result.details["total_matches"] is True
    [stored] = emu.invoices(ORG)
    assert [li["Description"] for li in stored["LineItems"][2:]] == [
        REVERSE_CHARGE,
        "Isento de IVA nos termos do artigo 9.º do CIVA",
    ]
    assert [("Quantity" in li, li["LineAmount"], li["TaxAmount"]) for li in stored["LineItems"][2:]] == [
        (False, D("0.00"), D("0.00")),
        (False, D("0.00"), D("0.00")),
    ]
    assert (stored["SubTotal"], stored["TotalTax"], stored["Total"]) == (D("170.25"), D("39.16"), D("209.41"))


def _foreign(emu: XeroEmulator, inv: Invoice, total: str) -> str:
    """An approved invoice under ``inv``'s number made by hand in Xero (no marker), one untaxed line."""
    return emu.add_invoice(
        {
            "Type": "ACCREC",
            "Contact": {"ContactID": CONTACT},
            "Date": "2026-03-02",
            "DueDate": "2026-04-01",
            "InvoiceNumber": inv.invoice_number,
            "Reference": inv.reference,
            "Status": "AUTHORISED",
            "LineItems": [{"Description": "Manual", "Quantity": 1, "UnitAmount": D(total), "TaxType": "NONE"}],
        },
        ORG,
    )


def test_a_foreign_invoice_under_our_number_is_a_number_conflict(emulators, secrets_env):
    emu = emulators()
    inv = make_invoice()
    foreign = _foreign(emu, inv, "999.00")
    with pytest.raises(NumberConflictError) as info:
        run(with_connector(settings_for(emu), lambda c: c.deliver(inv)))
    exc = info.value
    assert (exc.number, exc.ours, exc.theirs, exc.external_id) == ("ACME-WO-1-R1", D("209.41"), D("999.00"), foreign)
    assert "999.00" in str(exc) and "209.41" in str(exc) and "does not carry our marker" in str(exc)
    [held] = emu.invoices(ORG)
    assert (held["InvoiceID"], held["Total"], held["Status"]) == (foreign, D("999.00"), "AUTHORISED")


def test_a_foreign_invoice_with_our_total_is_still_a_conflict_and_in_a_batch_only_its_item_fails(
    emulators, secrets_env
):
    emu = emulators()
    taken, free = make_invoice(), make_invoice("ACME-WO-2-R1")
    _foreign(emu, taken, "209.41")  # same total, no marker: not ours
    items = run(with_connector(settings_for(emu), lambda c: c.deliver_many([taken, free])))
    assert isinstance(items[0].error, NumberConflictError) and items[0].error.theirs == D("209.41")
    assert items[1].ok and items[1].result is not None and items[1].result.created is True
    assert sorted(i["InvoiceNumber"] for i in emu.invoices(ORG)) == ["ACME-WO-1-R1", "ACME-WO-2-R1"]


# --------------------------------------------------------------------------- retire / amend / cancel
def _previous(result) -> ExternalInvoice:
    return ExternalInvoice(result.external_id, result.external_number)


def _retire_twice(emu: XeroEmulator, *, status: str = "AUTHORISED", paid: str | None = None, inv=None):
    """Deliver ``inv``, optionally record a payment, then cancel it twice; (first, again, created)."""
    inv = inv or make_invoice()

    async def go(c: XeroConnector):
        created = await c.deliver(inv)
        if paid is not None:
            emu.mark_paid(created.external_id, None if paid == "all" else D(paid), ORG)
        kw = {"key": "acme:wo:ACME-WO-1:r1:cancelled", "reason": "work order cancelled", "issued": date(2026, 3, 9)}
        first = await c.cancel(_previous(created), **kw)
        again = await c.cancel(_previous(created), **kw)
        return first, again, created

    return run(with_connector(settings_for(emu, invoice_status=status), go))


def test_retire_deletes_a_draft(emulators, secrets_env):
    emu = emulators()
    first, again, _ = _retire_twice(emu, status="DRAFT")
    assert (first.action, first.previous_number, first.previous_status) == ("deleted", "ACME-WO-1-R1", "DRAFT")
    assert (again.action, again.previous_status) == ("none", "DELETED")
    [held] = emu.invoices(ORG)
    assert held["Status"] == "DELETED" and emu.credit_notes(ORG) == [] and emu.balance(ORG) == D("0.00")


def test_retire_voids_an_approved_unpaid_invoice(emulators, secrets_env):
    emu = emulators()
    first, again, _ = _retire_twice(emu)
    assert (first.action, first.previous_status, first.paid, first.credit_note_number) == (
        "voided",
        "AUTHORISED",
        None,
        None,
    )
    assert (again.action, again.previous_status) == ("none", "VOIDED")
    [held] = emu.invoices(ORG)
    assert (held["Status"], held["AmountDue"]) == ("VOIDED", D("0.00"))
    assert emu.credit_notes(ORG) == [] and emu.balance(ORG) == D("0.00")


def test_retire_credits_a_paid_invoice_once_and_never_voids_it(emulators, secrets_env):
    emu = emulators()
    first, again, created = _retire_twice(emu, paid="all")
    assert (first.action, first.previous_status, first.paid) == ("credited", "PAID", D("209.41"))
    assert (first.credit_note_number, first.credit_note_total) == ("ACME-WO-1-R1-CN", D("209.41"))
    assert first.as_details()["previous_paid"] == "209.41"
    assert (again.action, again.details) == ("none", {"credited_by": "ACME-WO-1-R1-CN"})
    [held] = emu.invoices(ORG)
    assert (held["Status"], held["AmountPaid"]) == ("PAID", D("209.41"))  # still paid: never voided
    [note] = emu.credit_notes(ORG)
    assert note["CreditNoteID"] == first.credit_note_id
    assert (note["Type"], note["Status"], note["Date"], note["RemainingCredit"]) == (
        "ACCRECCREDIT",
        "AUTHORISED",
        "/Date(1773014400000+0000)/",  # 2026-03-09 00:00 UTC
        D("209.41"),
    )
    assert note["Reference"] == "Credit for ACME-WO-1-R1 (work order cancelled) broker:acme:wo:ACME-WO-1-R1:r1"
    # the discounted line went over as 1 x its discounted amount (credit notes take no discounts)
    assert [(li["Quantity"], li["UnitAmount"], li["LineAmount"], li["TaxAmount"]) for li in note["LineItems"]] == [
        (D("3.25"), D("42.0000"), D("136.50"), D("31.40")),
        (D("1.0000"), D("33.7500"), D("33.75"), D("7.76")),
    ]
    assert emu.balance(ORG) == D("-209.41")  # the customer's credit
    assert created.external_id == held["InvoiceID"]


def test_retire_credits_a_partly_paid_invoice_for_its_whole_total(emulators, secrets_env):
    emu = emulators()
    first, again, _ = _retire_twice(emu, paid="100.00")
    assert (first.action, first.previous_status, first.paid, first.credit_note_total) == (
        "credited",
        "AUTHORISED",
        D("100.00"),
        D("209.41"),
    )
    assert again.action == "none"
    [held] = emu.invoices(ORG)
    assert (held["Status"], held["AmountDue"]) == ("AUTHORISED", D("109.41"))
    # 109.41 still due - 209.41 unallocated credit = -100.00: what the customer paid
    assert emu.balance(ORG) == D("-100.00")


def test_a_payment_arriving_before_the_void_turns_it_into_a_credit_note(emulators, secrets_env):
    emu = emulators()
    inv = make_invoice()

    async def go(c: XeroConnector):
        created = await c.deliver(inv)
        real_set_status = c._set_status

        async def paid_meanwhile(current, status, key):
            emu.mark_paid(created.external_id, D("9.41"), ORG)  # the customer pays between read and void
            await real_set_status(current, status, key)

        c._set_status = paid_meanwhile  # type: ignore[method-assign]
        return await c.retire(_previous(created), key="k", reason="cancelled", issued=date(2026, 3, 9))

    retired = run(with_connector(settings_for(emu), go))
    assert (retired.action, retired.paid, retired.credit_note_total) == ("credited", D("9.41"), D("209.41"))
    [held] = emu.invoices(ORG)
    assert (held["Status"], held["AmountPaid"]) == ("AUTHORISED", D("9.41"))


def test_an_absent_invoice_retires_to_none(emulators, secrets_env):
    emu = emulators()

    async def go(c: XeroConnector):
        by_id = await c.retire(
            ExternalInvoice("00000000-0000-0000-0000-00000000dead", "ACME-WO-404-R1"),
            key="k",
            reason="r",
            issued=date(2026, 3, 9),
        )
        by_number = await c.retire(ExternalInvoice("", "ACME-WO-404-R1"), key="k", reason="r", issued=date(2026, 3, 9))
        return by_id, by_number

    by_id, by_number = run(with_connector(settings_for(emu), go))
    assert by_id == by_number
    assert (by_id.action, by_id.previous_number, by_id.previous_status) == ("none", "ACME-WO-404-R1", None)


def test_an_existing_credit_note_of_ours_is_reused_and_a_foreign_one_is_a_conflict(emulators, secrets_env):
    emu = emulators()
    inv, other = make_invoice(), make_invoice("ACME-WO-2-R1")

    async def go(c: XeroConnector):
        mine = await c.deliver(inv)
        theirs = await c.deliver(other)
        # ours, issued earlier (e.g. by a worker that died before recording it): found, not issued again
        stored = next(i for i in emu.invoices(ORG) if i["InvoiceID"] == mine.external_id)
        note = credit_note_for(stored, "ACME-WO-1-R1-CN", issued="2026-03-09", reason="earlier")
        resp = await c._call("PUT", "CreditNotes", body={"CreditNotes": [note]}, params={"summarizeErrors": "false"})
        assert resp.status_code == 200
        reused = await c.retire(_previous(mine), key="k1", reason="again", issued=date(2026, 3, 9))
        # a credit note under our number made by hand for another amount: never adopted
        manual = {
            "Type": "ACCRECCREDIT",
            "Contact": {"ContactID": CONTACT},
            "Date": "2026-03-09",
            "CreditNoteNumber": "ACME-WO-2-R1-CN",
            "Status": "AUTHORISED",
            "LineItems": [{"Description": "Goodwill", "Quantity": 1, "UnitAmount": D("5.00"), "TaxType": "NONE"}],
        }
        resp = await c._call("PUT", "CreditNotes", body={"CreditNotes": [manual]}, params={"summarizeErrors": "false"})
        assert resp.status_code == 200
        with pytest.raises(NumberConflictError) as info:
            await c.retire(_previous(theirs), key="k2", reason="cancelled", issued=date(2026, 3, 9))
        return reused, info.value

    reused, conflict = run(with_connector(settings_for(emu), go))
    assert (reused.action, reused.previous_status, reused.details) == (
        "none",
        "AUTHORISED",
        {"credited_by": "ACME-WO-1-R1-CN"},
    )
    assert (conflict.number, conflict.ours, conflict.theirs) == ("ACME-WO-2-R1-CN", D("209.41"), D("5.00"))
    manual_id = next(n["CreditNoteID"] for n in emu.credit_notes(ORG) if n["CreditNoteNumber"] == "ACME-WO-2-R1-CN")
    assert conflict.external_id == manual_id and str(conflict) == (
        f"number_conflict: Xero already holds a credit note numbered ACME-WO-2-R1-CN (id {manual_id}) that is not "
        "ours: its reference '' carries the marker None, ours is 'acme:wo:ACME-WO-2-R1:r1'. Its total: 5.00; "
        "invoice ACME-WO-2-R1 totals 209.41. Invoice ACME-WO-2-R1 was not retired and no credit note was issued: "
        "rename or remove that credit note, then replay"
    )
    assert len(emu.credit_notes(ORG)) == 2
    assert {i["InvoiceNumber"]: i["Status"] for i in emu.invoices(ORG)} == {
        "ACME-WO-1-R1": "AUTHORISED",
        "ACME-WO-2-R1": "AUTHORISED",  # the conflict changed nothing
    }


def test_amend_voids_the_unpaid_revision_and_creates_the_new_one(emulators, secrets_env):
    emu = emulators()
    r1 = make_invoice("ACME-WO-9-R1", key="acme:wo:ACME-WO-9:r1")
    r2 = make_invoice(
        "ACME-WO-9-R2",
        key="acme:wo:ACME-WO-9:r2",
        lines=[line("HVAC labour (Ana Costa)", "1", "100.00", "100.00", "23", "23.00", "123.00")],
        net="100.00",
        tax="23.00",
        total="123.00",
    )

    async def go(c: XeroConnector):
        first = await c.deliver(r1)
        amended = await c.amend(r2, _previous(first))
        again = await c.amend(r2, _previous(first))
        return amended, again

    amended, again = run(with_connector(settings_for(emu), go))
    assert amended.created is True and again.external_id == amended.external_id  # the PUT replayed by its key
    assert {k: amended.details[k] for k in ("amendment", "previous_number", "previous_status")} == {
        "amendment": "voided",
        "previous_number": "ACME-WO-9-R1",
        "previous_status": "AUTHORISED",
    }
    assert again.details["amendment"] == "none" and again.details["previous_status"] == "VOIDED"
    assert {i["InvoiceNumber"]: i["Status"] for i in emu.invoices(ORG)} == {
        "ACME-WO-9-R1": "VOIDED",
        "ACME-WO-9-R2": "AUTHORISED",
    }
    assert emu.balance(ORG) == D("123.00")
    assert [h[1] for h in emu.history] == ["invoice.created", "invoice.status", "invoice.created"]


def test_legal_note_lines_and_credit_notes_validate_against_the_official_spec():
    settings = XeroSettings(
        xero_tenant_id=ORG, client_id="x", client_secret_env="A", refresh_token_env="B", tax_types={"23": "OUTPUT2"}
    )
    element = invoice_to_xero(make_invoice(legal_notes=[REVERSE_CHARGE, "x" * 4001]), settings)
    assert element["LineItems"][2:] == [
        {"Description": REVERSE_CHARGE},
        {"Description": "x" * 4000},  # a note longer than one line takes is split, never cut
        {"Description": "x"},
    ]
    assert validate_invoices_body(SPEC, {"Invoices": [element]}) == []
    stored = {
        **element,
        "InvoiceNumber": "ACME-WO-1-R1",
        "LineItems": [
            {**element["LineItems"][0], "LineItemID": "l1", "Tracking": []},
            {**element["LineItems"][1], "LineAmount": D("33.75"), "DiscountRate": D("10.00")},
            {"LineItemID": "l3", "Description": REVERSE_CHARGE, "LineAmount": D("0.00"), "TaxAmount": D("0.00")},
        ],
    }
    note = credit_note_for(stored, "ACME-WO-1-R1-CN", issued="2026-03-09", reason="replaced by ACME-WO-1-R2")
    assert note["LineItems"] == [
        {
            "Description": "HVAC labour (Ana Costa)",
            "Quantity": D("3.25"),
            "UnitAmount": D("42.00"),
            "AccountCode": "200",
            "TaxType": "OUTPUT2",
            "TaxAmount": D("31.40"),
            "LineAmount": D("136.50"),
        },
        {
            "Description": "Contactor 25A",
            "Quantity": D("1"),
            "UnitAmount": D("33.75"),  # 2 x 18.75 less 10 %: credit notes take no discounts
            "AccountCode": "200",
            "TaxType": "OUTPUT2",
            "TaxAmount": D("7.76"),
            "LineAmount": D("33.75"),
        },
        {"Description": REVERSE_CHARGE},
    ]
    assert note["Reference"] == "Credit for ACME-WO-1-R1 (replaced by ACME-WO-1-R2) broker:acme:wo:ACME-WO-1-R1:r1"
    problems = make_request_validator(SPEC).schema_problems("CreditNotes", {"CreditNotes": [note]})
    assert [str(p) for p in problems] == []


# --------------------------------------------------------------------------- archived contacts
ARCHIVED = (
    "The contact with the specified contact details has been archived. "
    "The contact must be un-archived before creating new invoices or credit notes."
)
TAX_TYPES = {"23": "OUTPUT2"}  # the emulator's 23 % TaxType


def test_an_invoice_for_an_archived_contact_is_refused_naming_the_contact(emulators, secrets_env):
    emu = emulators()
    emu.archive_contact(CONTACT, ORG)
    exc = run(
        with_connector(
            settings_for(emu, tax_types=TAX_TYPES), lambda c: _raises(PermanentError, c.deliver(make_invoice()))
        )
    )
    assert exc.http_status == 400 and not isinstance(exc, NumberConflictError)
    assert str(exc) == (
        f"Xero PUT Invoices ACME-WO-1-R1: the Xero contact with ContactID {CONTACT} of client CLI-HAL (Hotel "
        "Atlântico Lisboa, S.A.) is archived, and Xero creates no invoice or credit note for an archived contact. "
        "Restore it in Xero (Contacts > Archived > Restore) or map the client to an active contact, then replay. "
        f"Xero said: {ARCHIVED}"
    )
    assert emu.invoices(ORG) == []
    [contact] = emu.contacts(ORG)
    assert contact["ContactStatus"] == "ARCHIVED"  # never restored by the connector


def test_a_paid_invoice_whose_contact_was_archived_is_not_credited_and_the_contact_is_named(emulators, secrets_env):
    emu = emulators()

    async def go(c: XeroConnector):
        created = await c.deliver(make_invoice())
        emu.mark_paid(created.external_id, None, ORG)
        emu.archive_contact(CONTACT, ORG)
        kw = {"key": "acme:wo:ACME-WO-1:r1:cancelled", "reason": "work order cancelled", "issued": date(2026, 3, 9)}
        return await _raises(PermanentError, c.cancel(_previous(created), **kw))

    exc = run(with_connector(settings_for(emu, tax_types=TAX_TYPES), go))
    assert str(exc) == (
        f"Xero PUT CreditNotes ACME-WO-1-R1-CN: the Xero contact 'Hotel Atlântico Lisboa, S.A.' (ContactID {CONTACT}) "
        "is archived, and Xero creates no invoice or credit note for an archived contact. Restore it in Xero "
        "(Contacts > Archived > Restore) or map the client to an active contact, then replay. "
        f"Xero said: {ARCHIVED}"
    )
    [held] = emu.invoices(ORG)
    assert held["Status"] == "PAID" and emu.credit_notes(ORG) == [] and emu.balance(ORG) == D("0.00")
