"""Stripe Invoicing connector.

Creates one Stripe invoice per broker invoice with the REST API (``https://api.stripe.com/v1``,
form-encoded requests, API version pinned with ``Stripe-Version``; official spec ``spec3.yaml`` of
stripe/openapi, version 2023-08-16). Facts it relies on (``shared/billing-apis.md`` § 8):

* Auth: the secret (or restricted) API key as ``Authorization: Bearer sk_...``. Keys do not expire
  on their own and there is no token to refresh; a refused key is 401, a restricted key lacking a
  permission 403.
* ``Idempotency-Key`` header on every POST (≤ 255 characters). Stripe saves the status and body of
  the first execution and replays it (header ``Idempotent-Replayed: true``) for the same key; the
  same key with different parameters or another endpoint is a 400 ``idempotency_error``; keys may be
  pruned once they are 24 hours old.
* Flow: customer (mapped id, else found by ``metadata['broker_client_id']`` search, else created) ->
  ``POST /v1/invoices`` (draft, ``pending_invoice_items_behavior=exclude`` so the customer's pending
  invoice items are never swept in) -> one ``POST /v1/invoiceitems`` per line with
  ``invoice=<draft id>`` and a Tax Rate (``POST /v1/tax_rates``, looked up first) -> ``GET`` the draft
  and compare Stripe's ``total``/``tax``/``amount_due`` and line count with ours (a mismatch is a
  :class:`PermanentError` and the draft is **not** finalised) -> ``POST /v1/invoices/{id}/finalize``
  -> optionally ``POST /v1/invoices/{id}/send``. Every step has its own idempotency key
  (:func:`connectors.stripe.mapper.idempotency_key`).
* Lookup: ``GET /v1/invoices/search?query=metadata['broker_invoice_number']:'...'`` is eventually
  consistent (usually < 1 minute, up to an hour in outages; not available in India), so deliveries
  look for an existing invoice by **listing the customer's invoices** (``GET /v1/invoices?customer=``,
  strongly consistent) and :meth:`StripeConnector.find` falls back to listing when search finds
  nothing. An existing invoice that is not complete (a draft missing lines, not finalised or not
  emailed as configured) is resumed, never duplicated; :meth:`find` reports only complete ones.
* Rate limits: 100 requests/s live, 25/s in test mode (account-wide), search 20 reads/s; 429
  ``rate_limit``. The connector paces its own requests (``max_requests_per_second``).
* Errors: ``{"error": {"type", "code", "message", "param", ...}}`` (spec schema ``error``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import deque
from datetime import timedelta
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import urljoin

import httpx
from pydantic import ConfigDict, Field, SecretStr, model_validator

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
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.invoice import Invoice
from connectors.stripe.mapper import (
    CUSTOMER_NAME_MAX,
    MappingError,
    StripePlan,
    TaxRateSpec,
    customer_idempotency_key,
    form_body,
    from_minor,
    idempotency_key,
    invoice_to_stripe,
    rate_text,
    resolve,
    search_literal,
    tax_rate_idempotency_key,
)

log = logging.getLogger("connectors.stripe")

API_VERSION = "2023-08-16"
LIST_LIMIT = 100


class StripeSettings(ConnectorSettings):
    """Connector settings (``billing.settings`` of a tenant whose ``billing.system`` is ``stripe``).

    ``secret_key_env`` names the environment variable holding the secret or restricted API key
    (never the key itself). ``invoice_status``: ``open`` finalises the invoice, ``draft`` leaves it
    for review. ``send_email`` emails it with ``POST /v1/invoices/{id}/send`` (needs ``open`` and
    ``collection_method=send_invoice``, and a customer with an email address in Stripe).
    ``tax_rate_ids`` maps a rate (``"23"``, or ``"23:inclusive"``) to an existing Tax Rate id; other
    rates are looked up among the account's active Tax Rates and created when missing, with
    ``tax_display_name``. ``number_field_name`` is the custom field that shows our invoice number on
    the invoice (``None`` to omit). ``create_customers``: create a Stripe customer for a client with
    no mapped ``contact_id`` that is not found by its ``metadata['broker_client_id']``.
    ``livemode``: when set, :meth:`StripeConnector.check` refuses a key of the other mode.
    ``stripe_account``: a Connect account id (``acct_...``) to act on with the platform's key
    (``Stripe-Account`` header); ``None`` = the key's own account.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_url: str = "https://api.stripe.com"
    secret_key_env: str = Field(min_length=1)
    api_version: str = API_VERSION
    stripe_account: str | None = Field(default=None, pattern=r"^acct_[A-Za-z0-9]+$")
    invoice_status: Literal["draft", "open"] = "open"
    send_email: bool = False
    collection_method: Literal["send_invoice", "charge_automatically"] = "send_invoice"
    tax_display_name: str = Field(default="VAT", min_length=1, max_length=50)
    tax_rate_ids: dict[str, str] = Field(default_factory=dict)
    number_field_name: str | None = Field(default="Invoice ref", min_length=1, max_length=30)
    create_customers: bool = True
    livemode: bool | None = None
    lookup_max_pages: int = Field(default=10, ge=1, le=100)
    lookup_window_days: int = Field(default=2, ge=0, le=3650)
    max_requests_per_second: float = Field(default=20, gt=0, le=100)
    timeout_seconds: float = Field(default=20.0, gt=0)

    @model_validator(mode="after")
    def _email_needs_open_send_invoice(self) -> StripeSettings:
        if self.send_email and self.invoice_status != "open":
            raise ValueError("send_email requires invoice_status 'open' (Stripe only sends finalised invoices)")
        if self.send_email and self.collection_method != "send_invoice":
            raise ValueError("send_email requires collection_method 'send_invoice'")
        return self


class _Pacer:
    """At most ``rate`` requests in any window of :data:`WINDOW` seconds (Stripe counts per second;
    the extra 0.1 s absorbs the delay between our clock and the request's arrival)."""

    WINDOW = 1.1

    def __init__(self, rate: float):
        self.limit = max(1, int(rate))
        self.stamps: deque[float] = deque()
        self.lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self.lock:
            while True:
                now = time.monotonic()
                while self.stamps and now - self.stamps[0] >= self.WINDOW:
                    self.stamps.popleft()
                if len(self.stamps) < self.limit:
                    self.stamps.append(now)
                    return
                await asyncio.sleep(self.WINDOW - (now - self.stamps[0]) + 0.001)


class StripeConnector(Connector):
    """Stripe Invoicing connector for one Stripe account (one broker tenant).

    Errors: :class:`RateLimitedError` (429), :class:`RetryableError` (5xx, 409 idempotency conflict
    with a concurrent request, connection not established), :class:`UncertainOutcomeError` (request
    sent, response lost, or a 500 that Stripe saved for the idempotency key: reconcile with
    :meth:`find`, then deliver again), :class:`AuthError` (401/403), :class:`PermanentError`
    (``invalid_request_error``, ``idempotency_error`` with different parameters, field limits,
    total mismatch), :class:`ConfigError` (missing secret, settings, wrong mode).
    """

    name = "stripe"
    version = "0.1.0"
    capabilities = Capabilities(
        native_idempotency=True,
        lookup_by_reference=True,
        batch_size=1,
        amendments=False,
        # 25 requests/s in test mode (100/s live), account-wide; one delivery makes ~6 requests and
        # the connector paces its own requests (settings.max_requests_per_second).
        rate_limit_per_minute=25 * 60,
        max_concurrency=None,
        daily_limit=None,
    )
    Settings = StripeSettings

    def __init__(self, settings: StripeSettings | dict, *, tenant: str, token_store: Any = None):
        super().__init__(settings, tenant=tenant, token_store=token_store)  # validates: ConfigError naming the field
        self.settings: StripeSettings
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._pacer: _Pacer | None = None
        self._secret_key: SecretStr | None = None
        self._contacts: ContactResolver | None = None
        self._tax_rates: dict[str, str] = {}  # TaxRateSpec.ref.name -> txr id
        self._number_customer: dict[str, str] = {}  # our invoice number -> customer id (helps find())
        self._rekeyed: dict[str, str] = {}  # idempotency key poisoned by a saved 500 -> replacement

    def __repr__(self) -> str:
        return f"StripeConnector(tenant={self.tenant!r}, api_url={self.settings.api_url!r})"

    # ------------------------------------------------------------------ plumbing
    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is not loop:
            self._client, self._pacer = None, None
        if self._client is None:
            self._client_loop = loop
            self._pacer = _Pacer(self.settings.max_requests_per_second)
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds),
                headers={"User-Agent": "maintenance-billing-broker/0.1 (stripe connector)"},
            )
        return self._client

    def _key(self) -> SecretStr:
        if self._secret_key is None:
            try:
                self._secret_key = resolve_secret(self.settings.secret_key_env, field="billing.settings.secret_key_env")
            except BrokerConfigError as exc:
                raise ConfigError(str(exc)) from None
        return self._secret_key

    def secret_values(self) -> list[str]:
        values = super().secret_values()
        if self._secret_key is not None and self._secret_key.get_secret_value():
            values.append(self._secret_key.get_secret_value())
        return values

    def _scrub(self, text: str) -> str:
        return self.scrub(text)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | dict[str, str] | None = None,
        data: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> httpx.Response:
        """One authenticated exchange; transport failures mapped onto the taxonomy."""
        client = self._http()
        headers = {
            "Authorization": f"Bearer {self._key().get_secret_value()}",
            "Stripe-Version": self.settings.api_version,
            "Accept": "application/json",
        }
        if self.settings.stripe_account:
            headers["Stripe-Account"] = self.settings.stripe_account
        content = None
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            content = form_body(data or {})
            if key:
                headers["Idempotency-Key"] = self._rekeyed.get(key, key)
        url = urljoin(self.settings.api_url.rstrip("/") + "/", path.lstrip("/"))
        what = f"Stripe {method} {path}"
        assert self._pacer is not None
        await self._pacer.wait()
        try:
            return await client.request(method, url, params=query, content=content, headers=headers)
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
                f"{what}: request sent but no response ({type(exc).__name__}); outcome unknown, reconcile with find()"
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise ConfigError(f"{what}: bad api_url in settings ({exc})") from None
        except httpx.TransportError as exc:
            raise UncertainOutcomeError(f"{what}: transport error ({type(exc).__name__})") from None

    @staticmethod
    def _body(resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            return None

    def _error_text(self, resp: httpx.Response) -> str:
        body = self._body(resp)
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            parts = [str(err.get("type") or "error")]
            if err.get("code"):
                parts.append(str(err["code"]))
            text = "/".join(parts) + ": " + str(err.get("message") or "no message")
            if err.get("param"):
                text += f" (param {err['param']})"
            return self._scrub(text)[:500]
        return self._scrub(resp.text[:200]) if resp.text else "no body"

    def _check(self, resp: httpx.Response, what: str, key: str | None = None) -> dict:
        """The JSON object of a 2xx response, else the mapped :class:`ConnectorError`."""
        status = resp.status_code
        if 200 <= status < 300:
            body = self._body(resp)
            if not isinstance(body, dict):
                if resp.request.method == "POST":
                    raise UncertainOutcomeError(f"{what}: HTTP {status} with an unreadable body", http_status=status)
                raise RetryableError(f"{what}: HTTP {status} with an unreadable body", http_status=status)
            return body
        detail = self._error_text(resp)
        if status == 429:
            raw = resp.headers.get("Retry-After")
            try:
                retry_after = max(0.0, float(raw)) if raw is not None else 1.0
            except ValueError:
                retry_after = 1.0
            raise RateLimitedError(
                f"{what}: 429 rate limited ({detail}), retry after {retry_after:g}s", retry_after=retry_after
            )
        if status >= 500:
            saved = resp.headers.get("Stripe-Should-Retry", "").lower() == "false"
            if saved and key and resp.request.method == "POST":
                # Stripe saved this 500 for the key: every retry with it replays the failure. The
                # next attempt (after find()/lookup has looked at the real state) uses a new key.
                request_id = resp.headers.get("Request-Id", "") or hashlib.sha256(resp.content).hexdigest()
                base = self._rekeyed.get(key, key)
                self._rekeyed[key] = base[:200] + ":r" + hashlib.sha256(request_id.encode()).hexdigest()[:16]
                raise UncertainOutcomeError(
                    f"{what}: HTTP {status} saved for its idempotency key ({detail}); reconcile, then retry",
                    http_status=status,
                )
            raise RetryableError(f"{what}: HTTP {status} ({detail})", http_status=status)
        if status == 401:
            raise AuthError(
                f"{what}: 401 API key refused ({detail}); check {self.settings.secret_key_env}", http_status=401
            )
        body = self._body(resp)
        err = body.get("error") if isinstance(body, dict) else None
        if status == 403:
            if isinstance(err, dict) and (
                err.get("code") == "account_invalid" or "does not have access to account" in str(err.get("message"))
            ):
                raise UnknownAccountError(f"{what}: unknown account {self.settings.stripe_account}: {detail}")
            raise MissingScopeError(f"{what}: 403 the API key lacks a permission ({detail})", http_status=403)
        if status == 409 and isinstance(err, dict) and err.get("type") == "idempotency_error":
            raise RetryableError(
                f"{what}: 409 a request with the same idempotency key is in progress ({detail})", http_status=409
            )
        if isinstance(err, dict) and err.get("type") == "idempotency_error":
            raise PermanentError(
                f"{what}: idempotency key {key!r} was already used with other parameters ({detail}); "
                "the invoice changed under the same invoice key",
                http_status=status,
            )
        raise PermanentError(f"{what}: HTTP {status} {detail}", http_status=status)

    async def _get(self, path: str, query: list[tuple[str, str]] | dict[str, str] | None = None) -> dict:
        return self._check(await self._request("GET", path, query=query), f"Stripe GET {path}")

    async def _post(
        self, path: str, data: dict[str, Any], key: str | None, what: str | None = None
    ) -> tuple[dict, bool]:
        """POST with ``key``; returns (object, replayed) where replayed = ``Idempotent-Replayed: true``."""
        resp = await self._request("POST", path, data=data, key=key)
        body = self._check(resp, what or f"Stripe POST {path}", key)
        return body, resp.headers.get("Idempotent-Replayed", "").lower() == "true"

    async def _list(self, path: str, query: list[tuple[str, str]], max_pages: int) -> list[dict]:
        """Every object of a list endpoint, following ``has_more``/``starting_after`` for ``max_pages`` pages."""
        out: list[dict] = []
        after: str | None = None
        for _ in range(max_pages):
            q = list(query) + [("limit", str(LIST_LIMIT))] + ([("starting_after", after)] if after else [])
            page = await self._get(path, q)
            data = [o for o in page.get("data") or [] if isinstance(o, dict)]
            out.extend(data)
            if not page.get("has_more") or not data:
                break
            after = str(data[-1].get("id"))
        return out

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """``GET /v1/balance``: the cheapest authenticated read; also checks ``livemode`` when configured."""
        body = await self._get("/v1/balance")
        if (
            self.settings.livemode is not None
            and body.get("livemode") is not None
            and bool(body["livemode"]) != self.settings.livemode
        ):
            mode = "live" if body["livemode"] else "test"
            raise ConfigError(
                f"Stripe key in {self.settings.secret_key_env} is a {mode}-mode key but settings.livemode is {self.settings.livemode}"
            )

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` in Stripe (see the module docstring); an existing complete one is returned with ``created=False``.

        ``details``: ``total``/``tax``/``amount_due`` (decimal strings), ``status``, ``stripe_number``,
        ``total_matches`` (always True on success: a mismatch raises before finalising),
        ``resumed`` (an incomplete invoice from an earlier attempt was completed), ``emailed``.
        """
        what = f"Stripe invoice {invoice.invoice_number}"
        try:
            plan = invoice_to_stripe(invoice, self.settings)
        except MappingError as exc:
            raise PermanentError(f"{what}: {exc}") from None
        customer = await self._customer(invoice)
        self._number_customer[invoice.invoice_number] = customer
        ids = {"customer": customer}
        for spec in plan.tax_rates:
            ids[spec.ref.name] = await self._tax_rate(spec)

        existing = await self._lookup(invoice, customer)
        if existing is not None and self._complete(existing):
            return self._result(invoice, existing, plan, created=False, resumed=False)
        resumed = existing is not None
        if existing is None:
            draft, replayed = await self._post(
                "/v1/invoices",
                resolve(plan.invoice, ids),
                idempotency_key(invoice, "invoice"),
                f"{what}: POST /v1/invoices",
            )
            resumed = replayed
        else:
            draft = existing
        inv_id = str(draft.get("id") or "")
        if not inv_id.startswith("in_"):
            raise UncertainOutcomeError(f"{what}: POST /v1/invoices answered without an invoice id")
        ids["invoice"] = inv_id

        if draft.get("status") == "draft":
            await self._attach_items(invoice, plan, ids, check_existing=resumed)
            draft = await self._get(f"/v1/invoices/{inv_id}")
            self._verify(invoice, plan, draft)
            if self.settings.invoice_status == "open":
                draft = await self._finalize(invoice, inv_id)
        emailed = False
        if (
            self.settings.send_email
            and draft.get("status") == "open"
            and (draft.get("metadata") or {}).get("broker_emailed") != "true"
        ):
            draft = await self._send(invoice, inv_id)
            emailed = True
        return self._result(invoice, draft, plan, created=True, resumed=resumed, emailed=emailed)

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """The complete Stripe invoice carrying our ``invoice_number`` in ``metadata['broker_invoice_number']``.

        ``GET /v1/invoices/search`` first; when it finds nothing (search lags writes), the customer's
        invoices (known from an earlier :meth:`deliver` in this process) or else the account's most
        recent invoices are listed (``lookup_max_pages`` pages of 100). An incomplete invoice (draft
        missing lines, not finalised or not emailed as configured) is reported as ``None`` so that
        the caller delivers again, which completes it.
        """
        query = (
            f"metadata['broker_invoice_number']:{search_literal(invoice_number)} "
            f"AND metadata['broker_tenant']:{search_literal(self.tenant)}"
        )
        found = [
            o
            for o in (await self._get("/v1/invoices/search", {"query": query, "limit": "10"})).get("data") or []
            if isinstance(o, dict)
        ]
        if not found:
            customer = self._number_customer.get(invoice_number)
            base = [("customer", customer)] if customer else []
            listing = await self._list("/v1/invoices", base, self.settings.lookup_max_pages)
            found = [
                o
                for o in listing
                if (o.get("metadata") or {}).get("broker_invoice_number") == invoice_number
                and (o.get("metadata") or {}).get("broker_tenant") == self.tenant
            ]
        for inv in found:
            if self._complete(inv):
                return self._external(inv, invoice_number)
        return None

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await client.aclose()
            except RuntimeError:
                pass

    # ------------------------------------------------------------------ steps
    async def _customer(self, invoice: Invoice) -> str:
        """Stripe customer id of the invoice's client (:mod:`connectors.sdk.contacts` order).

        The mapped ``contact_id``; else a customer we created earlier (``metadata['broker_client_id']``);
        else one found by e-mail (``GET /v1/customers?email=``, strongly consistent) or exact name
        (``GET /v1/customers/search?query=name:'...'``); else created when ``create_customers``
        (idempotency key per client), else :class:`PermanentError` naming the client.
        """
        if invoice.contact_id:
            return invoice.contact_id
        if self._contacts is None:
            self._contacts = ContactResolver(
                self, allow_create=self.settings.create_customers, clients=self.clients, setting_name="create_customers"
            )
        if invoice.client_id not in self._contacts._cache:
            query = (
                f"metadata['broker_client_id']:{search_literal(invoice.client_id)} "
                f"AND metadata['broker_tenant']:{search_literal(self.tenant)}"
            )
            hits = await self._search_customers(query)
            if hits:
                self._contacts._cache[invoice.client_id] = str(hits[0]["id"])
        customer_id = await self._contacts.resolve(invoice)
        if not customer_id:  # pragma: no cover - native_name_match is off, resolve always returns an id
            raise PermanentError(f"Stripe: no customer for client {invoice.client_id}")
        return customer_id

    async def _search_customers(self, query: str) -> list[dict]:
        hits = [
            o
            for o in (await self._get("/v1/customers/search", {"query": query, "limit": "10"})).get("data") or []
            if isinstance(o, dict) and not o.get("deleted")
        ]
        hits.sort(key=lambda c: (c.get("created") or 0, str(c.get("id"))))
        return hits

    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """:class:`connectors.sdk.contacts.ContactDirectory`: e-mail via the (consistent) list filter, name via
        search; tax numbers are not searchable in Stripe (customer tax IDs have no search field)."""
        if field == "email":
            rows = (await self._get("/v1/customers", [("email", value), ("limit", "10")])).get("data") or []
        elif field == "name":
            rows = await self._search_customers(f"name:{search_literal(value)}")
        else:
            return None
        for row in rows:
            if isinstance(row, dict) and same_value(field, row.get(field), value):
                return str(row["id"])
        return None

    async def create_contact(self, query: ContactQuery) -> str:
        """``POST /v1/customers`` (name, e-mail, our ids in metadata) with a per-client idempotency key."""
        params: dict[str, Any] = {"name": query.name}
        if query.email:
            params["email"] = query.email
        metadata = {"broker_tenant": self.tenant, "broker_client_id": query.client_id}
        if query.tax_number:
            metadata["broker_tax_number"] = query.tax_number
        params["metadata"] = metadata
        if len(query.name) > CUSTOMER_NAME_MAX:
            raise PermanentError(
                f"Stripe customer for client {query.client_id}: name has {len(query.name)} characters, "
                f"Stripe allows {CUSTOMER_NAME_MAX}"
            )
        body, _ = await self._post(
            "/v1/customers",
            params,
            customer_idempotency_key(self.tenant, query.client_id),
            f"Stripe POST /v1/customers (client {query.client_id})",
        )
        customer_id = str(body.get("id") or "")
        if not customer_id.startswith("cus_"):
            raise UncertainOutcomeError("Stripe POST /v1/customers answered without a customer id")
        return customer_id

    async def _tax_rate(self, spec: TaxRateSpec) -> str:
        """Tax Rate id for ``spec``: ``settings.tax_rate_ids``, cache, an active matching rate, or a new one."""
        name = spec.ref.name
        mapped = self.settings.tax_rate_ids.get(spec.lookup_key)
        if mapped is None and not spec.inclusive:
            mapped = self.settings.tax_rate_ids.get(spec.lookup_key + ":exclusive")
        if mapped:
            return mapped
        if name in self._tax_rates:
            return self._tax_rates[name]
        rates = await self._list(
            "/v1/tax_rates",
            [("active", "true"), ("inclusive", "true" if spec.inclusive else "false")],
            self.settings.lookup_max_pages,
        )
        candidates = []
        for rate in rates:
            try:
                same = rate_text(_dec(rate.get("percentage"))) == rate_text(spec.percentage)
            except ArithmeticError:
                same = False
            if same and bool(rate.get("inclusive")) == spec.inclusive and rate.get("display_name") == spec.display_name:
                ours = (rate.get("metadata") or {}).get("broker_tenant") == self.tenant
                candidates.append((0 if ours else 1, rate.get("created") or 0, str(rate.get("id"))))
        if candidates:
            rate_id = min(candidates)[2]
        else:
            body, _ = await self._post(
                "/v1/tax_rates",
                spec.params(self.tenant),
                tax_rate_idempotency_key(self.tenant, spec),
                f"Stripe POST /v1/tax_rates ({rate_text(spec.percentage)}%)",
            )
            rate_id = str(body.get("id") or "")
            if not rate_id.startswith("txr_"):
                raise UncertainOutcomeError("Stripe POST /v1/tax_rates answered without a tax rate id")
        self._tax_rates[name] = rate_id
        return rate_id

    async def _lookup(self, invoice: Invoice, customer: str) -> dict | None:
        """The customer's invoice carrying our ``broker_invoice_key`` (strongly consistent list), or ``None``."""
        since = int((invoice.event_time - timedelta(days=self.settings.lookup_window_days)).timestamp())
        listing = await self._list(
            "/v1/invoices", [("customer", customer), ("created[gte]", str(since))], self.settings.lookup_max_pages
        )
        mine = [o for o in listing if (o.get("metadata") or {}).get("broker_invoice_key") == invoice.invoice_key]
        if not mine:
            return None
        # Prefer the most advanced one (a finalised invoice over a leftover draft), then the oldest.
        rank = {"paid": 0, "open": 0, "uncollectible": 0, "void": 1, "draft": 2}
        mine.sort(key=lambda o: (rank.get(str(o.get("status")), 3), o.get("created") or 0))
        return mine[0]

    async def _attach_items(
        self, invoice: Invoice, plan: StripePlan, ids: dict[str, str], *, check_existing: bool
    ) -> None:
        present: set[str] = set()
        if check_existing:
            items = await self._list("/v1/invoiceitems", [("invoice", ids["invoice"])], max_pages=3)
            present = {
                str((i.get("metadata") or {}).get("broker_line"))
                for i in items
                if (i.get("metadata") or {}).get("broker_invoice_key") == invoice.invoice_key
            }
        for n, item in enumerate(plan.items, start=1):
            if str(n) in present:
                continue
            await self._post(
                "/v1/invoiceitems",
                resolve(item, ids),
                idempotency_key(invoice, f"item-{n}"),
                f"Stripe invoice {invoice.invoice_number}: POST /v1/invoiceitems (line {n})",
            )

    def _verify(self, invoice: Invoice, plan: StripePlan, inv: dict) -> None:
        """Stripe's computed draft must equal ours before it is finalised (else :class:`PermanentError`)."""
        lines = inv.get("lines") or {}
        count = lines.get("total_count")
        if count is None:
            count = len(lines.get("data") or [])
        starting = int(inv.get("starting_balance") or 0)
        expected_due = max(0, plan.total_minor + starting)
        problems = []
        if inv.get("total") != plan.total_minor:
            problems.append(f"total {inv.get('total')} != ours {plan.total_minor}")
        if (inv.get("tax") or 0) != plan.tax_minor:
            problems.append(f"tax {inv.get('tax')} != ours {plan.tax_minor}")
        if inv.get("amount_due") != expected_due:
            problems.append(f"amount_due {inv.get('amount_due')} != {expected_due}")
        if count != len(plan.items):
            problems.append(f"{count} lines != our {len(plan.items)}")
        if str(inv.get("currency", "")).lower() != plan.currency:
            problems.append(f"currency {inv.get('currency')} != {plan.currency}")
        if problems:
            raise PermanentError(
                f"Stripe invoice {invoice.invoice_number}: draft {inv.get('id')} does not match our invoice "
                f"(minor units: {'; '.join(problems)}); it was NOT finalised"
            )

    async def _finalize(self, invoice: Invoice, inv_id: str) -> dict:
        resp = await self._request(
            "POST",
            f"/v1/invoices/{inv_id}/finalize",
            data={"auto_advance": False},
            key=idempotency_key(invoice, "finalize"),
        )
        if resp.status_code == 400:
            # e.g. already finalised by an earlier attempt whose key has expired: look at the real state
            current = await self._get(f"/v1/invoices/{inv_id}")
            if current.get("status") not in (None, "draft"):
                return current
        body = self._check(
            resp, f"Stripe invoice {invoice.invoice_number}: finalize {inv_id}", idempotency_key(invoice, "finalize")
        )
        return body

    async def _send(self, invoice: Invoice, inv_id: str) -> dict:
        await self._post(
            f"/v1/invoices/{inv_id}/send",
            {},
            idempotency_key(invoice, "send"),
            f"Stripe invoice {invoice.invoice_number}: send {inv_id}",
        )
        body, _ = await self._post(
            f"/v1/invoices/{inv_id}",
            {"metadata": {"broker_emailed": "true"}},
            idempotency_key(invoice, "emailed"),
            f"Stripe invoice {invoice.invoice_number}: mark emailed",
        )
        return body

    # ------------------------------------------------------------------ results
    def _complete(self, inv: dict) -> bool:
        """True when ``inv`` needs nothing more from us (see :meth:`find`)."""
        meta = inv.get("metadata") or {}
        status = inv.get("status")
        if status == "draft":
            if self.settings.invoice_status == "open":
                return False
            lines = inv.get("lines") or {}
            count = lines.get("total_count", len(lines.get("data") or []))
            return str(count) == str(meta.get("broker_lines")) and str(inv.get("total")) == str(
                meta.get("broker_total")
            )
        if status == "open" and self.settings.send_email and meta.get("broker_emailed") != "true":
            return False
        return True

    def _external(self, inv: dict, our_number: str) -> ExternalInvoice:
        currency = str(inv.get("currency") or "eur")
        total = inv.get("total")
        return ExternalInvoice(
            external_id=str(inv["id"]),
            number=str(inv.get("number") or our_number),
            total=from_minor(int(total), currency) if isinstance(total, int) else None,
            status=inv.get("status"),
        )

    def _result(
        self, invoice: Invoice, inv: dict, plan: StripePlan, *, created: bool, resumed: bool, emailed: bool = False
    ) -> DeliveryResult:
        currency = str(inv.get("currency") or plan.currency)
        total = inv.get("total")
        details = {
            "total": str(from_minor(int(total), currency)) if isinstance(total, int) else None,
            "tax": str(from_minor(int(inv.get("tax") or 0), currency)),
            "amount_due": str(from_minor(int(inv.get("amount_due") or 0), currency)),
            "status": inv.get("status"),
            "stripe_number": inv.get("number"),
            "total_matches": total == plan.total_minor,
            "resumed": resumed,
            "emailed": emailed or (inv.get("metadata") or {}).get("broker_emailed") == "true",
            "idempotency_key": idempotency_key(invoice, "invoice"),
        }
        if not created:
            details["duplicate"] = True
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=str(inv["id"]),
            external_number=str(inv.get("number") or invoice.invoice_number),
            created=created,
            details=details,
        )


def _dec(value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ArithmeticError("not a number")
    return Decimal(str(value))


__all__ = ["API_VERSION", "StripeConnector", "StripeSettings"]
