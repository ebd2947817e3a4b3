"""Pure mapping between :class:`connectors.sdk.invoice.Invoice` and QuickBooks Online (QBO) Accounting API v3 JSON.

Nothing here does I/O. :func:`invoice_to_qbo` builds the body of
``POST /v3/company/{realmId}/invoice`` (entity ``Invoice``: ``CustomerRef``, ``Line`` with
``DetailType: SalesItemLineDetail``, ``DocNumber``, ``TxnDate``, ``DueDate``, ``CurrencyRef``,
``GlobalTaxCalculation``, ``TxnTaxDetail``; field reference: the community spec
``tests/specs/quickbooks/openapi.yaml`` schema ``InvoiceCreateObject`` and
https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/invoice);
:func:`invoice_from_qbo` reads an ``Invoice`` of a response.

Rules the mapper applies (so that the invoice QBO stores totals exactly what we computed):

* **Field limits, counted in characters, checked before anything is sent** (QBO answers error
  2050 "String length is either shorter or longer than supported by specification"):
  ``DocNumber`` ≤ 21, line ``Description`` ≤ 4,000, ``PrivateNote`` ≤ 4,000, ``CustomerMemo`` ≤ 1,000.
  A violation raises :class:`~connectors.base.PermanentError` naming the field.
* **Line amounts**: QBO rejects a line whose ``Amount`` is not ``Qty × UnitPrice`` rounded half-up
  to the cent (error 6070 "Amount is not equal to UnitPrice * Qty"). QBO has no per-line discount on
  ``SalesItemLineDetail``, and our labour quantities are rounded hours (``0.8333``) while the net
  is computed from minutes. :func:`line_layout` therefore picks ``(Qty, UnitPrice, Amount)`` with
  ``Amount = line.net`` always: our quantity and unit price when they multiply to the net, else our
  quantity with ``UnitPrice = net / Qty`` at the fewest decimals (2..5) that multiply back to the
  net exactly, else ``Qty 1 × net``. Tax-inclusive invoices are sent as ``TaxExcluded`` with the
  net amounts (QBO's inclusive mode back-computes net amounts itself; we already have them).
* **Tax — explicit, not recomputed**: QBO's global (non-US) tax engine computes tax **per tax
  rate on the sum of the lines** (``round(Σ net × rate)``), while we round **per line** and sum
  (``Σ round(net × rate)``); the two differ by a cent whenever the per-line remainders add up. So
  the mapper always sends ``TxnTaxDetail`` with one ``TaxLine`` per tax rate whose ``Amount`` is
  the sum of our rounded per-line taxes at that rate (``NetAmountTaxable`` = the nets at that
  rate) and ``TotalTax`` = ``invoice.tax_total``. QBO keeps supplied tax lines ("you may supply it
  when adding a transaction", spec ``TxnTaxDetail``), so ``TotalAmt`` = ``Σ Amount + TotalTax`` =
  our ``total``. Tax codes/rates come from ``settings.tax_codes`` (rate percent -> ``tax_code_id``
  for ``TaxCodeRef`` and ``tax_rate_id`` for ``TaxRateRef``): they are per company.
* ``DocNumber`` = our invoice number; ``PrivateNote`` (internal) carries our invoice key;
  ``CustomerMemo`` (printed) carries the human reference.

Amounts are :class:`~decimal.Decimal`; serialise with :func:`connectors.xero.mapper.dumps`, which
writes them as exact JSON numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from connectors.base import ExternalInvoice, PermanentError
from connectors.sdk.invoice import Invoice, InvoiceLine
from connectors.sdk.money import dumps, loads, minor_units, round_money

if TYPE_CHECKING:  # pragma: no cover - typing only (connector.py imports this module)
    from connectors.quickbooks.connector import QuickBooksSettings

#: Field limits in characters (QBO error 2050 when exceeded). DocNumber: 21 (QBO docs, issue 5).
DOC_NUMBER_MAX = 21
DESCRIPTION_MAX = 4000
PRIVATE_NOTE_MAX = 4000
CUSTOMER_MEMO_MAX = 1000
#: Most decimals the mapper puts in a ``UnitPrice`` it derives (QBO's own limit is not documented;
#: the fewest decimals that work are always used first).
UNIT_PRICE_MAX_DP = 5

__all__ = [
    "CUSTOMER_MEMO_MAX",
    "DESCRIPTION_MAX",
    "DOC_NUMBER_MAX",
    "PRIVATE_NOTE_MAX",
    "LineLayout",
    "check_limits",
    "dumps",
    "invoice_from_qbo",
    "invoice_to_qbo",
    "line_layout",
    "loads",
    "qbo_amount",
    "rate_key",
    "tax_lines",
]


def rate_key(rate: Decimal) -> str:
    """Canonical text of a tax-rate percentage (``Decimal("23.00")`` -> ``"23"``, ``6.50`` -> ``"6.5"``)."""
    if rate == 0:
        return "0"
    return format(rate.normalize(), "f")


def qbo_amount(amount: Decimal, currency: str) -> Decimal:
    """``amount`` rounded half-up to the currency's minor unit (QBO's rule for line amounts and tax)."""
    return round_money(amount, currency)


# --------------------------------------------------------------------------- limits
def _too_long(field: str, value: str | None, limit: int) -> str | None:
    if value is not None and len(value) > limit:
        return f"{field} is {len(value)} characters, QuickBooks allows {limit}"
    return None


def check_limits(invoice: Invoice) -> None:
    """Raise :class:`PermanentError` naming every field over its QBO limit (characters, not bytes)."""
    problems = [
        _too_long("invoice_number (QuickBooks DocNumber)", invoice.invoice_number, DOC_NUMBER_MAX),
        _too_long("reference (QuickBooks CustomerMemo)", _memo(invoice), CUSTOMER_MEMO_MAX),
        _too_long("invoice_key (QuickBooks PrivateNote)", _private_note(invoice), PRIVATE_NOTE_MAX),
    ]
    for index, line in enumerate(invoice.lines):
        problems.append(
            _too_long(f"lines[{index}].description (QuickBooks Line.Description)", line.description, DESCRIPTION_MAX)
        )
    found = [p for p in problems if p]
    if found:
        raise PermanentError(f"invoice {invoice.invoice_number}: " + "; ".join(found))


def _memo(invoice: Invoice) -> str:
    return invoice.reference


def _private_note(invoice: Invoice) -> str:
    return f"broker invoice {invoice.invoice_key}"


# --------------------------------------------------------------------------- lines
@dataclass(frozen=True)
class LineLayout:
    """``Qty``, ``UnitPrice`` and ``Amount`` of one QBO line; ``Amount`` always equals our net."""

    qty: Decimal
    unit_price: Decimal
    amount: Decimal
    exact: bool  # True when (qty, unit_price) are ours unchanged


def line_layout(line: InvoiceLine, invoice: Invoice) -> LineLayout:
    """The line layout QBO accepts and that keeps ``Amount == line.net`` (see the module docstring)."""
    currency = invoice.currency
    net = line.net
    qty = line.quantity

    def fits(q: Decimal, price: Decimal) -> bool:
        return qbo_amount(q * price, currency) == net

    if not invoice.tax_inclusive and line.discount_percent == 0 and fits(qty, line.unit_price):
        return LineLayout(qty, line.unit_price, net, True)
    if qty != 0:
        exact = net / qty
        for dp in range(minor_units(currency), UNIT_PRICE_MAX_DP + 1):
            price = exact.quantize(Decimal(1).scaleb(-dp), rounding=ROUND_HALF_UP)
            if fits(qty, price):
                return LineLayout(qty, price, net, False)
    return LineLayout(Decimal(1), net, net, False)


def _tax_mapping(line: InvoiceLine, settings: QuickBooksSettings, index: int):
    wanted = rate_key(line.tax_rate)
    for key, mapping in (settings.tax_codes or {}).items():
        try:
            if rate_key(Decimal(str(key).strip().rstrip("%"))) == wanted:
                return mapping
        except ArithmeticError:
            continue
    raise PermanentError(
        f'lines[{index}]: tax rate {wanted}% has no QuickBooks tax code: add billing.settings.tax_codes["{wanted}"] '
        "with the company's tax_code_id (TaxCodeRef) and tax_rate_id (TaxRateRef)"
    )


def tax_lines(invoice: Invoice, settings: QuickBooksSettings) -> list[dict[str, Any]]:
    """``TxnTaxDetail.TaxLine`` entries: one per tax rate, in order of first appearance.

    ``Amount`` = Σ of our rounded per-line taxes at that rate, ``NetAmountTaxable`` = Σ nets.
    """
    groups: dict[str, dict[str, Any]] = {}
    for index, line in enumerate(invoice.lines):
        mapping = _tax_mapping(line, settings, index)
        group = groups.setdefault(
            mapping.tax_rate_id,
            {"rate": line.tax_rate, "tax": Decimal("0"), "net": Decimal("0")},
        )
        group["tax"] += line.tax
        group["net"] += line.net
    return [
        {
            "Amount": group["tax"],
            "DetailType": "TaxLineDetail",
            "TaxLineDetail": {
                "TaxRateRef": {"value": rate_id},
                "PercentBased": True,
                "TaxPercent": group["rate"],
                "NetAmountTaxable": group["net"],
            },
        }
        for rate_id, group in groups.items()
    ]


def line_to_qbo(line: InvoiceLine, index: int, invoice: Invoice, settings: QuickBooksSettings) -> dict[str, Any]:
    """One ``SalesItemLine``: ``LineNum``, ``Description``, ``Amount``, ``DetailType``, ``SalesItemLineDetail``
    (``ItemRef`` from ``settings.item_ids[line.kind]`` or ``default_item_id``, ``Qty``, ``UnitPrice``, ``TaxCodeRef``)."""
    layout = line_layout(line, invoice)
    mapping = _tax_mapping(line, settings, index)
    return {
        "LineNum": index + 1,
        "Description": line.description,
        "Amount": layout.amount,
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": {
            "ItemRef": {"value": settings.item_ids.get(line.kind, settings.default_item_id)},
            "Qty": layout.qty,
            "UnitPrice": layout.unit_price,
            "TaxCodeRef": {"value": mapping.tax_code_id},
        },
    }


# --------------------------------------------------------------------------- Invoice -> QBO
def invoice_to_qbo(invoice: Invoice, settings: QuickBooksSettings, *, customer_id: str | None = None) -> dict[str, Any]:
    """Body of ``POST /v3/company/{realmId}/invoice`` for ``invoice``.

    Shape::

        {"DocNumber": str, "TxnDate": "YYYY-MM-DD", "DueDate": "YYYY-MM-DD",
         "CustomerRef": {"value": id}, "CurrencyRef": {"value": "EUR"},
         "GlobalTaxCalculation": "TaxExcluded", "CustomerMemo": {"value": reference},
         "PrivateNote": "broker invoice <invoice_key>",
         "Line": [line_to_qbo(...), ...],
         "TxnTaxDetail": {"TotalTax": Decimal, "TaxLine": tax_lines(...)}}

    ``customer_id`` overrides ``invoice.contact_id`` (the connector resolves missing ids). Raises
    :class:`PermanentError` for a field over its limit, a missing customer id or an unmapped tax rate.
    Read-only totals (``TotalAmt``, ``Balance``) are never sent.
    """
    check_limits(invoice)
    customer = customer_id or invoice.contact_id
    if not customer:
        raise PermanentError(
            f"invoice {invoice.invoice_number}: client {invoice.client_id} ({invoice.client_name}) has no QuickBooks "
            f"customer id (clients.{invoice.client_id}.contact_id)"
        )
    if not invoice.lines:
        raise PermanentError(f"invoice {invoice.invoice_number}: QuickBooks needs at least one Line")
    body: dict[str, Any] = {
        "DocNumber": invoice.invoice_number,
        "TxnDate": invoice.issue_date.isoformat(),
        "DueDate": invoice.due_date.isoformat(),
        "CustomerRef": {"value": str(customer)},
        "CurrencyRef": {"value": invoice.currency},
        "GlobalTaxCalculation": "TaxExcluded",
        "CustomerMemo": {"value": _memo(invoice)},
        "PrivateNote": _private_note(invoice),
        "Line": [line_to_qbo(line, i, invoice, settings) for i, line in enumerate(invoice.lines)],
        "TxnTaxDetail": {"TotalTax": invoice.tax_total, "TaxLine": tax_lines(invoice, settings)},
    }
    return body


# --------------------------------------------------------------------------- QBO -> ours
def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except ArithmeticError:
        return None


def invoice_from_qbo(entity: Mapping[str, Any]) -> ExternalInvoice:
    """:class:`ExternalInvoice` from a QBO ``Invoice``: ``Id``, ``DocNumber``, ``TotalAmt`` (Decimal),
    status ``EmailStatus`` (``NotSet``/``NeedToSend``/``EmailSent``; QBO invoices have no draft state).
    Raises ``KeyError`` when ``Id`` is missing."""
    return ExternalInvoice(
        external_id=str(entity["Id"]),
        number=str(entity.get("DocNumber") or ""),
        total=_decimal(entity.get("TotalAmt")),
        status=entity.get("EmailStatus"),
    )
