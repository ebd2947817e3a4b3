"""PayPal Invoicing v2 connector.

Creates invoices with ``POST https://api-m.paypal.com/v2/invoicing/invoices`` (a **draft**; spec
operation ``invoices.create`` of the official ``invoicing_v2.json``, API "Invoices" 2.3) and, when the
tenant wants issued invoices, sends them with ``POST /v2/invoicing/invoices/{id}/send``
(``invoices.send``). Facts it relies on (``billing-apis.md`` §9 and the spec):

* OAuth 2.0 client credentials: ``POST /v1/oauth2/token`` with HTTP Basic ``client_id:secret`` and
  ``grant_type=client_credentials``; tokens live about 9 hours (``expires_in``) and must be cached
  (re-requesting per call triggers rate limiting). There is no refresh token: an expired token is
  replaced by requesting a new one, single-flight across coroutines *and* processes through the
  tenant's token store (:class:`connectors.sdk.oauth2.OAuth2TokenManager` with a client-credentials grant),
  so all workers of a tenant share one token. A 401 gets exactly one new token and one retry. Scope
  needed: ``https://uri.paypal.com/services/invoicing`` (spec scopes ``.../invoicing/invoices/read``
  and ``.../readwrite``).
* **No native idempotency**: PayPal's generic ``PayPal-Request-Id`` header is not declared by the
  Invoicing v2 spec, so it is not sent and not relied on. Instead: lookup before create
  (``POST /v2/invoicing/search-invoices`` with ``{"invoice_number": ...}``), our deterministic
  invoice number in ``detail.invoice_number`` (unique per PayPal account), and a rejected duplicate
  number (``DUPLICATE_INVOICE_NUMBER`` in ``details[].issue``, 422 ``UNPROCESSABLE_ENTITY`` or 400)
  is looked up and recorded as success. The send step is guarded by the invoice's status (only a
  ``DRAFT`` is sent; ``INVOICE_ALREADY_SENT`` counts as done).
* ``detail.invoice_number`` ≤25 characters and the other field limits are checked before sending
  (:mod:`connectors.paypal.mapper`, :class:`~connectors.paypal.mapper.FieldLimitError`).
* PayPal computes tax itself (``tax.amount`` is read-only); the mapper lays items out so PayPal's
  per-item, half-up rounding gives our totals, and the connector compares PayPal's ``amount.value``
  with our total before sending: a draft whose total differs is left unsent (:class:`PermanentError`).
* Errors: ``{"name", "message", "debug_id", "details": [{"field", "value", "location", "issue",
  "description"}], "links"}``; 400 ``INVALID_REQUEST``, 401 ``AUTHENTICATION_FAILURE``, 403
  ``NOT_AUTHORIZED``, 404 ``RESOURCE_NOT_FOUND``, 409 ``RESOURCE_CONFLICT``, 422
  ``UNPROCESSABLE_ENTITY``, 429 ``RATE_LIMIT_REACHED`` (no published limits; ``Retry-After`` honoured
  when present), 5xx.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal
from urllib.parse import quote, urljoin

import httpx
from pydantic import Field, SecretStr, field_validator

from connectors.base import (
    AuthError,
    Capabilities,
    ConfigError,
    Connector,
    ConnectorError,
    ConnectorSettings,
    DeliveryResult,
    ExternalInvoice,
    MissingScopeError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.errors import error_for_status, retry_after_seconds
from connectors.paypal.mapper import (
    INVOICE_NUMBER_MAX,
    dumps,
    invoice_from_paypal,
    invoice_to_paypal,
    loads,
    recipient_for,
)
from connectors.sdk.invoice import Invoice
from connectors.sdk.oauth2 import OAuth2TokenManager, TokenSet, TokenStore, default_token_store, token_key

log = logging.getLogger("connectors.paypal")

TOKEN_PATH = "/v1/oauth2/token"
INVOICES_PATH = "/v2/invoicing/invoices"
SEARCH_PATH = "/v2/invoicing/search-invoices"
#: Scope prefix a token needs (PayPal token responses list ``https://uri.paypal.com/services/invoicing``).
INVOICING_SCOPE = "https://uri.paypal.com/services/invoicing"
DUPLICATE_ISSUE = "DUPLICATE_INVOICE_NUMBER"
ALREADY_SENT_ISSUES = frozenset({"INVOICE_ALREADY_SENT", "ALREADY_SENT"})
#: Seconds to wait after a 429 without ``Retry-After`` (PayPal publishes no limits; back off a minute).
DEFAULT_RETRY_AFTER = 60.0
SEARCH_PAGE_SIZE = 100
SEARCH_MAX_PAGES = 20


class PayPalSettings(ConnectorSettings):
    """Connector settings (``billing.settings`` of a tenant whose ``billing.system`` is ``paypal``).

    * ``api_url``: ``https://api-m.paypal.com`` (live) or ``https://api-m.sandbox.paypal.com``.
    * ``client_id`` and ``client_secret_env`` (the NAME of the environment variable holding the secret).
    * ``invoice_status``: ``"SENT"`` (default: create the draft, then send it) or ``"DRAFT"`` (leave it
      for a human to review and send).
    * ``email_to_recipient``: send PayPal's invoice e-mail to the customer (``send_to_recipient``);
      false = PayPal only marks the invoice sent and it is shared by link. ``email_copy_to_invoicer``:
      ``send_to_invoicer``. ``email_subject`` / ``email_note``: the notification's subject and note.
    * ``client_emails``: our client id -> the customer's e-mail (``billing_info.email_address``);
      otherwise the tenant's ``clients.<id>.email``, otherwise a ``contact_id`` that is an e-mail
      address. PayPal has no customer objects, so there is nothing to look up or create. The client's
      ``tax_number`` is printed as ``billing_info.additional_info`` (``"<tax_number_label> <number>"``).
    * ``invoicer_email`` / ``invoicer_business_name``: ``invoicer`` block (the e-mail must be the PayPal
      account's, or PayPal answers 422 ``USER_NOT_FOUND``); omitted when unset.
    * ``tax_name``: tax label, sent as ``"<tax_name> <rate>%"`` (a tax name may carry one rate per
      invoice); ``tax_names`` overrides per rate (``{"23": "IVA 23%"}``).
    * ``unit_of_measure``: ``QUANTITY`` | ``HOURS`` | ``AMOUNT`` (PayPal uses the first item's for the
      whole invoice). ``note`` / ``terms_and_conditions``: shown on the invoice.
    * ``long_descriptions``: ``truncate`` (default: a line text over 200 + 1000 characters is cut with
      "…") or ``reject`` (:class:`PermanentError` naming the item).
    * ``rate_limit_per_minute`` / ``rate_limit_window_seconds`` / ``daily_limit`` / ``max_concurrency``:
      PayPal publishes no limits (none are declared in the capabilities); when an account's limits are
      known, set them here and the delivery policy throttles to them.
    * ``timeout_seconds``: per-request HTTP timeout.
    """

    api_url: str = "https://api-m.paypal.com"
    client_id: str = Field(min_length=1)
    client_secret_env: str = Field(min_length=1)
    invoice_status: Literal["DRAFT", "SENT"] = "SENT"
    email_to_recipient: bool = True
    email_copy_to_invoicer: bool = False
    email_subject: str | None = Field(default=None, max_length=4000)
    email_note: str | None = Field(default=None, max_length=4000)
    client_emails: dict[str, str] = Field(default_factory=dict)
    invoicer_email: str | None = Field(default=None, min_length=3, max_length=254, pattern=r"^.+@[^\"\-].+$")
    invoicer_business_name: str | None = Field(default=None, min_length=1, max_length=300)
    tax_name: str = Field(default="VAT", min_length=1, max_length=90)
    tax_names: dict[str, str] = Field(default_factory=dict)
    unit_of_measure: Literal["QUANTITY", "HOURS", "AMOUNT"] = "QUANTITY"
    note: str | None = Field(default=None, max_length=4000)
    terms_and_conditions: str | None = Field(default=None, max_length=4000)
    tax_number_label: str = Field(default="VAT", max_length=15)
    long_descriptions: Literal["truncate", "reject"] = "truncate"
    rate_limit_per_minute: int | None = Field(default=None, ge=1)
    rate_limit_window_seconds: float | None = Field(default=None, gt=0)
    daily_limit: int | None = Field(default=None, ge=1)
    max_concurrency: int | None = Field(default=None, ge=1)

    @field_validator("client_emails")
    @classmethod
    def _emails(cls, value: dict[str, str]) -> dict[str, str]:
        for client, email in value.items():
            if not (3 <= len(email) <= 254) or "@" not in email:
                raise ValueError(f"client {client!r}: {email!r} is not an e-mail address")
        return value

    @field_validator("tax_names")
    @classmethod
    def _tax_names(cls, value: dict[str, str]) -> dict[str, str]:
        for rate, name in value.items():
            if not (1 <= len(name) <= 100):
                raise ValueError(f"rate {rate!r}: tax name must be 1–100 characters (got {len(name)})")
        return value


def _issues(body: Any) -> list[dict]:
    if isinstance(body, dict) and isinstance(body.get("details"), list):
        return [d for d in body["details"] if isinstance(d, dict)]
    return []


def _has_issue(body: Any, issues: frozenset[str] | set[str]) -> bool:
    return any(str(d.get("issue", "")).upper() in issues for d in _issues(body))


class PayPalConnector(Connector):
    """PayPal Invoicing v2 connector: one PayPal business account (REST app) for one broker tenant.

    ``PayPalConnector(settings, *, tenant, token_store=None)``: ``settings`` is a :class:`PayPalSettings`
    or a dict validated into one (:class:`ConfigError` naming the field). The client secret is read
    lazily from the environment variable named by ``client_secret_env`` and kept as ``SecretStr``;
    access tokens live in ``token_store`` (default :func:`connectors.sdk.oauth2.default_token_store`).

    Errors: :class:`RateLimitedError` (429), :class:`RetryableError` (5xx, connection not established,
    a send whose answer is lost while the draft exists), :class:`UncertainOutcomeError` (create sent,
    answer lost: reconcile with :meth:`find`, or call :meth:`deliver` again, which looks the number
    up first and completes the send), :class:`AuthError` (credentials refused,
    401 after one new token, 403; :class:`MissingScopeError` from :meth:`check` without the invoicing
    scope), :class:`PermanentError` (400/404/409/422, field limits, a PayPal total that differs from
    ours), :class:`ConfigError` (missing secret, bad URL). Reads (search, GET) that lose their answer
    are :class:`RetryableError`: nothing can have changed.
    """

    name = "paypal"
    version = "0.1.0"
    # PayPal publishes no rate limits, concurrency or daily caps for Invoicing (429 RATE_LIMIT_REACHED
    # when exceeded, honour Retry-After): nothing is declared, RateLimitedError drives the back-off.
    capabilities = Capabilities(
        native_idempotency=False,
        lookup_by_reference=True,
        batch_size=1,
        amendments=False,
        rate_limit_per_minute=None,
        max_concurrency=None,
        daily_limit=None,
    )
    Settings = PayPalSettings

    def __init__(self, settings: PayPalSettings | dict, *, tenant: str, token_store: TokenStore | None = None):
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.settings: PayPalSettings
        self._oauth: OAuth2TokenManager | None = None
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._client_secret: SecretStr | None = None
        self._access_token: SecretStr | None = None

    def __repr__(self) -> str:
        return f"PayPalConnector(tenant={self.tenant!r}, client_id={self.settings.client_id!r})"

    # ------------------------------------------------------------------ plumbing
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            self._client = None
        if self._client is None:
            self._client_loop = loop
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds),
                headers={"User-Agent": "maintenance-billing-broker/0.1 (paypal connector)"},
            )
        return self._client

    def _url(self, path: str) -> str:
        return urljoin(self.settings.api_url.rstrip("/") + "/", path.lstrip("/"))

    def secret_values(self) -> list[str]:
        """The client secret (environment and in memory) and the current access token."""
        values = super().secret_values()
        for secret in (self._client_secret, self._access_token):
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        if self._oauth is not None:
            values.extend(self._oauth.known_secrets())
        return values

    def _scrub(self, text: str) -> str:
        return self.scrub(text)

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange; transport failures mapped onto the taxonomy."""
        what = f"PayPal {method} {httpx.URL(url).path}"
        try:
            return await self._http().request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise RetryableError(f"{what}: request not sent ({type(exc).__name__}: {self._scrub(str(exc))})") from None
        except (
            httpx.ReadTimeout,
            httpx.RemoteProtocolError,
            httpx.ReadError,
            httpx.WriteError,
            httpx.WriteTimeout,
        ) as exc:
            raise UncertainOutcomeError(
                f"{what}: request sent but no response ({type(exc).__name__}); outcome unknown, reconcile with find()"
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ConfigError(f"{what}: bad URL in settings.api_url ({exc})") from None
        except httpx.TransportError as exc:
            raise UncertainOutcomeError(f"{what}: transport error ({type(exc).__name__})") from None

    # ------------------------------------------------------------------ OAuth2 client credentials
    def _token_manager(self) -> OAuth2TokenManager:
        """Single-flight token manager over the tenant's token store (client-credentials grant, no seed).

        Tokens are shared through the store: workers of one tenant reuse one PayPal access token
        instead of each fetching its own (PayPal rate-limits apps that request tokens too often).
        """
        if self._oauth is None:
            store = self.token_store if self.token_store is not None else default_token_store()
            self.token_store = store
            self._oauth = OAuth2TokenManager(
                key=token_key("paypal", self.tenant, issuer=self.settings.api_url, client_id=self.settings.client_id),
                store=store,
                refresh=self._grant,
                seed=None,
                margin=300.0,
            )
        return self._oauth

    @property
    def token_requests(self) -> int:
        """Token requests this connector made (observability; tests assert single flight with it)."""
        return self._oauth.refreshes if self._oauth is not None else 0

    async def _grant(self, _refresh_token: SecretStr | None) -> TokenSet:
        """``POST /v1/oauth2/token`` with HTTP Basic ``client_id:secret`` and ``grant_type=client_credentials``.

        Raises :class:`AuthError` (401 ``invalid_client``, 400), :class:`ConfigError` (missing secret),
        :class:`RateLimitedError` / :class:`RetryableError` (429 / 5xx / no answer).
        """
        if self._client_secret is None:
            self._client_secret = self.secret("client_secret_env")
        try:
            resp = await self._send(
                "POST",
                self._url(TOKEN_PATH),
                data={"grant_type": "client_credentials"},
                auth=(self.settings.client_id, self._client_secret.get_secret_value()),
                headers={"Accept": "application/json", "Accept-Language": "en_US"},
            )
        except UncertainOutcomeError as exc:  # a lost token answer is harmless: ask again
            raise RetryableError(f"PayPal token request: {exc}") from None
        if resp.status_code == 429:
            raise self._rate_limited(resp, "PayPal token request")
        if resp.status_code >= 500:
            raise RetryableError(f"PayPal token request: HTTP {resp.status_code}", http_status=resp.status_code)
        body = self._json(resp)
        if resp.status_code != 200:
            code = ""
            if isinstance(body, dict):
                code = str(body.get("error") or body.get("name") or "")
                if body.get("error_description"):
                    code += f" ({body['error_description']})"
            raise AuthError(
                self._scrub(
                    f"PayPal token request refused (HTTP {resp.status_code} {code or 'no error code'}) for client_id "
                    f"{self.settings.client_id}: check {self.settings.client_secret_env} and settings.api_url (live vs sandbox)"
                ),
                http_status=resp.status_code,
            )
        if not isinstance(body, dict):
            raise AuthError("PayPal token request: malformed token response", http_status=resp.status_code)
        tokens = TokenSet.from_token_response(body)
        log.info("paypal tenant=%s: new access token (expires in %ss)", self.tenant, body.get("expires_in"))
        return tokens

    async def _token(self, stale: SecretStr | None = None) -> SecretStr:
        """A valid access token (a new one when none is stored, it expires within 5 minutes, or it is ``stale``)."""
        self._http()
        token = await self._token_manager().access_token(stale=stale)
        self._access_token = token
        return token

    @property
    def _scopes(self) -> frozenset[str]:
        tokens = self._oauth.tokens if self._oauth is not None else None
        return tokens.scopes if tokens is not None else frozenset()

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict | None = None,
        headers: dict[str, str] | None = None,
        read_only: bool = False,
    ) -> httpx.Response:
        """Authenticated call; a 401 gets exactly one new token and one retry, a second 401 -> :class:`AuthError`.

        ``read_only``: a lost answer is a :class:`RetryableError` (not uncertain: a read changes nothing).
        """
        if read_only:
            try:
                return await self._call(method, path, json_body=json_body, params=params, headers=headers)
            except UncertainOutcomeError as exc:
                raise RetryableError(
                    str(exc).replace("outcome unknown, reconcile with find()", "a read: retry it")
                ) from None
        url = self._url(path)
        token = await self._token()
        resp: httpx.Response | None = None
        for attempt in (1, 2):
            all_headers = {"Accept": "application/json", "Authorization": f"Bearer {token.get_secret_value()}"}
            if json_body is not None:
                all_headers["Content-Type"] = "application/json"
            all_headers.update(headers or {})
            resp = await self._send(
                method,
                url,
                params=params,
                headers=all_headers,
                content=dumps(json_body) if json_body is not None else None,
            )
            if resp.status_code != 401:
                return resp
            if attempt == 1:
                log.info("paypal tenant=%s: 401 from %s, requesting a new access token once", self.tenant, path)
                token = await self._token(stale=token)
        assert resp is not None
        raise AuthError(
            f"PayPal {method} {path}: 401 after a new access token ({self._error_text(resp)})", http_status=401
        )

    # ------------------------------------------------------------------ responses
    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        try:
            return loads(resp.content)
        except ValueError:
            return None

    def _error_text(self, resp: httpx.Response) -> str:
        """``NAME: message; ISSUE field=value: description; ... (debug_id ...)`` from a PayPal error body."""
        body = self._json(resp)
        if not isinstance(body, dict):
            return self._scrub(resp.text[:200]) if resp.text else "no body"
        parts = [": ".join(str(body[k]) for k in ("name", "message") if body.get(k))]
        for d in _issues(body):
            piece = str(d.get("issue", "?"))
            if d.get("field"):
                piece += f" {d['field']}"
                if d.get("value") is not None:
                    piece += f"={str(d['value'])[:60]!r}"
            if d.get("description"):
                piece += f": {d['description']}"
            parts.append(piece)
        if body.get("error"):
            parts.append(f"{body['error']}: {body.get('error_description', '')}")
        text = "; ".join(p for p in parts if p) or "no error details"
        if body.get("debug_id"):
            text += f" (debug_id {body['debug_id']})"
        return self._scrub(text)[:600]

    @staticmethod
    def _rate_limited(resp: httpx.Response, what: str) -> RateLimitedError:
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"), DEFAULT_RETRY_AFTER)
        return RateLimitedError(
            f"{what}: 429 RATE_LIMIT_REACHED, retry after {retry_after:g}s", retry_after=retry_after
        )

    def _raise_for_status(self, resp: httpx.Response, what: str, *, write: bool = False) -> None:
        """Map a non-2xx answer onto the taxonomy (:func:`connectors.errors.error_for_status`).

        429 -> :class:`RateLimitedError` (``Retry-After``, else 60 s); 401/403 -> :class:`AuthError`;
        409 ``RESOURCE_CONFLICT`` (a state conflict, not a duplicate: those are 422
        ``DUPLICATE_INVOICE_NUMBER``) and other 4xx -> :class:`PermanentError`; 500/504 on a write ->
        :class:`UncertainOutcomeError` (PayPal may have stored it), on a read -> :class:`RetryableError`.
        """
        status = resp.status_code
        if 200 <= status < 300:
            return
        if status == 429:
            raise self._rate_limited(resp, what)
        hint = " — the REST app may lack the Invoicing scope" if status == 403 else ""
        overrides: dict[int, type] = {409: PermanentError}
        if not write:
            overrides.update({500: RetryableError, 504: RetryableError, 408: RetryableError})
        exc = error_for_status(
            status,
            f"{what}: HTTP {status} ({self._error_text(resp)}){hint}",
            method="POST" if write else "GET",
            overrides=overrides,
        )
        if exc is not None:
            raise exc

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """Token + ``GET /v2/invoicing/invoices?page=1&page_size=1`` (spec ``invoices.list``), the cheapest invoicing read.

        Raises :class:`AuthError` when the credentials are refused, :class:`MissingScopeError` when
        the token carries no invoicing scope, :class:`ConfigError` when a secret is missing.
        """
        await self._token()
        if self._scopes and not any(s.startswith(INVOICING_SCOPE) for s in self._scopes):
            raise MissingScopeError(
                f"missing scope: the PayPal REST app {self.settings.client_id} has no {INVOICING_SCOPE} scope; "
                "enable Invoicing for the app in the PayPal developer dashboard",
                missing=(INVOICING_SCOPE,),
            )
        resp = await self._call(
            "GET", INVOICES_PATH, params={"page": "1", "page_size": "1", "total_required": "false"}, read_only=True
        )
        if resp.status_code == 403:
            raise MissingScopeError(
                f"missing scope: PayPal refused the invoicing read ({self._error_text(resp)})",
                missing=(INVOICING_SCOPE,),
                http_status=403,
            )
        self._raise_for_status(resp, "PayPal GET /v2/invoicing/invoices")

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` as a PayPal draft unless it exists, then send it when ``invoice_status`` is ``SENT``.

        1. map (field limits and PayPal's arithmetic checked: :class:`PermanentError` naming the field);
        2. look up our number (``search-invoices``); found -> ``created=False``, continue at 4;
        3. ``POST /v2/invoicing/invoices`` with ``Prefer: return=representation``; a
           ``DUPLICATE_INVOICE_NUMBER`` answer is looked up and continues at 4 with ``created=False``;
        4. compare PayPal's ``amount.value`` with our total; when sending, a difference raises
           :class:`PermanentError` and the draft stays unsent; ``DRAFT`` + ``invoice_status=SENT`` ->
           ``POST /v2/invoicing/invoices/{id}/send`` (``SENT``; ``SCHEDULED`` for a future invoice date).

        ``details``: ``status``, ``total`` (PayPal's, decimal string), ``total_matches``, ``sent``
        (this call sent it), ``emailed_to`` (the customer address PayPal e-mailed, when sent),
        ``duplicate`` + ``found_by`` (``lookup`` / ``DUPLICATE_INVOICE_NUMBER``: found instead of
        created).
        """
        recipient = recipient_for(invoice, self.settings, self.clients.get(invoice.client_id))
        payload = invoice_to_paypal(invoice, self.settings, recipient)
        if self.settings.invoice_status == "SENT" and self.settings.email_to_recipient and not recipient.email:
            log.warning(
                "paypal tenant=%s invoice=%s: no e-mail for client %s; PayPal will mark it sent without e-mailing it",
                self.tenant,
                invoice.invoice_number,
                invoice.client_id,
            )
        number = invoice.invoice_number
        existing = await self._lookup(number)
        if existing is not None:
            return await self._complete(
                invoice, existing, created=False, extra={"duplicate": True, "found_by": "lookup"}
            )
        what = f"PayPal POST /v2/invoicing/invoices {number}"
        # A lost answer raises UncertainOutcomeError: the caller reconciles with find(); the next
        # deliver() finds the draft by lookup and completes the send step.
        resp = await self._call("POST", INVOICES_PATH, json_body=payload, headers={"Prefer": "return=representation"})
        body = self._json(resp)
        if resp.status_code in (400, 409, 422) and _has_issue(body, {DUPLICATE_ISSUE}):
            found = await self._lookup(number)
            if found is None:
                raise RetryableError(
                    f"{what}: PayPal reports the number as taken but search-invoices does not return it yet",
                    http_status=resp.status_code,
                )
            return await self._complete(
                invoice, found, created=False, extra={"duplicate": True, "found_by": DUPLICATE_ISSUE}
            )
        self._raise_for_status(resp, what, write=True)
        invoice_id = self._created_id(body, resp)
        if invoice_id is None:
            raise UncertainOutcomeError(
                f"{what}: HTTP {resp.status_code} without an invoice id or link", http_status=resp.status_code
            )
        if not (
            isinstance(body, dict) and body.get("id") and isinstance(body.get("amount"), dict) and body.get("status")
        ):
            body = await self._get(invoice_id)  # minimal representation (a link): read the draft
        return await self._complete(invoice, body, created=True, extra={})

    @staticmethod
    def _created_id(body: Any, resp: httpx.Response) -> str | None:
        """Invoice id from the 201: the representation's ``id`` or the last segment of the ``href`` link."""
        if isinstance(body, dict):
            if body.get("id"):
                return str(body["id"])
            href = body.get("href")
            if not href:
                for link in body.get("links") or []:
                    if isinstance(link, dict) and link.get("rel") == "self":
                        href = link.get("href")
            if href:
                return str(href).rstrip("/").rsplit("/", 1)[-1] or None
        location = resp.headers.get("Location")
        return location.rstrip("/").rsplit("/", 1)[-1] if location else None

    async def _get(self, invoice_id: str) -> dict:
        path = f"{INVOICES_PATH}/{quote(invoice_id, safe='')}"
        resp = await self._call("GET", path, read_only=True)
        self._raise_for_status(resp, f"PayPal GET {path}")
        body = self._json(resp)
        if not isinstance(body, dict) or not body.get("id"):
            raise RetryableError(f"PayPal GET {path}: unreadable body", http_status=resp.status_code)
        return body

    async def _complete(self, invoice: Invoice, element: dict, *, created: bool, extra: dict) -> DeliveryResult:
        found = invoice_from_paypal(element)
        total = found.total
        matches = total is not None and total == invoice.total
        status = found.status
        sent = False
        if not matches:
            log.warning(
                "paypal tenant=%s invoice=%s: PayPal total %s differs from ours %s",
                self.tenant,
                invoice.invoice_number,
                total,
                invoice.total,
            )
        if status == "DRAFT" and self.settings.invoice_status == "SENT":
            if not matches:
                raise PermanentError(
                    f"PayPal draft {found.external_id} ({invoice.invoice_number}) totals {total} {invoice.currency} but ours is "
                    f"{invoice.total}: left as a draft, not sent"
                )
            status = await self._send_invoice(found.external_id, invoice)
            sent = True
            if self.settings.email_to_recipient:
                recipients = [
                    ((r or {}).get("billing_info") or {}).get("email_address")
                    for r in element.get("primary_recipients") or []
                ]
                extra = {**extra, "emailed_to": next((e for e in recipients if e), None)}
        elif status == "CANCELLED":
            log.warning(
                "paypal tenant=%s invoice=%s: existing PayPal invoice %s is CANCELLED",
                self.tenant,
                invoice.invoice_number,
                found.external_id,
            )
        details = {
            "status": status,
            "total": None if total is None else str(total),
            "total_matches": matches,
            "sent": sent,
            **extra,
        }
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=found.external_id,
            external_number=found.number or invoice.invoice_number,
            created=created,
            details=details,
        )

    def _notification(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "send_to_recipient": self.settings.email_to_recipient,
            "send_to_invoicer": self.settings.email_copy_to_invoicer,
        }
        if self.settings.email_subject:
            body["subject"] = self.settings.email_subject
        if self.settings.email_note:
            body["note"] = self.settings.email_note
        return body

    async def _send_invoice(self, invoice_id: str, invoice: Invoice) -> str:
        """``POST /v2/invoicing/invoices/{id}/send``; returns the new status (``SENT``/``SCHEDULED``).

        Retry-safe: ``INVOICE_ALREADY_SENT`` (422) / 409 mean an earlier attempt landed. A lost answer
        is checked with ``GET`` (status no longer ``DRAFT`` = sent) and otherwise reported as
        :class:`RetryableError`: the draft exists, so the next :meth:`deliver` finds it and sends it.
        """
        path = f"{INVOICES_PATH}/{quote(invoice_id, safe='')}/send"
        what = f"PayPal POST {path} ({invoice.invoice_number})"
        try:
            resp = await self._call("POST", path, json_body=self._notification())
        except UncertainOutcomeError:
            return await self._after_lost_send(invoice_id, what)
        body = self._json(resp)
        if resp.status_code == 202:
            return "SCHEDULED"
        if 200 <= resp.status_code < 300:
            return "SENT"
        if resp.status_code in (409, 422) and (resp.status_code == 409 or _has_issue(body, ALREADY_SENT_ISSUES)):
            current = await self._get(invoice_id)
            return str(current.get("status") or "SENT")
        if resp.status_code in (500, 504):  # may have been applied: read the status back
            return await self._after_lost_send(invoice_id, what)
        self._raise_for_status(resp, what, write=True)
        return "SENT"  # pragma: no cover - _raise_for_status raised

    async def _after_lost_send(self, invoice_id: str, what: str) -> str:
        """The send's answer was lost: the invoice's status tells whether it was sent.

        Still ``DRAFT`` (or unreadable) -> :class:`RetryableError`, never "uncertain": the draft
        exists, so the next :meth:`deliver` finds it by lookup and sends it (an uncertain outcome
        would be reconciled with :meth:`find` alone, which would leave the draft unsent).
        """
        try:
            current = await self._get(invoice_id)
        except ConnectorError:
            raise RetryableError(
                f"{what}: answer lost and the draft could not be re-read; the next attempt finds it and sends it"
            ) from None
        if current.get("status") != "DRAFT":
            return str(current.get("status"))
        raise RetryableError(f"{what}: answer lost and the invoice is still a draft; the next attempt sends it")

    async def _lookup(self, invoice_number: str) -> dict | None:
        """The PayPal invoice whose ``detail.invoice_number`` is exactly ``invoice_number`` (search result), or None."""
        if not invoice_number or len(invoice_number) > INVOICE_NUMBER_MAX:
            return None  # PayPal cannot hold it
        for page in range(1, SEARCH_MAX_PAGES + 1):
            resp = await self._call(
                "POST",
                SEARCH_PATH,
                json_body={"invoice_number": invoice_number},
                params={"page": str(page), "page_size": str(SEARCH_PAGE_SIZE), "total_required": "false"},
                read_only=True,
            )
            self._raise_for_status(resp, f"PayPal POST {SEARCH_PATH} {invoice_number}")
            body = self._json(resp)
            if not isinstance(body, dict):
                raise RetryableError(f"PayPal POST {SEARCH_PATH}: unreadable body", http_status=resp.status_code)
            items = [i for i in body.get("items") or [] if isinstance(i, dict)]
            exact = [
                i for i in items if i.get("id") and (i.get("detail") or {}).get("invoice_number") == invoice_number
            ]
            if exact:
                # prefer a live invoice over a cancelled one
                exact.sort(key=lambda i: i.get("status") == "CANCELLED")
                return exact[0]
            if len(items) < SEARCH_PAGE_SIZE:
                return None
        return None

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """Look up our invoice number: ``POST /v2/invoicing/search-invoices`` ``{"invoice_number": n}`` (spec ``search_data``).

        Only an exact ``detail.invoice_number`` match counts (search may match more loosely).
        Returns :class:`ExternalInvoice` (``total`` = ``amount.value`` as Decimal, ``status``) or None.
        """
        element = await self._lookup(invoice_number)
        return invoice_from_paypal(element) if element is not None else None

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await client.aclose()
            except RuntimeError:
                pass


__all__ = ["INVOICING_SCOPE", "PayPalConnector", "PayPalSettings"]
