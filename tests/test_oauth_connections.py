"""OAuth2 tokens are kept per connection, not per tenant (connectors.sdk.http.HttpConnector.token_connection).

One Xero refresh token covers every organisation the connection reaches; two broker tenants on one
connection must share one TokenSet, one lock and one refresh, or each rotates the single-use token
the other holds (``invalid_grant``). The Xero emulator here refuses a spent refresh token at once
(no grace, its default) and its clock is moved forward 31 minutes between deliveries, past the
30-minute access-token lifetime and past Xero's 30-minute grace period.
"""

from __future__ import annotations

import asyncio
import importlib
import time as _time
from pathlib import Path

import httpx
import pytest

from connectors import registry
from connectors.sdk import oauth2
from connectors.sdk.errors import AuthError, ReauthRequiredError
from connectors.sdk.http import OAuth2Auth
from connectors.sdk.oauth2 import FileTokenStore, MemoryTokenStore, token_key
from connectors.xero import XeroConnector
from connectors.xero.emulator import XeroEmulator
from tests.test_xero_connector import REFRESH, SECRET, make_invoice

ORG_A = "00000000-0000-0000-0000-0000000000a1"
ORG_B = "00000000-0000-0000-0000-0000000000b2"
CONTACT_A = "3f1c2a10-5b1e-4c7a-9d01-0000000000a1"
CONTACT_B = "3f1c2a10-5b1e-4c7a-9d01-0000000000b2"
MINUTES_31 = 31 * 60


# =========================================================================== keys per system
def key_of(system: str, tenant: str, settings: dict) -> str:
    """The store key the ``system`` connector of ``tenant`` reads its tokens from."""
    connector = registry.load(system)(settings, tenant=tenant, token_store=MemoryTokenStore())
    auth = connector.auth
    assert isinstance(auth, OAuth2Auth)
    return auth.manager.key


def authorize_key(system: str, tenant: str, settings: dict) -> str:
    """The store key ``broker connectors authorize`` writes for the ``system`` connector of ``tenant``."""
    config = registry.load(system)(settings, tenant=tenant, token_store=MemoryTokenStore()).oauth2_config()
    assert config is not None
    return config.store_key


def xero_settings(org: str, url: str = "https://api.xero.com", **overrides) -> dict:
    return {
        "api_url": url,
        "identity_url": url,
        "xero_tenant_id": org,
        "client_id": "demo-client",
        "client_secret_env": "XERO_CLIENT_SECRET",
        "refresh_token_env": "XERO_REFRESH_TOKEN",
        "tax_types": {"23": "OUTPUT2"},  # the emulator's 23 % TaxType
        **overrides,
    }


def test_xero_tenants_on_one_connection_share_one_key(monkeypatch):
    monkeypatch.setenv("XERO_CLIENT_SECRET", SECRET)
    acme = key_of("xero", "acme-fm", xero_settings(ORG_A))
    nordic = key_of("xero", "nordic-hvac", xero_settings(ORG_B))
    expected = token_key("xero", "XERO_REFRESH_TOKEN", issuer="https://api.xero.com", client_id="demo-client")
    assert acme == nordic == expected
    assert acme.startswith("xero-XERO_REFRESH_TOKEN-") and len(acme) == len("xero-XERO_REFRESH_TOKEN-") + 8
    assert (
        authorize_key("xero", "acme-fm", xero_settings(ORG_A))
        == authorize_key("xero", "nordic-hvac", xero_settings(ORG_B))
        == acme
    )  # `authorize` for either tenant writes what both read
    # another connection (another seed variable), another app, another identity provider: other keys
    others = {
        key_of("xero", "acme-fm", xero_settings(ORG_A, refresh_token_env="XERO_REFRESH_TOKEN_2")),
        key_of("xero", "acme-fm", xero_settings(ORG_A, client_id="other-app")),
        key_of("xero", "acme-fm", xero_settings(ORG_A, url="http://127.0.0.1:9")),
    }
    assert len(others) == 3 and acme not in others


def test_quickbooks_key_is_the_realm_and_the_others_the_connection(monkeypatch):
    for var in ("QBO_CLIENT_SECRET", "ZOHO_CLIENT_SECRET", "FB_CLIENT_SECRET", "MOLONI_CLIENT_SECRET"):
        monkeypatch.setenv(var, "secret-value-1234")
    qbo = {"client_id": "qb-app", "client_secret_env": "QBO_CLIENT_SECRET", "refresh_token_env": "QBO_REFRESH_TOKEN"}
    token_url = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
    # a QuickBooks refresh token is per company (realm): one realm shares whatever variable seeds it ...
    same_realm = {
        key_of("quickbooks", "t1", {**qbo, "realm_id": "9341"}),
        key_of("quickbooks", "t2", {**qbo, "realm_id": "9341", "refresh_token_env": "OTHER_VAR"}),
        authorize_key("quickbooks", "t2", {**qbo, "realm_id": "9341"}),
    }
    assert same_realm == {token_key("quickbooks", "realm-9341", issuer=token_url, client_id="qb-app")}
    # ... and two realms never share, even seeded from one variable
    assert key_of("quickbooks", "t1", {**qbo, "realm_id": "1111"}) not in same_realm

    # Zoho: one user's token reaches every organisation of that user (issuer: the data centre's accounts server)
    zoho = {"client_id": "z-app", "client_secret_env": "ZOHO_CLIENT_SECRET", "refresh_token_env": "ZOHO_RT"}
    z1 = key_of("zoho", "t1", {**zoho, "organization_id": "111"})
    assert (
        z1
        == key_of("zoho", "t2", {**zoho, "organization_id": "222"})
        == authorize_key("zoho", "t2", {**zoho, "organization_id": "222"})
    )
    assert z1 == token_key("zoho", "ZOHO_RT", issuer="https://accounts.zoho.com", client_id="z-app")
    assert z1 != key_of("zoho", "t1", {**zoho, "organization_id": "111", "data_center": "eu"})

    # FreshBooks: one user's single-use refresh token reaches each of that user's businesses
    fb = {"client_id": "fb-app", "client_secret_env": "FB_CLIENT_SECRET", "refresh_token_env": "FB_RT"}
    f1 = key_of("freshbooks", "t1", {**fb, "account_id": "AAA"})
    assert (
        f1
        == key_of("freshbooks", "t2", {**fb, "account_id": "BBB"})
        == authorize_key("freshbooks", "t1", {**fb, "account_id": "AAA"})
    )
    assert f1.startswith("freshbooks-FB_RT-")

    # Moloni: the user's tokens (refresh-token variable, else the password grant's username)
    moloni = {"client_id": "m-app", "client_secret_env": "MOLONI_CLIENT_SECRET", "document_set_id": 7}
    m1 = key_of("moloni", "t1", {**moloni, "company_id": 5, "refresh_token_env": "MOLONI_RT"})
    assert m1 == key_of("moloni", "t2", {**moloni, "company_id": 6, "refresh_token_env": "MOLONI_RT"})
    assert m1 == authorize_key("moloni", "t1", {**moloni, "company_id": 5, "refresh_token_env": "MOLONI_RT"})
    assert m1 == token_key("moloni", "MOLONI_RT", issuer="https://api.moloni.pt", client_id="m-app")
    user = {**moloni, "username": "ops@example.com", "password_env": "MOLONI_PASSWORD"}
    assert key_of("moloni", "t1", {**user, "company_id": 5}) == key_of("moloni", "t2", {**user, "company_id": 6})
    assert key_of("moloni", "t1", {**user, "company_id": 5}).startswith("moloni-user-ops_example.com-")

    # PayPal (client credentials): the access token belongs to the app
    paypal = {"client_id": "pp-app", "client_secret_env": "PAYPAL_SECRET"}
    p1 = key_of("paypal", "t1", paypal)
    assert p1 == key_of("paypal", "t2", paypal)
    assert p1 == token_key("paypal", "app", issuer="https://api-m.paypal.com", client_id="pp-app")


# =========================================================================== invalid_grant is needs_reauth
@pytest.mark.parametrize(
    "harness",
    [
        "connectors.xero.testing:XeroHarness",
        "connectors.quickbooks.testing:QuickBooksHarness",
        "connectors.zoho.testing:ZohoHarness",
        "connectors.freshbooks.testing:FreshBooksHarness",
        "connectors.moloni.testing:MoloniHarness",
    ],
)
def test_a_dead_refresh_token_needs_reauth_and_a_wrong_client_secret_does_not(harness, monkeypatch):
    """Against each system's emulator: a refresh token the provider never issued (or revoked) is refused with its
    ``invalid_grant`` (Zoho: ``invalid_code``) -> ReauthRequiredError; a wrong client secret stays a plain AuthError."""
    module, _, name = harness.partition(":")
    h = getattr(importlib.import_module(module), name)()
    h.start()
    try:
        settings = h.settings()
        refresh_var, secret_var = settings["refresh_token_env"], settings["client_secret_env"]
        for var, value in h.env().items():
            monkeypatch.setenv(var, value)
        monkeypatch.setenv(refresh_var, "refresh-token-never-issued-0000")
        dead = h.connector_cls(settings, tenant=h.tenant, token_store=MemoryTokenStore())
        with pytest.raises(ReauthRequiredError) as info:
            asyncio.run(dead.check())
        assert info.value.error_class == "needs_reauth" and "refresh-token-never-issued" not in str(info.value)
        monkeypatch.setenv(refresh_var, h.env()[refresh_var])
        monkeypatch.setenv(secret_var, "wrong-client-secret-0000")
        wrong = h.connector_cls(settings, tenant=h.tenant, token_store=MemoryTokenStore())
        with pytest.raises(AuthError) as info:
            asyncio.run(wrong.check())
        assert not isinstance(info.value, ReauthRequiredError) and info.value.error_class == "auth"
    finally:
        h.stop()


# =========================================================================== the emulator's token rules
@pytest.fixture
def emu(xero_validator, monkeypatch):
    """Two organisations on one connection; single-use refresh tokens (the emulator's default: no grace)."""
    monkeypatch.setenv("XERO_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("XERO_REFRESH_TOKEN", REFRESH)
    emulator = XeroEmulator(
        tenant_ids=(ORG_A, ORG_B),
        request_validator=xero_validator,
        client_secret=SECRET,
        refresh_token=REFRESH,
        contacts={ORG_A: {CONTACT_A: "Hotel A"}, ORG_B: {CONTACT_B: "Offices B"}},
    ).start()
    yield emulator
    emulator.stop()
    assert emulator.validation_failures == [] and emulator.server_errors == []


def grant(emu: XeroEmulator, refresh_token: str) -> httpx.Response:
    return httpx.post(
        f"{emu.url}/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(emu.client_id, SECRET),
    )


def test_emulator_refresh_tokens_are_single_use_by_default_and_its_clock_moves(emu):
    assert emu.refresh_grace_seconds == 0
    first = grant(emu, REFRESH)
    assert first.status_code == 200 and first.json()["expires_in"] == 1800
    again = grant(emu, REFRESH)  # spent a moment ago: no grace
    assert again.status_code == 400 and again.json() == {"error": "invalid_grant"}
    # Xero's own 30-minute grace, then the clock moved past it
    emu.refresh_grace_seconds = 1800
    rotated = first.json()["refresh_token"]
    assert grant(emu, rotated).status_code == 200
    assert grant(emu, rotated).status_code == 200  # within the grace period
    resp = httpx.post(f"{emu.url}/_emulator/clock", json={"advance": 1801})
    assert resp.status_code == 200 and resp.json() == {"offset": 1801.0}
    assert grant(emu, rotated).json() == {"error": "invalid_grant"}
    # the access token of 30 minutes ago has expired on the emulator's clock
    access = grant(emu, emu.current_refresh_token).json()["access_token"]
    headers = {"Authorization": f"Bearer {access}"}
    assert httpx.get(f"{emu.url}/connections", headers=headers).status_code == 200
    emu.advance_clock(1800)
    expired = httpx.get(f"{emu.url}/connections", headers=headers)
    assert expired.status_code == 401 and "TokenExpired" in expired.json()["Detail"]
    with pytest.raises(ValueError, match="-5"):
        emu.advance_clock(-5)


def test_emulator_revoke_kills_every_token(emu):
    body = grant(emu, REFRESH).json()
    assert httpx.post(f"{emu.url}/_emulator/revoke").json() == {"ok": True}
    assert grant(emu, body["refresh_token"]).json() == {"error": "invalid_grant"}
    resp = httpx.get(f"{emu.url}/connections", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert resp.status_code == 401


# =========================================================================== acceptance: two tenants, one connection
class ShiftedTime:
    """The ``time`` module as :mod:`connectors.sdk.oauth2` sees it, running as far ahead as the emulator's clock:
    both sides of the connection see the same 31 minutes pass (token expiry is wall-clock on our side)."""

    def __init__(self, emulator: XeroEmulator) -> None:
        self.emulator = emulator

    def time(self) -> float:
        return _time.time() + self.emulator.clock_offset

    def __getattr__(self, name: str):
        return getattr(_time, name)


class PerTenantXeroConnector(XeroConnector):
    """The old keying, for the negative control: tokens stored per broker tenant."""

    def token_connection(self) -> str:
        return self.tenant


def deliver_alternately(emu: XeroEmulator, store_dir: Path, cls: type[XeroConnector], rounds: int) -> list:
    """``rounds`` x (tenant A delivers, 31 minutes pass, tenant B delivers, 31 minutes pass); each outcome in order
    (a :class:`DeliveryResult` or the exception raised)."""
    store = FileTokenStore(store_dir)
    acme = cls(xero_settings(ORG_A, emu.url), tenant="acme-fm", token_store=store)
    nordic = cls(xero_settings(ORG_B, emu.url), tenant="nordic-hvac", token_store=store)
    plan = [(acme, "acme-fm", CONTACT_A, "ACME"), (nordic, "nordic-hvac", CONTACT_B, "NHV")]

    async def go() -> list:
        outcomes: list = []
        try:
            for n in range(1, rounds + 1):
                for connector, tenant, contact, prefix in plan:
                    invoice = make_invoice(f"{prefix}-WO-{n}-R1", tenant=tenant, contact_id=contact)
                    try:
                        outcomes.append(await connector.deliver(invoice))
                    except ReauthRequiredError as exc:
                        outcomes.append(exc)
                    emu.advance_clock(MINUTES_31)
        finally:
            await acme.aclose()
            await nordic.aclose()
        return outcomes

    return asyncio.run(go())


@pytest.mark.parametrize("grace", [0, 1800])
def test_two_tenants_on_one_xero_connection_deliver_for_hours_without_invalid_grant(emu, tmp_path, monkeypatch, grace):
    """4 rounds = 8 deliveries over 248 emulated minutes, each after the access token expired: 8 refreshes, each
    with the newest refresh token (none presented twice), every invoice created once, one token file."""
    emu.refresh_grace_seconds = grace
    monkeypatch.setattr(oauth2, "time", ShiftedTime(emu))
    outcomes = deliver_alternately(emu, tmp_path / "tokens", XeroConnector, rounds=4)
    assert [type(o).__name__ for o in outcomes] == ["DeliveryResult"] * 8
    assert all(o.created for o in outcomes)
    assert emu.clock_offset == 8 * MINUTES_31
    uses = emu.refresh_token_uses
    assert len(uses) == 8 and len(set(uses)) == 8 and uses[0] == REFRESH
    assert sorted(i["InvoiceNumber"] for i in emu.invoices(ORG_A)) == [f"ACME-WO-{n}-R1" for n in range(1, 5)]
    assert sorted(i["InvoiceNumber"] for i in emu.invoices(ORG_B)) == [f"NHV-WO-{n}-R1" for n in range(1, 5)]
    files = [p.name for p in (tmp_path / "tokens").glob("*.json")]
    assert len(files) == 1 and files[0].startswith("xero-XERO_REFRESH_TOKEN-")  # one connection, one file
    assert [c for c in emu.calls if c[2] == 401] == []  # no token was used past its expiry


@pytest.mark.parametrize("grace", [0, 1800])
def test_negative_control_per_tenant_tokens_break_each_other(emu, tmp_path, monkeypatch, grace):
    """The same deliveries with tokens stored per tenant: tenant B spends the configured refresh token that
    tenant A rotated 31 minutes earlier (beyond any grace) and is refused at once."""
    emu.refresh_grace_seconds = grace
    monkeypatch.setattr(oauth2, "time", ShiftedTime(emu))
    outcomes = deliver_alternately(emu, tmp_path / "tokens", PerTenantXeroConnector, rounds=1)
    assert type(outcomes[0]).__name__ == "DeliveryResult"
    assert isinstance(outcomes[1], ReauthRequiredError) and "invalid_grant" in str(outcomes[1])
    assert emu.refresh_token_uses == [REFRESH, REFRESH]
    assert emu.invoices(ORG_B) == []
