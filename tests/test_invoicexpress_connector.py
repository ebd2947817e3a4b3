"""InvoiceXpressConnector against the InvoiceXpress emulator on loopback (real HTTP, no mocks).

Covers what the conformance kit does not: the draft -> finalise -> e-mail flow resumed after each step
is lost, the draft total checked before finalising (including the silent default-tax fallback), both
VAT rounding methods, client lookups when creation is off, exact reference matching across listing
pages, e-mail failures that must not undo an issued invoice, and the API key kept out of logs.
Money values are computed by hand in the comments.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from decimal import Decimal as D
from types import SimpleNamespace

import pytest

from connectors.invoicexpress import InvoiceXpressConnector
from connectors.invoicexpress.emulator import InvoiceXpressEmulator, default_accounts
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

KEY = "ix-api-KEY-0123456789abcdef"


@pytest.fixture
def emulators():
    started: list[InvoiceXpressEmulator] = []

    def make(**kwargs) -> InvoiceXpressEmulator:
        accounts = default_accounts()
        accounts["acme-demo"]["api_key"] = KEY
        kwargs.setdefault("accounts", accounts)
        kwargs.setdefault("hang_seconds", 1.0)
        emu = InvoiceXpressEmulator(**kwargs).start()
        started.append(emu)
        return emu

    yield make
    for emu in started:
        emu.stop()
        assert emu.server_errors == []


@pytest.fixture(autouse=True)
def key_env(monkeypatch):
    monkeypatch.setenv("INVOICEXPRESS_API_KEY", KEY)


def settings_for(emu, **overrides) -> dict:
    return {
        "api_url": emu.api_url,
        "account_name": "acme-demo",
        "api_key_env": "INVOICEXPRESS_API_KEY",
        "tax_exemption": "M07",
        **overrides,
    }


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


def make_invoice(
    number="ACME-WO-1-R1",
    lines=None,
    *,
    client_id="CLI-HAL",
    client_name="Hotel Atlântico Lisboa, S.A.",
    contact_id=None,
) -> Invoice:
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
        billing_system="invoicexpress",
        event_id="e1",
        event_type="maintenance.work_order.completed",
        event_time=datetime(2026, 3, 2, 10, tzinfo=UTC),
        document="wo",
        document_id=number,
        revision=1,
        client_id=client_id,
        client_name=client_name,
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


THREE = [line(f"Article {n}", "1", "2.37", "2.37", "23", "0.55", "2.92", kind="part") for n in range(3)]  # ours 8.76


def run(emu, fn, clients=None, **overrides):
    async def go():
        connector = InvoiceXpressConnector(settings_for(emu, **overrides), tenant="acme")
        connector.clients = clients or {}
        try:
            return await fn(connector)
        finally:
            await connector.aclose()

    return asyncio.run(go())


async def raises(exc_type, coro):
    with pytest.raises(exc_type) as info:
        await coro
    return info.value


def ops(emu) -> list[str]:
    return [f"{m} {p.split('/', 2)[2]}" for m, p, _ in emu.calls if not p.startswith("/_emulator")]


# --------------------------------------------------------------------------- the flow
def test_deliver_creates_verifies_finalizes_and_emails(emulators):
    emu = emulators()

    async def go(c):
        await c.check()
        return await c.deliver(make_invoice())

    result = run(emu, go, send_email=True)
    assert result.created and result.external_number == "1/2026" and result.details["atcud"] == "JFK15355-1"
    assert (
        result.details["steps"] == ["created draft", "finalized"]
        and result.details["email"] == "sent to contas@hotel-atlantico.example"
    )
    [doc] = emu.invoices()
    # sum 136.50 + 37.50 = 174.00, discount 3.75, before taxes 170.25, VAT 39.16, total 209.41
    assert (doc["sum"], doc["discount"], doc["before_taxes"], doc["taxes"], doc["total"]) == (
        D("174.00"),
        D("3.75"),
        D("170.25"),
        D("39.16"),
        D("209.41"),
    )
    assert doc["status"] == "final" and doc["reference"] == "ACME-WO-1-R1" and doc["client"]["code"] == "CLI-HAL"
    assert emu.emails == [
        {
            "invoice_id": doc["id"],
            "email": "contas@hotel-atlantico.example",
            "subject": "Fatura 1/2026",
            "body": "Segue em anexo a fatura 1/2026 (ACME-WO-1-R1).",
        }
    ]
    assert ops(emu) == [
        "GET sequences.json",
        "GET invoices.json",
        "POST invoices.json",
        f"PUT invoices/{doc['id']}/change-state.json",
        f"PUT invoices/{doc['id']}/email-document.json",
    ]


def test_redelivery_finds_the_final_invoice_and_sends_no_second_email(emulators):
    emu = emulators()

    async def go(c):
        first = await c.deliver(make_invoice())
        return first, await c.deliver(make_invoice()), await c.find("ACME-WO-1-R1")

    first, second, found = run(emu, go, send_email=True)
    assert (
        second.created is False
        and second.external_id == first.external_id
        and second.details["steps"] == ["found final"]
    )
    assert found.status == "final" and found.total == D("209.41") and found.number == "1/2026"
    assert len(emu.invoices()) == 1 and len(emu.emails) == 1


def test_draft_mode(emulators):
    emu = emulators()

    async def go(c):
        return await c.deliver(make_invoice()), await c.find("ACME-WO-1-R1")

    result, found = run(emu, go, invoice_status="draft", send_email=True)
    assert result.details["status"] == "draft" and result.external_number == "" and found.status == "draft"
    assert emu.emails == []


def test_lost_create_leaves_a_draft_that_the_next_delivery_finalizes(emulators):
    emu = emulators()
    emu.inject_fault("timeout_after_commit", only="create")

    async def go(c):
        await raises(UncertainOutcomeError, c.deliver(make_invoice()))
        held = emu.invoices()
        return held, await c.find("ACME-WO-1-R1"), await c.deliver(make_invoice())

    held, found, again = run(emu, go, timeout_seconds=0.3)
    assert [d["status"] for d in held] == ["draft"] and found is None
    assert (
        again.created is False
        and again.external_id == str(held[0]["id"])
        and again.details["steps"] == ["found draft", "finalized"]
    )
    assert [d["status"] for d in emu.invoices()] == ["final"]


def test_lost_finalize_is_reconciled_by_find(emulators):
    emu = emulators()
    emu.inject_fault("drop_after_commit", only="change_state")

    async def go(c):
        await raises(UncertainOutcomeError, c.deliver(make_invoice()))
        return await c.find("ACME-WO-1-R1"), await c.deliver(make_invoice())

    found, again = run(emu, go)
    assert found.status == "final" and again.external_id == found.external_id and again.created is False


def test_finalizing_an_invoice_already_final_counts_as_done(emulators):
    emu = emulators()

    async def go(c):
        draft = await c.deliver(make_invoice())
        await c._change_state(int(draft.external_id), "finalized", "direct")
        return await c._finalize(int(draft.external_id), "again")

    doc = run(emu, go, invoice_status="draft")
    assert doc["status"] == "final" and doc["sequence_number"] == "1/2026"
    assert ops(emu)[-2:] == [f"PUT invoices/{doc['id']}/change-state.json", f"GET invoices/{doc['id']}.json"]


# --------------------------------------------------------------------------- totals
def test_draft_with_another_total_is_deleted_vat_per_document(emulators):
    emu = emulators(rounding_method="document")
    exc = run(emu, lambda c: raises(PermanentError, c.deliver(make_invoice(lines=THREE))))
    assert "computed a total of 8.75" in str(exc) and "ours is 8.76" in str(exc) and "deleted" in str(exc)
    assert emu.invoices() == [] and len(emu.invoices(include_deleted=True)) == 1
    refused = run(
        emu,
        lambda c: raises(PermanentError, c.deliver(make_invoice("ACME-WO-2-R1", THREE))),
        rounding_method="document",
    )
    assert "would compute a total of 8.75" in str(refused) and "nothing was sent" in str(refused)


def test_unknown_tax_name_falling_back_to_the_default_is_caught_before_finalizing(emulators):
    emu = emulators()
    reduced = make_invoice(lines=[line("Travel", "1", "30.00", "30.00", "13", "3.90", "33.90", kind="travel")])
    exc = run(emu, lambda c: raises(PermanentError, c.deliver(reduced)), tax_names={"23": "IVA23", "13": "IVA13-TYPO"})
    # InvoiceXpress silently used IVA23: 30.00 + 6.90 = 36.90 instead of 33.90
    assert "computed a total of 36.90" in str(exc) and "ours is 33.90" in str(exc)
    assert emu.invoices() == []


def test_zero_rate_line_needs_tax_exemption_before_any_call(emulators):
    emu = emulators()
    exempt = make_invoice(lines=[line("Waste fee", "1", "12.50", "12.50", "0", "0.00", "12.50", kind="expense")])
    exc = run(emu, lambda c: raises(PermanentError, c.deliver(exempt)), tax_exemption=None)
    assert "line 1 ('Waste fee')" in str(exc) and "tax_exemption" in str(exc) and emu.calls == []
    result = run(emu, lambda c: c.deliver(exempt))
    assert emu.invoices()[0]["tax_exemption"] == "M07" and result.details["total"] == "12.50"


# --------------------------------------------------------------------------- lookups and clients
def test_lookup_matches_the_reference_exactly_across_pages(emulators):
    emu = emulators()

    async def go(c):
        for n in range(10, 40):  # ACME-WO-1-R110 ... ACME-WO-1-R139 all contain "ACME-WO-1-R1"
            await c.deliver(make_invoice(f"ACME-WO-1-R1{n}", [line("L", "1", "10.00", "10.00", "23", "2.30", "12.30")]))
        before = len(ops(emu))
        absent = await c.find("ACME-WO-1-R1")
        pages = ops(emu)[before:]
        target = await c.deliver(make_invoice("ACME-WO-1-R1"))
        return absent, pages, target, await c.find("ACME-WO-1-R1")

    absent, pages, target, found = run(emu, go, invoice_status="draft")
    assert absent is None and pages == ["GET invoices.json", "GET invoices.json"]  # 30 text matches, 25 per page
    assert found.external_id == target.external_id and target.created is True


def test_clients_must_exist_when_creation_is_off(emulators):
    emu = emulators()
    by_name = make_invoice("ACME-WO-2-R1", client_id="CLI-OTHER")  # the name matches the seeded CLI-HAL client
    stranger = make_invoice("ACME-WO-3-R1", client_id="CLI-NEW", client_name="Oficina Nova, Lda.")

    async def go(c):
        found = await c.deliver(by_name)
        return found, await raises(PermanentError, c.deliver(stranger))

    _found, exc = run(emu, go, create_clients=False)
    assert emu.invoices()[0]["client"]["code"] == "CLI-HAL"
    assert "client CLI-NEW (Oficina Nova, Lda.)" in str(exc) and "create_clients" in str(exc)
    created = run(
        emu,
        lambda c: c.deliver(stranger),
        clients={"CLI-NEW": SimpleNamespace(email="geral@oficina.example", tax_number="500000018")},
    )
    assert created.created and emu.clients()[-1] | {"id": 0} == {
        "id": 0,
        "name": "Oficina Nova, Lda.",
        "code": "CLI-NEW",
        "email": "geral@oficina.example",
        "fiscal_id": "500000018",
    }


# --------------------------------------------------------------------------- e-mail
def test_email_failure_never_undoes_the_issued_invoice(emulators):
    emu = emulators()
    emu.inject_fault("503", 1, only="email")
    once = run(emu, lambda c: c.deliver(make_invoice()), send_email=True)
    assert once.details["email"] == "sent to contas@hotel-atlantico.example"  # retried once
    emu.inject_fault("503", 2, only="email")
    twice = run(emu, lambda c: c.deliver(make_invoice("ACME-WO-2-R1")), send_email=True)
    assert twice.details["email"].startswith("failed: ") and twice.details["status"] == "final"
    nobody = run(
        emu,
        lambda c: c.deliver(make_invoice("ACME-WO-3-R1", client_id="CLI-Z", client_name="Sem Email")),
        send_email=True,
    )
    assert nobody.details["email"] == "skipped: no e-mail address for the client"
    assert len(emu.emails) == 1 and [d["status"] for d in emu.invoices()] == ["final"] * 3


# --------------------------------------------------------------------------- errors and auth
def test_422_is_permanent_with_invoicexpress_messages(emulators):
    emu = emulators()
    late = make_invoice().model_copy(update={"due_date": date(2026, 3, 1)})
    exc = run(emu, lambda c: raises(PermanentError, c.deliver(late)))
    assert exc.http_status == 422 and "Due date must be on or after the date" in str(exc)


def test_503_and_429(emulators):
    emu = emulators()
    emu.inject_fault("503", only="create")
    assert run(emu, lambda c: raises(RetryableError, c.deliver(make_invoice()))).http_status == 503
    emu.inject_fault("429", retry_after=9)
    exc = run(emu, lambda c: raises(RateLimitedError, c.deliver(make_invoice())))
    assert exc.retry_after == 9 and "100 requests/minute" in str(exc) and emu.invoices() == []


def test_bad_key_missing_key_unknown_account_and_sequence(emulators, monkeypatch):
    emu = emulators()
    monkeypatch.setenv("INVOICEXPRESS_API_KEY", "WRONG-key-987654321")
    exc = run(emu, lambda c: raises(AuthError, c.check()))
    assert exc.http_status == 401 and "INVOICEXPRESS_API_KEY" in str(exc) and "WRONG-key-987654321" not in str(exc)
    monkeypatch.delenv("INVOICEXPRESS_API_KEY")
    assert "INVOICEXPRESS_API_KEY" in str(run(emu, lambda c: raises(ConfigError, c.check())))
    monkeypatch.setenv("INVOICEXPRESS_API_KEY", KEY)
    assert "no-such" in str(run(emu, lambda c: raises(UnknownAccountError, c.check()), account_name="no-such"))
    exc = run(emu, lambda c: raises(ConfigError, c.check()), sequence_id="42")
    assert "sequence_id 42" in str(exc) and "1115355" in str(exc)
    with pytest.raises(ConfigError) as info:
        InvoiceXpressConnector({"account_name": "Acme Demo", "api_key_env": "K"}, tenant="t")
    assert "billing.settings.account_name" in str(info.value)


def test_api_key_never_reaches_the_logs(emulators, caplog):
    emu = emulators()
    caplog.set_level(logging.DEBUG)
    run(emu, lambda c: c.deliver(make_invoice()))
    assert "api_key=***" in caplog.text and KEY not in caplog.text


# --------------------------------------------------------------------------- ownership and the lifecycle
# The standard invoice: before taxes 170.25 + VAT 39.16 = 209.41 (see make_invoice).
def retire(c, result, *, key="acme:wo:ACME-WO-1-R1:r2", reason="replaced by ACME-WO-1-R2"):
    previous = ExternalInvoice(result.external_id, result.external_number)
    return c.retire(previous, key=key, reason=reason, issued=date(2026, 3, 5))


def test_find_reads_back_our_marker_the_total_and_payments(emulators):
    emu = emulators()
    result = run(emu, lambda c: c.deliver(make_invoice()))
    [doc] = emu.invoices()
    assert doc["observations"] == "WO ACME-WO-1-R1\nbroker:acme:wo:ACME-WO-1-R1:r1"
    emu.mark_paid(int(result.external_id), D("9.41"))
    found = run(emu, lambda c: c.find("ACME-WO-1-R1"))
    assert (found.marker, found.total, found.paid, found.status) == (
        "acme:wo:ACME-WO-1-R1:r1",
        D("209.41"),
        D("9.41"),
        "final",
    )
    emu.mark_paid(int(result.external_id))
    settled = run(emu, lambda c: c.find("ACME-WO-1-R1"))
    assert (settled.paid, settled.status) == (D("209.41"), "settled")


def test_a_foreign_invoice_under_our_number_is_a_number_conflict_and_nothing_changes(emulators):
    emu = emulators()
    foreign = emu.plant_foreign(
        "ACME-WO-1-R1", D("999.00"), client={"name": "Hotel Atlântico Lisboa, S.A.", "code": "CLI-HAL"}
    )
    before = emu.invoices()
    exc = run(emu, lambda c: raises(NumberConflictError, c.deliver(make_invoice())))
    assert exc.error_class == "number_conflict" and exc.external_id == str(foreign)
    assert (exc.ours, exc.theirs) == (D("209.41"), D("999.00"))
    assert "999.00" in str(exc) and "209.41" in str(exc) and "does not carry our marker" in str(exc)
    assert emu.invoices() == before and emu.credit_notes() == []
    assert [o for o in ops(emu) if not o.startswith("GET")] == []


def test_retire_deletes_a_draft_and_a_repeat_changes_nothing(emulators):
    emu = emulators()

    async def go(c):
        result = await c.deliver(make_invoice())
        return result, await retire(c, result), await retire(c, result)

    result, first, again = run(emu, go, invoice_status="draft")
    assert (first.action, first.previous_status, first.details) == (
        "deleted",
        "draft",
        {"previous_reference": "ACME-WO-1-R1"},
    )
    assert (again.action, again.details) == ("none", {"invoicexpress": "not found"})
    assert emu.invoices() == [] and emu.credit_notes() == []
    assert [d["status"] for d in emu.invoices(include_deleted=True)] == ["deleted"]
    assert ops(emu).count(f"PUT invoices/{result.external_id}/change-state.json") == 1


def test_retire_credits_a_final_invoice_in_full_once(emulators):
    emu = emulators()

    async def go(c):
        result = await c.deliver(make_invoice())
        return result, await retire(c, result), await retire(c, result, key="acme:wo:ACME-WO-1:cancel")

    result, credited, again = run(emu, go)
    [note] = emu.credit_notes()
    assert (credited.action, credited.previous_number, credited.previous_status) == ("credited", "1/2026", "final")
    assert (credited.credit_note_id, credited.credit_note_number) == (str(note["id"]), "ACME-WO-1-R1-CN")
    assert (credited.credit_note_total, credited.paid) == (D("209.41"), None)
    assert (note["status"], note["type"], note["sequence_number"], note["date"]) == (
        "final",
        "CreditNote",
        "1/2026",
        "05/03/2026",
    )
    assert (note["owner_invoice_id"], note["total"], note["reference"]) == (
        int(result.external_id),
        D("209.41"),
        "ACME-WO-1-R1-CN",
    )
    assert note["observations"] == "replaced by ACME-WO-1-R2\nbroker:acme:wo:ACME-WO-1-R1:r2"
    assert [i["description"] for i in note["items"]] == ["HVAC labour", "Contactor 25A"]
    [invoice] = emu.invoices()
    assert invoice["status"] == "final" and emu.balance() == D("0.00")  # never canceled
    assert (again.action, again.credit_note_id, again.details["invoicexpress"]) == (
        "none",
        credited.credit_note_id,
        "credit note already issued",
    )
    assert ops(emu).count("POST credit_notes.json") == 1


def test_retire_credits_a_settled_invoice_and_reports_the_payment(emulators):
    emu = emulators()
    result = run(emu, lambda c: c.deliver(make_invoice()))
    emu.mark_paid(int(result.external_id))
    credited = run(emu, lambda c: retire(c, result))
    assert (credited.action, credited.previous_status, credited.paid) == ("credited", "settled", D("209.41"))
    [invoice] = emu.invoices()
    assert invoice["status"] == "settled" and emu.balance() == D("-209.41")  # the payment is owed back


def test_a_credit_note_created_but_not_finalized_is_finalized_by_the_next_retire(emulators):
    emu = emulators()

    async def go(c):
        result = await c.deliver(make_invoice())
        emu.inject_fault("drop_after_commit", only="credit_note_create")
        exc = await raises(UncertainOutcomeError, retire(c, result))
        left = emu.credit_notes()
        return exc, left, await retire(c, result)

    exc, left, again = run(emu, go)
    assert "credit_notes.json" in str(exc) and [n["status"] for n in left] == ["draft"]
    [note] = emu.credit_notes()
    assert (again.action, again.credit_note_id, note["status"]) == ("credited", str(left[0]["id"]), "final")
    assert emu.balance() == D("0.00")


def test_a_credit_note_of_another_invoice_under_our_reference_is_a_number_conflict(emulators):
    emu = emulators()
    hal = {"name": "Hotel Atlântico Lisboa, S.A.", "code": "CLI-HAL"}
    other = emu.plant_foreign("SOMEONE-ELSES", D("50.00"), client=hal)

    async def go(c):
        result = await c.deliver(make_invoice())
        body = {
            "invoice": {
                "date": "05/03/2026",
                "due_date": "05/03/2026",
                "reference": "ACME-WO-1-R1-CN",
                "client": hal,
                "items": [{"name": "Acerto", "unit_price": "50.00", "quantity": "1", "tax": {"name": "IVA0"}}],
                "tax_exemption": "M07",
                "owner_invoice_id": other,
            }
        }
        await c._call("POST", "/credit_notes.json", "plant", body=body)
        return await raises(NumberConflictError, retire(c, result))

    exc = run(emu, go)
    assert (exc.number, exc.ours, exc.theirs) == ("ACME-WO-1-R1-CN", D("209.41"), D("50.00"))
    assert [n["status"] for n in emu.credit_notes()] == ["draft"] and emu.balance() == D("259.41")
