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
* ``DocNumber`` = our invoice number. ``PrivateNote`` (internal: "does not appear on the invoice to
  the customer", spec ``InvoiceCreateObject.PrivateNote``; returned on every read) carries the
  ownership marker :func:`connectors.sdk.lifecycle.marker` (``broker:<invoice key>``); invoices made
  before the marker carry ``broker invoice <invoice key>``, which :func:`read_marker` also reads.
  ``CustomerMemo`` (printed: "visible to end user on their transactions") carries the human
  reference, then each legal note on a line of its own (≤ 1,000 characters in all).

**Lifecycle** (:func:`credit_memo_body`, :func:`invoice_status`, :func:`credit_memo_number`): QBO
has no draft state; an unpaid invoice is voided (``POST /invoice?operation=void`` with ``Id`` and
``SyncToken``: amounts zeroed, ``Voided`` prepended to ``PrivateNote``, per
https://blogs.intuit.com/2016/04/06/voiding-invoice-objects); an invoice with a payment
(``Balance < TotalAmt``) is credited in full by a ``CreditMemo`` that copies its lines and tax lines
exactly as QBO holds them, numbered ``<number>-CN`` (see :func:`credit_memo_number` for numbers
that do not fit ``DocNumber``'s 21 characters).

Amounts are :class:`~decimal.Decimal`; serialise with :func:`dumps` (:func:`connectors.sdk.money.dumps`),
which writes them as exact JSON numbers.

Also pure, and here for the same reason: the ``requestid`` of each step (:func:`request_id`,
:func:`batch_request_id`, :func:`customer_request_id`), query-language literals (:func:`quote`) and
the reading of Intuit ``Fault`` bodies (:func:`fault_errors`, :func:`describe_errors`,
:func:`is_duplicate_doc_number`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from connectors.quickbooks.settings import QboTaxCode, QuickBooksSettings
from connectors.sdk.errors import PermanentError
from connectors.sdk.idempotency import QUICKBOOKS, QUICKBOOKS_BATCH, idempotency_key, make_key
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.lifecycle import credit_note_number, marker
from connectors.sdk.lifecycle import read_marker as read_lifecycle_marker
from connectors.sdk.money import NetLayout as LineLayout
from connectors.sdk.money import amount_or_none, dumps, loads, lookup_rate, net_layout, rate_key, round_money

#: Field limits in characters (QBO error 2050 when exceeded). DocNumber: 21 (QBO docs, issue 5).
DOC_NUMBER_MAX = 21
DESCRIPTION_MAX = 4000
PRIVATE_NOTE_MAX = 4000
CUSTOMER_MEMO_MAX = 1000
#: Most decimals the mapper puts in a ``UnitPrice`` it derives (QBO's own limit is not documented;
#: the fewest decimals that work are always used first).
UNIT_PRICE_MAX_DP = 5
#: Error codes QBO uses for a duplicate DocNumber: 6140 as observed in practice, 6210 per Intuit's blog table.
DUPLICATE_DOC_NUMBER_CODES = frozenset({"6140", "6210"})
#: Error code of a customer ``DisplayName`` already in use.
DUPLICATE_NAME_CODE = "6240"
#: Error codes of QBO's throttling (``ThrottleExceeded``): wait 60 s.
THROTTLE_CODES = frozenset({"3001", "3002"})
#: Error code of "Object Not Found" (an id the company does not have, or a deleted transaction).
NOT_FOUND_CODE = "610"
#: Error code of a stale ``SyncToken`` ("Stale Object Error": the object changed since it was read).
STALE_OBJECT_CODE = "5010"
#: What QBO prepends to ``PrivateNote`` when it voids a transaction (Intuit blog, "Voiding Invoice Objects").
VOIDED_PREFIX = "Voided"
#: The marker of invoices made before :mod:`connectors.sdk.lifecycle` (``broker invoice <invoice key>``).
_LEGACY_MARKER = re.compile(r"broker invoice (\S+)")

__all__ = [
    "CUSTOMER_MEMO_MAX",
    "DESCRIPTION_MAX",
    "DOC_NUMBER_MAX",
    "DUPLICATE_DOC_NUMBER_CODES",
    "DUPLICATE_NAME_CODE",
    "NOT_FOUND_CODE",
    "PRIVATE_NOTE_MAX",
    "STALE_OBJECT_CODE",
    "THROTTLE_CODES",
    "VOIDED_PREFIX",
    "LineLayout",
    "amount_paid",
    "batch_request_id",
    "check_limits",
    "credit_memo_body",
    "credit_memo_number",
    "customer_request_id",
    "describe_errors",
    "dumps",
    "fault_errors",
    "fault_type",
    "has_code",
    "invoice_from_qbo",
    "invoice_status",
    "invoice_to_qbo",
    "is_duplicate_doc_number",
    "is_voided",
    "line_layout",
    "loads",
    "printed_memo",
    "qbo_amount",
    "quote",
    "rate_key",
    "read_marker",
    "request_id",
    "tax_lines",
]


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
        _too_long("reference and legal_notes (QuickBooks CustomerMemo)", _memo(invoice), CUSTOMER_MEMO_MAX),
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
    """``CustomerMemo`` (printed): the human reference, then each legal note on a line of its own."""
    return "\n".join([invoice.reference, *invoice.legal_notes])


def _private_note(invoice: Invoice) -> str:
    """``PrivateNote`` (internal, returned on reads): the ownership marker ``broker:<invoice key>``."""
    return marker(invoice.invoice_key)


# --------------------------------------------------------------------------- lines
def line_layout(line: InvoiceLine, invoice: Invoice) -> LineLayout:
    """``Qty``, ``UnitPrice`` and ``Amount`` of the QBO line for ``line``; ``Amount`` always equals ``line.net``.

    Our quantity and unit price when they multiply to the net (no discount, not tax-inclusive), else
    a derived ``UnitPrice`` of the currency's decimals up to :data:`UNIT_PRICE_MAX_DP`, else ``1 × net``
    (see the module docstring and :func:`connectors.sdk.money.net_layout`).
    """
    keep = not invoice.tax_inclusive and line.discount_percent == 0
    return net_layout(
        line.net, line.quantity, line.unit_price, invoice.currency, keep=keep, max_places=UNIT_PRICE_MAX_DP
    )


def _tax_mapping(line: InvoiceLine, settings: QuickBooksSettings, index: int) -> QboTaxCode:
    mapping = lookup_rate(settings.tax_codes, line.tax_rate)
    if mapping is not None:
        return mapping
    wanted = rate_key(line.tax_rate)
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
    (``ItemRef`` from ``settings.item_ids[line.kind]`` or ``default_item_id``, ``Qty``, ``UnitPrice``,
    ``TaxCodeRef``)."""
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
         "GlobalTaxCalculation": "TaxExcluded",
         "CustomerMemo": {"value": "<reference>\\n<legal note 1>\\n..."},
         "PrivateNote": "broker:<invoice_key>",
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
def read_marker(note: str | None) -> str | None:
    """The invoice key of the ownership marker in a ``PrivateNote`` (:func:`connectors.sdk.lifecycle.read_marker`),
    or of the older ``broker invoice <invoice key>`` text; ``None`` when there is neither."""
    found = read_lifecycle_marker(note)
    if found is None and note:
        legacy = _LEGACY_MARKER.findall(note)
        found = legacy[-1] if legacy else None
    return found


def _amount(entity: Mapping[str, Any], field: str) -> Decimal:
    value = amount_or_none(entity.get(field))
    return Decimal("0") if value is None else value


def is_voided(entity: Mapping[str, Any]) -> bool:
    """Whether QBO voided this transaction: ``TotalAmt`` 0 and ``PrivateNote`` starting with ``Voided``
    (QBO zeroes the amounts and prepends ``Voided`` to the note; it keeps no status field)."""
    note = entity.get("PrivateNote")
    return _amount(entity, "TotalAmt") == 0 and isinstance(note, str) and note.startswith(VOIDED_PREFIX)


def amount_paid(entity: Mapping[str, Any]) -> Decimal:
    """What was received on an ``Invoice``: ``TotalAmt - Balance`` (payments linked to it lower ``Balance``)."""
    return _amount(entity, "TotalAmt") - _amount(entity, "Balance")


def invoice_status(entity: Mapping[str, Any]) -> str:
    """QBO keeps no status field; the words its UI shows, derived from the amounts: ``Voided``
    (:func:`is_voided`), ``Paid`` (``Balance`` 0 of a positive ``TotalAmt``), ``Partial`` (some paid),
    else ``Open``."""
    if is_voided(entity):
        return "Voided"
    total, balance = _amount(entity, "TotalAmt"), _amount(entity, "Balance")
    if total > 0 and balance == 0:
        return "Paid"
    return "Partial" if balance < total else "Open"


def printed_memo(entity: Mapping[str, Any]) -> str | None:
    """The ``CustomerMemo`` text of a transaction (printed on it), ``None`` when it has none."""
    memo = entity.get("CustomerMemo")
    value = memo.get("value") if isinstance(memo, Mapping) else None
    return value if isinstance(value, str) else None


def invoice_from_qbo(entity: Mapping[str, Any]) -> ExternalInvoice:
    """:class:`ExternalInvoice` from a QBO ``Invoice``: ``Id``, ``DocNumber``, ``TotalAmt`` (Decimal),
    :func:`invoice_status`, the marker of ``PrivateNote`` (:func:`read_marker`) and :func:`amount_paid`.
    Raises ``KeyError`` when ``Id`` is missing."""
    return ExternalInvoice(
        external_id=str(entity["Id"]),
        number=str(entity.get("DocNumber") or ""),
        total=amount_or_none(entity.get("TotalAmt")),
        status=invoice_status(entity),
        marker=read_marker(entity.get("PrivateNote") if isinstance(entity.get("PrivateNote"), str) else None),
        paid=amount_paid(entity),
    )


# --------------------------------------------------------------------------- credit memos
def credit_memo_number(invoice_number: str) -> str:
    """``DocNumber`` of the credit memo that retires ``invoice_number``: ``<number>-CN``
    (:func:`connectors.sdk.lifecycle.credit_note_number`) when it fits QBO's 21 characters; otherwise
    the first 11 characters of the number, ``-``, the first 6 hex digits (upper case) of the SHA-256 of
    the whole number, then ``-CN`` (21 characters: deterministic, so a repeat finds the same memo)."""
    number = credit_note_number(invoice_number)
    if len(number) <= DOC_NUMBER_MAX:
        return number
    digest = hashlib.sha256(invoice_number.encode("utf-8")).hexdigest()[:6].upper()
    return f"{invoice_number[:11]}-{digest}-CN"


def _ref(value: Any) -> dict[str, str]:
    """A ``ReferenceType`` reduced to its ``value`` (names are QBO's to fill in)."""
    return {"value": str(value["value"])} if isinstance(value, Mapping) and value.get("value") is not None else {}


def _credit_line(line: Mapping[str, Any], index: int) -> dict[str, Any]:
    detail = line.get("SalesItemLineDetail") or {}
    out_detail: dict[str, Any] = {"ItemRef": _ref(detail.get("ItemRef"))}
    for key in ("Qty", "UnitPrice"):
        if detail.get(key) is not None:
            out_detail[key] = detail[key]
    if detail.get("TaxCodeRef") is not None:
        out_detail["TaxCodeRef"] = _ref(detail["TaxCodeRef"])
    return {
        "LineNum": index + 1,
        "Description": str(line.get("Description") or ""),
        "Amount": line.get("Amount"),
        "DetailType": "SalesItemLineDetail",
        "SalesItemLineDetail": out_detail,
    }


def _credit_tax(detail: Any) -> dict[str, Any]:
    tax_lines_out = []
    for tax_line in (detail or {}).get("TaxLine") or []:
        held = tax_line.get("TaxLineDetail") or {}
        out = {"TaxRateRef": _ref(held.get("TaxRateRef"))}
        out.update({k: held[k] for k in ("PercentBased", "TaxPercent", "NetAmountTaxable") if held.get(k) is not None})
        tax_lines_out.append({"Amount": tax_line.get("Amount"), "DetailType": "TaxLineDetail", "TaxLineDetail": out})
    return {"TotalTax": (detail or {}).get("TotalTax", Decimal("0")), "TaxLine": tax_lines_out}


def credit_memo_body(entity: Mapping[str, Any], *, issued: date, reason: str) -> dict[str, Any]:
    """Body of ``POST /v3/company/{realmId}/creditmemo`` crediting the QBO ``Invoice`` ``entity`` in full.

    Copies the invoice's ``SalesItemLineDetail`` lines (``Description``, ``Amount``, ``ItemRef``,
    ``Qty``, ``UnitPrice``, ``TaxCodeRef``) and its ``TxnTaxDetail`` tax lines exactly as QBO holds them,
    so the memo's ``TotalAmt`` equals the invoice's; ``DocNumber`` :func:`credit_memo_number`,
    ``TxnDate`` ``issued``, ``CustomerMemo`` (printed) ``Credit note for invoice <n>: <reason>``
    (≤ 1,000 characters), ``PrivateNote`` the invoice's ownership marker (the invoice key read from its
    ``PrivateNote``; lookups prove a memo found under our number is ours with it). Field reference:
    https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/creditmemo.
    """
    number = str(entity.get("DocNumber") or "")
    key = read_marker(entity.get("PrivateNote") if isinstance(entity.get("PrivateNote"), str) else None)
    memo = f"Credit note for invoice {number}: {reason}"[:CUSTOMER_MEMO_MAX]
    lines = [line for line in entity.get("Line") or [] if line.get("DetailType") == "SalesItemLineDetail"]
    body: dict[str, Any] = {
        "DocNumber": credit_memo_number(number),
        "TxnDate": issued.isoformat(),
        "CustomerRef": _ref(entity.get("CustomerRef")),
        "GlobalTaxCalculation": "TaxExcluded",
        "CustomerMemo": {"value": memo},
        "PrivateNote": f"Credits invoice {number}\n{marker(key or number)}",
        "Line": [_credit_line(line, index) for index, line in enumerate(lines)],
        "TxnTaxDetail": _credit_tax(entity.get("TxnTaxDetail")),
    }
    if entity.get("CurrencyRef") is not None:
        body["CurrencyRef"] = _ref(entity["CurrencyRef"])
    return body


# --------------------------------------------------------------------------- requestid and queries
def request_id(invoice: Invoice, operation: str) -> str:
    """Deterministic ``requestid`` for ``operation`` (``"create"``, ``"send"``) on ``invoice``.

    :func:`connectors.sdk.idempotency.idempotency_key` with QuickBooks' rules: the readable
    ``f"{tenant}:quickbooks:{invoice_key}:{operation}"`` when it is ≤ 50 characters of
    ``[A-Za-z0-9:._-]``, else the first 50 hex digits of its SHA-256. Only business identity goes
    in, so a retry of the same step — from any worker — sends the same key, and each step has its own.
    """
    return idempotency_key(invoice.tenant, "quickbooks", invoice.invoice_key, operation, QUICKBOOKS)


def batch_request_id(tenant: str, invoice_keys: Sequence[str]) -> str:
    """``requestid`` of one ``/batch`` call (≤ 36 characters): derived from the tenant and the *sorted*
    invoice keys of the batch, so the same batch retried carries the same key."""
    keys = hashlib.sha256("\n".join(sorted(invoice_keys)).encode("utf-8")).hexdigest()
    return make_key(f"{tenant}:quickbooks:batch:{keys}", QUICKBOOKS_BATCH)


def customer_request_id(tenant: str, client_id: str) -> str:
    """``requestid`` of creating the customer of our client ``client_id``."""
    return make_key(f"{tenant}:quickbooks:customer:{client_id}:create", QUICKBOOKS)


def quote(value: str) -> str:
    """A QBO query-language string literal: ``'`` and ``\\`` escaped with a backslash."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --------------------------------------------------------------------------- Fault bodies
def fault_errors(body: Any) -> list[dict[str, Any]]:
    """The ``Error`` entries of an Intuit ``Fault`` body (``{"Fault": {"Error": [...], "type"}}``); ``[]`` if none."""
    if isinstance(body, dict):
        fault = body.get("Fault") or body.get("fault")
        if isinstance(fault, dict):
            errors = fault.get("Error") or fault.get("error") or []
            return [e for e in errors if isinstance(e, dict)]
    return []


def fault_type(body: Any) -> str:
    """``Fault.type`` of a body (``ValidationFault``, ``SystemFault``, ``AuthenticationFault`` ...); ``""`` if none."""
    if isinstance(body, dict) and isinstance(body.get("Fault"), dict):
        return str(body["Fault"].get("type") or "")
    return ""


def describe_errors(errors: list[dict[str, Any]]) -> str:
    """``"<code> <Detail or Message> [<element>]"`` per error, joined by ``"; "``."""
    parts = []
    for e in errors:
        element = f" [{e['element']}]" if e.get("element") else ""
        parts.append(f"{e.get('code') or '?'} {e.get('Detail') or e.get('Message') or ''}{element}".strip())
    return "; ".join(parts) or "no error details"


def has_code(errors: list[dict[str, Any]], code: str) -> bool:
    """True when one of the Fault's errors has ``code`` (``"610"``, ``"5010"``...)."""
    return any(str(e.get("code")) == code for e in errors)


def is_duplicate_doc_number(errors: list[dict[str, Any]]) -> bool:
    """True when the Fault reports a duplicate ``DocNumber`` (code 6140 or the message)."""
    for e in errors:
        text = f"{e.get('Message', '')} {e.get('Detail', '')}".lower()
        if "duplicate document number" in text or str(e.get("code")) == "6140":
            return True
    return False
