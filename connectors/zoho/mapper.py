"""Pure mapping from :class:`connectors.sdk.invoice.Invoice` to a Zoho Invoice API v3 ``POST /invoices`` body.

Nothing here does I/O. :func:`invoice_to_zoho` builds the JSON body (``customer_id``,
``invoice_number``, ``reference_number``, ``date``, ``due_date``, ``is_inclusive_tax``,
``line_items`` of ``name``/``description``/``rate``/``quantity``/``unit``/``tax_id``/``item_order``,
``adjustment``, ``notes``), https://www.zoho.com/invoice/api/v3/invoices/ (``shared/billing-apis.md`` § 4);
:func:`credit_note_to_zoho` the ``POST /creditnotes`` body that cancels an invoice in full
(https://www.zoho.com/invoice/api/v3/credit-notes/).

``notes`` (the invoice's "Notes", printed on the document, at most 5000 characters, kept and returned
by ``GET /invoices/{id}``) carries the invoice's legal notes, one per line, then our ownership marker
(:func:`connectors.sdk.lifecycle.marker`) on the last line. Zoho Invoice has no free-text field that
is kept but not printed without an organisation-specific custom field, and ``reference_number``
(≤ 50) holds the human reference (``WO <id>``), so the marker is visible on the document, as Xero's
``Reference`` is.
Zoho publishes no OpenAPI file we could keep, so the shapes come from the API reference and the
field limits below are checked here, counted in characters.

Rounding. Zoho Invoice computes each line's ``item_total`` (``rate × quantity`` rounded half up to
the currency's decimals) and then the tax **per tax, on the sum of the lines carrying it**,
rounded once ("the total tax liable is calculated on the final invoice amount ... split up with
respect to the different tax groups ... rather than the tax calculated on each item", a Zoho
Invoice partner's description; Zoho's own docs do not state the rule — see
``shared/billing-apis.md`` § 10). We round per line, so the two can differ by a few cents: the
mapper computes Zoho's total with Zoho's rule (:func:`zoho_totals`) and, when it differs from
ours, sends the difference as the invoice ``adjustment`` ("Rounding (tax per line)"), which Zoho
adds after tax — Zoho's ``total`` then equals ours to the cent. The connector re-checks Zoho's
``total`` before marking the invoice sent.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.lifecycle import marker, read_marker
from connectors.sdk.money import dumps, loads, lookup_rate, quantity_note, round_money  # dumps/loads: re-exported
from connectors.sdk.money import rate_key as rate_text
from connectors.zoho.settings import ZohoSettings

#: ``invoice_number`` maximum length (https://www.zoho.com/invoice/api/v3/invoices/: "Max-length [100]").
INVOICE_NUMBER_MAX = 100
#: ``reference_number`` maximum length (50, as Zoho Books documents it for the same field; Zoho
#: Invoice's page is silent).
REFERENCE_MAX = 50
#: Line item ``name`` maximum length (Zoho items: 100 characters).
LINE_NAME_MAX = 100
#: Line item ``description`` maximum length (Zoho: 2000 characters).
LINE_DESCRIPTION_MAX = 2000
#: ``adjustment_description`` maximum length.
ADJUSTMENT_DESCRIPTION = "Rounding (tax per line)"
#: Invoice ``notes`` maximum length.
NOTES_MAX = 5000
#: Credit note ``creditnote_number`` maximum length (https://www.zoho.com/invoice/api/v3/credit-notes/).
CREDIT_NOTE_NUMBER_MAX = 100


class MappingError(ValueError):
    """The invoice cannot be sent to Zoho; ``field`` names the Zoho field or ours."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class ZohoPlan:
    """The create body plus what Zoho will compute for it."""

    body: dict[str, Any]
    zoho_sub_total: Decimal
    zoho_tax_total: Decimal
    adjustment: Decimal
    total: Decimal  # = ours = Zoho's total including the adjustment


def _check_len(field_name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise MappingError(field_name, f"{len(value)} characters, Zoho Invoice allows at most {limit}")


def item_total(rate: Decimal, quantity: Decimal, currency: str) -> Decimal:
    """Zoho's line ``item_total``: ``rate × quantity`` rounded half up to the currency's decimals."""
    return round_money(rate * quantity, currency)


def zoho_totals(
    lines: list[tuple[Decimal, Decimal, Decimal]], currency: str, inclusive: bool
) -> tuple[Decimal, Decimal, Decimal]:
    """``(sub_total, tax_total, total_before_adjustment)`` Zoho computes for ``(rate, quantity, tax %)`` lines.

    Tax per tax percentage on the sum of its lines' ``item_total``, rounded once: exclusive
    ``Σ × p / 100`` added; inclusive ``Σ × p / (100 + p)`` contained (``sub_total`` is then net of tax).
    """
    groups: dict[Decimal, Decimal] = {}
    gross = Decimal(0)
    for rate, quantity, pct in lines:
        amount = item_total(rate, quantity, currency)
        gross += amount
        groups[pct] = groups.get(pct, Decimal(0)) + amount
    tax = Decimal(0)
    for pct, base in groups.items():
        if pct:
            tax += round_money(base * pct / (Decimal(100) + pct) if inclusive else base * pct / Decimal(100), currency)
    zero = round_money(Decimal(0), currency)
    if inclusive:
        return round_money(gross - tax, currency) + zero, tax + zero, round_money(gross, currency)
    return round_money(gross, currency), tax + zero, round_money(gross + tax, currency)


def line_to_zoho(
    n: int, line: InvoiceLine, invoice: Invoice, tax_id: str | None
) -> tuple[dict[str, Any], Decimal, Decimal]:
    """One ``line_items`` element and the ``(rate, quantity)`` Zoho will multiply.

    ``rate``/``quantity`` are our unit price and quantity when Zoho's ``item_total`` of them equals
    our line amount (net, or gross for tax-inclusive invoices); otherwise (discounts, unit prices
    with more decimals than the currency) the line is sent as quantity 1 at the line amount with the
    original quantity × price in the description.
    """
    amount = line.total if invoice.tax_inclusive else line.net
    name = (line.description.strip() or line.kind).splitlines()[0]
    if len(name) > LINE_NAME_MAX:
        name = name[: LINE_NAME_MAX - 1] + "…"
    description = line.description
    if line.discount_percent == 0 and item_total(line.unit_price, line.quantity, invoice.currency) == amount:
        rate, quantity = line.unit_price, line.quantity
    else:
        rate, quantity = amount, Decimal(1)
        note = quantity_note(line.quantity, line.unit, line.unit_price, line.discount_percent)
        description = f"{line.description} ({note})"
    _check_len(f"lines[{n}].description", description, LINE_DESCRIPTION_MAX)
    item: dict[str, Any] = {
        "name": name,
        "description": description,
        "rate": rate,
        "quantity": quantity,
        "unit": line.unit,
        "item_order": n,
    }
    if tax_id:
        item["tax_id"] = tax_id
    return item, rate, quantity


def tax_id_for(line: InvoiceLine, tax_ids: Mapping[str, str]) -> str | None:
    """The Zoho ``tax_id`` for the line's rate (``tax_ids`` keyed by :func:`rate_text`); ``None`` for 0 %.

    ``line.tax_type`` (a tenant-mapped code) wins. Raises :class:`MappingError` for a non-zero rate
    with no tax.
    """
    if line.tax_type:
        return line.tax_type
    if line.tax_rate == 0:
        return tax_ids.get("0")
    tax_id = lookup_rate(tax_ids, line.tax_rate)
    if tax_id is not None:
        return tax_id
    raise MappingError(
        "tax_rate",
        f"no Zoho tax for {rate_text(line.tax_rate)}% (map it in billing.settings.tax_ids or create the tax in Zoho)",
    )


def unmapped_rates(invoice: Invoice, tax_ids: Mapping[str, str]) -> set[str]:
    """Rate texts (:func:`rate_text`) of the invoice's taxed lines that neither ``tax_ids`` nor a ``tax_type`` maps."""
    missing = set()
    for line in invoice.lines:
        try:
            tax_id_for(line, tax_ids)
        except MappingError:
            missing.add(rate_text(line.tax_rate))
    return missing


def taxes_by_rate(taxes: Any) -> dict[str, str]:
    """``taxes`` of ``GET /settings/taxes`` (``[{"tax_id", "tax_percentage"}]``) as rate text -> ``tax_id``.

    The first tax of each percentage wins; malformed entries are skipped.
    """
    out: dict[str, str] = {}
    for tax in taxes if isinstance(taxes, list) else []:
        pct = amount(tax.get("tax_percentage")) if isinstance(tax, dict) else None
        if pct is not None and tax.get("tax_id"):
            out.setdefault(rate_text(pct), str(tax["tax_id"]))
    return out


def invoice_to_zoho(
    invoice: Invoice,
    settings: ZohoSettings,  # noqa: ARG001 - part of the mapper's signature; no setting shapes the body today
    *,
    customer_id: str,
    tax_ids: Mapping[str, str],
) -> ZohoPlan:
    """The ``POST /invoice/v3/invoices`` body for ``invoice`` (pure; :class:`MappingError` names the field).

    ``tax_ids`` maps rate texts to the organisation's Zoho ``tax_id`` (from settings or
    ``GET /settings/taxes``). Shape::

        {"customer_id", "invoice_number", "reference_number", "date": "YYYY-MM-DD", "due_date",
         "is_inclusive_tax": bool, "line_items": [...], ["adjustment", "adjustment_description"], "notes"}

    ``notes``: :func:`notes_for` (legal notes, then the ownership marker).
    """
    if not invoice.lines:
        raise MappingError("lines", "an invoice needs at least one line")
    if not re.fullmatch(r"[A-Z]{3}", invoice.currency):
        raise MappingError("currency", f"{invoice.currency!r} is not an ISO 4217 code")
    if not invoice.invoice_number.strip():
        raise MappingError("invoice_number", "empty")
    _check_len("invoice_number", invoice.invoice_number, INVOICE_NUMBER_MAX)
    reference = invoice.reference or ""
    _check_len("reference_number", reference, REFERENCE_MAX)
    items: list[dict[str, Any]] = []
    zoho_lines: list[tuple[Decimal, Decimal, Decimal]] = []
    for n, line in enumerate(invoice.lines, start=1):
        try:
            tax_id = tax_id_for(line, tax_ids)
        except MappingError as exc:
            raise MappingError(f"lines[{n}].tax_rate", str(exc).split(": ", 1)[1]) from None
        item, rate, quantity = line_to_zoho(n, line, invoice, tax_id)
        items.append(item)
        zoho_lines.append((rate, quantity, line.tax_rate if tax_id else Decimal(0)))
    sub_total, tax_total, zoho_total = zoho_totals(zoho_lines, invoice.currency, invoice.tax_inclusive)
    adjustment = invoice.total - zoho_total
    body: dict[str, Any] = {
        "customer_id": customer_id,
        "invoice_number": invoice.invoice_number,
        "reference_number": reference,
        "date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "is_inclusive_tax": invoice.tax_inclusive,
        "line_items": items,
    }
    if adjustment:
        body["adjustment"] = adjustment
        body["adjustment_description"] = ADJUSTMENT_DESCRIPTION
    body["notes"] = notes_for(invoice)
    return ZohoPlan(
        body=body, zoho_sub_total=sub_total, zoho_tax_total=tax_total, adjustment=adjustment, total=invoice.total
    )


def notes_for(invoice: Invoice) -> str:
    """The invoice ``notes``: its legal notes, one per line, then our ownership marker on the last line.

    Raises :class:`MappingError` (``notes``) beyond Zoho's 5000 characters.
    """
    notes = "\n".join([*invoice.legal_notes, marker(invoice.invoice_key)])
    _check_len("notes", notes, NOTES_MAX)
    return notes


def credit_note_to_zoho(current: Mapping[str, Any], number: str, *, issued: str, reason: str) -> dict[str, Any]:
    """``POST /creditnotes`` body crediting the Zoho invoice ``current`` (as ``GET /invoices/{id}`` returns it) in full.

    The invoice's lines are copied as Zoho holds them (``name``, ``description``, ``rate``,
    ``quantity``, ``unit``, ``tax_id``, ``item_order``) with its ``adjustment``, so Zoho computes the
    same sub-total, tax and total (same rates, same tax groups, same roundings). ``number`` is
    ``creditnote_number`` (sent with ``ignore_auto_number_generation=true``), ``reference_number`` the
    invoice's number, ``notes`` ``reason``; ``issued`` the ``date`` (``YYYY-MM-DD``). Raises
    :class:`MappingError` for a number over 100 characters.
    """
    _check_len("creditnote_number", number, CREDIT_NOTE_NUMBER_MAX)
    items = []
    for n, raw in enumerate(current.get("line_items") or [], start=1):
        item: dict[str, Any] = {
            "name": raw.get("name") or "",
            "description": raw.get("description") or "",
            "rate": raw.get("rate"),
            "quantity": raw.get("quantity"),
            "unit": raw.get("unit") or "",
            "item_order": raw.get("item_order", n),
        }
        if raw.get("tax_id"):
            item["tax_id"] = raw["tax_id"]
        items.append(item)
    body: dict[str, Any] = {
        "customer_id": current.get("customer_id"),
        "creditnote_number": number,
        "reference_number": str(current.get("invoice_number") or "")[:REFERENCE_MAX],
        "date": issued,
        "is_inclusive_tax": bool(current.get("is_inclusive_tax", False)),
        "line_items": items,
        "notes": reason[:NOTES_MAX],
    }
    adjustment = amount(current.get("adjustment"))
    if adjustment:
        body["adjustment"] = adjustment
        body["adjustment_description"] = current.get("adjustment_description") or ADJUSTMENT_DESCRIPTION
    return body


def contact_to_zoho(name: str, email: str | None) -> dict[str, Any]:
    """``POST /contacts`` body: a customer named ``name``, with ``email`` as its primary contact person."""
    body: dict[str, Any] = {"contact_name": name, "contact_type": "customer"}
    if email:
        body["contact_persons"] = [{"email": email, "is_primary_contact": True}]
    return body


def email_to_zoho(invoice: Invoice, to: str, subject: str | None) -> dict[str, Any]:
    """``POST /invoices/{id}/email`` body: to ``to``, ``subject`` or ``Invoice <number>``."""
    return {
        "to_mail_ids": [to],
        "subject": subject or f"Invoice {invoice.invoice_number}",
        "body": f"Please find attached invoice {invoice.invoice_number} ({invoice.reference}).",
    }


def amount(value: Any) -> Decimal | None:
    """A Zoho amount as :class:`Decimal`: a JSON number (:func:`loads` gives ``Decimal`` or ``int``) or its text;
    ``None`` when absent or unreadable."""
    if isinstance(value, Decimal | int | str) and not isinstance(value, bool):
        with contextlib.suppress(ArithmeticError):  # decimal.InvalidOperation: not a number
            return Decimal(value)
    return None


def invoice_from_zoho(raw: Mapping[str, Any]) -> ExternalInvoice:
    """:class:`ExternalInvoice` of a Zoho invoice object (``GET /invoices/{id}``).

    ``total`` and ``paid`` (``payment_made``: payments received, credits applied not counted) as
    :class:`Decimal`, ``status`` (``draft``, ``sent``, ``overdue``, ``partially_paid``, ``paid``,
    ``void``...), ``marker`` read from ``notes`` (``None`` in a list row, which has no ``notes``).
    """
    return ExternalInvoice(
        external_id=str(raw["invoice_id"]),
        number=str(raw.get("invoice_number")),
        total=amount(raw.get("total")),
        status=raw.get("status"),
        marker=read_marker(raw.get("notes")),
        paid=amount(raw.get("payment_made")),
    )


__all__ = [
    "ADJUSTMENT_DESCRIPTION",
    "CREDIT_NOTE_NUMBER_MAX",
    "INVOICE_NUMBER_MAX",
    "LINE_DESCRIPTION_MAX",
    "LINE_NAME_MAX",
    "REFERENCE_MAX",
    "MappingError",
    "ZohoPlan",
    "amount",
    "contact_to_zoho",
    "credit_note_to_zoho",
    "dumps",
    "email_to_zoho",
    "invoice_from_zoho",
    "invoice_to_zoho",
    "item_total",
    "line_to_zoho",
    "loads",
    "notes_for",
    "rate_text",
    "tax_id_for",
    "taxes_by_rate",
    "unmapped_rates",
    "zoho_totals",
]
