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
  (:func:`connectors.stripe.mapper.idempotency_key`). An invoice to post as a draft (``invoice.draft``,
  the tenant's ``approval: draft``) stops before ``finalize``: a Stripe ``draft`` with our lines and
  total, ``auto_advance=false`` so Stripe never finalises it by itself, never e-mailed.
* Lookup: ``GET /v1/invoices/search?query=metadata['broker_invoice_number']:'...'`` is eventually
  consistent (usually < 1 minute, up to an hour in outages; not available in India), so deliveries
  look for an existing invoice by **listing the customer's invoices** (``GET /v1/invoices?customer=``,
  strongly consistent) and :meth:`StripeConnector.find` falls back to listing when search finds
  nothing. An existing invoice that is not complete (a draft missing lines, not finalised or not
  emailed as configured) is resumed, never duplicated; :meth:`find` reports only complete ones.
* Ownership: ``metadata[broker_invoice_key]`` is our marker. A non-void invoice of the customer labelled
  with our number (``metadata[broker_invoice_number]`` or the number custom field) that does not carry
  it is never adopted or completed (:class:`NumberConflictError` naming both totals); neither is a
  complete one of ours whose total is not ours. Legal notes go in the printed ``footer``.
* Lifecycle (:meth:`StripeConnector.retire`; ``amend``/``cancel`` are the SDK's), per
  https://docs.stripe.com/invoicing/integration/workflow-transitions and spec ``PostCreditNotes``:
  a draft is deleted (``DELETE /v1/invoices/{id}``), an open invoice without a payment voided
  (``POST /v1/invoices/{id}/void``), a paid one credited (``POST /v1/credit_notes``, to the customer's
  credit balance), looked up first with ``GET /v1/credit_notes?invoice=``.
* Rate limits: 100 requests/s live, 25/s in test mode (account-wide), search 20 reads/s; 429
  ``rate_limit``. The connector paces its own requests (``max_requests_per_second``).
* Errors: ``{"error": {"type", "code", "message", "param", ...}}`` (spec schema ``error``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import date, timedelta
from types import MappingProxyType
from typing import Any

import httpx

from connectors.sdk import (
    ApiKeyAuth,
    Auth,
    Capabilities,
    ConfigError,
    ConnectorError,
    DeliveryResult,
    ExternalInvoice,
    HttpConnector,
    Invoice,
    MissingScopeError,
    PermanentError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.http import Pacer
from connectors.sdk.lifecycle import Retirement, check_ours, credit_note_conflict, credit_note_number
from connectors.sdk.money import rate_key
from connectors.sdk.oauth2 import TokenStore
from connectors.stripe.mapper import (
    CUSTOM_FIELD_MAX,
    METADATA_VALUE_MAX,
    Json,
    MappingError,
    StripePlan,
    TaxRateSpec,
    carries_number,
    credit_note_params,
    customer_idempotency_key,
    customer_params,
    draft_mismatches,
    error_of,
    form_body,
    from_minor,
    idempotency_key,
    invoice_from_stripe,
    invoice_to_stripe,
    is_complete,
    lines_present,
    list_objects,
    matching_tax_rate,
    metadata_of,
    metadata_query,
    pick_invoice,
    resolve,
    retire_idempotency_key,
    search_literal,
    tax_rate_idempotency_key,
)
from connectors.stripe.settings import StripeSettings

#: Objects per page of a list endpoint (Stripe's maximum ``limit``).
LIST_LIMIT = 100
#: Marks an invoice whose ``POST /v1/invoices/{id}/send`` went through (``POST /v1/invoices/{id}``).
_EMAILED = {"metadata": {"broker_emailed": "true"}}
#: ``POST /v1/invoices/{id}/finalize`` parameters: Stripe must not advance (charge, e-mail) it on its own.
_NO_AUTO_ADVANCE = {"auto_advance": False}


class StripeConnector(HttpConnector):
    """Stripe Invoicing connector for one Stripe account (one broker tenant).

    Errors: :class:`RateLimitedError` (429; ``Retry-After``, else 1 s), :class:`RetryableError` (5xx,
    409 idempotency conflict with a concurrent request, connection not established),
    :class:`UncertainOutcomeError` (request sent, response lost, or a 500 that Stripe saved for the
    idempotency key: reconcile with :meth:`find`, then deliver again), :class:`AuthError` (401; 403
    :class:`MissingScopeError`), :class:`UnknownAccountError` (a Connect account the key cannot reach),
    :class:`PermanentError` (other 4xx such as ``invalid_request_error``, ``idempotency_error`` with
    different parameters, field limits, total mismatch), :class:`ConfigError` (missing secret,
    settings, wrong mode).
    """

    name = "stripe"
    label = "Stripe"
    version = "0.1.0"
    # 25 requests/s in test mode (100/s live), account-wide; one delivery makes ~6 requests and the
    # connector paces its own requests (settings.max_requests_per_second). No batch endpoint.
    # Stripe numbers invoices itself; ours is sent in custom_fields[0][value] (maxLength 30, spec PostInvoices:
    # mapper.CUSTOM_FIELD_MAX; settings.number_field_name) and metadata[broker_invoice_number] (values <= 500,
    # https://docs.stripe.com/api/metadata); a credit note's "<ours>-CN" only in its metadata
    capabilities = Capabilities(
        native_idempotency=True,
        lookup_by_reference=True,
        amendments=True,
        rate_limit_per_minute=25 * 60,
        invoice_number_max=CUSTOM_FIELD_MAX,
        credit_note_number_max=METADATA_VALUE_MAX,
        # status draft until POST /v1/invoices/{id}/finalize; only drafts can be deleted (DELETE /v1/invoices/{id}):
        # spec3.yaml (PostInvoicesInvoiceFinalize, DeleteInvoicesInvoice),
        # https://docs.stripe.com/invoicing/integration/workflow-transitions
        drafts=True,
    )
    Settings = StripeSettings
    # Every write carries an idempotency key, so a 500/504 is safe to retry with it (a 500 Stripe
    # saved for the key is told apart in classify()); other 4xx are refusals, a 409 included.
    status_overrides = MappingProxyType(
        {408: PermanentError, 409: PermanentError, 425: PermanentError, 500: RetryableError, 504: RetryableError}
    )
    default_retry_after = 1.0  # Stripe's limits are per second; its 429s need not say how long to wait

    def __init__(
        self, settings: StripeSettings | Mapping[str, Any], *, tenant: str, token_store: TokenStore | None = None
    ) -> None:
        super().__init__(settings, tenant=tenant, token_store=token_store)  # validates: ConfigError naming the field
        self.settings: StripeSettings
        # Stripe counts requests per second; the extra 0.1 s absorbs the delay between our clock and arrival.
        self._pacer = Pacer(self.settings.max_requests_per_second, window=1.1)
        self._contacts: ContactResolver | None = None
        self._tax_rates: dict[str, str] = {}  # TaxRateSpec.ref.name -> txr id
        self._number_customer: dict[str, str] = {}  # our invoice number -> customer id (helps find())
        self._rekeyed: dict[str, str] = {}  # idempotency key poisoned by a saved 500 -> replacement

    def __repr__(self) -> str:
        return f"StripeConnector(tenant={self.tenant!r}, api_url={self.settings.api_url!r})"

    # ------------------------------------------------------------------ HTTP
    def make_auth(self) -> Auth:
        """The secret key as ``Authorization: Bearer sk_...`` (keys do not renew: a 401 is final)."""
        return ApiKeyAuth(lambda: self.secret("secret_key_env"))

    def unauthorized_hint(self) -> str:
        """Which variable holds the refused key."""
        return f"; check {self.settings.secret_key_env}"

    async def send(self, method: str, url: str, *, idempotent: bool = False, **kwargs: Any) -> httpx.Response:
        """:meth:`HttpConnector.send`, paced to ``settings.max_requests_per_second``."""
        await self._pacer.wait()
        return await super().send(method, url, idempotent=idempotent, **kwargs)

    def problem_detail(self, resp: httpx.Response) -> str:
        """``type/code: message (param p)`` from Stripe's ``{"error": {"type", "code", "message", "param"}}``."""
        err = error_of(self.decode(resp))
        if not err:
            return super().problem_detail(resp)
        text = "/".join(str(p) for p in (err.get("type") or "error", err.get("code")) if p)
        text += ": " + str(err.get("message") or "no message")
        if err.get("param"):
            text += f" (param {err['param']})"
        return self.scrub(text)[:500]

    def classify(self, resp: httpx.Response, what: str) -> ConnectorError | None:
        """What Stripe reports beyond the status: a 500 saved for the idempotency key
        (``Stripe-Should-Retry: false``), a Connect account the key cannot reach (403), a key lacking a
        permission (403), and ``idempotency_error`` (409: the same key in flight; else: other parameters)."""
        status, err, detail = resp.status_code, error_of(self.decode(resp)), self.problem_detail(resp)
        key = resp.request.headers.get("Idempotency-Key")
        if status >= 500 and key and resp.headers.get("Stripe-Should-Retry", "").lower() == "false":
            return UncertainOutcomeError(
                f"{what}: HTTP {status} saved for its idempotency key ({detail}); reconcile, then retry",
                http_status=status,
            )
        if status == 403:
            if err.get("code") == "account_invalid" or "does not have access to account" in str(err.get("message")):
                return UnknownAccountError(f"{what}: unknown account {self.settings.stripe_account}: {detail}")
            return MissingScopeError(f"{what}: 403 the API key lacks a permission ({detail})", http_status=403)
        if err.get("type") != "idempotency_error":
            return None
        if status == 409:
            return RetryableError(
                f"{what}: 409 a request with the same idempotency key is in progress ({detail})", http_status=409
            )
        return PermanentError(
            f"{what}: idempotency key {key!r} was already used with other parameters ({detail}); "
            "the invoice changed under the same invoice key",
            http_status=status,
        )

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """:meth:`HttpConnector.request` to ``api_url`` + ``path`` with ``Stripe-Version`` (and ``Stripe-Account``)."""
        headers = {"Stripe-Version": self.settings.api_version, **kwargs.pop("headers", {})}
        if self.settings.stripe_account:
            headers["Stripe-Account"] = self.settings.stripe_account
        return await self.request(method, self.url(self.settings.api_url, path), headers=headers, **kwargs)

    def _object(self, resp: httpx.Response, what: str) -> Json:
        """The JSON object of a 2xx answer, else the mapped :class:`ConnectorError`."""
        self.raise_for_status(resp, what)
        body = self.decode(resp)
        if not isinstance(body, dict):
            error = UncertainOutcomeError if resp.request.method == "POST" else RetryableError
            raise error(f"{what}: HTTP {resp.status_code} with an unreadable body", http_status=resp.status_code)
        return body

    async def _get(self, path: str, query: Mapping[str, str] | None = None) -> Json:
        return self._object(await self._call("GET", path, params=query), f"Stripe GET {path}")

    async def _post(
        self, path: str, data: Mapping[str, Any], key: str, note: str = "", id_prefix: str = ""
    ) -> tuple[Json, bool]:
        """POST form-encoded ``data`` with idempotency ``key`` (or its replacement after a saved 500).

        Returns (object, replayed) where replayed = ``Idempotent-Replayed: true``. ``note`` completes
        the messages (``" (ACME-1 item-2)"``); an object whose id does not start with ``id_prefix``
        (``"in_"``) is an :class:`UncertainOutcomeError`.
        """
        what, sent = f"Stripe POST {path}{note}", self._rekeyed.get(key, key)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Idempotency-Key": sent}
        resp = await self._call("POST", path, content=form_body(dict(data)), headers=headers)
        if resp.status_code >= 500 and resp.headers.get("Stripe-Should-Retry", "").lower() == "false":
            # Stripe saved this 500 for the key: every retry with it replays the failure. The next
            # attempt (after find()/lookup has looked at the real state) uses a new key.
            request_id = resp.headers.get("Request-Id", "") or hashlib.sha256(resp.content).hexdigest()
            self._rekeyed[key] = sent[:200] + ":r" + hashlib.sha256(request_id.encode()).hexdigest()[:16]
        body = self._object(resp, what)
        if not str(body.get("id") or "").startswith(id_prefix):
            raise UncertainOutcomeError(f"{what}: answered without an id starting with {id_prefix}")
        return body, resp.headers.get("Idempotent-Replayed", "").lower() == "true"

    async def _list(self, path: str, query: Mapping[str, str], max_pages: int | None = None) -> list[Json]:
        """Every object of a list endpoint, following ``has_more``/``starting_after`` for ``max_pages`` pages
        (default ``settings.lookup_max_pages``)."""
        out: list[Json] = []
        after: dict[str, str] = {}
        for _ in range(max_pages or self.settings.lookup_max_pages):
            page = await self._get(path, {**query, "limit": str(LIST_LIMIT), **after})
            data = list_objects(page)
            out.extend(data)
            if not page.get("has_more") or not data:
                break
            after = {"starting_after": str(data[-1].get("id"))}
        return out

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """``GET /v1/balance``: the cheapest authenticated read; also checks ``livemode`` when configured."""
        body = await self._get("/v1/balance")
        livemode = body.get("livemode")
        if self.settings.livemode is not None and livemode is not None and bool(livemode) != self.settings.livemode:
            raise ConfigError(
                f"Stripe key in {self.settings.secret_key_env} is a {'live' if livemode else 'test'}-mode key "
                f"but settings.livemode is {self.settings.livemode}"
            )

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` in Stripe (see the module docstring); an existing complete one: ``created=False``.

        ``details``: ``total``/``tax``/``amount_due`` (decimal strings), ``status``, ``stripe_number``,
        ``total_matches`` (always True on success: a mismatch raises before finalising),
        ``resumed`` (an incomplete invoice from an earlier attempt was completed), ``emailed``.
        :class:`NumberConflictError`: the customer has an invoice labelled with our number that is not
        ours, or a complete one of ours with another total.
        """
        try:
            plan = invoice_to_stripe(invoice, self.settings)
        except MappingError as exc:
            raise PermanentError(f"Stripe invoice {invoice.invoice_number}: {exc}") from None
        customer = await self._customer(invoice)
        self._number_customer[invoice.invoice_number] = customer
        ids = {"customer": customer}
        for spec in plan.tax_rates:
            ids[spec.ref.name] = await self._tax_rate(spec)

        draft = await self._lookup(invoice, customer)
        if draft is not None and is_complete(draft, self.settings, draft=invoice.draft):
            check_ours(
                invoice, invoice_from_stripe(draft, invoice.invoice_number), what=f"Stripe {draft.get('status')}"
            )
            return self._result(invoice, draft, plan, created=False, resumed=False)
        resumed = draft is not None
        if draft is None:
            draft, resumed = await self._step(invoice, "invoice", "/v1/invoices", resolve(plan.invoice, ids), "in_")
        ids["invoice"] = inv_id = str(draft["id"])

        if draft.get("status") == "draft":
            await self._attach_items(invoice, plan, ids, check_existing=resumed)
            draft = await self._get(f"/v1/invoices/{inv_id}")
            if problems := draft_mismatches(plan, draft):
                raise PermanentError(
                    f"Stripe invoice {invoice.invoice_number}: draft {inv_id} does not match our invoice "
                    f"(minor units: {'; '.join(problems)}); it was NOT finalised"
                )
            if self.settings.invoice_status == "open" and not invoice.draft:
                draft = await self._finalize(invoice, inv_id)
        emailed = self.settings.send_email and draft.get("status") == "open"
        if emailed and metadata_of(draft).get("broker_emailed") != "true":
            await self._step(invoice, "send", f"/v1/invoices/{inv_id}/send", {})
            draft, _ = await self._step(invoice, "emailed", f"/v1/invoices/{inv_id}", _EMAILED)
        return self._result(invoice, draft, plan, created=True, resumed=resumed, emailed=emailed)

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """The complete Stripe invoice carrying our ``invoice_number`` in ``metadata['broker_invoice_number']``.

        ``GET /v1/invoices/search`` first; when it finds nothing (search lags writes), the customer's
        invoices (known from an earlier :meth:`deliver` in this process) or else the account's most
        recent invoices are listed (``lookup_max_pages`` pages of 100). An incomplete invoice (draft
        missing lines, not finalised or not emailed as configured) is reported as ``None`` so that
        the caller delivers again, which completes it. The result carries ``marker``
        (``metadata[broker_invoice_key]``) and ``paid`` (``amount_paid``).
        """
        ours = {"broker_invoice_number": invoice_number, "broker_tenant": self.tenant}
        found = list_objects(await self._get("/v1/invoices/search", {"query": metadata_query(**ours), "limit": "10"}))
        if not found:
            customer = self._number_customer.get(invoice_number)
            query = {"customer": customer} if customer else {}
            listing = await self._list("/v1/invoices", query)
            found = [o for o in listing if ours.items() <= metadata_of(o).items()]
        complete = [inv for inv in found if is_complete(inv, self.settings)]
        return invoice_from_stripe(complete[0], invoice_number) if complete else None

    # ------------------------------------------------------------------ steps
    async def _step(
        self, invoice: Invoice, step: str, path: str, data: Mapping[str, Any], id_prefix: str = ""
    ) -> tuple[Json, bool]:
        """:meth:`_post` of one step of delivering ``invoice``, with that step's idempotency key."""
        key = idempotency_key(invoice, step)
        return await self._post(path, data, key, f" ({invoice.invoice_number} {step})", id_prefix)

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
            query = metadata_query(broker_client_id=invoice.client_id, broker_tenant=self.tenant)
            hits = await self._search_customers(query)
            if hits:
                self._contacts._cache[invoice.client_id] = str(hits[0]["id"])
        customer_id = await self._contacts.resolve(invoice)
        if not customer_id:  # pragma: no cover - native_name_match is off, resolve always returns an id
            raise PermanentError(f"Stripe: no customer for client {invoice.client_id}")
        return customer_id

    async def _search_customers(self, query: str) -> list[Json]:
        """``GET /v1/customers/search`` hits that are not deleted, oldest first."""
        page = await self._get("/v1/customers/search", {"query": query, "limit": "10"})
        hits = [o for o in list_objects(page) if not o.get("deleted")]
        hits.sort(key=lambda c: (c.get("created") or 0, str(c.get("id"))))
        return hits

    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """:class:`connectors.sdk.contacts.ContactDirectory`: e-mail via the (consistent) list filter, name via
        search; tax numbers are not searchable in Stripe (customer tax IDs have no search field)."""
        if field == "email":
            rows = list_objects(await self._get("/v1/customers", {"email": value, "limit": "10"}))
        elif field == "name":
            rows = await self._search_customers(f"name:{search_literal(value)}")
        else:
            return None
        return next((str(row["id"]) for row in rows if same_value(field, row.get(field), value)), None)

    async def create_contact(self, query: ContactQuery) -> str:
        """``POST /v1/customers`` (name, e-mail, our ids in metadata) with a per-client idempotency key.

        Raises :class:`PermanentError` when the name is longer than Stripe allows (256 characters).
        """
        try:
            params = customer_params(query, self.tenant)
        except MappingError as exc:
            raise PermanentError(f"Stripe customer for client {query.client_id}: {exc}") from None
        key = customer_idempotency_key(self.tenant, query.client_id)
        body, _ = await self._post("/v1/customers", params, key, f" (client {query.client_id})", "cus_")
        return str(body["id"])

    async def _tax_rate(self, spec: TaxRateSpec) -> str:
        """Tax Rate id for ``spec``: ``settings.tax_rate_ids``, cache, an active matching rate, or a new one."""
        mapped = self.settings.tax_rate_ids.get(spec.lookup_key)
        if mapped is None and not spec.inclusive:
            mapped = self.settings.tax_rate_ids.get(spec.lookup_key + ":exclusive")
        if mapped:
            return mapped
        name = spec.ref.name
        if name not in self._tax_rates:
            query = {"active": "true", "inclusive": "true" if spec.inclusive else "false"}
            rate_id = matching_tax_rate(await self._list("/v1/tax_rates", query), spec, self.tenant)
            if rate_id is None:
                key = tax_rate_idempotency_key(self.tenant, spec)
                note = f" ({rate_key(spec.percentage)}%)"
                body, _ = await self._post("/v1/tax_rates", spec.params(self.tenant), key, note, "txr_")
                rate_id = str(body["id"])
            self._tax_rates[name] = rate_id
        return self._tax_rates[name]

    async def _lookup(self, invoice: Invoice, customer: str) -> Json | None:
        """The customer's invoice carrying our ``broker_invoice_key`` (strongly consistent list), or ``None``.

        Without one, a non-void invoice labelled with our number (:func:`carries_number`) is someone
        else's: :class:`NumberConflictError` (:func:`connectors.sdk.lifecycle.check_ours`), nothing is created.
        """
        since = int((invoice.event_time - timedelta(days=self.settings.lookup_window_days)).timestamp())
        query = {"customer": customer, "created[gte]": str(since)}
        listing = await self._list("/v1/invoices", query)
        ours = pick_invoice(listing, invoice.invoice_key)
        if ours is not None:
            return ours
        for other in listing:
            if other.get("status") != "void" and carries_number(
                other, invoice.invoice_number, self.settings.number_field_name
            ):
                check_ours(
                    invoice, invoice_from_stripe(other, invoice.invoice_number), what=f"Stripe {other['status']}"
                )
        return None

    async def _attach_items(
        self, invoice: Invoice, plan: StripePlan, ids: dict[str, str], *, check_existing: bool
    ) -> None:
        """``POST /v1/invoiceitems`` per line; with ``check_existing``, only for lines the draft lacks."""
        present: set[str] = set()
        if check_existing:
            items = await self._list("/v1/invoiceitems", {"invoice": ids["invoice"]}, max_pages=3)
            present = lines_present(items, invoice.invoice_key)
        for n, item in enumerate(plan.items, start=1):
            if str(n) not in present:
                await self._step(invoice, f"item-{n}", "/v1/invoiceitems", resolve(item, ids))

    async def _finalize(self, invoice: Invoice, inv_id: str) -> Json:
        """``POST /v1/invoices/{id}/finalize``; a 400 on an invoice that is no longer a draft means done."""
        try:
            return (await self._step(invoice, "finalize", f"/v1/invoices/{inv_id}/finalize", _NO_AUTO_ADVANCE))[0]
        except PermanentError as exc:
            if exc.http_status != 400:
                raise
            # e.g. already finalised by an earlier attempt whose key has expired: look at the real state
            current = await self._get(f"/v1/invoices/{inv_id}")
            if current.get("status") in (None, "draft"):
                raise
            return current

    # ------------------------------------------------------------------ lifecycle (connectors.sdk.lifecycle)
    async def retire(self, previous: ExternalInvoice, *, key: str, reason: str, issued: date) -> Retirement:
        """Take ``previous`` (an invoice we delivered) out of the customer's balance, by Stripe's rules.

        Re-read first (``GET /v1/invoices/{id}``; 404 = gone). By status
        (https://docs.stripe.com/invoicing/integration/workflow-transitions):

        * ``draft``: deleted (``DELETE /v1/invoices/{id}``, spec ``DeleteInvoicesInvoice``: drafts only)
          -> ``deleted``;
        * ``open`` / ``uncollectible`` with ``amount_paid`` 0: voided (``POST /v1/invoices/{id}/void``,
          spec ``PostInvoicesInvoiceVoid``; a void invoice stays as a paper trail) -> ``voided``;
        * ``paid`` (or any payment): a credit note for its whole ``total`` (``POST /v1/credit_notes``,
          :func:`~connectors.stripe.mapper.credit_note_params`: the paid part credited to the customer's
          balance) -> ``credited`` with ``paid`` = ``amount_paid``. Stripe numbers credit notes itself;
          ours (``<our number>-CN``) is in ``metadata[broker_credit_note_number]``;
        * ``void``, absent, a paid invoice of total 0 (nothing to credit), or a credit note of ours
          already issued for it (``GET /v1/credit_notes?invoice=``) -> ``none``.

        Never deletes or voids a paid invoice; a void refused because a payment arrived since the read
        is re-read and credited instead. Writes carry ``retire_idempotency_key(tenant, key, step)``.
        Raises :class:`NumberConflictError` when a credit note of the invoice carries our credit note
        number but not its marker or total, plus the errors of every call.
        """
        inv = await self._current(previous)
        if inv is None:
            return Retirement("none", previous.number)
        number, status = str(inv.get("number") or previous.number), str(inv.get("status"))
        if status == "void":
            return Retirement("none", number, status)
        if status == "draft":
            await self._delete_draft(inv)
            return Retirement("deleted", number, status)
        note = await self._our_credit_note(inv)
        if note is not None:
            return Retirement("none", number, status, details={"credited_by": str(note.get("number"))})
        if status in ("open", "uncollectible") and not inv.get("amount_paid"):
            try:
                await self._post(
                    f"/v1/invoices/{inv['id']}/void",
                    {},
                    retire_idempotency_key(self.tenant, key, "void"),
                    f" ({number} void)",
                    "in_",
                )
                return Retirement("voided", number, status)
            except PermanentError:
                inv = await self._current(previous)  # a payment may have arrived since the read
                if inv is None or not inv.get("amount_paid"):
                    raise
                status = str(inv.get("status"))
        if not isinstance(inv.get("total"), int) or int(inv["total"]) <= 0:
            return Retirement("none", number, status, details={"nothing_to_credit": True})
        params = credit_note_params(inv, reason=reason, issued=issued, key=key, tenant=self.tenant)
        body, _ = await self._post(
            "/v1/credit_notes",
            params,
            retire_idempotency_key(self.tenant, key, "credit_note"),
            f" ({number} credit note)",
            "cn_",
        )
        currency = str(inv.get("currency") or "eur")
        paid = from_minor(int(inv.get("amount_paid") or 0), currency)
        return Retirement(
            "credited",
            number,
            status,
            paid=paid if paid > 0 else None,
            credit_note_id=str(body["id"]),
            credit_note_number=str(params["metadata"]["broker_credit_note_number"]),
            credit_note_total=from_minor(int(body.get("total") or 0), currency),
            details={"stripe_credit_note_number": body.get("number")},
        )

    async def _current(self, previous: ExternalInvoice) -> Json | None:
        """``previous`` as Stripe holds it now (``GET /v1/invoices/{id}``), ``None`` when it no longer exists.

        Without an ``external_id`` it is looked up by our number first (:meth:`find`).
        """
        ident = previous.external_id
        if not ident:
            found = await self.find(previous.number)
            if found is None:
                return None
            ident = found.external_id
        resp = await self._call("GET", f"/v1/invoices/{ident}")
        if resp.status_code == 404:
            return None
        return self._object(resp, f"Stripe GET /v1/invoices/{ident}")

    async def _delete_draft(self, inv: Json) -> None:
        """``DELETE /v1/invoices/{id}`` (idempotent by nature: a 404 means an earlier attempt deleted it)."""
        path = f"/v1/invoices/{inv['id']}"
        resp = await self._call("DELETE", path)
        if resp.status_code != 404:
            self._object(resp, f"Stripe DELETE {path}")

    async def _our_credit_note(self, inv: Json) -> Json | None:
        """The live credit note of ``inv`` carrying our credit note number (``metadata[broker_credit_note_number]``).

        ``GET /v1/credit_notes?invoice=<id>`` (spec ``GetCreditNotes``); void ones count as none. One with
        our number but another marker or total raises :class:`NumberConflictError`.
        """
        meta = metadata_of(inv)
        ours = credit_note_number(str(meta.get("broker_invoice_number") or inv.get("number") or inv.get("id")))
        notes = await self._list("/v1/credit_notes", {"invoice": str(inv["id"])}, max_pages=3)
        for note in notes:
            if note.get("status") == "void" or metadata_of(note).get("broker_credit_note_number") != ours:
                continue
            found, owner = metadata_of(note).get("broker_invoice_key"), meta.get("broker_invoice_key")
            if found != owner or note.get("total") != inv.get("total"):
                currency = str(inv.get("currency") or "eur")
                raise credit_note_conflict(
                    "Stripe",
                    ours,
                    note_id=note.get("id"),
                    invoice=str(inv.get("number")),
                    ours=from_minor(int(inv.get("total") or 0), currency),
                    theirs=from_minor(int(note.get("total") or 0), currency),
                    why=f"Stripe's credit note {note.get('number')} carries our number in its metadata but the "
                    f"marker {found!r} (ours {owner!r})",
                    remedy="remove its broker_credit_note_number metadata or void it",
                )
            return note
        return None

    def _result(
        self, invoice: Invoice, inv: Json, plan: StripePlan, *, created: bool, resumed: bool, emailed: bool = False
    ) -> DeliveryResult:
        currency = str(inv.get("currency") or plan.currency)
        found = invoice_from_stripe(inv, invoice.invoice_number)
        details = {
            "total": None if found.total is None else str(found.total),
            "tax": str(from_minor(int(inv.get("tax") or 0), currency)),
            "amount_due": str(from_minor(int(inv.get("amount_due") or 0), currency)),
            "status": inv.get("status"),
            "stripe_number": inv.get("number"),
            "total_matches": inv.get("total") == plan.total_minor,
            "resumed": resumed,
            "emailed": emailed or metadata_of(inv).get("broker_emailed") == "true",
            "idempotency_key": idempotency_key(invoice, "invoice"),
        }
        if not created:
            details["duplicate"] = True
        return DeliveryResult(invoice.invoice_key, found.external_id, found.number, created=created, details=details)


__all__ = ["StripeConnector"]
