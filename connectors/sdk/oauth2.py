"""OAuth2 helpers for connectors: token store, single-flight refresh, authorization-code flow.

Three pieces, usable by any connector whose billing system speaks OAuth2 (Xero, QuickBooks,
Zoho, FreshBooks, Moloni, PayPal):

* :class:`TokenStore` — where a tenant's tokens live between processes. :class:`FileTokenStore`
  (the default, :func:`default_token_store`) keeps one JSON file per key with 0600 permissions in a
  0700 directory, written atomically (temporary file, ``fsync``, ``os.replace``), and provides an
  exclusive cross-process lock (``fcntl.flock`` on a side ``.lock`` file). :class:`MemoryTokenStore`
  is for tests and one-off commands. Any object with the same four methods can be plugged in.
* :class:`OAuth2TokenManager` — hands out the access token; a refresh is **single-flight per key**
  across coroutines (an ``asyncio.Lock``) **and processes** (the store's lock): whoever gets the
  lock first re-reads the store and refreshes only when the token there is still the stale one, so
  two workers never spend the same rotating refresh token. The newest refresh token is persisted
  before the lock is released.
* :func:`refresh_grant` / :func:`exchange_code` — RFC 6749 token-endpoint calls mapped onto the
  error taxonomy, and :func:`authorization_code_flow` — the loopback-redirect flow (RFC 8252, with
  PKCE) behind ``broker connectors authorize SYSTEM --tenant T``.

Where the default file store lives: ``$BROKER_TOKEN_DIR`` if set, else ``$BROKER_DATA_DIR/tokens``
(``.broker-data/tokens``); ``BROKER_TOKEN_STORE=memory`` keeps tokens in memory only.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import inspect
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    RateLimitedError,
    ReauthRequiredError,
    RetryableError,
)

try:  # POSIX only; elsewhere the file store's lock is process-local
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("connectors.sdk.oauth2")


# --------------------------------------------------------------------------- tokens
def fingerprint(secret: SecretStr | str | None) -> str | None:
    """Short SHA-256 fingerprint of a secret (to recognise it without storing or printing it)."""
    if secret is None:
        return None
    value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def _reveal(secret: SecretStr | str | None) -> str | None:
    if secret is None:
        return None
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


@dataclass(frozen=True)
class TokenSet:
    """Tokens of one key. ``expires_at`` is wall-clock (``time.time()``) so processes can share it.

    ``seed_fingerprint`` is the fingerprint of the configured (environment) refresh token this set
    descends from: when an operator puts a *new* token in the environment, it wins over the store.
    ``refused``: fingerprints of refresh tokens the provider refused with ``invalid_grant`` (never
    presented again; a set whose every candidate is refused means *needs re-authorisation*), with
    ``refused_reason`` the refusal's message (no secret in it).
    """

    access_token: SecretStr | None = None
    refresh_token: SecretStr | None = None
    expires_at: float | None = None
    scope: str | None = None
    token_type: str = "Bearer"
    obtained_at: float = field(default_factory=time.time)
    seed_fingerprint: str | None = None
    refused: tuple[str, ...] = ()
    refused_reason: str | None = None

    def access_valid(self, margin: float = 60.0) -> bool:
        """True when there is an access token that does not expire within ``margin`` seconds."""
        if self.access_token is None:
            return False
        return self.expires_at is None or time.time() < self.expires_at - margin

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset((self.scope or "").split())

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": _reveal(self.access_token),
            "refresh_token": _reveal(self.refresh_token),
            "expires_at": self.expires_at,
            "scope": self.scope,
            "token_type": self.token_type,
            "obtained_at": self.obtained_at,
            "seed_fingerprint": self.seed_fingerprint,
            "refused": list(self.refused),
            "refused_reason": self.refused_reason,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> TokenSet:
        def secret(name: str) -> SecretStr | None:
            value = doc.get(name)
            return SecretStr(str(value)) if value else None

        return cls(
            access_token=secret("access_token"),
            refresh_token=secret("refresh_token"),
            expires_at=float(doc["expires_at"]) if doc.get("expires_at") is not None else None,
            scope=doc.get("scope"),
            token_type=str(doc.get("token_type") or "Bearer"),
            obtained_at=float(doc.get("obtained_at") or time.time()),
            seed_fingerprint=doc.get("seed_fingerprint"),
            refused=tuple(str(fp) for fp in doc.get("refused") or ()),
            refused_reason=doc.get("refused_reason"),
        )

    @classmethod
    def from_token_response(cls, body: dict[str, Any], *, previous_refresh: SecretStr | None = None) -> TokenSet:
        """From an RFC 6749 §5.1 token response; a response without ``refresh_token`` keeps ``previous_refresh``."""
        access = body.get("access_token")
        if not access:
            raise AuthError("token endpoint answered without an access_token")
        try:
            expires_in = float(body.get("expires_in", 3600))
        except (TypeError, ValueError):
            expires_in = 3600.0
        refresh = body.get("refresh_token")
        return cls(
            access_token=SecretStr(str(access)),
            refresh_token=SecretStr(str(refresh)) if refresh else previous_refresh,
            expires_at=time.time() + expires_in,
            scope=body.get("scope"),
            token_type=str(body.get("token_type") or "Bearer"),
        )


def token_key(system: str, connection: str, *, issuer: str = "", client_id: str = "") -> str:
    """Store key of one OAuth2 **connection**'s tokens: ``<system>-<connection>-<8 hex of the four>``.

    A connection is one chain of refresh tokens at the provider: what one authorisation of one app
    (``client_id``) at one identity provider (``issuer``) returned. Every broker tenant the chain
    reaches must use the same key, so they share one :class:`TokenSet`, one lock and one refresh
    (a rotating refresh token spent under two keys kills the other: ``invalid_grant``).
    Connectors name the connection with :meth:`connectors.sdk.http.HttpConnector.token_connection`
    (per system: ``docs/connectors.md`` section 6). The hash keeps tokens of different identity
    providers (production vs a sandbox) or OAuth apps apart. Example:
    ``token_key("xero", "XERO_REFRESH_TOKEN", issuer="https://identity.xero.com", client_id="abc")``
    -> ``"xero-XERO_REFRESH_TOKEN-<8 hex>"``.
    """
    digest = hashlib.sha256(f"{system}\0{connection}\0{issuer.rstrip('/')}\0{client_id}".encode()).hexdigest()[:8]
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{system}-{connection}")[:80]
    return f"{safe}-{digest}"


# --------------------------------------------------------------------------- stores
@runtime_checkable
class TokenStore(Protocol):
    """Where tokens persist. ``lock`` must be exclusive across every process sharing the store."""

    def load(self, key: str) -> TokenSet | None: ...

    def save(self, key: str, tokens: TokenSet) -> None: ...

    def lock(self, key: str, timeout: float = 60.0) -> contextlib.AbstractContextManager[None]: ...

    def describe(self, key: str) -> str: ...


class MemoryTokenStore:
    """Tokens in this process's memory (tests, one-off commands). Locks are per key, thread-safe."""

    def __init__(self) -> None:
        self._tokens: dict[str, TokenSet] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def load(self, key: str) -> TokenSet | None:
        return self._tokens.get(key)

    def save(self, key: str, tokens: TokenSet) -> None:
        self._tokens[key] = tokens

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 60.0) -> Iterator[None]:
        with self._guard:
            lk = self._locks.setdefault(key, threading.Lock())
        if not lk.acquire(timeout=timeout):
            raise RetryableError(f"token store lock for {key} busy for {timeout:g}s")
        try:
            yield
        finally:
            lk.release()

    def describe(self, key: str) -> str:
        return f"memory:{key}"


class FileTokenStore:
    """One JSON file per key in ``directory`` (created 0700), each file 0600, replaced atomically.

    The lock is ``fcntl.flock`` on ``<key>.lock``: exclusive between processes and between
    threads/connectors of one process (each acquisition opens its own file description).
    """

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = Path(directory)

    def _path(self, key: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", key):
            raise ValueError(f"token store key {key!r} must match [A-Za-z0-9._-]+ (see token_key)")
        return self.directory / f"{key}.json"

    def _ensure_dir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def describe(self, key: str) -> str:
        return str(self._path(key))

    def load(self, key: str) -> TokenSet | None:
        path = self._path(key)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("token store %s unreadable (%s); ignoring it", path, type(exc).__name__)
            return None
        if not isinstance(doc, dict):
            return None
        try:
            return TokenSet.from_json(doc)
        except (TypeError, ValueError, KeyError):
            log.warning("token store %s malformed; ignoring it", path)
            return None

    def save(self, key: str, tokens: TokenSet) -> None:
        """Write atomically: temporary 0600 file in the same directory, fsync, ``os.replace``, fsync dir."""
        self._ensure_dir()
        path = self._path(key)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{key}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(tokens.to_json(), fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename durable
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    @contextlib.contextmanager
    def lock(self, key: str, timeout: float = 60.0) -> Iterator[None]:
        self._ensure_dir()
        lock_path = self.directory / f"{key}.lock"
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                deadline = time.monotonic() + timeout
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() >= deadline:
                            raise RetryableError(f"token store lock {lock_path} busy for {timeout:g}s") from None
                        time.sleep(0.02)
            yield
        finally:
            if fcntl is not None:
                with contextlib.suppress(OSError):
                    fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def default_token_store() -> TokenStore:
    """The store used when a connector is given none (see the module docstring for the location)."""
    if os.environ.get("BROKER_TOKEN_STORE", "").lower() == "memory":
        return MemoryTokenStore()
    directory = os.environ.get("BROKER_TOKEN_DIR") or str(
        Path(os.environ.get("BROKER_DATA_DIR") or ".broker-data") / "tokens"
    )
    return FileTokenStore(directory)


# --------------------------------------------------------------------------- token endpoint
def _error_code(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("error") or "") if isinstance(body, dict) else ""


async def _token_request(
    http: httpx.AsyncClient,
    token_url: str,
    form: dict[str, str],
    *,
    client_id: str,
    client_secret: SecretStr | None,
    auth_method: str,
    what: str,
    hint: str = "",
    previous_refresh: SecretStr | None = None,
) -> TokenSet:
    data = dict(form)
    auth: httpx.Auth | httpx._client.UseClientDefault = httpx.USE_CLIENT_DEFAULT
    if client_secret is not None and auth_method == "basic":
        auth = httpx.BasicAuth(client_id, client_secret.get_secret_value())
    else:
        data["client_id"] = client_id
        if client_secret is not None:
            data["client_secret"] = client_secret.get_secret_value()
    try:
        resp = await http.post(token_url, data=data, auth=auth, headers={"Accept": "application/json"})
    except (httpx.TimeoutException, httpx.TransportError) as exc:
        # A lost refresh response may have rotated the token server-side; providers keep the old one
        # usable for a grace period, so a retry is the right move.
        raise RetryableError(f"{what}: no response from the token endpoint ({type(exc).__name__})") from None
    if resp.status_code == 429:
        raw = resp.headers.get("Retry-After")
        try:
            retry_after = float(raw) if raw is not None else 60.0
        except ValueError:
            retry_after = 60.0
        raise RateLimitedError(f"{what}: 429 rate limited, retry after {retry_after:g}s", retry_after=retry_after)
    if resp.status_code >= 500:
        raise RetryableError(f"{what}: HTTP {resp.status_code}", http_status=resp.status_code)
    if resp.status_code != 200:
        code = _error_code(resp) or "no error code"
        message = f"{what} refused (HTTP {resp.status_code} {code}) for client_id {client_id}{hint}"
        if code == "invalid_grant" and form.get("grant_type") == "refresh_token":
            # RFC 6749 section 5.2: the refresh token is invalid, expired, revoked or was issued to another client
            raise ReauthRequiredError(message, http_status=resp.status_code)
        raise AuthError(message, http_status=resp.status_code)
    try:
        body = resp.json()
    except ValueError:
        raise AuthError(f"{what}: malformed token response", http_status=resp.status_code) from None
    if not isinstance(body, dict):
        raise AuthError(f"{what}: malformed token response", http_status=resp.status_code)
    return TokenSet.from_token_response(body, previous_refresh=previous_refresh)


async def refresh_grant(
    http: httpx.AsyncClient,
    token_url: str,
    *,
    client_id: str,
    client_secret: SecretStr | None,
    refresh_token: SecretStr,
    auth_method: str = "basic",
    what: str = "token refresh",
    hint: str = "",
) -> TokenSet:
    """``grant_type=refresh_token`` at ``token_url``. ``auth_method``: ``basic`` (HTTP Basic
    client_id:secret) or ``post`` (form fields). Raises :class:`ReauthRequiredError` (``invalid_grant``:
    the refresh token is dead), :class:`AuthError` (other 400/401: ``invalid_client``...),
    :class:`RateLimitedError`, :class:`RetryableError`.
    A response without a new refresh token keeps the old one."""
    return await _token_request(
        http,
        token_url,
        {"grant_type": "refresh_token", "refresh_token": refresh_token.get_secret_value()},
        client_id=client_id,
        client_secret=client_secret,
        auth_method=auth_method,
        what=what,
        hint=hint,
        previous_refresh=refresh_token,
    )


async def exchange_code(
    http: httpx.AsyncClient,
    token_url: str,
    *,
    client_id: str,
    client_secret: SecretStr | None,
    code: str,
    redirect_uri: str,
    code_verifier: str | None = None,
    auth_method: str = "basic",
) -> TokenSet:
    """``grant_type=authorization_code`` (with the PKCE ``code_verifier`` when given)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
    if code_verifier:
        form["code_verifier"] = code_verifier
    return await _token_request(
        http,
        token_url,
        form,
        client_id=client_id,
        client_secret=client_secret,
        auth_method=auth_method,
        what="authorization code exchange",
    )


# --------------------------------------------------------------------------- single-flight manager
RefreshFn = Callable[[SecretStr | None], Awaitable[TokenSet]]


class OAuth2TokenManager:
    """Access tokens of one store key (one connection, :func:`token_key`), refreshed single-flight across
    coroutines, connectors (tenants sharing the connection) and processes.

    ``refresh(refresh_token)`` performs the grant (usually :func:`refresh_grant`) and returns the new
    :class:`TokenSet`; it receives ``None`` for grants without a refresh token (client credentials,
    when ``seed`` is ``None``). ``seed()`` returns the configured refresh token (from the
    environment) or raises :class:`ConfigError` naming the variable; it is only consulted when
    needed. ``on_rotate(new_refresh_token)`` (sync or async) is called after a rotation, once the
    new token is saved.

    Refresh-token choice: the stored (newest) token first; the configured one first instead when it
    is new (its fingerprint differs from the one the stored set descends from). When the first
    candidate is refused (:class:`AuthError`), the other one is tried. The configured token the
    stored one was rotated from is spent: it is not presented again (a provider that detects reuse
    may revoke the whole chain).

    A refresh token refused with ``invalid_grant`` (:class:`ReauthRequiredError`) is remembered in
    the store (:attr:`TokenSet.refused`): while every candidate is a refused one the manager raises
    :class:`ReauthRequiredError` **without calling the provider**, for every tenant and process
    sharing the key, until new tokens are stored (``broker connectors authorize``) or a new token is
    configured. :meth:`reauth_required` asks the same question of the store alone.

    ``legacy_keys``: keys older versions stored these tokens under (per tenant); read once when the
    key holds nothing, and copied to it.
    """

    def __init__(
        self,
        *,
        key: str,
        store: TokenStore,
        refresh: RefreshFn,
        seed: Callable[[], SecretStr] | None = None,
        on_rotate: Callable[[str], Any] | None = None,
        margin: float = 60.0,
        lock_timeout: float = 60.0,
        legacy_keys: tuple[str, ...] = (),
    ):
        self.key = key
        self.legacy_keys = tuple(k for k in legacy_keys if k != key)
        self.store = store
        self._refresh_fn = refresh
        self._seed_fn = seed
        self.on_rotate = on_rotate
        self.margin = margin
        self.lock_timeout = lock_timeout
        self._tokens: TokenSet | None = None
        self._alock: asyncio.Lock | None = None
        self._alock_loop: asyncio.AbstractEventLoop | None = None
        self.refreshes = 0  # grants performed by this manager (for tests and metrics)
        self._seen: list[str] = []

    @property
    def tokens(self) -> TokenSet | None:
        """The token set in use (``None`` before the first call)."""
        return self._tokens

    def known_secrets(self) -> list[str]:
        """Every token value this manager has handled (for scrubbing messages)."""
        return list(self._seen)

    def _remember(self, tokens: TokenSet | None) -> None:
        if tokens is None:
            return
        for secret in (tokens.access_token, tokens.refresh_token):
            value = _reveal(secret)
            if value and value not in self._seen:
                self._seen.append(value)

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._alock is None or self._alock_loop is not loop:
            self._alock, self._alock_loop = asyncio.Lock(), loop
        return self._alock

    @staticmethod
    def _same(a: SecretStr | str | None, b: SecretStr | str | None) -> bool:
        return a is not None and b is not None and _reveal(a) == _reveal(b)

    async def access_token(self, *, stale: SecretStr | str | None = None) -> SecretStr:
        """A valid access token. ``stale``: the token that was just refused (401); a token equal to it
        is never returned again — it is refreshed, once, by whichever caller gets the lock first."""
        cur = self._tokens
        if cur is not None and cur.access_valid(self.margin) and not self._same(cur.access_token, stale):
            return cur.access_token  # type: ignore[return-value]
        async with self._lock():
            cur = self._tokens
            if cur is not None and cur.access_valid(self.margin) and not self._same(cur.access_token, stale):
                return cur.access_token  # type: ignore[return-value]
            lock_cm = self.store.lock(self.key, self.lock_timeout)
            acquiring = asyncio.ensure_future(asyncio.to_thread(lock_cm.__enter__))
            try:
                await asyncio.shield(acquiring)
            except asyncio.CancelledError:
                # release the cross-process lock as soon as the thread gets it
                acquiring.add_done_callback(
                    lambda f: None if f.cancelled() or f.exception() else lock_cm.__exit__(None, None, None)
                )
                raise
            try:
                stored = await asyncio.to_thread(self._load)
                self._remember(stored)
                if (
                    stored is not None
                    and stored.access_valid(self.margin)
                    and not self._same(stored.access_token, stale)
                ):
                    # another process or connector refreshed while we waited (or before we started): adopt it
                    self._tokens = stored
                    return stored.access_token  # type: ignore[return-value]
                previous = stored if stored is not None else cur
                new = await self._refresh_locked(previous)
                await asyncio.to_thread(self.store.save, self.key, new)
                self._tokens = new
                self._remember(new)
            finally:
                lock_cm.__exit__(None, None, None)
        old_refresh = previous.refresh_token if previous is not None else None
        if new.refresh_token is not None and not self._same(new.refresh_token, old_refresh) and self.on_rotate:
            try:
                result = self.on_rotate(new.refresh_token.get_secret_value())
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - the token is already saved; a callback failure must not lose it
                log.error("token %s: on_rotate callback failed: %s", self.key, type(exc).__name__)
        return new.access_token  # type: ignore[return-value]

    def _load(self) -> TokenSet | None:
        """The stored set (caller holds the store lock); when there is none, the newest under a legacy key,
        copied to :attr:`key`."""
        stored = self.store.load(self.key)
        if stored is not None or not self.legacy_keys:
            return stored
        legacy = [found for found in map(self.store.load, self.legacy_keys) if found is not None]
        if not legacy:
            return None
        newest = max(legacy, key=lambda t: t.obtained_at)
        self.store.save(self.key, newest)
        log.info("token %s: adopted the tokens stored under an older per-tenant key", self.key)
        return newest

    def _seed(self) -> tuple[SecretStr | None, ConfigError | None]:
        """The configured refresh token, or the :class:`ConfigError` saying why there is none."""
        if self._seed_fn is None:
            return None, None
        try:
            return self._seed_fn(), None
        except ConfigError as exc:
            return None, exc

    def _candidates(self, previous: TokenSet | None, seed: SecretStr | None) -> list[SecretStr]:
        """Refresh tokens worth presenting, in order (class docstring), without the refused ones."""
        candidates: list[SecretStr] = []
        if previous is not None and previous.refresh_token is not None:
            candidates.append(previous.refresh_token)
        if seed is not None and not any(self._same(seed, c) for c in candidates):
            seed_fp = fingerprint(seed)
            known = previous.seed_fingerprint if previous is not None else None
            if previous is None or (known is not None and known != seed_fp):
                candidates.insert(0, seed)  # new in the environment: an operator put it there
            elif known is None or previous.refresh_token is None:
                # A stored set saved by `broker connectors authorize` has no seed fingerprint: it wins.
                candidates.append(seed)
            # else: the stored token was rotated from this seed, which is spent
        refused = set(previous.refused) if previous is not None else set()
        return [c for c in candidates if fingerprint(c) not in refused]

    def _reauth_error(self, refused: TokenSet) -> ReauthRequiredError:
        reason = refused.refused_reason or "refresh token refused"
        return ReauthRequiredError(
            f"{reason} [connection {self.key} needs re-authorisation: the provider refused every refresh token "
            "known; not asked again until new tokens are stored]",
            http_status=400,
        )

    def reauth_required(self) -> ReauthRequiredError | None:
        """Whether the connection needs re-authorisation, from the store alone (no call to the provider).

        The :class:`ReauthRequiredError` when the stored set records refused refresh tokens, holds no
        valid access token and neither it nor the configured token offers one not refused yet;
        ``None`` otherwise (never refused, or new tokens stored / configured since).
        """
        stored = self.store.load(self.key)
        if stored is None or not stored.refused or stored.access_valid(self.margin) or self._seed_fn is None:
            return None
        seed, _ = self._seed()
        return None if self._candidates(stored, seed) else self._reauth_error(stored)

    async def _refresh_locked(self, previous: TokenSet | None) -> TokenSet:
        seed, seed_error = self._seed()
        seed_fp = fingerprint(seed)
        candidates: list[SecretStr | None]
        if self._seed_fn is None:
            candidates = [None]  # client-credentials style grant
        else:
            candidates = list(self._candidates(previous, seed))
            if not candidates and previous is not None and previous.refused:
                raise self._reauth_error(previous)
            if not candidates:
                raise seed_error or ConfigError(f"no refresh token for {self.key}: run `broker connectors authorize`")
        refused = list(previous.refused) if previous is not None else []
        last: AuthError | None = None
        for refresh_token in candidates:
            self._remember(TokenSet(refresh_token=refresh_token) if refresh_token is not None else None)
            try:
                new = await self._refresh_fn(refresh_token)
            except AuthError as exc:
                last = exc
                if isinstance(exc, ReauthRequiredError) and refresh_token is not None:
                    refused.append(fingerprint(refresh_token) or "")
                log.info(
                    "token %s: refresh refused (%s %s)%s",
                    self.key,
                    exc.http_status,
                    exc.error_class,
                    "; trying the other refresh token" if refresh_token is not candidates[-1] else "",
                )
                continue
            self.refreshes += 1
            if new.refresh_token is None and refresh_token is not None:
                new = replace(new, refresh_token=refresh_token)
            inherited = (
                seed_fp
                if (seed is not None and self._same(refresh_token, seed))
                else (previous.seed_fingerprint if previous is not None else seed_fp)
            )
            return replace(new, seed_fingerprint=inherited or seed_fp)
        assert last is not None
        if isinstance(last, ReauthRequiredError) and len(refused) > (len(previous.refused) if previous else 0):
            await self._save_refusal(previous, tuple(refused), seed_fp, last)
        raise last

    async def _save_refusal(
        self, previous: TokenSet | None, refused: tuple[str, ...], seed_fp: str | None, error: AuthError
    ) -> None:
        """Remember the refused refresh tokens in the store (caller holds its lock) so no caller presents them again."""
        marker = TokenSet(
            refresh_token=previous.refresh_token if previous is not None else None,
            scope=previous.scope if previous is not None else None,
            seed_fingerprint=(previous.seed_fingerprint if previous is not None else None) or seed_fp,
            refused=refused,
            refused_reason=str(error)[:500],
        )
        await asyncio.to_thread(self.store.save, self.key, marker)
        self._tokens = marker
        log.warning(
            "token %s: the provider refused the refresh token (invalid_grant): needs re-authorisation", self.key
        )


# --------------------------------------------------------------------------- authorization-code flow
@dataclass(frozen=True)
class OAuth2Config:
    """What ``broker connectors authorize`` needs from a connector (:meth:`Connector.oauth2_config`)."""

    authorize_url: str
    token_url: str
    client_id: str
    client_secret: SecretStr | None
    scopes: tuple[str, ...]
    store_key: str
    auth_method: str = "basic"
    extra_params: dict[str, str] = field(default_factory=dict)
    use_pkce: bool = True


@dataclass
class AuthorizationResult:
    tokens: TokenSet
    store_location: str
    redirect_uri: str


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for PKCE S256 (RFC 7636)."""
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(48)).rstrip(b"=").decode()
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


_DONE_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>broker</title>"
    b"<p>Authorization received. You can close this window and return to the terminal.</p>"
)


async def authorization_code_flow(
    config: OAuth2Config,
    store: TokenStore,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 300.0,
    show_url: Callable[[str], None] = print,
    open_browser: bool = True,
) -> AuthorizationResult:
    """Run the authorization-code flow with a loopback redirect and save the tokens in ``store``.

    Listens on ``http://{host}:{port}/callback`` (``port=0``: a free port — providers that require
    a registered redirect URI need a fixed ``port``), shows the authorization URL (and opens a
    browser when ``open_browser``), waits up to ``timeout`` seconds for the redirect, checks
    ``state``, exchanges the code (PKCE S256) and saves the tokens under ``config.store_key``.
    Raises :class:`AuthError` (denied, state mismatch, exchange refused) or ``TimeoutError``.
    Tokens are never printed.
    """
    loop = asyncio.get_running_loop()
    received: asyncio.Future[dict[str, str]] = loop.create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await asyncio.wait_for(reader.readline(), 10)).decode("latin-1")
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.split(" ")
            target = parts[1] if len(parts) > 1 else "/"
            url = httpx.URL(target)
            if url.path != "/callback":
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            params = dict(url.params.items())
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: "
                + str(len(_DONE_PAGE)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + _DONE_PAGE
            )
            if not received.done():
                received.set_result(params)
        except (TimeoutError, ConnectionError, ValueError):
            pass
        finally:
            with contextlib.suppress(Exception):
                await writer.drain()
                writer.close()

    server = await asyncio.start_server(handle, host, port)
    try:
        bound_port = server.sockets[0].getsockname()[1]
        redirect_uri = f"http://{host}:{bound_port}/callback"
        state = secrets.token_urlsafe(24)
        url, verifier = authorization_request(config, redirect_uri, state)
        show_url(url)
        if open_browser:
            with contextlib.suppress(Exception):
                import webbrowser

                webbrowser.open(url)
        try:
            answer = await asyncio.wait_for(received, timeout)
        except TimeoutError:
            raise TimeoutError(f"no authorization redirect to {redirect_uri} within {timeout:g}s") from None
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
    return await complete_authorization(
        config, store, answer, state=state, verifier=verifier, redirect_uri=redirect_uri
    )


def authorization_request(config: OAuth2Config, redirect_uri: str, state: str) -> tuple[str, str | None]:
    """The provider's authorization URL for ``redirect_uri`` and ``state`` (``config``'s client, scopes and
    extra parameters; a PKCE S256 challenge when ``config.use_pkce``) and the PKCE ``code_verifier`` to keep
    for :func:`complete_authorization` (``None`` without PKCE)."""
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(config.scopes),
        "state": state,
        **config.extra_params,
    }
    verifier = None
    if config.use_pkce:
        verifier, challenge = pkce_pair()
        params.update(code_challenge=challenge, code_challenge_method="S256")
    sep = "&" if "?" in config.authorize_url else "?"
    return f"{config.authorize_url}{sep}{urlencode(params)}", verifier


async def complete_authorization(
    config: OAuth2Config,
    store: TokenStore,
    answer: Mapping[str, str],
    *,
    state: str,
    verifier: str | None,
    redirect_uri: str,
) -> AuthorizationResult:
    """The end of the authorization-code flow: ``answer`` is the redirect's query (``code`` and ``state``, or
    ``error``); checks it against the ``state`` sent, exchanges the code at ``config.token_url`` (with the
    PKCE ``verifier``) and saves the tokens under ``config.store_key`` in ``store`` (under its lock).
    Raises :class:`AuthError` (denied, state mismatch, no code, exchange refused or no refresh token),
    :class:`RetryableError` / :class:`RateLimitedError` (token endpoint unreachable). Tokens are never logged."""
    if answer.get("error"):
        raise AuthError(f"authorization refused: {answer.get('error')} {answer.get('error_description', '')}".strip())
    if not secrets.compare_digest(answer.get("state", ""), state):
        raise AuthError("authorization redirect has a wrong state parameter (possible CSRF); nothing stored")
    code = answer.get("code")
    if not code:
        raise AuthError("authorization redirect carries no code")
    async with httpx.AsyncClient(timeout=30) as http:
        tokens = await exchange_code(
            http,
            config.token_url,
            client_id=config.client_id,
            client_secret=config.client_secret,
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=verifier,
            auth_method=config.auth_method,
        )
    if tokens.refresh_token is None:
        raise AuthError("the token endpoint returned no refresh_token (is the offline_access scope requested?)")
    with store.lock(config.store_key):
        store.save(config.store_key, tokens)
    return AuthorizationResult(
        tokens=tokens, store_location=store.describe(config.store_key), redirect_uri=redirect_uri
    )


__all__ = [
    "AuthorizationResult",
    "ConnectorError",
    "FileTokenStore",
    "MemoryTokenStore",
    "OAuth2Config",
    "OAuth2TokenManager",
    "TokenSet",
    "TokenStore",
    "authorization_code_flow",
    "authorization_request",
    "complete_authorization",
    "default_token_store",
    "exchange_code",
    "fingerprint",
    "pkce_pair",
    "refresh_grant",
    "token_key",
]
