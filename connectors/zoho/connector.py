"""Zoho Invoice (API v3) connector.

Creates invoices with ``POST https://www.zohoapis.<dc>/invoice/v3/invoices`` (``shared/billing-apis.md`` § 4,
https://www.zoho.com/invoice/api/v3/). Facts it relies on:

* OAuth 2.0 with refresh tokens that do not rotate (the grant: :meth:`ZohoConnector._grant`); access
  tokens last one hour. Calls carry ``Authorization: Zoho-oauthtoken <token>`` and
  ``X-com-zoho-invoice-organizationid``. The SDK's :class:`~connectors.sdk.http.OAuth2Auth` keeps the
  tokens in the tenant's token store and refreshes single-flight across coroutines and processes.
* Envelope ``{"code": 0, "message": "success", "invoice": {...}}``; errors ``{"code": <non-zero>,
  "message": ...}`` with HTTP 4xx/5xx. ``invoice_number`` is unique per organisation: reusing one is
  HTTP 400 ``{"code": 1001, "message": "Invoice Number already exist"}`` -> the invoice is looked up
  with ``GET /invoices?invoice_number=`` and recorded as delivered (``created=False``). There is no
  idempotency key, so that uniqueness *is* the idempotency mechanism; our own number is used with
  ``ignore_auto_number_generation=true``.
* Invoices are created as drafts; "mark as sent" (``POST /invoices/{id}/status/sent``) and "email"
  (``POST /invoices/{id}/email``) are separate, naturally idempotent steps (status / ``is_emailed``
  are checked first). Before marking sent, Zoho's ``total`` is compared with ours; a mismatch is a
  :class:`PermanentError` and the invoice stays a draft. An invoice to post as a draft (``invoice.draft``,
  the tenant's ``approval: draft``) stops after the create: status ``draft``, neither marked sent nor
  e-mailed, whatever ``invoice_status`` / ``send_email`` say.
* Limits: 100 requests per minute per organisation (as documented for Zoho Books/Inventory on the
  same platform); 429 beyond. The connector paces its own calls (:class:`connectors.sdk.http.Pacer`).
* Ownership: every invoice carries our marker (:func:`connectors.sdk.lifecycle.marker`) on the last
  line of its ``notes`` (see :mod:`connectors.zoho.mapper`); a number found taken (code 1001) is
  adopted only when ``GET /invoices/{id}`` shows our marker and our total
  (:func:`~connectors.sdk.lifecycle.check_ours`), else :class:`NumberConflictError`.
* Lifecycle (:meth:`ZohoConnector.retire`), by Zoho's rules (https://www.zoho.com/invoice/api/v3/invoices/,
  https://www.zoho.com/invoice/api/v3/credit-notes/, Zoho Invoice help "Writing off or making your
  invoice void"): a ``draft`` is deleted (``DELETE /invoices/{id}``); a sent invoice without payments
  or credits is voided (``POST /invoices/{id}/status/void``, kept for reference, out of the
  receivables); one with a payment or credit is never voided or deleted but credited in full by a
  credit note ``<number>-CN`` (``POST /creditnotes``, looked up by ``creditnote_number`` first),
  whose credit is applied to what the invoice still has due (``POST /creditnotes/{id}/invoices``);
  the rest stays unapplied customer credit (money received that may be owed back).
"""

from __future__ import annotations

import logging
from datetime import date
from decimal import Decimal
from functools import cached_property
from types import MappingProxyType
from typing import Any

import httpx
from pydantic import SecretStr

from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.errors import (
    AuthError,
    ConnectorError,
    MissingScopeError,
    NumberConflictError,
    PermanentError,
    RateLimitedError,
    ReauthRequiredError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
    retry_after_seconds,
)
from connectors.sdk.http import Auth, HttpConnector, Pacer
from connectors.sdk.interface import Capabilities, DeliveryResult
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import Retirement, check_ours, credit_note_number, read_marker
from connectors.sdk.money import dumps
from connectors.sdk.oauth2 import OAuth2Config, TokenSet, TokenStore
from connectors.zoho import mapper
from connectors.zoho.settings import DATA_CENTERS, ZohoSettings

log = logging.getLogger("connectors.zoho")

ORG_HEADER = "X-com-zoho-invoice-organizationid"
#: Zoho error codes the connector acts on (others are permanent): 1001 invoice number taken, 3062 contact
#: name taken, 57 not authorised (missing scope), 6041 organisation not associated with the user.
#: Code 14 (invalid/expired token) comes with a 401: the SDK refreshes the token once.
DUPLICATE_NUMBER_CODE = 1001
CONTACT_EXISTS_CODE = 3062
NOT_AUTHORISED_CODE = 57
UNKNOWN_ORG_CODE = 6041
#: 1002 "... does not exist" (a deleted invoice), 12018 "The specified Credit Note Number already exists"
#: (https://www.zoho.com/invoice/api/v3/credit-notes/).
NOT_FOUND_CODE = 1002
DUPLICATE_CREDIT_NOTE_CODE = 12018
#: Invoice statuses with nothing left to retire.
RETIRED_STATUSES = frozenset({"void"})
SCOPES = (
    "ZohoInvoice.invoices.CREATE",
    "ZohoInvoice.invoices.READ",
    "ZohoInvoice.invoices.UPDATE",
    "ZohoInvoice.invoices.DELETE",
    "ZohoInvoice.creditnotes.CREATE",
    "ZohoInvoice.creditnotes.READ",
    "ZohoInvoice.creditnotes.UPDATE",
    "ZohoInvoice.contacts.CREATE",
    "ZohoInvoice.contacts.READ",
    "ZohoInvoice.settings.READ",
)


class ZohoConnector(HttpConnector):
    """Zoho Invoice connector: one organisation (``organization_id``) for one broker tenant.

    Errors: :class:`RateLimitedError` (429; ``Retry-After`` or ``X-Rate-Limit-Reset``),
    :class:`RetryableError` (5xx on reads, connection not established), :class:`UncertainOutcomeError`
    (create sent but no answer, or 5xx answering it: reconcile with :meth:`find`), :class:`AuthError`
    (token refused after one refresh), :class:`MissingScopeError` (code 57),
    :class:`UnknownAccountError` (organisation not reachable), :class:`PermanentError` (validation,
    total mismatch, number taken by another customer), :class:`NumberConflictError` (our number on a
    document without our marker or with another total), :class:`ConfigError` (settings, missing secret).
    """

    name = "zoho"
    label = "Zoho"
    version = "0.1.0"
    # invoice_number Max-length [100] (https://www.zoho.com/invoice/api/v3/invoices/, mapper.INVOICE_NUMBER_MAX);
    # no creditnote_number limit is documented in the material at hand
    capabilities = Capabilities(
        oauth2=True,
        amendments=True,
        rate_limit_per_minute=100,
        invoice_number_max=mapper.INVOICE_NUMBER_MAX,
        # created as draft until marked sent / e-mailed; a draft is deleted, not voided
        # (https://www.zoho.com/invoice/api/v3/invoices/: "Mark an invoice as sent", "Void an invoice")
        drafts=True,
    )
    Settings = ZohoSettings
    # Zoho reports a taken number as 400 code 1001; every other 4xx refuses the data (5xx: see classify).
    status_overrides = MappingProxyType(dict.fromkeys((408, 409, 425), PermanentError))

    def __init__(
        self, settings: ZohoSettings | dict[str, Any], *, tenant: str, token_store: TokenStore | None = None
    ) -> None:
        super().__init__(settings, tenant=tenant, token_store=token_store)
        self.settings: ZohoSettings
        self._pacer = Pacer(self.settings.max_requests_per_minute, window=60.0)
        self._taxes: dict[str, str] | None = None

    def __repr__(self) -> str:
        s = self.settings
        return f"ZohoConnector(tenant={self.tenant!r}, organization_id={s.organization_id!r}, dc={s.data_center!r})"

    # ------------------------------------------------------------------ OAuth2
    def make_auth(self) -> Auth:
        """``Authorization: Zoho-oauthtoken <token>``, kept in the tenant's token store; refreshes: :meth:`_grant`."""
        s = self.settings
        return self.refresh_token_auth(
            s.token_url, issuer=s.accounts_base, refresh=self._grant, scheme="Zoho-oauthtoken"
        )

    def unauthorized_hint(self) -> str:
        """What to check when Zoho refuses the credentials: the secrets, ``authorize``, the data centre."""
        s = self.settings
        return (
            f" for client_id {s.client_id}: check {s.client_secret_env} and {s.refresh_token_env} (or run "
            f"`broker connectors authorize zoho`), and data_center {s.data_center!r}"
        )

    async def _grant(self, refresh_token: SecretStr | None) -> TokenSet:
        """``POST {accounts}/oauth/v2/token`` (form ``client_id``/``client_secret``/``refresh_token``).

        Zoho refuses a dead refresh token with HTTP 200 ``{"error": "invalid_code"}`` -> :class:`ReauthRequiredError`,
        other refusals (``invalid_client``) -> :class:`AuthError`; too many grants
        answer 400 ``{"error": "Access Denied"}`` -> :class:`RateLimitedError`; 5xx -> :class:`RetryableError`.
        """
        form = {
            "grant_type": "refresh_token",
            "client_id": self.settings.client_id,
            "client_secret": self.secret("client_secret_env").get_secret_value(),
            "refresh_token": refresh_token.get_secret_value() if refresh_token else "",
        }
        # The accounts server does not count against the organisation's per-minute limit: not paced.
        headers = {"Accept": "application/json"}
        resp = await super().send("POST", self.settings.token_url, data=form, headers=headers, idempotent=True)
        status, body = resp.status_code, self.decode(resp)
        error = str(body.get("error") or "") if isinstance(body, dict) else ""
        if status == 429 or error.lower() == "access denied":
            retry = retry_after_seconds(resp.headers.get("Retry-After"))
            message = "Zoho token refresh: too many token requests (Access Denied)"
            raise RateLimitedError(message, retry_after=retry, http_status=status)
        if status >= 500:
            raise RetryableError(f"Zoho token refresh: HTTP {status}", http_status=status)
        if status != 200 or error or not isinstance(body, dict) or not body.get("access_token"):
            refused = self.scrub(f"Zoho token refresh refused (HTTP {status} {error or 'no access_token'})")
            error_cls = ReauthRequiredError if error == "invalid_code" else AuthError
            raise error_cls(refused + self.unauthorized_hint(), http_status=401 if status == 200 else status)
        return TokenSet.from_token_response(body, previous_refresh=refresh_token)

    def oauth2_config(self) -> OAuth2Config:
        """Authorization-code flow at ``accounts.zoho.<dc>`` (``access_type=offline`` to get a refresh token)."""
        s = self.settings
        return self.authorization_config(
            s.token_url,
            SCOPES,
            authorize_url=s.accounts_base + "/oauth/v2/auth",
            issuer=s.accounts_base,
            auth_method="post",
            extra_params={"access_type": "offline", "prompt": "consent"},
        )

    # ------------------------------------------------------------------ Zoho's answers
    def _code(self, resp: httpx.Response) -> int | None:
        body = self.decode(resp)
        code = body.get("code") if isinstance(body, dict) else None
        return code if isinstance(code, int) else None

    def problem_detail(self, resp: httpx.Response) -> str:
        """Zoho's error envelope as ``code <n>: <message>`` (scrubbed, at most 400 characters)."""
        body = self.decode(resp)
        if isinstance(body, dict) and ("code" in body or "message" in body):
            return self.scrub(f"code {body.get('code')}: {body.get('message')}")[:400]
        return super().problem_detail(resp)

    def unauthorized_error(self, resp: httpx.Response, what: str) -> ConnectorError | None:
        """A 401 with code 57: the token lacks a scope, which no refresh cures."""
        if self._code(resp) != NOT_AUTHORISED_CODE:
            return None
        return MissingScopeError(
            f"{what}: not authorised ({self.problem_detail(resp)}); the token lacks a scope among {', '.join(SCOPES)}"
            f" - run `broker connectors authorize zoho --tenant {self.tenant}`",
            http_status=401,
        )

    def classify(self, resp: httpx.Response, what: str) -> ConnectorError | None:
        """429 waits ``Retry-After`` or ``X-Rate-Limit-Reset``; a 5xx answering a POST may have landed
        (:class:`UncertainOutcomeError`); code 6041 is an organisation these credentials cannot reach."""
        status, detail = resp.status_code, self.problem_detail(resp)
        if status == 429:
            retry = retry_after_seconds(resp.headers.get("Retry-After") or resp.headers.get("X-Rate-Limit-Reset"))
            return RateLimitedError(f"{what}: 429 rate limited ({detail}), retry after {retry:g}s", retry_after=retry)
        if status >= 500:
            cls = UncertainOutcomeError if resp.request.method == "POST" else RetryableError
            return cls(f"{what}: HTTP {status} ({detail})", http_status=status)
        if self._code(resp) == UNKNOWN_ORG_CODE:
            return UnknownAccountError(f"{what}: unknown organisation {self.settings.organization_id} ({detail})")
        return None

    async def send(self, method: str, url: str, *, idempotent: bool = False, **kwargs: Any) -> httpx.Response:
        """Each API exchange (a retry after a 401 too) first waits for the per-minute pacer."""
        await self._pacer.wait()
        return await super().send(method, url, idempotent=idempotent, **kwargs)

    async def _api(
        self, method: str, path: str, *, params: dict[str, str] | None = None, body: Any = None
    ) -> httpx.Response:
        """An authenticated call under ``/invoice/v3`` (JSON ``body`` with exact decimals; status unchecked)."""
        headers = {} if path == "/organizations" else {ORG_HEADER: self.settings.organization_id}  # all but the list
        content = None if body is None else dumps(body)
        if content is not None:
            headers["Content-Type"] = "application/json;charset=UTF-8"
        url = self.settings.api_base + "/invoice/v3" + path
        return await self.request(method, url, params=params, headers=headers, content=content)

    async def _get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        resp = await self._api("GET", path, params=params)
        self.raise_for_status(resp, f"Zoho GET {path}")
        body = self.decode(resp)
        if not isinstance(body, dict):
            raise RetryableError(f"Zoho GET {path}: unreadable body", http_status=resp.status_code)
        return body

    def _created(self, resp: httpx.Response, kind: str, what: str) -> dict[str, Any]:
        """The ``kind`` object (``invoice``, ``contact``) of a create's answer, which must carry ``<kind>_id``."""
        self.raise_for_status(resp, what)
        body = self.decode(resp)
        obj = body.get(kind) if isinstance(body, dict) else None
        if not isinstance(obj, dict) or not obj.get(f"{kind}_id"):
            raise UncertainOutcomeError(f"{what}: no {kind} in the answer", http_status=resp.status_code)
        return obj

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """``GET /invoice/v3/organizations``: token, scopes and that ``organization_id`` is reachable."""
        body = await self._get("/organizations")
        orgs = [str(o.get("organization_id")) for o in body.get("organizations") or [] if isinstance(o, dict)]
        if self.settings.organization_id not in orgs:
            raise UnknownAccountError(
                f"unknown organisation {self.settings.organization_id} in Zoho data centre "
                f"{self.settings.data_center!r}: these credentials reach {', '.join(orgs) or 'no organisation'}"
            )

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` (draft), check Zoho's total, then mark it sent / email it as configured
        (neither when ``invoice.draft``: it stays a Zoho draft).

        A reused number (code 1001) is looked up and returned with ``created=False`` once proven ours
        (our marker and total, else :class:`NumberConflictError` and nothing is changed; another
        customer: :class:`PermanentError`), after the remaining steps. ``details``: ``total``,
        ``tax_total``, ``adjustment``, ``status``, ``total_matches``, ``emailed``, ``duplicate``.
        """
        what = f"Zoho invoice {invoice.invoice_number}"
        customer_id = await self._contacts.resolve(invoice)  # contact_id, else found or created
        assert customer_id  # None only with native_name_match, which Zoho does not use
        tax_ids = await self._tax_ids(invoice)
        try:
            plan = mapper.invoice_to_zoho(invoice, self.settings, customer_id=customer_id, tax_ids=tax_ids)
        except mapper.MappingError as exc:
            raise PermanentError(f"{what}: {exc}") from None
        resp = await self._api("POST", "/invoices", params={"ignore_auto_number_generation": "true"}, body=plan.body)
        created = not (resp.status_code == 400 and self._code(resp) == DUPLICATE_NUMBER_CODE)
        if created:
            inv = self._created(resp, "invoice", f"{what}: POST /invoices")
        else:
            inv = await self._taken(invoice, customer_id, what)
        total = mapper.amount(inv.get("total"))
        if total != invoice.total:
            raise PermanentError(
                f"{what}: Zoho's total {inv.get('total')} differs from ours {invoice.total} "
                f"(invoice {inv.get('invoice_id')} left as {inv.get('status')}, not marked sent)"
            )
        inv_id = str(inv["invoice_id"])
        if invoice.draft:
            pass  # left a draft for the organisation to review and send in Zoho
        elif self.settings.send_email and not inv.get("is_emailed"):
            await self._email(invoice, inv_id, customer_id, what)
            inv = dict(inv, status="sent" if inv.get("status") == "draft" else inv.get("status"), is_emailed=True)
        elif self.settings.invoice_status == "sent" and inv.get("status") == "draft":
            resp = await self._api("POST", f"/invoices/{inv_id}/status/sent")
            refused = 400 <= resp.status_code < 500 and resp.status_code != 429
            if not refused or (await self._invoice(inv_id)).get("status") == "draft":  # else sent by an earlier try
                self.raise_for_status(resp, f"{what}: mark as sent")
            inv = dict(inv, status="sent")
        details: dict[str, Any] = {"total": str(total), "tax_total": str(inv.get("tax_total"))}
        details.update(adjustment=str(plan.adjustment), status=inv.get("status"), total_matches=True)
        details["emailed"] = bool(inv.get("is_emailed"))
        if not created:
            details["duplicate"] = True
        number = str(inv.get("invoice_number") or invoice.invoice_number)
        return DeliveryResult(invoice.invoice_key, inv_id, number, created=created, details=details)

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """``GET /invoices?invoice_number=<n>``: the invoice with exactly our number, when complete.

        A draft while ``invoice_status`` is ``sent`` (or not yet e-mailed with ``send_email``) counts as
        absent, so that the caller delivers again and the remaining steps run.
        The invoice is then read whole (``GET /invoices/{id}``: the list has no ``notes``) for its
        ``marker``, ``total``, ``status`` and ``paid`` (``payment_made``).
        """
        raw = await self._find_raw(invoice_number)
        draft = raw is not None and self.settings.invoice_status == "sent" and raw.get("status") == "draft"
        if raw is None or draft or (self.settings.send_email and not raw.get("is_emailed")):
            return None
        return mapper.invoice_from_zoho(await self._invoice(str(raw["invoice_id"])))

    # ------------------------------------------------------------------ steps
    async def _taken(self, invoice: Invoice, customer_id: str, what: str) -> dict[str, Any]:
        """The invoice already holding our number (code 1001), once proven ours.

        :class:`NumberConflictError` (:func:`check_ours`) when it lacks our marker or its total is not
        ours; :class:`PermanentError` when it is another customer's.
        """
        existing = await self._find_raw(invoice.invoice_number)
        if existing is None:
            raise RetryableError(f"{what}: number taken (code 1001) but GET /invoices does not list it yet")
        inv = await self._invoice(str(existing["invoice_id"]))
        check_ours(invoice, mapper.invoice_from_zoho(inv), what="Zoho answered code 1001, number already used")
        if str(inv.get("customer_id")) != str(customer_id):
            raise PermanentError(
                f"{what}: the number is already used by another customer's invoice "
                f"{inv.get('invoice_id')} (customer {inv.get('customer_id')}, ours {customer_id})"
            )
        return inv

    async def _find_raw(self, invoice_number: str) -> dict[str, Any] | None:
        body = await self._get("/invoices", {"invoice_number": invoice_number})
        for inv in body.get("invoices") or []:
            if isinstance(inv, dict) and str(inv.get("invoice_number")) == invoice_number and inv.get("invoice_id"):
                return inv
        return None

    async def _invoice(self, invoice_id: str) -> dict[str, Any]:
        inv = (await self._get(f"/invoices/{invoice_id}")).get("invoice")
        if not isinstance(inv, dict):
            raise RetryableError(f"Zoho GET /invoices/{invoice_id}: no invoice in the answer")
        return inv

    # ------------------------------------------------------------------ lifecycle
    async def retire(self, previous: ExternalInvoice, *, key: str, reason: str, issued: date) -> Retirement:
        """Take ``previous`` (an invoice we delivered) out of the customer's balance, by Zoho's rules.

        Re-reads it (``GET /invoices/{id}``; by number when the id is unknown, then it must carry a
        broker marker), then:

        * absent (deleted) or ``void`` -> ``none``;
        * any payment (``payment_made``) or credit (``credits_applied``), or status ``paid`` /
          ``partially_paid`` -> :meth:`_credit`: a credit note ``<number>-CN`` for the whole total
          (``credited``, ``paid`` = the payments; ``none`` when it exists already);
        * ``draft`` -> ``DELETE /invoices/{id}`` (``deleted``);
        * otherwise (sent, viewed, overdue, unpaid: finalised, nothing received) ->
          ``POST /invoices/{id}/status/void`` (``voided``).

        Every step re-reads first, so a repeat after a crash changes nothing more. ``key`` is unused
        (Zoho has no idempotency key: the credit note's number is the guard); ``reason`` becomes the
        credit note's ``notes``; ``issued`` its ``date``.
        """
        del key
        current = await self._current(previous)
        if current is None:
            return Retirement("none", previous.number)
        inv_id, status = str(current["invoice_id"]), str(current.get("status") or "")
        number = str(current.get("invoice_number") or previous.number)
        what = f"Zoho invoice {number} ({inv_id})"
        received = [mapper.amount(current.get(k)) or Decimal(0) for k in ("payment_made", "credits_applied")]
        if status in RETIRED_STATUSES:
            return Retirement("none", number, status)
        if any(received) or status in ("paid", "partially_paid"):
            return await self._credit(current, reason=reason, issued=issued)
        if status == "draft":
            resp = await self._api("DELETE", f"/invoices/{inv_id}")
            if not self._absent(resp):
                self.raise_for_status(resp, f"{what}: delete draft")
            return Retirement("deleted", number, status)
        resp = await self._api("POST", f"/invoices/{inv_id}/status/void")
        self.raise_for_status(resp, f"{what}: void")
        return Retirement("voided", number, status)

    def _absent(self, resp: httpx.Response) -> bool:
        """A 404 ``code 1002``: the document does not exist (deleted)."""
        return resp.status_code == 404 and self._code(resp) in (NOT_FOUND_CODE, None)

    async def _current(self, previous: ExternalInvoice) -> dict[str, Any] | None:
        """``previous`` as Zoho holds it now (``None``: deleted or never there).

        By id when known; else by number, and then only an invoice carrying a broker marker counts
        (:class:`PermanentError` otherwise: a document we did not create is never voided or credited).
        """
        inv_id = previous.external_id
        if not inv_id:
            raw = await self._find_raw(previous.number)
            if raw is None:
                return None
            inv_id = str(raw["invoice_id"])
        resp = await self._api("GET", f"/invoices/{inv_id}")
        if self._absent(resp):
            return None
        self.raise_for_status(resp, f"Zoho GET /invoices/{inv_id}")
        body = self.decode(resp)
        inv = body.get("invoice") if isinstance(body, dict) else None
        if not isinstance(inv, dict):
            raise RetryableError(f"Zoho GET /invoices/{inv_id}: no invoice in the answer")
        if not previous.external_id and read_marker(inv.get("notes")) is None:
            raise PermanentError(
                f"Zoho invoice {previous.number} ({inv_id}) carries no broker marker: not retired, it is not "
                "a document the broker created"
            )
        return inv

    async def _credit(self, current: dict[str, Any], *, reason: str, issued: date) -> Retirement:
        """Credit ``current`` in full with credit note ``<number>-CN`` (created once), applied to what is still due.

        Looked up first (``GET /creditnotes?creditnote_number=``): found -> ``none`` (credited
        before; only a missing application is completed), else ``POST /creditnotes`` with
        ``ignore_auto_number_generation=true`` and ``invoice_id`` (code 12018 = created meanwhile:
        looked up again). A found credit note of another customer or invoice is a
        :class:`NumberConflictError`. Then the credit is applied to the invoice's ``balance`` (``POST
        /creditnotes/{id}/invoices``), at most the credit note's own ``balance``; what is left stays
        unapplied customer credit. A credit note total that differs from the invoice's is logged.
        """
        inv_id, status = str(current["invoice_id"]), str(current.get("status") or "")
        number = str(current.get("invoice_number") or "")
        total = mapper.amount(current.get("total")) or Decimal(0)
        paid = mapper.amount(current.get("payment_made")) or Decimal(0)
        cn_number = credit_note_number(number)
        what = f"Zoho credit note {cn_number} for invoice {number}"
        note = await self._find_credit_note(cn_number, current)
        existed = note is not None
        if note is None:
            try:
                body = mapper.credit_note_to_zoho(current, cn_number, issued=issued.isoformat(), reason=reason)
            except mapper.MappingError as exc:
                raise PermanentError(f"{what}: {exc}") from None
            params = {"ignore_auto_number_generation": "true", "invoice_id": inv_id}
            resp = await self._api("POST", "/creditnotes", params=params, body=body)
            if resp.status_code == 400 and self._code(resp) == DUPLICATE_CREDIT_NOTE_CODE:
                note = await self._find_credit_note(cn_number, current)
                if note is None:
                    raise RetryableError(f"{what}: number reported taken (code 12018) but not listed yet")
            else:
                note = self._created(resp, "creditnote", f"{what}: POST /creditnotes")
        note_total = mapper.amount(note.get("total"))
        if note_total != total:
            log.warning("zoho tenant=%s %s totals %s, the invoice %s", self.tenant, what, note_total, total)
        await self._apply(note, current, what)
        return Retirement(
            "none" if existed else "credited",
            number,
            status,
            paid=paid or None,
            credit_note_id=str(note["creditnote_id"]),
            credit_note_number=cn_number,
            credit_note_total=note_total,
        )

    async def _find_credit_note(self, cn_number: str, current: dict[str, Any]) -> dict[str, Any] | None:
        """The credit note numbered exactly ``cn_number`` (``GET /creditnotes?creditnote_number=``), or ``None``.

        :class:`NumberConflictError` when it is not for ``current``'s customer and number.
        """
        body = await self._get("/creditnotes", {"creditnote_number": cn_number})
        for note in body.get("creditnotes") or []:
            if not (isinstance(note, dict) and note.get("creditnote_number") == cn_number):
                continue
            same_customer = str(note.get("customer_id")) == str(current.get("customer_id"))
            if not same_customer or note.get("reference_number") != current.get("invoice_number"):
                theirs = mapper.amount(note.get("total"))
                raise NumberConflictError(
                    f"number_conflict: Zoho already holds a credit note numbered {cn_number} (id "
                    f"{note.get('creditnote_id')}, customer {note.get('customer_id')}, reference "
                    f"{note.get('reference_number')!r}, total {theirs}) that does not credit invoice "
                    f"{current.get('invoice_number')} (customer {current.get('customer_id')}, total "
                    f"{current.get('total')}): nothing was credited; rename or remove it, then replay",
                    number=cn_number,
                    ours=mapper.amount(current.get("total")) or Decimal(0),
                    theirs=theirs,
                    external_id=str(note.get("creditnote_id")),
                )
            return note
        return None

    async def _apply(self, note: dict[str, Any], current: dict[str, Any], what: str) -> None:
        """Apply the credit note to what ``current`` (read by this call) still has due: ``min(invoice
        balance, credit note balance)``; nothing when either is 0 (a paid invoice: the credit stays unapplied)."""
        inv_id = str(current["invoice_id"])
        due = mapper.amount(current.get("balance")) or Decimal(0)
        available = mapper.amount(note.get("balance")) or Decimal(0)
        if due <= 0 or available <= 0:
            return
        body = {"invoices": [{"invoice_id": inv_id, "amount_applied": min(due, available)}]}
        resp = await self._api("POST", f"/creditnotes/{note['creditnote_id']}/invoices", body=body)
        self.raise_for_status(resp, f"{what}: apply to invoice {inv_id}")

    async def _tax_ids(self, invoice: Invoice) -> dict[str, str]:
        """``settings.tax_ids`` completed by the organisation's taxes (``GET /settings/taxes``) for the rates in use."""
        ids = dict(self.settings.tax_ids)
        missing = mapper.unmapped_rates(invoice, ids)
        if missing and self._taxes is None:
            self._taxes = mapper.taxes_by_rate((await self._get("/settings/taxes")).get("taxes"))
        return ids | {rate: self._taxes[rate] for rate in missing if self._taxes and rate in self._taxes}

    @cached_property
    def _contacts(self) -> ContactResolver:
        """Built on first use: the host may set ``self.clients`` after construction."""
        allow = self.settings.create_contacts
        return ContactResolver(self, allow_create=allow, clients=self.clients, setting_name="create_contacts")

    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """:class:`connectors.sdk.contacts.ContactDirectory`: ``GET /contacts?email=`` or ``?contact_name=`` (exact)."""
        if field == "tax_number":
            return None  # not a filter of Zoho Invoice's contact list
        key = "email" if field == "email" else "contact_name"
        for contact in (await self._get("/contacts", {key: value})).get("contacts") or []:
            if isinstance(contact, dict) and same_value(field, contact.get(key), value):
                return str(contact["contact_id"])
        return None

    async def create_contact(self, query: ContactQuery) -> str:
        """``POST /contacts`` (a customer named like our client, with its e-mail as primary contact person)."""
        resp = await self._api("POST", "/contacts", body=mapper.contact_to_zoho(query.name, query.email))
        taken = resp.status_code == 400 and self._code(resp) == CONTACT_EXISTS_CODE
        if taken and (found := await self.find_contact("name", query.name)):
            return found
        return str(self._created(resp, "contact", f"Zoho POST /contacts (client {query.client_id})")["contact_id"])

    async def _email(self, invoice: Invoice, inv_id: str, customer_id: str, what: str) -> None:
        """``POST /invoices/{id}/email`` to the client's e-mail (the tenant's ``clients``, else Zoho's contact)."""
        email = getattr(self.clients.get(invoice.client_id), "email", None)
        if not email:
            email = ((await self._get(f"/contacts/{customer_id}")).get("contact") or {}).get("email")
        if not email:
            raise PermanentError(f"{what}: customer {customer_id} has no e-mail address to send it to")
        body = mapper.email_to_zoho(invoice, str(email), self.settings.email_subject)
        resp = await self._api("POST", f"/invoices/{inv_id}/email", body=body)
        self.raise_for_status(resp, f"{what}: email")


__all__ = ["DATA_CENTERS", "SCOPES", "ZohoConnector", "ZohoSettings"]
