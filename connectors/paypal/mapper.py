"""Pure mapping between :class:`connectors.sdk.invoice.Invoice` and PayPal Invoicing v2 JSON.

Nothing here does I/O. :func:`invoice_to_paypal` builds the body of ``POST /v2/invoicing/invoices``
(operation ``invoices.create``, schema ``invoice`` of the official spec ``invoicing_v2.json``, API
version 2.3); :func:`invoice_from_paypal` reads an invoice (or search result) back.

PayPal facts this module relies on (spec schemas ``invoice``, ``invoice_detail``, ``item``, ``tax``,
``discount``, ``money``, ``configuration``; the ``invoices.create-400`` issue list):

* Money is ``{"currency_code", "value"}`` with ``value`` a **string** (no JSON numbers anywhere), at
  most the currency's decimals (``unit_amount`` "supports up to two decimal places"; JPY none).
* ``detail.invoice_number``: PayPal rejects more than **25 characters** ("Invoice number length should
  be less than 25 characters." although the schema says 127); ``detail.reference`` ≤120;
  ``detail.memo`` ≤500; ``detail.note`` ≤4000; items ≤100, ``name`` ≤200, ``description`` ≤1000,
  ``quantity`` a string of ≤14 characters (±1,000,000, ≤5 decimals), ``tax.name`` ≤100,
  ``tax.percent`` 0–100 with ≤5 decimals, ``billing_info.business_name`` ≤300, e-mail 3–254.
  Lengths are counted in characters (Python ``len`` of ``str``).
* ``tax.amount`` is **readOnly**: we cannot send our tax amounts, PayPal computes them. Its rule, as
  the spec's own ``invoice_draft`` example shows (``50.00 − 5 % = 47.50``, less the 5 % invoice
  discount = 45.125, × 7.25 % = 3.27; shipping ``10.00 × 7.25 % = 0.725 -> 0.73``; tax_total 4.34 =
  3.27 + 0.34 + 0.73): tax is computed **per item** on the amount after discounts
  (``tax_calculated_after_discount`` defaults to true), rounded **half-up** to the currency's minor
  unit, and the invoice's ``tax_total`` is the sum of the rounded item taxes — the same rule as
  :mod:`broker.pricing`. A PayPal community report ("Invoice API v2 Rounding Error", 19 % on 44.28 and
  42.75: PayPal wants 8.41 + 8.12 = 16.53, not round(16.5357) = 16.54) confirms per-item rounding.
* Therefore our totals equal PayPal's to the cent when each item's pre-tax amount is exactly our
  line net. The item amount is ``quantity × unit_amount``; we send a line as quantity × unit price
  only when that product is **exact** in the currency's minor unit (so PayPal's rounding mode for the
  product never matters) and, for a discounted line, the discount as an explicit **amount**
  (``round(qty × price) − net``, never a percentage PayPal would round on its own). Otherwise the line
  is sent as ``quantity "1" × unit_amount = net`` and the original quantity and unit price are kept
  in the item description. :func:`expected_totals` recomputes PayPal's totals from the payload with
  PayPal's rule and :func:`invoice_to_paypal` refuses (``PermanentError``) a payload whose totals
  would differ from ours.
* Tax-inclusive invoices use ``configuration.tax_inclusive = true`` with gross unit amounts; PayPal
  does not document its inclusive rounding, we model ``tax = round(gross × rate / (100 + rate))`` per
  item (Xero's rule and ours). The gross total is the sum of gross item amounts either way.
* A tax name may carry only one rate per invoice (legacy Invoicing error 570048), so the default
  tax name includes the rate: ``"VAT 23%"``.
* There is no customer id in PayPal Invoicing: the customer is ``primary_recipients[0].billing_info``
  (business name and, for e-mailing, the e-mail address).
* Ownership: ``detail.memo`` ("A private bookkeeping memo for the user", ≤500, spec ``detail``; kept,
  returned by GET and search, not shown to the payer) holds our marker
  (:func:`connectors.sdk.lifecycle.marker`). Legal notes go to ``detail.note`` ("A note to the invoice
  recipient", ≤4000, printed on the invoice and its e-mail), after the tenant's ``settings.note``.
* PayPal Invoicing has no credit notes. A revision of an invoice that was paid (in full or in part)
  carries a :class:`Deduction`: a negative ``amount.breakdown.custom`` (spec ``custom_amount``: a
  ``label`` ≤50 and an ``amount`` from −1,000,000 to 1,000,000, untaxed, added to the total) of the
  previous invoice's total, labelled with its number, so that the customer owes the new total less
  what the previous invoice billed (paid, or still due on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from connectors.paypal.settings import PayPalSettings
from connectors.sdk.errors import PermanentError
from connectors.sdk.invoice import ExternalInvoice, Invoice, InvoiceLine
from connectors.sdk.lifecycle import marker, read_marker
from connectors.sdk.money import amount_or_none, decimal_places, lookup_rate, quantum, rate_key, round_money
from connectors.sdk.money import rate_key as decimal_text  # PayPal's quantity and percent strings: the shortest text

# --------------------------------------------------------------------------- PayPal limits
INVOICE_NUMBER_MAX = 25
REFERENCE_MAX = 120
MEMO_MAX = 500
NOTE_MAX = 4000
ITEMS_MAX = 100
ITEM_NAME_MAX = 200
ITEM_DESCRIPTION_MAX = 1000
QUANTITY_MAX_CHARS = 14
QUANTITY_MAX_DP = 5
AMOUNT_LIMIT = Decimal("1000000")
TAX_NAME_MAX = 100
PERCENT_MAX_DP = 5
BUSINESS_NAME_MAX = 300
EMAIL_MIN, EMAIL_MAX = 3, 254
ADDITIONAL_INFO_MAX = 40
#: ``amount.breakdown.custom.label`` maximum length (spec ``custom_amount``).
CUSTOM_LABEL_MAX = 50
#: Payment terms PayPal knows as ``NET_<days>`` (spec enum ``payment_term_type``).
NET_TERMS = (10, 15, 30, 45, 60, 90)
_ELLIPSIS = "…"


class FieldLimitError(PermanentError):
    """Our invoice cannot be expressed within a PayPal field limit; ``field`` is the JSON path."""

    error_class = "permanent"

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}", http_status=None)
        self.field = field


# --------------------------------------------------------------------------- small helpers
def money(value: Decimal, currency: str) -> dict[str, str]:
    """``{"currency_code": "EUR", "value": "136.50"}``: value with exactly the currency's decimals."""
    return {"currency_code": currency, "value": format(value.quantize(quantum(currency)), "f")}


def _is_exact(value: Decimal, currency: str) -> bool:
    return value == value.quantize(quantum(currency))


def tax_name_for(rate: Decimal, settings: PayPalSettings) -> str:
    """``settings.tax_names[rate]`` (keys like ``"23"``/``"23.0"``) or ``f"{settings.tax_name} {rate}%"``."""
    name = lookup_rate(settings.tax_names, rate)
    return f"{settings.tax_name} {rate_key(rate)}%" if name is None else name


def payment_term(issue: date, due: date) -> dict[str, str]:
    """``invoice_payment_term``: ``DUE_ON_RECEIPT`` (same day), ``NET_<n>`` for PayPal's terms, else ``{"due_date"}``.

    The spec allows "either but not both" of ``term_type`` and ``due_date``; ``NET_n`` makes PayPal
    compute ``invoice_date + n`` days, which is our due date.
    """
    days = (due - issue).days
    if days == 0:
        return {"term_type": "DUE_ON_RECEIPT"}
    if days in NET_TERMS:
        return {"term_type": f"NET_{days}"}
    return {"due_date": due.isoformat()}


@dataclass(frozen=True)
class Recipient:
    """Who the invoice is addressed to (PayPal has no customer objects: ``billing_info`` carries it).

    ``tax_number`` goes to ``billing_info.additional_info`` (≤40 characters) as ``"<label> <number>"``.
    """

    name: str
    email: str | None = None
    tax_number: str | None = None


def recipient_for(invoice: Invoice, settings: PayPalSettings, client: Any | None = None) -> Recipient:
    """The recipient of ``invoice``: name from the tenant's client entry or the invoice; e-mail from
    ``settings.client_emails[client_id]``, else the client entry's ``email``, else ``contact_id`` when it
    is an e-mail address; tax number from the client entry."""
    email = (settings.client_emails or {}).get(invoice.client_id) or getattr(client, "email", None)
    if not email and invoice.contact_id and "@" in invoice.contact_id:
        email = invoice.contact_id
    return Recipient(
        name=getattr(client, "name", None) or invoice.client_name,
        email=email or None,
        tax_number=getattr(client, "tax_number", None) or None,
    )


# --------------------------------------------------------------------------- lines
@dataclass(frozen=True)
class ItemLayout:
    """How one of our lines is sent: ``quantity × unit_amount − discount`` (all exact) = our amount."""

    quantity: Decimal
    unit_amount: Decimal
    discount: Decimal  # explicit discount amount (0 = none)
    collapsed: bool  # True when sent as 1 × line amount


def _quantity_ok(qty: Decimal) -> bool:
    return (
        decimal_places(qty) <= QUANTITY_MAX_DP
        and abs(qty) <= AMOUNT_LIMIT
        and 0 < len(decimal_text(qty)) <= QUANTITY_MAX_CHARS
    )


def item_layout(line: InvoiceLine, currency: str, tax_inclusive: bool) -> ItemLayout:
    """Choose the item layout whose PayPal amount is exactly our line amount (net, or gross when tax-inclusive).

    ``qty × unit_price`` is used when both fit PayPal's formats and the product is exact in the
    currency's minor unit; a line discount becomes ``discount.amount = qty × unit_price − amount``
    (≥ 0). Anything else is sent as ``1 × amount``.
    """
    amount = line.total if tax_inclusive else line.net
    qty, unit = line.quantity, line.unit_price
    if _quantity_ok(qty) and _is_exact(unit, currency) and abs(unit) <= AMOUNT_LIMIT and qty != 0:
        gross = qty * unit
        if _is_exact(gross, currency):
            discount = gross - amount
            if discount == 0:
                return ItemLayout(qty, unit, Decimal(0), False)
            if 0 < discount <= AMOUNT_LIMIT and gross > 0:
                return ItemLayout(qty, unit, discount, False)
    return ItemLayout(Decimal(1), amount, Decimal(0), True)


def _fit_name(text: str) -> str:
    return text if len(text) <= ITEM_NAME_MAX else text[: ITEM_NAME_MAX - 1] + _ELLIPSIS


def line_to_item(index: int, line: InvoiceLine, invoice: Invoice, settings: PayPalSettings) -> dict[str, Any]:
    """One ``item``: name, [description], quantity, unit_amount, tax {name, percent}, [discount {amount}],
    unit_of_measure.

    ``name`` is the line description; an over-long one is cut to 200 characters with "…" and sent
    in full as ``description`` (≤1000 characters; longer text is cut there too with "…", or refused
    with ``settings.long_descriptions = "reject"``). A collapsed layout (``1 × amount``) notes the
    original ``quantity unit × unit price`` in the description. Raises :class:`FieldLimitError`
    naming ``items[<index>].<field>`` when a value cannot fit.
    """
    currency = invoice.currency
    where = f"items[{index}]"
    text = line.description.strip() or line.kind.replace("_", " ").title()
    layout = item_layout(line, currency, invoice.tax_inclusive)
    notes: list[str] = []  # how the line was laid out, when that is not visible in quantity × unit price
    if layout.collapsed and line.quantity != 1:
        price = line.unit_price.quantize(quantum(currency)) if _is_exact(line.unit_price, currency) else line.unit_price
        notes.append(f"{decimal_text(line.quantity)} {line.unit} × {format(price, 'f')} {currency}")
    if line.discount_percent != 0 and layout.collapsed:
        notes.append(f"discount {decimal_text(line.discount_percent)}%")
    item: dict[str, Any] = {"name": _fit_name(text)}
    full = text if len(text) > ITEM_NAME_MAX else None
    if full is not None or notes:
        suffix = " — ".join(notes)
        room = ITEM_DESCRIPTION_MAX - (len(suffix) + 3 if suffix and full is not None else len(suffix))
        if full is not None and len(full) > room:
            if settings.long_descriptions == "reject":
                raise FieldLimitError(
                    f"{where}.description",
                    f"line description is {len(text)} characters; PayPal allows {ITEM_NAME_MAX} in the item name and "
                    f"{ITEM_DESCRIPTION_MAX} in the item description (settings.long_descriptions: reject)",
                )
            full = full[: room - 1] + _ELLIPSIS
        item["description"] = " — ".join(part for part in (full, suffix) if part)
    if abs(layout.unit_amount) > AMOUNT_LIMIT:
        raise FieldLimitError(f"{where}.unit_amount", f"{layout.unit_amount} {currency} is outside PayPal's ±1,000,000")
    rate = line.tax_rate
    if rate < 0 or rate > 100 or decimal_places(rate) > PERCENT_MAX_DP:
        raise FieldLimitError(f"{where}.tax.percent", f"tax rate {rate} must be 0–100 with at most 5 decimals")
    tax_name = tax_name_for(rate, settings)
    if len(tax_name) > TAX_NAME_MAX:
        raise FieldLimitError(f"{where}.tax.name", f"{len(tax_name)} characters, PayPal allows {TAX_NAME_MAX}")
    item["quantity"] = decimal_text(layout.quantity)
    item["unit_amount"] = money(layout.unit_amount, currency)
    item["tax"] = {"name": tax_name, "percent": decimal_text(rate)}
    if layout.discount:
        item["discount"] = {"amount": money(layout.discount, currency)}
    item["unit_of_measure"] = settings.unit_of_measure
    return item


# --------------------------------------------------------------------------- PayPal's arithmetic
@dataclass(frozen=True)
class Totals:
    """PayPal's totals of a payload: ``items`` is ``[(amount after discount, tax), ...]``."""

    item_total: Decimal
    discount_total: Decimal
    tax_total: Decimal
    total: Decimal
    items: tuple[tuple[Decimal, Decimal], ...]


def expected_totals(payload: Mapping[str, Any]) -> Totals:
    """PayPal's totals for an ``invoice`` body without invoice-level discount/shipping (what we send).

    Per item: ``amount = round(quantity × unit_amount)``, ``discount`` = ``amount`` or
    ``round(amount × percent / 100)``, ``tax = round((amount − discount) × percent / 100)``
    (tax-inclusive: ``× percent / (100 + percent)``), all half-up to the currency's minor unit;
    totals are sums of the rounded items (see the module docstring for the sources). A
    ``amount.breakdown.custom`` amount (a :class:`Deduction`) is added to ``total`` untaxed.
    """
    detail = payload["detail"]
    currency = detail["currency_code"]
    inclusive = bool((payload.get("configuration") or {}).get("tax_inclusive", False))
    after_discount = bool((payload.get("configuration") or {}).get("tax_calculated_after_discount", True))
    item_total = discount_total = tax_total = Decimal(0)
    rows = []
    for item in payload.get("items") or []:
        amount = round_money(Decimal(item["quantity"]) * Decimal(item["unit_amount"]["value"]), currency)
        discount = Decimal(0)
        disc = item.get("discount") or {}
        if "amount" in disc:
            discount = Decimal(disc["amount"]["value"])
        elif "percent" in disc:
            discount = round_money(amount * Decimal(disc["percent"]) / 100, currency)
        taxable = amount - discount if after_discount else amount
        tax = Decimal(0)
        if item.get("tax"):
            pct = Decimal(item["tax"]["percent"])
            tax = round_money(taxable * pct / (100 + pct) if inclusive else taxable * pct / 100, currency)
        item_total += amount
        discount_total += discount
        tax_total += tax
        rows.append((amount - discount, tax))
    custom = ((payload.get("amount") or {}).get("breakdown") or {}).get("custom") or {}
    adjustment = Decimal(custom["amount"]["value"]) if custom.get("amount") else Decimal(0)
    total = item_total - discount_total + (Decimal(0) if inclusive else tax_total) + adjustment
    q = quantum(currency)
    return Totals(
        item_total.quantize(q), discount_total.quantize(q), tax_total.quantize(q), total.quantize(q), tuple(rows)
    )


# --------------------------------------------------------------------------- Invoice -> PayPal
def _check_len(field: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise FieldLimitError(
            field,
            f"{value[:40]!r}{'…' if len(value) > 40 else ''} is {len(value)} characters, PayPal allows at most {limit}",
        )


def memo_for(invoice: Invoice) -> str:
    """Private bookkeeping memo: our ownership marker ``broker:<invoice key>`` (searchable with ``search_data.memo``).

    Raises :class:`FieldLimitError` (``detail.memo``) beyond 500 characters.
    """
    memo = marker(invoice.invoice_key)
    _check_len("detail.memo", memo, MEMO_MAX)
    return memo


def note_for(invoice: Invoice, settings: PayPalSettings) -> str | None:
    """``detail.note`` (printed): ``settings.note`` then the invoice's legal notes, one per line (``None``: empty).

    Raises :class:`FieldLimitError` (``detail.note``) beyond 4000 characters.
    """
    note = "\n".join(part for part in (settings.note, *invoice.legal_notes) if part)
    _check_len("detail.note", note, NOTE_MAX)
    return note or None


@dataclass(frozen=True)
class Deduction:
    """What a revision deducts for the previous invoice of its document (paid, so not cancellable).

    ``amount`` (positive, in the invoice currency) is sent as ``amount.breakdown.custom`` with a
    negative value and ``label`` (≤50 characters) naming ``previous_number``; ``paid`` is what was
    paid on the previous invoice (for the outcome record).
    """

    amount: Decimal
    previous_number: str
    paid: Decimal

    @property
    def label(self) -> str:
        """``Already invoiced on <previous number>`` (at most 20 + 25 characters)."""
        return f"Already invoiced on {self.previous_number}"[:CUSTOM_LABEL_MAX]


def invoice_to_paypal(
    invoice: Invoice,
    settings: PayPalSettings,
    recipient: Recipient | None = None,
    deduction: Deduction | None = None,
) -> dict[str, Any]:
    """The body of ``POST /v2/invoicing/invoices`` (spec schema ``invoice``) for ``invoice``.

    Shape::

        {"detail": {"invoice_number", "reference", "currency_code", "invoice_date", "payment_term",
                    "memo"[, "note", "terms_and_conditions"]},
         ["invoicer": {"email_address", "business_name"},]
         "primary_recipients": [{"billing_info": {"business_name"[, "email_address", "additional_info"]}}],
         "items": [line_to_item(...), ...],
         "configuration": {"tax_calculated_after_discount": true, "tax_inclusive": bool}
         [, "amount": {"breakdown": {"custom": {"label", "amount": {"currency_code", "value": "-<deduction>"}}}}]}

    ``detail.memo`` is our ownership marker (:func:`memo_for`), ``detail.note`` :func:`note_for`.
    With a ``deduction`` PayPal's total is ``invoice.total - deduction.amount``.

    Raises :class:`FieldLimitError` (a :class:`PermanentError`) naming the field when a value is over
    a PayPal limit (``detail.invoice_number`` > 25 characters, > 100 items, ...) or when PayPal's
    arithmetic on the payload would not give our totals to the cent.
    """
    currency = invoice.currency
    _check_len("detail.invoice_number", invoice.invoice_number, INVOICE_NUMBER_MAX)
    if not invoice.invoice_number:
        raise FieldLimitError("detail.invoice_number", "empty; our invoice number is the lookup key and must be sent")
    _check_len("detail.reference", invoice.reference, REFERENCE_MAX)
    if not invoice.lines:
        raise FieldLimitError("items", "an invoice needs at least one item")
    if len(invoice.lines) > ITEMS_MAX:
        raise FieldLimitError(
            "items", f"{len(invoice.lines)} lines, PayPal allows at most {ITEMS_MAX} items per invoice"
        )
    detail: dict[str, Any] = {
        "invoice_number": invoice.invoice_number,
        "reference": invoice.reference,
        "currency_code": currency,
        "invoice_date": invoice.issue_date.isoformat(),
        "payment_term": payment_term(invoice.issue_date, invoice.due_date),
        "memo": memo_for(invoice),
    }
    note = note_for(invoice, settings)
    if note:
        detail["note"] = note
    if settings.terms_and_conditions:
        detail["terms_and_conditions"] = settings.terms_and_conditions
    if not invoice.reference:
        del detail["reference"]
    body: dict[str, Any] = {"detail": detail}
    invoicer: dict[str, Any] = {}
    if settings.invoicer_business_name:
        invoicer["business_name"] = settings.invoicer_business_name
    if settings.invoicer_email:
        invoicer["email_address"] = settings.invoicer_email
    if invoicer:
        body["invoicer"] = invoicer
    recipient = recipient or recipient_for(invoice, settings)
    _check_len("primary_recipients[0].billing_info.business_name", recipient.name, BUSINESS_NAME_MAX)
    billing: dict[str, Any] = {"business_name": recipient.name}
    if recipient.email:
        email = recipient.email
        if not (EMAIL_MIN <= len(email) <= EMAIL_MAX) or "@" not in email:
            raise FieldLimitError(
                "primary_recipients[0].billing_info.email_address",
                f"{email!r} is not an e-mail address PayPal accepts (3–254 characters)",
            )
        billing["email_address"] = email
    if recipient.tax_number:
        info = f"{settings.tax_number_label} {recipient.tax_number}".strip()
        if len(info) <= ADDITIONAL_INFO_MAX:
            billing["additional_info"] = info
    body["primary_recipients"] = [{"billing_info": billing}]
    body["items"] = [line_to_item(i, line, invoice, settings) for i, line in enumerate(invoice.lines)]
    body["configuration"] = {"tax_calculated_after_discount": True, "tax_inclusive": bool(invoice.tax_inclusive)}
    if deduction is not None:
        if not 0 < deduction.amount <= AMOUNT_LIMIT:
            raise FieldLimitError("amount.breakdown.custom.amount", f"{deduction.amount} is outside 0–1,000,000")
        custom = {"label": deduction.label, "amount": money(-deduction.amount, currency)}
        body["amount"] = {"breakdown": {"custom": custom}}
    _assert_totals_agree(invoice, body, deduction.amount if deduction else Decimal(0))
    return body


def _assert_totals_agree(invoice: Invoice, body: Mapping[str, Any], deducted: Decimal = Decimal(0)) -> None:
    totals = expected_totals(body)
    for index, (line, (amount, tax)) in enumerate(zip(invoice.lines, totals.items, strict=True)):
        ours = line.total if invoice.tax_inclusive else line.net
        if amount != ours or tax != line.tax:
            raise FieldLimitError(
                f"items[{index}]",
                f"PayPal would compute amount {amount} and tax {tax} for {line.description!r}, ours are {ours} and "
                f"{line.tax} (PayPal rounds tax per item half-up from the rate; the line's tax does not follow "
                "that rule)",
            )
    ours = invoice.total - deducted
    if totals.total != ours or (not invoice.tax_inclusive and totals.tax_total != invoice.tax_total):
        raise FieldLimitError(
            "amount",
            f"PayPal would compute total {totals.total} (tax {totals.tax_total}), "
            f"ours is {ours} (tax {invoice.tax_total})",
        )


def cancel_notification(settings: PayPalSettings, reason: str, *, to_recipient: bool | None = None) -> dict[str, Any]:
    """Body of ``POST /v2/invoicing/invoices/{id}/cancel`` (spec schema ``notification``, required by the spec).

    The customer is told (``send_to_recipient``) when the tenant e-mails its invoices (``to_recipient``
    overrides it: false for a customer without an e-mail address); ``note`` is ``reason`` (at most 4000
    characters).
    """
    return {
        "send_to_recipient": settings.email_to_recipient if to_recipient is None else to_recipient,
        "send_to_invoicer": settings.email_copy_to_invoicer,
        "note": reason[:NOTE_MAX],
    }


def notification(settings: PayPalSettings, *, to_recipient: bool | None = None) -> dict[str, Any]:
    """Body of ``POST /v2/invoicing/invoices/{id}/send`` (spec schema ``notification``) from the settings.

    ``to_recipient``: ``send_to_recipient`` when the caller decides it (false for a customer without an
    e-mail address); ``None``: ``settings.email_to_recipient``.
    """
    body: dict[str, Any] = {
        "send_to_recipient": settings.email_to_recipient if to_recipient is None else to_recipient,
        "send_to_invoicer": settings.email_copy_to_invoicer,
    }
    if settings.email_subject:
        body["subject"] = settings.email_subject
    if settings.email_note:
        body["note"] = settings.email_note
    return body


# --------------------------------------------------------------------------- PayPal -> ours
def invoice_from_paypal(element: Mapping[str, Any]) -> ExternalInvoice:
    """:class:`ExternalInvoice` from a PayPal ``invoice`` (GET, create representation or a search item).

    ``external_id`` = ``id``, ``number`` = ``detail.invoice_number``, ``total`` = ``amount.value`` as
    :class:`Decimal` (None when absent), ``status`` = ``status``, ``marker`` read from ``detail.memo``,
    ``paid`` = ``payments.paid_amount.value`` (0 when no payment was recorded). Raises ``KeyError``
    without ``id``.
    """
    detail = element.get("detail") or {}
    amount = element.get("amount") or {}
    paid = ((element.get("payments") or {}).get("paid_amount") or {}).get("value")
    return ExternalInvoice(
        external_id=str(element["id"]),
        number=str(detail.get("invoice_number") or ""),
        total=amount_or_none(amount.get("value")),
        status=element.get("status"),
        marker=read_marker(detail.get("memo")),
        paid=amount_or_none(paid) if paid is not None else Decimal(0),
    )


def exact_match(items: list[dict[str, Any]], invoice_number: str) -> dict[str, Any] | None:
    """The search result whose ``detail.invoice_number`` is exactly ``invoice_number`` (search matches more
    loosely), a live invoice before a cancelled one; ``None`` when there is none."""
    exact = [i for i in items if i.get("id") and (i.get("detail") or {}).get("invoice_number") == invoice_number]
    exact.sort(key=lambda i: i.get("status") == "CANCELLED")
    return exact[0] if exact else None


def recipient_email(element: Mapping[str, Any]) -> str | None:
    """The first ``primary_recipients[].billing_info.email_address`` of a PayPal invoice (who PayPal e-mails)."""
    recipients = [
        ((r or {}).get("billing_info") or {}).get("email_address") for r in element.get("primary_recipients") or []
    ]
    return next((e for e in recipients if e), None)


def created_id(body: Any, location: str | None) -> str | None:
    """Invoice id from the answer to ``invoices.create``: the representation's ``id``, else the last
    segment of its ``href`` / ``links[rel=self]`` (minimal representation), else of ``Location``."""
    if isinstance(body, dict):
        if body.get("id"):
            return str(body["id"])
        href = body.get("href")
        if not href:
            for link in body.get("links") or []:
                if isinstance(link, dict) and link.get("rel") == "self":
                    href = link.get("href")
        if href:
            return str(href).rstrip("/").rsplit("/", 1)[-1] or None
    return location.rstrip("/").rsplit("/", 1)[-1] if location else None


def issues(body: Any) -> list[dict[str, Any]]:
    """The ``details`` of a PayPal error body (``[{"field", "value", "location", "issue", "description"}]``)."""
    if isinstance(body, dict) and isinstance(body.get("details"), list):
        return [d for d in body["details"] if isinstance(d, dict)]
    return []


def has_issue(body: Any, wanted: frozenset[str]) -> bool:
    """True when one of the error body's ``details[].issue`` is in ``wanted`` (``DUPLICATE_INVOICE_NUMBER``)."""
    return any(str(d.get("issue", "")).upper() in wanted for d in issues(body))


def describe_error(body: Any) -> str | None:
    """``NAME: message; ISSUE field='value': description; ... (debug_id ...)`` from a PayPal error body
    (``{"name", "message", "debug_id", "details": [...]}``, or the token endpoint's ``{"error",
    "error_description"}``); ``None`` when ``body`` is not a JSON object."""
    if not isinstance(body, dict):
        return None
    parts = [": ".join(str(body[k]) for k in ("name", "message") if body.get(k))]
    for d in issues(body):
        piece = str(d.get("issue", "?"))
        if d.get("field"):
            piece += f" {d['field']}"
            if d.get("value") is not None:
                piece += f"={str(d['value'])[:60]!r}"
        if d.get("description"):
            piece += f": {d['description']}"
        parts.append(piece)
    if body.get("error"):
        parts.append(f"{body['error']}: {body.get('error_description', '')}")
    text = "; ".join(p for p in parts if p) or "no error details"
    if body.get("debug_id"):
        text += f" (debug_id {body['debug_id']})"
    return text


__all__ = [
    "INVOICE_NUMBER_MAX",
    "Deduction",
    "FieldLimitError",
    "ItemLayout",
    "Recipient",
    "Totals",
    "cancel_notification",
    "created_id",
    "describe_error",
    "exact_match",
    "expected_totals",
    "has_issue",
    "invoice_from_paypal",
    "invoice_to_paypal",
    "issues",
    "item_layout",
    "line_to_item",
    "memo_for",
    "money",
    "note_for",
    "notification",
    "payment_term",
    "recipient_email",
    "recipient_for",
    "tax_name_for",
]
