"""The HTTP base every REST connector builds on: one client, one error mapping, one auth loop.

A connector subclasses :class:`HttpConnector` and keeps only what is its billing system's own:
its settings model, its pure mapper and its endpoints (``check``, ``deliver``, ``find``, ...).
This module owns, once for all connectors (in the spirit of Singer SDK's ``RESTStream`` and
Airbyte's ``HttpStream``):

* the pooled :class:`httpx.AsyncClient` (timeouts from ``settings.timeout_seconds``; a new client
  when the connector is used from another event loop);
* transport failures mapped onto the taxonomy (:meth:`HttpConnector.send`): not sent ->
  :class:`RetryableError`; sent without an answer -> :class:`UncertainOutcomeError` (or
  :class:`RetryableError` for a call marked ``idempotent``); a bad URL -> :class:`ConfigError`;
* authentication (:class:`Auth`: :class:`ApiKeyAuth`, :class:`BasicAuth`, :class:`OAuth2Auth`)
  with **exactly one** renewal and retry after a 401 (:meth:`HttpConnector.request`);
* HTTP statuses mapped through the shared table :data:`connectors.sdk.errors.DEFAULT_STATUS_ERRORS`
  with per-connector ``status_overrides`` and a :meth:`HttpConnector.classify` hook for errors a
  system reports in its body; ``Retry-After`` parsed once; remaining-quota headers reported to
  ``on_quota`` (:meth:`HttpConnector.quota`);
* secret scrubbing of every message (:meth:`Connector.scrub` over the settings' secrets and the
  auth's tokens) and one logging filter that redacts credentials in query strings of the
  ``httpx``/``httpcore`` request logs (:func:`install_log_redaction`).

Example (a connector with an API key in a header)::

    class AcmeConnector(HttpConnector):
        name, label = "acme", "Acme"
        Settings = AcmeSettings

        def make_auth(self) -> Auth:
            return ApiKeyAuth(lambda: self.secret("api_key_env"), header="X-Api-Key", scheme=None)

        async def find(self, number: str) -> ExternalInvoice | None:
            resp = await self.request("GET", self.url(self.settings.api_url, "/invoices"), params={"number": number})
            self.raise_for_status(resp, f"Acme GET /invoices {number}")
            ...
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import urljoin

import httpx
from pydantic import BaseModel, SecretStr

from connectors.sdk.errors import (
    DEFAULT_RETRY_AFTER,
    AuthError,
    ConfigError,
    ConnectorError,
    Quota,
    RateLimitedError,
    ReauthRequiredError,
    RetryableError,
    UncertainOutcomeError,
    error_for_status,
    retry_after_seconds,
)
from connectors.sdk.interface import BatchItem, Connector
from connectors.sdk.invoice import Invoice
from connectors.sdk.money import dumps, loads
from connectors.sdk.oauth2 import (
    OAuth2Config,
    OAuth2TokenManager,
    RefreshFn,
    TokenSet,
    TokenStore,
    default_token_store,
    refresh_grant,
    token_key,
)

log = logging.getLogger("connectors.sdk.http")

#: Query parameters whose values are credentials (redacted in log lines by :class:`QuerySecretsFilter`).
SECRET_QUERY_PARAMS = (
    "access_token",
    "api_key",
    "apikey",
    "client_secret",
    "password",
    "refresh_token",
    "code",
    "token",
)
_SECRET_QUERY = re.compile(r"(?i)\b(" + "|".join(SECRET_QUERY_PARAMS) + r")=([^&\s\"']+)")
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_NO_ANSWER = (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.WriteTimeout)


def redact_query(text: str) -> str:
    """``text`` with the value of every credential query parameter replaced by ``***``.

    ``"GET /x?api_key=abc&a=1"`` -> ``"GET /x?api_key=***&a=1"`` (names in :data:`SECRET_QUERY_PARAMS`).
    """
    return _SECRET_QUERY.sub(r"\1=***", text)


class QuerySecretsFilter(logging.Filter):
    """Rewrites a log record so credentials in query strings read ``***`` (httpx logs request URLs at INFO)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keeps the record; only its message is rewritten."""
        message = record.getMessage()
        redacted = redact_query(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


_FILTER = QuerySecretsFilter()


def install_log_redaction() -> None:
    """Attach the one :class:`QuerySecretsFilter` to the ``httpx`` and ``httpcore`` loggers (idempotent)."""
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


# --------------------------------------------------------------------------- authentication
class Auth:
    """How a request is authenticated; the base class sends no credentials.

    :meth:`apply` adds credentials to a request's ``headers``/``params`` and returns what it used
    (handed back to :meth:`renew`); :meth:`renew` runs after a 401 and says whether one retry may
    follow; :meth:`secrets` lists the values to scrub from messages.
    """

    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> SecretStr | None:
        """Add credentials in place; return the credential used (``None``: none)."""
        del headers, params
        return None

    async def renew(self, used: SecretStr | None) -> bool:
        """After a 401 with ``used``: get new credentials; ``True`` when a retry can succeed."""
        del used
        return False

    def reauth_required(self) -> ReauthRequiredError | None:
        """Whether the credentials are known dead until someone re-authorises (no network call); base: never."""
        return None

    def secrets(self) -> list[str]:
        """Secret values this auth holds (for scrubbing)."""
        return []


def _place(
    value: str,
    headers: dict[str, str],
    params: dict[str, str],
    *,
    header: str | None,
    scheme: str | None,
    query: str | None,
) -> None:
    if query is not None:
        params[query] = value
    if header is not None:
        headers[header] = f"{scheme} {value}" if scheme else value


class ApiKeyAuth(Auth):
    """A static key from ``key()`` in a header (``Authorization: Bearer <key>`` by default) or a query parameter.

    ``header=None`` with ``query="api_key"`` sends ``?api_key=<key>`` (the log filter redacts it).
    Keys do not renew: a 401 is final (:class:`AuthError`).
    """

    def __init__(
        self,
        key: Callable[[], SecretStr],
        *,
        header: str | None = "Authorization",
        scheme: str | None = "Bearer",
        query: str | None = None,
    ) -> None:
        self._key_source = key
        self._key: SecretStr | None = None
        self._where = {"header": header, "scheme": scheme, "query": query}

    def key(self) -> SecretStr:
        """The key, read once from its source (:class:`ConfigError` when its variable is missing)."""
        if self._key is None:
            self._key = self._key_source()
        return self._key

    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> SecretStr | None:
        """Puts the key where configured."""
        key = self.key()
        _place(key.get_secret_value(), headers, params, **self._where)
        return key

    def secrets(self) -> list[str]:
        """The key once it has been read."""
        return [self._key.get_secret_value()] if self._key is not None else []


class BasicAuth(Auth):
    """HTTP Basic (RFC 7617) with ``username`` and the secret from ``password()``; no renewal."""

    def __init__(self, username: str, password: Callable[[], SecretStr]) -> None:
        self.username = username
        self._password_source = password
        self._password: SecretStr | None = None

    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> SecretStr | None:
        """Sets ``Authorization: Basic base64(username:password)``."""
        del params
        if self._password is None:
            self._password = self._password_source()
        basic = httpx.BasicAuth(self.username, self._password.get_secret_value())
        request = next(basic.auth_flow(httpx.Request("GET", "http://localhost/")))
        headers["Authorization"] = request.headers["Authorization"]
        return self._password

    def secrets(self) -> list[str]:
        """The password once it has been read."""
        return [self._password.get_secret_value()] if self._password is not None else []


class OAuth2Auth(Auth):
    """An OAuth2 access token from a :class:`~connectors.sdk.oauth2.OAuth2TokenManager`.

    ``manager()`` builds the manager when first needed (it reads secrets lazily). The token goes in
    ``Authorization: Bearer <token>`` by default (``scheme="Zoho-oauthtoken"``, or ``header=None,
    query="access_token"``, for systems that want it elsewhere). After a 401 the token that failed
    is reported stale: the manager refreshes once, single-flight across coroutines and processes,
    or hands out the token another task already got.
    """

    def __init__(
        self,
        manager: Callable[[], OAuth2TokenManager],
        *,
        header: str | None = "Authorization",
        scheme: str | None = "Bearer",
        query: str | None = None,
    ) -> None:
        self._manager_source = manager
        self._manager: OAuth2TokenManager | None = None
        self._where = {"header": header, "scheme": scheme, "query": query}
        self._renewed: SecretStr | None = None

    @property
    def manager(self) -> OAuth2TokenManager:
        """The token manager (built on first use)."""
        if self._manager is None:
            self._manager = self._manager_source()
        return self._manager

    async def token(self, *, stale: SecretStr | None = None) -> SecretStr:
        """A valid access token (refreshed when ``stale`` is the current one or it expires)."""
        return await self.manager.access_token(stale=stale)

    async def apply(self, headers: dict[str, str], params: dict[str, str]) -> SecretStr | None:
        """Puts the current access token where configured.

        Right after :meth:`renew` it is the token the renewal got, even when that one is already close
        to expiry (``expires_in: 0``): the retry must not cost a second refresh.
        """
        token = self._renewed if self._renewed is not None else await self.token()
        self._renewed = None
        _place(token.get_secret_value(), headers, params, **self._where)
        return token

    async def renew(self, used: SecretStr | None) -> bool:
        """Marks ``used`` stale and gets a new token (raises :class:`AuthError` when the grant is refused)."""
        self._renewed = await self.token(stale=used)
        return True

    def reauth_required(self) -> ReauthRequiredError | None:
        """:meth:`OAuth2TokenManager.reauth_required` of the manager: reads the token store, calls nobody."""
        return self.manager.reauth_required()

    def secrets(self) -> list[str]:
        """Every access and refresh token the manager has seen."""
        return self._manager.known_secrets() if self._manager is not None else []


# --------------------------------------------------------------------------- the base
class HttpConnector(Connector):
    """A connector talking JSON (or form) over HTTP through one pooled client.

    Class attributes a subclass sets besides the :class:`Connector` ones: ``label`` (the system's
    name in messages, ``"Xero"``), ``status_overrides`` (status -> error class, or ``None`` for
    success, over :data:`~connectors.sdk.errors.DEFAULT_STATUS_ERRORS`), ``default_headers``,
    ``default_retry_after`` (seconds assumed for a 429 without ``Retry-After``).
    Methods it may override: :meth:`make_auth`, :meth:`problem_detail`, :meth:`classify`,
    :meth:`unauthorized_hint`, :meth:`unauthorized_error`, :meth:`status_hint`, :meth:`quota`, :meth:`decode`.

    ``on_quota`` (set by the broker) is called with a :class:`~connectors.sdk.errors.Quota` after
    every response that reports remaining calls.
    """

    label: ClassVar[str] = ""
    status_overrides: ClassVar[Mapping[int, type[ConnectorError] | None]] = {}
    default_headers: ClassVar[Mapping[str, str]] = {"Accept": "application/json"}
    default_retry_after: ClassVar[float] = DEFAULT_RETRY_AFTER
    on_quota: Callable[[Quota], Any] | None = None

    def __init__(
        self,
        settings: BaseModel | Mapping[str, Any],
        *,
        tenant: str,
        token_store: TokenStore | None = None,
        on_refresh_token: Callable[[str], Any] | None = None,
    ) -> None:
        """As :class:`Connector`; ``on_refresh_token(new_refresh_token)`` (sync or async) is kept for OAuth2
        connectors to call after each rotation (``refresh_token_auth(..., on_rotate=self.on_refresh_token)``)."""
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.on_refresh_token = on_refresh_token
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._auth: Auth | None = None
        install_log_redaction()

    @property
    def system(self) -> str:
        """The system's name in messages (``label``, else ``name``)."""
        return self.label or self.name

    # ------------------------------------------------------------------ client
    def http(self) -> httpx.AsyncClient:
        """The pooled client of the running event loop (created on first use, renewed on a new loop)."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            # Used from a new event loop (successive asyncio.run calls): the old client's connections
            # belong to a closed loop, so start afresh.
            self._client = None
        if self._client is None:
            self._client_loop = loop
            timeout = float(getattr(self.settings, "timeout_seconds", 10.0))
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout),
                headers={"User-Agent": f"maintenance-billing-broker/0.1 ({self.name} connector)"},
            )
        return self._client

    @staticmethod
    def url(base: str, path: str) -> str:
        """``base`` joined with ``path`` (``("https://a/api/", "/x")`` -> ``"https://a/api/x"``)."""
        return urljoin(base.rstrip("/") + "/", path.lstrip("/"))

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent; a client of a closed loop is dropped)."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await client.aclose()
            except RuntimeError:  # no running loop: nothing to close cleanly
                pass

    # ------------------------------------------------------------------ auth
    def make_auth(self) -> Auth:
        """The connector's :class:`Auth` (built once, on first use); default: no credentials."""
        return Auth()

    @property
    def auth(self) -> Auth:
        """The connector's :class:`Auth`."""
        if self._auth is None:
            self._auth = self.make_auth()
        return self._auth

    def secret_values(self) -> list[str]:
        """The settings' secrets and every credential the auth holds (for :meth:`scrub`)."""
        return [*super().secret_values(), *(self._auth.secrets() if self._auth is not None else [])]

    def unauthorized_hint(self) -> str:
        """Text appended to the :class:`AuthError` after a second 401 (what to check)."""
        return ""

    def reauth_required(self) -> ReauthRequiredError | None:
        """The :class:`ReauthRequiredError` while the tenant's OAuth2 connection is known to need
        re-authorisation (every refresh token it knows was refused), ``None`` otherwise or once new tokens
        are stored; answered from the token store, without calling the billing system."""
        return self.auth.reauth_required()

    def token_connection(self) -> str:
        """The OAuth2 connection this tenant's tokens belong to (the ``connection`` of :func:`token_key`).

        Default: the name of the environment variable holding the first refresh token
        (``refresh_token_env``): tenants naming the same variable, app (``client_id``) and identity
        provider reach the billing system through one authorisation, so they share one token chain
        (Xero: one connection, many organisations). Systems whose refresh token is per company
        override it (QuickBooks: the realm). Falls back to the tenant without ``refresh_token_env``.
        """
        return str(getattr(self.settings, "refresh_token_env", "") or self.tenant)

    def token_store_key(self, token_url: str, issuer: str | None = None) -> str:
        """The token-store key of this tenant's connection: ``token_key(self.name, self.token_connection(),
        issuer=issuer or token_url, client_id=settings.client_id)`` (what :meth:`refresh_token_auth` reads and
        :meth:`authorization_config` writes)."""
        client_id = str(getattr(self.settings, "client_id", ""))
        return token_key(self.name, self.token_connection(), issuer=issuer or token_url, client_id=client_id)

    def unauthorized_error(self, resp: httpx.Response, what: str) -> ConnectorError | None:
        """The error for a 401 that new credentials cannot cure (a missing scope the system reports in the
        body: Zoho code 57), raised at once by :meth:`request`; ``None`` (default): renew once and retry."""
        del resp, what
        return None

    def refresh_token_auth(
        self,
        token_url: str,
        *,
        issuer: str | None = None,
        auth_method: str = "basic",
        on_rotate: Callable[[str], Any] | None = None,
        refresh: RefreshFn | None = None,
        scheme: str | None = "Bearer",
    ) -> OAuth2Auth:
        """:class:`OAuth2Auth` for the usual rotating refresh token (RFC 6749 §6), configured from the settings.

        The settings name ``client_id``, ``client_secret_env`` and ``refresh_token_env`` (the first refresh
        token; later ones live in the token store). Tokens are kept per connection under
        :meth:`token_store_key` in ``self.token_store`` (set to
        :func:`~connectors.sdk.oauth2.default_token_store` on first use when ``None``); tokens an older
        version stored per tenant are adopted once. A refresh is
        :func:`~connectors.sdk.oauth2.refresh_grant` at ``token_url`` with client authentication ``auth_method``
        (``"basic"`` or ``"post"``); a refused grant (:class:`AuthError`; :class:`ReauthRequiredError` for
        ``invalid_grant``) names both variables.
        ``on_rotate(new_refresh_token)`` (sync or async) runs after each rotation, once the store has it.
        ``refresh``: the system's own grant instead (a token endpoint with its own error shape, extra form
        fields); ``scheme``: the ``Authorization`` scheme (``"Zoho-oauthtoken"``).
        """
        fields: Any = self.settings  # the conventional OAuth2 settings fields named above
        client_id = str(fields.client_id)
        hint = (
            f": check {fields.client_secret_env} and {fields.refresh_token_env}"
            f" (or run `broker connectors authorize {self.name}`)"
        )

        async def grant(refresh_token: SecretStr | None) -> TokenSet:
            assert refresh_token is not None  # the manager has a seed, so it always passes a refresh token
            return await refresh_grant(
                self.http(),
                token_url,
                client_id=client_id,
                client_secret=self.secret("client_secret_env"),
                refresh_token=refresh_token,
                auth_method=auth_method,
                what=f"{self.system} token refresh",
                hint=hint,
            )

        def manager() -> OAuth2TokenManager:
            if self.token_store is None:
                self.token_store = default_token_store()
            return OAuth2TokenManager(
                key=self.token_store_key(token_url, issuer),
                store=self.token_store,
                refresh=refresh or grant,
                seed=lambda: self.secret("refresh_token_env"),
                on_rotate=on_rotate,
                legacy_keys=(token_key(self.name, self.tenant, issuer=issuer or token_url, client_id=client_id),),
            )

        return OAuth2Auth(manager, scheme=scheme)

    def authorization_config(
        self,
        token_url: str,
        scopes: Sequence[str],
        *,
        authorize_url: str | None = None,
        issuer: str | None = None,
        auth_method: str = "basic",
        use_pkce: bool = True,
        secret_required: bool = True,
        extra_params: Mapping[str, str] | None = None,
    ) -> OAuth2Config:
        """The :meth:`oauth2_config` of a connector using :meth:`refresh_token_auth` with the same ``token_url``
        and ``issuer``, so ``broker connectors authorize`` stores the tokens under the key the connector reads.

        From the settings: ``client_id``, ``client_secret_env`` (:class:`ConfigError` when its variable is unset,
        unless ``secret_required`` is false: a PKCE-only app has no secret) and, unless given,
        ``authorize_url``. ``auth_method``, ``use_pkce`` and ``extra_params`` are as in
        :class:`~connectors.sdk.oauth2.OAuth2Config`.
        """
        fields: Any = self.settings  # the conventional OAuth2 settings fields named above
        client_id = str(fields.client_id)
        try:
            secret: SecretStr | None = self.secret("client_secret_env")
        except ConfigError:
            if secret_required:
                raise
            secret = None
        return OAuth2Config(
            authorize_url=authorize_url or str(fields.authorize_url),
            token_url=token_url,
            client_id=client_id,
            client_secret=secret,
            scopes=tuple(scopes),
            store_key=self.token_store_key(token_url, issuer),
            auth_method=auth_method,
            extra_params=dict(extra_params or {}),
            use_pkce=use_pkce,
        )

    # ------------------------------------------------------------------ exchanges
    async def send(self, method: str, url: str, *, idempotent: bool = False, **kwargs: Any) -> httpx.Response:
        """One unauthenticated HTTP exchange (``kwargs`` as for :meth:`httpx.AsyncClient.request`).

        Raises :class:`RetryableError` when the request was not sent (connection refused, connect or
        pool timeout), :class:`UncertainOutcomeError` when it was sent without an answer (read
        timeout, connection dropped; :class:`RetryableError` instead when ``idempotent``),
        :class:`ConfigError` for a malformed URL. Messages carry the path, never the query.
        """
        what = f"{self.system} {method} {httpx.URL(url).path}"
        try:
            return await self.http().request(method, url, **kwargs)
        except _NOT_SENT as exc:
            raise RetryableError(f"{what}: request not sent ({type(exc).__name__})") from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ConfigError(f"{what}: bad URL in settings ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            kind = "no response" if isinstance(exc, _NO_ANSWER) else "transport error"
            if idempotent:
                raise RetryableError(f"{what}: {kind} ({type(exc).__name__}); a read, safe to retry") from None
            raise UncertainOutcomeError(
                f"{what}: request sent but {kind} ({type(exc).__name__}); outcome unknown, reconcile with find()"
            ) from None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        json: Any = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """An authenticated exchange: on a 401 the auth renews exactly once and the call is repeated.

        ``json``: a body sent as ``application/json`` with :class:`~decimal.Decimal` amounts written
        exactly (:func:`connectors.sdk.money.dumps`; floats refused), not through httpx's encoder.
        ``idempotent`` defaults to ``method == "GET"`` (see :meth:`send`). A second 401 (or a 401
        the auth cannot renew) raises :class:`AuthError` with :meth:`problem_detail` and
        :meth:`unauthorized_hint`; a 401 for which :meth:`unauthorized_error` gives an error raises that
        at once. Any other status is returned: call :meth:`raise_for_status`.
        Remaining-quota headers are reported to ``on_quota``.
        """
        safe = method.upper() == "GET" if idempotent is None else idempotent
        if json is not None:
            kwargs["content"] = dumps(json)
            headers = {"Content-Type": "application/json", **(headers or {})}
        used: SecretStr | None = None
        for attempt in (1, 2):
            all_headers = {**self.default_headers, **(headers or {})}
            all_params = dict(params or {})
            used = await self.auth.apply(all_headers, all_params)
            resp = await self.send(
                method, url, headers=all_headers, params=all_params or None, idempotent=safe, **kwargs
            )
            self.report_quota(resp)
            if resp.status_code != 401:
                return resp
            final = self.unauthorized_error(resp, f"{self.system} {method} {httpx.URL(url).path}")
            if final is not None:
                raise final
            if attempt == 1:
                log.info("%s tenant=%s: 401 from %s, renewing credentials once", self.name, self.tenant, resp.url.path)
                if not await self.auth.renew(used):
                    break
        path = httpx.URL(url).path
        after = " after a token refresh" if attempt == 2 else ""
        raise AuthError(
            self.scrub(
                f"{self.system} {method} {path}: 401 Unauthorized{after}"
                f" ({self.problem_detail(resp)}){self.unauthorized_hint()}"
            ),
            http_status=401,
        )

    # ------------------------------------------------------------------ responses
    def decode(self, resp: httpx.Response) -> Any:
        """The response body as JSON with exact decimals (``None`` when empty or not JSON)."""
        if not resp.content:
            return None
        try:
            return loads(resp.content)
        except ValueError:
            return None

    def problem_detail(self, resp: httpx.Response) -> str:
        """Short, scrubbed text of an error body: common message fields of a JSON body, else the text's start."""
        body = self.decode(resp)
        if isinstance(body, dict):
            parts = [
                str(body[k])
                for k in ("error", "error_description", "message", "Message", "Title", "Detail", "detail")
                if body.get(k) and not isinstance(body[k], dict | list)
            ]
            if parts:
                return self.scrub(": ".join(parts))[:300]
        return self.scrub(resp.text[:200]) if resp.text else "no body"

    def status_hint(self, resp: httpx.Response) -> str:
        """Text appended to the message of a status-table error for ``resp`` (a 403's what-to-check, a 429's
        documented limit); default none."""
        del resp
        return ""

    def classify(self, resp: httpx.Response, what: str) -> ConnectorError | None:
        """A system-specific error for a non-2xx ``resp`` (errors reported in the body); ``None``: use the table."""
        del resp, what
        return None

    def raise_for_status(self, resp: httpx.Response, what: str) -> None:
        """Raise the taxonomy error of a non-2xx ``resp``: :meth:`classify`, else the status table.

        ``what`` names the call (``"Xero PUT Invoices ACME-1"``); the message adds the status and
        :meth:`problem_detail` and :meth:`status_hint`, scrubbed. A 429 carries ``retry_after`` from
        ``Retry-After`` (``default_retry_after`` when absent or unreadable).
        """
        if resp.status_code < 400:
            return
        exc = self.classify(resp, what)
        if exc is None:
            retry_after = retry_after_seconds(resp.headers.get("Retry-After"), self.default_retry_after)
            detail = self.problem_detail(resp)
            if resp.status_code == 429:
                message = f"{what}: 429 rate limited, retry after {retry_after:g}s ({detail})"
            else:
                message = f"{what}: HTTP {resp.status_code} ({detail})"
            message += self.status_hint(resp)
            exc = error_for_status(
                resp.status_code,
                self.scrub(message),
                method=resp.request.method if resp.request is not None else "GET",
                retry_after=retry_after,
                overrides=self.status_overrides,
            )
        if exc is not None:
            raise exc

    def quota(self, resp: httpx.Response) -> Quota | None:
        """Remaining calls reported by ``resp`` (default: ``X-MinLimit-Remaining``/``X-DayLimit-Remaining``)."""
        return Quota.from_headers(resp.headers)

    def report_quota(self, resp: httpx.Response) -> None:
        """Pass :meth:`quota` of ``resp`` to ``on_quota`` when both are there (advisory: failures are logged)."""
        if self.on_quota is None:
            return
        quota = self.quota(resp)
        if quota is not None:
            try:
                self.on_quota(quota)
            except Exception:
                log.debug("on_quota callback failed", exc_info=True)

    # ------------------------------------------------------------------ results
    def total_matches(self, invoice: Invoice, total: object) -> bool:
        """Whether the billing system's ``total`` (a :class:`~decimal.Decimal` or ``int``, as :meth:`decode` gives
        numbers) equals ``invoice.total``; a difference is logged as a warning on ``connectors.<name>``."""
        matches = isinstance(total, Decimal | int) and Decimal(total) == invoice.total
        if not matches:
            logging.getLogger(f"connectors.{self.name}").warning(
                "%s tenant=%s invoice=%s: %s total %s differs from ours %s",
                self.name,
                self.tenant,
                invoice.invoice_number,
                self.system,
                total,
                invoice.total,
            )
        return matches

    # ------------------------------------------------------------------ batches
    async def deliver_in_batches(
        self,
        invoices: Sequence[Invoice],
        size: int,
        send: Callable[[list[Invoice]], Awaitable[list[BatchItem]]],
    ) -> list[BatchItem]:
        """:meth:`deliver_many` over a batch endpoint: ``send(chunk)`` for each run of at most ``size`` invoices.

        ``send`` returns one :class:`BatchItem` per invoice of its chunk, in chunk order. An error it raises
        is given to every invoice of that chunk; after a :class:`RateLimitedError`, :class:`AuthError` or
        :class:`ConfigError` the later chunks are not sent and get the same error (as the default
        :meth:`deliver_many` does per invoice). Returns one item per invoice, in input order.
        """
        items: list[BatchItem] = []
        stop: ConnectorError | None = None
        step = max(1, size)
        for start in range(0, len(invoices), step):
            chunk = list(invoices[start : start + step])
            error = stop
            if error is None:
                try:
                    items.extend(await send(chunk))
                    continue
                except (RateLimitedError, AuthError, ConfigError) as exc:
                    error = stop = exc
                except ConnectorError as exc:
                    error = exc
            items.extend(BatchItem(invoice.invoice_key, error=error) for invoice in chunk)
        return items


class Pacer:
    """At most ``limit`` requests in any sliding window of ``window`` seconds, for systems that count
    requests per second or minute and answer 429 beyond (Stripe: 25/s in test mode).

    ``await pacer.wait()`` before each request; usable from successive event loops (one lock per loop).
    """

    def __init__(self, limit: float, window: float = 1.0) -> None:
        self.limit = max(1, int(limit))
        self.window = window
        self._stamps: deque[float] = deque()
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    async def wait(self) -> None:
        """Return once one more request fits in the window, counting it."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        async with self._lock[1]:
            while True:
                now = time.monotonic()
                while self._stamps and now - self._stamps[0] >= self.window:
                    self._stamps.popleft()
                if len(self._stamps) < self.limit:
                    self._stamps.append(now)
                    return
                await asyncio.sleep(self.window - (now - self._stamps[0]) + 0.001)


async def call_maybe_async(callback: Callable[..., Any | Awaitable[Any]], *args: Any) -> None:
    """Call ``callback(*args)`` and await the result when it is awaitable (for user hooks)."""
    result = callback(*args)
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        await result


__all__ = [
    "SECRET_QUERY_PARAMS",
    "ApiKeyAuth",
    "Auth",
    "BasicAuth",
    "HttpConnector",
    "OAuth2Auth",
    "Pacer",
    "QuerySecretsFilter",
    "call_maybe_async",
    "install_log_redaction",
    "redact_query",
]
