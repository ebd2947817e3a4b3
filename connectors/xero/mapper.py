"""Pure mapping between :class:`connectors.sdk.invoice.Invoice` and Xero Accounting API 2.0 JSON.

Nothing here does I/O. :func:`invoice_to_xero` builds one element of the ``Invoices`` array of
``PUT /api.xro/2.0/Invoices`` (schema ``Invoice`` / ``LineItem`` in the official OpenAPI spec
``xero_accounting.yaml``, https://developer.xero.com/documentation/api/accounting/invoices);
:func:`invoice_from_xero` reads one element of a response; :func:`dumps` serialises a payload with
:class:`~decimal.Decimal` amounts written as exact JSON numbers (``Decimal("136.50")`` -> ``136.50``,
never through ``float``).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connectors.base import ExternalInvoice
from connectors.sdk.invoice import Invoice, InvoiceLine

if TYPE_CHECKING:  # pragma: no cover - typing only (connector.py imports this module)
    from connectors.xero.connector import XeroSettings

#: Tax type used when neither the line nor ``settings.tax_types`` names one and the rate is non-zero.
DEFAULT_TAX_TYPE = "OUTPUT2"
#: Tax type used for a zero rate when ``settings.tax_types`` has no entry for ``"0"``.
ZERO_TAX_TYPE = "NONE"


# --------------------------------------------------------------------------- Invoice -> Xero
def rate_key(rate: Decimal) -> str:
    """Canonical text of a tax-rate percentage used as ``tax_types`` key: ``Decimal("23.00")`` -> ``"23"``, ``6.50`` -> ``"6.5"``."""
    if rate == 0:
        return "0"
    text = format(rate.normalize(), "f")
    return text


def tax_type_for(line: InvoiceLine, settings: XeroSettings) -> str:
    """Xero ``TaxType`` code for ``line``.

    Order: ``line.tax_type`` (tenant-mapped code) -> ``settings.tax_types[rate]`` where the key is
    the rate percentage text (``"23"``; ``"23.0"``/``"23.00"`` match too) -> ``"NONE"`` for a zero
    rate, ``"OUTPUT2"`` otherwise. Codes are organisation/region specific: see ``GET /TaxRates``
    (spec ``getTaxRates``).
    """
    if line.tax_type:
        return line.tax_type
    wanted = rate_key(line.tax_rate)
    for key, code in (settings.tax_types or {}).items():
        try:
            if rate_key(Decimal(str(key).strip().rstrip("%"))) == wanted:
                return code
        except ArithmeticError:
            if key == wanted:
                return code
    return ZERO_TAX_TYPE if line.tax_rate == 0 else DEFAULT_TAX_TYPE


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


def invoice_to_xero(invoice: Invoice, settings: XeroSettings) -> dict[str, Any]:
    """One element of the ``Invoices`` array of ``PUT /api.xro/2.0/Invoices`` (spec schema ``Invoice``).

    Shape::

        {"Type": "ACCREC", "Contact": {"ContactID": ...} | {"Name": ...},
         "Date": "YYYY-MM-DD", "DueDate": "YYYY-MM-DD", "LineAmountTypes": "Exclusive" | "Inclusive",
         "InvoiceNumber": str, "Reference": str, "CurrencyCode": "EUR", "Status": "AUTHORISED" | "DRAFT",
         "LineItems": [line_to_xero(...), ...]}

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
        "Reference": invoice.reference,
        "CurrencyCode": invoice.currency,
        "Status": settings.invoice_status,
        "LineItems": [line_to_xero(line, invoice, settings) for line in invoice.lines],
    }


# --------------------------------------------------------------------------- Xero -> ours
def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def invoice_from_xero(element: Mapping[str, Any]) -> ExternalInvoice:
    """:class:`ExternalInvoice` from one element of a Xero ``Invoices`` response.

    ``external_id`` = ``InvoiceID``, ``number`` = ``InvoiceNumber``, ``total`` = ``Total`` as
    :class:`Decimal` (None when absent), ``status`` = ``Status`` (``DRAFT``/``AUTHORISED``/...).
    Raises ``KeyError`` when ``InvoiceID`` is missing.
    """
    return ExternalInvoice(
        external_id=str(element["InvoiceID"]),
        number=str(element.get("InvoiceNumber") or ""),
        total=_decimal(element.get("Total")),
        status=element.get("Status"),
    )
