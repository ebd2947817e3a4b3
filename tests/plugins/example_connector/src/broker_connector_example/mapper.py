"""Pure mapping from the broker's invoice to Ledgerly's ``POST /v1/accounts/{id}/invoices`` body (no I/O).

Amounts are decimal strings with their exact text (``Decimal("136.50")`` -> ``"136.50"``): never floats.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors.sdk import PermanentError
from connectors.sdk.invoice import Invoice
from connectors.sdk.lifecycle import marker

MAX_DESCRIPTION = 5000  # Ledgerly's documented field limit, checked before sending
MAX_LINES = 1000


def _money(value: Decimal) -> str:
    return format(value, "f")


def invoice_to_ledgerly(invoice: Invoice, customer_id: str | None) -> dict[str, Any]:
    """The create body of ``invoice`` billed to Ledgerly customer ``customer_id``.

    ``memo`` (kept, never printed) carries our ownership marker; ``notes`` (printed) the legal notes.
    """
    return {
        "number": invoice.invoice_number,
        "reference": invoice.reference,
        "memo": marker(invoice.invoice_key),
        "notes": "\n".join(invoice.legal_notes),
        "customer_id": customer_id,
        "currency": invoice.currency,
        "issue_date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "lines": [
            {
                "description": ln.description,
                "quantity": _money(ln.quantity),
                "unit_price": _money(ln.unit_price),
                "tax_rate": _money(ln.tax_rate),
            }
            for ln in invoice.lines
        ],
    }


def check_limits(invoice: Invoice) -> None:
    """Field limits checked before sending: a PermanentError naming the field, never a truncation."""
    if len(invoice.lines) > MAX_LINES:
        raise PermanentError(f"{invoice.invoice_number}: {len(invoice.lines)} lines, Ledgerly accepts {MAX_LINES}")
    for n, line in enumerate(invoice.lines, 1):
        if len(line.description) > MAX_DESCRIPTION:
            raise PermanentError(
                f"{invoice.invoice_number} line {n}: description of {len(line.description)} "
                f"characters, Ledgerly accepts {MAX_DESCRIPTION}"
            )
