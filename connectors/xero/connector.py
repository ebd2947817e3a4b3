"""Xero Accounting API 2.0 connector.

Creates sales invoices with ``PUT https://api.xero.com/api.xro/2.0/Invoices`` (spec operation
``createInvoices`` in the official ``xero_accounting.yaml``; docs
https://developer.xero.com/documentation/api/accounting/invoices). Facts it relies on:

* OAuth 2.0: ``POST https://identity.xero.com/connect/token`` with ``grant_type=refresh_token`` and
  HTTP Basic ``client_id:client_secret``; access tokens last 30 minutes, refresh tokens rotate on
  every use (store the new one; the previous one stays usable for a 30-minute grace period)
  (https://developer.xero.com/faq/oauth2; spec ``xero-identity.yaml`` securitySchemes). One refresh
  token covers every organisation of the *connection* (the app's authorisation by one user), so the
  tokens are stored per connection, not per organisation: tenants with the same ``client_id``,
  ``identity_url`` and ``refresh_token_env`` share one token chain (``HttpConnector.token_connection``).
  ``invalid_grant`` on refresh (revoked, expired, spent) is :class:`ReauthRequiredError`.
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
* Ownership: every invoice carries our marker at the end of ``Reference`` (ACCREC only, ≤ 255
  characters, returned on every read); an invoice found under our number without it, or with another
  total, is never adopted (:class:`NumberConflictError`). Legal notes print as description-only line
  items (:mod:`connectors.xero.mapper`).
* Drafts (``invoice.draft``, the tenant's ``approval: draft``): posted with ``Status: DRAFT`` whatever
  ``invoice_status`` says, for the organisation to approve in Xero.
* Lifecycle (:meth:`XeroConnector.retire`; ``amend``/``cancel`` are the SDK's): drafts are deleted,
  approved invoices without payments voided, anything with a payment credited (``ACCRECCREDIT``).

Transport, the 401 -> refresh once -> retry loop, the status table, ``Retry-After``, quota reports
and scrubbing are :class:`connectors.sdk.http.HttpConnector`'s; the JSON is :mod:`connectors.xero.mapper`'s.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.errors import (
    ConnectorError,
    MissingScopeError,
    PermanentError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.http import HttpConnector, OAuth2Auth
from connectors.sdk.idempotency import XERO as XERO_KEY_RULES
from connectors.sdk.idempotency import idempotency_key as shared_idempotency_key
from connectors.sdk.interface import BatchItem, Capabilities, DeliveryResult
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import Retirement, check_ours, credit_note_conflict, credit_note_number, read_marker
from connectors.sdk.money import amount_or_none, dumps
from connectors.sdk.oauth2 import OAuth2Config
from connectors.xero.mapper import (
    INVOICE_NUMBER_MAX,
    credit_note_for,
    invoice_from_xero,
    invoice_to_xero,
    is_duplicate_number,
    validation_exception,
    validation_messages,
    where_equals,
)
from connectors.xero.settings import XeroSettings

log = logging.getLogger("connectors.xero")

#: Xero's validation message for a second ACCREC invoice with an existing number.
DUPLICATE_NUMBER_MESSAGE = "Invoice # must be unique."
#: What Xero's validation message says when an invoice's or credit note's contact is archived (lower case;
#: the whole message: "The contact with the specified contact details has been archived. The contact must
#: be un-archived before creating new invoices or credit notes.", as Xero integrators' support pages quote it).
ARCHIVED_CONTACT = "has been archived"
#: Query of every create: per-element errors in a 200 (``summarizeErrors=false``), 4-decimal unit amounts.
CREATE_PARAMS = {"summarizeErrors": "false", "unitdp": "4"}
#: OAuth2 scopes the connector needs (``check`` reports the missing ones) and requests when authorising.
REQUIRED_SCOPES = ("accounting.transactions", "accounting.contacts")
AUTHORIZE_SCOPES = ("offline_access", *REQUIRED_SCOPES)


def idempotency_key(invoice: Invoice, operation: str) -> str:
    """Deterministic ``Idempotency-Key`` for ``operation`` (``"create"``) on ``invoice``.

    Derived only from business identity: ``f"{tenant}:xero:{invoice_key}:{operation}"``. When that
    is longer than 128 characters (Xero's limit) or contains characters outside ``[A-Za-z0-9:._-]``,
    it becomes ``<readable prefix>:sha256:<64 hex digits of the full text>`` (≤128 characters; the
    prefix is the sanitised start of the full text).
    """
    return shared_idempotency_key(invoice.tenant, "xero", invoice.invoice_key, operation, XERO_KEY_RULES)


def _retire_key(tenant: str, key: str, operation: str) -> str:
    """``Idempotency-Key`` of one write of :meth:`XeroConnector.retire`: ``<tenant>:xero:<key>:<operation>``
    (``key`` = the invoice key of the record that asks; ``operation`` = ``void``, ``delete`` or ``credit``),
    fitted to 128 characters like :func:`idempotency_key`."""
    return shared_idempotency_key(tenant, "xero", key, operation, XERO_KEY_RULES)


def _fitted_key(raw: str, kind: str) -> str:
    """``raw`` when it is a valid ``Idempotency-Key``, else ``<kind>:<64 hex digits of its SHA-256>:create``."""
    return raw if XERO_KEY_RULES.fits(raw) else f"{kind}:{hashlib.sha256(raw.encode()).hexdigest()}:create"


class XeroConnector(HttpConnector):
    """Xero connector: one organisation (``xero_tenant_id``) for one broker tenant.

    ``XeroConnector(settings, *, tenant, token_store=None, on_refresh_token=None)``: ``settings`` is a
    :class:`XeroSettings` or a mapping validated into one (:class:`ConfigError` naming the field on
    error). Secrets are read lazily from the environment on the first token refresh and kept as
    ``SecretStr``. Tokens live in ``token_store`` (default :func:`connectors.sdk.oauth2.default_token_store`,
    a 0600 file per connection, shared by every organisation it reaches): refreshes are single-flight
    across coroutines, tenants and processes and each rotated refresh token is saved before it is used.
    ``on_refresh_token(new_token)`` (sync or async) is also called after each rotation.

    Errors: :class:`RateLimitedError` (429, ``retry_after`` seconds), :class:`RetryableError`
    (5xx, connection not established), :class:`UncertainOutcomeError` (request sent, response
    lost: reconcile with :meth:`find`), :class:`ReauthRequiredError` (the refresh token refused:
    ``invalid_grant``), :class:`AuthError` (other token refusals, 401 after one refresh, 403),
    :class:`PermanentError` (validation errors, 404), :class:`ConfigError` (missing secret,
    unknown organisation).
    """

    name = "xero"
    label = "Xero"
    capabilities = Capabilities(
        native_idempotency=True,
        lookup_by_reference=True,
        batch_size=50,
        amendments=True,
        oauth2=True,
        rate_limit_per_minute=60,
        max_concurrency=5,
        daily_limit=5000,
        # InvoiceNumber <= 255 (mapper.INVOICE_NUMBER_MAX); CreditNoteNumber's limit is not documented in
        # the material at hand, and our "-CN" numbers stay far below 255 (the broker keeps numbers <= 32)
        invoice_number_max=INVOICE_NUMBER_MAX,
        # Status DRAFT (Xero's default; DRAFT -> SUBMITTED -> AUTHORISED), deleted while still a draft:
        # spec xero_accounting.yaml Invoice.Status, developer.xero.com/documentation/api/accounting/invoices
        drafts=True,
    )
    Settings = XeroSettings
    settings: XeroSettings
    _contacts: ContactResolver | None = None  # built on first use (the host sets ``clients`` first)
    #: Over the shared table: every 5xx stays plainly retryable (a repeated write carries the same
    #: ``Idempotency-Key``), and 408/409/425, which Xero does not document, stay permanent.
    status_overrides: ClassVar[Mapping[int, type[ConnectorError] | None]] = {
        **dict.fromkeys((408, 409, 425), PermanentError),
        **dict.fromkeys((500, 504), RetryableError),
    }

    def __repr__(self) -> str:
        return f"XeroConnector(tenant={self.tenant!r}, xero_tenant_id={self.settings.xero_tenant_id!r})"

    # ------------------------------------------------------------------ auth and transport
    @property
    def token_url(self) -> str:
        """Xero's token endpoint: ``{identity_url}/connect/token``."""
        return self.url(self.settings.identity_url, "/connect/token")

    def make_auth(self) -> OAuth2Auth:
        """Bearer tokens refreshed at :attr:`token_url` with HTTP Basic client authentication (rotating)."""
        return self.refresh_token_auth(
            self.token_url, issuer=self.settings.identity_url, on_rotate=self.on_refresh_token
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        tenant_header: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Adds ``xero-tenant-id`` (spec ``requiredHeader``) unless ``tenant_header=False`` (``GET /connections``)."""
        if tenant_header:
            headers = {"xero-tenant-id": self.settings.xero_tenant_id, **(headers or {})}
        return await super().request(method, url, headers=headers, **kwargs)

    async def _call(
        self,
        method: str,
        resource: str,
        *,
        body: Any = None,
        key: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One call on ``/api.xro/2.0/<resource>``: ``body`` as exact-decimal JSON with ``Idempotency-Key: key``."""
        return await self.request(
            method,
            self.url(self.settings.api_url, f"/api.xro/2.0/{resource}"),
            params=params,
            headers={"Idempotency-Key": key, "Content-Type": "application/json"} if key else None,
            content=None if body is None else dumps(body),
        )

    def classify(self, resp: httpx.Response, what: str) -> ConnectorError | None:
        """A ``ValidationException`` body (HTTP 400) is a :class:`PermanentError` carrying Xero's messages."""
        body = self.decode(resp)
        messages = validation_exception(body)
        if messages is None:
            return None
        elements = body.get("Elements") or [None]
        message = [str(body.get("Message") or "validation exception")]
        return self._rejected(what, messages or message, resp.status_code, elements[0])

    def status_hint(self, resp: httpx.Response) -> str:
        """The limit a 429 reports as exceeded (``X-Rate-Limit-Problem``: ``minute``, ``day``, ``concurrent`` ...)."""
        return f" ({resp.headers.get('X-Rate-Limit-Problem', 'unknown')} limit)" if resp.status_code == 429 else ""

    def _ok(self, resp: httpx.Response, what: str) -> Any:
        """The decoded body of a 2xx ``resp``; the taxonomy error of anything else."""
        self.raise_for_status(resp, what)
        return self.decode(resp)

    def _elements(self, resp: httpx.Response, collection: str, what: str) -> list[Any]:
        """The non-empty ``collection`` of a 2xx answer to a write; :class:`UncertainOutcomeError` if unreadable."""
        body = self._ok(resp, what)
        elements = body.get(collection) if isinstance(body, dict) else None
        if not isinstance(elements, list) or not elements:
            raise UncertainOutcomeError(
                f"{what}: HTTP {resp.status_code} with an unreadable body", http_status=resp.status_code
            )
        return elements

    def _rejected(
        self, what: str, messages: list[str], status: int = 400, element: Any = None, client: str = ""
    ) -> PermanentError:
        """Xero's validation ``messages`` as a scrubbed :class:`PermanentError`.

        ``element``: the refused invoice / credit note as Xero echoed it (or one carrying its ``Contact``);
        ``client``: whose document it is (``client <id> (<name>)``), when known. When Xero refuses it
        because its contact is archived ("... has been archived. The contact must be un-archived before
        creating new invoices or credit notes."), the message names that contact (``Name`` and
        ``ContactID`` from the element) and the client, and says what to do: restore it in Xero (Contacts >
        Archived > Restore) or map the client to an active contact, then replay. The connector never
        restores a contact itself: archiving one is an accountant's decision.
        """
        detail = "; ".join(messages) or "HasErrors without messages"
        if any(ARCHIVED_CONTACT in m.lower() for m in messages):
            contact = (element.get("Contact") if isinstance(element, dict) else None) or {}
            name, contact_id = contact.get("Name"), contact.get("ContactID")
            named = f"{name!r} (ContactID {contact_id})" if name else f"with ContactID {contact_id or 'unknown'}"
            whose = f" of {client}" if client else ""
            return PermanentError(
                self.scrub(
                    f"{what}: the Xero contact {named}{whose} is archived, and Xero creates no invoice or credit "
                    "note for an archived contact. Restore it in Xero (Contacts > Archived > Restore) or map "
                    f"the client to an active contact, then replay. Xero said: {detail}"
                ),
                http_status=status,
            )
        return PermanentError(self.scrub(f"{what}: Xero validation failed: {detail}"), http_status=status)

    # ------------------------------------------------------------------ Connector API
    async def check(self) -> None:
        """``GET {api_url}/connections`` (identity spec ``getConnections``): the cheapest authenticated call.

        Raises :class:`UnknownAccountError` (a :class:`ConfigError`) ``unknown organisation <id>`` when
        ``xero_tenant_id`` is not among the connected organisations, :class:`AuthError` when the token
        is refused, :class:`MissingScopeError` when the granted scopes lack one of
        :data:`REQUIRED_SCOPES`, plus the transport/status errors of every call.
        """
        url = self.url(self.settings.api_url, "/connections")
        body = self._ok(await self.request("GET", url, tenant_header=False), "Xero GET /connections")
        tenants = [str(c.get("tenantId")) for c in body if isinstance(c, dict)] if isinstance(body, list) else []
        if self.settings.xero_tenant_id not in tenants:
            raise UnknownAccountError(
                f"unknown organisation {self.settings.xero_tenant_id}: "
                f"this connection can reach {', '.join(tenants) or 'no organisation'}"
            )
        auth = self.auth
        tokens = auth.manager.tokens if isinstance(auth, OAuth2Auth) else None
        granted = tokens.scopes if tokens is not None else frozenset()
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
        :meth:`find` and returned with ``created=False`` when it is ours (marker and total), else
        :class:`NumberConflictError` naming both totals. Other validation errors raise
        :class:`PermanentError` (``http_status=400``) carrying Xero's messages.
        """
        invoice = await self._with_contact(invoice)
        key = idempotency_key(invoice, "create")
        body = {"Invoices": [invoice_to_xero(invoice, self.settings)]}
        resp = await self._call("PUT", "Invoices", body=body, key=key, params=CREATE_PARAMS)
        if resp.status_code == 400 and is_duplicate_number(validation_exception(self.decode(resp)) or []):
            return await self._existing(invoice, key)
        elements = self._elements(resp, "Invoices", f"Xero PUT Invoices {invoice.invoice_number}")
        return await self._element_result(invoice, elements[0], key, batch=False)

    async def _element_result(self, invoice: Invoice, element: Any, key: str, *, batch: bool) -> DeliveryResult:
        """The :class:`DeliveryResult` of one response element of a ``PUT Invoices`` (raises the element's error)."""
        what = f"Xero PUT Invoices {invoice.invoice_number}"
        if not isinstance(element, dict):
            raise UncertainOutcomeError(f"{what}: unreadable response element")
        messages = validation_messages(element)
        if element.get("HasErrors") or messages:
            if is_duplicate_number(messages):
                return await self._existing(invoice, key)
            client = f"client {invoice.client_id} ({invoice.client_name})"
            raise self._rejected(what, messages, element=element, client=client)
        if not element.get("InvoiceID"):
            raise UncertainOutcomeError(f"{what}: response element has no InvoiceID")
        if str(element.get("InvoiceNumber") or invoice.invoice_number) != invoice.invoice_number:
            raise UncertainOutcomeError(
                f"{what}: response element is for {element.get('InvoiceNumber')}; reconcile with find()"
            )
        totals = {"SubTotal": str(element.get("SubTotal")), "TotalTax": str(element.get("TotalTax"))}
        extra = {**totals, "batch": True} if batch else totals
        return self._result(invoice, invoice_from_xero(element), key, created=True, **extra)

    async def _existing(self, invoice: Invoice, key: str) -> DeliveryResult:
        """The invoice Xero already has under our number, ``created=False``, once proven ours.

        :class:`NumberConflictError` (:func:`connectors.sdk.lifecycle.check_ours`) when it does not carry
        our marker in ``Reference`` or has another total; :class:`RetryableError` when not found yet.
        """
        found = await self.find(invoice.invoice_number)
        if found is None:
            raise RetryableError(
                f"Xero reported invoice number {invoice.invoice_number} as taken"
                " but GET Invoices does not return it yet"
            )
        check_ours(invoice, found, what=f"Xero invoice {found.status or 'of unknown status'}")
        return self._result(invoice, found, key, created=False, duplicate=True)

    def _result(
        self, invoice: Invoice, held: ExternalInvoice, key: str, *, created: bool, **extra: Any
    ) -> DeliveryResult:
        """The :class:`DeliveryResult` of the invoice Xero ``held``; ``details`` hold its ``Total`` (decimal string),
        ``Status``, ``total_matches`` (a mismatch is logged), ``idempotency_key`` and ``extra``."""
        matches = self.total_matches(invoice, held.total)
        details = {"Total": str(held.total), "Status": held.status, "total_matches": matches, "idempotency_key": key}
        number = held.number or invoice.invoice_number
        return DeliveryResult(invoice.invoice_key, held.external_id, number, created, details={**details, **extra})

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """Look up our invoice number: ``GET /api.xro/2.0/Invoices?InvoiceNumbers=<n>`` (spec ``getInvoices``).

        Numbers containing a comma (the list separator) use ``where=InvoiceNumber=="<n>"`` instead.
        Returns the exact match as :class:`ExternalInvoice` (``total`` and ``paid`` = ``AmountPaid`` as
        Decimal, ``status``, ``marker`` read from ``Reference``) or ``None``.
        """
        if "," in invoice_number:
            params = {"where": where_equals("InvoiceNumber", invoice_number), "summaryOnly": "true"}
        else:
            params = {"InvoiceNumbers": invoice_number, "summaryOnly": "true"}
        what = f"Xero GET Invoices?InvoiceNumbers={invoice_number}"
        element = await self._find_element("Invoice", invoice_number, params, what)
        return invoice_from_xero(element) if element is not None else None

    async def find_credit_note(self, number: str) -> dict[str, Any] | None:
        """``GET /api.xro/2.0/CreditNotes?where=CreditNoteNumber=="<n>"`` (spec ``getCreditNotes``): match or None."""
        params = {"where": where_equals("CreditNoteNumber", number)}
        return await self._find_element("CreditNote", number, params, f"Xero GET CreditNotes {number}")

    async def _find_element(
        self, kind: str, number: str, params: Mapping[str, str], what: str
    ) -> dict[str, Any] | None:
        """The element of ``GET /{kind}s`` whose ``{kind}Number`` is exactly ``number`` and that has a ``{kind}ID``."""
        body = self._ok(await self._call("GET", f"{kind}s", params=params), what)
        if not isinstance(body, dict):
            raise RetryableError(f"{what}: unreadable body")
        for element in body.get(f"{kind}s") or []:
            if (
                isinstance(element, dict)
                and str(element.get(f"{kind}Number", "")) == number
                and element.get(f"{kind}ID")
            ):
                return element
        return None

    # ------------------------------------------------------------------ lifecycle (connectors.sdk.lifecycle)
    async def retire(self, previous: ExternalInvoice, *, key: str, reason: str, issued: date) -> Retirement:
        """Take ``previous`` (an invoice we delivered) out of the customer's balance, by Xero's rules.

        Xero's rules: a ``DRAFT`` or ``SUBMITTED`` ("awaiting approval") invoice can be deleted, an
        ``AUTHORISED`` ("awaiting payment") one only voided, and a paid one neither until its payment is
        removed (Xero's "Delete or void an invoice" help, as quoted at
        https://help.nostressaccounting.com/invoices-quotes/delete-or-void-an-invoice; the API's refusal
        is "This document cannot be edited as it has a payment or credit note allocated to it";
        status changes by ``POST /Invoices/{InvoiceID}``, spec ``updateInvoice``). After re-reading the
        invoice (``GET /Invoices/{InvoiceID}``, spec ``getInvoice``):

        * ``DRAFT`` / ``SUBMITTED``: deleted (``POST /Invoices/{InvoiceID}`` ``{"Status": "DELETED"}``,
          spec ``updateInvoice``) -> ``deleted``;
        * ``AUTHORISED`` with ``AmountPaid`` and ``AmountCredited`` 0: voided (same call,
          ``"Status": "VOIDED"``) -> ``voided``;
        * ``AUTHORISED`` with a payment or allocated credit, or ``PAID``: an ``ACCRECCREDIT`` credit note
          for its whole total (``PUT /CreditNotes``, spec ``createCreditNotes``; lines as Xero holds them,
          :func:`~connectors.xero.mapper.credit_note_for`), numbered
          :func:`~connectors.sdk.lifecycle.credit_note_number` (``<number>-CN``), not allocated, so its
          ``RemainingCredit`` stays on the customer's account -> ``credited`` (``paid`` = ``AmountPaid``
          when there was a payment);
        * ``VOIDED`` / ``DELETED`` / not found, or an approved invoice whose credit note already exists
          (looked up by number, ``GET /CreditNotes?where=CreditNoteNumber==...``) -> ``none``.

        A paid invoice is never deleted or voided. Each write has its own ``Idempotency-Key``
        (``<tenant>:xero:<key>:void|delete|credit``); a void refused because a payment arrived since
        the read is re-read and credited instead. ``issued`` is the credit note's date, ``reason`` goes
        into its ``Reference``. Raises :class:`NumberConflictError` when a credit note under our number
        exists that is not ours (another marker, or another total), plus the errors of every call.
        """
        current = await self._current(previous)
        if current is None:
            return Retirement("none", previous.number)
        number = str(current.get("InvoiceNumber") or previous.number)
        status = str(current.get("Status") or "").upper()
        if status in ("VOIDED", "DELETED"):
            return Retirement("none", number, status)
        if status in ("DRAFT", "SUBMITTED"):
            await self._set_status(current, "DELETED", key)
            return Retirement("deleted", number, status)
        note = await self._our_credit_note(current)
        if note is not None:
            return Retirement("none", number, status, details={"credited_by": str(note.get("CreditNoteNumber"))})
        if status == "AUTHORISED" and not self._has_money(current):
            try:
                await self._set_status(current, "VOIDED", key)
                return Retirement("voided", number, status)
            except PermanentError:
                current = await self._current(previous)  # a payment may have arrived since the read
                if current is None or not self._has_money(current):
                    raise
                status = str(current.get("Status") or "").upper()
        note = await self._credit(current, key=key, reason=reason, issued=issued)
        paid = amount_or_none(current.get("AmountPaid")) or Decimal(0)
        return Retirement(
            "credited",
            number,
            status,
            paid=paid if paid > 0 else None,
            credit_note_id=str(note["CreditNoteID"]),
            credit_note_number=str(note.get("CreditNoteNumber") or credit_note_number(number)),
            credit_note_total=amount_or_none(note.get("Total")),
        )

    @staticmethod
    def _has_money(invoice: Mapping[str, Any]) -> bool:
        """Whether a payment or an allocated credit sits on ``invoice`` (``AmountPaid``/``AmountCredited`` > 0)."""
        return any((amount_or_none(invoice.get(f)) or Decimal(0)) != 0 for f in ("AmountPaid", "AmountCredited"))

    async def _current(self, previous: ExternalInvoice) -> dict[str, Any] | None:
        """``previous`` as Xero holds it now, with its lines (``GET /Invoices/{InvoiceID}``), ``None`` when absent.

        Without an ``external_id`` it is looked up by number (:meth:`find`) first.
        """
        ident = previous.external_id
        if not ident:
            found = await self.find(previous.number)
            if found is None:
                return None
            ident = found.external_id
        what = f"Xero GET Invoices/{ident}"
        resp = await self._call("GET", f"Invoices/{ident}", params={"unitdp": "4"})
        if resp.status_code == 404:
            return None
        body = self._ok(resp, what)
        invoices = body.get("Invoices") if isinstance(body, dict) else None
        if not isinstance(invoices, list) or not invoices or not isinstance(invoices[0], dict):
            raise RetryableError(f"{what}: unreadable body", http_status=resp.status_code)
        return invoices[0]

    async def _set_status(self, current: Mapping[str, Any], status: str, key: str) -> None:
        """``POST /Invoices/{InvoiceID}`` with ``{"InvoiceID", "Status": status}`` (``DELETED`` or ``VOIDED``)."""
        ident = str(current["InvoiceID"])
        operation = "delete" if status == "DELETED" else "void"
        self._ok(
            await self._call(
                "POST",
                f"Invoices/{ident}",
                body={"Invoices": [{"InvoiceID": ident, "Status": status}]},
                key=_retire_key(self.tenant, key, operation),
                params={"unitdp": "4"},
            ),
            f"Xero POST Invoices/{ident} ({operation} {current.get('InvoiceNumber')})",
        )

    async def _our_credit_note(self, current: Mapping[str, Any]) -> dict[str, Any] | None:
        """The live credit note ``<number>-CN`` that retires ``current``; ``None`` when there is none.

        A credit note under that number that is ``VOIDED``/``DELETED`` counts as none. One that is not
        ours (it carries another ownership marker than the invoice's, or another total) raises
        :class:`NumberConflictError`: it is never adopted.
        """
        number = credit_note_number(str(current.get("InvoiceNumber") or ""))
        note = await self.find_credit_note(number)
        if note is None or str(note.get("Status") or "").upper() in ("VOIDED", "DELETED"):
            return None
        owner = read_marker(str(current.get("Reference") or ""))
        theirs = amount_or_none(note.get("Total"))
        ours = amount_or_none(current.get("Total")) or Decimal(0)
        found = read_marker(str(note.get("Reference") or ""))
        if found != owner or theirs != ours:
            raise credit_note_conflict(
                "Xero",
                number,
                note_id=note.get("CreditNoteID"),
                invoice=str(current.get("InvoiceNumber")),
                ours=ours,
                theirs=theirs,
                why=f"its reference {note.get('Reference')!r} carries the marker {found!r}, ours is {owner!r}",
            )
        return note

    async def _credit(self, current: dict[str, Any], *, key: str, reason: str, issued: date) -> dict[str, Any]:
        """``PUT /CreditNotes`` of the credit note cancelling ``current`` in full; its element (with ``CreditNoteID``).

        ``Credit Note # must be unique.`` (created meanwhile) is looked up and checked like an existing one.
        """
        number = credit_note_number(str(current.get("InvoiceNumber") or ""))
        what = f"Xero PUT CreditNotes {number}"
        element = credit_note_for(current, number, issued=issued.isoformat(), reason=reason)
        resp = await self._call(
            "PUT",
            "CreditNotes",
            body={"CreditNotes": [element]},
            key=_retire_key(self.tenant, key, "credit"),
            params=CREATE_PARAMS,
        )
        first = self._elements(resp, "CreditNotes", what)[0]
        note = first if isinstance(first, dict) else {}
        messages = validation_messages(note)
        if note.get("HasErrors") or messages:
            if not any("must be unique" in m.lower() for m in messages):
                # the invoice as read back carries the whole contact (Name too); the echoed note only its id
                raise self._rejected(what, messages, element={"Contact": current.get("Contact") or note.get("Contact")})
            found = await self._our_credit_note(current)
            if found is None:
                raise RetryableError(f"{what}: number reported taken but not found yet")
            note = found
        if not note.get("CreditNoteID"):
            raise UncertainOutcomeError(f"{what}: response element has no CreditNoteID", http_status=resp.status_code)
        return note

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
        return await self.deliver_in_batches(invoices, self.capabilities.batch_size, self._put_chunk)

    async def _put_chunk(self, chunk: list[Invoice]) -> list[BatchItem]:
        """One ``PUT Invoices`` for ``chunk``; its items in chunk order (a contact error fails only its invoice)."""
        items: dict[int, BatchItem] = {}
        sendable: list[tuple[int, Invoice, dict[str, Any]]] = []
        for index, invoice in enumerate(chunk):
            try:
                resolved = await self._with_contact(invoice)
                sendable.append((index, resolved, invoice_to_xero(resolved, self.settings)))
            except PermanentError as exc:
                items[index] = BatchItem(invoice.invoice_key, error=exc)
        if sendable:
            if len(sendable) == 1:
                key = idempotency_key(sendable[0][1], "create")
            else:
                digest = hashlib.sha256("\n".join(inv.invoice_key for _, inv, _ in sendable).encode()).hexdigest()[:40]
                key = _fitted_key(f"{self.tenant}:xero:batch:{digest}:create", "batch")
            numbers = ", ".join(inv.invoice_number for _, inv, _ in sendable[:3]) + (
                " ..." if len(sendable) > 3 else ""
            )
            what = f"Xero PUT Invoices ({len(sendable)}: {numbers})"
            body = {"Invoices": [element for _, _, element in sendable]}
            resp = await self._call("PUT", "Invoices", body=body, key=key, params=CREATE_PARAMS)
            elements = self._elements(resp, "Invoices", what)
            if len(elements) != len(sendable):
                raise UncertainOutcomeError(
                    f"{what}: HTTP {resp.status_code} without one result per invoice", http_status=resp.status_code
                )
            for (index, invoice, _), element in zip(sendable, elements, strict=True):
                try:
                    result = await self._element_result(invoice, element, key, batch=True)
                    items[index] = BatchItem(invoice.invoice_key, result=result)
                except ConnectorError as exc:
                    items[index] = BatchItem(invoice.invoice_key, error=exc)
        return [items[index] for index in range(len(chunk))]

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
        """``GET /api.xro/2.0/Contacts`` (``where`` on TaxNumber / EmailAddress, ``searchTerm`` for names).

        Returns the ``ContactID`` of the first ACTIVE contact whose field equals ``value`` exactly
        (:func:`connectors.sdk.contacts.same_value`), else ``None``.
        """
        xero_field = {"tax_number": "TaxNumber", "email": "EmailAddress", "name": "Name"}[field]
        params = {"searchTerm": value} if field == "name" else {"where": where_equals(xero_field, value)}
        body = self._ok(await self._call("GET", "Contacts", params=params), f"Xero GET Contacts by {xero_field}")
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
        """``PUT /api.xro/2.0/Contacts`` with Name, EmailAddress, TaxNumber; a name already taken is looked up.

        Raises :class:`PermanentError` naming the client when Xero refuses the contact.
        """
        element: dict[str, Any] = {"Name": query.name}
        if query.email:
            element["EmailAddress"] = query.email
        if query.tax_number:
            element["TaxNumber"] = query.tax_number
        key = _fitted_key(f"{self.tenant}:xero:contact:{query.client_id}:create", "contact")
        resp = await self._call(
            "PUT", "Contacts", body={"Contacts": [element]}, key=key, params={"summarizeErrors": "false"}
        )
        body = self._ok(resp, f"Xero PUT Contacts for client {query.client_id}")
        contacts = body.get("Contacts") if isinstance(body, dict) else None
        first = contacts[0] if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict) else {}
        messages = validation_messages(first)
        if any("already assigned" in m for m in messages) and (found := await self.find_contact("name", query.name)):
            return found
        if messages or not first.get("ContactID"):
            raise PermanentError(
                self.scrub(
                    f"Xero could not create the contact of client {query.client_id} ({query.name}): "
                    f"{'; '.join(messages) or 'no ContactID in the response'}"
                ),
                http_status=400,
            )
        return str(first["ContactID"])

    # ------------------------------------------------------------------ authorization (broker connectors authorize)
    def oauth2_config(self) -> OAuth2Config:
        """Authorization-code flow of Xero (``login.xero.com`` authorize, ``identity.xero.com`` token, PKCE; a
        PKCE-only app has no client secret)."""
        return self.authorization_config(
            self.token_url, AUTHORIZE_SCOPES, issuer=self.settings.identity_url, secret_required=False
        )


__all__ = ["DUPLICATE_NUMBER_MESSAGE", "XeroConnector", "XeroSettings", "idempotency_key"]
