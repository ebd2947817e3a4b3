"""Test invoices of the conformance kit, with exact totals.

Every amount is computed with :class:`~decimal.Decimal` the way the broker prices: each line's
net = quantity × unit price rounded half-up to the cent, tax per line rounded half-up, document
totals = sums of the rounded lines. The comments give the hand-checked values at the default
23 % rate (``tests/test_conformance_kit.py`` asserts them), so a connector whose billing system
computes another total is caught to the cent.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connectors.sdk.invoice import Invoice, InvoiceLine

CENT = Decimal("0.01")
D = Decimal
#: The rate the standard line sets default to (a percentage).
DEFAULT_RATE = Decimal("23")


def q2(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def make_line(
    description: str,
    quantity: str | Decimal,
    unit_price: str | Decimal,
    rate: str | Decimal,
    *,
    kind: str = "labour",
    **extra: Any,
) -> InvoiceLine:
    """One line with ``net``, ``tax`` and ``total`` computed and rounded like the pricing engine."""
    qty, price, rate_d = D(str(quantity)), D(str(unit_price)), D(str(rate))
    net = q2(qty * price)
    tax = q2(net * rate_d / 100)
    return InvoiceLine(
        kind=kind,
        description=description,
        quantity=qty,
        unit_price=price,
        net=net,
        tax_rate=rate_d,
        tax=tax,
        total=net + tax,
        source=f"conformance:{kind}",
        rule="conformance",
        **extra,
    )


def make_invoice(
    number: str,
    lines: list[InvoiceLine],
    *,
    tenant: str = "conformance",
    currency: str = "EUR",
    contact_id: str | None = None,
    client_name: str = "Conformance Client, Lda",
    client_id: str = "CLI-CONF",
    document_id: str | None = None,
    reference: str | None = None,
    billing_system: str = "conformance",
    revision: int = 1,
    legal_notes: list[str] | None = None,
) -> Invoice:
    """An invoice whose totals are the sums of its rounded lines (``net_total + tax_total == total``)."""
    doc = document_id or number
    net = sum((ln.net for ln in lines), D("0.00"))
    tax = sum((ln.tax for ln in lines), D("0.00"))
    return Invoice(
        invoice_key=f"{tenant}:wo:{doc}:r{revision}",
        invoice_number=number,
        order_key=f"{tenant}:wo:{doc}",
        tenant=tenant,
        billing_system=billing_system,
        event_id=f"conformance:{doc}",
        event_type="maintenance.work_order.completed",
        event_time=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
        document="wo",
        document_id=doc,
        revision=revision,
        client_id=client_id,
        client_name=client_name,
        contact_id=contact_id,
        site_id="SITE-CONF",
        currency=currency,
        issue_date=date(2026, 3, 2),
        due_date=date(2026, 4, 1),
        reference=reference or f"WO {doc}",
        lines=lines,
        net_total=net,
        tax_total=tax,
        total=net + tax,
        cost_total=D("0.00"),
        margin=net,
        legal_notes=legal_notes or [],
    )


def standard_lines(rate: Decimal = DEFAULT_RATE) -> list[InvoiceLine]:
    """Labour and a part at one rate.

    At 23 %: 3.25 h × 42.00 = 136.50, tax 31.395 -> 31.40; 2 × 18.75 = 37.50, tax 8.625 -> 8.63;
    net 174.00, tax 40.03, total 214.03.
    """
    return [
        make_line("HVAC corrective labour", "3.25", "42.00", rate),
        make_line("Contactor 25A", "2", "18.75", rate, kind="part"),
    ]


def mixed_rate_lines(rate: Decimal = DEFAULT_RATE) -> list[InvoiceLine]:
    """A standard-rate line, a zero-rate line and a line whose tax rounds.

    At 23 %: 1.5 × 40.00 = 60.00, tax 13.80; 1 × 12.50 at 0 % = 12.50, tax 0.00; 3 × 0.99 = 2.97,
    tax 0.6831 -> 0.68; net 75.47, tax 14.48, total 89.95.
    """
    return [
        make_line("Preventive visit", "1.5", "40.00", rate),
        make_line("Waste disposal fee (exempt)", "1", "12.50", "0", kind="expense"),
        make_line("Washers M8", "3", "0.99", rate, kind="part"),
    ]


def many_lines(count: int = 500, rate: Decimal = DEFAULT_RATE) -> list[InvoiceLine]:
    """``count`` lines alternating 1 × 1.05 at the rate and 2 × 0.50 at 0 %.

    At 23 % and 500 lines: 250 × 1.05 = 262.50 net with 250 × 0.24 (0.2415 rounded) = 60.00 tax,
    plus 250 × 1.00 at 0 %; net 512.50, tax 60.00, total 572.50 (rounding the document instead
    of the lines would give 60.38: the per-line rule matters).
    """
    lines = []
    for i in range(count):
        if i % 2 == 0:
            lines.append(make_line(f"Bolt batch {i + 1}", "1", "1.05", rate, kind="part"))
        else:
            lines.append(make_line(f"Nut batch {i + 1}", "2", "0.50", "0", kind="part"))
    return lines


def zero_line(rate: Decimal = DEFAULT_RATE) -> list[InvoiceLine]:
    """A free line among paid ones. At 23 %: 2 × 30.00 = 60.00 (13.80) + 1 × 0.00 (0.00); total 73.80."""
    return [
        make_line("Inspection labour", "2", "30.00", rate),
        make_line("Warranty part (no charge)", "1", "0.00", rate, kind="part"),
    ]


def negative_line(rate: Decimal = DEFAULT_RATE) -> list[InvoiceLine]:
    """A negative (discount) line. At 23 %: 100.00 (23.00) and −10.00 (−2.30); net 90.00, tax 20.70, total 110.70."""
    return [
        make_line("Boiler service", "1", "100.00", rate),
        make_line("Loyalty discount", "1", "-10.00", rate, kind="discount"),
    ]


#: Descriptions and names the hostile-content cases use.
NON_ASCII_NAME = 'Ærøskøbing Ålesund — Ōsaka 株式会社 «Ünïcødé» & Sons <Ltd> "Q" O\'Brien'
NON_ASCII_DESCRIPTION = 'Réparação do ar condicionado — 冷却水ポンプ交換 🔧 עברית ‹tab›\t\\ backslash "quotes"'


def long_description(length: int = 4000) -> str:
    """A description of exactly ``length`` characters mixing ASCII and non-ASCII text."""
    unit = "Substituição de válvula termostática — verificação de pressão; "
    text = (unit * (length // len(unit) + 1))[:length]
    assert len(text) == length
    return text


__all__ = [
    "NON_ASCII_DESCRIPTION",
    "NON_ASCII_NAME",
    "long_description",
    "make_invoice",
    "make_line",
    "many_lines",
    "mixed_rate_lines",
    "negative_line",
    "q2",
    "standard_lines",
    "zero_line",
]
