"""FreshBooks Accounting API connector.

Creates invoices with ``POST {api_url}/accounting/account/{accountId}/invoices/invoices`` and body
``{"invoice": {...}}`` (facts: ``/work/shared/billing-apis.md`` §5; official SDK
``freshbooks-python-sdk``; field reference ``tests/specs/freshbooks/openapi.yaml``):

* **Auth** — OAuth 2.0 (the grant: :meth:`FreshBooksConnector._refresh`). Access tokens last 12 h;
  **refresh tokens are single-use** — the SDK's token manager refreshes single-flight per tenant across
  coroutines and processes and persists the new token before anyone else may refresh.
* **Idempotency** — FreshBooks has no idempotency key. Our invoice number goes in
  ``invoice_number`` (unique per account, deleted invoices included, per FreshBooks support), and
  the connector **looks it up before creating** (``GET .../invoices/invoices?search[invoice_number]=…``).
  A create that races another (the lookup saw nothing) is stopped by the uniqueness rule; the
  connector then looks the number up again and reports the existing invoice with ``created=False``.
  A number held by a *deleted* invoice cannot be reused: :class:`PermanentError` says so.
* **Totals** — see :mod:`connectors.freshbooks.mapper`: line amounts equal our nets, tax per line
  by percentage, so FreshBooks' ``amount`` equals our total (``details["total_matches"]``).
* **Status/e-mail** — FreshBooks creates drafts. ``invoice_status: sent`` marks it sent
  (``{"action_mark_as_sent": true}``); ``email_invoice: true`` e-mails it to the client instead
  (``{"action_email": true}``, which also marks it sent). This second step is retry-safe by state:
  it runs only while the invoice is still ``draft``. An invoice to post as a draft (``invoice.draft``, the
  tenant's ``approval: draft``) skips it: ``v3_status`` ``draft``, for the business to send in FreshBooks.
* **Ownership** — FreshBooks invoices have no private memo; the marker ``broker:<invoice key>`` is the last
  line of the printed ``notes`` (after the legal notes; :mod:`connectors.freshbooks.mapper`). An invoice
  found under our number (before creating, or after a uniqueness refusal) is adopted only when it carries
  our marker and our total (:func:`~connectors.sdk.lifecycle.check_ours`), else :class:`NumberConflictError`.
* **Lifecycle** — :meth:`FreshBooksConnector.retire`: FreshBooks has no void; an invoice without payment
  (draft or sent) is deleted (``PUT .../invoices/{id}`` with ``{"invoice": {"vis_state": 1}}``: FreshBooks
  keeps it, restorable, and its number stays taken), an invoice with a payment is credited in full by a
  credit note (``POST .../credit_notes/credit_notes``, https://www.freshbooks.com/api/credits), looked up
  among the client's credit notes by ``credit_number`` before it is created. Credit notes need the
  scopes ``user:credit_notes:read`` / ``user:credit_notes:write``.
* **Limits** — FreshBooks publishes none; a 429 is honoured through ``Retry-After`` (60 s otherwise).
* **Errors** — ``{"response": {"errors": [{"errno", "field", "message", "object", "value"}]}}``
  mapped onto the taxonomy (422/400/404 permanent, 401/403 auth, 429 rate limited, 5xx retryable).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import date
from decimal import Decimal
from functools import cached_property
from types import MappingProxyType
from typing import Any

from httpx import Response
from pydantic import SecretStr

from connectors.freshbooks import mapper
from connectors.freshbooks.mapper import is_duplicate_number
from connectors.freshbooks.settings import FreshBooksSettings
from connectors.sdk import (
    AuthError,
    Capabilities,
    ConnectorError,
    DeliveryResult,
    MissingScopeError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField
from connectors.sdk.errors import NumberConflictError
from connectors.sdk.http import Auth, HttpConnector, OAuth2Auth
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import Retirement, check_ours, read_marker
from connectors.sdk.money import dumps
from connectors.sdk.oauth2 import OAuth2Config, TokenSet

log = logging.getLogger("connectors.freshbooks")

SCOPES = (
    "user:profile:read",
    "user:invoices:read",
    "user:invoices:write",
    "user:clients:read",
    "user:clients:write",
    "user:credit_notes:read",
    "user:credit_notes:write",
)


class FreshBooksConnector(HttpConnector):
    """FreshBooks connector for one account (``account_id``) of one broker tenant.

    ``FreshBooksConnector(settings, *, tenant, token_store=None, on_refresh_token=None)``. Errors:
    :class:`RateLimitedError`, :class:`RetryableError`, :class:`UncertainOutcomeError` (sent, no
    answer: reconcile with :meth:`find`), :class:`AuthError`, :class:`UnknownAccountError` (from
    :meth:`check`), :class:`PermanentError`, :class:`ConfigError`.
    """

    name = "freshbooks"
    label = "FreshBooks"
    version = "0.1.0"
    # invoice_number: FreshBooks publishes no limit; the mapper assumes 100 (mapper.FIELD_LIMITS), credit_number
    # likewise undocumented
    # drafts: FreshBooks creates every invoice as a draft until marked sent / e-mailed (freshbooks-python-sdk
    # examples/create_invoice.py; v3_status 'draft'); a draft is deleted (vis_state 1) like any unpaid invoice
    capabilities = Capabilities(
        oauth2=True, amendments=True, invoice_number_max=mapper.FIELD_LIMITS["invoice_number"], drafts=True
    )
    Settings = FreshBooksSettings
    settings: FreshBooksSettings
    # Over the shared table: any 5xx is retryable (writes too), any other 4xx refuses the data (422: see deliver).
    status_overrides = MappingProxyType(
        {500: RetryableError, 504: RetryableError} | dict.fromkeys((408, 409, 425), PermanentError)
    )

    def __repr__(self) -> str:
        return f"FreshBooksConnector(tenant={self.tenant!r}, account_id={self.settings.account_id!r})"

    @cached_property
    def contacts(self) -> ContactResolver:
        """The tenant's contact resolver, built on first use (the host may set ``self.clients`` after construction)."""
        return ContactResolver(
            self, allow_create=self.settings.create_contacts, clients=self.clients, setting_name="create_contacts"
        )

    # ------------------------------------------------------------------ OAuth2
    @cached_property
    def oauth(self) -> OAuth2Auth:
        """Bearer tokens refreshed by :meth:`_refresh`; ``on_refresh_token(new)`` runs once the store holds one."""
        return self.refresh_token_auth(self.settings.token_url, refresh=self._refresh, on_rotate=self.on_refresh_token)

    def make_auth(self) -> Auth:
        """:attr:`oauth`."""
        return self.oauth

    def store_key(self) -> str:
        """Token-store key of the tenant's connection (``freshbooks-<refresh_token_env>-<hash of the token URL,
        client id and connection>``): a FreshBooks token is the user's and reaches each business of that user."""
        return self.oauth.manager.key

    @property
    def token_refreshes(self) -> int:
        """Refresh grants this connector has performed."""
        return self.oauth.manager.refreshes

    def unauthorized_hint(self) -> str:
        """What to check when FreshBooks refuses the credentials (its refresh tokens are single-use)."""
        return (
            f" for client_id {self.settings.client_id}: check {self.settings.client_secret_env} and "
            f"{self.settings.refresh_token_env} (FreshBooks refresh tokens are single-use: re-run "
            "`broker connectors authorize` if it was spent elsewhere)"
        )

    async def _refresh(self, refresh_token: SecretStr | None) -> TokenSet:
        """``grant_type=refresh_token``, client credentials (and ``redirect_uri``) in the form as the FreshBooks SDK
        posts them. 429 -> :class:`RateLimitedError`, 5xx -> :class:`RetryableError`, ``invalid_grant`` (the refresh
        token is spent or revoked) -> :class:`ReauthRequiredError`, else :class:`AuthError`."""
        what = "FreshBooks token refresh"
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token.get_secret_value() if refresh_token else "",
            "client_id": self.settings.client_id,
            "client_secret": self.secret("client_secret_env").get_secret_value(),
        }
        if self.settings.redirect_uri:
            form["redirect_uri"] = self.settings.redirect_uri
        headers = {"Accept": "application/json"}
        resp = await self.send("POST", self.settings.token_url, data=form, headers=headers, idempotent=True)
        if resp.status_code == 429 or resp.status_code >= 500:
            self.raise_for_status(resp, what)
        body = self.decode(resp)
        if resp.status_code != 200 or not isinstance(body, dict):
            code = body.get("error") if isinstance(body, dict) else None
            refused = f"{what} refused (HTTP {resp.status_code} {code or 'no error code'})"
            error_cls = ReauthRequiredError if code == "invalid_grant" else AuthError
            raise error_cls(refused + self.unauthorized_hint(), http_status=resp.status_code)
        return TokenSet.from_token_response(body, previous_refresh=refresh_token)

    def oauth2_config(self) -> OAuth2Config:
        """Authorization-code flow at ``authorize_url`` (FreshBooks: client secret in the form, no PKCE)."""
        return self.authorization_config(self.settings.token_url, SCOPES, auth_method="post", use_pkce=False)

    # ------------------------------------------------------------------ FreshBooks' answers
    def problem_detail(self, resp: Response) -> str:
        """``errno <n> <field>: <message>; ...`` of FreshBooks' error body (or its OAuth ``error_description``)."""
        detail = mapper.describe_errors(self.decode(resp))
        return self.scrub(detail) if detail else super().problem_detail(resp)

    def classify(self, resp: Response, what: str) -> ConnectorError | None:
        """A 403 ``insufficient_scope`` is :class:`MissingScopeError` (re-authorise); the rest: the status table."""
        body = self.decode(resp)
        if resp.status_code == 403 and isinstance(body, dict) and body.get("error") == "insufficient_scope":
            detail = f"HTTP 403 ({self.problem_detail(resp)}); {self._reauthorize}"
            return MissingScopeError(f"{what}: {detail}", missing=[], http_status=403)
        return None

    @property
    def _reauthorize(self) -> str:
        return f"re-run `broker connectors authorize freshbooks --tenant {self.tenant}`"

    def _account_url(self, resource: str) -> str:
        return self.url(self.settings.api_url, f"accounting/account/{self.settings.account_id}/{resource}")

    async def _api(self, method: str, url: str, *, body: Any = None, params: dict[str, str] | None = None) -> Response:
        """An authenticated call with ``body`` as JSON (exact decimals); the status is not checked."""
        headers = None if body is None else {"Content-Type": "application/json"}
        content = None if body is None else dumps(body)
        return await self.request(method, url, params=params, headers=headers, content=content)

    def _result(self, resp: Response, what: str) -> Any:
        """``response.result`` of a 2xx answer; the taxonomy error otherwise (:class:`RetryableError`: odd body)."""
        self.raise_for_status(resp, what)
        body = self.decode(resp)
        if not isinstance(body, dict) or not isinstance(body.get("response"), dict):
            raise RetryableError(f"{what}: unexpected body", http_status=resp.status_code)
        return body["response"].get("result", body["response"])

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """``GET /auth/api/v1/users/me`` — the cheapest authenticated call; the account must be among the
        identity's ``business_memberships`` (:class:`UnknownAccountError` otherwise) and the token's
        granted scopes must include :meth:`required_scopes` (:class:`MissingScopeError`)."""
        resp = await self._api("GET", self.url(self.settings.api_url, "auth/api/v1/users/me"))
        accounts = mapper.account_ids(self._result(resp, "FreshBooks GET users/me"))
        if self.settings.account_id not in accounts:
            raise UnknownAccountError(
                f"unknown FreshBooks account {self.settings.account_id}: this identity can reach "
                f"{', '.join(a for a in accounts if a and a != 'None') or 'no account'}"
            )
        tokens = self.oauth.manager.tokens
        granted = tokens.scopes if tokens is not None else frozenset()
        missing = [scope for scope in self.required_scopes() if granted and scope not in granted]
        if missing:
            raise MissingScopeError(
                f"missing scope {', '.join(missing)}: the FreshBooks app was authorised with "
                f"{' '.join(sorted(granted))}; {self._reauthorize}",
                missing=missing,
            )

    def required_scopes(self) -> tuple[str, ...]:
        """OAuth scopes needed with these settings (``user:clients:write`` only with ``create_contacts``)."""
        return SCOPES if self.settings.create_contacts else tuple(s for s in SCOPES if s != "user:clients:write")

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` unless an invoice with its number exists; then mark it sent / e-mail it.

        Lookup (``search[invoice_number]``) -> ``POST .../invoices/invoices`` -> (when wanted and still a
        draft) ``PUT .../invoices/{id}`` with ``action_mark_as_sent`` or ``action_email``.
        ``details``: ``amount`` (decimal string), ``total_matches``, ``v3_status``, ``looked_up``
        (found before create), ``duplicate`` (found after a uniqueness error), ``email_error``.
        """
        mapper.check_limits(invoice, self.settings)  # before any call, even a client lookup
        customer_id = await self.contacts.resolve(invoice)
        body = mapper.invoice_to_freshbooks(invoice, self.settings, customer_id=customer_id)
        existing = await self._find_entity(invoice.invoice_number)
        if existing is not None:
            self._check_ours(invoice, existing, "found before creating")
            return await self._finish(invoice, self._delivered(invoice, existing, created=False, looked_up=True))
        what = f"FreshBooks POST invoices {invoice.invoice_number}"
        resp = await self._api("POST", self._account_url("invoices/invoices"), body=body)
        if resp.status_code in (400, 409, 422) and is_duplicate_number(mapper.errors_of(self.decode(resp))):
            found = await self._find_entity(invoice.invoice_number)
            if found is None:
                raise PermanentError(
                    f"{what}: invoice number {invoice.invoice_number} is already used by an invoice FreshBooks does"
                    " not list (a deleted one); FreshBooks never reuses numbers: rename or undelete that invoice",
                    http_status=resp.status_code,
                )
            self._check_ours(invoice, found, "found after FreshBooks refused the number as taken")
            return await self._finish(invoice, self._delivered(invoice, found, created=False, duplicate=True))
        parsed = self._result(resp, what)
        entity = parsed.get("invoice") if isinstance(parsed, dict) else None
        if not isinstance(entity, dict) or entity.get("invoiceid", entity.get("id")) is None:
            raise UncertainOutcomeError(f"{what}: no invoice in the answer", http_status=resp.status_code)
        return await self._finish(invoice, self._delivered(invoice, entity, created=True))

    @staticmethod
    def _check_ours(invoice: Invoice, entity: dict[str, Any], how: str) -> None:
        """:func:`~connectors.sdk.lifecycle.check_ours` on a FreshBooks invoice: our marker in ``notes`` and our
        ``amount`` (one of ours is complete once created: its lines go in the create call), else
        :class:`NumberConflictError`."""
        check_ours(invoice, mapper.invoice_from_freshbooks(entity), what=f"FreshBooks invoice {how}")

    def _delivered(self, invoice: Invoice, entity: dict[str, Any], *, created: bool, **flags: bool) -> DeliveryResult:
        """The result for FreshBooks invoice ``entity``. ``details``: ``amount`` (decimal string), ``total_matches``
        (a mismatch is logged), ``v3_status``, then ``flags`` (``looked_up``: found before creating,
        ``duplicate``: found after a uniqueness error)."""
        external = mapper.invoice_from_freshbooks(entity)
        matches = self.total_matches(invoice, external.total)
        details = {"amount": str(external.total), "total_matches": matches, "v3_status": external.status, **flags}
        number = external.number or invoice.invoice_number
        return DeliveryResult(invoice.invoice_key, external.external_id, number, created=created, details=details)

    async def _finish(self, invoice: Invoice, result: DeliveryResult) -> DeliveryResult:
        """Second step: mark sent or e-mail, only while the invoice is still a draft (never for ``invoice.draft``)."""
        wanted_sent = not invoice.draft and (self.settings.email_invoice or self.settings.invoice_status == "sent")
        if not wanted_sent or result.details.get("v3_status") != "draft":
            return result
        details = dict(result.details)
        if self.settings.email_invoice:
            try:
                return await self._put(
                    result, details | {"emailed": True}, "e-mail", action_email=True, email_include_pdf=False
                )
            except PermanentError as exc:  # refused: the invoice stays, marked sent below when the tenant wants that
                log.warning(
                    "freshbooks tenant=%s invoice=%s: e-mail not sent: %s", self.tenant, invoice.invoice_number, exc
                )
                details["email_error"] = str(exc)
            if self.settings.invoice_status != "sent":
                return replace(result, details=details)
        return await self._put(result, details, "mark as sent", action_mark_as_sent=True)

    async def _put(self, result: DeliveryResult, details: dict[str, Any], step: str, **action: bool) -> DeliveryResult:
        """``PUT .../invoices/{id}`` with ``{"invoice": action}``; ``result`` with ``details`` and the new status."""
        url = self._account_url(f"invoices/invoices/{result.external_id}")
        resp = await self._api("PUT", url, body={"invoice": action})
        parsed = self._result(resp, f"FreshBooks {step} invoice {result.external_number}")
        entity = parsed.get("invoice") if isinstance(parsed, dict) else None
        if isinstance(entity, dict):
            details["v3_status"] = entity.get("v3_status") or entity.get("display_status")
        return replace(result, details=details)

    async def _find_entity(self, invoice_number: str) -> dict[str, Any] | None:
        url = self._account_url("invoices/invoices")
        resp = await self._api("GET", url, params={"search[invoice_number]": invoice_number, "per_page": "100"})
        result = self._result(resp, f"FreshBooks GET invoices?search[invoice_number]={invoice_number}")
        invoices = result.get("invoices") if isinstance(result, dict) else None
        if not isinstance(invoices, list):
            raise RetryableError("FreshBooks GET invoices: unreadable body", http_status=resp.status_code)
        return mapper.active_invoice(invoices, invoice_number)

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """``GET .../invoices/invoices?search[invoice_number]=<n>`` — the exact, active match or ``None``, with
        FreshBooks' ``amount``, ``v3_status``, the marker of its ``notes`` and ``paid.amount``."""
        entity = await self._find_entity(invoice_number)
        return mapper.invoice_from_freshbooks(entity) if entity is not None else None

    # ------------------------------------------------------------------ lifecycle
    async def retire(self, previous: ExternalInvoice, *, key: str, reason: str, issued: date) -> Retirement:  # noqa: ARG002
        """Take ``previous`` out of the client's balance by FreshBooks' rules; every step safe to repeat.

        Re-reads the invoice with its lines (``GET .../invoices/{id}?include[]=lines``; by number when no id
        is known, and then it must carry a broker marker, else :class:`NumberConflictError`). Absent or
        deleted (``vis_state`` 1) -> ``none``. A credit note already issued for it (``credit_number``
        ``<number>-CN`` among the client's credit notes, proven ours by its marker and amount) -> ``none``.
        Any payment (``paid.amount`` > 0) -> a credit note for its whole amount
        (:func:`~connectors.freshbooks.mapper.credit_note_to_freshbooks`) -> ``credited`` with ``paid``.
        Otherwise (draft, sent, viewed...: FreshBooks has no void) -> ``PUT .../invoices/{id}`` with
        ``{"invoice": {"vis_state": 1}}`` (https://www.freshbooks.com/api/invoices: deleted invoices stay,
        restorable; the number stays taken) -> ``deleted``. ``key`` is unused: FreshBooks has no
        idempotency key, and each step is guarded by the state it reads first.
        """
        entity = await self._reread(previous)
        if entity is None:
            return Retirement("none", previous.number)
        number = str(entity.get("invoice_number") or previous.number)
        status = mapper.invoice_from_freshbooks(entity).status
        if entity.get("vis_state", 0) == 1:
            return Retirement("none", number, "deleted")
        note = await self._credit_note(entity)
        if note is not None:
            return Retirement("none", number, status, details={"credit_note_number": note.get("credit_number")})
        paid = mapper.paid_amount(entity)
        if paid > 0:
            return await self._credit(entity, reason=reason, issued=issued, status=status, paid=paid)
        ident = entity.get("invoiceid", entity.get("id"))
        url = self._account_url(f"invoices/invoices/{ident}")
        resp = await self._api("PUT", url, body={"invoice": {"vis_state": 1}})
        self._result(resp, f"FreshBooks delete invoice {number} (vis_state 1)")
        return Retirement("deleted", number, status)

    async def _reread(self, previous: ExternalInvoice) -> dict[str, Any] | None:
        """The invoice as FreshBooks holds it now, with its lines (``None``: absent). Found by number only, it
        must carry a broker marker (``previous.marker`` when given): a foreign invoice is never retired."""
        ident = previous.external_id
        if not ident:
            found = await self._find_entity(previous.number)
            if found is None:
                return None
            external = mapper.invoice_from_freshbooks(found)
            if external.marker is None or previous.marker not in (None, external.marker):
                theirs = external.total
                ours = previous.total if previous.total is not None else "unknown"
                raise NumberConflictError(
                    f"number_conflict: FreshBooks invoice {previous.number} (id {external.external_id}, amount "
                    f"{theirs}) does not carry our marker (it carries {external.marker!r}): it is not retired. "
                    f"Total in FreshBooks: {theirs}; ours: {ours}",
                    number=previous.number,
                    ours=previous.total if previous.total is not None else theirs or Decimal("0"),
                    theirs=theirs,
                    external_id=external.external_id,
                )
            ident = external.external_id
        what = f"FreshBooks GET invoice {ident} ({previous.number})"
        resp = await self._api("GET", self._account_url(f"invoices/invoices/{ident}"), params={"include[]": "lines"})
        if resp.status_code == 404:
            return None
        result = self._result(resp, what)
        entity = result.get("invoice") if isinstance(result, dict) else None
        if not isinstance(entity, dict):
            raise RetryableError(f"{what}: unreadable body", http_status=resp.status_code)
        return entity

    async def _credit_note(self, entity: dict[str, Any]) -> dict[str, Any] | None:
        """The active credit note numbered ``<invoice number>-CN`` among the client's credit notes
        (``GET .../credit_notes/credit_notes?search[clientid]=<id>``, every page), proven ours: it carries
        the invoice's marker and its amount, else :class:`NumberConflictError`; ``None`` when there is none."""
        body = mapper.credit_note_to_freshbooks(entity, issued="", reason="")["credit_note"]
        number, url = body["credit_number"], self._account_url("credit_notes/credit_notes")
        page, pages = 1, 1
        while page <= pages:
            params = {"search[clientid]": str(entity.get("customerid")), "per_page": "100", "page": str(page)}
            result = self._result(
                await self._api("GET", url, params=params), f"FreshBooks GET credit_notes page {page}"
            )
            notes = result.get("credit_notes") if isinstance(result, dict) else None
            if not isinstance(notes, list):
                raise RetryableError("FreshBooks GET credit_notes: unreadable body")
            for note in notes:
                if isinstance(note, dict) and note.get("credit_number") == number and note.get("vis_state", 0) == 0:
                    self._check_credit_note(entity, note, number)
                    return note
            pages, page = int(result.get("pages") or 1), page + 1
        return None

    @staticmethod
    def _check_credit_note(entity: dict[str, Any], note: dict[str, Any], number: str) -> None:
        invoice_number = str(entity.get("invoice_number") or "")
        notes = entity.get("notes")
        expected = read_marker(notes if isinstance(notes, str) else None) or invoice_number
        found = read_marker(note.get("notes") if isinstance(note.get("notes"), str) else None)
        theirs = mapper.money_amount(note.get("amount"))
        ours = mapper.invoice_from_freshbooks(entity).total
        if found == expected and theirs is not None and theirs == ours:
            return
        raise NumberConflictError(
            f"number_conflict: FreshBooks already holds a credit note numbered {number} (id "
            f"{note.get('creditid', note.get('id'))}) that is not ours: marker {found!r} (ours {expected!r}), "
            f"amount {theirs} (invoice {invoice_number} totals {ours}). Invoice {invoice_number} was not retired: "
            "rename or remove that credit note",
            number=number,
            ours=ours if ours is not None else Decimal("0"),
            theirs=theirs,
            external_id=str(note.get("creditid", note.get("id"))),
        )

    async def _credit(
        self, entity: dict[str, Any], *, reason: str, issued: date, status: str | None, paid: Decimal
    ) -> Retirement:
        """``POST .../credit_notes/credit_notes`` for the whole invoice; a number refused as taken is looked up."""
        body = mapper.credit_note_to_freshbooks(entity, issued=issued.isoformat(), reason=reason)
        number = body["credit_note"]["credit_number"]
        what = f"FreshBooks POST credit_notes {number} (invoice {entity.get('invoice_number')})"
        resp = await self._api("POST", self._account_url("credit_notes/credit_notes"), body=body)
        errors = mapper.errors_of(self.decode(resp))
        if resp.status_code in (400, 409, 422) and any(e.get("field") == "credit_number" for e in errors):
            note = await self._credit_note(entity)
            if note is None:
                raise PermanentError(
                    f"{what}: credit number {number} is taken by a credit note FreshBooks does not list (a deleted "
                    "one): restore or renumber it",
                    http_status=resp.status_code,
                )
        else:
            result = self._result(resp, what)
            note = result.get("credit_note") if isinstance(result, dict) else None
            if not isinstance(note, dict) or note.get("creditid", note.get("id")) is None:
                raise UncertainOutcomeError(f"{what}: no credit note in the answer", http_status=resp.status_code)
        total = mapper.money_amount(note.get("amount"))
        return Retirement(
            "credited",
            str(entity.get("invoice_number") or ""),
            status,
            paid=paid,
            credit_note_id=str(note.get("creditid", note.get("id"))),
            credit_note_number=str(note.get("credit_number") or number),
            credit_note_total=total,
        )

    # ------------------------------------------------------------------ contacts (ContactDirectory)
    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """Client ``userid`` by e-mail (``search[email]``) or organisation name (``search[organization_like]``,
        then exact match). Tax numbers are not searchable in the material available: ``None``."""
        if field == "tax_number":
            return None
        param, column = (
            ("search[email]", "email") if field == "email" else ("search[organization_like]", "organization")
        )
        resp = await self._api("GET", self._account_url("users/clients"), params={param: value, "per_page": "100"})
        result = self._result(resp, f"FreshBooks GET clients by {field}")
        return mapper.client_id_where(result.get("clients") if isinstance(result, dict) else None, column, value)

    async def create_contact(self, query: ContactQuery) -> str:
        """``POST .../users/clients`` with ``organization`` (and ``email``/``vat_number`` when known)."""
        body = mapper.client_to_freshbooks(query.name, query.email, query.tax_number)
        resp = await self._api("POST", self._account_url("users/clients"), body=body)
        result = self._result(resp, f"FreshBooks POST client for {query.client_id}")
        created = result.get("client") if isinstance(result, dict) else None
        if not isinstance(created, dict) or created.get("userid", created.get("id")) is None:
            raise UncertainOutcomeError("FreshBooks POST clients: response without a client")
        return str(created.get("userid", created.get("id")))


__all__ = ["SCOPES", "FreshBooksConnector", "FreshBooksSettings", "is_duplicate_number"]
