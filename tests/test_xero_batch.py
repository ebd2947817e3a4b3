"""Xero batch create: up to 50 invoices per PUT with summarizeErrors=false, per-item results."""

from __future__ import annotations

import asyncio

import pytest

from connectors.sdk.errors import PermanentError, RateLimitedError, RetryableError
from connectors.sdk.interface import BatchItem
from connectors.testing.invoices import make_invoice, make_line, mixed_rate_lines, standard_lines
from connectors.xero import XeroConnector

ORG = "00000000-0000-0000-0000-000000000001"
CONTACT = "c0000000-0000-0000-0000-00000000c0de"


@pytest.fixture
def secrets_env(monkeypatch):
    monkeypatch.setenv("XERO_CLIENT_SECRET", "demo-secret")
    monkeypatch.setenv("XERO_REFRESH_TOKEN", "demo-refresh-token")


def connector(emu) -> XeroConnector:
    return XeroConnector(
        {
            "api_url": emu.url,
            "identity_url": emu.url,
            "xero_tenant_id": ORG,
            "client_id": "demo-client",
            "client_secret_env": "XERO_CLIENT_SECRET",
            "refresh_token_env": "XERO_REFRESH_TOKEN",
            "tax_types": {"23": "OUTPUT2", "0": "EXEMPTOUTPUT"},  # no rate has a default TaxType
        },
        tenant="acme",
    )


def inv(n: int, lines=None, **kw):
    return make_invoice(f"ACME-WO-{n}-R1", lines or standard_lines(), tenant="acme", contact_id=CONTACT, **kw)


def many(emu, invoices) -> list[BatchItem]:
    async def go():
        c = connector(emu)
        try:
            return await c.deliver_many(invoices)
        finally:
            await c.aclose()

    return asyncio.run(go())


def seed_contact(emu) -> None:
    """The contact every test invoice names (the emulator checks ContactIDs)."""
    with emu._lock:
        emu._new_contact(ORG, {"Name": "Batch Client"}, contact_id=CONTACT)


def puts(emu) -> list[tuple]:
    return [c for c in emu.calls if c[0] == "PUT" and c[1] == "/api.xro/2.0/Invoices"]


def test_51_invoices_take_two_puts_with_exact_totals(xero, secrets_env):
    seed_contact(xero)
    invoices = [inv(n, [make_line(f"Visit {n}", "1.5", f"{20 + n}.00", "23")]) for n in range(51)]
    items = many(xero, invoices)
    assert [i.invoice_key for i in items] == [i.invoice_key for i in invoices]
    assert all(i.ok and i.result.created for i in items)
    assert len(puts(xero)) == 2  # 50 + 1
    stored = {s["InvoiceNumber"]: s for s in xero.invoices(ORG)}
    for invoice, item in zip(invoices, items, strict=True):
        assert stored[invoice.invoice_number]["Total"] == invoice.total
        assert stored[invoice.invoice_number]["InvoiceID"] == item.result.external_id
    assert items[0].result.details["batch"] is True and items[0].result.details["total_matches"] is True


def test_partial_failure_and_duplicates_in_one_put(xero, secrets_env):
    seed_contact(xero)
    first = many(xero, [inv(1)])[0]
    bad_line = make_line("Labour", "1", "30.00", "23", account_code="999")
    items = many(xero, [inv(2, mixed_rate_lines()), inv(3, [bad_line]), inv(1), inv(4)])
    assert [i.ok for i in items] == [True, False, True, True]
    assert isinstance(items[1].error, PermanentError) and "Account code '999'" in str(items[1].error)
    assert items[2].result.external_id == first.result.external_id and items[2].result.created is False
    assert sorted(s["InvoiceNumber"] for s in xero.invoices(ORG)) == ["ACME-WO-1-R1", "ACME-WO-2-R1", "ACME-WO-4-R1"]


def test_a_failed_call_fails_every_item_of_it(xero, secrets_env):
    seed_contact(xero)
    xero.inject_fault("503")
    items = many(xero, [inv(1), inv(2)])
    assert all(isinstance(i.error, RetryableError) and i.error.http_status == 503 for i in items)
    xero.inject_fault("429")
    items = many(xero, [inv(n) for n in range(60)])  # two chunks: the second is not sent after a 429
    assert all(isinstance(i.error, RateLimitedError) for i in items)
    assert xero.invoices() == []
    items = many(xero, [inv(1), inv(2)])
    assert all(i.ok for i in items)


def test_chunk_of_one_uses_the_same_idempotency_key_as_deliver(xero, secrets_env):
    from connectors.xero import idempotency_key

    seed_contact(xero)
    [item] = many(xero, [inv(7)])
    assert item.result.details["idempotency_key"] == idempotency_key(inv(7), "create")
