"""Pure mapping between :class:`connectors.sdk.invoice.Invoice` and the InvoiceXpress API v2 (Portugal).

Nothing here does I/O. :func:`invoice_to_invoicexpress` builds the body of
``POST https://{account}.app.invoicexpress.com/invoices.json`` (docs
https://invoicexpress.com/api-v2/invoices/create): ``{"invoice": {"date", "due_date", "reference",
"observations", "client": {...}, "items": [...], "tax_exemption", "sequence_id"}}``.

Facts the mapping relies on:

* Dates are ``dd/mm/yyyy``; ``date``, ``due_date``, ``client`` (``name``, ``code``) and ``items``
  (``name``, ``description``, ``unit_price``, ``quantity``) are required (create page; error list
  https://invoicexpress.com/api-v2/documentation/error-codes-responses).
* InvoiceXpress numbers invoices from its AT-registered sequence (``sequence_id``; the number and
  ATCUD come back on finalisation), so our invoice number travels in ``reference``
  (:func:`reference_of`) and the connector finds it again by listing. ``observations`` (printed,
  returned on reads) carries the work-order reference, the legal notes and, on its last line, our
  ownership marker (:func:`observations_of`).
* Clients and items are matched **by name** (clients by ``code`` first): unknown ones are
  created and an existing item **is updated** with the values sent. So item ``name`` is a stable
  catalogue name per line kind (``settings.item_names``) and our line text goes in ``description``
  — sending the line text as the name would grow (and rewrite) the account's item catalogue.
* ``tax: {"name": "IVA23"}`` names the account's tax; an unknown name silently falls back to the
  account's default tax (https://docs.invoicexpress.com/taxes), hence the explicit
  ``settings.tax_names`` mapping and the connector's read-back of the draft total before finalising.
* ``tax_exemption`` (an AT code such as ``M07``/``M40``) is required when any item is VAT-exempt;
  we refuse to send a 0 % line without one (:class:`~connectors.sdk.errors.PermanentError` naming the line).
* ``quantity`` must be a number greater than 0 (documented error "Quantity must be a number greater
  than 0"); amounts are sent as decimal strings (as the community clients do).

Rounding: InvoiceXpress does not document it. The response carries a ``tax_amount`` per item and
document ``sum``/``discount``/``before_taxes``/``taxes``/``total``. :func:`line_layout` makes every
item's subtotal, discount and net whole numbers of cents (otherwise the line is folded to quantity
1 at its net amount, the original quantity and price in the description), so the only possible
difference is VAT rounding per item vs per document; :func:`ix_totals` predicts both and the
connector checks the prediction (``settings.rounding_method``) and, authoritatively, the draft's
own ``total`` before it finalises anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, NamedTuple

from connectors.invoicexpress.settings import DEFAULT_TAX_NAMES, EXEMPTION_CODE_PATTERN, InvoiceXpressSettings
from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.lifecycle import marker, read_marker
from connectors.sdk.money import amount_or_none, dumps, loads, rate_key

_CENT = Decimal("0.01")

# Field limits, counted in characters. InvoiceXpress publishes none; these are the SAF-T (PT)
# 1.04_01 limits every certified system must respect when it exports the document
# (Line/Description and ProductDescription 200, Customer/CompanyName 100, CustomerTaxID 30) and a
# conservative 50 for ``reference`` (our numbers are far shorter).
LIMITS: dict[str, int] = {
    "reference": 50,
    "client.name": 100,
    "client.code": 30,
    "client.fiscal_id": 30,
    "items[].name": 200,
    "items[].description": 200,
    "observations": 2000,
}

#: Catalogue item names per line kind (``settings.item_names`` overrides them).
DEFAULT_ITEM_NAMES: dict[str, str] = {
    "labour": "Mão de obra",
    "travel": "Deslocação",
    "call_out": "Taxa de deslocação",
    "part": "Material",
    "expense": "Despesas",
    "quote": "Serviços orçamentados",
    "discount": "Desconto",
}


# --------------------------------------------------------------------------- helpers
def q2(value: Decimal) -> Decimal:
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def dec_text(value: Decimal) -> str:
    """Exact text of a decimal (``Decimal("42.00")`` -> ``"42.00"``; never exponent notation)."""
    if not value.is_finite():
        raise ValueError(f"non-finite amount {value!r}")
    return format(value, "f")


def ix_date(d: date) -> str:
    """``dd/mm/yyyy``."""
    return d.strftime("%d/%m/%Y")


def parse_ix_date(text: str) -> date:
    day, month, year = (int(p) for p in str(text).split("/"))
    return date(year, month, day)


# --------------------------------------------------------------------------- layout and totals
class LineLayout(NamedTuple):
    """How one of our lines is sent as an item (``folded``: as quantity 1 at its net amount)."""

    quantity: Decimal
    unit_price: Decimal
    discount: Decimal
    net: Decimal
    folded: bool


def fold_note(line: InvoiceLine, *, tax_inclusive: bool) -> str:
    """``"(3.3333 h × 42.00)"`` (+ ``" IVA incl."`` / ``" − 10%"``) appended to a folded line's description."""
    vat = " IVA incl." if tax_inclusive else ""
    discount = f" − {dec_text(line.discount_percent.normalize())}%" if line.discount_percent else ""
    return f"({dec_text(line.quantity)} {line.unit} × {dec_text(line.unit_price)}{vat}{discount})"


def line_layout(line: InvoiceLine, *, tax_inclusive: bool) -> LineLayout:
    """Quantity/price/discount sent for ``line`` so that every per-item amount is exact to the cent.

    Kept as is when ``quantity > 0``, the price has at most 2 decimals, ``quantity × price`` and its
    discount are whole cents and ``quantity × price − discount == line.net``. Otherwise folded:
    quantity 1 at ``line.net`` (tax-inclusive prices always fold: InvoiceXpress prices are net).
    Negative lines raise :class:`PermanentError` (PT invoices reduce with discounts or credit notes).
    """
    if line.net < 0 or line.unit_price < 0:
        raise PermanentError(
            f"line {line.description!r}: negative amount {line.net} cannot be sent to InvoiceXpress "
            "(use a discount percentage or a credit note)"
        )
    if (
        not tax_inclusive
        and line.quantity > 0
        and 0 <= line.discount_percent <= 100
        and line.unit_price == line.unit_price.quantize(_CENT)
    ):
        gross = line.quantity * line.unit_price
        discount = gross * line.discount_percent / Decimal(100)
        if gross == q2(gross) and discount == q2(discount) and gross - discount == line.net:
            return LineLayout(line.quantity, line.unit_price, line.discount_percent, line.net, False)
    return LineLayout(Decimal(1), line.net, Decimal(0), line.net, True)


@dataclass(frozen=True)
class IxTotals:
    sum: Decimal
    discount: Decimal
    before_taxes: Decimal
    taxes: Decimal
    total: Decimal


def ix_totals(rows: list[tuple[Decimal, Decimal, Decimal, Decimal]], method: str) -> IxTotals:
    """Totals of ``rows`` = ``[(quantity, unit_price, discount %, tax %), ...]``.

    Per item: subtotal = round(q × p), discount = round(subtotal × d), net = subtotal − discount.
    ``"line"``: VAT = Σ round(net × rate); ``"document"``: VAT = round(Σ net × rate).
    """
    total_sum = total_discount = Decimal("0.00")
    tax_lines = Decimal(0)
    tax_raw = Decimal(0)
    for qty, price, disc, rate in rows:
        subtotal = q2(qty * price)
        discount = q2(subtotal * disc / Decimal(100))
        net = subtotal - discount
        total_sum += subtotal
        total_discount += discount
        tax_lines += q2(net * rate / Decimal(100))
        tax_raw += net * rate / Decimal(100)
    taxes = tax_lines if method == "line" else q2(tax_raw)
    before = total_sum - total_discount
    return IxTotals(total_sum, total_discount, before, taxes, before + taxes)


def expected_total(body: Mapping[str, Any], tax_rates: Mapping[str, Decimal], method: str) -> Decimal:
    """:func:`ix_totals` ``.total`` of a create body; ``tax_rates``: tax name -> percentage."""
    rows = []
    for item in body["invoice"]["items"]:
        rate = tax_rates[item["tax"]["name"]]
        rows.append((Decimal(item["quantity"]), Decimal(item["unit_price"]), Decimal(item.get("discount") or 0), rate))
    return ix_totals(rows, method).total


# --------------------------------------------------------------------------- Invoice -> InvoiceXpress
def tax_name_for(line: InvoiceLine, settings: InvoiceXpressSettings) -> str:
    """The account tax name for the line's rate (:meth:`InvoiceXpressSettings.tax_name_of`): ``line.tax_type``
    unless it is an AT exemption code, else ``settings.tax_names[rate]``."""
    name = settings.tax_name_of(line.tax_rate, line.tax_type)
    if name is None:
        raise PermanentError(
            f"line {line.description!r}: no InvoiceXpress tax for VAT {rate_key(line.tax_rate)}% "
            "(add it to billing.settings.tax_names)"
        )
    return name


def check_length(field: str, value: str | None, limit: int, what: str) -> None:
    """:class:`PermanentError` naming ``field`` when ``value`` has more than ``limit`` characters."""
    if value is not None and len(value) > limit:
        raise PermanentError(f"{what}: InvoiceXpress field {field} is {len(value)} characters, {limit} max")


def invoice_to_invoicexpress(
    invoice: Invoice,
    settings: InvoiceXpressSettings,
    *,
    client_email: str | None = None,
    client_fiscal_id: str | None = None,
) -> dict[str, Any]:
    """The body of ``POST /invoices.json`` for ``invoice`` (always a draft; finalising is a separate call).

    ``client.code`` is the mapped ``contact_id`` or our client id (InvoiceXpress matches clients by
    code, then name). Raises :class:`PermanentError` naming the field or line: limits
    (:data:`LIMITS`), a 0 % line without an exemption reason (the first 0 % line's AT code in
    ``tax_type``, else ``settings.tax_exemption``), an unmapped VAT rate, a negative
    line, a currency other than ``settings.currency``, no lines.
    """
    what = f"invoice {invoice.invoice_number}"
    if invoice.currency.upper() != settings.currency.upper():
        raise PermanentError(
            f"{what}: currency {invoice.currency} differs from the account currency {settings.currency}"
        )
    if not invoice.lines:
        raise PermanentError(f"{what}: no lines")
    reference = reference_of(invoice.invoice_number)
    check_length("reference", reference, LIMITS["reference"], what)
    client: dict[str, Any] = {"name": invoice.client_name, "code": invoice.contact_id or invoice.client_id}
    if client_email:
        client["email"] = client_email
    if client_fiscal_id:
        client["fiscal_id"] = client_fiscal_id
    for key in ("name", "code", "fiscal_id"):
        check_length(f"client.{key}", client.get(key), LIMITS[f"client.{key}"], what)
    items: list[dict[str, Any]] = []
    exempt_lines: list[str] = []
    exemption: str | None = None
    for index, line in enumerate(invoice.lines):
        label = f"{what} line {index + 1} ({line.description[:40]!r})"
        layout = line_layout(line, tax_inclusive=invoice.tax_inclusive)
        description = line.description
        if layout.folded:
            description = f"{description} {fold_note(line, tax_inclusive=invoice.tax_inclusive)}"
        name = settings.item_names.get(line.kind) or DEFAULT_ITEM_NAMES.get(line.kind) or line.kind
        check_length("items[].name", name, LIMITS["items[].name"], label)
        check_length("items[].description", description, LIMITS["items[].description"], label)
        item: dict[str, Any] = {
            "name": name,
            "description": description,
            "unit_price": dec_text(layout.unit_price),
            "quantity": dec_text(layout.quantity),
        }
        if layout.discount:
            item["discount"] = dec_text(layout.discount)
        item["tax"] = {"name": tax_name_for(line, settings)}
        if line.tax_rate == 0:
            if not exempt_lines:  # one reason per document: the first 0 % line's (one client, one treatment)
                exemption = settings.tax_exemption_of(line.tax_type)
            exempt_lines.append(label)
        items.append(item)
    body: dict[str, Any] = {
        "date": ix_date(invoice.issue_date),
        "due_date": ix_date(invoice.due_date),
        "reference": reference,
        "client": client,
        "items": items,
    }
    observations = observations_of(invoice)
    check_length("observations", observations, LIMITS["observations"], what)
    body["observations"] = observations
    if exempt_lines:
        if not exemption:
            raise PermanentError(
                f"{exempt_lines[0]}: 0% VAT needs a tax exemption reason (AT code such as M07 or M40) and none is "
                "configured (billing.settings.tax_exemption, or the tenant's tax.exempt_tax_type / "
                "reverse_charge_tax_type); InvoiceXpress requires tax_exemption when an item is exempt"
            )
        body["tax_exemption"] = exemption
    if settings.sequence_id:
        body["sequence_id"] = settings.sequence_id
    return {"invoice": body}


def observations_of(invoice: Invoice) -> str:
    """The ``observations`` of an invoice: the work-order reference, its legal notes (one per line),
    then our ownership marker (``broker:<invoice key>``) on the last line.

    ``observations`` is the free text InvoiceXpress prints on the document and returns with it on
    ``GET /invoices/{id}.json`` and in listings (create page; ``Invoice.Observations`` in the
    community client go-invoicexpress), so :func:`invoice_from_invoicexpress` reads the marker back
    from there. ``reference`` carries our invoice number (the look-up key), hence not the marker.
    """
    lines = [text.strip() for text in [invoice.reference or "", *invoice.legal_notes] if text.strip()]
    return "\n".join([*lines, marker(invoice.invoice_key)])


def credit_note_to_invoicexpress(
    doc: Mapping[str, Any], *, reference: str, issued: date, observations: str
) -> dict[str, Any]:
    """The body of ``POST /credit_notes.json`` crediting the final invoice ``doc`` (its ``GET``) in full.

    The request root is ``"invoice"``, the key the API documents for every document type
    (go-invoicexpress ``invoices.go``; the OCA module ``l10n_pt_account_invoicexpress`` posts credit
    notes the same way); ``owner_invoice_id`` names the invoice it corrects (both sources). The items
    are the invoice's own (``name``, ``description``, ``unit_price``, ``quantity``, ``discount``,
    ``tax.name``), with its ``tax_exemption``, client (``code``, ``name``) and ``sequence_id``, so
    InvoiceXpress computes the same ``total``. ``date`` = ``due_date`` = ``issued``, never before
    the invoice's date (``dd/mm/yyyy``); ``reference`` our credit-note number; ``observations`` the
    reason and our marker.
    """
    invoice_date = parse_ix_date(str(doc["date"]))
    when = ix_date(max(issued, invoice_date))
    items = []
    for item in doc.get("items") or []:
        row: dict[str, Any] = {
            "name": item["name"],
            "description": item.get("description") or "",
            "unit_price": dec_text(Decimal(str(item["unit_price"]))),
            "quantity": dec_text(Decimal(str(item["quantity"]))),
        }
        discount = Decimal(str(item.get("discount") or 0))
        if discount:
            row["discount"] = dec_text(discount)
        tax = item.get("tax")
        if isinstance(tax, Mapping) and tax.get("name"):
            row["tax"] = {"name": str(tax["name"])}
        items.append(row)
    raw_client = doc.get("client")
    client: Mapping[str, Any] = raw_client if isinstance(raw_client, Mapping) else {}
    body: dict[str, Any] = {
        "date": when,
        "due_date": when,
        "reference": reference,
        "observations": observations,
        "client": {"name": client.get("name") or "", "code": client.get("code") or ""},
        "items": items,
        "owner_invoice_id": int(doc["id"]),
    }
    if doc.get("tax_exemption"):
        body["tax_exemption"] = doc["tax_exemption"]
    if doc.get("sequence_id"):
        body["sequence_id"] = str(doc["sequence_id"])
    return {"invoice": body}


# --------------------------------------------------------------------------- InvoiceXpress -> ours
def reference_of(invoice_number: str) -> str:
    """The ``reference`` we store for an invoice number (identity: the number itself)."""
    return invoice_number


def invoice_from_invoicexpress(doc: Mapping[str, Any], *, paid: Decimal | None = None) -> ExternalInvoice:
    """:class:`ExternalInvoice` from an ``invoice`` object: id, ``sequence_number`` (empty while a
    draft), ``total`` as Decimal, ``status`` (``draft``, ``final``, ``settled``, ``canceled``...),
    ``marker`` read from ``observations`` (``None`` without one), ``paid`` as given."""
    status = str(doc.get("status") or "")
    number = str(doc.get("sequence_number") or "")
    if status == "draft" or number == "draft":
        number = ""
    amount = amount_or_none(doc.get("total"))  # not a number: reported as unknown
    return ExternalInvoice(
        external_id=str(doc["id"]),
        number=number,
        total=amount,
        status=status,
        marker=read_marker(str(doc.get("observations") or "")),
        paid=paid,
    )


def error_messages(body: Any) -> list[str]:
    """The messages of an InvoiceXpress error body, in order.

    Documented shape ``{"errors": [{"error": "…"}]}``
    (https://invoicexpress.com/api-v2/documentation/error-codes-responses); also ``{"errors": {field:
    [...]}}`` (as ``"field: message"``) and a top-level ``"error"``/``"message"`` text.
    """
    if not isinstance(body, dict):
        return []
    errors = body.get("errors")
    out: list[str] = []
    if isinstance(errors, list):
        out += [str(e.get("error") or e.get("message") or e) if isinstance(e, dict) else str(e) for e in errors]
    elif isinstance(errors, dict):
        for key, value in errors.items():
            out += [f"{key}: {msg}" for msg in (value if isinstance(value, list) else [value])]
    return out + [body[key] for key in ("error", "message") if isinstance(body.get(key), str)]


__all__ = [
    "DEFAULT_ITEM_NAMES",
    "DEFAULT_TAX_NAMES",
    "EXEMPTION_CODE_PATTERN",
    "LIMITS",
    "IxTotals",
    "LineLayout",
    "check_length",
    "credit_note_to_invoicexpress",
    "dumps",
    "error_messages",
    "expected_total",
    "fold_note",
    "invoice_from_invoicexpress",
    "invoice_to_invoicexpress",
    "ix_date",
    "ix_totals",
    "line_layout",
    "loads",
    "observations_of",
    "parse_ix_date",
    "q2",
    "reference_of",
]
