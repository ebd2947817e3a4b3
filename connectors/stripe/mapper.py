"""Pure mapping from :class:`connectors.sdk.invoice.Invoice` to Stripe Invoicing API requests.

Nothing here does I/O. :func:`invoice_to_stripe` turns one invoice into a :class:`StripePlan`:
the tax rates it needs (``POST /v1/tax_rates``), the draft invoice (``POST /v1/invoices``) and one
invoice item per line (``POST /v1/invoiceitems`` with ``invoice=<draft id>``), all as nested
parameter dicts that :func:`form_pairs` encodes the way Stripe expects
(``application/x-www-form-urlencoded`` with bracket notation: ``metadata[broker_invoice_key]=...``,
``tax_rates[0]=txr_...``). Ids that only exist at run time are :class:`Ref` placeholders
(``{customer}``, ``{invoice}``, ``{tax_rate:23:exclusive}``) resolved by the connector.

Request shapes follow the official OpenAPI spec ``spec3.yaml`` (stripe/openapi, API version
2023-08-16; operations ``PostInvoices``, ``PostInvoiceitems``, ``PostTaxRates``, ``PostCustomers``).

Ownership and printed text: the invoice's ``metadata[broker_invoice_key]`` is our ownership marker
(:mod:`connectors.sdk.lifecycle`: metadata is key-value, so the marker's ``broker:`` prefix is the key's
name and the value the invoice key; Stripe keeps metadata with the object and returns it on every read,
https://docs.stripe.com/api/metadata). ``description`` (the memo, our human reference) and ``footer``
(the legal notes, one a line) are what Stripe prints on the invoice PDF (spec ``PostInvoices``:
``description`` "Displayed as 'memo' in the Dashboard", ``footer`` "Footer to be displayed on the
invoice"). A footer set on an invoice takes the place of the account's / customer's default footer on
that invoice only.

Money (https://docs.stripe.com/currencies#minor-units): amounts are integers in the currency's
smallest unit; zero-decimal currencies (JPY, KRW, ...) are sent as is; three-decimal currencies
(BHD, JOD, KWD, OMR, TND) are sent in thousandths but must end in 0.

Rounding: with Tax Rate objects Stripe computes tax **per line item and per rate**, rounded to the
nearest minor unit (half up: 0.0645 -> 0.06, 0.7265 -> 0.73, per Stripe's rounding table), and the
invoice tax is the sum of the rounded line taxes; an exclusive rate adds ``amount × p / 100`` on
top of the line amount, an inclusive rate takes ``amount × p / (100 + p)`` out of it. Our invoice
rounds tax per line half-up too, so each line is sent with the amount and rate flavour that make
Stripe's rounded tax equal ours (:func:`choose_layout`); when no flavour reproduces every line the
plan is refused before anything is sent.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode

from connectors.sdk.contacts import ContactQuery
from connectors.sdk.idempotency import STRIPE as STRIPE_KEYS
from connectors.sdk.idempotency import idempotency_key as _shared_key
from connectors.sdk.idempotency import make_key
from connectors.sdk.invoice import ExternalInvoice, Invoice
from connectors.sdk.lifecycle import credit_note_number
from connectors.sdk.money import minor_units as iso_minor_units
from connectors.sdk.money import quantity_note
from connectors.sdk.money import rate_key as rate_text
from connectors.stripe.settings import StripeSettings

#: A Stripe API object (invoice, customer, tax rate, list page) as decoded JSON.
Json = dict[str, Any]

# --------------------------------------------------------------------------- limits
#: Maximum length of Stripe's ``Idempotency-Key`` header (https://docs.stripe.com/api/idempotent_requests).
IDEMPOTENCY_KEY_MAX = 255
#: Invoice items on one invoice (https://docs.stripe.com/changelog/2016-02-22/no-more-than-250-invoice-items).
MAX_INVOICE_ITEMS = 250
#: Metadata: at most 50 keys, key ≤ 40 characters, value ≤ 500 characters (https://docs.stripe.com/api/metadata).
METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500
#: ``PostInvoices`` ``description`` maxLength.
INVOICE_DESCRIPTION_MAX = 1500
#: ``PostInvoices`` ``footer`` maxLength.
INVOICE_FOOTER_MAX = 5000
#: ``PostCreditNotes`` ``memo`` maxLength.
CREDIT_NOTE_MEMO_MAX = 5000
#: ``custom_fields[][name]`` / ``[value]`` maxLength.
CUSTOM_FIELD_MAX = 30
#: ``PostInvoiceitems`` ``description`` maxLength.
ITEM_DESCRIPTION_MAX = 5000
#: ``PostCustomers`` ``name`` maxLength.
CUSTOMER_NAME_MAX = 256
#: ``PostTaxRates`` ``display_name`` maxLength.
TAX_DISPLAY_NAME_MAX = 50
#: Tax rate percentages have at most 4 decimal places.
TAX_PERCENT_DECIMALS = 4
#: Largest amount Stripe accepts, in minor units ("up to eight digits", https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts).
MAX_AMOUNT_MINOR = 99_999_999

#: Stripe's zero-decimal currencies (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
)
#: Stripe's three-decimal currencies: amounts in thousandths, last digit 0 (https://docs.stripe.com/currencies#three-decimal).
THREE_DECIMAL = frozenset(["BHD", "JOD", "KWD", "OMR", "TND"])


class MappingError(ValueError):
    """The invoice cannot be expressed in Stripe; ``field`` names the offending Stripe parameter or our field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class Ref:
    """A placeholder for an id known only at run time.

    ``customer``, ``invoice`` or ``tax_rate:<pct>:<inclusive|exclusive>``.
    """

    name: str

    def __str__(self) -> str:
        return "{" + self.name + "}"


@dataclass(frozen=True)
class TaxRateSpec:
    """A Stripe Tax Rate the plan needs: ``percentage`` (≤ 4 dp), ``inclusive`` flavour, ``display_name``."""

    percentage: Decimal
    inclusive: bool
    display_name: str

    @property
    def ref(self) -> Ref:
        return Ref(f"tax_rate:{rate_text(self.percentage)}:{'inclusive' if self.inclusive else 'exclusive'}")

    @property
    def lookup_key(self) -> str:
        """Key in ``settings.tax_rate_ids``: ``"23"`` (exclusive) or ``"23:inclusive"``."""
        return rate_text(self.percentage) + (":inclusive" if self.inclusive else "")

    def params(self, tenant: str) -> dict[str, Any]:
        """``POST /v1/tax_rates`` parameters (spec ``PostTaxRates``)."""
        return {
            "display_name": self.display_name,
            "inclusive": self.inclusive,
            "percentage": self.percentage,
            "metadata": {"broker_tenant": tenant, "broker_rate": self.lookup_key},
        }


@dataclass(frozen=True)
class StripePlan:
    """Everything needed to create one invoice: see the module docstring."""

    currency: str  # lower-case ISO code as Stripe uses it
    exponent: int  # Stripe minor-unit exponent of the currency
    inclusive_layout: bool  # True: amounts are gross and tax rates inclusive
    tax_rates: tuple[TaxRateSpec, ...]
    invoice: dict[str, Any]
    items: tuple[dict[str, Any], ...]
    total_minor: int  # our total in minor units = what Stripe's ``total`` must be
    tax_minor: int
    metadata: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- money
def stripe_exponent(currency: str) -> int:
    """Decimals of ``currency`` in Stripe's API: 0 for zero-decimal, 3 for three-decimal, else 2."""
    code = currency.upper()
    if code in ZERO_DECIMAL:
        return 0
    if code in THREE_DECIMAL:
        return 3
    return 2


def to_minor(amount: Decimal, currency: str, field_name: str) -> int:
    """``amount`` in Stripe minor units; :class:`MappingError` when it is not exactly representable.

    ``Decimal("136.50")`` EUR -> ``13650``; JPY ``Decimal("1200")`` -> ``1200``; KWD ``1.230`` -> ``1230``
    (``1.234`` KWD is refused: Stripe requires the last digit of three-decimal amounts to be 0).
    """
    exp = stripe_exponent(currency)
    scaled = amount.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise MappingError(
            field_name, f"{amount} {currency.upper()} has more decimals than Stripe's {exp} for {currency.upper()}"
        )
    minor = int(scaled)
    if exp == 3 and minor % 10:
        raise MappingError(
            field_name, f"{amount} {currency.upper()}: Stripe requires three-decimal amounts to end in 0"
        )
    return minor


def from_minor(amount: int, currency: str) -> Decimal:
    """Stripe minor units back to a Decimal with the currency's ISO decimals.

    ``13650`` EUR -> ``Decimal("136.50")``.
    """
    value = Decimal(int(amount)).scaleb(-stripe_exponent(currency))
    return value.quantize(Decimal(1).scaleb(-max(iso_minor_units(currency), 0)))


def stripe_line_tax(amount_minor: int, percentage: Decimal, inclusive: bool) -> int:
    """Tax Stripe computes for one line item with one Tax Rate, in minor units, rounded half up.

    Exclusive: ``amount × p / 100``; inclusive: ``amount × p / (100 + p)`` (the part of the gross
    amount that is tax). ``stripe_line_tax(13650, 23, False)`` -> ``3140`` (31.395 -> 31.40).
    """
    base = Decimal(amount_minor) * percentage
    exact = base / (Decimal(100) + percentage) if inclusive else base / Decimal(100)
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# --------------------------------------------------------------------------- idempotency keys
def idempotency_key(invoice: Invoice, step: str) -> str:
    """``Idempotency-Key`` of one step of delivering ``invoice``: ``{tenant}:stripe:{invoice_key}:{step}``.

    Steps: ``invoice`` (the draft), ``item-<n>`` (line n, 1-based), ``finalize``, ``send``,
    ``emailed``. Derived only from business identity (:mod:`connectors.sdk.idempotency`); at most 255
    characters of ``[A-Za-z0-9:._-]``, otherwise ``<sanitised prefix>:sha256:<hex of the full text>``.
    """
    return _shared_key(invoice.tenant, "stripe", invoice.invoice_key, step, STRIPE_KEYS)


def retire_idempotency_key(tenant: str, key: str, step: str) -> str:
    """``Idempotency-Key`` of one write retiring an invoice: ``{tenant}:stripe:{key}:{step}``.

    ``key`` is the invoice key of the record that asks (the new revision's, or the cancellation's);
    steps: ``void``, ``credit_note``. Fitted like :func:`idempotency_key`.
    """
    return _shared_key(tenant, "stripe", key, step, STRIPE_KEYS)


def customer_idempotency_key(tenant: str, client_id: str) -> str:
    """Key of the ``POST /v1/customers`` that creates our client ``client_id`` for ``tenant``."""
    return make_key(f"{tenant}:stripe:customer:{client_id}", STRIPE_KEYS)


def tax_rate_idempotency_key(tenant: str, spec: TaxRateSpec) -> str:
    """Key of the ``POST /v1/tax_rates`` creating ``spec`` (percentage, flavour and display name)."""
    name = hashlib.sha256(spec.display_name.encode("utf-8")).hexdigest()[:12]
    flavour = "inclusive" if spec.inclusive else "exclusive"
    return make_key(f"{tenant}:stripe:tax_rate:{rate_text(spec.percentage)}:{flavour}:{name}", STRIPE_KEYS)


# --------------------------------------------------------------------------- form encoding
def _scalar(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot send non-finite Decimal {value!r}")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError(f"float {value!r} in a Stripe request; use int or Decimal")
    if isinstance(value, (int, str, Ref)):
        return str(value)
    raise TypeError(f"cannot form-encode {type(value).__name__}: {value!r}")


def form_pairs(params: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Flatten nested params into Stripe's bracket notation, in insertion order.

    ``{"metadata": {"k": "v"}, "tax_rates": ["txr_1"], "custom_fields": [{"name": "a", "value": "b"}]}``
    -> ``[("metadata[k]", "v"), ("tax_rates[0]", "txr_1"), ("custom_fields[0][name]", "a"),
    ("custom_fields[0][value]", "b")]``.
    Booleans become ``true``/``false``, Decimals their exact text; ``None`` values are left out.
    """
    out: list[tuple[str, str]] = []
    for key, value in params.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, dict):
            out.extend(form_pairs(value, name))
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out.extend(form_pairs(item, f"{name}[{i}]"))
                else:
                    out.append((f"{name}[{i}]", _scalar(item)))
        else:
            out.append((name, _scalar(value)))
    return out


def form_body(params: dict[str, Any]) -> bytes:
    """``application/x-www-form-urlencoded`` body of ``params`` (UTF-8, bracket notation)."""
    return urlencode(form_pairs(params)).encode("ascii")


_SEGMENT = re.compile(r"\[([^\[\]]*)\]")


def decode_form(pairs: list[tuple[str, str]] | str | bytes) -> dict[str, Any]:
    """Inverse of :func:`form_pairs`: bracket-notation pairs (or a body) into nested dicts and lists.

    ``a[]=x&a[]=y`` and ``a[0]=x&a[1]=y`` both give ``{"a": ["x", "y"]}``; values stay strings.
    Raises ``ValueError`` on malformed names (``a[b``) or a name used both as a value and a container.
    """
    if isinstance(pairs, (bytes, str)):
        text = pairs.decode("utf-8") if isinstance(pairs, bytes) else pairs
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False)
    root: dict[str, Any] = {}
    for name, value in pairs:
        head, _, rest = name.partition("[")
        if not head:
            raise ValueError(f"malformed parameter name {name!r}")
        path: list[str] = [head]
        if rest:
            rest = "[" + rest
            pos = 0
            for m in _SEGMENT.finditer(rest):
                if m.start() != pos:
                    raise ValueError(f"malformed parameter name {name!r}")
                path.append(m.group(1))
                pos = m.end()
            if pos != len(rest):
                raise ValueError(f"malformed parameter name {name!r}")
        _insert(root, path, value, name)
    # A top level of index-only names ("0=x") would be a list; Stripe parameter names never are.
    return cast("dict[str, Any]", _listify(root))


def _insert(node: dict[str, Any], path: list[str], value: str, name: str) -> None:
    for i, name_seg in enumerate(path):
        last = i == len(path) - 1
        seg = f"\x00{len(node)}" if name_seg == "" else name_seg  # a[] appends
        if last:
            if seg in node and isinstance(node[seg], dict):
                raise ValueError(f"parameter {name!r} is both a value and an object")
            node[seg] = value
        else:
            child = node.setdefault(seg, {})
            if not isinstance(child, dict):
                raise ValueError(f"parameter {name!r} is both a value and an object")
            node = child


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    keys = list(converted)
    if keys and all(k.startswith("\x00") or k.isdigit() for k in keys):

        def order(k: str) -> int:
            return int(k[1:]) if k.startswith("\x00") else int(k)

        return [converted[k] for k in sorted(keys, key=order)]
    return converted


# --------------------------------------------------------------------------- plan
def _check_len(field_name: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise MappingError(field_name, f"{len(value)} characters, Stripe allows at most {limit}")


def choose_layout(invoice: Invoice) -> bool:
    """``True`` when the lines are sent gross with inclusive tax rates, ``False`` for net + exclusive rates.

    The invoice's own flavour (``tax_inclusive``) is tried first; the other one when Stripe's per-line
    rounding (:func:`stripe_line_tax`) would not reproduce every line's tax with it. Raises
    :class:`MappingError` naming the first line neither flavour reproduces.
    """
    first_failure: MappingError | None = None
    for inclusive in (invoice.tax_inclusive, not invoice.tax_inclusive):
        failure = None
        for n, line in enumerate(invoice.lines, start=1):
            amount = to_minor(line.total if inclusive else line.net, invoice.currency, f"lines[{n}].amount")
            ours = to_minor(line.tax, invoice.currency, f"lines[{n}].tax")
            theirs = stripe_line_tax(amount, line.tax_rate, inclusive) if line.tax_rate else 0
            if theirs != ours:
                failure = MappingError(
                    f"lines[{n}].tax",
                    f"our tax {line.tax} at {rate_text(line.tax_rate)}% is not what Stripe computes "
                    f"({from_minor(theirs, invoice.currency)} with an "
                    f"{'inclusive' if inclusive else 'exclusive'} rate)",
                )
                break
        if failure is None:
            return inclusive
        first_failure = first_failure or failure
    assert first_failure is not None
    raise first_failure


def _metadata(values: dict[str, str], where: str) -> dict[str, str]:
    if len(values) > METADATA_MAX_KEYS:
        raise MappingError(f"{where}.metadata", f"{len(values)} keys, Stripe allows at most {METADATA_MAX_KEYS}")
    for k, v in values.items():
        _check_len(f"{where}.metadata key {k!r}", k, METADATA_KEY_MAX)
        _check_len(f"{where}.metadata[{k}]", v, METADATA_VALUE_MAX)
    return values


def _places(value: Decimal) -> int:
    """Digits after the decimal point of a finite ``value`` (``Decimal("23.50")`` -> 2, ``Decimal("1E+2")`` -> -2)."""
    exponent = value.as_tuple().exponent
    return -exponent if isinstance(exponent, int) else 0


def _unix(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def invoice_to_stripe(invoice: Invoice, settings: StripeSettings) -> StripePlan:
    """The :class:`StripePlan` for ``invoice`` (pure; raises :class:`MappingError` naming the field).

    Draft invoice params (``PostInvoices``)::

        customer={customer}  currency=eur  collection_method=send_invoice  days_until_due=<due - issue>
        auto_advance=false  pending_invoice_items_behavior=exclude  effective_at=<issue date 00:00 UTC>
        description=<reference>  footer=<legal notes, one a line (only when there are any)>
        custom_fields[0][name]=<settings.number_field_name>  custom_fields[0][value]=<our number>
        metadata[broker_invoice_key]  metadata[broker_invoice_number]  metadata[broker_tenant]
        metadata[broker_lines]=<line count>  metadata[broker_total]=<our total in minor units>

    One invoice item per line (``PostInvoiceitems``)::

        customer={customer}  invoice={invoice}  currency=eur  description=...
        unit_amount_decimal=<unit price in minor units> quantity=<n>     (integral quantity, exact product, no discount)
        | amount=<line amount in minor units>                              (otherwise: quantity and discount folded in,
                                                                            shown in the description)
        tax_rates[0]={tax_rate:<pct>:<flavour>}  metadata[broker_invoice_key]  metadata[broker_line]=<n>

    The line amount is the net (exclusive layout) or the gross (inclusive layout), see :func:`choose_layout`.
    """
    currency = invoice.currency.upper()
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise MappingError("currency", f"{invoice.currency!r} is not an ISO 4217 code")
    if not invoice.lines:
        raise MappingError("lines", "an invoice needs at least one line")
    if len(invoice.lines) > MAX_INVOICE_ITEMS:
        raise MappingError(
            "lines", f"{len(invoice.lines)} lines, Stripe allows at most {MAX_INVOICE_ITEMS} invoice items per invoice"
        )
    inclusive = choose_layout(invoice)
    total_minor = to_minor(invoice.total, currency, "total")
    tax_minor = to_minor(invoice.tax_total, currency, "tax_total")
    if abs(total_minor) > MAX_AMOUNT_MINOR:
        raise MappingError(
            "total", f"{invoice.total} {currency} exceeds Stripe's maximum amount ({MAX_AMOUNT_MINOR} minor units)"
        )

    days = (invoice.due_date - invoice.issue_date).days
    if days < 0:
        raise MappingError("due_date", f"{invoice.due_date} is before the issue date {invoice.issue_date}")

    tax_specs: dict[tuple[Decimal, bool], TaxRateSpec] = {}
    items: list[dict[str, Any]] = []
    for n, line in enumerate(invoice.lines, start=1):
        rate = line.tax_rate
        if rate < 0 or rate > 100:
            raise MappingError(f"lines[{n}].tax_rate", f"{rate}% is outside Stripe's 0-100")
        if _places(rate) > TAX_PERCENT_DECIMALS and rate != rate.quantize(Decimal(1).scaleb(-TAX_PERCENT_DECIMALS)):
            raise MappingError(f"lines[{n}].tax_rate", f"{rate}% has more than {TAX_PERCENT_DECIMALS} decimals")
        spec = TaxRateSpec(rate.normalize() if rate else Decimal(0), inclusive, settings.tax_display_name)
        tax_specs.setdefault((spec.percentage, inclusive), spec)
        amount = to_minor(line.total if inclusive else line.net, currency, f"lines[{n}].amount")
        if abs(amount) > MAX_AMOUNT_MINOR:
            raise MappingError(
                f"lines[{n}].amount", f"{from_minor(amount, currency)} {currency} exceeds Stripe's maximum amount"
            )
        description = line.description.strip() or line.kind
        item: dict[str, Any] = {"customer": Ref("customer"), "invoice": Ref("invoice"), "currency": currency.lower()}
        unit_minor = line.unit_price.scaleb(stripe_exponent(currency))
        integral_qty = line.quantity > 0 and line.quantity == line.quantity.to_integral_value()
        if (
            integral_qty
            and line.discount_percent == 0
            and unit_minor * line.quantity == amount
            and _places(unit_minor.normalize()) <= 12
        ):
            item["description"] = description
            item["unit_amount_decimal"] = format(unit_minor.normalize(), "f") if unit_minor else "0"
            item["quantity"] = int(line.quantity)
        else:
            note = quantity_note(line.quantity, line.unit, line.unit_price, line.discount_percent)
            item["description"] = f"{description} ({note})"
            item["amount"] = amount
        _check_len(f"lines[{n}].description", item["description"], ITEM_DESCRIPTION_MAX)
        item["tax_rates"] = [spec.ref]
        item["metadata"] = _metadata(
            {
                "broker_invoice_key": invoice.invoice_key,
                "broker_line": str(n),
                "broker_source": line.source[:METADATA_VALUE_MAX],
            },
            f"lines[{n}]",
        )
        items.append(item)

    metadata = _metadata(
        {
            "broker_invoice_key": invoice.invoice_key,
            "broker_invoice_number": invoice.invoice_number,
            "broker_tenant": invoice.tenant,
            "broker_lines": str(len(invoice.lines)),
            "broker_total": str(total_minor),
        },
        "invoice",
    )
    params: dict[str, Any] = {
        "customer": Ref("customer"),
        "currency": currency.lower(),
        "collection_method": settings.collection_method,
    }
    if settings.collection_method == "send_invoice":
        params["days_until_due"] = days
    params["auto_advance"] = False
    params["pending_invoice_items_behavior"] = "exclude"
    params["effective_at"] = _unix(invoice.issue_date)
    if invoice.reference:
        _check_len("reference (invoice description)", invoice.reference, INVOICE_DESCRIPTION_MAX)
        params["description"] = invoice.reference
    if footer := legal_footer(invoice):
        _check_len("legal_notes (invoice footer)", footer, INVOICE_FOOTER_MAX)
        params["footer"] = footer
    if settings.number_field_name:
        _check_len("custom_fields[0][name]", settings.number_field_name, CUSTOM_FIELD_MAX)
        _check_len("invoice_number (custom_fields[0][value])", invoice.invoice_number, CUSTOM_FIELD_MAX)
        params["custom_fields"] = [{"name": settings.number_field_name, "value": invoice.invoice_number}]
    params["metadata"] = metadata
    return StripePlan(
        currency=currency.lower(),
        exponent=stripe_exponent(currency),
        inclusive_layout=inclusive,
        tax_rates=tuple(tax_specs.values()),
        invoice=params,
        items=tuple(items),
        total_minor=total_minor,
        tax_minor=tax_minor,
        metadata=metadata,
    )


def legal_footer(invoice: Invoice) -> str:
    """The invoice's legal notes as Stripe's ``footer``: one a line, blank ones left out (``""``: none)."""
    return "\n".join(note.strip() for note in invoice.legal_notes if note.strip())


def credit_note_params(inv: Json, *, reason: str, issued: date, key: str, tenant: str) -> dict[str, Any]:
    """``POST /v1/credit_notes`` parameters (spec ``PostCreditNotes``) crediting Stripe invoice ``inv`` in full.

    ``amount`` = the invoice's ``total``. The part up to its ``amount_remaining`` reduces what is due
    (pre-payment); the rest — all of it on a paid invoice — goes to the customer's credit balance
    (``credit_amount``; "the sum of the refund, credit and outside of Stripe amounts must equal the
    credit note total" for post-payment credit notes), so the balance shows the credit and Stripe
    applies it to the customer's next invoice. ``reason=order_change``, ``effective_at`` = ``issued``
    (00:00 UTC, the date printed on the PDF), ``memo`` = ``Credit for <our number>: <reason>`` and
    ``metadata``: ``broker_credit_note_number`` (:func:`connectors.sdk.lifecycle.credit_note_number` of
    our number: Stripe numbers credit notes itself), ``broker_invoice_key`` (the credited invoice's
    marker), ``broker_tenant``, ``broker_requested_by`` (``key``). Raises :class:`MappingError` when the
    invoice has no positive total.
    """
    total = inv.get("total")
    if not isinstance(total, int) or total <= 0:
        raise MappingError("total", f"invoice {inv.get('id')} has no positive total to credit ({total!r})")
    remaining = inv.get("amount_remaining") if inv.get("status") != "paid" else 0
    pre = min(total, remaining if isinstance(remaining, int) and remaining > 0 else 0)
    meta = metadata_of(inv)
    ours = str(meta.get("broker_invoice_number") or inv.get("number") or inv.get("id"))
    memo = f"Credit for {ours}: {reason}"[:CREDIT_NOTE_MEMO_MAX]
    metadata = {
        "broker_credit_note_number": credit_note_number(ours)[:METADATA_VALUE_MAX],
        "broker_invoice_key": str(meta.get("broker_invoice_key") or ""),
        "broker_tenant": tenant,
        "broker_requested_by": key[:METADATA_VALUE_MAX],
    }
    params: dict[str, Any] = {
        "invoice": str(inv["id"]),
        "amount": total,
        "reason": "order_change",
        "effective_at": _unix(issued),
        "memo": memo,
        "metadata": {k: v for k, v in metadata.items() if v},
    }
    if total - pre:
        params["credit_amount"] = total - pre
    return params


def carries_number(inv: Json, number: str, field_name: str | None) -> bool:
    """Whether Stripe invoice ``inv`` is labelled with our ``number``: ``metadata[broker_invoice_number]`` or the
    custom field ``field_name`` (the one our invoices print the number in)."""
    if metadata_of(inv).get("broker_invoice_number") == number:
        return True
    fields = inv.get("custom_fields") or []
    return bool(field_name) and any(
        isinstance(f, dict) and f.get("name") == field_name and f.get("value") == number for f in fields
    )


def customer_params(query: ContactQuery, tenant: str) -> Json:
    """``POST /v1/customers`` parameters (spec ``PostCustomers``) for our client: name, e-mail, and our ids in
    ``metadata`` (``broker_tenant``, ``broker_client_id``, ``broker_tax_number``); :class:`MappingError`
    when the name is longer than Stripe allows."""
    _check_len("name", query.name, CUSTOMER_NAME_MAX)
    metadata = {"broker_tenant": tenant, "broker_client_id": query.client_id}
    if query.tax_number:
        metadata["broker_tax_number"] = query.tax_number
    return {"name": query.name, "email": query.email or None, "metadata": metadata}  # None: not sent


def resolve(params: Any, ids: dict[str, str]) -> Any:
    """Replace every :class:`Ref` in ``params`` with ``ids[ref.name]`` (``KeyError`` when one is unknown)."""
    if isinstance(params, Ref):
        return ids[params.name]
    if isinstance(params, dict):
        return {k: resolve(v, ids) for k, v in params.items()}
    if isinstance(params, (list, tuple)):
        return [resolve(v, ids) for v in params]
    return params


def search_literal(value: str) -> str:
    """Quote ``value`` for Stripe's search query language: ``'...'`` with ``\\'`` and ``\\\\`` escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# --------------------------------------------------------------------------- Stripe -> ours
#: Invoice statuses by how far they went: a finalised invoice wins over a void one, over a leftover draft.
_STATUS_RANK = {"paid": 0, "open": 0, "uncollectible": 0, "void": 1, "draft": 2}


def metadata_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A Stripe object's ``metadata`` (``{}`` when absent)."""
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def metadata_query(**clauses: str) -> str:
    """Search query matching every ``metadata['key']:'value'`` clause (Stripe's search query language)."""
    return " AND ".join(f"metadata['{key}']:{search_literal(value)}" for key, value in clauses.items())


def error_of(body: Any) -> Json:
    """The ``error`` object of a Stripe error body (``{"error": {"type", "code", "message", "param"}}``, spec
    schema ``error``); ``{}`` when there is none."""
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {}


def lines_present(items: Iterable[Json], invoice_key: str) -> set[str]:
    """Our line numbers (``metadata[broker_line]``) among invoice ``items`` of the invoice ``invoice_key``."""
    return {
        str(metadata_of(i).get("broker_line")) for i in items if metadata_of(i).get("broker_invoice_key") == invoice_key
    }


def list_objects(page: Json) -> list[Json]:
    """The objects of a list or search answer (its ``data``)."""
    return [o for o in page.get("data") or [] if isinstance(o, dict)]


def pick_invoice(invoices: Iterable[Json], invoice_key: str) -> Json | None:
    """Our invoice among ``invoices`` (``metadata['broker_invoice_key']``): the most advanced, then the oldest."""
    mine = [o for o in invoices if metadata_of(o).get("broker_invoice_key") == invoice_key]
    mine.sort(key=lambda o: (_STATUS_RANK.get(str(o.get("status")), 3), o.get("created") or 0))
    return mine[0] if mine else None


def matching_tax_rate(rates: Iterable[Json], spec: TaxRateSpec, tenant: str) -> str | None:
    """Id of an existing Tax Rate equal to ``spec`` (percentage, flavour, display name), ``None`` when none is.

    One created for ``tenant`` (``metadata['broker_tenant']``) first, then the oldest.
    """
    candidates = []
    for rate in rates:
        value = rate.get("percentage")
        try:
            percentage = None if value is None or isinstance(value, bool) else rate_text(Decimal(str(value)))
        except ArithmeticError:
            percentage = None
        if (
            percentage == rate_text(spec.percentage)
            and bool(rate.get("inclusive")) == spec.inclusive
            and rate.get("display_name") == spec.display_name
        ):
            ours = metadata_of(rate).get("broker_tenant") == tenant
            candidates.append((0 if ours else 1, rate.get("created") or 0, str(rate.get("id"))))
    return min(candidates)[2] if candidates else None


def draft_mismatches(plan: StripePlan, inv: Json) -> list[str]:
    """How Stripe's computed draft ``inv`` differs from ``plan`` (totals in minor units); empty when it matches.

    Compared: ``total``, ``tax``, ``amount_due`` (our total plus the customer's ``starting_balance``,
    not below 0), the line count and the currency.
    """
    lines = inv.get("lines") or {}
    count = lines.get("total_count")
    if count is None:
        count = len(lines.get("data") or [])
    expected_due = max(0, plan.total_minor + int(inv.get("starting_balance") or 0))
    problems = []
    if inv.get("total") != plan.total_minor:
        problems.append(f"total {inv.get('total')} != ours {plan.total_minor}")
    if (inv.get("tax") or 0) != plan.tax_minor:
        problems.append(f"tax {inv.get('tax')} != ours {plan.tax_minor}")
    if inv.get("amount_due") != expected_due:
        problems.append(f"amount_due {inv.get('amount_due')} != {expected_due}")
    if count != len(plan.items):
        problems.append(f"{count} lines != our {len(plan.items)}")
    if str(inv.get("currency", "")).lower() != plan.currency:
        problems.append(f"currency {inv.get('currency')} != {plan.currency}")
    return problems


def is_complete(inv: Json, settings: StripeSettings, *, draft: bool = False) -> bool:
    """True when invoice ``inv`` needs nothing more from the connector.

    A draft only when the tenant wants drafts (``invoice_status: draft``, or ``draft``: the invoice is
    to be posted as one, :attr:`Invoice.draft <connectors.sdk.invoice.Invoice.draft>`) and it holds all
    our lines and our total (``metadata[broker_lines]``/``[broker_total]``); an open invoice only once
    e-mailed when ``send_email`` (``metadata[broker_emailed]``); any other status always.
    """
    meta = metadata_of(inv)
    status = inv.get("status")
    if status == "draft":
        lines = inv.get("lines") or {}
        count = lines.get("total_count", len(lines.get("data") or []))
        return (
            (draft or settings.invoice_status == "draft")
            and str(count) == str(meta.get("broker_lines"))
            and str(inv.get("total")) == str(meta.get("broker_total"))
        )
    return not (status == "open" and settings.send_email and meta.get("broker_emailed") != "true")


def invoice_from_stripe(inv: Json, our_number: str) -> ExternalInvoice:
    """:class:`ExternalInvoice` of a Stripe invoice: ``number`` is Stripe's (``our_number`` while a draft has
    none), ``total`` and ``paid`` (``amount_paid``) from minor units (``None`` when absent), ``marker`` =
    ``metadata[broker_invoice_key]`` (``None``: not ours). Raises ``KeyError`` without ``id``."""
    currency = str(inv.get("currency") or "eur")
    total, paid = inv.get("total"), inv.get("amount_paid")
    return ExternalInvoice(
        external_id=str(inv["id"]),
        number=str(inv.get("number") or our_number),
        total=from_minor(total, currency) if isinstance(total, int) else None,
        status=inv.get("status"),
        marker=str(metadata_of(inv).get("broker_invoice_key") or "") or None,
        paid=from_minor(paid, currency) if isinstance(paid, int) else None,
    )
