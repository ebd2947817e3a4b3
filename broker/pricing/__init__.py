"""Pure pricing: one maintenance event + the tenant's configuration (+ state read by the caller) -> an invoice.

:func:`price_event` does no I/O, reads no clock (``priced_at`` is passed in) and is
deterministic: the same event, tenant and inputs always give the same invoice, down to the
invoice number. Everything is :class:`~decimal.Decimal`; floats are never used. The rules are
documented in ``docs/pricing.md``; in short:

* labour per technician per visit (or per entry), split into time bands on the tenant's wall
  clock (DST-correct), rounded up to the increment once, with a minimum per technician-visit;
  rate client+skill > client > technician > skill; travel by time or mileage;
* call-out once per corrective visit (out-of-hours amount when the visit starts in a band);
* parts at the catalogue price or cost + category markup; client-supplied parts not billed;
  expenses at cost + handling;
* contracts cover preventive labour/parts, a monthly corrective-hours allowance (state: the
  caller passes what was consumed, the result carries what this event consumed) and call-outs;
* quotes at their fixed prices, in full at approval, as deposit + balance, or at completion,
  with only the extras outside the quote billed on the work order;
* VAT per line type, exemptions and reverse charge (rate 0 + legal note), tax-inclusive
  prices; tax per line rounded half-up to the currency minor unit; totals = sums of lines;
* client discounts per line; cost and margin; every line names its source and rule.

Modules: :mod:`~broker.pricing.core` (errors, drafts, tax), :mod:`~broker.pricing.bands` (time
bands), :mod:`~broker.pricing.labour`, :mod:`~broker.pricing.items` (parts, expenses, quotes),
:mod:`~broker.pricing.contracts` (allowance), :mod:`~broker.pricing.engine`
(:func:`price_event`), :mod:`~broker.pricing.state` (:func:`price_with_state` over tables).
"""

from broker.pricing.contracts import (
    allowance_key,
    allowance_month,
    applicable_contract,
    apply_allowance,
    consume_allowance,
    used_by_others,
)
from broker.pricing.core import (
    Event,
    LineDraft,
    PricingError,
    billable_minutes,
    document_reference,
    finish_line,
    hours_quantity,
    minutes_amount,
    totals,
)
from broker.pricing.engine import price_event, quote_needed
from broker.pricing.numbers import INVOICE_NUMBER_MAX, invoice_number
from broker.pricing.state import (
    ALLOWANCE_TABLE,
    QUOTES_TABLE,
    StatefulResult,
    price_with_state,
    pricing_key,
    quote_key,
)

__all__ = [
    "ALLOWANCE_TABLE",
    "INVOICE_NUMBER_MAX",
    "QUOTES_TABLE",
    "Event",
    "LineDraft",
    "PricingError",
    "StatefulResult",
    "allowance_key",
    "allowance_month",
    "applicable_contract",
    "apply_allowance",
    "billable_minutes",
    "consume_allowance",
    "document_reference",
    "finish_line",
    "hours_quantity",
    "invoice_number",
    "minutes_amount",
    "price_event",
    "price_with_state",
    "pricing_key",
    "quote_key",
    "quote_needed",
    "totals",
    "used_by_others",
]
