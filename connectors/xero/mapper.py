"""Pure mapping between :class:`connectors.sdk.invoice.Invoice` and Xero Accounting API 2.0 JSON.

Nothing here does I/O. :func:`invoice_to_xero` builds one element of the ``Invoices`` array of
``PUT /api.xro/2.0/Invoices`` (schema ``Invoice`` / ``LineItem`` in the official OpenAPI spec
``xero_accounting.yaml``, https://developer.xero.com/documentation/api/accounting/invoices);
:func:`invoice_from_xero` reads one element of a response; :func:`credit_note_for` builds the credit
note cancelling an invoice; :func:`validation_messages` / :func:`validation_exception` read Xero's
validation errors.

Two texts ride on the document besides the priced lines:

* the ownership marker (:func:`connectors.sdk.lifecycle.marker`) at the end of ``Reference``
  (``"WO 1001 broker:acme-fm:wo:1001:r1"``, :func:`reference_for`): ``Reference`` is the ACCREC
  header text Xero keeps, returns on every read (``summaryOnly`` included) and prints as the
  invoice's "Reference"; the human reference stays first;
* the legal notes (:attr:`Invoice.legal_notes`) as **description-only line items** (spec schema
  ``LineItem.Description``: "A line item with just a description (i.e no unit amount or quantity) can
  be created by specifying just a <Description> element"), after the priced lines: an ACCREC
  invoice has no free notes field in the API (the "Terms" of a branding theme are per theme, not per
  invoice), and line descriptions are what Xero prints in the body of the invoice. They carry no
  amount, so totals are unchanged. Serialise payloads with :func:`connectors.sdk.money.dumps`, which writes
:class:`~decimal.Decimal` amounts as exact JSON numbers (``Decimal("136.50")`` -> ``136.50``, never
through ``float``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.lifecycle import marker, read_marker
from connectors.sdk.money import amount_or_none, lookup_rate, rate_key
from connectors.xero.settings import XeroSettings

#: ``InvoiceNumber`` length Xero accepts (https://developer.xero.com/documentation/api/accounting/invoices:
#: "InvoiceNumber ... (max length = 255)"; /work/shared/billing-apis.md, Xero "Number / reference").
INVOICE_NUMBER_MAX = 255
#: ``Reference`` length Xero accepts (https://developer.xero.com/documentation/api/accounting/invoices:
#: "Reference ... (max length = 255)").
REFERENCE_MAX = 255
#: Longest line item ``Description`` sent as one line. The OpenAPI spec states no limit and none was
#: found in the stored documentation; a longer legal note is split over several lines, never cut.
DESCRIPTION_MAX = 4000


# --------------------------------------------------------------------------- Invoice -> Xero
def tax_type_for(line: InvoiceLine, settings: XeroSettings) -> str:
    """Xero ``TaxType`` code for ``line``.

    Order: ``line.tax_type`` (tenant-mapped code) -> ``settings.tax_types[rate]`` where the key is
    the rate percentage text (``"23"``; ``"23.0"``/``"23.00"`` match too). Codes are
    organisation/region specific: see ``GET /TaxRates`` (spec ``getTaxRates``). No default: an
    unmapped rate (0 % included) raises :class:`PermanentError` naming it, since any guessed code
    books the line under another rate in Xero's reports (the configuration check,
    :meth:`XeroSettings.tax_mapping_problems`, refuses such a tenant at load; only a rate an event
    brings, a quote line's own, can get here).
    """
    if line.tax_type:
        return line.tax_type
    code = lookup_rate(settings.tax_types, line.tax_rate)
    if code is None:
        wanted = rate_key(line.tax_rate)
        raise PermanentError(
            f"line {line.description!r}: VAT {wanted}% has no Xero TaxType: add billing.settings.tax_types"
            f'["{wanted}"] (a TaxType of the organisation, GET /TaxRates)'
        )
    return code


def line_to_xero(line: InvoiceLine, invoice: Invoice, settings: XeroSettings) -> dict[str, Any]:
    """One ``LineItem``: Description, Quantity, UnitAmount, LineAmount, AccountCode, TaxType, TaxAmount[, DiscountRate].

    ``LineAmount`` is our rounded line amount as Xero defines it (``Quantity × UnitAmount ×
    (100 − DiscountRate)/100``, 2 dp): ``line.net`` for tax-exclusive invoices, ``line.total``
    (gross) for tax-inclusive ones. ``TaxAmount`` is our per-line rounded tax so Xero's
    ``TotalTax`` equals ours to the cent (Xero computes tax per line, rounds, then sums:
    https://developer.xero.com/documentation/api-guides/rounding-in-xero).
    """
    item: dict[str, Any] = {
        "Description": line.description,
        "Quantity": line.quantity,
        "UnitAmount": line.unit_price,
        "LineAmount": line.total if invoice.tax_inclusive else line.net,
        "AccountCode": line.account_code or settings.sales_account_code,
        "TaxType": tax_type_for(line, settings),
        "TaxAmount": line.tax,
    }
    if line.discount_percent != 0:
        item["DiscountRate"] = line.discount_percent
    return item


def reference_for(invoice: Invoice) -> str:
    """``Reference`` of ``invoice``: its human reference, a space, then our ownership marker.

    ``"WO 1001"`` + key ``acme-fm:wo:1001:r1`` -> ``"WO 1001 broker:acme-fm:wo:1001:r1"``; without a
    human reference, the marker alone. At most :data:`REFERENCE_MAX` characters: the human part is
    cut (never the marker, which :func:`connectors.sdk.lifecycle.read_marker` reads from the end).
    """
    tag = marker(invoice.invoice_key)
    human = " ".join(invoice.reference.split())  # one line: the marker runs to the end of its line
    if not human:
        return tag[:REFERENCE_MAX]
    return f"{human[: max(0, REFERENCE_MAX - len(tag) - 1)].rstrip()} {tag}".lstrip()


def note_lines(invoice: Invoice) -> list[dict[str, Any]]:
    """The legal notes as description-only ``LineItem`` elements (``{"Description": note}``), in order.

    Blank notes are left out; a note longer than :data:`DESCRIPTION_MAX` characters is split over
    several lines rather than cut (legal wording must print in full).
    """
    out: list[dict[str, Any]] = []
    for note in invoice.legal_notes:
        text = note.strip()
        out.extend({"Description": text[i : i + DESCRIPTION_MAX]} for i in range(0, len(text), DESCRIPTION_MAX))
    return out


def invoice_to_xero(invoice: Invoice, settings: XeroSettings) -> dict[str, Any]:
    """One element of the ``Invoices`` array of ``PUT /api.xro/2.0/Invoices`` (spec schema ``Invoice``).

    Shape::

        {"Type": "ACCREC", "Contact": {"ContactID": ...} | {"Name": ...},
         "Date": "YYYY-MM-DD", "DueDate": "YYYY-MM-DD", "LineAmountTypes": "Exclusive" | "Inclusive",
         "InvoiceNumber": str, "Reference": reference_for(invoice), "CurrencyCode": "EUR",
         "Status": "AUTHORISED" | "DRAFT",
         "LineItems": [line_to_xero(...), ..., *note_lines(invoice)]}

    ``Status`` is ``DRAFT`` for an invoice to post as a draft (``invoice.draft``: Xero's default status,
    a draft is no receivable until approved; spec ``Invoice.Status``), else ``settings.invoice_status``.
    Amounts are :class:`Decimal` (serialise with :func:`dumps`). Read-only totals (``SubTotal``,
    ``TotalTax``, ``Total``) are not sent: Xero computes them from the lines.
    """
    contact: dict[str, Any] = {"ContactID": invoice.contact_id} if invoice.contact_id else {"Name": invoice.client_name}
    return {
        "Type": "ACCREC",
        "Contact": contact,
        "Date": invoice.issue_date.isoformat(),
        "DueDate": invoice.due_date.isoformat(),
        "LineAmountTypes": "Inclusive" if invoice.tax_inclusive else "Exclusive",
        "InvoiceNumber": invoice.invoice_number,
        "Reference": reference_for(invoice),
        "CurrencyCode": invoice.currency,
        "Status": "DRAFT" if invoice.draft else settings.invoice_status,
        "LineItems": [*(line_to_xero(line, invoice, settings) for line in invoice.lines), *note_lines(invoice)],
    }


# --------------------------------------------------------------------------- Xero -> ours
def invoice_from_xero(element: Mapping[str, Any]) -> ExternalInvoice:
    """:class:`ExternalInvoice` from one element of a Xero ``Invoices`` response.

    ``external_id`` = ``InvoiceID``, ``number`` = ``InvoiceNumber``, ``total`` = ``Total`` as
    :class:`Decimal` (None when absent), ``status`` = ``Status`` (``DRAFT``/``AUTHORISED``/...),
    ``marker`` = the invoice key of the ownership marker in ``Reference`` (None: not ours),
    ``paid`` = ``AmountPaid`` as :class:`Decimal`. Raises ``KeyError`` when ``InvoiceID`` is missing.
    """
    return ExternalInvoice(
        external_id=str(element["InvoiceID"]),
        number=str(element.get("InvoiceNumber") or ""),
        total=amount_or_none(element.get("Total")),
        status=element.get("Status"),
        marker=read_marker(str(element.get("Reference") or "")),
        paid=amount_or_none(element.get("AmountPaid")),
    )


# --------------------------------------------------------------------------- credit notes (retiring an invoice)
#: Line fields copied from an invoice to the credit note that cancels it (spec schema ``LineItem``). No
#: discounts: "ACCPAY invoices and credit notes in Xero do not support discounts" (``LineItem.DiscountRate``).
CREDIT_LINE_FIELDS = (
    "Description",
    "Quantity",
    "UnitAmount",
    "ItemCode",
    "AccountCode",
    "TaxType",
    "TaxAmount",
    "LineAmount",
    "Tracking",
)


def credit_line(line: Mapping[str, Any]) -> dict[str, Any]:
    """The credit note line that cancels one invoice ``line`` exactly as Xero holds it.

    Copied: :data:`CREDIT_LINE_FIELDS`. A description-only line (no ``Quantity``/``UnitAmount``, e.g.
    a legal note) stays description-only. A discounted line (``DiscountRate``/``DiscountAmount``, which
    credit notes do not take) becomes ``Quantity`` 1 × ``UnitAmount`` = its discounted ``LineAmount``,
    with its ``TaxAmount``: the same amounts to the cent.
    """
    if line.get("Quantity") is None and line.get("UnitAmount") is None:
        return {"Description": line["Description"]} if line.get("Description") else {}
    out = {k: line[k] for k in CREDIT_LINE_FIELDS if line.get(k) not in (None, [], "")}
    if line.get("DiscountRate") not in (None, 0) or line.get("DiscountAmount") not in (None, 0):
        out.update(Quantity=Decimal(1), UnitAmount=out.get("LineAmount", Decimal(0)))
    return out


def credit_note_for(invoice: Mapping[str, Any], number: str, *, issued: str, reason: str) -> dict[str, Any]:
    """One ``CreditNotes`` element (spec schema ``CreditNote``, ``ACCRECCREDIT``) cancelling the Xero ``invoice``.

    Lines: :func:`credit_line` of each invoice line, so the credit note's totals equal the invoice's
    to the cent. ``AUTHORISED``, not allocated to the invoice (allocation is a separate call; an
    unallocated credit stays on the customer's account as ``RemainingCredit``). ``issued`` is the
    ``Date`` (``YYYY-MM-DD``); ``Reference`` (≤ :data:`REFERENCE_MAX` characters) is
    ``Credit for <invoice number> (<reason>)`` followed by the invoice's ownership marker when it has
    one (so the credit note is recognisably ours). A contact without a ``ContactID`` is sent by ``Name``.
    """
    lines = [cl for cl in (credit_line(line) for line in invoice.get("LineItems") or []) if cl]
    contact = invoice.get("Contact") or {}
    owner = read_marker(str(invoice.get("Reference") or ""))
    tag = f" {marker(owner)}" if owner else ""
    text = f"Credit for {invoice.get('InvoiceNumber', '')} ({reason})"
    element: dict[str, Any] = {
        "Type": "ACCRECCREDIT",
        "Contact": {"ContactID": contact["ContactID"]}
        if contact.get("ContactID")
        else {"Name": contact.get("Name", "")},
        "Date": issued,
        "LineAmountTypes": invoice.get("LineAmountTypes") or "Exclusive",
        "CreditNoteNumber": number,
        "Reference": text[: max(0, REFERENCE_MAX - len(tag))] + tag,
        "Status": "AUTHORISED",
        "LineItems": lines,
    }
    if invoice.get("CurrencyCode"):
        element["CurrencyCode"] = invoice["CurrencyCode"]
    return element


# --------------------------------------------------------------------------- errors and queries
def validation_messages(element: Any) -> list[str]:
    """Messages of the ``ValidationErrors`` of a response element (spec ``Element``/``ValidationError``)."""
    if not isinstance(element, dict):
        return []
    return [
        str(err["Message"])
        for err in element.get("ValidationErrors") or []
        if isinstance(err, dict) and err.get("Message")
    ]


def validation_exception(body: Any) -> list[str] | None:
    """Messages of a ``ValidationException`` body (HTTP 400, spec schema ``Error`` with ``Elements``).

    ``None`` when ``body`` is not a ``ValidationException``; ``[]`` when it is one without element messages.
    """
    if not isinstance(body, dict) or body.get("Type") != "ValidationException":
        return None
    return [message for element in body.get("Elements") or [] for message in validation_messages(element)]


def is_duplicate_number(messages: list[str]) -> bool:
    """True for Xero's ``Invoice # must be unique.`` (a second ACCREC invoice with an existing number)."""
    return any("must be unique" in m.lower() and "invoice" in m.lower() for m in messages)


def where_equals(field: str, value: str) -> str:
    """A Xero ``where`` filter ``Field=="value"`` with ``\\`` and ``"`` escaped (``where=InvoiceNumber=="A-1"``)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'{field}=="{escaped}"'
