"""Zoho Invoice (API v3) connector.

Creates invoices with ``POST https://www.zohoapis.<dc>/invoice/v3/invoices`` (``shared/billing-apis.md`` § 4,
https://www.zoho.com/invoice/api/v3/). Facts it relies on:

* Data centres: every account lives in one (``.com``, ``.eu``, ``.in``, ``.com.au``, ``.jp``,
  ``.ca``, ``.com.cn``, ``.sa``, ``.uk``); API base ``https://www.zohoapis.<dc>``, accounts server
  ``https://accounts.zoho.<dc>``. ``data_center`` is validated against that list.
* OAuth 2.0: ``POST https://accounts.zoho.<dc>/oauth/v2/token`` with ``grant_type=refresh_token``,
  ``client_id``, ``client_secret`` as form fields; access tokens last one hour; refresh tokens do not
  rotate. A refused refresh answers HTTP 200 with ``{"error": "invalid_code"}`` (or
  ``invalid_client``); too many refreshes answer 400 ``{"error": "Access Denied"}``. Calls carry
  ``Authorization: Zoho-oauthtoken <token>`` and ``X-com-zoho-invoice-organizationid``.
  Tokens are kept in the tenant's token store; refreshes are single-flight across coroutines and
  processes (:class:`connectors.sdk.oauth2.OAuth2TokenManager`).
* Envelope ``{"code": 0, "message": "success", "invoice": {...}}``; errors ``{"code": <non-zero>,
  "message": ...}`` with HTTP 4xx/5xx. ``invoice_number`` is unique per organisation: reusing one is
  HTTP 400 ``{"code": 1001, "message": "Invoice Number already exist"}`` -> the invoice is looked up
  with ``GET /invoices?invoice_number=`` and recorded as delivered (``created=False``). There is no
  idempotency key, so that uniqueness *is* the idempotency mechanism; our own number is used with
  ``ignore_auto_number_generation=true``.
* Invoices are created as drafts; "mark as sent" (``POST /invoices/{id}/status/sent``) and "email"
  (``POST /invoices/{id}/email``) are separate, naturally idempotent steps (status / ``is_emailed``
  are checked first). Before marking sent, Zoho's ``total`` is compared with ours; a mismatch is a
  :class:`PermanentError` and the invoice stays a draft.
* Limits: 100 requests per minute per organisation (as documented for Zoho Books/Inventory on the
  same platform); 429 beyond. The connector paces its own calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from decimal import Decimal
from typing import Any, Literal

import httpx
from pydantic import Field, SecretStr, model_validator

from broker.config import ConfigError as BrokerConfigError
from broker.config import resolve_secret
from connectors.base import (
    AuthError,
    Capabilities,
    ConfigError,
    Connector,
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
from connectors.errors import retry_after_seconds
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.invoice import Invoice
from connectors.sdk.oauth2 import OAuth2Config, OAuth2TokenManager, TokenSet, default_token_store, token_key
from connectors.zoho.mapper import MappingError, dumps, invoice_to_zoho, loads, rate_text

log = logging.getLogger("connectors.zoho")

#: Zoho data centres: setting value -> domain suffix.
DATA_CENTERS: dict[str, str] = {
    "com": "com",
    "eu": "eu",
    "in": "in",
    "com.au": "com.au",
    "jp": "jp",
    "ca": "ca",
    "com.cn": "com.cn",
    "sa": "sa",
    "uk": "uk",
}
DataCenter = Literal["com", "eu", "in", "com.au", "jp", "ca", "com.cn", "sa", "uk"]
ORG_HEADER = "X-com-zoho-invoice-organizationid"
DUPLICATE_NUMBER_CODE = 1001
#: Zoho error codes the connector acts on (others are permanent): 14 invalid/expired token,
#: 57 not authorised (missing scope), 6041 organisation not associated with the user.
INVALID_TOKEN_CODE = 14
NOT_AUTHORISED_CODE = 57
UNKNOWN_ORG_CODE = 6041
CONTACT_EXISTS_CODE = 3062
SCOPES = (
    "ZohoInvoice.invoices.CREATE",
    "ZohoInvoice.invoices.READ",
    "ZohoInvoice.invoices.UPDATE",
    "ZohoInvoice.contacts.CREATE",
    "ZohoInvoice.contacts.READ",
    "ZohoInvoice.settings.READ",
)


class ZohoSettings(ConnectorSettings):
    """Connector settings (``billing.settings`` of a tenant whose ``billing.system`` is ``zoho``).

    ``data_center`` picks ``https://www.zohoapis.<dc>`` and ``https://accounts.zoho.<dc>`` (``api_url``
    / ``accounts_url`` override them, e.g. for the emulator). ``client_secret_env`` /
    ``refresh_token_env`` name the environment variables holding the secrets. ``tax_ids`` maps a
    rate (``"23"``) to the organisation's Zoho ``tax_id``; unmapped rates are looked up in
    ``GET /settings/taxes`` by percentage. ``invoice_status``: ``sent`` marks the invoice as sent
    after creation, ``draft`` leaves it a draft; ``send_email`` emails it (implies sent).
    ``create_contacts``: a client without ``contact_id`` that is not found by e-mail or name is created.
    """

    data_center: DataCenter = "com"
    api_url: str | None = None
    accounts_url: str | None = None
    organization_id: str = Field(min_length=1, pattern=r"^[0-9A-Za-z_-]+$")
    client_id: str = Field(min_length=1)
    client_secret_env: str = Field(min_length=1)
    refresh_token_env: str = Field(min_length=1)
    invoice_status: Literal["draft", "sent"] = "sent"
    send_email: bool = False
    email_subject: str | None = Field(default=None, max_length=1000)
    tax_ids: dict[str, str] = Field(default_factory=dict)
    create_contacts: bool = True
    max_requests_per_minute: int = Field(default=100, ge=1, le=10000)
    timeout_seconds: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _email_needs_sent(self) -> ZohoSettings:
        if self.send_email and self.invoice_status != "sent":
            raise ValueError("send_email requires invoice_status 'sent' (emailing marks the invoice sent)")
        return self

    @property
    def api_base(self) -> str:
        return (self.api_url or f"https://www.zohoapis.{DATA_CENTERS[self.data_center]}").rstrip("/")

    @property
    def accounts_base(self) -> str:
        return (self.accounts_url or f"https://accounts.zoho.{DATA_CENTERS[self.data_center]}").rstrip("/")


class _Pacer:
    """At most ``limit`` requests in any 60-second window (Zoho counts per minute per organisation)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.stamps: deque[float] = deque()
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                while self.stamps and now - self.stamps[0] >= 60.0:
                    self.stamps.popleft()
                if len(self.stamps) < self.limit:
                    self.stamps.append(now)
                    return
                await asyncio.sleep(60.0 - (now - self.stamps[0]) + 0.01)


def _dec(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


class ZohoConnector(Connector):
    """Zoho Invoice connector: one organisation (``organization_id``) for one broker tenant.

    Errors: :class:`RateLimitedError` (429; ``Retry-After`` or ``X-Rate-Limit-Reset``),
    :class:`RetryableError` (5xx on reads, connection not established), :class:`UncertainOutcomeError`
    (create sent but no answer, or 5xx answering it: reconcile with :meth:`find`), :class:`AuthError`
    (token refused after one refresh), :class:`MissingScopeError` (code 57),
    :class:`UnknownAccountError` (organisation not reachable), :class:`PermanentError` (validation,
    total mismatch, number taken by another customer), :class:`ConfigError` (settings, missing secret).
    """

    name = "zoho"
    version = "0.1.0"
    capabilities = Capabilities(
        native_idempotency=False,
        lookup_by_reference=True,
        batch_size=1,
        amendments=False,
        oauth2=True,
        rate_limit_per_minute=100,
        max_concurrency=None,
        daily_limit=None,
    )
    Settings = ZohoSettings

    def __init__(self, settings: ZohoSettings | dict, *, tenant: str, token_store: Any = None):
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.settings: ZohoSettings
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._pacer: _Pacer | None = None
        self._oauth: OAuth2TokenManager | None = None
        self._client_secret: SecretStr | None = None
        self._contacts: ContactResolver | None = None
        self._taxes: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"ZohoConnector(tenant={self.tenant!r}, organization_id={self.settings.organization_id!r}, dc={self.settings.data_center!r})"

    # ------------------------------------------------------------------ plumbing
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            self._client, self._pacer = None, None
        if self._client is None:
            self._client_loop = loop
            self._pacer = _Pacer(self.settings.max_requests_per_minute)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds),
                headers={"User-Agent": "maintenance-billing-broker/0.1 (zoho connector)"},
            )
        return self._client

    def secret_values(self) -> list[str]:
        values = super().secret_values()
        if self._client_secret is not None:
            values.append(self._client_secret.get_secret_value())
        if self._oauth is not None:
            values.extend(self._oauth.known_secrets())
        return values

    def _secret(self, env_name: str, field: str) -> SecretStr:
        try:
            return resolve_secret(env_name, field=field)
        except BrokerConfigError as exc:
            raise ConfigError(str(exc)) from None

    # ------------------------------------------------------------------ OAuth2
    def _token_manager(self) -> OAuth2TokenManager:
        if self._oauth is None:
            store = self.token_store if self.token_store is not None else default_token_store()
            self.token_store = store
            self._oauth = OAuth2TokenManager(
                key=token_key(
                    "zoho", self.tenant, issuer=self.settings.accounts_base, client_id=self.settings.client_id
                ),
                store=store,
                refresh=self._refresh_grant,
                seed=lambda: self._secret(self.settings.refresh_token_env, "billing.settings.refresh_token_env"),
            )
        return self._oauth

    async def _refresh_grant(self, refresh_token: SecretStr | None) -> TokenSet:
        """``POST {accounts}/oauth/v2/token`` (form ``client_id``/``client_secret``/``refresh_token``)."""
        if self._client_secret is None:
            self._client_secret = self._secret(self.settings.client_secret_env, "billing.settings.client_secret_env")
        assert refresh_token is not None
        url = self.settings.accounts_base + "/oauth/v2/token"
        form = {
            "grant_type": "refresh_token",
            "client_id": self.settings.client_id,
            "client_secret": self._client_secret.get_secret_value(),
            "refresh_token": refresh_token.get_secret_value(),
        }
        try:
            resp = await self._http().post(url, data=form, headers={"Accept": "application/json"})
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise RetryableError(
                f"Zoho token refresh: no response from {self.settings.accounts_base} ({type(exc).__name__})"
            ) from None
        body = self._json(resp)
        error = str(body.get("error") or "") if isinstance(body, dict) else ""
        hint = (
            f" for client_id {self.settings.client_id}: check {self.settings.client_secret_env} and "
            f"{self.settings.refresh_token_env} (or run `broker connectors authorize zoho`), and data_center "
            f"{self.settings.data_center!r}"
        )
        if resp.status_code == 429 or error.lower() == "access denied":
            raise RateLimitedError(
                "Zoho token refresh: too many token requests (Access Denied)",
                retry_after=retry_after_seconds(resp.headers.get("Retry-After"), 60.0),
                http_status=resp.status_code,
            )
        if resp.status_code >= 500:
            raise RetryableError(f"Zoho token refresh: HTTP {resp.status_code}", http_status=resp.status_code)
        if resp.status_code != 200 or error or not isinstance(body, dict) or not body.get("access_token"):
            raise AuthError(
                self.scrub(f"Zoho token refresh refused (HTTP {resp.status_code} {error or 'no access_token'}){hint}"),
                http_status=resp.status_code if resp.status_code != 200 else 401,
            )
        return TokenSet.from_token_response(body, previous_refresh=refresh_token)

    def oauth2_config(self) -> OAuth2Config:
        """Authorization-code flow at ``accounts.zoho.<dc>`` (``access_type=offline`` to get a refresh token)."""
        return OAuth2Config(
            authorize_url=self.settings.accounts_base + "/oauth/v2/auth",
            token_url=self.settings.accounts_base + "/oauth/v2/token",
            client_id=self.settings.client_id,
            client_secret=self._secret(self.settings.client_secret_env, "billing.settings.client_secret_env"),
            scopes=SCOPES,
            store_key=self._token_manager().key,
            auth_method="post",
            extra_params={"access_type": "offline", "prompt": "consent"},
        )

    # ------------------------------------------------------------------ HTTP
    @staticmethod
    def _json(resp: httpx.Response) -> Any:
        try:
            return loads(resp.content)
        except ValueError:
            return None

    def _detail(self, resp: httpx.Response) -> tuple[int | None, str]:
        body = self._json(resp)
        if isinstance(body, dict) and ("code" in body or "message" in body):
            code = body.get("code")
            return (int(code) if isinstance(code, int) else None), self.scrub(f"code {code}: {body.get('message')}")[
                :400
            ]
        return None, self.scrub(resp.text[:200]) if resp.text else "no body"

    async def _call(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None, org: bool = True
    ) -> httpx.Response:
        """Authenticated call under ``/invoice/v3``; a 401 with an invalid token refreshes once and retries."""
        client = self._http()
        manager = self._token_manager()
        token = await manager.access_token()
        url = self.settings.api_base + "/invoice/v3" + path
        what = f"Zoho {method} {path}"
        for attempt in (1, 2):
            headers = {"Authorization": f"Zoho-oauthtoken {token.get_secret_value()}", "Accept": "application/json"}
            if org:
                headers[ORG_HEADER] = self.settings.organization_id
            content = None
            if body is not None:
                headers["Content-Type"] = "application/json;charset=UTF-8"
                content = dumps(body)
            assert self._pacer is not None
            await self._pacer.wait()
            try:
                resp = await client.request(method, url, params=params, content=content, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                raise RetryableError(f"{what}: request not sent ({type(exc).__name__})") from None
            except (
                httpx.ReadTimeout,
                httpx.RemoteProtocolError,
                httpx.ReadError,
                httpx.WriteError,
                httpx.WriteTimeout,
            ) as exc:
                if method == "GET":
                    raise RetryableError(f"{what}: no response ({type(exc).__name__})") from None
                raise UncertainOutcomeError(
                    f"{what}: request sent but no response ({type(exc).__name__}); "
                    "outcome unknown, reconcile with find()"
                ) from None
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                raise ConfigError(f"{what}: bad api_url in settings ({exc})") from None
            except httpx.TransportError as exc:
                raise UncertainOutcomeError(f"{what}: transport error ({type(exc).__name__})") from None
            if resp.status_code != 401:
                return resp
            code, detail = self._detail(resp)
            if code == NOT_AUTHORISED_CODE:
                raise MissingScopeError(
                    f"{what}: not authorised ({detail}); the token lacks a scope among {', '.join(SCOPES)} - "
                    f"run `broker connectors authorize zoho --tenant {self.tenant}`",
                    http_status=401,
                )
            if attempt == 1:
                log.info("zoho tenant=%s: 401 from %s, refreshing the access token once", self.tenant, path)
                token = await manager.access_token(stale=token)
        raise AuthError(f"{what}: 401 Unauthorized after a token refresh ({detail})", http_status=401)

    def _raise(self, resp: httpx.Response, what: str) -> None:
        status = resp.status_code
        if 200 <= status < 300:
            return
        code, detail = self._detail(resp)
        if status == 429:
            header = resp.headers.get("Retry-After") or resp.headers.get("X-Rate-Limit-Reset")
            retry = retry_after_seconds(header, 60.0)
            raise RateLimitedError(f"{what}: 429 rate limited ({detail}), retry after {retry:g}s", retry_after=retry)
        if status >= 500:
            if resp.request.method == "POST":
                raise UncertainOutcomeError(
                    f"{what}: HTTP {status} ({detail}); the write may have landed, reconcile with find()",
                    http_status=status,
                )
            raise RetryableError(f"{what}: HTTP {status} ({detail})", http_status=status)
        if code == UNKNOWN_ORG_CODE:
            raise UnknownAccountError(f"{what}: unknown organisation {self.settings.organization_id} ({detail})")
        if status == 403:
            raise AuthError(f"{what}: HTTP 403 ({detail})", http_status=403)
        raise PermanentError(f"{what}: HTTP {status} Zoho rejected it ({detail})", http_status=status)

    async def _get(self, path: str, params: dict[str, str] | None = None, *, org: bool = True) -> dict:
        resp = await self._call("GET", path, params=params, org=org)
        self._raise(resp, f"Zoho GET {path}")
        body = self._json(resp)
        if not isinstance(body, dict):
            raise RetryableError(f"Zoho GET {path}: unreadable body", http_status=resp.status_code)
        return body

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """``GET /invoice/v3/organizations``: token, scopes and that ``organization_id`` is reachable."""
        body = await self._get("/organizations", org=False)
        orgs = [str(o.get("organization_id")) for o in body.get("organizations") or [] if isinstance(o, dict)]
        if self.settings.organization_id not in orgs:
            raise UnknownAccountError(
                f"unknown organisation {self.settings.organization_id} in Zoho data centre {self.settings.data_center!r}: "
                f"these credentials reach {', '.join(orgs) or 'no organisation'}"
            )

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` (draft), check Zoho's total, then mark it sent / email it as configured.

        A reused number (code 1001) is looked up and returned with ``created=False`` after the same
        checks (same customer and total) and the remaining steps. ``details``: ``total``,
        ``tax_total``, ``adjustment``, ``status``, ``total_matches``, ``emailed``, ``duplicate``.
        """
        what = f"Zoho invoice {invoice.invoice_number}"
        customer_id = await self._customer(invoice)
        tax_ids = await self._tax_ids(invoice)
        try:
            plan = invoice_to_zoho(invoice, self.settings, customer_id=customer_id, tax_ids=tax_ids)
        except MappingError as exc:
            raise PermanentError(f"{what}: {exc}") from None
        resp = await self._call("POST", "/invoices", params={"ignore_auto_number_generation": "true"}, body=plan.body)
        created = True
        code, _ = self._detail(resp)
        if resp.status_code == 400 and code == DUPLICATE_NUMBER_CODE:
            created = False
            existing = await self._find_raw(invoice.invoice_number)
            if existing is None:
                raise RetryableError(
                    f"{what}: Zoho reports the number as taken (1001) but GET /invoices does not return it yet"
                )
            inv = await self._invoice(str(existing["invoice_id"]))
            if str(inv.get("customer_id")) != str(customer_id):
                raise PermanentError(
                    f"{what}: the number is already used by another customer's invoice "
                    f"{inv.get('invoice_id')} (customer {inv.get('customer_id')}, ours {customer_id})"
                )
        else:
            self._raise(resp, f"{what}: POST /invoices")
            body = self._json(resp)
            inv = body.get("invoice") if isinstance(body, dict) else None
            if not isinstance(inv, dict) or not inv.get("invoice_id"):
                raise UncertainOutcomeError(
                    f"{what}: HTTP {resp.status_code} without an invoice in the answer", http_status=resp.status_code
                )
        total = _dec(inv.get("total"))
        if total != invoice.total:
            raise PermanentError(
                f"{what}: Zoho's total {inv.get('total')} differs from ours {invoice.total} "
                f"(invoice {inv.get('invoice_id')} left as {inv.get('status')}, not marked sent)"
            )
        inv_id = str(inv["invoice_id"])
        emailed = bool(inv.get("is_emailed"))
        if self.settings.send_email and not emailed:
            await self._email(invoice, inv_id, customer_id)
            emailed = True
            inv = dict(inv, status="sent" if inv.get("status") == "draft" else inv.get("status"), is_emailed=True)
        elif self.settings.invoice_status == "sent" and inv.get("status") == "draft":
            resp = await self._call("POST", f"/invoices/{inv_id}/status/sent")
            if resp.status_code >= 400 and resp.status_code != 429 and resp.status_code < 500:
                current = await self._invoice(inv_id)  # e.g. already sent by an earlier attempt
                if current.get("status") == "draft":
                    self._raise(resp, f"{what}: mark as sent")
            else:
                self._raise(resp, f"{what}: mark as sent")
            inv = dict(inv, status="sent")
        details = {
            "total": str(total),
            "tax_total": str(inv.get("tax_total")),
            "adjustment": str(plan.adjustment),
            "status": inv.get("status"),
            "total_matches": True,
            "emailed": emailed,
        }
        if not created:
            details["duplicate"] = True
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=inv_id,
            external_number=str(inv.get("invoice_number") or invoice.invoice_number),
            created=created,
            details=details,
        )

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """``GET /invoices?invoice_number=<n>``: the invoice with exactly our number, when complete.

        A draft while ``invoice_status`` is ``sent`` (or not yet e-mailed with ``send_email``) counts as
        absent, so that the caller delivers again and the remaining steps run.
        """
        raw = await self._find_raw(invoice_number)
        if raw is None:
            return None
        if self.settings.invoice_status == "sent" and raw.get("status") == "draft":
            return None
        if self.settings.send_email and not raw.get("is_emailed"):
            return None
        return ExternalInvoice(
            external_id=str(raw["invoice_id"]),
            number=str(raw.get("invoice_number")),
            total=_dec(raw.get("total")),
            status=raw.get("status"),
        )

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await client.aclose()
            except RuntimeError:
                pass

    # ------------------------------------------------------------------ steps
    async def _find_raw(self, invoice_number: str) -> dict | None:
        body = await self._get("/invoices", {"invoice_number": invoice_number})
        for inv in body.get("invoices") or []:
            if isinstance(inv, dict) and str(inv.get("invoice_number")) == invoice_number and inv.get("invoice_id"):
                return inv
        return None

    async def _invoice(self, invoice_id: str) -> dict:
        body = await self._get(f"/invoices/{invoice_id}")
        inv = body.get("invoice")
        if not isinstance(inv, dict):
            raise RetryableError(f"Zoho GET /invoices/{invoice_id}: no invoice in the answer")
        return inv

    async def _tax_ids(self, invoice: Invoice) -> dict[str, str]:
        """``settings.tax_ids`` completed by the organisation's taxes (``GET /settings/taxes``) for the rates in use."""
        ids = dict(self.settings.tax_ids)
        needed = {rate_text(ln.tax_rate) for ln in invoice.lines if ln.tax_rate and not ln.tax_type}
        mapped = set()
        for key in ids:
            try:
                mapped.add(rate_text(Decimal(str(key).strip().rstrip("%"))))
            except ArithmeticError:
                continue
        if needed - mapped:
            if self._taxes is None:
                body = await self._get("/settings/taxes")
                self._taxes = {}
                for tax in body.get("taxes") or []:
                    pct = _dec(tax.get("tax_percentage")) if isinstance(tax, dict) else None
                    if pct is not None and tax.get("tax_id") and rate_text(pct) not in self._taxes:
                        self._taxes[rate_text(pct)] = str(tax["tax_id"])
            for rate in needed - mapped:
                if rate in self._taxes:
                    ids[rate] = self._taxes[rate]
        return ids

    async def _customer(self, invoice: Invoice) -> str:
        if invoice.contact_id:
            return invoice.contact_id
        if self._contacts is None:
            self._contacts = ContactResolver(
                self, allow_create=self.settings.create_contacts, clients=self.clients, setting_name="create_contacts"
            )
        contact_id = await self._contacts.resolve(invoice)
        assert contact_id
        return contact_id

    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """:class:`connectors.sdk.contacts.ContactDirectory`: ``GET /contacts?email=`` or ``?contact_name=`` (exact)."""
        if field == "tax_number":
            return None  # not a filter of Zoho Invoice's contact list
        param = {"email": "email", "name": "contact_name"}[field]
        body = await self._get("/contacts", {param: value})
        for contact in body.get("contacts") or []:
            key = "email" if field == "email" else "contact_name"
            if isinstance(contact, dict) and same_value(field, contact.get(key), value):
                return str(contact["contact_id"])
        return None

    async def create_contact(self, query: ContactQuery) -> str:
        """``POST /contacts`` (a customer named like our client, with its e-mail as primary contact person)."""
        body: dict[str, Any] = {"contact_name": query.name, "contact_type": "customer"}
        if query.email:
            body["contact_persons"] = [{"email": query.email, "is_primary_contact": True}]
        resp = await self._call("POST", "/contacts", body=body)
        code, _ = self._detail(resp)
        if resp.status_code == 400 and code == CONTACT_EXISTS_CODE:
            found = await self.find_contact("name", query.name)
            if found:
                return found
        self._raise(resp, f"Zoho POST /contacts (client {query.client_id})")
        data = self._json(resp)
        contact = data.get("contact") if isinstance(data, dict) else None
        if not isinstance(contact, dict) or not contact.get("contact_id"):
            raise UncertainOutcomeError(f"Zoho POST /contacts (client {query.client_id}): no contact in the answer")
        return str(contact["contact_id"])

    async def _email(self, invoice: Invoice, inv_id: str, customer_id: str) -> None:
        client = self.clients.get(invoice.client_id)
        email = getattr(client, "email", None)
        if not email:
            contact = (await self._get(f"/contacts/{customer_id}")).get("contact") or {}
            email = contact.get("email")
        if not email:
            raise PermanentError(
                f"Zoho invoice {invoice.invoice_number}: customer {customer_id} has no e-mail address to send it to"
            )
        body = {
            "to_mail_ids": [email],
            "subject": self.settings.email_subject or f"Invoice {invoice.invoice_number}",
            "body": f"Please find attached invoice {invoice.invoice_number} ({invoice.reference}).",
        }
        resp = await self._call("POST", f"/invoices/{inv_id}/email", body=body)
        self._raise(resp, f"Zoho invoice {invoice.invoice_number}: email")


__all__ = ["DATA_CENTERS", "SCOPES", "ZohoConnector", "ZohoSettings"]
