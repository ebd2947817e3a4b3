"""InvoiceXpress API v2 connector — an AT-certified Portuguese invoicing system.

Creates an invoice in up to three retry-safe steps (https://invoicexpress.com/api-v2/):

1. **draft** — ``POST https://{account}.app.invoicexpress.com/invoices.json?api_key=…`` with our
   invoice number in ``reference`` (InvoiceXpress numbers documents from its AT-registered
   sequence, so our key can only travel in a reference field);
2. **finalise** — ``PUT /invoices/{id}/change-state.json`` ``{"invoice": {"state": "finalized"}}``
   (what makes the invoice legally issued; only draft -> finalized is allowed, so a repeat on a
   final invoice fails — the connector reads the state first and treats "already final" as done);
3. **e-mail** (optional) — ``PUT /invoices/{id}/email-document.json``.

An invoice to post as a draft (``invoice.draft``, the tenant's ``approval: draft``) stops after step 1
(its total checked): status ``draft``, for the account to finalise in InvoiceXpress, never e-mailed.

There is **no idempotency key** (none documented). Every :meth:`InvoiceXpressConnector.deliver`
starts with a lookup — ``GET /invoices.json?text=<our number>`` listed page by page, exact match on
``reference`` checked here — and resumes from what it finds. Caveat: the list filters were not
retrieved from InvoiceXpress's own reference; that ``text`` searches the reference is a
secondary-source fact (a community client schema, see ``../shared/billing-apis.md`` §7), which is
why every result is re-checked for an exact ``reference`` and why the emulator's ``text`` filter is
documented as an assumption. Before finalising, the draft's own ``total`` must equal ours to the
cent; a draft this call created with another total is deleted and nothing is issued.

**Ownership.** Every invoice we create carries our marker (``broker:<invoice key>``) on the last line
of ``observations`` (after the work-order reference and the legal notes; printed, kept and returned
on reads). A document found under our ``reference`` is adopted only when it carries our marker and
our total (:func:`connectors.sdk.lifecycle.check_ours`), else
:class:`~connectors.sdk.errors.NumberConflictError` and nothing is touched.

**Lifecycle** (:meth:`InvoiceXpressConnector.retire`, behind ``amend`` and ``cancel``): a draft is
deleted (change-state ``deleted``); a final or settled invoice is never canceled here — InvoiceXpress
refuses to change a settled one, and a certified PT document is annulled by a credit note — but
credited in full (``POST /credit_notes.json`` with ``owner_invoice_id``, then finalised), reference
``<our number>-CN``, looked up before it is created.

Auth: the account's API key as the ``api_key`` query parameter (HTTPS only); the SDK's log filter
redacts it from httpx's request lines. Limit: 100 requests per minute per account, then 429
(``Capabilities.rate_limit_per_minute``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any, ClassVar, Literal

import httpx

from connectors.invoicexpress.mapper import (
    LIMITS,
    credit_note_to_invoicexpress,
    error_messages,
    invoice_from_invoicexpress,
    invoice_to_invoicexpress,
    ix_totals,
    reference_of,
)
from connectors.invoicexpress.settings import InvoiceXpressSettings
from connectors.sdk.errors import (
    ConfigError,
    PermanentError,
    RetryableError,
    UncertainOutcomeError,
    UnknownAccountError,
)
from connectors.sdk.http import ApiKeyAuth, Auth, HttpConnector
from connectors.sdk.interface import Capabilities, DeliveryResult
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import Retirement, check_ours, credit_note_conflict, credit_note_number, marker
from connectors.sdk.money import dumps

log = logging.getLogger("connectors.invoicexpress")

#: ``GET /invoices.json`` page size.
PAGE_SIZE = 25


class InvoiceXpressConnector(HttpConnector):
    """InvoiceXpress connector for one account of one broker tenant.

    Errors: :class:`RateLimitedError` (429), :class:`RetryableError` (5xx, not sent, a lost read),
    :class:`UncertainOutcomeError` (a create / state change sent without an answer — the next
    :meth:`deliver` looks up first), :class:`AuthError` (401/403: bad API key),
    :class:`UnknownAccountError` (404 on the account), :class:`PermanentError` (422 validation,
    field limits, a 0 % line without ``tax_exemption``, a total InvoiceXpress computes differently),
    :class:`NumberConflictError` (a document under our reference that is not ours),
    :class:`ConfigError` (settings, missing variable).
    """

    name = "invoicexpress"
    label = "InvoiceXpress"
    version = "0.1.0"
    #: No idempotency key, no batch endpoint, an API key; 100 requests/minute per account.
    # InvoiceXpress numbers documents from the AT sequence; ours goes in reference, and "<ours>-CN" in the
    # credit note's: 50 characters (mapper.LIMITS, conservative: InvoiceXpress publishes no column sizes)
    capabilities = Capabilities(
        native_idempotency=False,
        lookup_by_reference=True,
        rate_limit_per_minute=100,
        amendments=True,
        invoice_number_max=LIMITS["reference"],
        credit_note_number_max=LIMITS["reference"],
        # created as status 'draft' until change-state 'finalized'; 'deleted' is for drafts only
        # (https://invoicexpress.com/api-v2/change-state/; billing-apis.md § 7)
        drafts=True,
    )
    Settings = InvoiceXpressSettings
    settings: InvoiceXpressSettings
    #: Every 5xx is retryable, writes included: :meth:`deliver` looks up before it writes anything.
    status_overrides: ClassVar[Mapping[int, type[RetryableError]]] = {500: RetryableError, 504: RetryableError}

    def __repr__(self) -> str:
        return f"InvoiceXpressConnector(tenant={self.tenant!r}, account={self.settings.account_name!r})"

    @property
    def base_url(self) -> str:
        """``api_url`` with ``{account}`` filled in, without a trailing slash."""
        return self.settings.api_url.replace("{account}", self.settings.account_name).rstrip("/")

    # ------------------------------------------------------------------ HTTP (connectors.sdk.http)
    def make_auth(self) -> Auth:
        """The account's API key as the ``api_key`` query parameter (documentation/authentication)."""
        return ApiKeyAuth(lambda: self.secret("api_key_env"), header=None, scheme=None, query="api_key")

    def unauthorized_hint(self) -> str:
        """What to check after a 401 (or 403): the key's variable and the account."""
        return f": check {self.settings.api_key_env} for account {self.settings.account_name}"

    def status_hint(self, resp: httpx.Response) -> str:
        """A 403 names the key to check; a 429 the account's documented limit."""
        hints = {403: self.unauthorized_hint(), 429: " (100 requests/minute per account)"}
        return hints.get(resp.status_code, "")

    def problem_detail(self, resp: httpx.Response) -> str:
        """InvoiceXpress's error messages (:func:`~connectors.invoicexpress.mapper.error_messages`), joined."""
        messages = error_messages(self.decode(resp))
        return self.scrub("; ".join(messages))[:300] if messages else super().problem_detail(resp)

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        on_404: Literal["error", "account", "none"] = "error",
    ) -> Any:
        """``method {base_url}{path}`` (``body`` as exact-decimal JSON) -> the decoded answer. A 404 is, by
        ``on_404``: the status table's error, :class:`UnknownAccountError`, or ``None`` (nothing found)."""
        headers = {"Content-Type": "application/json; charset=utf-8"} if body is not None else None
        content = dumps(body) if body is not None else None
        resp = await self.request(method, self.base_url + path, params=params, headers=headers, content=content)
        if resp.status_code == 404 and on_404 == "account":
            raise UnknownAccountError(
                f"unknown InvoiceXpress account {self.settings.account_name} (HTTP 404 at {self.base_url})"
            )
        if resp.status_code == 404 and on_404 == "none":
            return None
        self.raise_for_status(resp, what)
        return self.decode(resp)

    # ------------------------------------------------------------------ documents
    async def _lookup(self, invoice_number: str, family: str = "invoices") -> dict[str, Any] | None:
        """The document of ``family`` (``invoices`` / ``credit_notes``) whose ``reference`` is
        ``invoice_number`` (``GET /{family}.json?text=…``, all pages; deleted ones ignored); the oldest of several."""
        reference = reference_of(invoice_number)
        what = f"InvoiceXpress GET /{family}.json?text={reference}"
        matches: list[dict[str, Any]] = []
        page, pages = 1, 1
        while page <= pages:
            params = {"text": reference, "page": str(page), "per_page": str(PAGE_SIZE)}
            body = await self._call("GET", f"/{family}.json", what, params=params, on_404="account")
            docs = body.get(family) if isinstance(body, dict) else None
            if not isinstance(docs, list):
                raise RetryableError(f"{what}: answer without an {family!r} list")
            matches += [
                d
                for d in docs
                if isinstance(d, dict) and d.get("id") and d.get("status") != "deleted"
                if str(d.get("reference") or "") == reference
            ]
            pagination = body.get("pagination") if isinstance(body.get("pagination"), dict) else {}
            pages = int(pagination.get("total_pages") or 1) if docs else 0
            page += 1
        matches.sort(key=lambda d: int(d["id"]))
        if len(matches) > 1:
            log.warning(
                "invoicexpress tenant=%s: %d %s carry reference %s; using the oldest",
                self.tenant,
                len(matches),
                family,
                reference,
            )
        return matches[0] if matches else None

    async def _get(self, document_id: int, family: str = "invoices") -> dict[str, Any]:
        """``GET /{family}/{id}.json``: the document (answered under ``invoice`` / ``credit_note``)."""
        doc = await self._get_or_none(document_id, family, on_404="error")
        if doc is None:  # pragma: no cover - on_404="error" raises instead
            raise RetryableError(f"InvoiceXpress GET /{family}/{document_id}.json: no document")
        return doc

    async def _get_or_none(
        self, document_id: int, family: str = "invoices", *, on_404: Literal["error", "none"] = "none"
    ) -> dict[str, Any] | None:
        """``GET /{family}/{id}.json``; ``None`` on 404 (deleted or never there) unless ``on_404="error"``."""
        what = f"InvoiceXpress GET /{family}/{document_id}.json"
        body = await self._call("GET", f"/{family}/{document_id}.json", what, on_404=on_404)
        if body is None:
            return None
        doc = _document(body, family)
        if doc is None or not doc.get("id"):
            raise RetryableError(f"{what}: answer without a document")
        return doc

    async def _change_state(
        self, document_id: int, state: str, what: str, family: str = "invoices", message: str | None = None
    ) -> dict[str, Any]:
        """``PUT /{family}/{id}/change-state.json`` ``{"invoice": {"state", "message"?}}`` (the ``invoice``
        root for every document type, https://invoicexpress.com/api-v2/change-state/)."""
        change: dict[str, Any] = {"state": state}
        if message:
            change["message"] = message
        path = f"/{family}/{document_id}/change-state.json"
        body = await self._call("PUT", path, what, body={"invoice": change})
        doc = _document(body, family)
        return doc if doc is not None else await self._get(document_id, family)

    def _client_info(self, invoice: Invoice) -> tuple[str | None, str | None]:
        client = self.clients.get(invoice.client_id)
        return (getattr(client, "email", None) or None, getattr(client, "tax_number", None) or None)

    async def _find_client(self, kind: str, value: str) -> dict[str, Any] | None:
        """``GET /clients/find-by-code.json?client_code=`` or ``find-by-name.json?client_name=``; None on 404."""
        params = {"client_code" if kind == "code" else "client_name": value}
        path = f"/clients/find-by-{kind}.json"
        body = await self._call("GET", path, f"InvoiceXpress GET {path}", params=params, on_404="none")
        client = body.get("client") if isinstance(body, dict) else None
        return client if isinstance(client, dict) else None

    async def _resolve_client(self, invoice: Invoice) -> Invoice:
        """With ``create_clients: false``: the existing client (by code, then exact name), else PermanentError."""
        if self.settings.create_clients:
            return invoice
        code = invoice.contact_id or invoice.client_id
        client = await self._find_client("code", code)
        if client is None:
            client = await self._find_client("name", invoice.client_name)
        if client is None:
            raise PermanentError(
                f"client {invoice.client_id} ({invoice.client_name}) has no InvoiceXpress client: none with code "
                f"{code!r} or that name; add it in InvoiceXpress, map clients.{invoice.client_id}.contact_id to its "
                "code, or allow creation (billing.settings.create_clients: true)"
            )
        if client.get("code") and str(client["code"]) != code:
            invoice = invoice.model_copy(update={"contact_id": str(client["code"])})
        return invoice

    def _expected_total(self, invoice: Invoice, body: Mapping[str, Any]) -> Decimal:
        rows = [
            (Decimal(item["quantity"]), Decimal(item["unit_price"]), Decimal(item.get("discount") or 0), line.tax_rate)
            for item, line in zip(body["invoice"]["items"], invoice.lines, strict=False)
        ]
        return ix_totals(rows, self.settings.rounding_method).total

    async def deliver(self, invoice: Invoice) -> DeliveryResult:
        """Create the draft, verify its total, finalise and e-mail — resuming from what a previous attempt left.

        Returns ``DeliveryResult(external_id=<id>, external_number=<sequence_number>`` (empty while a
        draft), ``created`` = created by this call, ``details``: ``total``, ``status``,
        ``total_matches``, ``steps``, ``email``).
        """
        what = f"InvoiceXpress invoice {invoice.invoice_number}"
        invoice = await self._resolve_client(invoice)
        email, fiscal_id = self._client_info(invoice)
        body = invoice_to_invoicexpress(invoice, self.settings, client_email=email, client_fiscal_id=fiscal_id)
        expected = self._expected_total(invoice, body)
        if expected != invoice.total:
            per = "item" if self.settings.rounding_method == "line" else "document"
            raise PermanentError(
                f"{what}: InvoiceXpress would compute a total of {expected} (VAT rounded per {per}) "
                f"but ours is {invoice.total}; nothing was sent"
            )
        existing = await self._lookup(invoice.invoice_number)
        if existing is None:
            answer = await self._call(
                "POST", "/invoices.json", f"{what}: POST /invoices.json", body=body, on_404="account"
            )
            doc = answer.get("invoice") if isinstance(answer, dict) else None
            if not isinstance(doc, dict) or not doc.get("id"):
                raise UncertainOutcomeError(f"{what}: create answered without an invoice id; reconcile with find()")
            steps = ["created draft"]
        else:
            doc = await self._get(int(existing["id"]))
            steps = [f"found {doc.get('status')}"]
            # found under our number: ours only with our marker and our total (never adopted, finalised or changed)
            found = invoice_from_invoicexpress(doc)
            check_ours(invoice, found, what=f"InvoiceXpress invoice found by reference, {doc.get('status')}")
        created, document_id, email_note = existing is None, int(doc["id"]), None
        if doc.get("status") == "draft":
            await self._verify_draft(doc, invoice, created=created, what=what)
            if self.settings.invoice_status == "finalized" and not invoice.draft:
                doc = await self._finalize(document_id, what)
                steps.append("finalized")
                if self.settings.send_email:
                    email_note = await self._email(invoice, doc, email)
        return DeliveryResult(
            invoice_key=invoice.invoice_key,
            external_id=str(document_id),
            external_number=invoice_from_invoicexpress(doc).number,
            created=created,
            details={
                "total": str(doc.get("total")),
                "taxes": str(doc.get("taxes")),
                "status": doc.get("status"),
                "total_matches": Decimal(str(doc.get("total"))) == invoice.total,
                "reference": reference_of(invoice.invoice_number),
                "atcud": doc.get("atcud"),
                "steps": steps,
                "email": email_note,
            },
        )

    async def _verify_draft(self, doc: Mapping[str, Any], invoice: Invoice, *, created: bool, what: str) -> None:
        """A draft whose own ``total`` is not ours is never finalised; one this call created is deleted."""
        total = Decimal(str(doc.get("total")))
        if total == invoice.total:
            return
        outcome = "the existing draft was left unissued"
        if created:
            await self._change_state(int(doc["id"]), "deleted", f"{what}: delete draft (total mismatch)")
            outcome = "the draft was deleted and nothing was issued"
        raise PermanentError(
            f"{what}: InvoiceXpress computed a total of {total} for draft {doc['id']} but ours is {invoice.total}; "
            + outcome
        )

    async def _finalize(self, document_id: int, what: str) -> dict[str, Any]:
        """draft -> finalized; an invoice already final (an earlier attempt whose answer was lost) counts as done."""
        try:
            return await self._change_state(document_id, "finalized", f"{what}: finalize")
        except PermanentError:
            doc = await self._get(document_id)
            if doc.get("status") in ("final", "settled"):
                return doc
            raise

    async def _email(self, invoice: Invoice, doc: Mapping[str, Any], email: str | None) -> str:
        """``PUT /invoices/{id}/email-document.json``; never undoes the issued invoice.

        Sent only right after this call finalised the invoice (an invoice found already final is
        not e-mailed again, so a redelivery never spams the customer). A transient failure is retried
        once (after ``Retry-After`` when ≤ 10 s); a remaining failure is logged and reported in
        ``details["email"]`` — the invoice is issued either way.
        """
        client = doc.get("client")
        address = email or (str(client.get("email") or "").strip() if isinstance(client, dict) else "") or None
        if not address:
            log.warning(
                "invoicexpress tenant=%s invoice=%s: send_email is on but the client has no e-mail address",
                self.tenant,
                invoice.invoice_number,
            )
            return "skipped: no e-mail address for the client"
        number = invoice_from_invoicexpress(doc).number or invoice.invoice_number
        fill = {"number": number, "reference": invoice.invoice_number}
        subject, text = self.settings.email_subject.format_map(fill), self.settings.email_body.format_map(fill)
        message = {"message": {"client": {"email": address, "save": "0"}, "subject": subject, "body": text}}
        what = f"InvoiceXpress invoice {invoice.invoice_number}: e-mail"
        last: RetryableError | PermanentError | None = None
        for attempt in (1, 2):
            try:
                await self._call("PUT", f"/invoices/{doc['id']}/email-document.json", what, body=message)
                return f"sent to {address}"
            except (RetryableError, PermanentError) as exc:
                last = exc
                wait = float(getattr(exc, "retry_after", 1.0))  # a RateLimitedError's Retry-After, else 1 s
                if attempt == 2 or wait > 10 or isinstance(exc, UncertainOutcomeError | PermanentError):
                    break  # retried once already, a long wait, refused, or maybe sent (never send twice)
                await asyncio.sleep(wait)
        log.warning(
            "invoicexpress tenant=%s invoice=%s: invoice issued but e-mail failed: %s",
            self.tenant,
            invoice.invoice_number,
            last,
        )
        return f"failed: {last}"

    async def find(self, invoice_number: str) -> ExternalInvoice | None:
        """The InvoiceXpress invoice whose ``reference`` is ``invoice_number``, when its delivery is complete.

        The result carries our ``marker`` (from ``observations``), InvoiceXpress's ``total`` and
        ``paid`` (:meth:`_paid`). With ``invoice_status: finalized`` a draft (a delivery interrupted
        before finalising) is reported as ``None`` so that a caller reconciling with :meth:`find`
        calls :meth:`deliver` again, which verifies and finalises that draft instead of creating another.
        """
        doc = await self._lookup(invoice_number)
        if doc is None:
            return None
        found = invoice_from_invoicexpress(doc)
        if self.settings.invoice_status == "finalized" and found.status == "draft":
            return None
        related = await self._related(int(doc["id"])) if found.status == "final" else []
        return invoice_from_invoicexpress(doc, paid=self._paid(doc, related))

    # ------------------------------------------------------------------ lifecycle (retire = delete or credit)
    async def _related(self, document_id: int) -> list[dict[str, Any]]:
        """``GET /invoices/{id}/related-documents.json``: the receipts and credit notes of an invoice
        (the endpoint of go-invoicexpress ``RelatedDocuments``; the list is read under whichever key holds it)."""
        what = f"InvoiceXpress GET /invoices/{document_id}/related-documents.json"
        body = await self._call("GET", f"/invoices/{document_id}/related-documents.json", what)
        lists = [v for v in body.values() if isinstance(v, list)] if isinstance(body, dict) else []
        return [d for d in (lists[0] if lists else []) if isinstance(d, dict) and d.get("id")]

    @staticmethod
    def _paid(doc: Mapping[str, Any], related: list[dict[str, Any]]) -> Decimal:
        """Paid so far: the whole total of a ``settled`` invoice, else its receipts' totals (``0.00`` for a draft)."""
        if doc.get("status") == "settled":
            return Decimal(str(doc.get("total")))
        return sum(
            (
                Decimal(str(r.get("total")))
                for r in related
                if r.get("type") == "Receipt" and r.get("status") not in ("canceled", "deleted")
            ),
            Decimal("0.00"),
        )

    async def retire(self, previous: ExternalInvoice, *, key: str, reason: str, issued: date) -> Retirement:
        """Take ``previous`` out of the client's balance by InvoiceXpress's (AT-certified) rules.

        The invoice is re-read (``GET /invoices/{id}.json``). A **draft** is deleted (change-state
        ``deleted``: "deleted (draft only)", https://invoicexpress.com/api-v2/change-state/). A
        **final** or **settled** invoice is never canceled or changed here: it is annulled by a credit
        note for its whole total (``POST /credit_notes.json``,
        :func:`~connectors.invoicexpress.mapper.credit_note_to_invoicexpress`: its own items and
        ``owner_invoice_id``), then finalised (change-state ``finalized``); its ``reference`` is
        :func:`~connectors.sdk.lifecycle.credit_note_number` of our number. The credit note is looked
        up first (``GET /credit_notes.json?text=…``, exact ``reference``): a final one means already
        retired (``action="none"``), a draft one (an attempt interrupted before finalising) is checked
        and finalised. A credit note under that reference for another invoice raises
        :class:`NumberConflictError`. Deleted, canceled, fully credited or absent invoices give ``"none"``.

        ``paid``: the receipts (or the whole total of a settled invoice), when there are any.
        """
        doc = await self._previous_doc(previous)
        status = str(doc.get("status") or "") if doc is not None else None
        if doc is None or status in ("deleted", "canceled"):
            return Retirement("none", previous.number, status, details={"invoicexpress": status or "not found"})
        document_id = int(doc["id"])
        ours = str(doc.get("reference") or previous.number)
        details: dict[str, Any] = {"previous_reference": ours}
        if status == "draft":
            gone = await self._delete_draft(document_id, ours)
            if gone:
                return Retirement("deleted", previous.number, "draft", details=details)
            doc = await self._get(document_id)  # finalised meanwhile: credit it
            status = str(doc.get("status") or "")
        number = credit_note_number(ours)
        total = Decimal(str(doc.get("total")))
        related = await self._related(document_id)
        note = await self._our_credit_note(number, doc, related)
        if note is not None and note.get("status") == "final":
            return Retirement(
                "none",
                previous.number,
                status,
                credit_note_id=str(note["id"]),
                credit_note_number=number,
                credit_note_total=Decimal(str(note.get("total"))),
                details={**details, "invoicexpress": "credit note already issued"},
            )
        paid = self._paid(doc, related)
        credited = sum(
            (
                Decimal(str(n.get("total")))
                for n in related
                if n.get("type") == "CreditNote" and n.get("status") == "final"
            ),
            Decimal("0.00"),
        )
        if note is None and credited >= total:
            return Retirement("none", previous.number, status, details={**details, "invoicexpress": "already credited"})
        what = f"InvoiceXpress credit note {number} for invoice {ours} (id {document_id})"
        if note is None:
            body = credit_note_to_invoicexpress(
                doc, reference=number, issued=issued, observations=f"{reason}\n{marker(key)}"
            )
            answer = await self._call("POST", "/credit_notes.json", f"{what}: POST /credit_notes.json", body=body)
            note = _document(answer, "credit_notes")
            if note is None or not note.get("id"):
                raise UncertainOutcomeError(f"{what}: create answered without a credit note id")
        note = await self._finalize_credit_note(note, total, what)
        return Retirement(
            "credited",
            previous.number,
            status,
            paid=paid if paid > 0 else None,
            credit_note_id=str(note["id"]),
            credit_note_number=number,
            credit_note_total=Decimal(str(note.get("total"))),
            details=details,
        )

    async def _previous_doc(self, previous: ExternalInvoice) -> dict[str, Any] | None:
        """The previous invoice by id (``None`` on 404: deleted) or, without an id, by ``reference``."""
        if previous.external_id.isdigit():
            return await self._get_or_none(int(previous.external_id))
        return await self._lookup(previous.number)

    async def _delete_draft(self, document_id: int, ours: str) -> bool:
        """change-state ``deleted``; ``True`` once the draft is gone, ``False`` when it was finalised meanwhile."""
        try:
            await self._change_state(document_id, "deleted", f"InvoiceXpress invoice {ours}: delete draft")
        except PermanentError:
            again = await self._get_or_none(document_id)
            if again is None or again.get("status") == "deleted":
                return True  # deleted by an earlier attempt whose answer was lost
            if again.get("status") in ("final", "settled"):
                return False
            raise
        return True

    async def _our_credit_note(
        self, number: str, invoice: Mapping[str, Any], related: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The credit note under ``reference == number`` that credits ``invoice`` (its
        ``owner_invoice_id``, else its presence among the invoice's related documents); ``None`` when
        there is none (a canceled one does not count); :class:`NumberConflictError` when it credits
        another document."""
        note = await self._lookup(number, "credit_notes")
        if note is None or note.get("status") == "canceled":
            return None
        owner = note.get("owner_invoice_id")
        if str(owner) == str(invoice["id"]) or (owner is None and any(r["id"] == note["id"] for r in related)):
            return note
        raise credit_note_conflict(
            "InvoiceXpress",
            number,
            note_id=note["id"],
            invoice=f"{invoice.get('reference')} (id {invoice['id']})",
            ours=Decimal(str(invoice.get("total"))),
            theirs=Decimal(str(note["total"])) if note.get("total") is not None else None,
            why=f"it carries our number as its reference but credits "
            f"{'another document' if owner is None else f'document {owner}'}, not invoice {invoice['id']}",
            remedy="rename or cancel that credit note",
        )

    async def _finalize_credit_note(self, note: Mapping[str, Any], total: Decimal, what: str) -> dict[str, Any]:
        """Finalise a draft credit note once its own total is the invoice's (a final one is returned as is)."""
        note_id = int(note["id"])
        if note.get("status") == "final":
            return dict(note)
        if Decimal(str(note.get("total"))) != total:
            raise PermanentError(
                f"{what}: draft credit note {note_id} totals {note.get('total')}, the invoice {total}; it was "
                "left as a draft: fix or delete it in InvoiceXpress, then replay"
            )
        try:
            return await self._change_state(note_id, "finalized", f"{what}: finalize", "credit_notes")
        except PermanentError:
            again = await self._get(note_id, "credit_notes")
            if again.get("status") == "final":
                return again  # finalised by an earlier attempt whose answer was lost
            raise

    async def check(self) -> None:
        """``GET /sequences.json`` — cheap, authenticated, and it proves ``sequence_id`` exists when one is set."""
        body = await self._call("GET", "/sequences.json", "InvoiceXpress GET /sequences.json", on_404="account")
        if self.settings.sequence_id:
            sequences = body.get("sequences") if isinstance(body, dict) else None
            ids = [str(s.get("id")) for s in sequences or [] if isinstance(s, dict)]
            if self.settings.sequence_id not in ids:
                raise ConfigError(
                    f"billing.settings.sequence_id {self.settings.sequence_id} is not a sequence of account "
                    f"{self.settings.account_name} (known: {', '.join(ids) or 'none'})"
                )


def _document(body: Any, family: str) -> dict[str, Any] | None:
    """The document of an answer: under its type's key (``invoice`` / ``credit_note``), else under
    ``invoice`` (the key the documentation shows for every type); ``None`` without one."""
    if not isinstance(body, dict):
        return None
    singular = "credit_note" if family == "credit_notes" else "invoice"
    doc = body.get(singular, body.get("invoice"))
    return doc if isinstance(doc, dict) else None


__all__ = ["InvoiceXpressConnector", "InvoiceXpressSettings"]
