"""Runs the hand-computed golden table in tests/golden/pricing_cases.py against the pricing engine.

The expected values are literals written by hand; this module only compares. Money is compared
as text (exact decimals of the currency), quantities and unit prices as Decimal values.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from broker.config import Tenant
from broker.events import parse_event
from broker.pricing import ALLOWANCE_TABLE, QUOTES_TABLE, PricingError, price_event, price_with_state
from connectors.sdk.invoice import Invoice, InvoiceLine, NotBillable
from tests.golden.pricing_cases import CASES, SEQUENCES, L

PRICED_AT = datetime(2026, 11, 1, tzinfo=UTC)


def _check_line(got: InvoiceLine, want: L, where: str) -> None:
    assert got.kind == want.kind, where
    assert got.quantity == Decimal(want.quantity), (where, got.quantity)
    assert got.unit_price == Decimal(want.unit_price), (where, got.unit_price)
    assert (str(got.net), str(got.tax), str(got.total)) == (want.net, want.tax, want.total), (where, got)
    assert got.tax_rate == Decimal(want.tax_rate), (where, got.tax_rate)
    if want.cost is not None:
        assert str(got.cost) == want.cost, (where, got.cost)
    if want.source is not None:
        assert got.source == want.source, (where, got.source)
    if want.rule is not None:
        assert want.rule in got.rule, (where, got.rule)
    if want.discount is not None:
        assert got.discount_percent == Decimal(want.discount), (where, got.discount_percent)
    assert got.covered_by == want.covered_by, (where, got.covered_by)
    if want.worked is not None:
        assert (got.worked_minutes, got.billed_minutes) == (Decimal(want.worked), want.billed), where


def _check_lines(lines: list[InvoiceLine], wanted: tuple[L, ...], case_id: str) -> None:
    assert len(lines) == len(wanted), (case_id, [(ln.kind, ln.net, ln.rule) for ln in lines])
    for i, (got, want) in enumerate(zip(lines, wanted, strict=True)):
        _check_line(got, want, f"{case_id} line {i}")


def test_golden_table_is_big_enough_and_covers_every_rule():
    assert len(CASES) + sum(len(s.steps) for s in SEQUENCES) >= 40
    covered = Counter(rule for case in [*CASES, *SEQUENCES] for rule in case.rules)
    for rule in (
        "labour",
        "rates",
        "travel",
        "bands",
        "dst",
        "call_out",
        "parts",
        "expenses",
        "contracts",
        "allowance",
        "quotes",
        "tax",
        "reverse_charge",
        "tax_inclusive",
        "currency",
        "discounts",
        "cost",
        "traceability",
        "revisions",
        "not_billable",
        "errors",
    ):
        assert covered[rule] >= 1, rule
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_golden_case(case):
    tenant = Tenant.model_validate(case.tenant)
    event = parse_event(case.event)
    quote = parse_event(case.quote) if case.quote else None
    if case.error_field:
        with pytest.raises(PricingError) as exc:
            price_event(event, "acme", tenant, allowance_used=case.allowance_used, quote=quote, priced_at=PRICED_AT)
        assert exc.value.field == case.error_field
        assert str(exc.value).startswith(case.error_field + ": ")
        return
    result = price_event(event, "acme", tenant, allowance_used=case.allowance_used, quote=quote, priced_at=PRICED_AT)
    if case.not_billable:
        assert isinstance(result, NotBillable), result
        assert result.reason_code == case.not_billable, result.reason
        _check_lines(result.lines, case.lines, case.id)
    else:
        assert isinstance(result, Invoice), result
        _check_lines(result.lines, case.lines, case.id)
        net, tax, total = case.totals
        assert (str(result.net_total), str(result.tax_total), str(result.total)) == (net, tax, total)
        if case.margin is not None:
            assert str(result.margin) == case.margin
        if case.legal_notes is not None:
            assert tuple(result.legal_notes) == case.legal_notes
            assert all(note in result.notes for note in case.legal_notes)
        if case.tax_inclusive is not None:
            assert result.tax_inclusive is case.tax_inclusive
        if case.invoice_number is not None:
            assert result.invoice_number == case.invoice_number
    if case.cost is not None:
        assert str(result.cost_total) == case.cost
    if case.invoice_key is not None:
        assert result.invoice_key == case.invoice_key
    if case.allowance is not None:
        a = result.allowance
        assert (a.used_before_minutes, a.consumed_minutes, a.remaining_minutes) == case.allowance


@pytest.mark.parametrize("sequence", SEQUENCES, ids=lambda s: s.id)
def test_golden_sequence(sequence):
    tenant = Tenant.model_validate(sequence.tenant)
    tables: dict[str, dict] = {ALLOWANCE_TABLE: {}, QUOTES_TABLE: {}}
    for n, step in enumerate(sequence.steps):
        where = f"{sequence.id} step {n}"
        result = price_with_state(
            parse_event(step.event),
            "acme",
            tenant,
            allowances=tables[ALLOWANCE_TABLE],
            quotes=tables[QUOTES_TABLE],
            priced_at=PRICED_AT,
        )
        invoice = result.priced
        assert isinstance(invoice, Invoice), (where, invoice)
        _check_lines(invoice.lines, step.lines, where)
        assert (str(invoice.net_total), str(invoice.tax_total), str(invoice.total)) == step.totals, where
        a = invoice.allowance
        assert (a.used_before_minutes, a.consumed_minutes, a.remaining_minutes) == step.allowance, where
        assert bool(result.writes) is step.writes_state, (where, result.writes)
        for table, key, value in result.writes:
            tables[table][key] = value
