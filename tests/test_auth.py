"""connectors.sdk.oauth2: token stores, single-flight refresh (coroutines and processes), the authorization-code flow."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from connectors.sdk.errors import AuthError, ConfigError, ReauthRequiredError
from connectors.sdk.oauth2 import (
    FileTokenStore,
    MemoryTokenStore,
    OAuth2Config,
    OAuth2TokenManager,
    TokenSet,
    authorization_code_flow,
    default_token_store,
    fingerprint,
    token_key,
)
from connectors.xero.emulator import XeroEmulator


def tokens(access: str, refresh: str, ttl: float = 1800, **kw) -> TokenSet:
    return TokenSet(
        access_token=SecretStr(access), refresh_token=SecretStr(refresh), expires_at=time.time() + ttl, **kw
    )


# --------------------------------------------------------------------------- stores
def test_file_store_is_private_atomic_and_round_trips(tmp_path):
    store = FileTokenStore(tmp_path / "tokens")
    key = token_key("xero", "acme-fm", issuer="https://identity.xero.com", client_id="abc")
    assert key.startswith("xero-acme-fm-") and len(key) == len("xero-acme-fm-") + 8
    assert store.load(key) is None
    store.save(key, tokens("at-1", "rt-1", scope="a b"))
    store.save(key, tokens("at-2", "rt-2", scope="a b"))
    path = Path(store.describe(key))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary files left behind
    loaded = store.load(key)
    assert loaded.access_token.get_secret_value() == "at-2" and loaded.refresh_token.get_secret_value() == "rt-2"
    assert loaded.scopes == {"a", "b"} and loaded.access_valid()
    assert "rt-2" not in repr(loaded)  # SecretStr
    path.write_text("{not json")
    assert store.load(key) is None  # a corrupt file is ignored (logged), never fatal
    with pytest.raises(ValueError):
        store.save("../escape", tokens("a", "b"))


def test_token_keys_separate_connections_issuers_and_apps():
    keys = {
        token_key("xero", "t1"),
        token_key("xero", "t2"),
        token_key("xero", "t1", issuer="http://127.0.0.1:9"),
        token_key("xero", "t1", client_id="other"),
        token_key("quickbooks", "t1"),
    }
    assert len(keys) == 5


def test_default_store_location(monkeypatch, tmp_path):
    monkeypatch.setenv("BROKER_TOKEN_DIR", str(tmp_path / "a"))
    assert default_token_store().directory == tmp_path / "a"
    monkeypatch.delenv("BROKER_TOKEN_DIR")
    monkeypatch.setenv("BROKER_DATA_DIR", str(tmp_path / "data"))
    assert default_token_store().directory == tmp_path / "data" / "tokens"
    monkeypatch.setenv("BROKER_TOKEN_STORE", "memory")
    assert isinstance(default_token_store(), MemoryTokenStore)


# --------------------------------------------------------------------------- single flight
class FakeIdentity:
    """A token endpoint: rotates refresh tokens, refuses unknown ones (``invalid_grant``), counts grants
    (``grants``: issued; ``presented``: every refresh token shown, refused or not)."""

    def __init__(self, seed: str, delay: float = 0.05):
        self.valid = {seed}
        self.grants = 0
        self.delay = delay
        self.presented: list[str] = []

    async def refresh(self, refresh_token: SecretStr | None) -> TokenSet:
        await asyncio.sleep(self.delay)
        presented = refresh_token.get_secret_value()
        self.presented.append(presented)
        if presented not in self.valid:
            raise ReauthRequiredError("token refresh refused (HTTP 400 invalid_grant)", http_status=400)
        self.grants += 1
        new = f"rt-{self.grants}"
        self.valid.add(new)
        return tokens(f"at-{self.grants}", new, scope="accounting.transactions")


def manager(store, identity: FakeIdentity, seed: str = "seed-token", **kw) -> OAuth2TokenManager:
    return OAuth2TokenManager(
        key="sys-t1-00000000", store=store, refresh=identity.refresh, seed=lambda: SecretStr(seed), **kw
    )


def test_concurrent_callers_share_one_refresh_and_a_401_refreshes_once():
    identity = FakeIdentity("seed-token")
    rotated: list[str] = []
    m = manager(MemoryTokenStore(), identity, on_rotate=rotated.append)

    async def go():
        first = await asyncio.gather(*(m.access_token() for _ in range(10)))
        stale = first[0]
        again = await asyncio.gather(*(m.access_token(stale=stale) for _ in range(10)))
        return first, again

    first, again = asyncio.run(go())
    assert {t.get_secret_value() for t in first} == {"at-1"}
    assert {t.get_secret_value() for t in again} == {"at-2"}
    assert identity.grants == 2 and m.refreshes == 2
    assert rotated == ["rt-1", "rt-2"]
    assert set(m.known_secrets()) >= {"seed-token", "at-1", "rt-1", "at-2", "rt-2"}


def test_two_managers_sharing_a_file_store_refresh_once(tmp_path):
    identity = FakeIdentity("seed-token", delay=0.2)
    store = FileTokenStore(tmp_path)
    a, b = manager(store, identity), manager(store, identity)

    async def go():
        return await asyncio.gather(a.access_token(), b.access_token())

    ta, tb = asyncio.run(go())
    assert ta.get_secret_value() == tb.get_secret_value() == "at-1"
    assert identity.grants == 1


def test_stored_token_wins_then_seed_is_the_fallback(tmp_path):
    store = MemoryTokenStore()
    identity = FakeIdentity("seed-token")
    key = "sys-t1-00000000"
    # a rotated token saved by another process; the environment still holds the (older) seed
    identity.valid.add("stored-rt")
    store.save(key, TokenSet(refresh_token=SecretStr("stored-rt"), seed_fingerprint=fingerprint("seed-token")))
    m = manager(store, identity)
    assert asyncio.run(m.access_token()).get_secret_value() == "at-1"
    assert identity.grants == 1 and store.load(key).refresh_token.get_secret_value() == "rt-1"
    # the stored token is revoked: the configured one it was rotated from is spent, so it is not presented
    identity2 = FakeIdentity("seed-token")
    store.save(key, TokenSet(refresh_token=SecretStr("revoked"), seed_fingerprint=fingerprint("seed-token")))
    with pytest.raises(ReauthRequiredError, match="invalid_grant"):
        asyncio.run(manager(store, identity2).access_token())
    assert identity2.presented == ["revoked"]
    # a set stored by `broker connectors authorize` (no seed fingerprint): the configured token is the fallback
    identity2b = FakeIdentity("seed-token")
    store.save(key, TokenSet(refresh_token=SecretStr("revoked-too")))
    assert asyncio.run(manager(store, identity2b).access_token()).get_secret_value() == "at-1"
    assert identity2b.presented == ["revoked-too", "seed-token"]
    # a new token put in the environment (re-authorised by hand) is tried first
    identity3 = FakeIdentity("brand-new-seed")
    identity3.valid.add("old-stored")
    store.save(key, TokenSet(refresh_token=SecretStr("old-stored"), seed_fingerprint=fingerprint("seed-token")))
    asyncio.run(manager(store, identity3, seed="brand-new-seed").access_token())
    assert store.load(key).seed_fingerprint == fingerprint("brand-new-seed")


def test_no_token_anywhere_is_a_config_error_naming_the_variable():
    def seed():
        raise ConfigError(
            "missing secret: environment variable XERO_REFRESH_TOKEN (named by billing.settings.refresh_token_env) is not set"
        )

    m = OAuth2TokenManager(key="k", store=MemoryTokenStore(), refresh=FakeIdentity("x").refresh, seed=seed)
    with pytest.raises(ConfigError, match="XERO_REFRESH_TOKEN"):
        asyncio.run(m.access_token())


def test_both_tokens_refused_is_auth_error():
    store = MemoryTokenStore()
    store.save("sys-t1-00000000", TokenSet(refresh_token=SecretStr("revoked")))  # as `authorize` stores it
    identity = FakeIdentity("something-else")
    with pytest.raises(AuthError, match="invalid_grant") as info:
        asyncio.run(manager(store, identity, seed="also-revoked").access_token())
    assert isinstance(info.value, ReauthRequiredError) and info.value.error_class == "needs_reauth"
    assert identity.presented == ["revoked", "also-revoked"]
    saved = store.load("sys-t1-00000000")
    assert saved.refused == (fingerprint("revoked"), fingerprint("also-revoked")) and saved.access_token is None


def test_a_refused_connection_is_not_asked_again_until_new_tokens_are_stored():
    """invalid_grant is remembered in the store: other managers (tenants, processes) sharing the key raise
    ReauthRequiredError without calling; new tokens from `authorize` (or a new configured token) lift it."""
    store = MemoryTokenStore()
    key = "sys-t1-00000000"
    store.save(key, tokens("at-old", "rt-spent", ttl=-10, seed_fingerprint=fingerprint("seed-token")))
    identity = FakeIdentity("nothing-valid")
    first, second = manager(store, identity), manager(store, identity)
    assert first.reauth_required() is None  # nothing refused yet
    with pytest.raises(ReauthRequiredError):
        asyncio.run(first.access_token())
    assert identity.presented == ["rt-spent"]  # the spent seed is not presented
    for m in (first, second, first):
        with pytest.raises(ReauthRequiredError, match="needs re-authorisation"):
            asyncio.run(m.access_token())
    assert identity.presented == ["rt-spent"]  # one token call in all
    assert isinstance(second.reauth_required(), ReauthRequiredError)
    # `broker connectors authorize` stores new tokens: the connection is usable again, without a refresh
    store.save(key, tokens("at-new", "rt-new"))
    assert second.reauth_required() is None
    assert asyncio.run(second.access_token()).get_secret_value() == "at-new"
    assert identity.presented == ["rt-spent"]
    # refused again, then a new token put in the environment is tried (once)
    store.save(key, TokenSet(refresh_token=SecretStr("x"), refused=(fingerprint("x"), fingerprint("seed-token"))))
    assert isinstance(manager(store, identity).reauth_required(), ReauthRequiredError)
    fresh = FakeIdentity("new-env-token")
    assert manager(store, fresh, seed="new-env-token").reauth_required() is None
    assert asyncio.run(manager(store, fresh, seed="new-env-token").access_token()).get_secret_value() == "at-1"
    assert fresh.presented == ["new-env-token"] and store.load(key).refused == ()


def test_tokens_stored_under_the_old_per_tenant_key_are_adopted_once():
    store = MemoryTokenStore()
    legacy = token_key("xero", "acme-fm", issuer="https://identity.xero.com", client_id="abc")
    store.save(legacy, tokens("at-legacy", "rt-legacy", ttl=-10, seed_fingerprint=fingerprint("seed-token")))
    identity = FakeIdentity("seed-token")
    identity.valid.add("rt-legacy")
    m = manager(store, identity, legacy_keys=(legacy,))
    assert asyncio.run(m.access_token()).get_secret_value() == "at-1"
    assert identity.presented == ["rt-legacy"]  # the newest token, not the spent seed
    assert store.load("sys-t1-00000000").refresh_token.get_secret_value() == "rt-1"


def _process_worker(store_dir: str, counter: str, start_at: float) -> None:
    """One 'worker process': waits for the common start, then asks for a token (which is expired)."""

    async def refresh(refresh_token):
        with open(counter, "a") as fh:  # one line per grant, across processes
            fh.write(refresh_token.get_secret_value() + "\n")
        await asyncio.sleep(0.3)
        n = len(Path(counter).read_text().splitlines())
        return tokens(f"at-p{n}", f"rt-p{n}")

    m = OAuth2TokenManager(
        key="sys-t1-00000000", store=FileTokenStore(store_dir), refresh=refresh, seed=lambda: SecretStr("seed-token")
    )
    time.sleep(max(0.0, start_at - time.time()))
    token = asyncio.run(m.access_token())
    Path(counter + f".{os.getpid()}").write_text(token.get_secret_value())


def test_two_processes_spend_a_rotating_refresh_token_once(tmp_path):
    store = FileTokenStore(tmp_path / "tokens")
    store.save("sys-t1-00000000", tokens("expired-at", "rt-0", ttl=-10, seed_fingerprint=fingerprint("seed-token")))
    counter = str(tmp_path / "grants")
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.5
    procs = [ctx.Process(target=_process_worker, args=(str(tmp_path / "tokens"), counter, start_at)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert Path(counter).read_text().splitlines() == ["rt-0"]  # one grant, with the stored token
    issued = {Path(f).read_text() for f in map(str, tmp_path.glob("grants.*"))}
    assert issued == {"at-p1"}
    assert store.load("sys-t1-00000000").refresh_token.get_secret_value() == "rt-p1"


# --------------------------------------------------------------------------- authorization-code flow
@pytest.fixture
def emulator():
    emu = XeroEmulator(client_secret="flow-secret-123456", refresh_token="unused-seed").start()
    yield emu
    emu.stop()


def _config(emu: XeroEmulator, **kw) -> OAuth2Config:
    return OAuth2Config(
        authorize_url=f"{emu.url}/identity/connect/authorize",
        token_url=f"{emu.url}/connect/token",
        client_id=emu.client_id,
        client_secret=SecretStr("flow-secret-123456"),
        scopes=("offline_access", "accounting.transactions"),
        store_key="xero-t1-abcdef01",
        **kw,
    )


def _browser(url: str) -> None:
    """What the user's browser does: open the consent page, follow the redirect to the loopback server."""
    threading.Thread(target=lambda: httpx.get(url, follow_redirects=True, timeout=10), daemon=True).start()


def test_authorization_code_flow_with_loopback_redirect_and_pkce(emulator, tmp_path):
    store = FileTokenStore(tmp_path)
    shown: list[str] = []

    def show(url: str) -> None:
        shown.append(url)
        _browser(url)

    result = asyncio.run(
        authorization_code_flow(_config(emulator), store, show_url=show, open_browser=False, timeout=20)
    )
    url = httpx.URL(shown[0])
    assert url.path == "/identity/connect/authorize"
    assert url.params["code_challenge_method"] == "S256" and url.params["redirect_uri"].startswith("http://127.0.0.1:")
    assert url.params["scope"] == "offline_access accounting.transactions" and url.params["state"]
    saved = store.load("xero-t1-abcdef01")
    assert saved.refresh_token.get_secret_value() == result.tokens.refresh_token.get_secret_value()
    assert saved.refresh_token.get_secret_value() in emulator._refresh_tokens  # a token the provider really issued
    assert result.store_location.endswith("xero-t1-abcdef01.json")
    assert stat.S_IMODE(Path(result.store_location).stat().st_mode) == 0o600
    assert json.loads(Path(result.store_location).read_text())["scope"] == emulator.scopes


def test_authorization_redirect_with_a_wrong_state_is_refused(emulator, tmp_path):
    store = FileTokenStore(tmp_path)

    def forged(url: str) -> None:
        redirect = httpx.URL(url).params["redirect_uri"]
        threading.Thread(target=lambda: httpx.get(f"{redirect}?code=x&state=forged", timeout=10), daemon=True).start()

    with pytest.raises(AuthError, match="state"):
        asyncio.run(authorization_code_flow(_config(emulator), store, show_url=forged, open_browser=False, timeout=20))
    assert store.load("xero-t1-abcdef01") is None


def test_authorization_denied_by_the_user(emulator, tmp_path):
    def deny(url: str) -> None:
        params = httpx.URL(url).params
        target = f"{params['redirect_uri']}?error=access_denied&state={params['state']}"
        threading.Thread(target=lambda: httpx.get(target, timeout=10), daemon=True).start()

    with pytest.raises(AuthError, match="access_denied"):
        asyncio.run(
            authorization_code_flow(
                _config(emulator), FileTokenStore(tmp_path), show_url=deny, open_browser=False, timeout=20
            )
        )


def test_authorization_times_out(emulator, tmp_path):
    with pytest.raises(TimeoutError):
        asyncio.run(
            authorization_code_flow(
                _config(emulator), FileTokenStore(tmp_path), show_url=lambda u: None, open_browser=False, timeout=0.3
            )
        )
