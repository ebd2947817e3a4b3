"""A refused refresh token (``invalid_grant``) parks the tenant's invoices as ``needs_reauth`` instead of
dead-lettering them one by one, and `authorize` brings them back (broker.delivery.policy, Deliverer).

The deliverer runs the real Xero connectors of the bundled example config (acme-fm and nordic-hvac: two
organisations on one Xero connection) against the emulator; the token store is the per-test file store.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import httpx
import pytest
from prometheus_client import REGISTRY

from broker.config import load_config
from broker.delivery import Dead, Delivered, Deliverer, DictLedgerStore, InvoiceLedger, Park, RecordMeta
from broker.settings import DeliverySettings
from connectors.sdk.errors import ReauthRequiredError
from connectors.sdk.oauth2 import authorization_code_flow, default_token_store
from tests.conftest import DEMO_SECRETS, write_config
from tests.test_delivery_units import ScriptedConnector, deliverer_with
from tests.test_xero_connector import line, make_invoice

ACME_ORG = "00000000-0000-0000-0000-000000000001"
NORDIC_ORG = "00000000-0000-0000-0000-000000000002"
ACME_CONTACT = "3f1c2a10-5b1e-4c7a-9d01-000000000101"  # CLI-HAL of the example config
NORDIC_CONTACT = "7a0d4e22-9c3b-4f60-8e12-000000000201"  # CLI-TGO
META = RecordMeta("billing.invoices", 0, 7)
POLICY = DeliverySettings(retry_budget=0.5, retry_initial=0.01, retry_max=0.02, park_delays=(1.0, 5.0))


def gauge(state: str, system: str = "xero") -> float | None:
    return REGISTRY.get_sample_value("broker_tenants_auth_state", {"billing_system": system, "state": state})


def browser(url: str) -> None:
    """What the user's browser does: open the consent page, follow the redirect to the loopback server."""
    threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=10), daemon=True).start()


@pytest.fixture
def deliverer(xero, tmp_path, monkeypatch):
    for name, value in DEMO_SECRETS.items():
        monkeypatch.setenv(name, value)
    d = Deliverer(load_config(write_config(tmp_path, xero.url)), POLICY)
    yield d
    asyncio.run(d.aclose())


def test_revoked_token_parks_four_invoices_after_one_token_call_and_authorize_resumes_them(xero, deliverer):
    d = deliverer
    ledger = InvoiceLedger(DictLedgerStore())
    acme = [make_invoice(f"ACME-WO-{n}-R1", tenant="acme-fm", contact_id=ACME_CONTACT) for n in range(5)]
    # nordic-hvac bills UK VAT 20 %: 2 h x 45.00 = 90.00; 20 % of 90.00 = 18.00
    labour = line("HVAC labour (Oliver Grant)", "2", "45.00", "90.00", "20", "18.00", "108.00")
    totals = {"net": "90.00", "tax": "18.00", "total": "108.00"}
    nordic = make_invoice("NHV-WO-1-R1", tenant="nordic-hvac", contact_id=NORDIC_CONTACT, lines=[labour], **totals)
    assert (gauge("ok"), gauge("needs_reauth")) == (2, 0)

    async def scenario() -> None:
        assert isinstance(await d.process(acme[0], ledger, META), Delivered)  # tokens work and are stored
        xero.revoke_connection()  # the user disconnected the app in Xero
        calls, uses = len(xero.calls), len(xero.refresh_token_uses)

        parked = [await d.process(inv, ledger, META) for inv in acme[1:]]
        assert [type(p).__name__ for p in parked] == ["Park"] * 4  # none dead-lettered
        assert {p.reason for p in parked} == {"needs_reauth"}
        assert [p.attempted for p in parked] == [True, False, False, False]
        assert {(p.level, p.meta.parks) for p in parked} == {(1, 1)}
        assert all(isinstance(p.error, ReauthRequiredError) for p in parked)
        assert all(0.5 < p.due - time.time() <= 1.0 for p in parked)  # the first park delay
        assert len(xero.refresh_token_uses) == uses + 1  # one token call for four invoices
        assert xero.calls[calls:] == [("PUT", "/api.xro/2.0/Invoices", 401), ("POST", "/connect/token", 400)]
        state = d.state("acme-fm")
        assert isinstance(state.needs_reauth, ReauthRequiredError) and state.fatal is None
        assert state.needs_reauth.error_class == "needs_reauth"
        assert (gauge("ok"), gauge("needs_reauth")) == (1, 1)

        # the other tenant of the connection finds the refusal in the shared store: no call at all
        held = await d.process(nordic, ledger, META)
        assert isinstance(held, Park) and held.reason == "needs_reauth"
        assert len(xero.calls) == calls + 2 and len(xero.refresh_token_uses) == uses + 1
        assert (gauge("ok"), gauge("needs_reauth")) == (0, 2)

        # a parked invoice comes due, nothing was re-authorised: parked again (next level), no call
        again = await d.process(acme[1], ledger, parked[0].meta)
        assert isinstance(again, Park) and not again.attempted and (again.level, again.meta.parks) == (2, 2)
        assert len(xero.calls) == calls + 2

        # `broker connectors authorize xero --tenant acme-fm` stores new tokens for the connection
        oauth = d.connector("acme-fm").oauth2_config()
        assert oauth is not None
        oauth = replace(oauth, authorize_url=f"{xero.url}/identity/connect/authorize")  # the emulator's consent page
        await authorization_code_flow(oauth, default_token_store(), show_url=browser, open_browser=False, timeout=20)
        uses = len(xero.refresh_token_uses)

        # the parked-retry path: each invoice comes due again and is delivered
        resumed = [await d.process(inv, ledger, p.meta) for inv, p in zip(acme[1:], [again, *parked[1:]], strict=True)]
        resumed.append(await d.process(nordic, ledger, held.meta))
        assert [type(r).__name__ for r in resumed] == ["Delivered"] * 5
        assert len(xero.refresh_token_uses) == uses  # the authorised access token was still fresh
        assert d.state("acme-fm").needs_reauth is None and d.state("nordic-hvac").needs_reauth is None
        assert (gauge("ok"), gauge("needs_reauth")) == (2, 0)

    asyncio.run(scenario())
    assert sorted(i["InvoiceNumber"] for i in xero.invoices(ACME_ORG)) == [f"ACME-WO-{n}-R1" for n in range(5)]
    assert [i["InvoiceNumber"] for i in xero.invoices(NORDIC_ORG)] == ["NHV-WO-1-R1"]


# =========================================================================== the policy with a scripted connector
class ReauthConnector(ScriptedConnector):
    """A scripted connector whose token store answers ``reauth_required()`` with ``self.refused``."""

    def __init__(self, script, refused=None):
        super().__init__(script)
        self.refused = refused
        self.probes = 0

    def reauth_required(self):
        self.probes += 1
        return self.refused


def test_needs_reauth_parks_without_calling_until_the_store_changes_then_clears():
    refusal = ReauthRequiredError("token refresh refused (HTTP 400 invalid_grant)", http_status=400)
    conn = ReauthConnector([refusal, "ok", "ok"], refused=refusal)
    d = deliverer_with(conn)
    ledger = InvoiceLedger(DictLedgerStore())
    first = asyncio.run(d.process(make_invoice("ACME-WO-1-R1"), ledger, META))
    assert isinstance(first, Park) and first.reason == "needs_reauth" and first.attempted
    assert ledger.entry("acme:wo:ACME-WO-1-R1:r1")["error_class"] == "needs_reauth"
    assert (gauge("ok", "fake"), gauge("needs_reauth", "fake")) == (0, 1)
    second = asyncio.run(d.process(make_invoice("ACME-WO-2-R1"), ledger, META))
    assert isinstance(second, Park) and not second.attempted and len(conn.calls) == 1 and conn.probes == 1
    conn.refused = None  # new tokens stored
    assert isinstance(asyncio.run(d.process(make_invoice("ACME-WO-2-R1"), ledger, second.meta)), Delivered)
    assert d._tenants["acme"].needs_reauth is None and len(conn.calls) == 2
    assert (gauge("ok", "fake"), gauge("needs_reauth", "fake")) == (1, 0)


def test_needs_reauth_past_park_max_seconds_is_dead_lettered_as_needs_reauth():
    refusal = ReauthRequiredError("token refresh refused (HTTP 400 invalid_grant)", http_status=400)
    d = deliverer_with(ReauthConnector([refusal], refused=refusal))
    d.policy = DeliverySettings(park_delays=(1.0, 5.0), park_max_seconds=60)
    d._tenants["acme"].needs_reauth = refusal
    meta = RecordMeta("billing.invoices", 0, 1, parks=5, first_failure=time.time() - 59)
    out = asyncio.run(d.process(make_invoice(), InvoiceLedger(DictLedgerStore()), meta))
    assert isinstance(out, Dead) and out.error_class == "needs_reauth" and out.error is refusal
    assert out.http_status == 400
