"""Xero Accounting API 2.0 connector.

Creates sales invoices with ``PUT https://api.xero.com/api.xro/2.0/Invoices`` (spec operation
``createInvoices`` in the official ``xero_accounting.yaml``; docs
https://developer.xero.com/documentation/api/accounting/invoices). Facts it relies on:

* OAuth 2.0: ``POST https://identity.xero.com/connect/token`` with ``grant_type=refresh_token`` and
  HTTP Basic ``client_id:client_secret``; access tokens last 30 minutes, refresh tokens rotate on
  every use (store the new one; the previous one stays usable for a 30-minute grace period)
  (https://developer.xero.com/faq/oauth2; spec ``xero-identity.yaml`` securitySchemes).
* Every Accounting call carries ``Authorization: Bearer``, ``xero-tenant-id`` (spec parameter
  ``requiredHeader``); organisations are listed by ``GET https://api.xero.com/connections``.
* ``Idempotency-Key`` header (≤128 characters, spec parameter ``idempotencyKey``): a repeat with the
  same method, URL and body within about 6 minutes replays the first response.
* ACCREC ``InvoiceNumber`` is unique per organisation: a second ``PUT`` with the same number gets the
  validation error ``Invoice # must be unique.``; with ``summarizeErrors=false`` the call answers 200 and
  reports errors per element (``HasErrors``/``ValidationErrors``), otherwise 400 ``ValidationException``
  (spec schemas ``Error``/``Element``/``ValidationError``).
* Limits per organisation: 60 calls/minute, 5 concurrent, 5,000/day; over a limit -> 429 with
  ``Retry-After`` and ``X-Rate-Limit-Problem`` (https://developer.xero.com/documentation/auth-and-limits/xero-api-limits).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urljoin

import httpx
from pydantic import ConfigDict, Field, SecretStr, ValidationError

from broker.config import ConfigError as BrokerConfigError
from broker.config import format_validation_error, resolve_secret
from connectors.base import (
    AuthError,
    BatchItem,
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
    UnknownAccountError,
)
from connectors.errors import Quota, retry_after_seconds
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.idempotency import XERO as XERO_KEY_RULES
from connectors.sdk.idempotency import idempotency_key as shared_idempotency_key
from connectors.sdk.invoice import Invoice
from connectors.sdk.money import dumps, loads
from connectors.sdk.oauth2 import (
    OAuth2Config,
    OAuth2TokenManager,
    TokenSet,
    TokenStore,
    default_token_store,
    refresh_grant,
    token_key,
)
from connectors.xero.mapper import invoice_from_xero, invoice_to_xero

log = logging.getLogger("connectors.xero")

#: Maximum length of Xero's ``Idempotency-Key`` header (spec parameter ``idempotencyKey``: "128 character max").
IDEMPOTENCY_KEY_MAX = 128
_KEY_CHARS = re.compile(r"^[A-Za-z0-9:._-]+$")
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9:._-]")
#: Xero's validation message for a second ACCREC invoice with an existing number.
DUPLICATE_NUMBER_MESSAGE = "Invoice # must be unique."
INVOICES_PATH = "/api.xro/2.0/Invoices"
CREDIT_NOTES_PATH = "/api.xro/2.0/CreditNotes"
#: Line fields copied from an invoice to the credit note that cancels it (spec schema ``LineItem``).
_CREDIT_LINE_FIELDS = (
    "Description",
    "Quantity",
    "UnitAmount",
    "ItemCode",
    "AccountCode",
    "TaxType",
    "TaxAmount",
    "LineAmount",
    "DiscountRate",
    "DiscountAmount",
    "Tracking",
)
CONTACTS_PATH = "/api.xro/2.0/Contacts"
#: OAuth2 scopes the connector needs (``check`` reports the missing ones) and requests when authorising.
REQUIRED_SCOPES = ("accounting.transactions", "accounting.contacts")
AUTHORIZE_SCOPES = ("offline_access", *REQUIRED_SCOPES)


class XeroSettings(ConnectorSettings):
    """Connector settings (``billing.settings`` of a tenant whose ``billing.system`` is ``xero``).

    Secrets are not stored here: ``client_secret_env`` and ``refresh_token_env`` name the
    environment variables that hold them. ``tax_types`` maps a tax-rate percentage text
    (``"23"``, ``"13"``, ``"0"``) to the organisation's Xero ``TaxType`` code; unmapped rates use
    ``OUTPUT2`` (non-zero) or ``NONE`` (zero). ``timeout_seconds`` is the per-request HTTP timeout.
    ``create_contacts``: an invoice whose client has no ``contact_id`` mapping may create the contact
    (Xero matches an existing contact by name, else creates it); ``false``: the contact must exist
    (found by tax number, e-mail or name) or the invoice fails permanently naming the client.
    ``authorize_url``: Xero's authorization endpoint (``broker connectors authorize xero``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_url: str = "https://api.xero.com"
    identity_url: str = "https://identity.xero.com"
    xero_tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret_env: str = Field(min_length=1)
    refresh_token_env: str = Field(min_length=1)
    invoice_status: Literal["DRAFT", "AUTHORISED"] = "AUTHORISED"
    sales_account_code: str = "200"
    tax_types: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: float = Field(default=10.0, gt=0)
    create_contacts: bool = True
    authorize_url: str = "https://login.xero.com/identity/connect/authorize"
    #: Overrides of Xero's documented per-organisation limits used by the broker's rate limiter
    #: (``None`` = the declared capability: 60 calls / 60 s, 5 concurrent, 5,000 / day). Lower them
    #: when other apps share the organisation's quota; only emulators need a shorter window.
    rate_limit_per_minute: int | None = Field(default=None, gt=0)
    rate_limit_window_seconds: float = Field(default=60.0, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)
    daily_limit: int | None = Field(default=None, gt=0)


def idempotency_key(invoice: Invoice, operation: str) -> str:
    """Deterministic ``Idempotency-Key`` for ``operation`` (``"create"``) on ``invoice``.

    Derived only from business identity: ``f"{tenant}:xero:{invoice_key}:{operation}"``. When that
    is longer than 128 characters (Xero's limit) or contains characters outside ``[A-Za-z0-9:._-]``,
    it becomes ``<readable prefix>:sha256:<64 hex digits of the full text>`` (≤128 characters; the
    prefix is the sanitised start of the full text).
    """
    return shared_idempotency_key(invoice.tenant, "xero", invoice.invoice_key, operation, XERO_KEY_RULES)


def credit_note_number(invoice_number: str) -> str:
    """Number of the credit note that cancels ``invoice_number``: ``ACME-WO-1001-R1`` -> ``ACME-WO-1001-R1-CN``."""
    return f"{invoice_number}-CN"


def credit_note_for(invoice: dict, number: str, *, issued: str, reason: str) -> dict[str, Any]:
    """One ``CreditNotes`` element (spec schema ``CreditNote``, ``ACCRECCREDIT``) cancelling the Xero ``invoice`` in full.

    Lines are copied exactly as Xero holds them (quantities, unit amounts, line amounts, tax types
    and tax amounts), so the credit note's totals equal the invoice's to the cent. ``AUTHORISED``,
    not allocated to the invoice (the issue asks for none; allocation is a separate call).
    """
    lines = []
    for line in invoice.get("LineItems") or []:
        item = {k: line[k] for k in _CREDIT_LINE_FIELDS if line.get(k) not in (None, [], "")}
        lines.append(item)
    contact = invoice.get("Contact") or {}
    element: dict[str, Any] = {
        "Type": "ACCRECCREDIT",
        "Contact": {"ContactID": contact["ContactID"]}
        if contact.get("ContactID")
        else {"Name": contact.get("Name", "")},
        "Date": issued,
        "LineAmountTypes": invoice.get("LineAmountTypes") or "Exclusive",
        "CreditNoteNumber": number,
        "Reference": f"Credit for {invoice.get('InvoiceNumber', '')} ({reason})"[:255],
        "Status": "AUTHORISED",
        "LineItems": lines,
    }
    if invoice.get("CurrencyCode"):
        element["CurrencyCode"] = invoice["CurrencyCode"]
    return element


def _validation_messages(element: Any) -> list[str]:
    """Messages of ``ValidationErrors`` of a response element (spec ``Element``/``ValidationError``)."""
    if not isinstance(element, dict):
        return []
    messages = []
    for err in element.get("ValidationErrors") or []:
        if isinstance(err, dict) and err.get("Message"):
            messages.append(str(err["Message"]))
    return messages


def _is_duplicate_number(messages: list[str]) -> bool:
    return any("must be unique" in m.lower() and "invoice" in m.lower() for m in messages)


class XeroConnector(Connector):
    """Xero connector: one organisation (``xero_tenant_id``) for one broker tenant.

    ``XeroConnector(settings, *, tenant, token_store=None, on_refresh_token=None)``: ``settings`` is a
    :class:`XeroSettings` or a dict validated into one (:class:`ConfigError` naming the field on
    error). Secrets are read lazily from the environment on the first token refresh and kept as
    ``SecretStr``. Tokens live in ``token_store`` (default :func:`connectors.sdk.oauth2.default_token_store`,
    a 0600 file per tenant): refreshes are single-flight across coroutines and processes and each
    rotated refresh token is saved before it is used. ``on_refresh_token(new_token)`` (sync or
    async) is also called after each rotation.

    Errors: :class:`RateLimitedError` (429, ``retry_after`` seconds), :class:`RetryableError`
    (5xx, connection not established), :class:`UncertainOutcomeError` (request sent, response
    lost: reconcile with :meth:`find`), :class:`AuthError` (token refused, 401 after one refresh,
    403), :class:`PermanentError` (validation errors, 404), :class:`ConfigError` (missing secret,
    unknown organisation).
    """

    name = "xero"
    capabilities = Capabilities(
        native_idempotency=True,
        lookup_by_reference=True,
        batch_size=50,
        amendments=True,
        oauth2=True,
        rate_limit_per_minute=60,
        max_concurrency=5,
        daily_limit=5000,
    )
    Settings = XeroSettings
    #: Set by the broker: called with a :class:`connectors.errors.Quota` after every Accounting API response.
    on_quota: Callable[[Quota], Any] | None = None

    def __init__(
        self,
        settings: XeroSettings | dict,
        *,
        tenant: str,
        token_store: TokenStore | None = None,
        on_refresh_token: Callable[[str], Any | Awaitable[Any]] | None = None,
    ):
        if isinstance(settings, dict):
            try:
                settings = XeroSettings.model_validate(settings)
            except ValidationError as exc:
                raise ConfigError(
                    "invalid Xero settings:\n" + format_validation_error(exc, prefix="billing.settings")
                ) from None
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.settings: XeroSettings = settings
        self.on_refresh_token = on_refresh_token
        self._oauth: OAuth2TokenManager | None = None
        self._contacts: ContactResolver | None = None
        self._client: httpx.AsyncClient | None = None
        self._client_secret: SecretStr | None = None
        self._refresh_token: SecretStr | None = None
        self._access_token: SecretStr | None = None
        self._access_expires_at: float = 0.0
        self._token_lock: asyncio.Lock | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"XeroConnector(tenant={self.tenant!r}, xero_tenant_id={self.settings.xero_tenant_id!r})"

    # ------------------------------------------------------------------ plumbing
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            # Used from a new event loop (e.g. successive asyncio.run calls): the old client's
            # connections belong to a closed loop, so start afresh.
            self._client, self._token_lock = None, None
        if self._client is None:
            self._client_loop = loop
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds),
                headers={"User-Agent": "maintenance-billing-broker/0.1 (xero connector)"},
            )
        return self._client

    def _url(self, base: str, path: str) -> str:
        return urljoin(base.rstrip("/") + "/", path.lstrip("/"))

    def secret_values(self) -> list[str]:
        """Client secret, refresh and access tokens this connector holds or has seen, and the ``*_env`` values."""
        values = super().secret_values()
        for secret in (self._client_secret, self._refresh_token, self._access_token):
            if secret is not None and secret.get_secret_value():
                values.append(secret.get_secret_value())
        if self._oauth is not None:
            values.extend(self._oauth.known_secrets())
        return values

    def _scrub(self, text: str) -> str:
        """Remove any secret value we hold from ``text`` (defence in depth for error messages)."""
        return self.scrub(text)

    def _secret(self, env_name: str, field: str) -> SecretStr:
        try:
            return resolve_secret(env_name, field=field)
        except BrokerConfigError as exc:
            raise ConfigError(str(exc)) from None

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One HTTP exchange; transport failures mapped onto the error taxonomy."""
        what = f"Xero {method} {httpx.URL(url).path}"
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
            raise ConfigError(f"{what}: bad URL in settings ({exc})") from None
        except httpx.TransportError as exc:
            raise UncertainOutcomeError(f"{what}: transport error ({type(exc).__name__})") from None

    # ------------------------------------------------------------------ OAuth2
    def _token_manager(self) -> OAuth2TokenManager:
        if self._oauth is None:
            store = self.token_store if self.token_store is not None else default_token_store()
            self.token_store = store
            self._oauth = OAuth2TokenManager(
                key=token_key(
                    "xero", self.tenant, issuer=self.settings.identity_url, client_id=self.settings.client_id
                ),
                store=store,
                refresh=self._refresh_grant,
                seed=lambda: self._secret(self.settings.refresh_token_env, "billing.settings.refresh_token_env"),
                on_rotate=self._rotated,
            )
        return self._oauth

    async def _refresh_grant(self, refresh_token: SecretStr | None) -> TokenSet:
        """One ``grant_type=refresh_token`` call (HTTP Basic ``client_id:client_secret``) at ``{identity_url}/connect/token``."""
        if self._client_secret is None:
            self._client_secret = self._secret(self.settings.client_secret_env, "billing.settings.client_secret_env")
        assert refresh_token is not None
        try:
            tokens = await refresh_grant(
                self._http(),
                self._url(self.settings.identity_url, "/connect/token"),
                client_id=self.settings.client_id,
                client_secret=self._client_secret,
                refresh_token=refresh_token,
                what="Xero token refresh",
                hint=f": check {self.settings.client_secret_env} and {self.settings.refresh_token_env}"
                " (or run `broker connectors authorize xero`)",
            )
        except ConnectorError as exc:
            exc.args = (self._scrub(str(exc)),)
            raise
        return tokens

    async def _rotated(self, new_refresh: str) -> None:
        log.info("xero tenant=%s: refresh token rotated", self.tenant)
        if self.on_refresh_token is not None:
            try:
                result = self.on_refresh_token(new_refresh)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # the token store already has it
                log.error("xero tenant=%s: on_refresh_token callback failed: %s", self.tenant, type(exc).__name__)

    async def _refresh(self, stale: SecretStr | None = None) -> SecretStr:
        """A fresh access token; ``stale`` is the token that just failed (401).

        Single-flight across coroutines and processes (:class:`connectors.sdk.oauth2.OAuth2TokenManager`):
        when another task or worker already replaced ``stale``, its token is used without another
        refresh. Raises :class:`AuthError` when the identity service refuses (400
        ``invalid_grant``/``invalid_client``, 401), :class:`ConfigError` when a secret's environment
        variable is missing, :class:`RetryableError`/:class:`RateLimitedError` for 5xx/429.
        """
        self._http()  # binds the HTTP client to the running loop
        manager = self._token_manager()
        token = await manager.access_token(stale=stale)
        current = manager.tokens
        self._access_token = token
        if current is not None:
            self._refresh_token = current.refresh_token
            self._access_expires_at = current.expires_at or 0.0
        return token

    async def _bearer(self) -> SecretStr:
        return await self._refresh(stale=None)

    async def _call(
        self,
        method: str,
        url: str,
        *,
        tenant_header: bool = True,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Authenticated call: on 401 refresh the token exactly once and retry; a second 401 -> :class:`AuthError`."""
        token = await self._bearer()
        for attempt in (1, 2):
            all_headers = {"Accept": "application/json", "Authorization": f"Bearer {token.get_secret_value()}"}
            if tenant_header:
                all_headers["xero-tenant-id"] = self.settings.xero_tenant_id
            all_headers.update(headers or {})
            resp = await self._send(method, url, headers=all_headers, **kwargs)
            self._report_quota(resp)
            if resp.status_code != 401:
                return resp
            if attempt == 1:
                log.info(
                    "xero tenant=%s: 401 from %s, refreshing the access token once", self.tenant, httpx.URL(url).path
                )
                token = await self._refresh(stale=token)
        raise AuthError(
            f"Xero {method} {httpx.URL(url).path}: 401 Unauthorized after a token refresh ({self._problem_detail(resp)})",
            http_status=401,
        )

    def _report_quota(self, resp: httpx.Response) -> None:
        """Pass ``X-MinLimit-Remaining`` / ``X-DayLimit-Remaining`` to ``on_quota`` (the broker's rate limiter)."""
        if self.on_quota is None:
            return
        quota = Quota.from_headers(resp.headers)
        if quota is not None:
            try:
                self.on_quota(quota)
            except Exception:
                log.debug("on_quota callback failed", exc_info=True)

    def idempotency_key(self, invoice: Invoice, operation: str) -> str:
        """The ``Idempotency-Key`` of ``operation`` on ``invoice`` (module function :func:`idempotency_key`)."""
        return idempotency_key(invoice, operation)

    # ------------------------------------------------------------------ responses
    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        try:
            return loads(resp.content)
        except ValueError:
            return None

    def _problem_detail(self, resp: httpx.Response) -> str:
        body = self._json(resp)
        if isinstance(body, dict):
            parts = [str(body[k]) for k in ("Title", "Detail", "Message") if body.get(k)]
            if parts:
                return self._scrub(": ".join(parts))[:300]
        return self._scrub(resp.text[:200]) if resp.text else "no body"

    @staticmethod
    def _rate_limited(resp: httpx.Response, what: str) -> RateLimitedError:
        retry_after = retry_after_seconds(resp.headers.get("Retry-After"), 60.0)
        problem = resp.headers.get("X-Rate-Limit-Problem", "unknown")
        return RateLimitedError(
            f"{what}: 429 rate limited ({problem} limit), retry after {retry_after:g}s", retry_after=retry_after
        )

    def _raise_for_status(self, resp: httpx.Response, what: str) -> None:
        """Map a non-2xx response onto the taxonomy (see the class docstring)."""
        status = resp.status_code
        if 200 <= status < 300:
            return
        if status == 429:
            raise self._rate_limited(resp, what)
        if status >= 500:
            raise RetryableError(f"{what}: HTTP {status} ({self._problem_detail(resp)})", http_status=status)
        if status in (401, 403):
            raise AuthError(f"{what}: HTTP {status} ({self._problem_detail(resp)})", http_status=status)
        if status == 404:
            raise PermanentError(f"{what}: HTTP 404 not found", http_status=404)
        body = self._json(resp)
        if isinstance(body, dict) and body.get("Type") == "ValidationException":
            messages = [m for el in body.get("Elements") or [] for m in _validation_messages(el)]
            detail = "; ".join(messages) or str(body.get("Message") or "validation exception")
            raise PermanentError(self._scrub(f"{what}: Xero validation failed: {detail}"), http_status=status)
        raise PermanentError(f"{what}: HTTP {status} ({self._problem_detail(resp)})", http_status=status)

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """``GET {api_url}/connections`` (identity spec ``getConnections``): the cheapest authenticated call.

        Raises :class:`UnknownAccountError` (a :class:`ConfigError`) ``unknown organisation <id>`` when
        ``xero_tenant_id`` is not among the connected organisations, :class:`AuthError` when the token
        is refused, :class:`MissingScopeError` when the granted scopes lack one of
        :data:`REQUIRED_SCOPES`, plus the transport/status errors of every call.
        """
        url = self._url(self.settings.api_url, "/connections")
        resp = await self._call("GET", url, tenant_header=False)
        self._raise_for_status(resp, "Xero GET /connections")
        body = self._json(resp)
        tenants = [str(c.get("tenantId")) for c in body or [] if isinstance(c, dict)] if isinstance(body, list) else []
        if self.settings.xero_tenant_id not in tenants:
            raise UnknownAccountError(
                f"unknown organisation {self.settings.xero_tenant_id}: this connection can reach {', '.join(tenants) or 'no organisation'}"
            )
        granted = (
            self._oauth.tokens.scopes if self._oauth is not None and self._oauth.tokens is not None else frozenset()
        )
        missing = [scope for scope in REQUIRED_SCOPES if granted and scope not in granted]
        if missing:
            raise MissingScopeError(
                f"missing scope {', '.join(missing)}: the Xero connection was authorised with "
                f"{' '.join(sorted(granted))}; run `broker connectors authorize xero --tenant {self.tenant}`",
                missing=missing,
            )

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` in Xero; an existing invoice with our number counts as delivered.

        ``PUT {api_url}/api.xro/2.0/Invoices?summarizeErrors=false&unitdp=4`` with
        ``Idempotency-Key: idempotency_key(invoice, "create")`` and body ``{"Invoices": [element]}``.
        Returns ``DeliveryResult(created=True, external_id=InvoiceID, external_number=InvoiceNumber,
        details={"SubTotal", "TotalTax", "Total" (decimal strings), "Status", "total_matches", ...})``;
        when Xero answers ``Invoice # must be unique.`` the existing invoice is looked up with
        :meth:`find` and returned with ``created=False``. Other validation errors raise
        :class:`PermanentError` (``http_status=400``) carrying Xero's messages.
        """
        invoice = await self._with_contact(invoice)
        element = invoice_to_xero(invoice, self.settings)
        key = idempotency_key(invoice, "create")
        url = self._url(self.settings.api_url, INVOICES_PATH)
        what = f"Xero PUT Invoices {invoice.invoice_number}"
        resp = await self._call(
            "PUT",
            url,
            params={"summarizeErrors": "false", "unitdp": "4"},
            content=dumps({"Invoices": [element]}),
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        body = self._json(resp)
        if resp.status_code == 400 and isinstance(body, dict) and body.get("Type") == "ValidationException":
            elements = body.get("Elements") or []
            messages = [m for el in elements for m in _validation_messages(el)]
            if _is_duplicate_number(messages):
                return await self._existing(invoice, key)
        self._raise_for_status(resp, what)
        if not isinstance(body, dict) or not isinstance(body.get("Invoices"), list) or not body["Invoices"]:
            # 2xx but unreadable: the invoice may exist, the caller reconciles with find().
            raise UncertainOutcomeError(
                f"{what}: HTTP {resp.status_code} with an unreadable body", http_status=resp.status_code
            )
        result = body["Invoices"][0]
        messages = _validation_messages(result)
        if result.get("HasErrors") or messages:
            if _is_duplicate_number(messages):
                return await self._existing(invoice, key)
            raise PermanentError(
                self._scrub(f"{what}: Xero validation failed: {'; '.join(messages) or 'HasErrors without messages'}"),
                http_status=400,
            )
        if not result.get("InvoiceID"):
            raise UncertainOutcomeError(f"{what}: response element has no InvoiceID", http_status=resp.status_code)
        total = result.get("Total")
        details = {
            "SubTotal": str(result.get("SubTotal")),
            "TotalTax": str(result.get("TotalTax")),
            "Total": str(total),
            "Status": result.get("Status"),
            "total_matches": isinstance(total, Decimal | int) and Decimal(total) == invoice.total,
            "idempotency_key": key,
        }
        if not details["total_matches"]:
            log.warning(
                "xero tenant=%s invoice=%s: Xero total %s differs from ours %s",
                self.tenant,
                invoice.invoice_number,
                total,
                invoice.total,
            )
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=str(result["InvoiceID"]),
            external_number=str(result.get("InvoiceNumber") or invoice.invoice_number),
            created=True,
            details=details,
        )

    async def _existing(self, invoice: Invoice, key: str) -> DeliveryResult:
        found = await self.find(invoice.invoice_number)
        if found is None:
            raise RetryableError(
                f"Xero reported invoice number {invoice.invoice_number} as taken but GET Invoices does not return it yet"
            )
        total = found.total
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=found.external_id,
            external_number=found.number,
            created=False,
            details={
                "Total": str(total),
                "Status": found.status,
                "total_matches": total is not None and total == invoice.total,
                "duplicate": True,
                "idempotency_key": key,
            },
        )

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """Look up our invoice number: ``GET /api.xro/2.0/Invoices?InvoiceNumbers=<n>`` (spec ``getInvoices``).

        Numbers containing a comma (the list separator) use ``where=InvoiceNumber=="<n>"`` instead.
        Returns the exact match as :class:`ExternalInvoice` (total as Decimal) or ``None``.
        """
        url = self._url(self.settings.api_url, INVOICES_PATH)
        if "," in invoice_number:
            escaped = invoice_number.replace("\\", "\\\\").replace('"', '\\"')
            params = {"where": f'InvoiceNumber=="{escaped}"', "summaryOnly": "true"}
        else:
            params = {"InvoiceNumbers": invoice_number, "summaryOnly": "true"}
        resp = await self._call("GET", url, params=params)
        self._raise_for_status(resp, f"Xero GET Invoices?InvoiceNumbers={invoice_number}")
        body = self._json(resp)
        if not isinstance(body, dict):
            raise RetryableError("Xero GET Invoices: unreadable body", http_status=resp.status_code)
        for element in body.get("Invoices") or []:
            if (
                isinstance(element, dict)
                and str(element.get("InvoiceNumber", "")) == invoice_number
                and element.get("InvoiceID")
            ):
                return invoice_from_xero(element)
        return None

    # ------------------------------------------------------------------ amendments (a new revision)
    async def amend(self, invoice: Invoice, previous: ExternalInvoice) -> DeliveryResult:
        """Replace ``previous`` (an earlier revision of the same work order, already in Xero) by ``invoice``.

        Per Xero's rules for what can still change (https://developer.xero.com/documentation/api/accounting/invoices):

        * ``DRAFT`` / ``SUBMITTED``: deleted (``POST /Invoices/{InvoiceID}`` with ``Status: DELETED``,
          spec ``updateInvoice``), then the new revision is created;
        * ``AUTHORISED`` / ``PAID`` (approved, possibly sent): a credit note (``ACCRECCREDIT``, spec
          ``createCreditNotes``) copying the previous invoice's lines exactly as Xero holds them, number
          ``<previous number>-CN``, not allocated; then the new revision is created;
        * ``VOIDED`` / ``DELETED`` / not found: only the new revision is created.

        Every step is safe to repeat: the previous invoice's status is read first, the credit note
        is looked up by its number before it is created, each call has its own ``Idempotency-Key``
        (``<tenant>:xero:<new invoice key>:credit|delete|create``). Returns :meth:`deliver`'s result
        with ``details["amendment"]`` (``credited``, ``deleted``, ``none``), ``previous_number``,
        ``credit_note_number``, ``credit_note_id``, ``credit_note_total``.
        """
        current = await self._previous(previous)
        action, details = "none", {}
        status = str(current.get("Status") or "").upper() if current else ""
        if status in ("DRAFT", "SUBMITTED"):
            await self._delete_draft(invoice, current)
            action = "deleted"
        elif status in ("AUTHORISED", "PAID"):
            details = await self._credit(invoice, current)
            action = "credited"
        result = await self.deliver(invoice)
        merged = dict(result.details or {})
        merged.update(details)
        merged.update({"amendment": action, "previous_number": previous.number, "previous_status": status or None})
        return DeliveryResult(
            result.invoice_key,
            result.external_id,
            result.external_number,
            result.created,
            attempts=result.attempts,
            details=merged,
        )

    async def _previous(self, previous: ExternalInvoice) -> dict | None:
        """The previous invoice with its lines (``GET /Invoices/{InvoiceID}``), or ``None`` when Xero has none."""
        ident = previous.external_id
        if not ident:
            found = await self.find(previous.number)
            if found is None:
                return None
            ident = found.external_id
        url = self._url(self.settings.api_url, f"{INVOICES_PATH}/{ident}")
        resp = await self._call("GET", url, params={"unitdp": "4"})
        if resp.status_code == 404:
            return None
        self._raise_for_status(resp, f"Xero GET Invoices/{ident}")
        body = self._json(resp)
        invoices = body.get("Invoices") if isinstance(body, dict) else None
        if not isinstance(invoices, list) or not invoices or not isinstance(invoices[0], dict):
            raise RetryableError(f"Xero GET Invoices/{ident}: unreadable body", http_status=resp.status_code)
        return invoices[0]

    async def _delete_draft(self, invoice: Invoice, current: dict) -> None:
        ident = str(current["InvoiceID"])
        key = idempotency_key(invoice, "delete")
        resp = await self._call(
            "POST",
            self._url(self.settings.api_url, f"{INVOICES_PATH}/{ident}"),
            params={"unitdp": "4"},
            content=dumps({"Invoices": [{"InvoiceID": ident, "Status": "DELETED"}]}),
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        self._raise_for_status(resp, f"Xero POST Invoices/{ident} (delete draft {current.get('InvoiceNumber')})")

    async def find_credit_note(self, number: str) -> dict | None:
        """``GET /api.xro/2.0/CreditNotes?where=CreditNoteNumber=="<n>"`` (spec ``getCreditNotes``): the exact match or None."""
        escaped = number.replace("\\", "\\\\").replace('"', '\\"')
        resp = await self._call(
            "GET",
            self._url(self.settings.api_url, CREDIT_NOTES_PATH),
            params={"where": f'CreditNoteNumber=="{escaped}"'},
        )
        self._raise_for_status(resp, f"Xero GET CreditNotes {number}")
        body = self._json(resp)
        for element in (body.get("CreditNotes") or []) if isinstance(body, dict) else []:
            if (
                isinstance(element, dict)
                and str(element.get("CreditNoteNumber", "")) == number
                and element.get("CreditNoteID")
            ):
                return element
        return None

    async def _credit(self, invoice: Invoice, current: dict) -> dict:
        """A credit note cancelling ``current`` in full (created once; an existing one is reused)."""
        prev_number = str(current.get("InvoiceNumber") or "")
        number = credit_note_number(prev_number)
        existing = await self.find_credit_note(number)
        if existing is None:
            element = credit_note_for(
                current, number, issued=invoice.issue_date.isoformat(), reason=f"replaced by {invoice.invoice_number}"
            )
            what = f"Xero PUT CreditNotes {number}"
            resp = await self._call(
                "PUT",
                self._url(self.settings.api_url, CREDIT_NOTES_PATH),
                params={"summarizeErrors": "false", "unitdp": "4"},
                content=dumps({"CreditNotes": [element]}),
                headers={"Idempotency-Key": idempotency_key(invoice, "credit"), "Content-Type": "application/json"},
            )
            self._raise_for_status(resp, what)
            body = self._json(resp)
            notes = body.get("CreditNotes") if isinstance(body, dict) else None
            if not isinstance(notes, list) or not notes or not isinstance(notes[0], dict):
                raise UncertainOutcomeError(
                    f"{what}: HTTP {resp.status_code} with an unreadable body", http_status=resp.status_code
                )
            existing = notes[0]
            messages = _validation_messages(existing)
            if existing.get("HasErrors") or messages:
                if any("must be unique" in m.lower() for m in messages):
                    found = await self.find_credit_note(number)
                    if found is None:
                        raise RetryableError(f"{what}: number reported taken but not found yet")
                    existing = found
                else:
                    raise PermanentError(
                        self._scrub(f"{what}: Xero validation failed: {'; '.join(messages)}"), http_status=400
                    )
            if not existing.get("CreditNoteID"):
                raise UncertainOutcomeError(
                    f"{what}: response element has no CreditNoteID", http_status=resp.status_code
                )
        total = existing.get("Total")
        if (
            total is not None
            and current.get("Total") is not None
            and Decimal(str(total)) != Decimal(str(current["Total"]))
        ):
            log.warning(
                "xero tenant=%s credit note %s total %s differs from invoice %s total %s",
                self.tenant,
                number,
                total,
                prev_number,
                current.get("Total"),
            )
        return {
            "credit_note_number": number,
            "credit_note_id": str(existing["CreditNoteID"]),
            "credit_note_total": str(total),
        }

    # ------------------------------------------------------------------ batch create
    async def deliver_many(self, invoices: Sequence[Invoice]) -> list[BatchItem]:
        """Create many invoices, up to ``capabilities.batch_size`` (50) per ``PUT Invoices?summarizeErrors=false``.

        One :class:`BatchItem` per invoice, in input order. Xero answers 200 with one element per
        invoice: created ones become results, ``Invoice # must be unique.`` is looked up and returned
        with ``created=False``, other ``ValidationErrors`` become that item's :class:`PermanentError`.
        An error of the whole call (429, 5xx, timeout, 401/403) is given to every invoice of that
        call; after a :class:`RateLimitedError`, :class:`AuthError` or :class:`ConfigError` the later
        chunks are not sent and get the same error. The ``Idempotency-Key`` of a chunk is derived
        from its invoice keys (a chunk of one uses :func:`idempotency_key`, exactly like :meth:`deliver`).
        """
        items: list[BatchItem | None] = [None] * len(invoices)
        stop: ConnectorError | None = None
        size = max(1, self.capabilities.batch_size)
        indexed = list(enumerate(invoices))
        for start in range(0, len(indexed), size):
            chunk = indexed[start : start + size]
            if stop is None:
                try:
                    for index, item in await self._put_chunk(chunk):
                        items[index] = item
                    continue
                except (RateLimitedError, AuthError, ConfigError) as exc:
                    stop = exc
                    error: ConnectorError = exc
                except ConnectorError as exc:
                    error = exc
            else:
                error = stop
            for index, invoice in chunk:
                items[index] = BatchItem(invoice.invoice_key, error=error)
        return [item for item in items if item is not None]

    async def _put_chunk(self, chunk: list[tuple[int, Invoice]]) -> list[tuple[int, BatchItem]]:
        out: list[tuple[int, BatchItem]] = []
        sendable: list[tuple[int, Invoice, dict]] = []
        for index, invoice in chunk:
            try:
                resolved = await self._with_contact(invoice)
                sendable.append((index, resolved, invoice_to_xero(resolved, self.settings)))
            except PermanentError as exc:
                out.append((index, BatchItem(invoice.invoice_key, error=exc)))
        if not sendable:
            return out
        if len(sendable) == 1:
            key = idempotency_key(sendable[0][1], "create")
        else:
            digest = hashlib.sha256("\n".join(inv.invoice_key for _, inv, _ in sendable).encode()).hexdigest()[:40]
            key = f"{self.tenant}:xero:batch:{digest}:create"
            if len(key) > IDEMPOTENCY_KEY_MAX or not _KEY_CHARS.match(key):
                key = f"batch:{hashlib.sha256(key.encode()).hexdigest()}:create"
        numbers = ", ".join(inv.invoice_number for _, inv, _ in sendable[:3]) + (" ..." if len(sendable) > 3 else "")
        what = f"Xero PUT Invoices ({len(sendable)}: {numbers})"
        resp = await self._call(
            "PUT",
            self._url(self.settings.api_url, INVOICES_PATH),
            params={"summarizeErrors": "false", "unitdp": "4"},
            content=dumps({"Invoices": [element for _, _, element in sendable]}),
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        self._raise_for_status(resp, what)
        body = self._json(resp)
        elements = body.get("Invoices") if isinstance(body, dict) else None
        if not isinstance(elements, list) or len(elements) != len(sendable):
            raise UncertainOutcomeError(
                f"{what}: HTTP {resp.status_code} without one result per invoice", http_status=resp.status_code
            )
        for (index, invoice, _), element in zip(sendable, elements):
            try:
                out.append(
                    (index, BatchItem(invoice.invoice_key, result=await self._element_result(invoice, element, key)))
                )
            except ConnectorError as exc:
                out.append((index, BatchItem(invoice.invoice_key, error=exc)))
        return out

    async def _element_result(self, invoice: Invoice, element: Any, key: str) -> DeliveryResult:
        """DeliveryResult of one response element of a batch PUT (raises the item's error)."""
        what = f"Xero PUT Invoices {invoice.invoice_number}"
        if not isinstance(element, dict):
            raise UncertainOutcomeError(f"{what}: unreadable response element")
        messages = _validation_messages(element)
        if element.get("HasErrors") or messages:
            if _is_duplicate_number(messages):
                return await self._existing(invoice, key)
            raise PermanentError(
                self._scrub(f"{what}: Xero validation failed: {'; '.join(messages) or 'HasErrors without messages'}"),
                http_status=400,
            )
        if not element.get("InvoiceID"):
            raise UncertainOutcomeError(f"{what}: response element has no InvoiceID")
        if str(element.get("InvoiceNumber") or invoice.invoice_number) != invoice.invoice_number:
            raise UncertainOutcomeError(
                f"{what}: response element is for {element.get('InvoiceNumber')}; reconcile with find()"
            )
        total = element.get("Total")
        matches = isinstance(total, Decimal | int) and Decimal(total) == invoice.total
        if not matches:
            log.warning(
                "xero tenant=%s invoice=%s: Xero total %s differs from ours %s",
                self.tenant,
                invoice.invoice_number,
                total,
                invoice.total,
            )
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=str(element["InvoiceID"]),
            external_number=str(element.get("InvoiceNumber") or invoice.invoice_number),
            created=True,
            details={
                "SubTotal": str(element.get("SubTotal")),
                "TotalTax": str(element.get("TotalTax")),
                "Total": str(total),
                "Status": element.get("Status"),
                "total_matches": matches,
                "idempotency_key": key,
                "batch": True,
            },
        )

    # ------------------------------------------------------------------ contacts (connectors.sdk.contacts)
    async def _with_contact(self, invoice: Invoice) -> Invoice:
        """``invoice`` with its contact resolved: a mapped ``contact_id`` is kept; without one the contact is
        found by tax number / e-mail / name or created (``create_contacts``), or left to Xero's own
        match-or-create by name when that is all we know; :class:`PermanentError` naming the client otherwise."""
        if invoice.contact_id:
            return invoice
        if self._contacts is None:
            self._contacts = ContactResolver(
                self, allow_create=self.settings.create_contacts, native_name_match=True, clients=self.clients
            )
        contact_id = await self._contacts.resolve(invoice)
        return invoice if contact_id is None else invoice.model_copy(update={"contact_id": contact_id})

    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """``GET /api.xro/2.0/Contacts`` (``where`` on TaxNumber / EmailAddress, ``searchTerm`` for names); exact match checked here."""
        xero_field = {"tax_number": "TaxNumber", "email": "EmailAddress", "name": "Name"}[field]
        if field == "name":
            params = {"searchTerm": value}
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            params = {"where": f'{xero_field}=="{escaped}"'}
        resp = await self._call("GET", self._url(self.settings.api_url, CONTACTS_PATH), params=params)
        self._raise_for_status(resp, f"Xero GET Contacts by {xero_field}")
        body = self._json(resp)
        for contact in (body.get("Contacts") or []) if isinstance(body, dict) else []:
            if (
                isinstance(contact, dict)
                and contact.get("ContactID")
                and contact.get("ContactStatus", "ACTIVE") == "ACTIVE"
                and same_value(field, str(contact.get(xero_field) or ""), value)
            ):
                return str(contact["ContactID"])
        return None

    async def create_contact(self, query: ContactQuery) -> str:
        """``PUT /api.xro/2.0/Contacts`` with Name, EmailAddress, TaxNumber; a name already taken is looked up."""
        element: dict[str, Any] = {"Name": query.name}
        if query.email:
            element["EmailAddress"] = query.email
        if query.tax_number:
            element["TaxNumber"] = query.tax_number
        raw_key = f"{self.tenant}:xero:contact:{query.client_id}:create"
        key = (
            raw_key
            if len(raw_key) <= IDEMPOTENCY_KEY_MAX and _KEY_CHARS.match(raw_key)
            else (f"contact:{hashlib.sha256(raw_key.encode()).hexdigest()}:create")
        )
        resp = await self._call(
            "PUT",
            self._url(self.settings.api_url, CONTACTS_PATH),
            params={"summarizeErrors": "false"},
            content=dumps({"Contacts": [element]}),
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
        )
        self._raise_for_status(resp, f"Xero PUT Contacts for client {query.client_id}")
        body = self._json(resp)
        contacts = body.get("Contacts") if isinstance(body, dict) else None
        first = contacts[0] if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict) else {}
        messages = _validation_messages(first)
        if messages and any("already assigned" in m for m in messages):
            found = await self.find_contact("name", query.name)
            if found:
                return found
        if messages or not first.get("ContactID"):
            raise PermanentError(
                self._scrub(
                    f"Xero could not create the contact of client {query.client_id} ({query.name}): "
                    f"{'; '.join(messages) or 'no ContactID in the response'}"
                ),
                http_status=400,
            )
        return str(first["ContactID"])

    # ------------------------------------------------------------------ OAuth2 authorization (broker connectors authorize)
    def oauth2_config(self) -> OAuth2Config:
        """Authorization-code flow of Xero (``login.xero.com`` authorize, ``identity.xero.com`` token, PKCE)."""
        try:
            secret = self._secret(self.settings.client_secret_env, "billing.settings.client_secret_env")
        except ConfigError:
            secret = None  # a PKCE-only app has no secret
        return OAuth2Config(
            authorize_url=self.settings.authorize_url,
            token_url=self._url(self.settings.identity_url, "/connect/token"),
            client_id=self.settings.client_id,
            client_secret=secret,
            scopes=AUTHORIZE_SCOPES,
            store_key=token_key(
                "xero", self.tenant, issuer=self.settings.identity_url, client_id=self.settings.client_id
            ),
        )

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await client.aclose()
            except RuntimeError:  # no running loop / loop mismatch: nothing to close cleanly
                pass


__all__ = ["DUPLICATE_NUMBER_MESSAGE", "XeroConnector", "XeroSettings", "idempotency_key"]
