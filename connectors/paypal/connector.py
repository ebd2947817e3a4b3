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
* A customer without an e-mail address: PayPal refuses to send with ``send_to_recipient: true`` (its
  default) when no recipient has ``billing_info.email_address`` (422), which used to leave a stray
  draft. ``settings.no_email`` decides, per tenant: ``mark_sent`` (default) sends with
  ``send_to_recipient: false`` ("To send the invoice through a share link and not through PayPal, set
  the send_to_recipient parameter to false", spec ``invoices.send``), so PayPal marks it ``SENT`` without
  e-mailing it; ``leave_unsent`` leaves the ``DRAFT`` on purpose and reports it (``details``).
* ``detail.invoice_number`` ≤25 characters and the other field limits are checked before sending
  (:mod:`connectors.paypal.mapper`, :class:`~connectors.paypal.mapper.FieldLimitError`).
* PayPal computes tax itself (``tax.amount`` is read-only); the mapper lays items out so PayPal's
  per-item, half-up rounding gives our totals, and the connector compares PayPal's ``amount.value``
  with our total before sending: a draft whose total differs is left unsent (:class:`PermanentError`).
* Ownership: our marker (:func:`connectors.sdk.lifecycle.marker`) is ``detail.memo``, PayPal's
  private bookkeeping memo (not shown to the payer). A document found under our number (lookup
  before create, ``DUPLICATE_INVOICE_NUMBER``) is adopted only with our marker and our total
  (:func:`~connectors.sdk.lifecycle.check_ours`), else :class:`NumberConflictError`.
* Lifecycle (spec ``invoices.delete``: "Deletes invoices in the draft or scheduled state only";
  ``invoices.cancel``: "Cancels a sent invoice", refusing ``CANNOT_CANCEL_DRAFT_INVOICE``,
  ``CANNOT_CANCEL_SCHEDULED_INVOICE``, ``CANNOT_CANCEL_PAID_INVOICE``, ``CANNOT_CANCEL_REFUNDED_INVOICE``):
  :meth:`PayPalConnector.retire` deletes a ``DRAFT`` / ``SCHEDULED`` invoice and cancels a ``SENT`` /
  ``UNPAID`` one. PayPal Invoicing has **no credit notes** and the broker moves no money, so an
  invoice with a payment is never retired by the broker: cancelling it is a :class:`PermanentError`
  telling the operator to refund it in PayPal (a ``REFUNDED`` invoice then counts as retired); a
  revision of it (:meth:`PayPalConnector.amend`) is created with the previous invoice's total
  deducted (a negative ``amount.breakdown.custom`` naming it, :class:`~connectors.paypal.mapper.Deduction`),
  so the customer owes the new total less what was already invoiced.
* Errors: ``{"name", "message", "debug_id", "details": [{"field", "value", "location", "issue",
  "description"}], "links"}``; 400 ``INVALID_REQUEST``, 401 ``AUTHENTICATION_FAILURE``, 403
  ``NOT_AUTHORIZED``, 404 ``RESOURCE_NOT_FOUND``, 409 ``RESOURCE_CONFLICT``, 422
  ``UNPROCESSABLE_ENTITY``, 429 ``RATE_LIMIT_REACHED`` (no published limits; ``Retry-After`` honoured
  when present), 5xx.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from connectors.paypal.mapper import (
    INVOICE_NUMBER_MAX,
    Deduction,
    cancel_notification,
    created_id,
    describe_error,
    exact_match,
    has_issue,
    invoice_from_paypal,
    invoice_to_paypal,
    notification,
    recipient_email,
    recipient_for,
)
from connectors.paypal.settings import PayPalSettings
from connectors.sdk import (
    Auth,
    AuthError,
    Capabilities,
    ConnectorError,
    DeliveryResult,
    HttpConnector,
    MissingScopeError,
    OAuth2Auth,
    PermanentError,
    RetryableError,
    UncertainOutcomeError,
)
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import Retirement, check_ours, read_marker
from connectors.sdk.money import dumps
from connectors.sdk.oauth2 import OAuth2TokenManager, TokenSet, default_token_store, token_key

log = logging.getLogger("connectors.paypal")

TOKEN_PATH = "/v1/oauth2/token"
INVOICES_PATH = "/v2/invoicing/invoices"
SEARCH_PATH = "/v2/invoicing/search-invoices"
#: Scope prefix a token needs (PayPal token responses list ``https://uri.paypal.com/services/invoicing``).
INVOICING_SCOPE = "https://uri.paypal.com/services/invoicing"
DUPLICATE_ISSUES = frozenset({"DUPLICATE_INVOICE_NUMBER"})
ALREADY_SENT_ISSUES = frozenset({"INVOICE_ALREADY_SENT", "ALREADY_SENT"})
CANCELLED_ISSUES = frozenset({"INVOICE_CANCELED_ALREADY"})
SEARCH_PAGE_SIZE = 100
SEARCH_MAX_PAGES = 20
#: Statuses with nothing left to retire: cancelled, or paid and refunded in full.
RETIRED_STATUSES = frozenset({"CANCELLED", "REFUNDED", "MARKED_AS_REFUNDED"})
#: Statuses a revision replaces by deducting the previous invoice's total (money received, no credit notes).
PAID_STATUSES = frozenset({"PAID", "MARKED_AS_PAID", "PARTIALLY_PAID"})


class PayPalConnector(HttpConnector):
    """PayPal Invoicing v2 connector: one PayPal business account (REST app) for one broker tenant.

    ``PayPalConnector(settings, *, tenant, token_store=None)``: ``settings`` is a :class:`PayPalSettings`
    or a mapping validated into one (:class:`ConfigError` naming the field). The client secret is read
    from the environment variable named by ``client_secret_env`` when a token is needed; access tokens
    live in ``token_store`` (default :func:`connectors.sdk.oauth2.default_token_store`).

    Errors: :class:`RateLimitedError` (429; ``Retry-After``, else 60 s), :class:`RetryableError` (5xx,
    connection not established, a send whose answer is lost while the draft exists),
    :class:`UncertainOutcomeError` (create sent, answer lost: reconcile with :meth:`find`, or call
    :meth:`deliver` again, which looks the number up first and completes the send), :class:`AuthError`
    (credentials refused, 401 after one new token, 403; :class:`MissingScopeError` from :meth:`check`
    without the invoicing scope), :class:`PermanentError` (400/404/409/422, field limits, a PayPal total
    that differs from ours), :class:`NumberConflictError` (our number on a document without our marker
    or with another total), :class:`ConfigError` (missing secret, bad URL). Reads (search, GET) that
    lose their answer are :class:`RetryableError`: nothing can have changed.
    """

    name = "paypal"
    label = "PayPal"
    version = "0.1.0"
    # PayPal publishes no rate limits, concurrency or daily caps for Invoicing (429 RATE_LIMIT_REACHED
    # when exceeded, honour Retry-After): nothing is declared, RateLimitedError drives the back-off.
    # detail.invoice_number: PayPal refuses more than 25 characters (mapper.INVOICE_NUMBER_MAX; the spec says
    # 127, /work/shared/billing-apis.md says <= 25). PayPal has no credit notes (retire cancels or deletes).
    # drafts: POST /v2/invoicing/invoices creates a DRAFT until invoices.send; invoices.delete "Deletes invoices in
    # the draft or scheduled state only" (spec invoicing_v2.json)
    capabilities = Capabilities(
        native_idempotency=False,
        lookup_by_reference=True,
        amendments=True,
        invoice_number_max=INVOICE_NUMBER_MAX,
        drafts=True,
    )
    Settings = PayPalSettings
    # 409 RESOURCE_CONFLICT is a state conflict, not a duplicate (those are 422 DUPLICATE_INVOICE_NUMBER).
    status_overrides = MappingProxyType({409: PermanentError})

    settings: PayPalSettings  # validated by the base class's __init__ (ConfigError naming the field)

    def __repr__(self) -> str:
        return f"PayPalConnector(tenant={self.tenant!r}, client_id={self.settings.client_id!r})"

    # ------------------------------------------------------------------ OAuth2 client credentials
    def make_auth(self) -> Auth:
        """``Authorization: Bearer <access token>`` from :attr:`token_manager`; a 401 gets exactly one new token."""
        return OAuth2Auth(self._new_token_manager)

    def _new_token_manager(self) -> OAuth2TokenManager:
        """Single-flight token manager over the token store (client-credentials grant, no seed).

        A client-credentials token belongs to the app (``client_id``), not to a tenant: it is kept under
        ``token_key("paypal", "app", issuer=api_url, client_id=client_id)``, so every worker and every
        tenant on the app reuse one PayPal access token instead of each fetching its own (PayPal
        rate-limits apps that request tokens too often).
        """
        if self.token_store is None:
            self.token_store = default_token_store()
        return OAuth2TokenManager(
            key=token_key("paypal", "app", issuer=self.settings.api_url, client_id=self.settings.client_id),
            store=self.token_store,
            refresh=self._grant,
            seed=None,
            margin=300.0,
        )

    @property
    def token_manager(self) -> OAuth2TokenManager:
        """The token manager of :meth:`make_auth`'s auth (every token it hands out is scrubbed from messages)."""
        auth = self.auth
        assert isinstance(auth, OAuth2Auth)  # make_auth() builds one
        return auth.manager

    @property
    def token_requests(self) -> int:
        """Token requests this connector made (observability; tests assert single flight with it)."""
        return self.token_manager.refreshes

    def unauthorized_hint(self) -> str:
        """What to check after the second 401 (the first one already got a new access token)."""
        return (
            f"; refused again after a new access token: check the REST app {self.settings.client_id} "
            "and its Invoicing permission"
        )

    async def _grant(self, _refresh_token: SecretStr | None) -> TokenSet:
        """``POST /v1/oauth2/token`` with HTTP Basic ``client_id:secret`` and ``grant_type=client_credentials``.

        Raises :class:`AuthError` (401 ``invalid_client``, 400), :class:`ConfigError` (missing secret),
        :class:`RateLimitedError` / :class:`RetryableError` (429 / 5xx / no answer: asking again is harmless).
        """
        secret = self.secret("client_secret_env")
        resp = await self.send(
            "POST",
            self.url(self.settings.api_url, TOKEN_PATH),
            idempotent=True,
            data={"grant_type": "client_credentials"},
            auth=(self.settings.client_id, secret.get_secret_value()),
            headers={"Accept": "application/json", "Accept-Language": "en_US"},
        )
        if resp.status_code == 429 or resp.status_code >= 500:
            self._raise(resp, "PayPal token request", read=True)
        body = self.decode(resp)
        if resp.status_code != 200 or not isinstance(body, dict):
            raise AuthError(
                self.scrub(
                    f"PayPal token request refused (HTTP {resp.status_code}: {self.problem_detail(resp)}) for "
                    f"client_id {self.settings.client_id}: check {self.settings.client_secret_env} and "
                    "settings.api_url (live vs sandbox)"
                ),
                http_status=resp.status_code,
            )
        log.info("paypal tenant=%s: new access token (expires in %ss)", self.tenant, body.get("expires_in"))
        return TokenSet.from_token_response(body)

    # ------------------------------------------------------------------ HTTP
    def problem_detail(self, resp: httpx.Response) -> str:
        """PayPal's error body: ``NAME: message; ISSUE field='value': description (debug_id ...)``."""
        text = describe_error(self.decode(resp))
        return super().problem_detail(resp) if text is None else self.scrub(text)[:600]

    def status_hint(self, resp: httpx.Response) -> str:
        """A 403 most often means the REST app was not given the Invoicing feature."""
        return " — the REST app may lack the Invoicing scope" if resp.status_code == 403 else ""

    async def _call(
        self, method: str, path: str, body: Any = None, *, read_only: bool = False, **kw: Any
    ) -> httpx.Response:
        """:meth:`HttpConnector.request` (one new token after a 401) to ``api_url`` + ``path`` with JSON ``body``.

        ``kw``: ``params``, ``headers``. ``read_only``: a lost answer is a :class:`RetryableError` (not
        uncertain: a read changes nothing; searches are POSTs).
        """
        if body is not None:
            kw.update(content=dumps(body), headers={"Content-Type": "application/json", **kw.get("headers", {})})
        try:
            return await self.request(method, self.url(self.settings.api_url, path), idempotent=False, **kw)
        except UncertainOutcomeError:
            if not read_only:
                raise
            raise RetryableError(f"PayPal {method} {path}: the answer was lost; a read: retry it") from None

    def _raise(self, resp: httpx.Response, what: str, *, read: bool = False) -> None:
        """:meth:`raise_for_status` (429 -> ``Retry-After``, else 60 s; 401/403 -> :class:`AuthError`; other
        4xx -> :class:`PermanentError`; 500/504 on a write -> :class:`UncertainOutcomeError`: PayPal may
        have stored it). ``read``: a status that leaves a write open is plainly :class:`RetryableError`."""
        try:
            self.raise_for_status(resp, what)
        except UncertainOutcomeError as exc:
            if not read:
                raise
            raise RetryableError(str(exc), http_status=exc.http_status) from None

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """A token, then ``GET /v2/invoicing/invoices?page=1&page_size=1`` (spec ``invoices.list``), the cheapest read.

        Raises :class:`AuthError` when the credentials are refused, :class:`MissingScopeError` when
        the token carries no invoicing scope, :class:`ConfigError` when a secret is missing.
        """
        await self.token_manager.access_token()
        granted = self.token_manager.tokens
        scopes = granted.scopes if granted is not None else frozenset()
        if scopes and not any(s.startswith(INVOICING_SCOPE) for s in scopes):
            raise MissingScopeError(
                f"missing scope: the PayPal REST app {self.settings.client_id} has no {INVOICING_SCOPE} scope; "
                "enable Invoicing for the app in the PayPal developer dashboard",
                missing=(INVOICING_SCOPE,),
            )
        query = {"page": "1", "page_size": "1", "total_required": "false"}
        resp = await self._call("GET", INVOICES_PATH, params=query, read_only=True)
        if resp.status_code == 403:
            raise MissingScopeError(
                f"missing scope: PayPal refused the invoicing read ({self.problem_detail(resp)})",
                missing=(INVOICING_SCOPE,),
                http_status=403,
            )
        self._raise(resp, "PayPal GET /v2/invoicing/invoices", read=True)

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` as a PayPal draft unless it exists, then send it when ``invoice_status`` is ``SENT``
        (never when ``invoice.draft``: it stays a ``DRAFT`` for the merchant to send in PayPal).

        1. map (field limits and PayPal's arithmetic checked: :class:`PermanentError` naming the field);
        2. look up our number (``search-invoices``); found -> ``created=False``, continue at 4;
        3. ``POST /v2/invoicing/invoices`` with ``Prefer: return=representation``; a
           ``DUPLICATE_INVOICE_NUMBER`` answer is looked up and continues at 4 with ``created=False``;
        4. compare PayPal's ``amount.value`` with our total; when sending, a difference raises
           :class:`PermanentError` and the draft stays unsent; ``DRAFT`` + ``invoice_status=SENT`` ->
           ``POST /v2/invoicing/invoices/{id}/send`` (``SENT``; ``SCHEDULED`` for a future invoice date).
           A draft whose recipient has no e-mail address while the tenant e-mails its invoices follows
           ``settings.no_email``: ``mark_sent`` sends it with ``send_to_recipient: false`` (PayPal refuses
           ``true`` without an address, 422), ``leave_unsent`` does not send it.

        ``details``: ``status``, ``total`` (PayPal's, decimal string), ``total_matches``, ``sent``
        (this call sent it), ``emailed_to`` (the customer address PayPal e-mailed, when sent),
        ``duplicate`` + ``found_by`` (``lookup`` / ``DUPLICATE_INVOICE_NUMBER``: found instead of
        created); without a recipient e-mail ``no_email`` (the choice applied) and ``payer_view_url``
        (``mark_sent``) or ``unsent_reason`` (``leave_unsent``). A found invoice must carry our marker and
        our total (:class:`NumberConflictError`). A repeat after a crash between create and send finds the
        draft by its number and completes it: never a second draft.
        """
        return await self._deliver(invoice, None)

    async def _deliver(self, invoice: Invoice, deduction: Deduction | None) -> DeliveryResult:
        """:meth:`deliver`, with ``deduction`` (a revision of a paid invoice: PayPal's total is ours minus it)."""
        recipient = recipient_for(invoice, self.settings, self.clients.get(invoice.client_id))
        payload = invoice_to_paypal(invoice, self.settings, recipient, deduction)
        if deduction is not None:  # PayPal's total, what ownership and the send step compare with
            invoice = invoice.model_copy(update={"total": invoice.total - deduction.amount})
        number = invoice.invoice_number
        existing = await self._lookup(number)
        if existing is not None:
            check_ours(invoice, invoice_from_paypal(existing), what="found by search-invoices before creating")
            return await self._complete(invoice, existing, found_by="lookup")
        what = f"PayPal POST /v2/invoicing/invoices {number}"
        # A lost answer raises UncertainOutcomeError: the caller reconciles with find(); the next
        # deliver() finds the draft by lookup and completes the send step.
        resp = await self._call("POST", INVOICES_PATH, payload, headers={"Prefer": "return=representation"})
        body = self.decode(resp)
        if resp.status_code in (400, 409, 422) and has_issue(body, DUPLICATE_ISSUES):
            found = await self._lookup(number)
            if found is None:
                raise RetryableError(
                    f"{what}: PayPal reports the number as taken but search-invoices does not return it yet",
                    http_status=resp.status_code,
                )
            check_ours(invoice, invoice_from_paypal(found), what="PayPal answered DUPLICATE_INVOICE_NUMBER")
            return await self._complete(invoice, found, found_by="DUPLICATE_INVOICE_NUMBER")
        self._raise(resp, what)
        invoice_id = created_id(body, resp.headers.get("Location"))
        if invoice_id is None:
            raise UncertainOutcomeError(
                f"{what}: HTTP {resp.status_code} without an invoice id or link", http_status=resp.status_code
            )
        if not (
            isinstance(body, dict) and body.get("id") and isinstance(body.get("amount"), dict) and body.get("status")
        ):
            body = await self._get(invoice_id)  # minimal representation (a link): read the draft
        return await self._complete(invoice, body)

    async def _get(self, invoice_id: str) -> dict[str, Any]:
        """``GET /v2/invoicing/invoices/{id}`` (spec ``invoices.get``); :class:`RetryableError` when unreadable."""
        path = f"{INVOICES_PATH}/{quote(invoice_id, safe='')}"
        resp = await self._call("GET", path, read_only=True)
        self._raise(resp, f"PayPal GET {path}", read=True)
        body = self.decode(resp)
        if not isinstance(body, dict) or not body.get("id"):
            raise RetryableError(f"PayPal GET {path}: unreadable body", http_status=resp.status_code)
        return body

    async def _complete(self, invoice: Invoice, element: dict[str, Any], found_by: str | None = None) -> DeliveryResult:
        """Send the PayPal invoice ``element`` when it is a draft the tenant wants sent; the result of :meth:`deliver`.

        ``found_by``: how an invoice we did not create was found (``created=False``, ``duplicate``).
        """
        found = invoice_from_paypal(element)
        total, status, number = found.total, found.status, invoice.invoice_number
        matches, sent = self.total_matches(invoice, total), False  # a difference is logged
        extra: dict[str, Any] = {} if found_by is None else {"duplicate": True, "found_by": found_by}
        if status == "DRAFT" and self.settings.invoice_status == "SENT" and not invoice.draft:
            email = recipient_email(element)
            mailed = self.settings.email_to_recipient and email is not None
            unmailable = self.settings.email_to_recipient and email is None  # PayPal refuses send_to_recipient
            if unmailable:
                extra.update(self._without_email(invoice, element))
            if not (unmailable and self.settings.no_email == "leave_unsent"):
                if not matches:
                    raise PermanentError(
                        f"PayPal draft {found.external_id} ({number}) totals {total} {invoice.currency} but ours is "
                        f"{invoice.total}: left as a draft, not sent"
                    )
                status, sent = await self._send_invoice(found.external_id, invoice, to_recipient=mailed), True
                if mailed:
                    extra["emailed_to"] = email
        elif status == "CANCELLED":
            log.warning(
                "paypal tenant=%s invoice=%s: PayPal invoice %s is CANCELLED", self.tenant, number, found.external_id
            )
        details = {"status": status, "total": None if total is None else str(total), "total_matches": matches}
        return DeliveryResult(
            invoice.invoice_key,
            found.external_id,
            found.number or number,
            created=found_by is None,
            details={**details, "sent": sent, **extra},
        )

    def _without_email(self, invoice: Invoice, element: dict[str, Any]) -> dict[str, Any]:
        """``details`` for a draft to send by e-mail whose recipients have no e-mail address, by ``settings.no_email``.

        PayPal refuses ``send_to_recipient: true`` without a recipient address (422), which left a stray
        draft. ``mark_sent``: it is sent with ``send_to_recipient: false`` (spec ``invoices.send``: "To send
        the invoice through a share link and not through PayPal, set the send_to_recipient parameter to
        false"): ``{"no_email": "mark_sent", "payer_view_url"}`` (the link to give the customer, when PayPal
        returned it). ``leave_unsent``: ``{"no_email": "leave_unsent", "unsent_reason"}``; the caller does
        not send it, and a redelivery finds the same draft and leaves it again.
        """
        draft, client = str(element.get("id")), invoice.client_id
        if self.settings.no_email == "leave_unsent":
            reason = (
                f"client {client} ({invoice.client_name}) has no e-mail address, so PayPal cannot e-mail invoice "
                f"{invoice.invoice_number}; it was left as PayPal draft {draft} (settings.no_email = leave_unsent): "
                "add the customer's e-mail to the draft in PayPal and send it there, or replay once it is there"
            )
            log.warning("paypal tenant=%s invoice=%s: %s", self.tenant, invoice.invoice_number, reason)
            return {"no_email": "leave_unsent", "unsent_reason": reason}
        log.warning(
            "paypal tenant=%s invoice=%s: no e-mail for client %s; PayPal marks it sent without e-mailing it "
            "(settings.no_email = mark_sent): give the customer its payer-view link",
            self.tenant,
            invoice.invoice_number,
            client,
        )
        link = ((element.get("detail") or {}).get("metadata") or {}).get("recipient_view_url")
        return {"no_email": "mark_sent", **({"payer_view_url": str(link)} if link else {})}

    async def _send_invoice(self, invoice_id: str, invoice: Invoice, *, to_recipient: bool | None = None) -> str:
        """``POST /v2/invoicing/invoices/{id}/send``; returns the new status (``SENT``/``SCHEDULED``).

        ``to_recipient``: ``send_to_recipient`` of the notification (``None``: ``settings.email_to_recipient``).
        Retry-safe: ``INVOICE_ALREADY_SENT`` (422) / 409 mean an earlier attempt landed. A lost answer
        is checked with ``GET`` (status no longer ``DRAFT`` = sent) and otherwise reported as
        :class:`RetryableError`: the draft exists, so the next :meth:`deliver` finds it and sends it.
        """
        path = f"{INVOICES_PATH}/{quote(invoice_id, safe='')}/send"
        what = f"PayPal POST {path} ({invoice.invoice_number})"
        try:
            resp = await self._call("POST", path, notification(self.settings, to_recipient=to_recipient))
        except UncertainOutcomeError:
            return await self._after_lost_send(invoice_id, what)
        if resp.status_code == 202:
            return "SCHEDULED"
        if 200 <= resp.status_code < 300:
            return "SENT"
        if resp.status_code == 409 or (resp.status_code == 422 and has_issue(self.decode(resp), ALREADY_SENT_ISSUES)):
            current = await self._get(invoice_id)
            return str(current.get("status") or "SENT")
        if resp.status_code in (500, 504):  # may have been applied: read the status back
            return await self._after_lost_send(invoice_id, what)
        self._raise(resp, what)
        return "SENT"  # pragma: no cover - _raise raised

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

    async def _lookup(self, invoice_number: str) -> dict[str, Any] | None:
        """The PayPal invoice whose ``detail.invoice_number`` is exactly ``invoice_number`` (search result), or None."""
        if not invoice_number or len(invoice_number) > INVOICE_NUMBER_MAX:
            return None  # PayPal cannot hold it
        for page in range(1, SEARCH_MAX_PAGES + 1):
            query = {"page": str(page), "page_size": str(SEARCH_PAGE_SIZE), "total_required": "false"}
            resp = await self._call(
                "POST", SEARCH_PATH, {"invoice_number": invoice_number}, params=query, read_only=True
            )
            self._raise(resp, f"PayPal POST {SEARCH_PATH} {invoice_number}", read=True)
            body = self.decode(resp)
            if not isinstance(body, dict):
                raise RetryableError(f"PayPal POST {SEARCH_PATH}: unreadable body", http_status=resp.status_code)
            items = [i for i in body.get("items") or [] if isinstance(i, dict)]
            match = exact_match(items, invoice_number)
            if match is not None or len(items) < SEARCH_PAGE_SIZE:
                return match
        return None

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """Our invoice number looked up with ``POST /v2/invoicing/search-invoices`` (spec ``search_data``).

        Only an exact ``detail.invoice_number`` match counts (search may match more loosely).
        Returns :class:`ExternalInvoice` (``total`` = ``amount.value`` as Decimal, ``status``,
        ``marker`` from ``detail.memo``, ``paid`` = ``payments.paid_amount``) or None.
        """
        element = await self._lookup(invoice_number)
        return invoice_from_paypal(element) if element is not None else None

    # ------------------------------------------------------------------ lifecycle
    async def retire(self, previous: ExternalInvoice, *, key: str, reason: str, issued: date) -> Retirement:
        """Take ``previous`` (an invoice we delivered) out of the customer's balance, by PayPal's rules.

        Re-reads it (``GET``; by number when the id is unknown, then it must carry a broker marker), then:

        * absent, ``CANCELLED``, ``REFUNDED``, ``MARKED_AS_REFUNDED`` -> ``none``;
        * ``DRAFT`` / ``SCHEDULED`` -> ``DELETE /v2/invoicing/invoices/{id}`` (``deleted``; PayPal refuses
          to cancel a scheduled invoice);
        * ``SENT`` / ``UNPAID`` -> ``POST .../{id}/cancel`` with :func:`cancel_notification` (``reason``
          as its note; ``voided``);
        * anything with money (``PAID``, ``MARKED_AS_PAID``, ``PARTIALLY_PAID``, ``PARTIALLY_REFUNDED``,
          ``PAYMENT_PENDING``) -> :class:`PermanentError`: PayPal has no credit notes and cannot
          cancel it; the operator refunds it in PayPal, then replays.

        ``key`` and ``issued`` are unused (no idempotency key, no credit note date): each step is
        guarded by the status read first, and a repeat finds the invoice deleted or cancelled.
        """
        del key, issued
        current = await self._current(previous)
        return await self._retire(previous, current, reason)

    async def _retire(self, previous: ExternalInvoice, current: dict[str, Any] | None, reason: str) -> Retirement:
        """:meth:`retire` of ``current`` (``previous`` as PayPal holds it, read by the caller)."""
        if current is None:
            return Retirement("none", previous.number)
        found = invoice_from_paypal(current)
        status, number = str(found.status or ""), found.number or previous.number
        path = f"{INVOICES_PATH}/{quote(found.external_id, safe='')}"
        if status in RETIRED_STATUSES:
            return Retirement("none", number, status)
        if status in ("DRAFT", "SCHEDULED"):
            resp = await self._call("DELETE", path)
            if resp.status_code != 404:  # 404: deleted meanwhile
                self._raise(resp, f"PayPal DELETE {path} ({number})")
            return Retirement("deleted", number, status)
        if status in ("SENT", "UNPAID"):
            told = self.settings.email_to_recipient and recipient_email(current) is not None  # else nobody to tell
            note = cancel_notification(self.settings, reason, to_recipient=told)
            resp = await self._call("POST", f"{path}/cancel", note)
            if resp.status_code == 422 and has_issue(self.decode(resp), CANCELLED_ISSUES):
                return Retirement("none", number, "CANCELLED")  # cancelled meanwhile
            self._raise(resp, f"PayPal POST {path}/cancel ({number})")
            return Retirement("voided", number, status)
        raise PermanentError(self._not_retirable(found, current))

    def _not_retirable(self, found: ExternalInvoice, current: dict[str, Any]) -> str:
        """Why PayPal invoice ``found`` (status with money involved) cannot be retired by the broker, and what to do."""
        currency = (current.get("amount") or {}).get("currency_code") or ""
        where = f"PayPal invoice {found.number} ({found.external_id}) is {found.status}"
        money = f"total {found.total} {currency}, paid {found.paid} {currency}"
        if found.status == "PAYMENT_PENDING":
            return f"{where} ({money}): a payment is in progress; replay once PayPal has completed or failed it"
        return (
            f"{where} ({money}): PayPal Invoicing cannot cancel an invoice with a payment and has no credit "
            "notes, and the broker moves no money. Issue the refund in PayPal (refund the payment, or record an "
            f"external refund with POST {INVOICES_PATH}/{found.external_id}/refunds), then replay: a REFUNDED "
            "invoice counts as cancelled"
        )

    async def _current(self, previous: ExternalInvoice) -> dict[str, Any] | None:
        """``previous`` as PayPal holds it now (``None``: deleted or never there).

        By id when known (``GET``, 404 = ``None``); else by number (search), and then only an invoice
        carrying a broker marker counts (:class:`PermanentError` otherwise: a document we did not
        create is never cancelled).
        """
        if not previous.external_id:
            found = await self._lookup(previous.number)
            if found is None:
                return None
            if read_marker((found.get("detail") or {}).get("memo")) is None:
                raise PermanentError(
                    f"PayPal invoice {previous.number} ({found.get('id')}) carries no broker marker in its memo: not "
                    "retired, it is not a document the broker created"
                )
            return await self._get(str(found["id"]))
        path = f"{INVOICES_PATH}/{quote(previous.external_id, safe='')}"
        resp = await self._call("GET", path, read_only=True)
        if resp.status_code == 404:
            return None
        self._raise(resp, f"PayPal GET {path}", read=True)
        body = self.decode(resp)
        if not isinstance(body, dict) or not body.get("id"):
            raise RetryableError(f"PayPal GET {path}: unreadable body", http_status=resp.status_code)
        return body

    async def amend(self, invoice: Invoice, previous: ExternalInvoice) -> DeliveryResult:
        """Replace ``previous`` (an earlier revision we delivered) by ``invoice``.

        Unpaid previous invoice: :meth:`retire` it (delete the draft, cancel the sent invoice), then
        :meth:`deliver` ``invoice``. A ``PAID`` / ``MARKED_AS_PAID`` / ``PARTIALLY_PAID`` one cannot
        be cancelled and PayPal has no credit notes: it stays as it is, and ``invoice`` is created
        with the previous invoice's whole total deducted (:class:`Deduction`, a negative custom
        amount labelled ``Already invoiced on <number>``): the customer then owes the new total less
        what was paid, since what the previous invoice still has due (a partial payment) stays due
        there. A revision whose total is below the previous invoice's is a :class:`PermanentError`
        (PayPal refuses a negative total): the operator refunds the previous invoice in full in PayPal,
        and the replay then replaces a ``REFUNDED`` invoice like a cancelled one. Repeating the
        call finds the revision by its number (ownership checked against the deducted total).

        ``details``: :meth:`deliver`'s plus ``amendment`` (``deleted``, ``voided``, ``none``, or
        ``deducted``), ``previous_number``, ``previous_status``, and for ``deducted``
        ``previous_paid`` and ``deducted`` (decimal strings).
        """
        current = await self._current(previous)
        found = invoice_from_paypal(current) if current is not None else None
        if found is None or found.status not in PAID_STATUSES:
            retired = await self._retire(previous, current, f"replaced by {invoice.invoice_number}")
            result = await self.deliver(invoice)
            return replace(result, details={**result.details, **retired.as_details()})
        billed, paid = found.total or Decimal(0), found.paid or Decimal(0)
        if billed > invoice.total:
            raise PermanentError(
                f"PayPal invoice {found.number} ({found.external_id}) is {found.status} (total {billed}, paid "
                f"{paid} {invoice.currency}) and revision {invoice.invoice_number} totals only {invoice.total}: "
                "PayPal has no credit notes, cannot cancel an invoice with a payment and refuses a negative "
                "invoice, and the broker moves no money. Refund that invoice in full in PayPal (the customer then "
                "pays the revision), then replay: a REFUNDED invoice counts as retired"
            )
        deduction = Deduction(amount=billed, previous_number=found.number, paid=paid)
        result = await self._deliver(invoice, deduction)
        details = {
            "amendment": "deducted",
            "previous_number": found.number,
            "previous_status": found.status,
            "previous_paid": str(paid),
            "deducted": str(billed),
        }
        return replace(result, details={**result.details, **details})


__all__ = ["INVOICING_SCOPE", "PayPalConnector"]
