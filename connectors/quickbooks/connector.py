"""QuickBooks Online (QBO) Accounting API v3 connector.

Creates invoices with ``POST {api_url}/v3/company/{realmId}/invoice?minorversion=N&requestid=K``
(facts: ``/work/shared/billing-apis.md`` §3; field reference ``tests/specs/quickbooks/openapi.yaml``):

* **Auth** — OAuth 2.0: ``POST https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer`` with
  ``grant_type=refresh_token`` and HTTP Basic ``client_id:client_secret``; access tokens last 1 h,
  the refresh token changes on refresh (always keep the latest). Tokens live in a
  :class:`~connectors.sdk.oauth2.TokenStore`; refreshes are single-flight per tenant across coroutines and
  processes (:class:`~connectors.sdk.oauth2.OAuth2TokenManager`). A 401 refreshes exactly once; a second
  401 is :class:`AuthError`.
* **Idempotency** — QBO's ``requestid`` query parameter (≤ 50 characters, ≤ 36 on ``/batch``,
  unique per company): a repeat returns the original response instead of executing again.
  :func:`~.mapper.request_id` derives it only from business identity (tenant, invoice key, operation), so
  each step — ``create``, ``send`` — has its own key. Because the retention window is undocumented,
  the connector also relies on ``DocNumber`` (our invoice number) being unique per company: a
  duplicate answers error 6140 "Duplicate Document Number Error" (Intuit's blog lists 6210; both are
  recognised, as is the message), and the existing invoice is looked up with
  ``GET /query?query=select * from Invoice where DocNumber = '...'`` and returned with ``created=False``.
  QBO replays *failed* responses too: re-delivering the same invoice version after fixing its data
  (e.g. a tax-code mapping) within Intuit's retention window gets the original fault back; a new
  revision (``rN+1``) has a new key.
* **Totals** — see :mod:`connectors.quickbooks.mapper`: line ``Amount`` = our net with a
  ``Qty``/``UnitPrice`` layout QBO accepts, and explicit ``TxnTaxDetail`` tax lines, so
  ``TotalAmt`` equals our total to the cent (checked on every response: ``details["total_matches"]``).
* **Status/e-mail** — QBO invoices have no draft state (an invoice is an open receivable once
  created). ``email_invoice: true`` sends it with ``POST /invoice/{id}/send`` (own ``requestid``;
  skipped when ``EmailStatus`` is already ``EmailSent``).
* **Ownership** — ``PrivateNote`` (internal memo, returned on reads) carries our marker
  ``broker:<invoice key>``; an invoice found under our ``DocNumber`` (duplicate fault, batch duplicate)
  is adopted only when it carries our marker and our total
  (:func:`~connectors.sdk.lifecycle.check_ours`), else :class:`NumberConflictError`.
* **Lifecycle** — :meth:`QuickBooksConnector.retire`: QBO has no drafts; an unpaid invoice is voided
  (``POST /invoice?operation=void`` with ``Id`` + ``SyncToken``); an invoice with a payment gets a
  ``CreditMemo`` for its whole total (``POST /creditmemo``), looked up by ``DocNumber`` first.
* **Batch** — :meth:`QuickBooksConnector.deliver_many` uses ``POST /batch`` (≤ 30 items per call,
  per-item results matched by ``bId``).
* **Limits** — 500 requests/minute per company, 10 concurrent (429 ``ThrottlingFault``; wait
  ``Retry-After`` or 60 s), 40 batch calls/minute.
* **Errors** — Intuit ``Fault`` bodies (``{"Fault": {"Error": [{"Message", "Detail", "code",
  "element"}], "type"}}``), also inside HTTP 200 responses, mapped onto the taxonomy.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from connectors.quickbooks import mapper as qbo
from connectors.quickbooks.settings import QuickBooksSettings
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    NumberConflictError,
    PermanentError,
    RateLimitedError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.http import HttpConnector, OAuth2Auth
from connectors.sdk.idempotency import QUICKBOOKS, idempotency_key
from connectors.sdk.interface import BatchItem, Capabilities, DeliveryResult
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import Retirement, check_ours, credit_note_conflict
from connectors.sdk.oauth2 import OAuth2Config

log = logging.getLogger("connectors.quickbooks")

#: The OAuth2 scope of the Accounting API.
SCOPE = "com.intuit.quickbooks.accounting"
#: Fault types of refused credentials.
AUTH_FAULTS = frozenset({"AuthenticationFault", "AuthorizationFault"})


class QuickBooksConnector(HttpConnector):
    """QuickBooks Online connector for one company (``realm_id``) of one broker tenant.

    ``QuickBooksConnector(settings, *, tenant, token_store=None, on_refresh_token=None)``.
    ``on_refresh_token(new_token)`` (sync or async) is called after each rotation, once the token
    store has it. Errors: :class:`RateLimitedError` (429), :class:`RetryableError` (5xx, request not
    sent), :class:`UncertainOutcomeError` (sent, no answer: reconcile with :meth:`find`),
    :class:`AuthError` (token refused, 401 after one refresh, 403), :class:`UnknownAccountError`
    (realm not reachable, from :meth:`check`), :class:`PermanentError` (validation faults, field
    limits, unmapped tax rate), :class:`ConfigError` (settings, missing secret variable).
    """

    name = "quickbooks"
    label = "QuickBooks"
    version = "0.1.0"
    capabilities = Capabilities(
        native_idempotency=True,
        lookup_by_reference=True,
        batch_size=30,
        amendments=True,
        oauth2=True,
        rate_limit_per_minute=500,
        max_concurrency=10,
        daily_limit=None,
        # DocNumber <= 21 characters (error 2050; /work/shared/billing-apis.md, QuickBooks "Number / reference").
        # No credit-note limit: credit memos are numbered by mapper.credit_memo_number, which fits 21 itself.
        invoice_number_max=qbo.DOC_NUMBER_MAX,
        # No draft invoices: "an invoice is an open receivable once created" (billing-apis.md, QuickBooks
        # "Status"); approval: draft is refused for a QuickBooks tenant when the configuration loads.
        drafts=False,
    )
    Settings = QuickBooksSettings
    settings: QuickBooksSettings
    _contacts: ContactResolver | None = None  # built on first use (the host sets ``clients`` first)
    #: Over the shared table: a 5xx is plainly retryable (a repeated write carries the same
    #: ``requestid``, which QBO replays) and 408/409/425 without a Fault are refusals.
    status_overrides: ClassVar[Mapping[int, type[ConnectorError] | None]] = {
        **dict.fromkeys((408, 409, 425), PermanentError),
        **dict.fromkeys((500, 504), RetryableError),
    }

    @property
    def contacts(self) -> ContactResolver:
        """The tenant's contact resolver, built on first use (the host may set ``self.clients`` after construction)."""
        if self._contacts is None:
            self._contacts = ContactResolver(
                self, allow_create=self.settings.create_contacts, clients=self.clients, setting_name="create_contacts"
            )
        return self._contacts

    def __repr__(self) -> str:
        return f"QuickBooksConnector(tenant={self.tenant!r}, realm_id={self.settings.realm_id!r})"

    # ------------------------------------------------------------------ auth and transport
    def make_auth(self) -> OAuth2Auth:
        """Bearer tokens refreshed at ``token_url`` with HTTP Basic client authentication (rotating)."""
        return self.refresh_token_auth(self.settings.token_url, on_rotate=self.on_refresh_token)

    def token_connection(self) -> str:
        """``realm-<realmId>``: Intuit issues a refresh token per company (realm) and app, so tenants on one
        realm share its tokens and tenants on different realms never do, whatever variable seeds them."""
        return f"realm-{self.settings.realm_id}"

    @property
    def token_refreshes(self) -> int:
        """Refresh grants performed by this connector."""
        return self.auth.manager.refreshes if isinstance(self.auth, OAuth2Auth) else 0

    def oauth2_config(self) -> OAuth2Config:
        """Intuit's authorization-code flow (``appcenter.intuit.com``; HTTP Basic at the token URL; no PKCE)."""
        return self.authorization_config(self.settings.token_url, (SCOPE,), use_pkce=False)

    async def _call(
        self, method: str, resource: str, *, params: Mapping[str, str] | None = None, body: Any = None, **kwargs: Any
    ) -> httpx.Response:
        """A call on ``/v3/company/{realmId}/<resource>?minorversion=N``; ``body`` goes as exact-decimal JSON."""
        if body is not None:
            kwargs.update(content=qbo.dumps(body), headers={"Content-Type": "application/json"})
        url = self.url(self.settings.api_url, f"v3/company/{self.settings.realm_id}/{resource}")
        query = {"minorversion": str(self.settings.minor_version), **(params or {})}
        return await self.request(method, url, params=query, **kwargs)

    def problem_detail(self, resp: httpx.Response) -> str:
        """An Intuit Fault as ``<type>: <code> <detail> [<element>]; ...``; other bodies as the SDK reads them."""
        body = self.decode(resp)
        errors = qbo.fault_errors(body)
        if not errors:
            return super().problem_detail(resp)
        kind = qbo.fault_type(body)
        return self.scrub(f"{kind}: {qbo.describe_errors(errors)}" if kind else qbo.describe_errors(errors))

    def classify(self, resp: httpx.Response, what: str) -> ConnectorError | None:
        """A Fault in a 4xx other than 401/403/429 (validation, throttling codes, SystemFault); else the table."""
        body = self.decode(resp)
        if resp.status_code in (401, 403, 429) or resp.status_code >= 500 or not qbo.fault_errors(body):
            return None
        return self._fault_error(body, what, resp.status_code)

    def _fault_error(self, body: Any, what: str, status: int | None = None) -> ConnectorError:
        """The error of the Fault in ``body``: of a response with ``status``, or of a batch item (``None``).

        ``SystemFault`` -> retryable; codes 3001/3002 -> rate limited (60 s); authentication or
        authorization faults -> :class:`AuthError`; any other fault -> :class:`PermanentError`.
        """
        errors, kind = qbo.fault_errors(body), qbo.fault_type(body)
        detail = self.scrub(qbo.describe_errors(errors))
        if kind == "SystemFault":
            return RetryableError(f"{what}: {detail}", http_status=status)
        if any(str(e.get("code")) in qbo.THROTTLE_CODES for e in errors):
            return RateLimitedError(f"{what}: throttled ({detail})", retry_after=60.0, http_status=status or 429)
        if kind in AUTH_FAULTS:
            return AuthError(f"{what}: {detail}", http_status=status)
        return PermanentError(f"{what}: QuickBooks rejected it: {detail}", http_status=max(status or 400, 400))

    def _ok(self, resp: httpx.Response, what: str) -> Any:
        """The decoded body of a 2xx ``resp`` without a Fault; the taxonomy error otherwise (a Fault in a 200 too)."""
        self.raise_for_status(resp, what)
        body = self.decode(resp)
        if qbo.fault_errors(body):
            raise self._fault_error(body, what, resp.status_code)
        return body

    def _created(self, resp: httpx.Response, entity: str, what: str) -> dict[str, Any]:
        """The ``entity`` (``Invoice``, ``Customer``) with its ``Id`` in the answer to a create; without one the
        outcome is unknown (:class:`UncertainOutcomeError`: reconcile before retrying)."""
        body = self._ok(resp, what)
        found = body.get(entity) if isinstance(body, dict) else None
        if not isinstance(found, dict) or not found.get("Id"):
            raise UncertainOutcomeError(
                f"{what}: HTTP {resp.status_code} without {entity}", http_status=resp.status_code
            )
        return found

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """``GET /v3/company/{realmId}/companyinfo/{realmId}`` — the cheapest authenticated call.

        :class:`UnknownAccountError` when the token cannot reach the company (403), :class:`AuthError`
        when credentials are refused, :class:`ConfigError` for a missing secret variable.
        """
        resp = await self._call("GET", f"companyinfo/{self.settings.realm_id}")
        if resp.status_code == 403:
            raise UnknownAccountError(
                f"unknown QuickBooks company (realm) {self.settings.realm_id}: these credentials cannot reach it "
                f"({self.problem_detail(resp)})"
            )
        body = self._ok(resp, "QuickBooks GET companyinfo")
        if not isinstance(body, dict) or not isinstance(body.get("CompanyInfo"), dict):
            raise RetryableError("QuickBooks GET companyinfo: unreadable body", http_status=resp.status_code)

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create ``invoice`` unless it exists; then send it by e-mail when ``email_invoice``.

        ``POST invoice?minorversion&requestid=request_id(invoice, "create")``. A duplicate
        ``DocNumber`` fault is resolved by :meth:`find` and returned with ``created=False``.
        ``details``: ``TotalAmt``, ``TotalTax`` (decimal strings), ``total_matches``, ``EmailStatus``,
        ``requestid`` (and ``duplicate``, ``email_error`` when they apply).
        """
        self._precheck(invoice)
        customer_id = await self.contacts.resolve(invoice)
        body = qbo.invoice_to_qbo(invoice, self.settings, customer_id=customer_id)
        key = qbo.request_id(invoice, "create")
        resp = await self._call("POST", "invoice", params={"requestid": key}, body=body)
        if resp.status_code == 400 and qbo.is_duplicate_doc_number(qbo.fault_errors(self.decode(resp))):
            result = await self._existing(invoice, key)
        else:
            entity = self._created(resp, "Invoice", f"QuickBooks POST invoice {invoice.invoice_number}")
            result = self._result(invoice, entity, created=True, key=key)
        return await self._maybe_email(invoice, result)

    def _precheck(self, invoice: Invoice) -> None:
        """Field limits and tax mappings, before any call (even a customer lookup) is made."""
        qbo.check_limits(invoice)
        qbo.tax_lines(invoice, self.settings)

    def _result(self, invoice: Invoice, entity: dict[str, Any], *, created: bool, key: str) -> DeliveryResult:
        """The :class:`DeliveryResult` of QBO's ``entity`` (an ``Invoice``); a total other than ours is logged."""
        total = entity.get("TotalAmt")
        tax_detail = entity.get("TxnTaxDetail")
        tax = tax_detail.get("TotalTax") if isinstance(tax_detail, dict) else None
        details = {
            "TotalAmt": str(total),
            "TotalTax": str(tax),
            "total_matches": self.total_matches(invoice, total),
            "EmailStatus": entity.get("EmailStatus"),
            "requestid": key,
        }
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=str(entity["Id"]),
            external_number=str(entity.get("DocNumber") or invoice.invoice_number),
            created=created,
            details=details if created else {**details, "duplicate": True},
        )

    async def _existing(
        self, invoice: Invoice, key: str, found: Mapping[str, dict[str, Any]] | None = None
    ) -> DeliveryResult:
        """The invoice QBO has under our ``DocNumber`` (looked up unless in ``found``) as ``created=False``,
        once proven ours (:func:`~connectors.sdk.lifecycle.check_ours`: our marker in ``PrivateNote`` and
        our total, else :class:`NumberConflictError`); :class:`RetryableError` when the query does not
        return it yet."""
        if found is None:
            found = await self._find_many([invoice.invoice_number])
        entity = found.get(invoice.invoice_number)
        if entity is None:
            raise RetryableError(
                f"QuickBooks reported DocNumber {invoice.invoice_number} as taken but the query does not return it yet"
            )
        check_ours(invoice, qbo.invoice_from_qbo(entity), what="QuickBooks Invoice found under our DocNumber")
        return self._result(invoice, entity, created=False, key=key)

    async def _maybe_email(self, invoice: Invoice, result: DeliveryResult) -> DeliveryResult:
        """``POST invoice/{id}/send`` when ``email_invoice`` and not sent yet; a refusal is reported, not raised."""
        if not self.settings.email_invoice or result.details.get("EmailStatus") == "EmailSent":
            return result
        key = qbo.request_id(invoice, "send")
        what = f"QuickBooks POST invoice/{result.external_id}/send ({invoice.invoice_number})"
        resp = await self._call(
            "POST",
            f"invoice/{result.external_id}/send",
            params={"requestid": key},
            content=b"",
            headers={"Content-Type": "application/octet-stream"},
        )
        try:
            parsed = self._ok(resp, what)
        except PermanentError as exc:
            # The invoice exists: report the e-mail failure instead of dead-lettering a delivered invoice.
            log.warning(
                "quickbooks tenant=%s invoice=%s: e-mail not sent: %s", self.tenant, invoice.invoice_number, exc
            )
            return dataclasses.replace(result, details={**result.details, "email_error": str(exc)})
        entity = parsed.get("Invoice") if isinstance(parsed, dict) else None
        status = entity.get("EmailStatus") if isinstance(entity, dict) else "EmailSent"
        return dataclasses.replace(result, details={**result.details, "EmailStatus": status, "send_requestid": key})

    async def _query(self, text: str, what: str) -> dict[str, Any]:
        """``GET /query?query=<text>``: its ``QueryResponse`` (:class:`RetryableError` when unreadable)."""
        resp = await self._call("GET", "query", params={"query": text})
        body = self._ok(resp, what)
        response = body.get("QueryResponse") if isinstance(body, dict) else None
        if not isinstance(response, dict):
            raise RetryableError(f"{what}: unreadable body", http_status=resp.status_code)
        return response

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """``GET /query?query=select * from Invoice where DocNumber = '<n>'`` — the exact match or ``None``,
        with QBO's ``TotalAmt``, the derived status (``Open``, ``Partial``, ``Paid``, ``Voided``), the
        marker of its ``PrivateNote`` and the amount paid (``TotalAmt - Balance``)."""
        entity = (await self._find_many([invoice_number])).get(invoice_number)
        return qbo.invoice_from_qbo(entity) if entity is not None else None

    async def _find_entity(self, entity_name: str, number: str) -> dict[str, Any] | None:
        """The ``entity_name`` (``CreditMemo``...) whose ``DocNumber`` is exactly ``number``, or ``None``."""
        where = f"DocNumber = {qbo.quote(number)}"
        response = await self._query(
            f"select * from {entity_name} where {where}", f"QuickBooks query {entity_name} {where}"
        )
        for entity in response.get(entity_name) or []:
            if isinstance(entity, dict) and entity.get("DocNumber") == number and entity.get("Id"):
                return entity
        return None

    # ------------------------------------------------------------------ lifecycle
    async def retire(self, previous: ExternalInvoice, *, key: str, reason: str, issued: date) -> Retirement:
        """Take ``previous`` out of the customer's balance by QBO's rules; every step safe to repeat.

        Re-reads the invoice (``GET /invoice/{Id}``, or by ``DocNumber`` when no id is known: then it must
        carry a broker marker, else :class:`NumberConflictError`). Absent (Fault 610) or voided ->
        ``none``. A credit memo already issued for it (``select * from CreditMemo where DocNumber =
        '<number>-CN'``, proven ours by the marker and total) -> ``none``. Any payment (``Balance <
        TotalAmt``) -> a ``CreditMemo`` for its whole total (:func:`~connectors.quickbooks.mapper.credit_memo_body`,
        ``POST /creditmemo``; QBO has no way to void a paid invoice without unlinking the payment) ->
        ``credited`` with ``paid``. Otherwise -> ``POST /invoice?operation=void`` with ``Id`` and
        ``SyncToken`` (QBO keeps the voided invoice with zero amounts: https://blogs.intuit.com/2016/04/06/voiding-invoice-objects)
        -> ``voided``; a stale ``SyncToken`` (Fault 5010) re-reads once. Writes carry ``requestid``
        ``<tenant>:quickbooks:<key>:void-<Id>-<SyncToken>`` / ``credit-<Id>`` (hashed when over 50 characters;
        the ``SyncToken`` in the void key lets the retry after a stale token be a new request, not a replay).
        """
        entity = await self._reread(previous)
        if entity is None:
            return Retirement("none", previous.number)
        status = qbo.invoice_status(entity)
        number = str(entity.get("DocNumber") or previous.number)
        if status == "Voided":
            return Retirement("none", number, status)
        note = await self._credit_memo(entity)
        if note is not None:
            return Retirement("none", number, status, details={"credit_note_number": note.get("DocNumber")})
        paid = qbo.amount_paid(entity)
        if paid > 0:
            return await self._credit(entity, key=key, reason=reason, issued=issued, status=status, paid=paid)
        await self._void(entity, key)
        return Retirement("voided", number, status)

    async def _reread(self, previous: ExternalInvoice) -> dict[str, Any] | None:
        """The invoice as QBO holds it now (``None``: absent or deleted). Found by number only, it must carry a
        broker marker (``previous.marker`` when given): a foreign document is never voided or credited."""
        if not previous.external_id:
            entity = (await self._find_many([previous.number])).get(previous.number)
            if entity is not None:
                self._check_retirable(previous, entity)
            return entity
        what = f"QuickBooks GET invoice/{previous.external_id} ({previous.number})"
        resp = await self._call("GET", f"invoice/{previous.external_id}")
        if resp.status_code == 400 and qbo.has_code(qbo.fault_errors(self.decode(resp)), qbo.NOT_FOUND_CODE):
            return None
        body = self._ok(resp, what)
        entity = body.get("Invoice") if isinstance(body, dict) else None
        if not isinstance(entity, dict) or not entity.get("Id"):
            raise RetryableError(f"{what}: unreadable body", http_status=resp.status_code)
        return entity

    def _check_retirable(self, previous: ExternalInvoice, entity: dict[str, Any]) -> None:
        found = qbo.invoice_from_qbo(entity)
        if found.marker is not None and previous.marker in (None, found.marker):
            return
        total = found.total if found.total is not None else Decimal("0")
        raise NumberConflictError(
            f"number_conflict: QuickBooks Invoice {previous.number} (Id {found.external_id}, total {found.total}) "
            f"does not carry our marker (it carries {found.marker!r}): it is not retired. Total in QuickBooks: "
            f"{found.total}; ours: {previous.total if previous.total is not None else 'unknown'}",
            number=previous.number,
            ours=previous.total if previous.total is not None else total,
            theirs=found.total,
            external_id=found.external_id,
        )

    async def _credit_memo(self, entity: dict[str, Any]) -> dict[str, Any] | None:
        """The credit memo already issued for invoice ``entity`` (by ``DocNumber``), proven ours: it carries the
        invoice's marker and its total (else :class:`NumberConflictError`); ``None`` when there is none."""
        invoice_number = str(entity.get("DocNumber") or "")
        number = qbo.credit_memo_number(invoice_number)
        note = await self._find_entity("CreditMemo", number)
        if note is None:
            return None
        expected = qbo.read_marker(entity.get("PrivateNote")) or invoice_number
        found, total = qbo.read_marker(note.get("PrivateNote")), Decimal(str(note.get("TotalAmt", "0")))
        invoice_total = Decimal(str(entity.get("TotalAmt", "0")))
        if found != expected or total != invoice_total:
            raise credit_note_conflict(
                "QuickBooks",
                number,
                note_id=note.get("Id"),
                invoice=invoice_number,
                ours=invoice_total,
                theirs=total,
                why=f"this CreditMemo carries the marker {found!r} (ours {expected!r})",
                remedy="rename or remove that credit memo",
            )
        return note

    def _step_key(self, key: str, operation: str) -> str:
        return idempotency_key(self.tenant, "quickbooks", key, operation, QUICKBOOKS)

    async def _credit(
        self, entity: dict[str, Any], *, key: str, reason: str, issued: date, status: str, paid: Decimal
    ) -> Retirement:
        """``POST /creditmemo`` for the whole of ``entity``; a duplicate ``DocNumber`` is looked up and proven ours."""
        body = qbo.credit_memo_body(entity, issued=issued, reason=reason)
        number, ident = body["DocNumber"], str(entity["Id"])
        what = f"QuickBooks POST creditmemo {number} (invoice {entity.get('DocNumber')})"
        resp = await self._call(
            "POST", "creditmemo", params={"requestid": self._step_key(key, f"credit-{ident}")}, body=body
        )
        if resp.status_code == 400 and qbo.is_duplicate_doc_number(qbo.fault_errors(self.decode(resp))):
            note = await self._credit_memo(entity)
            if note is None:
                raise RetryableError(f"{what}: DocNumber reported taken but the query does not return it yet")
        else:
            note = self._created(resp, "CreditMemo", what)
        total = Decimal(str(note.get("TotalAmt", "0")))
        if total != Decimal(str(entity.get("TotalAmt", "0"))):
            log.warning(
                "quickbooks tenant=%s credit memo %s total %s differs from invoice %s total %s",
                self.tenant,
                number,
                total,
                entity.get("DocNumber"),
                entity.get("TotalAmt"),
            )
        return Retirement(
            "credited",
            str(entity.get("DocNumber") or ""),
            status,
            paid=paid,
            credit_note_id=str(note["Id"]),
            credit_note_number=str(note.get("DocNumber") or number),
            credit_note_total=total,
        )

    async def _void(self, entity: dict[str, Any], key: str) -> None:
        """``POST /invoice?operation=void`` with ``Id`` and ``SyncToken``; a stale token re-reads once."""
        ident = str(entity["Id"])
        what = f"QuickBooks POST invoice?operation=void ({entity.get('DocNumber')}, Id {ident})"
        for attempt in (1, 2):
            body = {"Id": ident, "SyncToken": str(entity.get("SyncToken", "0"))}
            params = {"operation": "void", "requestid": self._step_key(key, f"void-{ident}-{body['SyncToken']}")}
            resp = await self._call("POST", "invoice", params=params, body=body)
            errors = qbo.fault_errors(self.decode(resp))
            if attempt == 1 and resp.status_code == 400 and qbo.has_code(errors, qbo.STALE_OBJECT_CODE):
                fresh = await self._reread(ExternalInvoice(ident, str(entity.get("DocNumber") or "")))
                if fresh is None or qbo.invoice_status(fresh) == "Voided":
                    return
                if qbo.amount_paid(fresh) > 0:
                    raise RetryableError(f"{what}: a payment arrived meanwhile; retire again to credit it")
                entity = fresh
                continue
            self._created(resp, "Invoice", what)
            return

    async def _find_many(self, numbers: Sequence[str]) -> dict[str, dict[str, Any]]:
        """``DocNumber`` -> ``Invoice`` (with an ``Id``; exact matches only) of those of ``numbers`` QBO has.

        One query per 30 numbers: ``where DocNumber = '<n>'`` for one, ``DocNumber in (...)`` for more.
        """
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(numbers), 30):
            chunk = list(numbers[start : start + 30])
            listed = ", ".join(qbo.quote(n) for n in chunk)
            where = f"= {listed}" if len(chunk) == 1 else f"in ({listed}) maxresults 1000"
            response = await self._query(
                f"select * from Invoice where DocNumber {where}", f"QuickBooks query Invoice DocNumber {where}"
            )
            for entity in response.get("Invoice") or []:
                if isinstance(entity, dict) and entity.get("DocNumber") in chunk and entity.get("Id"):
                    found.setdefault(str(entity["DocNumber"]), entity)
        return found

    # ------------------------------------------------------------------ batch
    async def deliver_many(self, invoices: Sequence[Invoice]) -> list[BatchItem]:
        """``POST /batch`` with ≤ ``batch_size`` invoices a call; one :class:`BatchItem` per invoice, in input order.

        Each chunk is sorted by invoice key, items are ``bId`` ``b0``..``b29`` and the call carries
        ``batch_request_id`` (:mod:`~connectors.quickbooks.mapper`) of the chunk's keys, so a retried chunk is
        replayed by QBO. A duplicate ``DocNumber`` item is looked up (one ``DocNumber in (...)`` query) and
        reported ``created=False`` once proven ours (else that item's error is :class:`NumberConflictError`).
        After a 429, auth or config error the remaining invoices get that error.
        Retry failed items one by one (:meth:`deliver`, their own ``requestid``): the same batch
        again would be answered with the replayed batch response.
        """
        return await self.deliver_in_batches(invoices, self.settings.batch_size, self._deliver_chunk)

    async def _deliver_chunk(self, chunk: list[Invoice]) -> list[BatchItem]:
        """One ``POST /batch`` for ``chunk``: its items in chunk order (limits, contacts, item faults fail one item)."""
        out: dict[str, BatchItem] = {}
        ready: list[tuple[Invoice, dict[str, Any]]] = []
        for invoice in sorted(chunk, key=lambda i: i.invoice_key):
            try:
                self._precheck(invoice)
                customer_id = await self.contacts.resolve(invoice)
                ready.append((invoice, qbo.invoice_to_qbo(invoice, self.settings, customer_id=customer_id)))
            except PermanentError as exc:
                out[invoice.invoice_key] = BatchItem(invoice.invoice_key, error=exc)
        if not ready:
            return [out[invoice.invoice_key] for invoice in chunk]
        items = [{"bId": f"b{i}", "operation": "create", "Invoice": body} for i, (_, body) in enumerate(ready)]
        key = qbo.batch_request_id(self.tenant, [invoice.invoice_key for invoice, _ in ready])
        resp = await self._call("POST", "batch", params={"requestid": key}, body={"BatchItemRequest": items})
        body = self._ok(resp, f"QuickBooks POST batch ({len(ready)} invoices)")
        answers = body.get("BatchItemResponse") if isinstance(body, dict) else None
        if not isinstance(answers, list):
            raise UncertainOutcomeError(
                "QuickBooks POST batch: response without BatchItemResponse", http_status=resp.status_code
            )
        by_bid = {str(a.get("bId")): a for a in answers if isinstance(a, dict)}
        duplicates: list[Invoice] = []
        created: list[tuple[Invoice, DeliveryResult]] = []
        for i, (invoice, _) in enumerate(ready):
            answer, what = by_bid.get(f"b{i}"), f"QuickBooks batch item b{i} ({invoice.invoice_number})"
            entity = answer.get("Invoice") if answer is not None else None
            if answer is not None and qbo.fault_errors(answer):
                if qbo.is_duplicate_doc_number(qbo.fault_errors(answer)):
                    duplicates.append(invoice)
                else:
                    out[invoice.invoice_key] = BatchItem(invoice.invoice_key, error=self._fault_error(answer, what))
            elif isinstance(entity, dict) and entity.get("Id"):
                created.append((invoice, self._result(invoice, entity, created=True, key=key)))
            else:
                missing = "missing from the batch response" if answer is None else "no Invoice in the answer"
                error = UncertainOutcomeError(f"{what}: {missing}; reconcile with find()")
                out[invoice.invoice_key] = BatchItem(invoice.invoice_key, error=error)
        existing = await self._find_many([i.invoice_number for i in duplicates]) if duplicates else {}
        for invoice in duplicates:
            try:
                created.append((invoice, await self._existing(invoice, key, existing)))
            except (RetryableError, NumberConflictError) as exc:
                out[invoice.invoice_key] = BatchItem(invoice.invoice_key, error=exc)
        for invoice, result in created:
            try:
                out[invoice.invoice_key] = BatchItem(
                    invoice.invoice_key, result=await self._maybe_email(invoice, result)
                )
            except (RateLimitedError, AuthError, ConfigError):
                raise
            except ConnectorError as exc:
                out[invoice.invoice_key] = BatchItem(invoice.invoice_key, error=exc)
        return [out[invoice.invoice_key] for invoice in chunk]

    # ------------------------------------------------------------------ contacts (ContactDirectory)
    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """Customer id by ``DisplayName`` (name) or ``PrimaryEmailAddr`` (email). QBO's query language
        cannot filter on tax identifiers, so ``tax_number`` lookups return ``None``."""
        column = {"name": "DisplayName", "email": "PrimaryEmailAddr"}.get(field)
        if column is None:
            return None
        response = await self._query(
            f"select * from Customer where {column} = {qbo.quote(value)}", f"QuickBooks query Customer {column}"
        )
        for customer in response.get("Customer") or []:
            got = customer.get(column) if isinstance(customer, dict) else None
            got = got.get("Address") if isinstance(got, dict) else got  # PrimaryEmailAddr is {"Address": ...}
            if isinstance(got, str) and same_value(field, got, value):
                return str(customer["Id"])
        return None

    async def create_contact(self, query: ContactQuery) -> str:
        """``POST /customer`` with ``DisplayName`` (and e-mail / tax id when known); a duplicate name is looked up."""
        body: dict[str, Any] = {"DisplayName": query.name}
        if query.email:
            body["PrimaryEmailAddr"] = {"Address": query.email}
        if query.tax_number:
            body["PrimaryTaxIdentifier"] = query.tax_number
        params = {"requestid": qbo.customer_request_id(self.tenant, query.client_id)}
        resp = await self._call("POST", "customer", params=params, body=body)
        errors = qbo.fault_errors(self.decode(resp))
        if any(str(e.get("code")) == qbo.DUPLICATE_NAME_CODE for e in errors) and (
            found := await self.find_contact("name", query.name)
        ):
            return found
        return str(self._created(resp, "Customer", f"QuickBooks POST customer for client {query.client_id}")["Id"])


__all__ = ["QuickBooksConnector", "QuickBooksSettings"]
