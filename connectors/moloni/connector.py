"""Moloni (Portugal) REST API v1 connector — an AT-certified invoicing system (certificate 2860).

Creates a sales invoice (*fatura*) in two retry-safe steps:

1. **draft** — ``POST {api_url}/v1/invoices/insert/?access_token=…`` with ``status=0`` and our
   invoice number in ``your_reference`` (Moloni numbers documents itself from the AT-registered
   series ``document_set_id``, so our key can only travel in a reference field);
2. **close** — ``POST …/v1/invoices/update/`` with ``document_id`` and ``status=1`` (and
   ``send_email[]`` when the tenant wants the customer e-mailed). This is exactly what the official
   WooCommerce plugin does (``moloni-pt/woocommerce`` ``src/Controllers/Documents.php``: insert as
   draft, compare totals, then ``<type>/update`` with ``status = 1`` and ``send_email``); closing is
   what makes the document legally issued and communicated to the AT. A closed invoice can no
   longer be updated or deleted ("Não é possível actualizar uma fatura que já se encontre no estado
   fechado", https://moloni.pt/dev/documents/invoices/update).

Moloni has **no idempotency key** (none documented), so every :meth:`MoloniConnector.deliver`
starts with a lookup — ``invoices/getAll`` filtered by ``your_reference`` — and resumes from what
it finds: nothing -> insert; a draft -> check totals and close it; a closed invoice -> done
(``created=False``). Before closing, the draft is read back (``invoices/getOne``) and its
``net_value`` (the amount payable) must equal our total to the cent, else nothing is issued. An
invoice to post as a draft (``invoice.draft``, the tenant's ``approval: draft``) stops there:
``status=0``, for the company to close (issue) in Moloni, never e-mailed.

**Ownership.** Every invoice we insert carries our marker (``broker:<invoice key>``) on the last
line of ``notes`` (after the legal notes; printed, kept, returned by ``invoices/getOne``). A document
found under our ``your_reference`` is adopted (resumed, closed or reported) only when it carries our
marker and our total (:func:`connectors.sdk.lifecycle.check_ours`), else
:class:`~connectors.sdk.errors.NumberConflictError` and nothing is touched.

**Lifecycle** (:meth:`MoloniConnector.retire`, behind ``amend`` and ``cancel``): a draft is deleted; a
closed invoice — paid or not; Moloni, certified by the AT, never changes or deletes a closed
document — is annulled by a closed credit note for its whole total that names it in
``associated_documents`` (``creditNotes/insert``), ``your_reference`` ``<our number>-CN``, looked up
before it is inserted.

Auth (https://moloni.pt/dev/autenticacao; plugin ``src/Curl.php``): OAuth2 at
``{api_url}/v1/grant/`` called with query parameters — ``grant_type=refresh_token`` (a token from
``broker connectors authorize moloni`` or ``refresh_token_env``) or ``grant_type=password``
(``username`` + ``password_env``, the plugin's native flow); the access token travels as the
``access_token`` query parameter of every call (the SDK's log filter redacts it from httpx's
request lines). Tokens live in the connector's token store and are refreshed single-flight
(:class:`connectors.sdk.oauth2.OAuth2TokenManager`); a 401 triggers exactly one refresh.

Limits: none published. The plugin retries HTTP 429 up to 5 times with a 2 s pause; we map 429 to
:class:`RateLimitedError` with ``Retry-After`` when present, else 2 s.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar, cast

import httpx
from pydantic import SecretStr

from connectors.moloni.mapper import (
    LIMITS,
    credit_note_to_moloni,
    customer_to_moloni,
    document_label,
    form_body,
    invoice_from_moloni,
    invoice_to_moloni,
    payload_totals,
    reference_of,
    reverse_links,
    validation_errors,
)
from connectors.moloni.settings import MoloniSettings
from connectors.sdk.contacts import ContactQuery, ContactResolver, LookupField, same_value
from connectors.sdk.errors import (
    AuthError,
    ConfigError,
    ConnectorError,
    PermanentError,
    ReauthRequiredError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.http import Auth, HttpConnector, OAuth2Auth
from connectors.sdk.interface import Capabilities, DeliveryResult
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import Retirement, check_ours, credit_note_conflict, credit_note_number, marker
from connectors.sdk.oauth2 import OAuth2Config, OAuth2TokenManager, TokenSet, default_token_store, token_key

log = logging.getLogger("connectors.moloni")

#: getAll page size (Moloni: default and maximum 50).
PAGE_SIZE = 50


class MoloniValidationError(PermanentError):
    """Moloni refused the data; ``moloni_errors`` holds its descriptions (``"<field>: <text>"``)."""

    def __init__(self, message: str, moloni_errors: list[str], *, http_status: int | None = None) -> None:
        super().__init__(message, http_status=http_status)
        self.moloni_errors = moloni_errors


class MoloniConnector(HttpConnector):
    """Moloni connector for one company (``company_id``) of one broker tenant.

    ``MoloniConnector(settings, *, tenant, token_store=None)``. Errors: :class:`RateLimitedError`
    (429), :class:`RetryableError` (5xx, not sent, read of a lookup lost), :class:`UncertainOutcomeError`
    (an insert/update sent without an answer — the next :meth:`deliver` looks up before acting),
    :class:`AuthError` (grant refused, 401 after one refresh), :class:`PermanentError` (Moloni
    validation errors, field limits, a 0 % line without exemption reason, a total Moloni would
    compute differently), :class:`NumberConflictError` (a document under our reference that is not
    ours), :class:`ConfigError` / :class:`UnknownAccountError` (settings, missing
    secret variable, company not reachable).
    """

    name = "moloni"
    label = "Moloni"
    version = "0.1.0"
    #: No idempotency key, no batch endpoint, no published rate limit; OAuth2 with rotating refresh tokens.
    # Moloni numbers documents from the AT series; ours goes in your_reference, and "<ours>-CN" in the credit
    # note's: 50 characters (mapper.LIMITS, conservative: Moloni publishes no column sizes)
    capabilities = Capabilities(
        native_idempotency=False,
        lookup_by_reference=True,
        batch_size=1,
        oauth2=True,
        amendments=True,
        invoice_number_max=LIMITS["your_reference"],
        credit_note_number_max=LIMITS["your_reference"],
        # status 0 = draft (rascunho), 1 = closed; only a draft can be deleted (invoices/delete):
        # https://moloni.pt/dev/documents/invoices/insert, .../invoices/delete; billing-apis.md § 6
        drafts=True,
    )
    Settings = MoloniSettings
    settings: MoloniSettings
    #: Pause after a 429 without ``Retry-After`` — the official plugin's ``sleep(2)`` between retries.
    default_retry_after = 2.0
    #: Every 5xx is retryable, writes included: :meth:`deliver` looks up before it writes anything.
    status_overrides: ClassVar[Mapping[int, type[ConnectorError] | None]] = {500: RetryableError, 504: RetryableError}

    def __repr__(self) -> str:
        return f"MoloniConnector(tenant={self.tenant!r}, company_id={self.settings.company_id})"

    def _url(self, action: str) -> str:
        return f"{self.settings.api_url.rstrip('/')}/{self.settings.api_version}/{action.strip('/')}/"

    # ------------------------------------------------------------------ OAuth2
    def make_auth(self) -> Auth:
        """The access token as the ``access_token`` query parameter (as Moloni documents and the plugin sends it)."""
        return OAuth2Auth(self._token_manager, header=None, query="access_token")

    def token_connection(self) -> str:
        """The Moloni user the tokens belong to (they reach every company of that user): the refresh token's
        variable (``refresh_token_env``), else ``user-<username>`` (the password grant)."""
        return self.settings.refresh_token_env or f"user-{self.settings.username}"

    def _store_key(self) -> str:
        return self.token_store_key(self.settings.api_url)

    def _token_manager(self) -> OAuth2TokenManager:
        if self.token_store is None:
            self.token_store = default_token_store()
        seed = (lambda: self.secret("refresh_token_env")) if self.settings.refresh_token_env else None
        legacy = token_key("moloni", self.tenant, issuer=self.settings.api_url, client_id=self.settings.client_id)
        return OAuth2TokenManager(
            key=self._store_key(), store=self.token_store, refresh=self._grant, seed=seed, legacy_keys=(legacy,)
        )

    async def _grant(self, refresh_token: SecretStr | None) -> TokenSet:
        """``GET {api_url}/v1/grant/`` with ``grant_type=refresh_token`` (``password`` without a refresh token).

        Parameters go in the query string, as Moloni documents them and the plugin sends them.
        400/401 -> :class:`AuthError` with Moloni's ``error`` code (never a secret; ``invalid_grant`` of the
        refresh grant: :class:`ReauthRequiredError`); 429/5xx/transport -> :class:`RateLimitedError` /
        :class:`RetryableError`.
        """
        s = self.settings
        params = {"client_id": s.client_id, "client_secret": self.secret("client_secret_env").get_secret_value()}
        if refresh_token is not None:
            params.update(grant_type="refresh_token", refresh_token=refresh_token.get_secret_value())
            hint = (
                f"check {s.client_secret_env} and {s.refresh_token_env} (or run `broker connectors authorize moloni`)"
            )
        else:
            password = self.secret("password_env").get_secret_value()
            params.update(grant_type="password", username=s.username or "", password=password)
            hint = f"check {s.client_secret_env}, username {s.username} and {s.password_env}"
        what = f"Moloni grant ({params['grant_type']})"
        resp = await self.send("GET", self._url("grant"), idempotent=True, params=params)
        if resp.status_code == 429 or resp.status_code >= 500:
            self.raise_for_status(resp, what)
        body = self.decode(resp)
        if resp.status_code != 200 or not isinstance(body, dict) or body.get("error") or not body.get("access_token"):
            code = str(body.get("error") or "no error code") if isinstance(body, dict) else "unreadable answer"
            description = str(body.get("error_description") or "") if isinstance(body, dict) else ""
            refused = f"{what} refused (HTTP {resp.status_code} {code}: {description})"
            dead = refresh_token is not None and code == "invalid_grant"  # the refresh token itself is refused
            error_cls = ReauthRequiredError if dead else AuthError
            raise error_cls(self.scrub(f"{refused} for client_id {s.client_id}: {hint}"), http_status=resp.status_code)
        return TokenSet.from_token_response(body, previous_refresh=refresh_token)

    def oauth2_config(self) -> OAuth2Config:
        """Authorization-code flow (``{api_url}/v1/authorize/`` -> ``/v1/grant/``); Moloni has no scopes and no PKCE."""
        try:
            secret: SecretStr | None = self.secret("client_secret_env")
        except ConfigError:
            secret = None
        return OAuth2Config(
            authorize_url=self.settings.authorize_url,
            token_url=self._url("grant"),
            client_id=self.settings.client_id,
            client_secret=secret,
            scopes=(),
            store_key=self._store_key(),
            auth_method="post",
            use_pkce=False,
        )

    # ------------------------------------------------------------------ API calls
    def classify(self, resp: httpx.Response, what: str) -> ConnectorError | None:
        """Moloni's validation answer (:func:`~connectors.moloni.mapper.validation_errors`, with any
        status below 500 but 403/429) -> :class:`MoloniValidationError` carrying its descriptions."""
        if resp.status_code >= 500 or resp.status_code in (403, 429):
            return None
        messages = validation_errors(self.decode(resp))
        if not messages:
            return None
        return MoloniValidationError(
            self.scrub(f"{what}: Moloni refused: {'; '.join(messages)}"),
            messages,
            http_status=resp.status_code if resp.status_code >= 400 else None,
        )

    async def _api(self, action: str, fields: Mapping[str, Any], *, idempotent: bool, what: str | None = None) -> Any:
        """``POST {api_url}/v1/<action>/?access_token=…`` with ``fields`` form-encoded; the parsed JSON answer.

        A 401 refreshes the access token once and repeats the call; a second 401 -> :class:`AuthError`.
        A validation answer (a list of ``{code, field, description}``, HTTP 200 in our emulator) ->
        :class:`MoloniValidationError`; an unreadable body -> :class:`RetryableError` for a read,
        else :class:`UncertainOutcomeError`.
        """
        what = what or f"Moloni {action}"
        resp = await self.request(
            "POST",
            self._url(action),
            idempotent=idempotent,
            content=form_body(fields).encode("utf-8"),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        )
        self.raise_for_status(resp, what)
        refused = self.classify(resp, what)
        if refused is not None:
            raise refused
        parsed = self.decode(resp)
        if parsed is None:
            unreadable = RetryableError if idempotent else UncertainOutcomeError
            raise unreadable(f"{what}: HTTP {resp.status_code} with an unreadable body", http_status=resp.status_code)
        return parsed

    def _company(self, **fields: Any) -> dict[str, Any]:
        """``fields`` with this tenant's ``company_id`` (every Moloni call names the company)."""
        return {"company_id": self.settings.company_id, **fields}

    # ------------------------------------------------------------------ documents
    async def _lookup(self, invoice_number: str, resource: str = "invoices") -> dict[str, Any] | None:
        """The document of ``resource`` (``invoices`` / ``creditNotes``) whose ``your_reference`` is
        ``invoice_number`` (``<resource>/getAll``, all pages); the oldest when several. A ``getAll`` row
        has no ``notes``: read the document with :meth:`_get_one` for its marker."""
        reference = reference_of(invoice_number)
        matches: list[dict[str, Any]] = []
        offset = 0
        what = f"Moloni {resource}/getAll your_reference={reference}"
        while True:
            fields = self._company(your_reference=reference, qty=PAGE_SIZE, offset=offset)
            page = await self._api(f"{resource}/getAll", fields, idempotent=True, what=what)
            if not isinstance(page, list):
                raise RetryableError(f"Moloni {resource}/getAll: unexpected answer {type(page).__name__}")
            matches += [
                d
                for d in page
                if isinstance(d, dict) and str(d.get("your_reference", "")) == reference and d.get("document_id")
            ]
            if len(page) < PAGE_SIZE:
                break
            offset += PAGE_SIZE
        if len(matches) > 1:
            log.warning(
                "moloni tenant=%s: %d %s carry your_reference %s; using the oldest",
                self.tenant,
                len(matches),
                resource,
                reference,
            )
        return min(matches, key=lambda d: int(d["document_id"])) if matches else None

    async def _get_one(self, document_id: int, resource: str = "invoices") -> dict[str, Any] | None:
        """``<resource>/getOne`` by ``document_id``: the detailed document (products, ``notes``,
        ``reconciled_value``, ``associated_documents``, ``reverse_associated_documents``), ``None`` when absent."""
        what = f"Moloni {resource}/getOne {document_id}"
        fields = self._company(document_id=document_id)
        doc = await self._api(f"{resource}/getOne", fields, idempotent=True, what=what)
        return doc if isinstance(doc, dict) and doc.get("document_id") else None

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create (draft), verify and close ``invoice``; resume from whatever a previous attempt left.

        Returns ``DeliveryResult(external_id=document_id, external_number="FT <series>/<n>"`` (empty
        while a draft), ``created`` = inserted by this call, ``details``: ``net_value``, ``status``,
        ``total_matches``, ``steps`` (what this call did), ``email``).
        """
        what = f"Moloni invoice {invoice.invoice_number}"
        customer_id = await self._customer_id(invoice)
        payload = invoice_to_moloni(invoice, self.settings, customer_id=customer_id)
        method = self.settings.rounding_method
        expected = payload_totals(payload, method).net_value
        if expected != invoice.total:
            raise PermanentError(
                f"{what}: Moloni would compute a total of {expected} (método de cálculo '{method}') "
                f"but ours is {invoice.total}; nothing was sent. Set the company's método de cálculo to "
                "'Arredondamento à linha' and billing.settings.rounding_method: line"
            )
        steps: list[str] = []
        existing = await self._lookup(invoice.invoice_number)
        created = False
        if existing is None:
            answer = await self._api("invoices/insert", payload, idempotent=False, what=f"{what}: invoices/insert")
            if not isinstance(answer, dict) or not answer.get("document_id"):
                raise UncertainOutcomeError(
                    f"{what}: invoices/insert answered without a document_id; reconcile with find()"
                )
            document_id = int(answer["document_id"])
            created = True
            steps.append("inserted draft")
        else:
            document_id = int(existing["document_id"])
            steps.append("found " + ("closed invoice" if str(existing.get("status")) == "1" else "draft"))
        doc = await self._get_one(document_id)
        if doc is None:
            raise RetryableError(f"{what}: document {document_id} not returned by invoices/getOne yet")
        if not created:
            # found under our number: ours only with our marker and our total (never adopted, closed or changed)
            check_ours(invoice, invoice_from_moloni(doc), what=f"Moloni invoice found by your_reference, {steps[0]}")
        total = Decimal(str(doc.get("net_value")))
        email_note = None
        if str(doc.get("status")) != "1":
            if total != invoice.total:
                left = "the existing draft was left unissued"
                if created:
                    fields = self._company(document_id=document_id)
                    await self._api(
                        "invoices/delete", fields, idempotent=False, what=f"{what}: delete (total mismatch)"
                    )
                    left = "the draft was deleted and nothing was issued"
                raise PermanentError(
                    f"{what}: Moloni computed a total of {total} for draft {document_id} "
                    f"but ours is {invoice.total}; {left}"
                )
            if self.settings.invoice_status == "closed" and not invoice.draft:
                email_note = await self._close(invoice, doc)
                steps.append("closed")
                doc = await self._get_one(document_id) or doc
        result_status = "closed" if str(doc.get("status")) == "1" else "draft"
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=str(document_id),
            external_number=document_label(doc),
            created=created,
            details={
                "net_value": str(doc.get("net_value")),
                "taxes_value": str(doc.get("taxes_value")),
                "status": result_status,
                "total_matches": Decimal(str(doc.get("net_value"))) == invoice.total,
                "your_reference": reference_of(invoice.invoice_number),
                "steps": steps,
                "email": email_note,
            },
        )

    async def _close(self, invoice: Invoice, doc: Mapping[str, Any]) -> str | None:
        """``invoices/update`` with ``status=1`` (+ ``send_email``); an already-closed invoice counts as done."""
        document_id = int(doc["document_id"])
        fields = self._company(document_id=document_id, status=1)
        note = None
        if self.settings.send_email:
            email = await self._email_for(invoice, int(doc.get("customer_id") or 0))
            if email:
                name = str(doc.get("entity_name") or invoice.client_name)
                fields["send_email"] = [{"email": email, "name": name, "msg": self.settings.email_message}]
                note = f"sent to {email}"
            else:
                note = "skipped: no e-mail address for the customer"
                log.warning(
                    "moloni tenant=%s invoice=%s: send_email is on but the customer has no e-mail address",
                    self.tenant,
                    invoice.invoice_number,
                )
        try:
            await self._api(
                "invoices/update", fields, idempotent=False, what=f"Moloni invoice {invoice.invoice_number}: close"
            )
        except PermanentError:
            again = await self._get_one(document_id)
            if again is not None and str(again.get("status")) == "1":
                return note  # closed meanwhile (an earlier attempt whose answer was lost)
            raise
        return note

    async def _email_for(self, invoice: Invoice, customer_id: int) -> str | None:
        client = self.clients.get(invoice.client_id)
        if client is not None and getattr(client, "email", None):
            return str(client.email)
        if customer_id:
            customer = await self._api("customers/getOne", self._company(customer_id=customer_id), idempotent=True)
            if isinstance(customer, dict) and customer.get("email"):
                return str(customer["email"])
        return None

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """The Moloni invoice carrying ``your_reference == invoice_number``, when its delivery is complete.

        Read with ``invoices/getOne`` (a ``getAll`` row has no ``notes``), so the result carries our
        ``marker`` (from ``notes``), Moloni's ``net_value`` as ``total`` and ``paid`` (receipts
        reconciled against it, :meth:`_settlement`). With ``invoice_status: closed`` a draft (a
        delivery interrupted before closing) is reported as ``None``, so a caller that reconciles with
        :meth:`find` and then calls :meth:`deliver` again resumes the flow — the draft is verified and
        closed — instead of stopping at a document with no fiscal value. With ``invoice_status:
        draft`` any match is returned.
        """
        row = await self._lookup(invoice_number)
        if row is None:
            return None
        doc = await self._get_one(int(row["document_id"])) or row
        if self.settings.invoice_status == "closed" and str(doc.get("status")) != "1":
            return None
        paid, _credited = await self._settlement(doc)
        return invoice_from_moloni(doc, paid=paid)

    async def _settlement(self, doc: Mapping[str, Any]) -> tuple[Decimal, Decimal]:
        """``(paid, credited)`` of a closed invoice: the values of the documents reconciled against it
        (its ``reverse_associated_documents``), split into credit notes (a ``creditNotes/getOne`` of
        that id finds it) and payments (receipts: everything else). ``(0, 0)`` for a draft."""
        paid = credited = Decimal("0.00")
        if str(doc.get("status")) != "1":
            return paid, credited
        for ident, value in reverse_links(doc):
            if await self._get_one(ident, "creditNotes") is not None:
                credited += value
            else:
                paid += value
        return paid, credited

    # ------------------------------------------------------------------ lifecycle (retire = delete or credit)
    async def retire(self, previous: ExternalInvoice, *, key: str, reason: str, issued: date) -> Retirement:
        """Take ``previous`` out of the customer's balance by Moloni's (AT-certified) rules.

        The invoice is re-read (``invoices/getOne``). A **draft** (status 0) is deleted
        (``invoices/delete``; only drafts can be: "Não é possível eliminar uma fatura que já se
        encontre no estado fechado", https://moloni.pt/dev/documents/invoices/delete). A **closed**
        invoice (status 1) — paid or not: a closed document is final and is never changed or
        deleted — is annulled by a credit note for its whole ``net_value``
        (``creditNotes/insert``, :func:`~connectors.moloni.mapper.credit_note_to_moloni`: its own
        products, ``associated_documents`` naming it, ``status`` 1 so the invoice is reconciled and
        the note communicated to the AT), ``your_reference`` =
        :func:`~connectors.sdk.lifecycle.credit_note_number` of our number. The credit note is looked
        up first (``creditNotes/getAll`` by ``your_reference``): a closed one means already retired
        (``action="none"``), a draft one (left by someone) is checked and closed. A credit note under
        that reference that does not credit this invoice raises :class:`NumberConflictError`. An
        invoice already fully credited by other credit notes, or not found, gives ``"none"``.

        ``paid`` is what receipts reconciled against the invoice (the customer may be owed money
        back). Raises what :meth:`_api` raises; a lost ``creditNotes/insert`` is an
        :class:`UncertainOutcomeError` and the next call finds the note.
        """
        doc = await self._previous_doc(previous)
        if doc is None:
            return Retirement("none", previous.number, details={"moloni": "invoice not found"})
        document_id = int(doc["document_id"])
        ours = str(doc.get("your_reference") or previous.number)
        details: dict[str, Any] = {"previous_reference": ours}
        if str(doc.get("status")) != "1":
            gone = await self._delete_draft(document_id, ours)
            if gone:
                return Retirement("deleted", previous.number, "draft", details=details)
            doc = await self._get_one(document_id) or doc  # closed meanwhile: credit it
        number = credit_note_number(ours)
        total = Decimal(str(doc.get("net_value")))
        note = await self._our_credit_note(number, doc)
        if note is not None and str(note.get("status")) == "1":
            return Retirement(
                "none",
                previous.number,
                "closed",
                credit_note_id=str(note["document_id"]),
                credit_note_number=number,
                credit_note_total=Decimal(str(note.get("net_value"))),
                details={**details, "moloni": "credit note already issued"},
            )
        paid, credited = await self._settlement(doc)
        if note is None and credited >= total:
            return Retirement("none", previous.number, "closed", details={**details, "moloni": "already credited"})
        what = f"Moloni credit note {number} for invoice {ours} (document {document_id})"
        if note is None:
            fields = credit_note_to_moloni(
                doc,
                company_id=self.settings.company_id,
                your_reference=number,
                issued=issued,
                notes=f"{reason}\n{marker(key)}",
            )
            answer = await self._api("creditNotes/insert", fields, idempotent=False, what=f"{what}: insert")
            if not isinstance(answer, dict) or not answer.get("document_id"):
                raise UncertainOutcomeError(f"{what}: creditNotes/insert answered without a document_id")
            note = await self._get_one(int(answer["document_id"]), "creditNotes") or {**answer, "net_value": total}
        else:
            note = await self._close_credit_note(note, total, what)
        note_total = Decimal(str(note.get("net_value")))
        if note_total != total:
            log.warning(
                "moloni tenant=%s %s: credit note total %s, invoice total %s", self.tenant, what, note_total, total
            )
        return Retirement(
            "credited",
            previous.number,
            "closed",
            paid=paid if paid > 0 else None,
            credit_note_id=str(note["document_id"]),
            credit_note_number=number,
            credit_note_total=note_total,
            details=details,
        )

    async def _previous_doc(self, previous: ExternalInvoice) -> dict[str, Any] | None:
        """The previous invoice by ``document_id`` (or by ``your_reference`` when no id is known)."""
        if previous.external_id.isdigit():
            return await self._get_one(int(previous.external_id))
        row = await self._lookup(previous.number)
        return await self._get_one(int(row["document_id"])) if row is not None else None

    async def _delete_draft(self, document_id: int, ours: str) -> bool:
        """``invoices/delete`` a draft; ``True`` once it is gone, ``False`` when it was closed meanwhile."""
        what = f"Moloni invoice {ours}: delete draft {document_id}"
        try:
            await self._api("invoices/delete", self._company(document_id=document_id), idempotent=False, what=what)
        except MoloniValidationError:
            again = await self._get_one(document_id)
            if again is None:
                return True  # deleted by an earlier attempt whose answer was lost
            if str(again.get("status")) == "1":
                return False
            raise
        return True

    async def _our_credit_note(self, number: str, invoice: Mapping[str, Any]) -> dict[str, Any] | None:
        """The credit note under ``your_reference == number`` (``creditNotes/getAll`` + ``getOne``),
        when it credits ``invoice``; ``None`` when there is none; :class:`NumberConflictError` when it
        credits something else (someone else's note took our reference)."""
        row = await self._lookup(number, "creditNotes")
        if row is None:
            return None
        note = await self._get_one(int(row["document_id"]), "creditNotes") or row
        links = [a for a in note.get("associated_documents") or [] if isinstance(a, Mapping)]
        if any(str(a.get("associated_id")) == str(invoice["document_id"]) for a in links):
            return note
        raise credit_note_conflict(
            "Moloni",
            number,
            note_id=note["document_id"],
            invoice=f"{invoice.get('your_reference')} (document {invoice['document_id']})",
            ours=Decimal(str(invoice.get("net_value"))),
            theirs=Decimal(str(note["net_value"])) if note.get("net_value") is not None else None,
            why=f"it carries our number as its your_reference but does not credit document {invoice['document_id']}",
            remedy="rename or annul that credit note",
        )

    async def _close_credit_note(self, note: Mapping[str, Any], total: Decimal, what: str) -> dict[str, Any]:
        """Close a draft credit note found under our reference, once its total is the invoice's."""
        note_id = int(note["document_id"])
        if Decimal(str(note.get("net_value"))) != total:
            raise PermanentError(
                f"{what}: draft credit note {note_id} totals {note.get('net_value')}, the invoice {total}; "
                "it was left as a draft: fix or delete it in Moloni, then replay"
            )
        fields = self._company(document_id=note_id, status=1)
        try:
            await self._api("creditNotes/update", fields, idempotent=False, what=f"{what}: close")
        except PermanentError:
            again = await self._get_one(note_id, "creditNotes")
            if again is None or str(again.get("status")) != "1":
                raise
        return await self._get_one(note_id, "creditNotes") or dict(note)

    # ------------------------------------------------------------------ customers (connectors.sdk.contacts)
    @functools.cached_property
    def _contacts(self) -> ContactResolver:
        return ContactResolver(
            self, allow_create=self.settings.create_customers, clients=self.clients, setting_name="create_customers"
        )

    async def _customer_id(self, invoice: Invoice) -> int:
        """The Moloni ``customer_id``: the mapped ``contact_id``, else one found (or created) by the resolver."""
        if invoice.contact_id:
            if not str(invoice.contact_id).strip().isdigit():
                wrong = f"contact_id {invoice.contact_id!r} is not a Moloni customer_id (an integer)"
                raise PermanentError(f"client {invoice.client_id}: {wrong}")
            return int(invoice.contact_id)
        return int(await self._contacts.resolve(invoice) or 0)

    async def find_contact(self, field: LookupField, value: str) -> str | None:
        """``customers/getByVat`` / ``getByEmail`` / ``getByName`` (``getByNumber``); exact match checked here."""
        action, key = {
            "number": ("customers/getByNumber", "number"),
            "tax_number": ("customers/getByVat", "vat"),
            "email": ("customers/getByEmail", "email"),
            "name": ("customers/getByName", "name"),
        }[field]
        found = await self._api(action, self._company(**{key: value}, qty=PAGE_SIZE, offset=0), idempotent=True)
        customers = (
            [c for c in found if isinstance(c, dict) and c.get("customer_id")] if isinstance(found, list) else []
        )
        return next((str(c["customer_id"]) for c in customers if same_value(field, str(c.get(key) or ""), value)), None)

    async def create_contact(self, query: ContactQuery) -> str:
        """``customers/insert`` with ``customer_defaults``; ``number`` = our client id (≤ 20 characters).
        A number already taken (a creation whose answer was lost) is looked up with ``getByNumber``."""
        defaults = self.settings.customer_defaults
        if defaults is None:  # pragma: no cover - the settings validator requires it with create_customers
            raise PermanentError(
                f"client {query.client_id}: customer creation needs billing.settings.customer_defaults"
            )
        fields = customer_to_moloni(query, defaults, company_id=self.settings.company_id)
        what = f"Moloni customers/insert for client {query.client_id}"
        try:
            answer = await self._api("customers/insert", fields, idempotent=False, what=what)
        except MoloniValidationError as exc:
            if any("number" in m and "exist" in m for m in exc.moloni_errors):
                # Moloni-only lookup by customer number, compared like a name
                found = await self.find_contact(cast("LookupField", "number"), query.client_id)
                if found:
                    return found
            raise
        if not isinstance(answer, dict) or not answer.get("customer_id"):
            raise UncertainOutcomeError(
                f"Moloni customers/insert for client {query.client_id}: no customer_id in the answer"
            )
        return str(answer["customer_id"])

    # ------------------------------------------------------------------ check
    async def check(self) -> None:
        """``companies/getAll`` (the cheapest authenticated call): credentials work and ``company_id`` is reachable."""
        companies = await self._api("companies/getAll", {}, idempotent=True)
        ids = (
            [int(c["company_id"]) for c in companies if isinstance(c, dict) and str(c.get("company_id", "")).isdigit()]
            if isinstance(companies, list)
            else []
        )
        if self.settings.company_id not in ids:
            raise UnknownAccountError(
                f"unknown company {self.settings.company_id}: these Moloni credentials reach "
                f"{', '.join(str(i) for i in ids) or 'no company'}"
            )


__all__ = ["MoloniConnector", "MoloniSettings", "MoloniValidationError"]
