"""QuickBooksConnector against the QuickBooks emulator on loopback (real HTTP, no mocks).

Every emulator checks each request against the field reference (tests/specs/quickbooks) and the tests
assert it saw no invalid request and no emulator bug. Money values are computed by hand in comments.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.quickbooks import QuickBooksConnector, request_id
from connectors.quickbooks.emulator import DEMO_TAX_CODES, QuickBooksEmulator
from connectors.quickbooks.mapper import batch_request_id, quote
from connectors.quickbooks.spec import make_request_validator
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
from connectors.sdk.idempotency import QUICKBOOKS, idempotency_key
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.lifecycle import Retirement
from connectors.sdk.oauth2 import MemoryTokenStore

SPEC = Path(__file__).resolve().parent / "specs" / "quickbooks" / "openapi.yaml"
REALM = "9341452000000001"
SECRET = "qbo-client-SECRET-value-42"
REFRESH = "qbo-initial-REFRESH-77"


@pytest.fixture(scope="module")
def validator():
    return make_request_validator(SPEC)


@pytest.fixture
def emulators(validator):
    started: list[QuickBooksEmulator] = []

    def make(**kwargs) -> QuickBooksEmulator:
        kwargs.setdefault("client_secret", SECRET)
        kwargs.setdefault("refresh_token", REFRESH)
        kwargs.setdefault("realm_ids", (REALM,))
        emu = QuickBooksEmulator(request_validator=validator, **kwargs).start()
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
    monkeypatch.setenv("QBO_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("QBO_REFRESH_TOKEN", REFRESH)


def settings_for(emu: QuickBooksEmulator, **overrides) -> dict:
    base = {
        "api_url": emu.url,
        "token_url": emu.token_url,
        "realm_id": REALM,
        "client_id": "demo-client",
        "client_secret_env": "QBO_CLIENT_SECRET",
        "refresh_token_env": "QBO_REFRESH_TOKEN",
        "tax_codes": DEMO_TAX_CODES,
        "item_ids": {"labour": "2", "part": "3"},
    }
    base.update(overrides)
    return base


def line(desc, qty, price, net, rate, tax, *, kind="labour", discount="0") -> InvoiceLine:
    return InvoiceLine(
        kind=kind,
        description=desc,
        quantity=D(qty),
        unit_price=D(price),
        discount_percent=D(discount),
        net=D(net),
        tax_rate=D(rate),
        tax=D(tax),
        total=D(net) + D(tax),
        source="t",
        rule="t",
    )


def make_invoice(number="ACME-WO-1-R1", *, lines=None, contact_id="58", tenant="acme") -> Invoice:
    if lines is None:
        lines = [
            # 3.25 h × 42.00 = 136.50; 23 % = 31.395 -> 31.40
            line("HVAC labour (Ana Costa)", "3.25", "42.00", "136.50", "23", "31.40"),
            # 2 × 18.75 less 10 % = 33.75; 23 % = 7.7625 -> 7.76
            line("Contactor 25A", "2", "18.75", "33.75", "23", "7.76", kind="part", discount="10"),
        ]
    return Invoice(
        invoice_key=f"{tenant}:wo:{number}:r1",
        invoice_number=number,
        order_key=f"{tenant}:wo:{number}",
        tenant=tenant,
        billing_system="quickbooks",
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
        lines=lines,
        net_total=sum((ln.net for ln in lines), D(0)),
        tax_total=sum((ln.tax for ln in lines), D(0)),
        total=sum((ln.total for ln in lines), D(0)),
        cost_total=D(0),
        margin=D(0),
    )


def run(coro):
    return asyncio.run(coro)


async def with_connector(settings, fn, *, store=None, **kw):
    connector = QuickBooksConnector(settings, tenant="acme", token_store=store or MemoryTokenStore(), **kw)
    try:
        return await fn(connector)
    finally:
        await connector.aclose()


def company_calls(emu: QuickBooksEmulator) -> list[tuple[str, str, int]]:
    prefix = f"/v3/company/{REALM}/"
    return [(m, p[len(prefix) :], s) for m, p, s in emu.calls if p.startswith(prefix)]


# --------------------------------------------------------------------------- happy path and totals
def test_deliver_creates_invoice_whose_totals_equal_ours(emulators, secrets_env):
    emu = emulators()

    async def go(c: QuickBooksConnector):
        await c.check()
        return await c.deliver(make_invoice())

    result = run(with_connector(settings_for(emu), go))
    # net 136.50 + 33.75 = 170.25; tax 31.40 + 7.76 = 39.16; total 209.41
    assert result.created is True and result.external_number == "ACME-WO-1-R1"
    assert result.details["TotalAmt"] == "209.41" and result.details["TotalTax"] == "39.16"
    assert (
        result.details["total_matches"] is True
        and result.details["requestid"] == "acme:quickbooks:acme:wo:ACME-WO-1-R1:r1:create"
    )
    [stored] = emu.invoices(REALM)
    assert stored["Id"] == result.external_id
    assert (stored["TotalAmt"], stored["TxnTaxDetail"]["TotalTax"]) == (D("209.41"), D("39.16"))
    sales = [ln for ln in stored["Line"] if ln["DetailType"] == "SalesItemLineDetail"]
    assert [
        (ln["SalesItemLineDetail"]["Qty"], ln["SalesItemLineDetail"]["UnitPrice"], ln["Amount"]) for ln in sales
    ] == [(D("3.25"), D("42.00"), D("136.50")), (D("2"), D("16.875"), D("33.75"))]  # 2 × 16.875 = 33.75
    assert [ln["SalesItemLineDetail"]["ItemRef"]["value"] for ln in sales] == ["2", "3"]
    assert stored["Line"][-1] == {"Amount": D("170.25"), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}
    assert stored["CustomerRef"] == {"value": "58", "name": "Hotel Atlântico Lisboa, S.A."}
    assert stored["PrivateNote"] == "broker:acme:wo:ACME-WO-1-R1:r1" and stored["EmailStatus"] == "NotSet"
    assert stored["CustomerMemo"] == {"value": "WO ACME-WO-1-R1"}
    assert emu.minor_versions and set(emu.minor_versions) == {"75"}


def test_explicit_tax_lines_make_qbo_total_equal_ours_where_its_own_rounding_would_not(emulators, secrets_env):
    emu = emulators()
    washers = [line(f"Washer M8 ({n})", "1", "0.99", "0.99", "23", "0.23", kind="part") for n in (1, 2, 3)]
    inv = make_invoice("ACME-WO-2-R1", lines=washers)
    # ours, per line: 3 × round(0.99 × 23 %) = 3 × 0.23 = 0.69; total 2.97 + 0.69 = 3.66
    # QBO's own engine, per rate on the sum: round(2.97 × 23 %) = round(0.6831) = 0.68 -> 3.65
    result = run(with_connector(settings_for(emu), lambda c: c.deliver(inv)))
    assert inv.total == D("3.66") and result.details["TotalAmt"] == "3.66" and result.details["total_matches"] is True
    [stored] = emu.invoices()
    assert stored["TxnTaxDetail"]["TaxLine"][0]["Amount"] == D("0.69")


def test_find_escapes_quotes_in_the_query(emulators, secrets_env):
    emu = emulators()
    inv = make_invoice("O'BRIEN-WO-7-R1")

    async def go(c: QuickBooksConnector):
        created = await c.deliver(inv)
        return created, await c.find("O'BRIEN-WO-7-R1"), await c.find("O'BRIEN-WO-8-R1")

    created, found, absent = run(with_connector(settings_for(emu), go))
    assert found is not None and found.external_id == created.external_id and found.total == D("209.41")
    assert absent is None
    assert quote("O'B\\x") == "'O\\'B\\\\x'"


# --------------------------------------------------------------------------- idempotency
def test_requestid_replays_the_create_after_a_lost_response(emulators, secrets_env):
    emu = emulators(hang_seconds=2)
    emu.inject_fault("timeout_after_commit")

    async def go(c: QuickBooksConnector):
        with pytest.raises(UncertainOutcomeError) as info:
            await c.deliver(make_invoice())
        again = await c.deliver(make_invoice())  # same requestid: QBO answers the original response
        return info.value, again

    exc, again = run(with_connector(settings_for(emu, timeout_seconds=0.5), go))
    assert "reconcile" in str(exc)
    [stored] = emu.invoices()
    assert again.external_id == stored["Id"]
    key = request_id(make_invoice(), "create")
    assert [(rid, replayed) for _, rid, replayed in emu.request_ids_seen] == [(key, False), (key, True)]


def test_duplicate_doc_number_after_the_requestid_window_is_the_existing_invoice(emulators, secrets_env):
    emu = emulators(requestid_ttl=0)  # keys forgotten at once: the second POST reaches the DocNumber check

    async def go(c: QuickBooksConnector):
        return await c.deliver(make_invoice()), await c.deliver(make_invoice())

    first, second = run(with_connector(settings_for(emu), go))
    assert first.created is True and second.created is False and second.details["duplicate"] is True
    assert second.external_id == first.external_id and second.details["total_matches"] is True
    assert len(emu.invoices()) == 1
    assert [(m, p, s) for m, p, s in company_calls(emu)] == [
        ("POST", "invoice", 200),
        ("POST", "invoice", 400),
        ("GET", "query", 200),
    ]


def test_request_ids_are_deterministic_per_step_and_bounded():
    inv = make_invoice()
    assert request_id(inv, "create") == "acme:quickbooks:acme:wo:ACME-WO-1-R1:r1:create"
    assert request_id(inv, "send") != request_id(inv, "create")
    long_key = make_invoice(tenant="a-very-long-tenant-name")
    assert len(request_id(long_key, "create")) == 50 and request_id(long_key, "create") == request_id(
        long_key, "create"
    )
    odd = make_invoice("CF-Ç/1,a b-R1")
    assert len(request_id(odd, "create")) <= 50 and request_id(odd, "create").isalnum()
    keys = ["acme:wo:2:r1", "acme:wo:1:r1"]
    assert batch_request_id("acme", keys) == batch_request_id("acme", list(reversed(keys)))
    assert len(batch_request_id("acme", keys)) <= 36


# --------------------------------------------------------------------------- limits checked before sending
def test_field_limits_are_checked_before_anything_is_sent(emulators, secrets_env):
    emu = emulators()
    too_long = make_invoice("ACME-WO-1234567890-R10")  # 22 characters

    async def go(c: QuickBooksConnector):
        with pytest.raises(PermanentError) as info:
            await c.deliver(too_long)
        return info.value

    exc = run(with_connector(settings_for(emu), go))
    assert "DocNumber" in str(exc) and "22 characters" in str(exc)
    assert emu.calls == []  # not even a token refresh


def test_validation_fault_is_permanent_with_qbo_codes(emulators, secrets_env):
    emu = emulators()

    async def go(c: QuickBooksConnector):
        with pytest.raises(PermanentError) as info:
            await c.deliver(make_invoice(contact_id="999"))
        return info.value

    exc = run(with_connector(settings_for(emu), go))
    assert exc.http_status == 400 and "2500" in str(exc) and "Invalid Reference Id" in str(exc)
    assert emu.invoices() == []


# --------------------------------------------------------------------------- throttling and server faults
def test_429_is_rate_limited_with_retry_after(emulators, secrets_env):
    emu = emulators(rate_limit_per_minute=2)

    async def go(c: QuickBooksConnector):
        await c.check()
        await c.deliver(make_invoice("ACME-WO-1-R1"))
        with pytest.raises(RateLimitedError) as info:
            await c.deliver(make_invoice("ACME-WO-2-R1"))
        return info.value

    exc = run(with_connector(settings_for(emu), go))
    assert exc.http_status == 429 and 1 <= exc.retry_after <= 60 and isinstance(exc, RetryableError)
    assert emu.count_429 == 1 and len(emu.invoices()) == 1


def test_5xx_and_reset_are_retryable_and_store_nothing(emulators, secrets_env):
    emu = emulators()
    emu.inject_fault("503")
    emu.inject_fault("500")
    emu.inject_fault("reset")

    async def go(c: QuickBooksConnector):
        errors = []
        for _ in range(3):
            with pytest.raises(RetryableError) as info:
                await c.deliver(make_invoice())
            errors.append(info.value)
        return errors, await c.deliver(make_invoice())

    errors, result = run(with_connector(settings_for(emu), go))
    assert [e.http_status for e in errors[:2]] == [503, 500] and "System Failure Error" in str(errors[1])
    assert result.created is True and len(emu.invoices()) == 1


# --------------------------------------------------------------------------- auth
def test_expired_token_is_refreshed_once_and_the_rotated_token_kept(emulators, secrets_env):
    emu = emulators()
    store = MemoryTokenStore()
    rotated: list[str] = []

    async def go(c: QuickBooksConnector):
        await c.deliver(make_invoice("ACME-WO-1-R1"))
        emu.expire_access_tokens()
        await asyncio.gather(*(c.deliver(make_invoice(f"ACME-WO-{n}-R1")) for n in (2, 3, 4)))
        return c.token_refreshes

    refreshes = run(with_connector(settings_for(emu), go, store=store, on_refresh_token=rotated.append))
    assert refreshes == 2 and len(emu.refresh_token_uses) == 2  # first token + one refresh for three 401s
    assert emu.refresh_token_uses == [REFRESH, rotated[0]]
    [saved] = [store.load(k) for k in store._tokens]
    assert saved.refresh_token.get_secret_value() == rotated[-1] == emu.current_refresh_token
    assert len(emu.invoices()) == 4


def test_wrong_client_secret_is_auth_error_without_secrets(emulators, monkeypatch, caplog):
    emu = emulators()
    wrong = "WRONG-qbo-secret-123456"
    monkeypatch.setenv("QBO_CLIENT_SECRET", wrong)
    monkeypatch.setenv("QBO_REFRESH_TOKEN", REFRESH)
    caplog.set_level(logging.DEBUG)

    async def go(c: QuickBooksConnector):
        with pytest.raises(AuthError) as info:
            await c.check()
        return info.value, repr(c) + repr(vars(c))

    exc, reprs = run(with_connector(settings_for(emu), go))
    assert "invalid_client" in str(exc) and "QBO_CLIENT_SECRET" in str(exc)
    for text in (str(exc), repr(exc), reprs, caplog.text):
        assert wrong not in text and REFRESH not in text


def test_missing_secret_is_config_error_naming_the_variable(emulators, monkeypatch):
    emu = emulators()
    monkeypatch.delenv("QBO_REFRESH_TOKEN", raising=False)
    monkeypatch.setenv("QBO_CLIENT_SECRET", SECRET)

    async def go(c: QuickBooksConnector):
        with pytest.raises(ConfigError) as info:
            await c.deliver(make_invoice())
        return info.value

    exc = run(with_connector(settings_for(emu), go))
    assert "QBO_REFRESH_TOKEN" in str(exc) and "billing.settings.refresh_token_env" in str(exc)


def test_unknown_realm(emulators, secrets_env):
    emu = emulators()
    other = settings_for(emu, realm_id="123")
    exc = run(with_connector(other, lambda c: _raises(UnknownAccountError, c.check())))
    assert "realm) 123" in str(exc)
    exc2 = run(with_connector(other, lambda c: _raises(AuthError, c.deliver(make_invoice()))))
    assert exc2.http_status == 403 and "AuthorizationFault" in str(exc2)


# --------------------------------------------------------------------------- e-mail
def test_email_is_sent_once_with_its_own_requestid(emulators, secrets_env):
    emu = emulators()

    async def go(c: QuickBooksConnector):
        return await c.deliver(make_invoice()), await c.deliver(make_invoice())

    first, second = run(with_connector(settings_for(emu, email_invoice=True), go))
    assert first.details["EmailStatus"] == "EmailSent" and first.details["send_requestid"].endswith(":send")
    assert second.external_id == first.external_id
    assert emu.emails == [
        (REALM, first.external_id, "contas@hotel-atlantico.example")
    ]  # the replayed send sent nothing
    assert emu.invoices()[0]["EmailStatus"] == "EmailSent"


def test_email_failure_keeps_the_created_invoice(emulators, secrets_env):
    emu = emulators()  # customer 59 has no e-mail address
    result = run(
        with_connector(settings_for(emu, email_invoice=True), lambda c: c.deliver(make_invoice(contact_id="59")))
    )
    assert result.created is True and "email address is required" in result.details["email_error"]
    assert len(emu.invoices()) == 1 and emu.emails == []


# --------------------------------------------------------------------------- batch
def test_deliver_many_uses_the_batch_endpoint_with_per_item_results(emulators, secrets_env):
    emu = emulators()
    a, b, bad = (
        make_invoice("ACME-WO-A-R1"),
        make_invoice("ACME-WO-B-R1"),
        make_invoice("ACME-WO-C-R1", contact_id="999"),
    )

    async def go(c: QuickBooksConnector):
        existing = await c.deliver(a)
        return existing, await c.deliver_many([b, bad, a])

    existing, items = run(with_connector(settings_for(emu), go))
    assert [i.invoice_key for i in items] == [b.invoice_key, bad.invoice_key, a.invoice_key]
    assert items[0].ok and items[0].result.created is True and items[0].result.details["TotalAmt"] == "209.41"
    assert isinstance(items[1].error, PermanentError) and "2500" in str(items[1].error)
    assert items[2].ok and items[2].result.created is False and items[2].result.external_id == existing.external_id
    assert sorted(i["DocNumber"] for i in emu.invoices()) == ["ACME-WO-A-R1", "ACME-WO-B-R1"]
    # one batch call (keyed by the sorted invoice keys), one DocNumber IN (...) lookup for the duplicate
    assert [(m, p) for m, p, _ in company_calls(emu)] == [("POST", "invoice"), ("POST", "batch"), ("GET", "query")]
    assert emu.request_ids_seen[-1][1] == batch_request_id("acme", [b.invoice_key, bad.invoice_key, a.invoice_key])


def test_deliver_many_splits_at_batch_size_and_stops_after_a_429(emulators, secrets_env):
    emu = emulators(batch_limit_per_minute=1)
    invoices = [make_invoice(f"ACME-WO-{n}-R1") for n in range(3)]
    items = run(with_connector(settings_for(emu, batch_size=2), lambda c: c.deliver_many(invoices)))
    assert [i.ok for i in items] == [True, True, False]
    assert isinstance(items[2].error, RateLimitedError)  # the second batch call of the minute is throttled
    assert len(emu.invoices()) == 2


# --------------------------------------------------------------------------- the broker's batched creates
def test_quickbooks_creates_go_through_its_batch_endpoint_30_at_a_time(emulators, secrets_env):
    """Through the Deliverer's batch window (broker/delivery/batching.py): 40 invoices of one QuickBooks
    tenant, one with an unknown customer: two ``POST /batch`` calls (30 + 10), 39 created once, the
    refused one dead alone (QuickBooks error 2500), no single create."""
    from broker.delivery import Dead, Deliverer, DictLedgerStore, InvoiceLedger, RecordMeta
    from broker.delivery.limits import new_tenant_state
    from broker.settings import DeliverySettings

    emu = emulators()
    ledger = InvoiceLedger(DictLedgerStore())
    invoices = [make_invoice(f"ACME-WO-{n}-R1", contact_id="999" if n == 7 else "58") for n in range(40)]

    async def go():
        connector = QuickBooksConnector(settings_for(emu), tenant="acme", token_store=MemoryTokenStore())
        deliverer = Deliverer(config=None, policy=DeliverySettings(batch_linger=0.05))
        deliverer._tenants["acme"] = new_tenant_state("acme", connector)
        try:
            return await asyncio.gather(
                *(deliverer.process(inv, ledger, RecordMeta("billing.invoices", 0, 7)) for inv in invoices)
            )
        finally:
            await deliverer.aclose()

    out = asyncio.run(go())
    assert [type(o).__name__ for o in out] == ["Delivered"] * 7 + ["Dead"] + ["Delivered"] * 32
    assert isinstance(out[7], Dead) and out[7].error_class == "permanent" and "2500" in str(out[7].error)
    assert sorted(i["DocNumber"] for i in emu.invoices()) == sorted(
        inv.invoice_number for n, inv in enumerate(invoices) if n != 7
    )
    assert [(m, p) for m, p, _ in company_calls(emu)] == [("POST", "batch"), ("POST", "batch")]
    assert {ledger.entry(inv.invoice_key).get("state") for inv in invoices} == {"pending"}  # the stage settles them


# --------------------------------------------------------------------------- contacts
def test_missing_customer_is_found_by_name_or_created_when_allowed(emulators, secrets_env):
    emu = emulators()
    known = make_invoice("ACME-WO-K-R1", contact_id=None)
    stranger = make_invoice("ACME-WO-S-R1", contact_id=None).model_copy(
        update={"client_id": "CLI-NEW", "client_name": "Condomínio Novo"}
    )

    async def go(c: QuickBooksConnector):
        found = await c.deliver(known)
        with pytest.raises(PermanentError) as info:
            await c.deliver(stranger)
        return found, info.value

    found, exc = run(with_connector(settings_for(emu), go))
    assert emu.invoices()[0]["CustomerRef"]["value"] == "58" and found.created
    assert "CLI-NEW" in str(exc) and "create_contacts" in str(exc)
    created = run(with_connector(settings_for(emu, create_contacts=True), lambda c: c.deliver(stranger)))
    new_id = next(c["Id"] for c in emu.customers() if c["DisplayName"] == "Condomínio Novo")
    assert created.created and emu.invoices()[1]["CustomerRef"]["value"] == new_id


async def _raises(exc_type, coro):
    with pytest.raises(exc_type) as info:
        await coro
    return info.value


# --------------------------------------------------------------------------- authorization-code flow
def test_authorize_flow_stores_tokens_the_connector_then_uses(emulators, monkeypatch):
    import threading

    import httpx

    from connectors.sdk.oauth2 import authorization_code_flow

    emu = emulators()
    monkeypatch.setenv("QBO_CLIENT_SECRET", SECRET)
    monkeypatch.delenv("QBO_REFRESH_TOKEN", raising=False)  # only the stored tokens exist
    store = MemoryTokenStore()
    settings = settings_for(emu, authorize_url=f"{emu.url}/connect/oauth2")

    def browser(url: str) -> None:  # the "user" consents: follow the 302 to the loopback callback
        threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=5), daemon=True).start()

    async def go(c: QuickBooksConnector):
        config = c.oauth2_config()
        assert config.scopes == ("com.intuit.quickbooks.accounting",) and config.auth_method == "basic"
        result = await authorization_code_flow(config, store, show_url=browser, open_browser=False, timeout=10)
        await c.check()
        return result, await c.deliver(make_invoice())

    result, delivered = run(with_connector(settings, go, store=store))
    assert result.tokens.refresh_token is not None and delivered.created
    assert emu.refresh_token_uses == []  # the access token from the code exchange was used as is


# --------------------------------------------------------------------------- lifecycle
REV2_KEY = "acme:wo:ACME-WO-1-R1:r2"
ISSUED = date(2026, 3, 9)


def retire(c: QuickBooksConnector, previous: ExternalInvoice, reason: str = "replaced by ACME-WO-1-R2"):
    return c.retire(previous, key=REV2_KEY, reason=reason, issued=ISSUED)


def plant(emu: QuickBooksEmulator, total: str, *, number="ACME-WO-1-R1", txn_type="Invoice", note="typed by hand"):
    exempt_line = {
        "Amount": D(total),
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "TaxCodeRef": {"value": "6"}},  # 0 %
    }
    doc = {"DocNumber": number, "CustomerRef": {"value": "58"}, "PrivateNote": note, "Line": [exempt_line]}
    return emu.plant_invoice(REALM, doc, txn_type)


def test_retire_voids_an_unpaid_invoice_once(emulators, secrets_env):
    emu = emulators()

    async def go(c: QuickBooksConnector):
        first = await c.deliver(make_invoice())
        previous = ExternalInvoice(first.external_id, first.external_number)
        return first, await retire(c, previous), await retire(c, previous)

    first, voided, again = run(with_connector(settings_for(emu), go))
    assert voided == Retirement("voided", "ACME-WO-1-R1", "Open")
    assert again == Retirement("none", "ACME-WO-1-R1", "Voided")
    [held] = emu.invoices(REALM)
    assert (held["Id"], held["TotalAmt"], held["Balance"]) == (first.external_id, D("0"), D("0"))
    assert held["PrivateNote"] == "Voided - broker:acme:wo:ACME-WO-1-R1:r1"
    assert emu.credit_memos(REALM) == [] and emu.balance(REALM) == D("0.00")
    ident = first.external_id
    assert company_calls(emu)[1:] == [
        ("GET", f"invoice/{ident}", 200),
        ("GET", "query", 200),  # select * from CreditMemo where DocNumber = 'ACME-WO-1-R1-CN': none
        ("POST", "invoice", 200),  # ?operation=void
        ("GET", f"invoice/{ident}", 200),  # the repeat sees it voided and stops
    ]
    void_key = idempotency_key("acme", "quickbooks", REV2_KEY, f"void-{ident}-0", QUICKBOOKS)
    assert (REALM, void_key, False) in emu.request_ids_seen


def test_retire_credits_a_paid_invoice_in_full_and_reuses_the_credit_memo(emulators, secrets_env):
    emu = emulators()
    first = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    emu.pay(REALM, first.external_id, D("100.00"))  # partly paid: 209.41 - 100.00 = 109.41 still due
    previous = ExternalInvoice(first.external_id, first.external_number)
    credited = run(with_connector(settings_for(emu), lambda c: retire(c, previous)))
    [memo] = emu.credit_memos(REALM)
    assert credited == Retirement(
        "credited",
        "ACME-WO-1-R1",
        "Partial",
        paid=D("100.00"),
        credit_note_id=memo["Id"],
        credit_note_number="ACME-WO-1-R1-CN",
        credit_note_total=D("209.41"),
    )
    assert credited.as_details()["previous_paid"] == "100.00"
    assert (memo["DocNumber"], memo["TotalAmt"], memo["RemainingCredit"]) == (
        "ACME-WO-1-R1-CN",
        D("209.41"),
        D("209.41"),
    )
    assert memo["TxnTaxDetail"]["TotalTax"] == D("39.16") and memo["TxnDate"] == "2026-03-09"
    assert memo["CustomerMemo"] == {"value": "Credit note for invoice ACME-WO-1-R1: replaced by ACME-WO-1-R2"}
    assert memo["PrivateNote"] == "Credits invoice ACME-WO-1-R1\nbroker:acme:wo:ACME-WO-1-R1:r1"
    [held] = emu.invoices(REALM)
    assert (held["TotalAmt"], held["Balance"]) == (D("209.41"), D("109.41"))  # a paid invoice is never voided
    # 109.41 due - 209.41 unapplied credit = -100.00: the money received is owed back
    assert emu.balance(REALM) == D("-100.00")
    calls_before = len(company_calls(emu))
    again = run(with_connector(settings_for(emu), lambda c: retire(c, previous, "cancelled")))
    assert again == Retirement("none", "ACME-WO-1-R1", "Partial", details={"credit_note_number": "ACME-WO-1-R1-CN"})
    assert [m for m, p, _ in company_calls(emu)[calls_before:] if m == "POST"] == []
    assert len(emu.credit_memos(REALM)) == 1


def test_retire_after_a_lost_credit_memo_answer_finds_the_memo(emulators, secrets_env):
    emu = emulators(hang_seconds=2)
    first = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    emu.pay(REALM, first.external_id)  # paid in full
    previous = ExternalInvoice(first.external_id, first.external_number)
    emu.inject_fault("timeout_after_commit")

    async def go(c: QuickBooksConnector):
        with pytest.raises(UncertainOutcomeError):
            await retire(c, previous)  # the memo is stored, its answer lost
        return await retire(c, previous)

    again = run(with_connector(settings_for(emu, timeout_seconds=0.5), go))
    assert again == Retirement("none", "ACME-WO-1-R1", "Paid", details={"credit_note_number": "ACME-WO-1-R1-CN"})
    assert [m["TotalAmt"] for m in emu.credit_memos(REALM)] == [D("209.41")]
    assert emu.balance(REALM) == D("-209.41")


def test_a_foreign_invoice_under_our_number_is_never_adopted_nor_retired(emulators, secrets_env):
    emu = emulators()
    foreign = plant(emu, "999.00")

    async def go(c: QuickBooksConnector):
        with pytest.raises(NumberConflictError) as direct:
            await c.deliver(make_invoice())
        [item] = await c.deliver_many([make_invoice()])
        with pytest.raises(NumberConflictError) as retiring:
            await retire(c, ExternalInvoice("", "ACME-WO-1-R1", D("209.41")))
        return direct.value, item, retiring.value

    direct, item, retiring = run(with_connector(settings_for(emu), go))
    assert (direct.number, direct.ours, direct.theirs, direct.external_id) == (
        "ACME-WO-1-R1",
        D("209.41"),
        D("999.00"),
        foreign["Id"],
    )
    assert "999.00" in str(direct) and "209.41" in str(direct) and "broker:acme:wo:ACME-WO-1-R1:r1" in str(direct)
    assert isinstance(item.error, NumberConflictError) and item.error.theirs == D("999.00")
    assert (retiring.ours, retiring.theirs) == (D("209.41"), D("999.00"))
    [held] = emu.invoices(REALM)
    assert (held["Id"], held["TotalAmt"], held["PrivateNote"], held["SyncToken"]) == (
        foreign["Id"],
        D("999.00"),
        "typed by hand",
        "0",
    )


def test_a_foreign_credit_memo_under_our_credit_number_is_a_conflict(emulators, secrets_env):
    emu = emulators()
    first = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    emu.pay(REALM, first.external_id)
    plant(emu, "5.00", number="ACME-WO-1-R1-CN", txn_type="CreditMemo")
    previous = ExternalInvoice(first.external_id, first.external_number)

    async def go(c: QuickBooksConnector):
        with pytest.raises(NumberConflictError) as info:
            await retire(c, previous)
        return info.value

    exc = run(with_connector(settings_for(emu), go))
    assert (exc.number, exc.ours, exc.theirs) == ("ACME-WO-1-R1-CN", D("209.41"), D("5.00"))
    assert "marker None (ours 'acme:wo:ACME-WO-1-R1:r1')" in str(exc)
    assert [m["TotalAmt"] for m in emu.credit_memos(REALM)] == [D("5.00")]
    assert emu.invoices(REALM)[0]["TotalAmt"] == D("209.41")


def test_retire_of_an_absent_invoice_does_nothing(emulators, secrets_env):
    emu = emulators()

    async def go(c: QuickBooksConnector):
        return await retire(c, ExternalInvoice("999", "NOPE-1")), await retire(c, ExternalInvoice("", "NOPE-1"))

    by_id, by_number = run(with_connector(settings_for(emu), go))
    assert by_id == by_number == Retirement("none", "NOPE-1")


def test_void_with_a_stale_sync_token_rereads_once(emulators, secrets_env):
    emu = emulators()
    first = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    [stale] = emu.invoices(REALM)  # SyncToken "0"
    # e-mailing it (another worker) moves the SyncToken to "1"
    run(with_connector(settings_for(emu, email_invoice=True), lambda c: c.deliver(make_invoice())))
    calls_before = len(company_calls(emu))
    run(with_connector(settings_for(emu), lambda c: c._void(stale, REV2_KEY)))
    ident = first.external_id
    assert company_calls(emu)[calls_before:] == [
        ("POST", "invoice", 400),  # Fault 5010 Stale Object Error
        ("GET", f"invoice/{ident}", 200),
        ("POST", "invoice", 200),  # voided with SyncToken "1"
    ]
    assert emu.invoices(REALM)[0]["TotalAmt"] == D("0")


def test_amend_voids_then_delivers_the_new_revision(emulators, secrets_env):
    emu = emulators()
    rev2 = make_invoice("ACME-WO-1-R2").model_copy(update={"invoice_key": REV2_KEY, "revision": 2})

    async def go(c: QuickBooksConnector):
        first = await c.deliver(make_invoice())
        return await c.amend(rev2, ExternalInvoice(first.external_id, first.external_number))

    amended = run(with_connector(settings_for(emu), go))
    assert amended.created is True and amended.external_number == "ACME-WO-1-R2"
    assert {k: amended.details[k] for k in ("amendment", "previous_number", "previous_status")} == {
        "amendment": "voided",
        "previous_number": "ACME-WO-1-R1",
        "previous_status": "Open",
    }
    assert emu.balance(REALM) == D("209.41")
