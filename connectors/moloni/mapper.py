"""Pure mapping between :class:`connectors.sdk.invoice.Invoice` and the Moloni (Portugal) REST API v1.

Nothing here does I/O. :func:`invoice_to_moloni` builds the fields of
``POST https://api.moloni.pt/v1/invoices/insert/`` (docs https://moloni.pt/dev/documents/invoices/insert,
field list as in the official WooCommerce plugin ``moloni-pt/woocommerce`` ``src/Controllers/Documents.php``
and ``OrderProduct.php``); :func:`form_fields` encodes a nested payload the way PHP's
``http_build_query`` does (``products[0][taxes][0][tax_id]=…``), which is how Moloni reads its
form-encoded bodies; :func:`parse_form` is the inverse (used by the emulator).

Facts the mapping relies on:

* Moloni numbers documents itself from an AT-registered series (``document_set_id``); our
  invoice number therefore travels in ``your_reference`` and is what :func:`reference_of` and the
  connector's lookup (``invoices/getAll`` by ``your_reference``) use. ``our_reference`` carries the
  human work-order reference. ``notes`` (printed as the document's observations, returned by
  ``getOne``) carries the invoice's legal notes and, on its last line, our ownership marker
  (:func:`notes_of`).
* ``products[].discount`` is a percentage 0–100; ``products[].price`` is net of VAT.
* ``exemption_reason`` (an AT code such as ``M07``) is mandatory on a line whose ``taxes`` are
  empty or hold no VAT / a zero VAT ("O campo exemption_reason … torna-se obrigatório caso o
  conjunto taxes esteja vazio … ou que estes tenham valor zero", insert page). We refuse to send
  such a line without one (:class:`~connectors.sdk.errors.PermanentError` naming the line).
* ``taxes[]``: ``tax_id`` (the company's tax, ``taxes/getAll``), ``value`` (the rate), ``order``,
  ``cumulative`` — the plugin's shape.

Rounding (https://www.moloni.pt/suporte/como-funciona-o-metodo-de-calculo-nos-valores-dos-documentos,
changelog id 4071): each company chooses a *método de cálculo* — **à linha** (VAT computed and
rounded per line; the document total is the sum of rounded lines, exactly our rule) or **ao
documento** (the default for new companies: every value is used unrounded and only the document
totals are rounded to 2 decimals). :func:`line_layout` makes every line's net amount a whole
number of cents (a line whose ``qty × price × (1 − discount)`` is not is sent as quantity 1 at its
net amount, the original quantity and price in the line ``summary``), so both methods agree on
the lines; :func:`moloni_totals` predicts the document totals under either method so the connector
can refuse, before sending, an invoice whose total Moloni would compute differently from ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qsl, quote

from connectors.moloni.settings import (
    EXEMPTION_CODE_PATTERN,
    FINAL_CONSUMER_VAT,
    MoloniCustomerDefaults,
    MoloniSettings,
)
from connectors.sdk.contacts import ContactQuery
from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.lifecycle import marker, read_marker
from connectors.sdk.money import amount_or_none, loads, lookup_rate, rate_key

_CENT = Decimal("0.01")

# Field limits, counted in characters. Moloni does not publish its column sizes; these are the
# SAF-T (PT) 1.04_01 limits the certified software must respect when it exports the document
# (Line/Description and ProductDescription: 200; Customer/CompanyName: 100) and, for the
# references, a conservative 50 (not documented by Moloni; our numbers are far shorter).
LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "your_reference": 50,
        "our_reference": 50,
        "products[].name": 200,
        "products[].summary": 500,
        "notes": 2000,
    }
)


# --------------------------------------------------------------------------- small helpers
def q2(value: Decimal) -> Decimal:
    """Round half-up to cents."""
    return value.quantize(_CENT, rounding=ROUND_HALF_UP)


def dec_text(value: Decimal | int) -> str:
    """Exact text of a decimal for a form field (``Decimal("42.00")`` -> ``"42.00"``, never exponent notation)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if not value.is_finite():
        raise ValueError(f"non-finite amount {value!r}")
    return format(value, "f")


def reference_of(invoice_number: str) -> str:
    """The ``your_reference`` we store for an invoice number (identity: the number itself)."""
    return invoice_number


def notes_of(invoice: Invoice) -> str:
    """The ``notes`` of an invoice: its legal notes, one per line, then our ownership marker on the last line.

    ``notes`` is the free text Moloni prints on the document ("Observações") and keeps with it:
    ``invoices/getOne`` returns it (``DocumentDetailed.notes``), so :func:`invoice_from_moloni` reads the
    marker (:func:`connectors.sdk.lifecycle.marker`, ``broker:<invoice key>``) back from there. The
    marker is not put in ``our_reference``: that field carries the work-order reference people read
    ("N/ Referência"), its length is undocumented (we allow 50) and a marker with a long tenant or
    document id would not fit.
    """
    lines = [n.strip() for n in invoice.legal_notes if n.strip()]
    return "\n".join([*lines, marker(invoice.invoice_key)])


def check_length(field: str, value: str | None, limit: int, what: str) -> None:
    """:class:`PermanentError` naming ``field`` when ``value`` has more than ``limit`` characters."""
    if value is not None and len(value) > limit:
        raise PermanentError(f"{what}: Moloni field {field} is {len(value)} characters, {limit} max")


# --------------------------------------------------------------------------- line layout
@dataclass(frozen=True)
class LineLayout:
    """How one of our lines is sent: ``qty`` × ``price`` less ``discount`` % equals ``net`` exactly."""

    qty: Decimal
    price: Decimal
    discount: Decimal
    net: Decimal
    folded: bool


def line_layout(line: InvoiceLine, *, tax_inclusive: bool) -> LineLayout:
    """The quantity/price/discount sent for ``line`` so that Moloni's line net is ``line.net`` exactly.

    When ``quantity × unit_price × (100 − discount)/100`` already equals ``line.net`` (no rounding
    involved) the line goes as is. Otherwise — a product with more than 2 decimals, a zero or
    negative quantity, or a tax-inclusive price (Moloni prices are net) — it is *folded*: quantity
    1 at price ``line.net`` without discount, and the original quantity, unit and price are shown
    in the line summary (:func:`fold_summary`). Raises :class:`PermanentError` for a negative net
    amount: PT invoices express reductions as discounts or credit notes, and Moloni prices are ≥ 0.
    """
    if line.net < 0 or line.unit_price < 0:
        raise PermanentError(
            f"line {line.description!r}: negative amount {line.net} cannot be sent to Moloni "
            "(prices must be >= 0; use a discount percentage or a credit note)"
        )
    if not tax_inclusive and line.quantity > 0 and 0 <= line.discount_percent <= 100:
        exact = line.quantity * line.unit_price * (Decimal(100) - line.discount_percent) / Decimal(100)
        if exact == line.net:
            return LineLayout(line.quantity, line.unit_price, line.discount_percent, line.net, False)
    return LineLayout(Decimal(1), line.net, Decimal(0), line.net, True)


def fold_summary(line: InvoiceLine, *, tax_inclusive: bool) -> str:
    """``"3.3333 h × 42.00"`` (+ ``" (IVA incl.)"`` / ``" − 10% desc."``) for a folded line."""
    text = f"{dec_text(line.quantity)} {line.unit} × {dec_text(line.unit_price)}"
    if tax_inclusive:
        text += " (IVA incl.)"
    if line.discount_percent:
        text += f" − {dec_text(line.discount_percent.normalize())}% desc."
    return text


# --------------------------------------------------------------------------- totals
@dataclass(frozen=True)
class MoloniTotals:
    """Document totals as Moloni computes them (``net_value`` is the amount payable)."""

    gross_value: Decimal
    comercial_discount_value: Decimal
    taxes_value: Decimal
    net_value: Decimal


def moloni_totals(lines: list[tuple[Decimal, Decimal, Decimal, Decimal]], method: str) -> MoloniTotals:
    """Totals of ``lines`` = ``[(qty, price, discount %, tax rate %), ...]`` by Moloni's ``method``.

    ``"line"`` (arredondamento à linha): per line, net = round(qty × price × (1 − d)), VAT =
    round(net × rate); totals are sums of the rounded values. ``"document"`` (arredondamento ao
    documento): every value unrounded, the document totals rounded once (VAT = round(Σ net × rate)).
    """
    gross_sum = Decimal(0)
    discount_sum = Decimal(0)
    net_sum = Decimal(0)
    tax_sum = Decimal(0)
    for qty, price, discount, rate in lines:
        gross = qty * price
        disc = gross * discount / Decimal(100)
        net = gross - disc
        if method == "line":
            gross, net = q2(gross), q2(net)
            disc = gross - net
            tax = q2(net * rate / Decimal(100))
        else:
            tax = net * rate / Decimal(100)
        gross_sum += gross
        discount_sum += disc
        net_sum += net
        tax_sum += tax
    taxes = q2(tax_sum)
    return MoloniTotals(
        gross_value=q2(gross_sum),
        comercial_discount_value=q2(discount_sum),
        taxes_value=taxes,
        net_value=q2(net_sum) + taxes,
    )


def predicted_totals(payload: Mapping[str, Any], tax_rates: Mapping[int, Decimal], method: str) -> MoloniTotals:
    """:func:`moloni_totals` of an insert payload (``tax_rates``: tax_id -> percentage)."""
    rows = []
    for product in payload["products"]:
        rate = sum((tax_rates.get(int(t["tax_id"]), Decimal(0)) for t in product.get("taxes") or []), Decimal(0))
        rows.append((Decimal(product["qty"]), Decimal(product["price"]), Decimal(product["discount"]), rate))
    return moloni_totals(rows, method)


def payload_totals(payload: Mapping[str, Any], method: str) -> MoloniTotals:
    """:func:`moloni_totals` of an :func:`invoice_to_moloni` payload (rates from its ``taxes[].value``)."""
    rows = [
        (p["qty"], p["price"], p["discount"], sum((t["value"] for t in p.get("taxes") or []), Decimal(0)))
        for p in payload["products"]
    ]
    return moloni_totals(rows, method)


# --------------------------------------------------------------------------- Invoice -> Moloni
def tax_id_for(line: InvoiceLine, settings: MoloniSettings) -> int | None:
    """Moloni ``tax_id`` of a line's VAT rate (:meth:`MoloniSettings.tax_id_of`: ``line.tax_type`` when it
    is a number, else ``settings.tax_ids[rate]``); ``None`` for a 0 % line. :class:`PermanentError`
    when a non-zero rate has no mapping."""
    if line.tax_rate == 0:
        return None
    tax_id = settings.tax_id_of(line.tax_rate, line.tax_type)
    if tax_id is None:
        raise PermanentError(
            f"line {line.description!r}: no Moloni tax for VAT {rate_key(line.tax_rate)}% "
            f"(add it to billing.settings.tax_ids; ids from taxes/getAll)"
        )
    return tax_id


def product_id_for(line: InvoiceLine, settings: MoloniSettings) -> int:
    """The Moloni ``product_id`` of a line: ``settings.product_ids[line.kind]``, else ``default_product_id``."""
    product_id = settings.product_ids.get(line.kind, settings.default_product_id)
    if product_id is None:
        raise PermanentError(
            f"line {line.description!r}: no Moloni product for line kind {line.kind!r} "
            "(set billing.settings.product_ids or default_product_id)"
        )
    return int(product_id)


def invoice_to_moloni(invoice: Invoice, settings: MoloniSettings, *, customer_id: int) -> dict[str, Any]:
    """The fields of ``invoices/insert`` for ``invoice`` (always ``status`` 0 = draft; closing is a separate step).

    Shape (amounts as :class:`~decimal.Decimal`, encode with :func:`form_fields`)::

        {"company_id", "date": "YYYY-MM-DD", "expiration_date", "document_set_id", "customer_id",
         "your_reference": <our invoice number>, "our_reference": <work-order reference>,
         "notes": <legal notes + ownership marker, notes_of()>, "status": 0,
         "products": [{"product_id", "name", "summary", "qty", "price", "discount", "order",
                       "taxes": [{"tax_id", "value", "order", "cumulative"}] | "exemption_reason"}]}

    Raises :class:`PermanentError` naming the field or the line: a field over its limit
    (:data:`LIMITS`), a 0 % line without an exemption reason (an AT code in ``line.tax_type``, else
    ``settings.exemption_reason``), a VAT rate without a tax id,
    a line kind without a product, a negative line, a currency other than ``settings.currency``,
    an invoice without lines.
    """
    what = f"invoice {invoice.invoice_number}"
    if invoice.currency.upper() != settings.currency.upper():
        raise PermanentError(
            f"{what}: currency {invoice.currency} differs from the Moloni company currency {settings.currency} "
            "(exchange documents are not supported by this connector)"
        )
    if not invoice.lines:
        raise PermanentError(f"{what}: no lines")
    your_reference = reference_of(invoice.invoice_number)
    check_length("your_reference", your_reference, LIMITS["your_reference"], what)
    our_reference = invoice.reference
    check_length("our_reference", our_reference, LIMITS["our_reference"], what)
    products: list[dict[str, Any]] = []
    for order, line in enumerate(invoice.lines):
        label = f"{what} line {order + 1} ({line.description[:40]!r})"
        check_length("products[].name", line.description, LIMITS["products[].name"], label)
        layout = line_layout(line, tax_inclusive=invoice.tax_inclusive)
        product: dict[str, Any] = {
            "product_id": product_id_for(line, settings),
            "name": line.description,
            "summary": fold_summary(line, tax_inclusive=invoice.tax_inclusive) if layout.folded else "",
            "qty": layout.qty,
            "price": layout.price,
            "discount": layout.discount,
            "order": order,
        }
        tax_id = tax_id_for(line, settings)
        if tax_id is None:
            reason = settings.exemption_reason_of(line.tax_type)
            if not reason:
                raise PermanentError(
                    f"{label}: 0% VAT needs an exemption reason (AT code such as M07) and none is configured "
                    "(billing.settings.exemption_reason, or the tenant's tax.exempt_tax_type / "
                    "reverse_charge_tax_type); Moloni refuses such a line without one"
                )
            product["exemption_reason"] = reason
        else:
            product["taxes"] = [{"tax_id": tax_id, "value": line.tax_rate, "order": 0, "cumulative": 0}]
        products.append(product)
    payload: dict[str, Any] = {
        "company_id": settings.company_id,
        "date": invoice.issue_date.isoformat(),
        "expiration_date": invoice.due_date.isoformat(),
        "document_set_id": settings.document_set_id,
        "customer_id": customer_id,
        "your_reference": your_reference,
        "our_reference": our_reference,
        "financial_discount": Decimal(0),
        "special_discount": Decimal(0),
        "status": 0,
        "products": products,
    }
    notes = notes_of(invoice)
    check_length("notes", notes, LIMITS["notes"], what)
    payload["notes"] = notes
    if settings.maturity_date_id is not None:
        payload["maturity_date_id"] = settings.maturity_date_id
    if settings.eac_id is not None:
        payload["eac_id"] = settings.eac_id
    return payload


# --------------------------------------------------------------------------- form encoding
def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if value is None:
        return  # http_build_query drops nulls
    if isinstance(value, Mapping):
        for key, item in value.items():
            _flatten(f"{prefix}[{key}]" if prefix else str(key), item, out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _flatten(f"{prefix}[{index}]", item, out)
    elif isinstance(value, bool):
        out.append((prefix, "1" if value else "0"))
    elif isinstance(value, (Decimal, int)):
        out.append((prefix, dec_text(value)))
    elif isinstance(value, float):
        raise TypeError(f"float {value!r} in a money payload ({prefix}); use Decimal")
    else:
        out.append((prefix, str(value)))


def form_fields(payload: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``payload`` flattened to PHP ``http_build_query`` pairs: ``[("products[0][qty]", "3.25"), ...]``.

    Decimals keep their exact text, booleans become ``1``/``0``, ``None`` values are left out.
    """
    out: list[tuple[str, str]] = []
    _flatten("", payload, out)
    return out


def form_body(payload: Mapping[str, Any]) -> str:
    """``application/x-www-form-urlencoded`` text of :func:`form_fields` (brackets kept readable)."""
    return "&".join(f"{quote(k, safe='[]')}={quote(v, safe='')}" for k, v in form_fields(payload))


def _insert(root: dict[str, Any], path: list[str], value: str) -> None:
    node: Any = root
    for i, part in enumerate(path):
        last = i == len(path) - 1
        key: Any = part
        if isinstance(node, list):
            key = int(part) if part.isdigit() else len(node)
            while len(node) <= key:
                node.append(None)
            if last:
                node[key] = value
                return
            if node[key] is None:
                node[key] = [] if path[i + 1].isdigit() or path[i + 1] == "" else {}
            node = node[key]
        else:
            if last:
                node[key] = value
                return
            if key not in node:
                node[key] = [] if path[i + 1].isdigit() or path[i + 1] == "" else {}
            node = node[key]


def parse_form(body: bytes | str) -> dict[str, Any]:
    """Inverse of :func:`form_body`: nested dicts/lists of strings (PHP semantics for ``a[0][b]=…``)."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        head, _, rest = key.partition("[")
        path = [head]
        if rest:
            path += rest.rstrip("]").split("][")
        _insert(root, path, value)
    return root


def customer_to_moloni(query: ContactQuery, defaults: MoloniCustomerDefaults, *, company_id: int) -> dict[str, Any]:
    """The fields of ``customers/insert`` (https://moloni.pt/dev/entities/customers/insert) for a client.

    ``number`` is our client id (20 characters at most, else :class:`PermanentError`); ``vat`` the
    client's tax number, or ``999999990`` (consumidor final) without one; ``email`` may be empty;
    language, address, city, country, maturity date and payment method come from ``defaults``.
    """
    number = query.client_id
    if len(number) > 20:
        raise PermanentError(f"client {number}: Moloni customer field number is {len(number)} characters, 20 max")
    return {
        "company_id": company_id,
        "vat": (query.tax_number or FINAL_CONSUMER_VAT).replace(" ", ""),
        "number": number,
        "name": query.name,
        "email": query.email or "",
        "language_id": defaults.language_id,
        "address": defaults.address,
        "zip_code": defaults.zip_code,
        "city": defaults.city,
        "country_id": defaults.country_id,
        "maturity_date_id": defaults.maturity_date_id,
        "payment_method_id": defaults.payment_method_id,
    }


# --------------------------------------------------------------------------- Moloni -> ours
def document_label(doc: Mapping[str, Any]) -> str:
    """Human number of a Moloni document: ``"FT <series>/<number>"``; ``""`` for a draft (numbered when closed)."""
    number = doc.get("number")
    if not number or str(number) == "0":
        return ""
    series = doc.get("document_set_name") or doc.get("document_set_id") or ""
    return f"FT {series}/{number}"


def invoice_from_moloni(doc: Mapping[str, Any], *, paid: Decimal | None = None) -> ExternalInvoice:
    """:class:`ExternalInvoice` from a ``getAll``/``getOne`` document: id ``document_id``, number
    :func:`document_label`, total ``net_value`` (the amount payable), status ``"draft"`` (0) or
    ``"closed"`` (1), ``marker`` read from ``notes`` (``None`` when the document has none, e.g. a
    ``getAll`` row, which carries no ``notes``), ``paid`` as given (the connector reads it from the
    reconciliations, see :func:`reverse_links`)."""
    status = doc.get("status")
    return ExternalInvoice(
        external_id=str(doc["document_id"]),
        number=document_label(doc),
        total=amount_or_none(doc.get("net_value")),
        status={0: "draft", 1: "closed", "0": "draft", "1": "closed"}.get(status, str(status)),
        marker=read_marker(str(doc.get("notes") or "")),
        paid=paid,
    )


def reverse_links(doc: Mapping[str, Any]) -> list[tuple[int, Decimal]]:
    """``(document_id, value)`` of every document reconciled against ``doc`` (its
    ``reverse_associated_documents``: receipts and credit notes that name it in their
    ``associated_documents``). Each row carries the other document's id in
    ``reverse_associated_document.document_id`` (else ``document_id``) and the reconciled ``value``."""
    out: list[tuple[int, Decimal]] = []
    for row in doc.get("reverse_associated_documents") or []:
        if not isinstance(row, Mapping):
            continue
        other = row.get("reverse_associated_document")
        ident = other.get("document_id") if isinstance(other, Mapping) else None
        ident = ident if ident is not None else row.get("document_id")
        value = amount_or_none(row.get("value"))
        if str(ident or "").isdigit() and value is not None:
            out.append((int(str(ident)), value))
    return out


def credit_note_to_moloni(
    doc: Mapping[str, Any],
    *,
    company_id: int,
    your_reference: str,
    issued: date,
    notes: str,
) -> dict[str, Any]:
    """The fields of ``creditNotes/insert`` crediting the closed invoice ``doc`` (its ``getOne``) in full.

    https://moloni.pt/dev/documents/credit-notes/insert: the invoice's own products (``product_id``,
    ``name``, ``summary``, ``qty``, ``price``, ``discount``, ``taxes`` or ``exemption_reason``) in
    the invoice's series, so Moloni computes the same ``net_value``; ``associated_documents`` =
    ``[{"associated_id": <invoice document_id>, "value": <its net_value>}]`` (mandatory since
    12 May 2020: "os documentos do tipo Notas de Crédito ... passaram a requerer que fosse
    preenchido o parâmetro associated_documents", changelog versão 1.24; field names as in the
    ``creditNotes`` models of the API's clients); ``status`` 1, which reconciles the invoice with that
    value and communicates the note to the AT. ``date`` is ``issued``, never before the invoice's
    date. ``your_reference`` carries our credit-note number, ``notes`` the reason and our marker.
    """
    products: list[dict[str, Any]] = []
    for index, product in enumerate(doc.get("products") or []):
        row: dict[str, Any] = {
            "product_id": product["product_id"],
            "name": product.get("name") or "",
            "summary": product.get("summary") or "",
            "qty": amount_or_none(product.get("qty")),
            "price": amount_or_none(product.get("price")),
            "discount": amount_or_none(product.get("discount")) or Decimal(0),
            "order": product.get("order", index),
        }
        taxes = [
            {
                "tax_id": t["tax_id"],
                "value": amount_or_none(t.get("value")),
                "order": t.get("order", 0),
                "cumulative": t.get("cumulative", 0),
            }
            for t in product.get("taxes") or []
        ]
        if taxes:
            row["taxes"] = taxes
        if product.get("exemption_reason"):
            row["exemption_reason"] = product["exemption_reason"]
        products.append(row)
    invoice_date = date.fromisoformat(str(doc["date"])[:10])
    return {
        "company_id": company_id,
        "date": max(issued, invoice_date).isoformat(),
        "document_set_id": doc["document_set_id"],
        "customer_id": doc["customer_id"],
        "your_reference": your_reference,
        "notes": notes,
        "associated_documents": [{"associated_id": doc["document_id"], "value": amount_or_none(doc["net_value"])}],
        "status": 1,
        "products": products,
    }


def validation_errors(body: Any) -> list[str]:
    """Moloni's validation answer as texts, ``[]`` for any other body.

    Moloni refuses data with a JSON list of ``{"code", "field", "description"}`` objects (or lists
    of them), with HTTP 200 as well as 4xx; each becomes ``"<field>: <description>"`` (the field
    from ``code`` ``"2 customer_id"`` when ``field`` is absent). A list of documents is not one.
    """
    if not isinstance(body, list) or not body:
        return []
    first = body[0][0] if isinstance(body[0], list) and body[0] else body[0]
    if not isinstance(first, dict) or not ("description" in first or "code" in first) or "document_id" in first:
        return []
    out: list[str] = []
    for item in body:
        for err in item if isinstance(item, list) else [item]:
            if isinstance(err, dict):
                where = err.get("field") or str(err.get("code") or "").partition(" ")[2]
                text = str(err.get("description") or err.get("code") or "error")
                out.append(f"{where}: {text}" if where and where not in text else text)
    return out


__all__ = [
    "EXEMPTION_CODE_PATTERN",
    "LIMITS",
    "LineLayout",
    "MoloniTotals",
    "check_length",
    "credit_note_to_moloni",
    "customer_to_moloni",
    "dec_text",
    "document_label",
    "fold_summary",
    "form_body",
    "form_fields",
    "invoice_from_moloni",
    "invoice_to_moloni",
    "line_layout",
    "loads",
    "lookup_rate",
    "moloni_totals",
    "notes_of",
    "parse_form",
    "payload_totals",
    "predicted_totals",
    "q2",
    "rate_key",
    "reference_of",
    "reverse_links",
    "validation_errors",
]
