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
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urljoin

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from broker.config import ConfigError as BrokerConfigError
from broker.config import format_validation_error, resolve_secret
from broker.invoice import Invoice
from connectors.base import (
    AuthError,
    Capabilities,
    ConfigError,
    Connector,
    DeliveryResult,
    ExternalInvoice,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.xero.mapper import dumps, invoice_from_xero, invoice_to_xero, loads

log = logging.getLogger("connectors.xero")

#: Maximum length of Xero's ``Idempotency-Key`` header (spec parameter ``idempotencyKey``: "128 character max").
IDEMPOTENCY_KEY_MAX = 128
_KEY_CHARS = re.compile(r"^[A-Za-z0-9:._-]+$")
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9:._-]")
#: Xero's validation message for a second ACCREC invoice with an existing number.
DUPLICATE_NUMBER_MESSAGE = "Invoice # must be unique."
INVOICES_PATH = "/api.xro/2.0/Invoices"


class XeroSettings(BaseModel):
    """Connector settings (``billing.settings`` of a tenant whose ``billing.system`` is ``xero``).

    Secrets are not stored here: ``client_secret_env`` and ``refresh_token_env`` name the
    environment variables that hold them. ``tax_types`` maps a tax-rate percentage text
    (``"23"``, ``"13"``, ``"0"``) to the organisation's Xero ``TaxType`` code; unmapped rates use
    ``OUTPUT2`` (non-zero) or ``NONE`` (zero). ``timeout_seconds`` is the per-request HTTP timeout.
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


def idempotency_key(invoice: Invoice, operation: str) -> str:
    """Deterministic ``Idempotency-Key`` for ``operation`` (``"create"``) on ``invoice``.

    Derived only from business identity: ``f"{tenant}:xero:{invoice_key}:{operation}"``. When that
    is longer than 128 characters (Xero's limit) or contains characters outside ``[A-Za-z0-9:._-]``,
    it becomes ``<readable prefix>:sha256:<64 hex digits of the full text>`` (≤128 characters; the
    prefix is the sanitised start of the full text).
    """
    raw = f"{invoice.tenant}:xero:{invoice.invoice_key}:{operation}"
    if len(raw) <= IDEMPOTENCY_KEY_MAX and _KEY_CHARS.match(raw):
        return raw
    digest = hashlib.sha256(raw.encode("utf-8")).hexdigest()
    suffix = f":sha256:{digest}"
    prefix = _BAD_KEY_CHARS.sub("_", raw)[: IDEMPOTENCY_KEY_MAX - len(suffix)]
    return prefix + suffix


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

    ``XeroConnector(settings, *, tenant, on_refresh_token=None)``: ``settings`` is a
    :class:`XeroSettings` or a dict validated into one (:class:`ConfigError` naming the field on
    error). Secrets are read lazily from the environment on the first token refresh and kept as
    ``SecretStr``. ``on_refresh_token(new_token)`` (sync or async) is called after each rotation so
    the caller can persist the new refresh token; the connector always uses the newest one in memory.

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
        amendments=False,
        rate_limit_per_minute=60,
        max_concurrency=5,
        daily_limit=5000,
    )
    Settings = XeroSettings

    def __init__(
        self,
        settings: XeroSettings | dict,
        *,
        tenant: str,
        on_refresh_token: Callable[[str], Any | Awaitable[Any]] | None = None,
    ):
        if isinstance(settings, dict):
            try:
                settings = XeroSettings.model_validate(settings)
            except ValidationError as exc:
                raise ConfigError(
                    "invalid Xero settings:\n" + format_validation_error(exc, prefix="billing.settings")
                ) from None
        super().__init__(settings, tenant=tenant)
        self.settings: XeroSettings = settings
        self.on_refresh_token = on_refresh_token
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

    def _scrub(self, text: str) -> str:
        """Remove any secret value we hold from ``text`` (defence in depth for error messages)."""
        for secret in (self._client_secret, self._refresh_token, self._access_token):
            if secret is not None:
                value = secret.get_secret_value()
                if value and value in text:
                    text = text.replace(value, "***")
        return text

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
        except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.WriteTimeout) as exc:
            raise UncertainOutcomeError(
                f"{what}: request sent but no response ({type(exc).__name__}); outcome unknown, reconcile with find()"
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ConfigError(f"{what}: bad URL in settings ({exc})") from None
        except httpx.TransportError as exc:
            raise UncertainOutcomeError(f"{what}: transport error ({type(exc).__name__})") from None

    # ------------------------------------------------------------------ OAuth2
    async def _refresh(self, stale: SecretStr | None = None) -> SecretStr:
        """Exchange the refresh token for a new access token (and a rotated refresh token).

        ``stale`` is the access token that just failed: when another task already replaced it, the
        new one is returned without another refresh. Raises :class:`AuthError` when the identity
        service refuses (400 ``invalid_grant``/``invalid_client``, 401), :class:`ConfigError` when a
        secret's environment variable is missing, :class:`RetryableError`/:class:`RateLimitedError`
        for 5xx/429.
        """
        self._http()  # binds the client and the lock to the running loop
        if self._token_lock is None:
            self._token_lock = asyncio.Lock()
        async with self._token_lock:
            if self._access_token is not None and self._access_token is not stale and time.monotonic() < self._access_expires_at:
                return self._access_token
            if self._client_secret is None:
                self._client_secret = self._secret(self.settings.client_secret_env, "billing.settings.client_secret_env")
            if self._refresh_token is None:
                self._refresh_token = self._secret(self.settings.refresh_token_env, "billing.settings.refresh_token_env")
            url = self._url(self.settings.identity_url, "/connect/token")
            resp = await self._send(
                "POST",
                url,
                data={"grant_type": "refresh_token", "refresh_token": self._refresh_token.get_secret_value()},
                auth=(self.settings.client_id, self._client_secret.get_secret_value()),
                headers={"Accept": "application/json"},
            )
            if resp.status_code == 429:
                raise self._rate_limited(resp, "Xero token refresh")
            if resp.status_code >= 500:
                raise RetryableError(f"Xero token refresh: HTTP {resp.status_code}", http_status=resp.status_code)
            if resp.status_code != 200:
                error = ""
                try:
                    body = resp.json()
                    error = str(body.get("error") or "") if isinstance(body, dict) else ""
                except ValueError:
                    pass
                raise AuthError(
                    self._scrub(
                        f"Xero token refresh refused (HTTP {resp.status_code} {error or 'no error code'}) for client_id "
                        f"{self.settings.client_id}: check {self.settings.client_secret_env} and {self.settings.refresh_token_env}"
                    ),
                    http_status=resp.status_code,
                )
            try:
                body = resp.json()
                access = str(body["access_token"])
                expires_in = float(body.get("expires_in", 1800))
                new_refresh = body.get("refresh_token")
            except (ValueError, KeyError, TypeError):
                raise AuthError("Xero token refresh: malformed token response", http_status=resp.status_code) from None
            self._access_token = SecretStr(access)
            # Refresh a little early, but never wait longer than the token lives.
            self._access_expires_at = time.monotonic() + expires_in - min(60.0, expires_in * 0.1)
            if new_refresh and new_refresh != self._refresh_token.get_secret_value():
                self._refresh_token = SecretStr(str(new_refresh))
                log.info("xero tenant=%s: refresh token rotated", self.tenant)
                if self.on_refresh_token is not None:
                    try:
                        result = self.on_refresh_token(str(new_refresh))
                        if inspect.isawaitable(result):
                            await result
                    except Exception as exc:  # persistence failure must not lose the in-memory token
                        log.error("xero tenant=%s: on_refresh_token callback failed: %s", self.tenant, type(exc).__name__)
            return self._access_token

    async def _bearer(self) -> SecretStr:
        if self._access_token is None or time.monotonic() >= self._access_expires_at:
            return await self._refresh(stale=self._access_token)
        return self._access_token

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
            if resp.status_code != 401:
                return resp
            if attempt == 1:
                log.info("xero tenant=%s: 401 from %s, refreshing the access token once", self.tenant, httpx.URL(url).path)
                token = await self._refresh(stale=token)
        raise AuthError(
            f"Xero {method} {httpx.URL(url).path}: 401 Unauthorized after a token refresh ({self._problem_detail(resp)})",
            http_status=401,
        )

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
        raw = resp.headers.get("Retry-After")
        try:
            retry_after = float(raw) if raw is not None else 60.0
        except ValueError:
            retry_after = 60.0
        problem = resp.headers.get("X-Rate-Limit-Problem", "unknown")
        return RateLimitedError(f"{what}: 429 rate limited ({problem} limit), retry after {retry_after:g}s", retry_after=retry_after)

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

        Raises :class:`ConfigError` ``unknown organisation <id>`` when ``xero_tenant_id`` is not
        among the connected organisations, :class:`AuthError` when the token is refused, plus the
        transport/status errors of every call.
        """
        url = self._url(self.settings.api_url, "/connections")
        resp = await self._call("GET", url, tenant_header=False)
        self._raise_for_status(resp, "Xero GET /connections")
        body = self._json(resp)
        tenants = [str(c.get("tenantId")) for c in body or [] if isinstance(c, dict)] if isinstance(body, list) else []
        if self.settings.xero_tenant_id not in tenants:
            raise ConfigError(
                f"unknown organisation {self.settings.xero_tenant_id}: this connection can reach {', '.join(tenants) or 'no organisation'}"
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
            raise UncertainOutcomeError(f"{what}: HTTP {resp.status_code} with an unreadable body", http_status=resp.status_code)
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
            log.warning("xero tenant=%s invoice=%s: Xero total %s differs from ours %s", self.tenant, invoice.invoice_number, total, invoice.total)
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
            if isinstance(element, dict) and str(element.get("InvoiceNumber", "")) == invoice_number and element.get("InvoiceID"):
                return invoice_from_xero(element)
        return None

    async def aclose(self) -> None:
        """Close the HTTP client (idempotent)."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await client.aclose()
            except RuntimeError:  # no running loop / loop mismatch: nothing to close cleanly
                pass


__all__ = ["XeroConnector", "XeroSettings", "idempotency_key", "DUPLICATE_NUMBER_MESSAGE"]
