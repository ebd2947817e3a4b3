"""FreshBooksConnector against the FreshBooks emulator on loopback (real HTTP, no mocks).

Every emulator checks each request against the field reference (tests/specs/freshbooks) and the tests
assert it saw no invalid request and no emulator bug. Money values are computed by hand in comments.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from decimal import Decimal as D
from pathlib import Path

import pytest

from connectors.freshbooks import FreshBooksConnector
from connectors.freshbooks.emulator import DEFAULT_ACCOUNT_ID, FreshBooksEmulator
from connectors.freshbooks.spec import make_request_validator
from connectors.sdk.errors import (
    AuthError,
    NumberConflictError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.lifecycle import Retirement
from connectors.sdk.oauth2 import MemoryTokenStore

SPEC = Path(__file__).resolve().parent / "specs" / "freshbooks" / "openapi.yaml"
ACCOUNT = DEFAULT_ACCOUNT_ID
SECRET = "fb-client-SECRET-value-42"
REFRESH = "fb-initial-REFRESH-77"
INVOICES = f"/accounting/account/{ACCOUNT}/invoices/invoices"
#: One token store per emulator (FreshBooks refresh tokens are single-use: one tenant shares one store).
STORES: dict[str, MemoryTokenStore] = {}


@pytest.fixture(scope="module")
def validator():
    return make_request_validator(SPEC)


@pytest.fixture
def emulators(validator):
    started: list[FreshBooksEmulator] = []

    def make(**kwargs) -> FreshBooksEmulator:
        kwargs.setdefault("client_secret", SECRET)
        kwargs.setdefault("refresh_token", REFRESH)
        emu = FreshBooksEmulator(request_validator=validator, **kwargs).start()
        started.append(emu)
        STORES[emu.url] = MemoryTokenStore()
        return emu

    yield make
    STORES.clear()
    for emu in started:
        emu.stop()
    for emu in started:
        assert emu.validation_failures == []
        assert emu.server_errors == []


@pytest.fixture
def secrets_env(monkeypatch):
    monkeypatch.setenv("FRESHBOOKS_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("FRESHBOOKS_REFRESH_TOKEN", REFRESH)


def settings_for(emu: FreshBooksEmulator, **overrides) -> dict:
    base = {
        "api_url": emu.url,
        "account_id": ACCOUNT,
        "client_id": "demo-client",
        "client_secret_env": "FRESHBOOKS_CLIENT_SECRET",
        "refresh_token_env": "FRESHBOOKS_REFRESH_TOKEN",
        "tax_names": {"23": "IVA"},
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


def make_invoice(number="ACME-WO-1-R1", *, lines=None, contact_id="31007") -> Invoice:
    if lines is None:
        lines = [
            # 3.25 h × 42.00 = 136.50; 23 % = 31.395 -> 31.40
            line("HVAC labour (Ana Costa)", "3.25", "42.00", "136.50", "23", "31.40"),
            # 2 × 18.75 less 10 % = 33.75; 23 % = 7.7625 -> 7.76
            line("Contactor 25A", "2", "18.75", "33.75", "23", "7.76", kind="part", discount="10"),
        ]
    return Invoice(
        invoice_key=f"acme:wo:{number}:r1",
        invoice_number=number,
        order_key=f"acme:wo:{number}",
        tenant="acme",
        billing_system="freshbooks",
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
    connector = FreshBooksConnector(settings, tenant="acme", token_store=store or STORES[settings["api_url"]], **kw)
    try:
        return await fn(connector)
    finally:
        await connector.aclose()


def api_calls(emu: FreshBooksEmulator) -> list[tuple[str, str, int]]:
    return [c for c in emu.calls if c[1].startswith("/accounting/")]


# --------------------------------------------------------------------------- happy path, totals, status
def test_deliver_looks_up_creates_and_marks_sent_with_our_totals(emulators, secrets_env):
    emu = emulators()

    async def go(c: FreshBooksConnector):
        await c.check()
        return await c.deliver(make_invoice())

    result = run(with_connector(settings_for(emu), go))
    # net 170.25 + tax 39.16 = 209.41
    assert result.created is True and result.details["amount"] == "209.41" and result.details["total_matches"] is True
    assert result.details["v3_status"] == "sent"
    [stored] = emu.invoices(ACCOUNT)
    assert str(stored["invoiceid"]) == result.external_id and stored["amount"] == {"amount": "209.41", "code": "EUR"}
    assert [
        (ln["name"], ln["qty"], ln["unit_cost"]["amount"], ln["amount"]["amount"], ln["taxName1"], ln["taxAmount1"])
        for ln in stored["lines"]
    ] == [("Labour", D("3.25"), "42.00", "136.50", "IVA", "23"), ("Parts", D("1"), "33.75", "33.75", "IVA", "23")]
    assert (stored["po_number"], stored["due_date"], stored["status"]) == ("WO ACME-WO-1-R1", "2026-04-01", 2)
    # lookup, create (a draft), mark as sent
    assert [(m, s) for m, _, s in api_calls(emu)] == [("GET", 200), ("POST", 200), ("PUT", 200)]


def test_draft_setting_leaves_a_draft_and_email_sends_it(emulators, secrets_env):
    emu = emulators()
    draft = run(
        with_connector(settings_for(emu, invoice_status="draft"), lambda c: c.deliver(make_invoice("ACME-WO-1-R1")))
    )
    emailed = run(
        with_connector(settings_for(emu, email_invoice=True), lambda c: c.deliver(make_invoice("ACME-WO-2-R1")))
    )
    assert (
        draft.details["v3_status"] == "draft" and emailed.details["v3_status"] == "sent" and emailed.details["emailed"]
    )
    assert emu.emails == [(ACCOUNT, int(emailed.external_id), ["contas@hotel-atlantico.example"])]


def test_freshbooks_total_equals_ours_with_inexact_hours_and_per_line_tax(emulators, secrets_env):
    emu = emulators()
    lines = [
        # 50 min at 45.00 = 37.50 (0.8333 h: more than 2 decimals -> 1 × 37.50); 23 % = 8.625 -> 8.63
        line("Labour 50 min", "0.8333", "45.00", "37.50", "23", "8.63"),
        # three times 1 × 0.99, tax 0.2277 -> 0.23 each (0.69; on the sum it would be 0.68)
        *[line(f"Washer {n}", "1", "0.99", "0.99", "23", "0.23", kind="part") for n in (1, 2, 3)],
        line("Disposal fee (exempt)", "1", "12.50", "12.50", "0", "0.00", kind="expense"),
    ]
    inv = make_invoice("ACME-WO-3-R1", lines=lines)
    # net 37.50 + 2.97 + 12.50 = 52.97; tax 8.63 + 0.69 = 9.32; total 62.29
    assert inv.total == D("62.29")
    result = run(with_connector(settings_for(emu), lambda c: c.deliver(inv)))
    assert result.details["amount"] == "62.29" and result.details["total_matches"] is True
    assert "taxAmount1" not in emu.invoices()[0]["lines"][-1]


# --------------------------------------------------------------------------- idempotency (lookup before create)
def test_second_delivery_is_found_by_lookup_and_not_created(emulators, secrets_env):
    emu = emulators()

    async def go(c: FreshBooksConnector):
        return await c.deliver(make_invoice()), await c.deliver(make_invoice()), await c.find("ACME-WO-1-R1")

    first, second, found = run(with_connector(settings_for(emu), go))
    assert second.created is False and second.details["looked_up"] is True and second.external_id == first.external_id
    assert found.external_id == first.external_id and found.total == D("209.41") and found.status == "sent"
    assert len(emu.invoices()) == 1
    assert [m for m, _, _ in api_calls(emu)] == ["GET", "POST", "PUT", "GET", "GET"]  # no second POST, no second PUT


def test_concurrent_deliveries_race_past_the_lookup_and_uniqueness_resolves_it(emulators, secrets_env):
    emu = emulators(response_delay=0.2)  # both lookups answer "none" before either create lands
    store = MemoryTokenStore()

    async def go():
        a = FreshBooksConnector(settings_for(emu), tenant="acme", token_store=store)
        b = FreshBooksConnector(settings_for(emu), tenant="acme", token_store=store)
        try:
            await a.check()
            return await asyncio.gather(a.deliver(make_invoice()), b.deliver(make_invoice()))
        finally:
            await a.aclose()
            await b.aclose()

    results = run(go())
    assert sorted(r.created for r in results) == [False, True]
    assert results[0].external_id == results[1].external_id
    loser = next(r for r in results if not r.created)
    assert loser.details["duplicate"] is True
    assert len(emu.invoices()) == 1
    assert ("POST", INVOICES, 422) in emu.calls


def test_number_held_by_a_deleted_invoice_is_permanent(emulators, secrets_env):
    emu = emulators()
    first = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    emu._accounts[ACCOUNT].invoices[int(first.external_id)]["vis_state"] = 1  # deleted in the FreshBooks UI
    exc = run(with_connector(settings_for(emu), lambda c: _raises(PermanentError, c.deliver(make_invoice()))))
    assert "deleted" in str(exc) and "ACME-WO-1-R1" in str(exc)


def test_lost_create_response_is_reconciled_by_lookup(emulators, secrets_env):
    emu = emulators(hang_seconds=2)
    emu.inject_fault("timeout_after_commit")  # hits the create, not the lookup before it

    async def go(c: FreshBooksConnector):
        with pytest.raises(UncertainOutcomeError):
            await c.deliver(make_invoice())
        found = await c.find("ACME-WO-1-R1")
        return found, await c.deliver(make_invoice())

    found, again = run(with_connector(settings_for(emu, timeout_seconds=0.5), go))
    [stored] = emu.invoices()
    assert found.external_id == again.external_id == str(stored["invoiceid"])
    # the retry finished the second step: the draft left by the lost response is now sent
    assert again.created is False and again.details["v3_status"] == "sent" and stored["v3_status"] == "sent"


def test_failed_second_step_is_completed_by_the_retry(emulators, secrets_env):
    emu = emulators()

    async def go(c: FreshBooksConnector):
        real_finish = c._finish

        async def failing_finish(invoice, result):
            emu.inject_fault("503")  # lands exactly on the PUT of the second step (mark as sent)
            return await real_finish(invoice, result)

        c._finish = failing_finish
        with pytest.raises(RetryableError):
            await c.deliver(make_invoice())
        c._finish = real_finish
        return await c.deliver(make_invoice())

    result = run(with_connector(settings_for(emu), go))
    [stored] = emu.invoices()
    # the retry finds the draft (no second create) and marks it sent
    assert result.created is False and result.details["v3_status"] == "sent" and stored["status"] == 2
    assert [(m, s) for m, _, s in api_calls(emu)] == [
        ("GET", 200),
        ("POST", 200),
        ("PUT", 503),
        ("GET", 200),
        ("PUT", 200),
    ]


# --------------------------------------------------------------------------- errors
def test_unknown_client_is_permanent_with_the_freshbooks_error(emulators, secrets_env):
    emu = emulators()
    exc = run(
        with_connector(settings_for(emu), lambda c: _raises(PermanentError, c.deliver(make_invoice(contact_id="999"))))
    )
    assert exc.http_status == 422 and "errno 1012 customerid: Client not found." in str(exc)
    assert emu.invoices() == []


def test_429_is_rate_limited_with_retry_after(emulators, secrets_env):
    emu = emulators(rate_limit_per_minute=2)

    async def go(c: FreshBooksConnector):
        await c.check()  # identity call: not counted against the accounting limit
        await c.find("X")
        await c.find("Y")
        with pytest.raises(RateLimitedError) as info:
            await c.deliver(make_invoice())
        return info.value

    exc = run(with_connector(settings_for(emu), go))
    assert exc.http_status == 429 and 1 <= exc.retry_after <= 60 and emu.invoices() == []


# --------------------------------------------------------------------------- auth
def test_single_use_refresh_tokens_need_one_shared_token_store(emulators, secrets_env):
    emu = emulators()  # strict: a refresh token dies when used
    shared = MemoryTokenStore()
    rotated: list[str] = []

    async def go():
        a = FreshBooksConnector(settings_for(emu), tenant="acme", token_store=shared, on_refresh_token=rotated.append)
        b = FreshBooksConnector(settings_for(emu), tenant="acme", token_store=shared)
        lonely = FreshBooksConnector(settings_for(emu), tenant="acme", token_store=MemoryTokenStore())
        try:
            await a.deliver(make_invoice("ACME-WO-1-R1"))
            emu.expire_access_tokens()
            await asyncio.gather(a.deliver(make_invoice("ACME-WO-2-R1")), b.deliver(make_invoice("ACME-WO-3-R1")))
            with pytest.raises(AuthError) as info:  # its own store: it spends the environment token again
                await lonely.check()
            return info.value
        finally:
            for c in (a, b, lonely):
                await c.aclose()

    exc = run(go())
    assert "invalid_grant" in str(exc) and "single-use" in str(exc)
    # the env token, then one refresh for both connectors, then the refused reuse of the env token
    assert emu.refresh_token_uses == [REFRESH, rotated[0], REFRESH]
    assert rotated[-1] == emu.current_refresh_token and len(emu.invoices()) == 3


def test_wrong_secret_is_auth_error_without_secrets(emulators, monkeypatch, caplog):
    emu = emulators()
    wrong = "WRONG-fb-secret-123456"
    monkeypatch.setenv("FRESHBOOKS_CLIENT_SECRET", wrong)
    monkeypatch.setenv("FRESHBOOKS_REFRESH_TOKEN", REFRESH)
    caplog.set_level(logging.DEBUG)
    exc = run(with_connector(settings_for(emu), lambda c: _raises(AuthError, c.check())))
    assert "invalid_client" in str(exc) and "FRESHBOOKS_CLIENT_SECRET" in str(exc)
    for text in (str(exc), repr(exc), caplog.text):
        assert wrong not in text and REFRESH not in text


def test_unknown_account(emulators, secrets_env):
    emu = emulators()
    exc = run(with_connector(settings_for(emu, account_id="Other1"), lambda c: _raises(UnknownAccountError, c.check())))
    assert "unknown FreshBooks account Other1" in str(exc) and ACCOUNT in str(exc)
    exc2 = run(with_connector(settings_for(emu, account_id="Other1"), lambda c: _raises(AuthError, c.find("X"))))
    assert exc2.http_status == 403


# --------------------------------------------------------------------------- contacts
def test_missing_client_is_found_by_name_or_created_when_allowed(emulators, secrets_env):
    emu = emulators()
    known = make_invoice("ACME-WO-K-R1", contact_id=None)
    stranger = make_invoice("ACME-WO-S-R1", contact_id=None).model_copy(
        update={"client_id": "CLI-NEW", "client_name": "Condomínio Novo"}
    )
    run(with_connector(settings_for(emu), lambda c: c.deliver(known)))
    assert emu.invoices()[0]["customerid"] == 31007
    exc = run(with_connector(settings_for(emu), lambda c: _raises(PermanentError, c.deliver(stranger))))
    assert "CLI-NEW" in str(exc)
    run(with_connector(settings_for(emu, create_contacts=True), lambda c: c.deliver(stranger)))
    new_id = next(c["userid"] for c in emu.clients() if c["organization"] == "Condomínio Novo")
    assert emu.invoices()[1]["customerid"] == new_id


async def _raises(exc_type, coro):
    with pytest.raises(exc_type) as info:
        await coro
    return info.value


# --------------------------------------------------------------------------- scopes and the authorization-code flow
def test_missing_scope_is_reported_by_check_and_by_a_refused_call(emulators, secrets_env):
    from connectors.sdk.errors import MissingScopeError

    emu = emulators(scopes=("user:profile:read", "user:invoices:read", "user:clients:read"))

    async def go(c: FreshBooksConnector):
        with pytest.raises(MissingScopeError) as checked:
            await c.check()
        with pytest.raises(MissingScopeError) as refused:
            await c.deliver(make_invoice())
        return checked.value, refused.value

    checked, refused = run(with_connector(settings_for(emu), go))
    # credit notes (retiring a paid invoice) need their own scopes
    assert checked.missing == ("user:invoices:write", "user:credit_notes:read", "user:credit_notes:write")
    assert "broker connectors authorize freshbooks" in str(checked)
    # the lookup (user:invoices:read) passes; the create is refused
    assert refused.http_status == 403 and "lacks the scope user:invoices:write" in str(refused)
    assert emu.invoices() == []


def test_authorize_flow_stores_tokens_the_connector_then_uses(emulators, monkeypatch):
    import threading

    import httpx

    from connectors.sdk.oauth2 import authorization_code_flow

    emu = emulators()
    monkeypatch.setenv("FRESHBOOKS_CLIENT_SECRET", SECRET)
    monkeypatch.delenv("FRESHBOOKS_REFRESH_TOKEN", raising=False)
    store = STORES[emu.url]

    def browser(url: str) -> None:
        threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=5), daemon=True).start()

    async def go(c: FreshBooksConnector):
        config = c.oauth2_config()
        assert config.auth_method == "post" and "user:invoices:write" in config.scopes
        result = await authorization_code_flow(config, store, show_url=browser, open_browser=False, timeout=10)
        await c.check()
        return result, await c.deliver(make_invoice())

    result, delivered = run(with_connector(settings_for(emu, authorize_url=f"{emu.url}/oauth/authorize"), go))
    assert result.tokens.refresh_token is not None and delivered.created and emu.refresh_token_uses == []


# --------------------------------------------------------------------------- lifecycle
REV2_KEY = "acme:wo:ACME-WO-1-R1:r2"
ISSUED = date(2026, 3, 9)
CREDITS = f"/accounting/account/{ACCOUNT}/credit_notes/credit_notes"


def retire(c: FreshBooksConnector, previous: ExternalInvoice, reason: str = "replaced by ACME-WO-1-R2"):
    return c.retire(previous, key=REV2_KEY, reason=reason, issued=ISSUED)


def plant(emu: FreshBooksEmulator, amount: str, number: str = "ACME-WO-1-R1") -> dict:
    line_doc = {"name": "Service", "qty": 1, "unit_cost": {"amount": amount, "code": "EUR"}}
    doc = {"customerid": 31007, "create_date": "2026-03-02", "invoice_number": number, "notes": "typed by hand"}
    return emu.plant_invoice(ACCOUNT, {**doc, "lines": [line_doc]})


@pytest.mark.parametrize(("status", "previous_status"), [("sent", "sent"), ("draft", "draft")])
def test_retire_deletes_an_unpaid_invoice_once(emulators, secrets_env, status, previous_status):
    emu = emulators()

    async def go(c: FreshBooksConnector):
        first = await c.deliver(make_invoice())
        previous = ExternalInvoice(first.external_id, first.external_number)
        return first, await retire(c, previous), await retire(c, previous)

    first, deleted, again = run(with_connector(settings_for(emu, invoice_status=status), go))
    assert deleted == Retirement("deleted", "ACME-WO-1-R1", previous_status)
    assert again == Retirement("none", "ACME-WO-1-R1", "deleted")
    [held] = emu.invoices(ACCOUNT)
    assert (str(held["invoiceid"]), held["vis_state"], held["amount"]["amount"]) == (first.external_id, 1, "209.41")
    assert emu.credit_notes(ACCOUNT) == [] and emu.balance(ACCOUNT) == D("0.00")
    ident = f"{INVOICES}/{first.external_id}"
    assert api_calls(emu)[-4:] == [
        ("GET", ident, 200),
        ("GET", CREDITS, 200),  # no credit note ACME-WO-1-R1-CN among the client's
        ("PUT", ident, 200),  # {"invoice": {"vis_state": 1}}
        ("GET", ident, 200),  # the repeat sees it deleted and stops
    ]


def test_retire_credits_a_paid_invoice_in_full_and_reuses_the_credit_note(emulators, secrets_env):
    emu = emulators()
    first = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    emu.pay(ACCOUNT, first.external_id, D("100.00"))  # 209.41 - 100.00 = 109.41 outstanding
    previous = ExternalInvoice(first.external_id, first.external_number)
    credited = run(with_connector(settings_for(emu), lambda c: retire(c, previous)))
    [note] = emu.credit_notes(ACCOUNT)
    assert credited == Retirement(
        "credited",
        "ACME-WO-1-R1",
        "partial",
        paid=D("100.00"),
        credit_note_id=str(note["creditid"]),
        credit_note_number="ACME-WO-1-R1-CN",
        credit_note_total=D("209.41"),
    )
    assert (note["credit_number"], note["amount"]["amount"], note["create_date"], note["clientid"]) == (
        "ACME-WO-1-R1-CN",
        "209.41",
        "2026-03-09",
        31007,
    )
    assert (
        note["notes"]
        == "Credit note for invoice ACME-WO-1-R1: replaced by ACME-WO-1-R2\nbroker:acme:wo:ACME-WO-1-R1:r1"
    )
    assert [(ln["amount"]["amount"], ln["taxAmount1"]) for ln in note["lines"]] == [("136.50", "23"), ("33.75", "23")]
    [held] = emu.invoices(ACCOUNT)
    assert (held["vis_state"], held["outstanding"]["amount"]) == (0, "109.41")  # a paid invoice is never deleted
    # 109.41 outstanding - 209.41 credit = -100.00: the money received is owed back
    assert emu.balance(ACCOUNT) == D("-100.00")
    calls_before = len(api_calls(emu))
    again = run(with_connector(settings_for(emu), lambda c: retire(c, previous, "cancelled")))
    assert again == Retirement("none", "ACME-WO-1-R1", "partial", details={"credit_note_number": "ACME-WO-1-R1-CN"})
    assert [m for m, _, _ in api_calls(emu)[calls_before:]] == ["GET", "GET"]  # the invoice, the credit notes
    assert len(emu.credit_notes(ACCOUNT)) == 1


def test_retire_after_a_lost_credit_note_answer_finds_the_note(emulators, secrets_env):
    emu = emulators(hang_seconds=2)
    first = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    emu.pay(ACCOUNT, first.external_id)
    previous = ExternalInvoice(first.external_id, first.external_number)
    emu.inject_fault("timeout_after_commit")

    async def go(c: FreshBooksConnector):
        with pytest.raises(UncertainOutcomeError):
            await retire(c, previous)  # the credit note is stored, its answer lost
        return await retire(c, previous)

    again = run(with_connector(settings_for(emu, timeout_seconds=0.5), go))
    assert again == Retirement("none", "ACME-WO-1-R1", "paid", details={"credit_note_number": "ACME-WO-1-R1-CN"})
    assert [n["amount"]["amount"] for n in emu.credit_notes(ACCOUNT)] == ["209.41"]
    assert emu.balance(ACCOUNT) == D("-209.41")


def test_a_foreign_invoice_under_our_number_is_never_adopted_nor_retired(emulators, secrets_env):
    emu = emulators()
    foreign = plant(emu, "999.00")

    async def go(c: FreshBooksConnector):
        with pytest.raises(NumberConflictError) as looked_up:
            await c.deliver(make_invoice())
        real_find = c._find_entity
        calls = []

        async def race(number: str):  # the first lookup runs before the foreign invoice lands
            calls.append(number)
            return None if len(calls) == 1 else await real_find(number)

        c._find_entity = race  # type: ignore[method-assign]
        with pytest.raises(NumberConflictError) as raced:
            await c.deliver(make_invoice())
        c._find_entity = real_find  # type: ignore[method-assign]
        with pytest.raises(NumberConflictError) as retiring:
            await retire(c, ExternalInvoice("", "ACME-WO-1-R1", D("209.41")))
        return looked_up.value, raced.value, retiring.value

    looked_up, raced, retiring = run(with_connector(settings_for(emu), go))
    for exc in (looked_up, raced):
        assert (exc.number, exc.ours, exc.theirs, exc.external_id) == (
            "ACME-WO-1-R1",
            D("209.41"),
            D("999.00"),
            str(foreign["invoiceid"]),
        )
        assert "999.00" in str(exc) and "209.41" in str(exc)
    assert "found after FreshBooks refused the number as taken" in str(raced)
    assert (retiring.ours, retiring.theirs) == (D("209.41"), D("999.00"))
    [held] = emu.invoices(ACCOUNT)
    assert (held["invoiceid"], held["amount"]["amount"], held["vis_state"], held["notes"]) == (
        foreign["invoiceid"],
        "999.00",
        0,
        "typed by hand",
    )


def test_a_foreign_credit_note_under_our_credit_number_is_a_conflict(emulators, secrets_env):
    emu = emulators()
    first = run(with_connector(settings_for(emu), lambda c: c.deliver(make_invoice())))
    emu.pay(ACCOUNT, first.external_id)
    with emu._lock:  # typed in FreshBooks' UI: same number, no marker, 5.00
        emu._create_credit_note(
            ACCOUNT,
            emu._accounts[ACCOUNT],
            {
                "clientid": 31007,
                "credit_number": "ACME-WO-1-R1-CN",
                "lines": [{"name": "Goodwill", "qty": 1, "unit_cost": {"amount": "5.00", "code": "EUR"}}],
            },
        )
    previous = ExternalInvoice(first.external_id, first.external_number)

    async def go(c: FreshBooksConnector):
        with pytest.raises(NumberConflictError) as info:
            await retire(c, previous)
        return info.value

    exc = run(with_connector(settings_for(emu), go))
    assert (exc.number, exc.ours, exc.theirs) == ("ACME-WO-1-R1-CN", D("209.41"), D("5.00"))
    assert "marker None (ours 'acme:wo:ACME-WO-1-R1:r1')" in str(exc)
    assert [n["amount"]["amount"] for n in emu.credit_notes(ACCOUNT)] == ["5.00"]
    assert emu.invoices(ACCOUNT)[0]["vis_state"] == 0


def test_retire_of_an_absent_invoice_does_nothing(emulators, secrets_env):
    emu = emulators()

    async def go(c: FreshBooksConnector):
        return await retire(c, ExternalInvoice("12345", "NOPE-1")), await retire(c, ExternalInvoice("", "NOPE-1"))

    by_id, by_number = run(with_connector(settings_for(emu), go))
    assert by_id == by_number == Retirement("none", "NOPE-1")


def test_amend_deletes_then_delivers_the_new_revision_with_legal_notes(emulators, secrets_env):
    emu = emulators()
    rev2 = make_invoice("ACME-WO-1-R2").model_copy(
        update={"invoice_key": REV2_KEY, "revision": 2, "legal_notes": ["Isento de IVA (art. 9.º CIVA)"]}
    )

    async def go(c: FreshBooksConnector):
        first = await c.deliver(make_invoice())
        return await c.amend(rev2, ExternalInvoice(first.external_id, first.external_number))

    amended = run(with_connector(settings_for(emu), go))
    assert amended.created is True and amended.external_number == "ACME-WO-1-R2"
    assert {k: amended.details[k] for k in ("amendment", "previous_number", "previous_status")} == {
        "amendment": "deleted",
        "previous_number": "ACME-WO-1-R1",
        "previous_status": "sent",
    }
    active = emu.invoices(ACCOUNT, include_deleted=False)
    assert [(i["invoice_number"], i["notes"]) for i in active] == [
        ("ACME-WO-1-R2", "Isento de IVA (art. 9.º CIVA)\nbroker:acme:wo:ACME-WO-1-R1:r2")
    ]
    assert emu.balance(ACCOUNT) == D("209.41")
