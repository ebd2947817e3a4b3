"""Tests of broker.pricing.price_event.

Every expected amount is computed by hand in the comments with Decimal arithmetic and written as a
literal: the tests never ask the code under test what the answer should be.
"""

from __future__ import annotations

import json
from copy import deepcopy
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.config import Tenant, load_config
from broker.events import EventDecodeError, parse_event
from broker.pricing import PricingError, billable_minutes, invoice_number, price_event
from connectors.sdk.invoice import Invoice, NotBillable
from connectors.sdk.money import minor_units

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "broker" / "examples"

# --------------------------------------------------------------------------- fixtures
BASE_TENANT = {
    "name": "Test FM",
    "currency": "EUR",
    "timezone": "Europe/Lisbon",
    "vat_percent": "23",
    "invoice_prefix": "ACME",
    "payment_terms_days": 30,
    "billing": {"system": "xero", "settings": {}},
    "clients": {"CLI-1": {"name": "Hotel Atlântico Lisboa, S.A.", "contact_id": "c-1"}},
    "rate_card": {
        "billing_increment_minutes": 15,
        "minimum_billable_minutes": 60,
        "default_skill": "general",
        "skills": {
            "hvac": {"hourly_rate": "42.00", "cost_rate": "24.00"},
            "electrical": {"hourly_rate": "38.00", "cost_rate": "22.00"},
            "general": {"hourly_rate": "30.00", "cost_rate": "16.00"},
        },
        "technicians": {
            "T31": {"name": "Ana Costa", "skill": "hvac"},
            "T32": {"name": "Bruno Reis", "skill": "electrical", "hourly_rate": "36.00", "cost_rate": "21.00"},
        },
        "call_out_fee": "45.00",
        "parts_markup_percent": "20",
        "expenses_handling_percent": "0",
    },
}


def make_tenant(**overrides) -> Tenant:
    raw = deepcopy(BASE_TENANT)
    card = overrides.pop("rate_card", {})
    raw.update(overrides)
    raw["rate_card"].update(card)
    return Tenant.model_validate(raw)


def work_order(
    *,
    kind="corrective",
    entries=(),
    parts=(),
    expenses=(),
    tenant="acme",
    client="CLI-1",
    wo_id="1001",
    revision=1,
    time="2026-03-03T11:30:00+00:00",
    etype="maintenance.work_order.completed",
):
    data = {
        "client_id": client,
        "site_id": "SITE-1",
        "revision": revision,
        "time_entries": list(entries),
        "parts": list(parts),
        "expenses": list(expenses),
    }
    if etype == "maintenance.work_order.completed":
        data.update(work_order_id=wo_id, kind=kind)
    else:
        data.update(scheduled_job_id=wo_id)
    return parse_event(
        {
            "specversion": "1.0",
            "id": f"evt-{wo_id}-{revision}",
            "source": "/platforms/test",
            "type": etype,
            "time": time,
            "tenant": tenant,
            "data": data,
        }
    )


def quote(lines, *, tenant="acme", client="CLI-1"):
    return parse_event(
        {
            "specversion": "1.0",
            "id": "evt-q",
            "source": "/platforms/test",
            "type": "maintenance.quote.approved",
            "time": "2026-03-10T16:45:00+00:00",
            "tenant": tenant,
            "data": {"quote_id": "Q-12", "client_id": client, "site_id": "SITE-1", "lines": lines},
        }
    )


def te(eid, tech, minutes, **kw):
    return {"id": eid, "technician_id": tech, "duration_seconds": minutes * 60, **kw}


def part(pid, qty, *, cost=None, price=None, sku="SKU-1", **kw):
    p = {"id": pid, "sku": sku, "description": f"Part {sku}", "quantity": qty, **kw}
    if cost is not None:
        p["unit_cost"] = cost
    if price is not None:
        p["unit_price"] = price
    return p


def price(event, tenant=None, tenant_id="acme"):
    return price_event(event, tenant_id, tenant or make_tenant(), priced_at=datetime(2026, 4, 1, tzinfo=UTC))


def lines_of(inv, kind):
    return [line for line in inv.lines if line.kind == kind]


# --------------------------------------------------------------------------- labour
def test_increment_rounds_up():
    # T31 hvac 42.00/h, 127 min -> ceil(127/15)=9 blocks -> 135 min = 2.25 h; 2.25 × 42.00 = 94.50
    # cost on the time worked (default cost_basis: worked): 127 × 24.00 / 60 = 50.80; preventive so no call-out
    inv = price(work_order(kind="preventive", entries=[te("TE-1", "T31", 127)]))
    (line,) = inv.lines
    assert line.kind == "labour"
    assert line.quantity == Decimal("2.25") and line.unit == "h"
    assert line.unit_price == Decimal("42.00")
    assert line.net == Decimal("94.50")
    assert (line.cost, line.worked_minutes, line.billed_minutes) == (Decimal("50.80"), Decimal("127"), 135)
    # cost_basis: billed costs the billed 2.25 h: 2.25 × 24.00 = 54.00
    billed = price(
        work_order(kind="preventive", entries=[te("TE-1", "T31", 127)]), make_tenant(rate_card={"cost_basis": "billed"})
    )
    assert (billed.lines[0].cost, billed.cost_total, billed.margin) == (
        Decimal("54.00"),
        Decimal("54.00"),
        Decimal("40.50"),
    )
    assert line.source == "time_entry:TE-1"
    assert line.rule == "rate:skill:hvac; increment 15 min; minimum 60 min"
    # tax 94.50 × 0.23 = 21.735 -> 21.74 (half-up); total 116.24
    assert (line.tax, line.total) == (Decimal("21.74"), Decimal("116.24"))
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("94.50"), Decimal("21.74"), Decimal("116.24"))
    assert inv.cost_total == Decimal("50.80") and inv.margin == Decimal("43.70")


def test_exact_multiple_is_not_rounded():
    # 120 min is already a multiple of 15 -> 120 min = 2 h; 2 × 42.00 = 84.00
    inv = price(work_order(kind="preventive", entries=[te("TE-1", "T31", 120)]))
    assert inv.lines[0].quantity == Decimal("2")
    assert inv.lines[0].net == Decimal("84.00")
    # one second more spills into the next block: 7201 s -> 135 min
    assert billable_minutes(7200, 15, 60) == 120
    assert billable_minutes(7201, 15, 60) == 135


def test_minimum_billable_time():
    # 40 min -> 45 min by increment -> raised to the 60 min minimum = 1 h × 42.00 = 42.00
    inv = price(work_order(kind="preventive", entries=[te("TE-1", "T31", 40)]))
    assert inv.lines[0].quantity == Decimal("1")
    assert inv.lines[0].net == Decimal("42.00")
    # the minimum is per technician per visit, not per entry: 2 × 20 min = 40 min -> one 60 min line
    inv = price(work_order(kind="preventive", entries=[te("TE-1", "T31", 20), te("TE-2", "T31", 20)]))
    (line,) = inv.lines
    assert line.net == Decimal("42.00") and line.source == "time_entry:TE-1,TE-2"
    # a second visit gets its own minimum: 60 min + 60 min = 2 lines of 42.00
    inv = price(work_order(kind="preventive", entries=[te("TE-1", "T31", 20), te("TE-2", "T31", 20, visit_id="V2")]))
    assert [line.net for line in inv.lines] == [Decimal("42.00"), Decimal("42.00")]


def test_two_technicians_and_personal_rate_vs_skill_rate():
    # T31 (hvac skill rate 42.00) 127 min -> 135 min = 2.25 h -> 94.50
    # T32 (personal 36.00, not electrical 38.00) 40 min -> 60 min = 1 h -> 36.00; cost 40 worked min × 21.00 / 60 = 14.00
    # unknown T99 -> default skill general 30.00, 90 min -> 1.5 h -> 45.00; cost 1.5 × 16.00 = 24.00
    inv = price(
        work_order(kind="preventive", entries=[te("TE-1", "T31", 127), te("TE-2", "T32", 40), te("TE-3", "T99", 90)])
    )
    labour = lines_of(inv, "labour")
    assert [(line.unit_price, line.quantity, line.net) for line in labour] == [
        (Decimal("42.00"), Decimal("2.25"), Decimal("94.50")),
        (Decimal("36.00"), Decimal("1"), Decimal("36.00")),
        (Decimal("30.00"), Decimal("1.5"), Decimal("45.00")),
    ]
    assert labour[1].rule.startswith("rate:technician:T32")
    assert labour[1].cost == Decimal("14.00")
    assert labour[2].rule.startswith("rate:skill:general")
    assert labour[2].cost == Decimal("24.00")
    # net 94.50 + 36.00 + 45.00 = 175.50
    # tax 21.735 -> 21.74; 8.28; 10.35 -> 40.37; total 215.87
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("175.50"), Decimal("40.37"), Decimal("215.87"))


def test_entry_skill_overrides_technician_skill_but_not_personal_rate():
    # T31 is hvac, entry says electrical -> 38.00 × 1 h = 38.00
    # T32 has a personal rate: entry skill "hvac" does not change it -> 36.00
    inv = price(
        work_order(
            kind="preventive", entries=[te("TE-1", "T31", 60, skill="electrical"), te("TE-2", "T32", 60, skill="hvac")]
        )
    )
    assert [line.net for line in inv.lines] == [Decimal("38.00"), Decimal("36.00")]
    assert inv.lines[0].rule.startswith("rate:skill:electrical")


def test_unknown_entry_skill_is_a_pricing_error():
    with pytest.raises(PricingError) as exc:
        price(work_order(entries=[te("TE-1", "T31", 60), te("TE-2", "T31", 60, skill="welding")]))
    assert exc.value.field == "data.time_entries.1.skill"
    assert "welding" in str(exc.value)


def test_hours_not_exact_at_four_decimals():
    # increment 10, minimum 0: 10 min = 0.1666.. h -> quantity 0.1667, net from minutes: 10 × 42.00 / 60 = 7.00
    tenant = make_tenant(rate_card={"billing_increment_minutes": 10, "minimum_billable_minutes": 0})
    inv = price(work_order(kind="preventive", entries=[te("TE-1", "T31", 7)]), tenant)
    assert inv.lines[0].quantity == Decimal("0.1667")
    assert inv.lines[0].net == Decimal("7.00")


def test_travel_billed_at_travel_rate_else_cost_only():
    # travel 25 min -> 30 min (increment, no minimum) = 0.5 h × 20.00 = 10.00; cost 25 worked min × 24.00 / 60 = 10.00
    entries = [te("TE-1", "T31", 60), te("TE-2", "T31", 25, kind="travel")]
    inv = price(work_order(kind="preventive", entries=entries), make_tenant(rate_card={"travel_hourly_rate": "20.00"}))
    (travel,) = lines_of(inv, "travel")
    assert (travel.quantity, travel.net, travel.cost) == (Decimal("0.5"), Decimal("10.00"), Decimal("10.00"))
    assert (travel.worked_minutes, travel.billed_minutes) == (Decimal("25"), 30)
    # without a travel rate: no travel line, but cost 10.00 stays: cost_total = 24.00 (labour) + 10.00
    inv = price(work_order(kind="preventive", entries=entries))
    assert lines_of(inv, "travel") == []
    assert inv.net_total == Decimal("42.00")
    assert inv.cost_total == Decimal("34.00")


# --------------------------------------------------------------------------- call-out
def test_call_out_fee_on_corrective_only():
    # corrective: 42.00 labour + 45.00 call-out = 87.00; tax 9.66 + 10.35 = 20.01; total 107.01
    inv = price(work_order(kind="corrective", entries=[te("TE-1", "T31", 60)]))
    (fee,) = lines_of(inv, "call_out")
    assert (fee.quantity, fee.unit_price, fee.net, fee.tax) == (
        Decimal("1"),
        Decimal("45.00"),
        Decimal("45.00"),
        Decimal("10.35"),
    )
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("87.00"), Decimal("20.01"), Decimal("107.01"))
    # preventive work order and scheduled job: no call-out
    assert lines_of(price(work_order(kind="preventive", entries=[te("TE-1", "T31", 60)])), "call_out") == []
    sj = work_order(entries=[te("TE-1", "T31", 60)], etype="maintenance.scheduled_job.closed", wo_id="SJ-7")
    inv = price(sj)
    assert lines_of(inv, "call_out") == []
    assert inv.reference == "Scheduled job SJ-7"
    assert inv.invoice_number == "ACME-SJ-SJ-7-R1"


# --------------------------------------------------------------------------- parts
def test_parts_catalogue_price_vs_cost_plus_markup_and_fractional_quantity():
    parts = [
        # catalogue price wins over cost: 4 × 3.75 = 15.00; cost 4 × 1.90 = 7.60
        part("P-1", "4", cost="1.90", price="3.75", sku="FIT-15"),
        # no price: 24.00 × 1.20 = 28.80 per kg; 2.5 kg × 28.80 = 72.00; cost 2.5 × 24.00 = 60.00
        part("P-2", "2.5", cost="24.00", sku="R410A", unit="kg"),
        # 9.35 × 1.20 = 11.22 per unit; 1.3 × 11.22 = 14.586 -> 14.59; cost 1.3 × 9.35 = 12.155 -> 12.16
        part("P-3", "1.3", cost="9.35", sku="PIPE", unit="m"),
        # catalogue price without cost: 1.3 × 0.95 = 1.235 -> 1.24 (half-up); cost unknown -> 0
        part("P-4", "1.3", price="0.95", sku="CBL", unit="m"),
    ]
    inv = price(work_order(kind="preventive", parts=parts))
    got = [(line.unit_price, line.quantity, line.unit, line.net, line.cost) for line in inv.lines]
    assert got == [
        (Decimal("3.75"), Decimal("4"), "un", Decimal("15.00"), Decimal("7.60")),
        (Decimal("28.80"), Decimal("2.5"), "kg", Decimal("72.00"), Decimal("60.00")),
        (Decimal("11.22"), Decimal("1.3"), "m", Decimal("14.59"), Decimal("12.16")),
        (Decimal("0.95"), Decimal("1.3"), "m", Decimal("1.24"), Decimal("0")),
    ]
    # net 15.00 + 72.00 + 14.59 + 1.24 = 102.83
    # tax 3.45 + 16.56 + 3.3557->3.36 + 0.2852->0.29 = 23.66; total 126.49
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("102.83"), Decimal("23.66"), Decimal("126.49"))
    assert inv.cost_total == Decimal("79.76")  # 7.60 + 60.00 + 12.16 + 0


def test_client_supplied_part_not_billed():
    parts = [part("P-1", "2", cost="10.00", sku="A"), part("P-2", "5", cost="99.00", sku="B", client_supplied=True)]
    inv = price(work_order(kind="preventive", parts=parts))
    # only A: 10.00 × 1.20 = 12.00; 2 × 12.00 = 24.00; cost 20.00 (B costs us nothing)
    assert [line.source for line in inv.lines] == ["part:P-1"]
    assert (inv.net_total, inv.cost_total) == (Decimal("24.00"), Decimal("20.00"))


def test_part_without_price_or_cost_is_a_pricing_error():
    parts = [part("P-1", "1", cost="1.00"), part("P-2", "1", sku="MYSTERY-9")]
    with pytest.raises(PricingError) as exc:
        price(work_order(parts=parts))
    assert exc.value.field == "data.parts.1.unit_cost"
    assert "data.parts.1.unit_cost" in str(exc.value) and "MYSTERY-9" in str(exc.value)
    assert isinstance(exc.value, ValueError)


# --------------------------------------------------------------------------- expenses
def test_billable_and_non_billable_expenses():
    tenant = make_tenant(rate_card={"expenses_handling_percent": "10"})
    expenses = [
        {"id": "E-1", "description": "Parking", "amount": "6.55"},
        {"id": "E-2", "description": "Lunch", "amount": "12.00", "billable": False},
    ]
    inv = price(work_order(kind="preventive", expenses=expenses), tenant)
    (line,) = inv.lines
    # 6.55 × 1.10 = 7.205 -> 7.21; tax 7.21 × 0.23 = 1.6583 -> 1.66; total 8.87
    assert (line.kind, line.net, line.tax, line.total, line.cost) == (
        "expense",
        Decimal("7.21"),
        Decimal("1.66"),
        Decimal("8.87"),
        Decimal("6.55"),
    )
    # cost keeps the non-billable lunch: 6.55 + 12.00 = 18.55; margin 7.21 - 18.55 = -11.34
    assert inv.cost_total == Decimal("18.55")
    assert inv.margin == Decimal("-11.34")


# --------------------------------------------------------------------------- quotes and tax
def test_quote_lines_with_own_tax_rate():
    lines = [
        {"id": "QL-1", "sku": "CMP", "description": "Scroll compressor", "quantity": "1", "unit_price": "980.00"},
        {"id": "QL-2", "description": "Labour (hour)", "quantity": "10", "unit_price": "45.00"},
        {"id": "QL-3", "description": "Documentation", "quantity": "1", "unit_price": "25.00", "tax_rate": "6"},
        {"id": "QL-4", "description": "Exempt training", "quantity": "2", "unit_price": "30.00", "tax_rate": "0"},
    ]
    inv = price(quote(lines))
    # 980.00 @23 -> 225.40; 450.00 @23 -> 103.50; 25.00 @6 -> 1.50; 60.00 @0 -> 0.00
    assert [(line.net, line.tax_rate, line.tax) for line in inv.lines] == [
        (Decimal("980.00"), Decimal("23"), Decimal("225.40")),
        (Decimal("450.00"), Decimal("23"), Decimal("103.50")),
        (Decimal("25.00"), Decimal("6"), Decimal("1.50")),
        (Decimal("60.00"), Decimal("0"), Decimal("0.00")),
    ]
    # net 1515.00, tax 330.40, total 1845.40; no call-out on quotes; cost 0
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("1515.00"), Decimal("330.40"), Decimal("1845.40"))
    assert lines_of(inv, "call_out") == []
    assert inv.reference == "Quote Q-12" and inv.invoice_number == "ACME-QT-Q-12-R1" and inv.document == "qt"


def test_tax_rounded_half_up_per_line():
    # two expenses of 6.50: each 6.50 × 0.23 = 1.495 -> 1.50 per line -> tax_total 3.00
    # (document-level rounding would give 13.00 × 0.23 = 2.99: we must NOT do that)
    expenses = [
        {"id": "E-1", "description": "Parking", "amount": "6.50"},
        {"id": "E-2", "description": "Parking", "amount": "6.50"},
    ]
    inv = price(work_order(kind="preventive", expenses=expenses))
    assert [line.tax for line in inv.lines] == [Decimal("1.50"), Decimal("1.50")]
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("13.00"), Decimal("3.00"), Decimal("16.00"))


def test_jpy_has_no_decimals():
    tenant = make_tenant(
        currency="JPY",
        vat_percent="10",
        rate_card={
            "skills": {"general": {"hourly_rate": "4250", "cost_rate": "2500"}},
            "technicians": {},
            "call_out_fee": "3000",
        },
    )
    parts = [part("P-1", "2.5", cost="333", sku="GAS")]
    inv = price(work_order(entries=[te("TE-1", "X1", 70)], parts=parts), tenant)
    # call-out 3000, tax 300
    # labour 70 -> 75 min = 1.25 h × 4250 = 5312.5 -> 5313 (half-up); tax 531.3 -> 531;
    # cost 70 worked min × 2500 / 60 = 2916.67 -> 2917
    # part 333 × 1.2 = 399.6 -> 400 per unit; 2.5 × 400 = 1000; tax 100; cost 2.5 × 333 = 832.5 -> 833
    assert [(line.net, line.tax) for line in inv.lines] == [
        (Decimal("3000"), Decimal("300")),
        (Decimal("5313"), Decimal("531")),
        (Decimal("1000"), Decimal("100")),
    ]
    assert inv.lines[2].unit_price == Decimal("400")
    # net 9313, tax 931, total 10244, cost 2917 + 833 = 3750
    assert (inv.net_total, inv.tax_total, inv.total, inv.cost_total) == (
        Decimal("9313"),
        Decimal("931"),
        Decimal("10244"),
        Decimal("3750"),
    )
    for line in inv.lines:
        assert line.net.as_tuple().exponent == 0 and line.tax.as_tuple().exponent == 0


# --------------------------------------------------------------------------- not billable / errors
def test_zero_total_is_not_billable():
    # only a client-supplied part and a non-billable expense -> nothing to bill; cost 8.00 kept
    event = work_order(
        kind="preventive",
        parts=[part("P-1", "1", cost="5.00", client_supplied=True)],
        expenses=[{"id": "E-1", "description": "Fuel", "amount": "8.00", "billable": False}],
    )
    result = price(event)
    assert isinstance(result, NotBillable)
    assert result.reason.startswith("zero total: ")
    assert result.cost_total == Decimal("8.00")
    assert result.invoice_key == "acme:wo:1001:r1" and result.order_key == "acme:wo:1001"
    # a quote at 0.00 (warranty) too
    assert isinstance(
        price(quote([{"id": "QL-1", "description": "Warranty seal", "quantity": "1", "unit_price": "0"}])), NotBillable
    )


def test_unknown_client_is_a_pricing_error_naming_the_field():
    with pytest.raises(PricingError) as exc:
        price(work_order(client="CLI-NOPE", entries=[te("TE-1", "T31", 60)]))
    assert exc.value.field == "data.client_id"
    assert exc.value.value == "CLI-NOPE"
    assert str(exc.value).startswith("data.client_id: ") and "CLI-NOPE" in str(exc.value)


def test_event_of_another_tenant_is_a_pricing_error():
    with pytest.raises(PricingError) as exc:
        price_event(work_order(tenant="other", entries=[te("TE-1", "T31", 60)]), "acme", make_tenant())
    assert exc.value.field == "tenant"


# --------------------------------------------------------------------------- invoice fields
def test_invoice_fields_dates_and_keys():
    # 2026-03-31T23:40Z is 2026-04-01 00:40 in Lisbon (WEST, +01:00) -> issue 2026-04-01, due +30 days
    inv = price(work_order(entries=[te("TE-1", "T31", 60)], revision=2, time="2026-03-31T23:40:00+00:00"))
    assert isinstance(inv, Invoice)
    assert inv.issue_date == date(2026, 4, 1) and inv.due_date == date(2026, 5, 1)
    assert inv.invoice_key == "acme:wo:1001:r2" and inv.order_key == "acme:wo:1001"
    assert inv.invoice_number == "ACME-WO-1001-R2"
    assert inv.reference == "WO 1001"
    assert (inv.client_name, inv.contact_id, inv.billing_system) == ("Hotel Atlântico Lisboa, S.A.", "c-1", "xero")
    assert inv.priced_at == datetime(2026, 4, 1, tzinfo=UTC)
    assert any("SITE-1" in note for note in inv.notes)


def test_invoice_number_format():
    assert invoice_number("ACME", "wo", "1001", 1) == "ACME-WO-1001-R1"
    assert invoice_number("NHV", "qt", "q-2026-012", 3) == "NHV-QT-Q-2026-012-R3"
    # characters outside [A-Z0-9-] are replaced -> a hash suffix keeps "A/B" and "A_B" apart
    a, b = invoice_number("ACME", "wo", "A/B", 1), invoice_number("ACME", "wo", "A_B", 1)
    assert a != b and a.startswith("ACME-WO-A-B-") and a.endswith("-R1")
    # long ids are cut to 32 characters and stay unique
    long1 = invoice_number("ACME", "wo", "maintainx-organisation-321-work-order-5550123", 1)
    long2 = invoice_number("ACME", "wo", "maintainx-organisation-321-work-order-5550124", 1)
    assert len(long1) <= 32 and len(long2) <= 32 and long1 != long2
    assert long1.startswith("ACME-WO-MAINTAINX") and long1.endswith("-R1")
    assert invoice_number("ACME", "wo", "1001", 1) == invoice_number("ACME", "wo", "1001", 1)
    for number in (a, b, long1, long2):
        assert set(number) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


# --------------------------------------------------------------------------- property test
CURRENCIES = ["EUR", "JPY", "BHD", "GBP"]


def _money(places_max: int):
    return st.decimals(
        min_value=Decimal("0"), max_value=Decimal("5000"), places=places_max, allow_nan=False, allow_infinity=False
    )


@st.composite
def priced_case(draw):
    currency = draw(st.sampled_from(CURRENCIES))
    places = minor_units(currency)
    tenant = make_tenant(
        currency=currency,
        vat_percent=str(
            draw(st.sampled_from([Decimal("0"), Decimal("5.5"), Decimal("10"), Decimal("20"), Decimal("23")]))
        ),
        rate_card={
            "billing_increment_minutes": draw(st.sampled_from([1, 5, 7, 15, 30])),
            "minimum_billable_minutes": draw(st.sampled_from([0, 30, 60])),
            "skills": {"general": {"hourly_rate": str(draw(_money(places))), "cost_rate": str(draw(_money(places)))}},
            "technicians": {"T1": {"skill": "general", "hourly_rate": str(draw(_money(places)))}},
            "travel_hourly_rate": draw(st.one_of(st.none(), _money(places).map(str))),
            "call_out_fee": draw(st.one_of(st.none(), _money(places).map(str))),
            "parts_markup_percent": str(draw(st.decimals(min_value=0, max_value=100, places=2))),
            "expenses_handling_percent": str(draw(st.decimals(min_value=0, max_value=25, places=2))),
        },
    )
    entries = [
        te(
            f"TE-{i}",
            draw(st.sampled_from(["T1", "T2"])),
            1,
            kind=draw(st.sampled_from(["work", "travel"])),
            visit_id=draw(st.sampled_from([None, "V1", "V2"])),
        )
        | {"duration_seconds": draw(st.integers(min_value=1, max_value=36000))}
        for i in range(draw(st.integers(0, 4)))
    ]
    parts = []
    for i in range(draw(st.integers(0, 4))):
        cost = draw(st.one_of(st.none(), st.decimals(min_value=0, max_value=999, places=4)))
        unit_price = (
            draw(st.decimals(min_value=0, max_value=999, places=4))
            if cost is None
            else draw(st.one_of(st.none(), st.decimals(min_value=0, max_value=999, places=4)))
        )
        qty = draw(st.decimals(min_value=Decimal("0.001"), max_value=Decimal("500"), places=3))
        parts.append(
            part(
                f"P-{i}",
                str(qty),
                cost=None if cost is None else str(cost),
                price=None if unit_price is None else str(unit_price),
                client_supplied=draw(st.booleans()),
            )
        )
    expenses = [
        {
            "id": f"E-{i}",
            "description": "x",
            "amount": str(draw(st.decimals(min_value=0, max_value=999, places=4))),
            "billable": draw(st.booleans()),
        }
        for i in range(draw(st.integers(0, 3)))
    ]
    if draw(st.booleans()):
        lines = [
            {
                "id": f"QL-{i}",
                "description": "x",
                "quantity": str(draw(st.decimals(min_value=Decimal("0.01"), max_value=100, places=2))),
                "unit_price": str(draw(st.decimals(min_value=0, max_value=9999, places=4))),
                **(
                    {"tax_rate": str(draw(st.sampled_from([Decimal("0"), Decimal("6"), Decimal("13.5")])))}
                    if draw(st.booleans())
                    else {}
                ),
            }
            for i in range(draw(st.integers(1, 4)))
        ]
        event = quote(lines)
    else:
        event = work_order(
            kind=draw(st.sampled_from(["corrective", "preventive"])), entries=entries, parts=parts, expenses=expenses
        )
    return tenant, event


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(priced_case())
def test_property_totals_are_sums_of_rounded_lines(case):
    tenant, event = case
    result = price_event(event, "acme", tenant)
    places = minor_units(tenant.currency)
    if isinstance(result, NotBillable):
        assert result.reason.startswith("zero total")
        assert result.cost_total >= 0
        return
    assert result.net_total != 0
    for line in result.lines:
        assert line.net + line.tax == line.total
        for amount in (line.net, line.tax, line.total, line.cost):
            assert amount.as_tuple().exponent >= -places, (line, amount)
        assert line.net >= 0 and line.tax >= 0
    assert result.net_total == sum((line.net for line in result.lines), Decimal(0))
    assert result.tax_total == sum((line.tax for line in result.lines), Decimal(0))
    assert result.total == sum((line.total for line in result.lines), Decimal(0))
    assert result.net_total + result.tax_total == result.total
    assert result.margin == result.net_total - result.cost_total
    assert result.cost_total >= sum((line.cost for line in result.lines), Decimal(0))
    for amount in (result.net_total, result.tax_total, result.total, result.cost_total, result.margin):
        assert amount.as_tuple().exponent >= -places


# --------------------------------------------------------------------------- the demo data
def _demo():
    config = load_config(EXAMPLES / "config.yaml")
    raw_lines = (EXAMPLES / "events.ndjson").read_text(encoding="utf-8").splitlines()
    return config, [line for line in raw_lines if line.strip()]


def test_demo_config_and_events_price():
    config, raw_lines = _demo()
    xero = {tid: t for tid, t in config.tenants.items() if t.billing.system == "xero"}
    assert set(xero) == {"acme-fm", "nordic-hvac"}
    assert sum(len(t.clients) for t in xero.values()) >= 3
    for tenant in xero.values():
        assert set(tenant.billing.settings) == {
            "api_url",
            "identity_url",
            "xero_tenant_id",
            "client_id",
            "client_secret_env",
            "refresh_token_env",
            "tax_types",
        }
    assert len(raw_lines) >= 50
    ids = [json.loads(line)["id"] for line in raw_lines]
    assert len(ids) == len(set(ids))

    failures, priced = [], {}
    for line in raw_lines:
        try:
            event = parse_event(line)
        except EventDecodeError as exc:
            failures.append((json.loads(line)["id"], str(exc)))
            continue
        assert event.time.year == 2026 and event.time.month == 3
        assert event.time.utcoffset() is not None
        priced[event.id] = price_event(event, event.tenant, config.tenant(event.tenant))  # must not raise
    assert len(failures) == 1, failures
    assert failures[0][0] == "maintainx:wo:1042:r1" and "data.parts.0.quantity" in failures[0][1]

    types = {json.loads(line)["type"] for line in raw_lines}
    assert types == {
        "maintenance.work_order.completed",
        "maintenance.scheduled_job.closed",
        "maintenance.quote.approved",
    }
    # the revision-2 invoice is a new version of the same order
    r1, r2 = priced["limble:wo:5003:r1"], priced["limble:wo:5003:r2"]
    assert r1.order_key == r2.order_key == "nordic-hvac:wo:5003"
    assert (r1.invoice_number, r2.invoice_number) == ("NHV-WO-5003-R1", "NHV-WO-5003-R2")
    # the warranty quote is a valid event that prices to NotBillable
    assert isinstance(priced["erpnext:qt:Q-2026-019:r1"], NotBillable)
    # the weekend call-out happens on a Saturday in Lisbon
    assert priced["maintainx:wo:1007:r1"].event_time.astimezone(config.tenant("acme-fm").zone).weekday() == 5


#: The small tenants billed in other systems (broker/examples/config.yaml, tools/make_demo_events.py).
SMALL_TENANTS = {
    "liffey-fs": "stripe",
    "invicta-mt": "quickbooks",
    "mondego-clima": "invoicexpress",
    "sotavento-tec": "moloni",
}


def test_demo_small_tenants_on_other_billing_systems_price():
    """The demo reaches >= 4 billing systems; each small tenant's events are valid and price to invoices."""
    config, raw_lines = _demo()
    systems = {t.billing.system for t in config.tenants.values()}
    assert len(systems) >= 4 and systems >= {"xero", *SMALL_TENANTS.values()}
    assert {tid: config.tenant(tid).billing.system for tid in SMALL_TENANTS} == SMALL_TENANTS
    events = [json.loads(line) for line in raw_lines]
    # the small tenants' events come after the Xero tenants' (the older lines stay byte-identical)
    tenants_in_order = [e["tenant"] for e in events]
    first_small = min(i for i, t in enumerate(tenants_in_order) if t in SMALL_TENANTS)
    assert all(t in SMALL_TENANTS for t in tenants_in_order[first_small:])
    assert first_small >= 50
    scheduled_jobs = 0
    for tenant_id in SMALL_TENANTS:
        tenant = config.tenant(tenant_id)
        assert (tenant.currency, tenant.vat_percent, tenant.rate_card.time_bands) == ("EUR", Decimal("23"), [])
        assert len(tenant.clients) == 2
        assert all(client.contact_id is None for client in tenant.clients.values())  # created by name
        mine = [e for e in events if e["tenant"] == tenant_id]
        assert 3 <= len(mine) <= 4, tenant_id
        assert {e["data"]["client_id"] for e in mine} == set(tenant.clients)
        for raw in mine:
            event = parse_event(json.dumps(raw))  # valid: the one invalid event is acme-fm's
            inv = price_event(event, tenant_id, tenant)  # must not raise
            assert isinstance(inv, Invoice) and inv.total > 0 and inv.currency == "EUR", event.id
            assert {line.tax_rate for line in inv.lines} == {Decimal("23")}
            data = raw["data"]
            if raw["type"] == "maintenance.scheduled_job.closed":
                scheduled_jobs += 1
                assert data["kind"] == "preventive"
                continue
            assert data["kind"] == "corrective"
            assert len({te["technician_id"] for te in data["time_entries"]}) == 2, event.id
            assert any(Decimal(p["quantity"]) != Decimal(p["quantity"]).to_integral_value() for p in data["parts"]), (
                event.id
            )
            assert any(x.get("billable", True) for x in data["expenses"]), event.id
            assert [line.kind for line in inv.lines].count("labour") == 2
    assert scheduled_jobs >= 1


def _priced(event_id: str):
    config, raw_lines = _demo()
    for line in raw_lines:
        if json.loads(line)["id"] == event_id:
            event = parse_event(line)
            return price_event(event, event.tenant, config.tenant(event.tenant))
    raise AssertionError(f"{event_id} not in events.ndjson")


def test_demo_wo_1001_two_technicians_by_hand():
    inv = _priced("maintainx:wo:1001:r1")
    # acme-fm (EUR, VAT 23):
    #   call-out                                   45.00            tax 10.35
    #   T31 hvac 09:05-11:12 = 127 min -> 135 min = 2.25 h × 42.00 = 94.50   tax 21.735 -> 21.74
    #   T32 personal 40 min -> 60 min = 1 h × 36.00 = 36.00                  tax  8.28
    #   T31 travel 1500 s = 25 min -> 30 min = 0.5 h × 20.00 = 10.00         tax  2.30
    #   contactor 1 × (38.50 × 1.20 = 46.20) = 46.20                        tax 10.626 -> 10.63
    #   R410A 2.5 kg × (24.00 × 1.20 = 28.80) = 72.00                        tax 16.56
    #   parking 6.50 (handling 0 %)                                          tax 1.495 -> 1.50
    #   lunch 12.00 not billable
    # net 45.00+94.50+36.00+10.00+46.20+72.00+6.50 = 310.20
    # tax 10.35+21.74+8.28+2.30+10.63+16.56+1.50 = 71.36; total 381.56
    # cost on worked time: 127×24.00/60=50.80 + 40×21.00/60=14.00 + 25×24.00/60=10.00 + 38.50 + 2.5×24.00=60.00
    #   + 6.50 + 12.00 = 191.80; margin 310.20 - 191.80 = 118.40
    assert inv.invoice_number == "ACME-WO-1001-R1"
    assert [line.net for line in inv.lines] == [
        Decimal("45.00"),
        Decimal("94.50"),
        Decimal("36.00"),
        Decimal("10.00"),
        Decimal("46.20"),
        Decimal("72.00"),
        Decimal("6.50"),
    ]
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("310.20"), Decimal("71.36"), Decimal("381.56"))
    assert (inv.cost_total, inv.margin) == (Decimal("191.80"), Decimal("118.40"))
    assert inv.client_name == "Hotel Atlântico Lisboa, S.A." and inv.currency == "EUR"
    assert (inv.issue_date, inv.due_date) == (date(2026, 3, 3), date(2026, 4, 2))


def test_demo_scheduled_job_by_hand():
    inv = _priced("limble:sj:SJ-2026-0311:r1")
    # nordic-hvac (GBP, VAT 20, handling 10 %), no call-out on scheduled jobs:
    #   NH-102 electrical 6900 s = 115 min -> 120 min = 2 h × 58.00 = 116.00   tax 23.20
    #   6 × bag filter at catalogue 8.40 = 50.40                               tax 10.08
    #   parking 8.00 × 1.10 = 8.80                                             tax  1.76
    # net 175.20, tax 35.04, total 210.24; cost 115 worked min × 30.00 / 60 = 57.50 + 6×5.10 + 8.00 = 96.10
    assert inv.invoice_number == "NHV-SJ-SJ-2026-0311-R1"
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("175.20"), Decimal("35.04"), Decimal("210.24"))
    assert inv.cost_total == Decimal("96.10")
    assert (inv.issue_date, inv.due_date) == (date(2026, 3, 11), date(2026, 3, 25))
    assert inv.reference == "Scheduled job SJ-2026-0311"


def test_demo_quote_by_hand():
    inv = _priced("erpnext:qt:Q-2026-012:r1")
    # 1 × 980.00 @23 % = 225.40; 10 × 45.00 = 450.00 @23 % = 103.50; 1 × 25.00 @6 % = 1.50
    # net 1455.00, tax 330.40, total 1785.40
    assert inv.invoice_number == "ACME-QT-Q-2026-012-R1"
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("1455.00"), Decimal("330.40"), Decimal("1785.40"))


def test_demo_weekend_call_out_and_revision_2_by_hand():
    inv = _priced("maintainx:wo:1007:r1")
    # Saturday 2026-03-14 21:40-23:05 in Lisbon (WET = UTC+0). acme-fm bands in priority order:
    # holiday, weekend, night, overtime -> "weekend" wins over "night" (first match wins).
    #   call-out: the visit starts Saturday 21:40 -> weekend band's call_out_fee 75.00      tax 17.25
    #   T33 plumbing 36.00 × 1.50 = 54.00/h; 85 min -> 90 min = 1.5 h × 54.00 = 81.00       tax 18.63
    #   4 fittings × 3.75 (catalogue price) = 15.00                                         tax  3.45
    #   copper pipe client-supplied: not billed
    # net 75.00 + 81.00 + 15.00 = 171.00; tax 17.25 + 18.63 + 3.45 = 39.33; total 210.33
    assert [(ln.kind, ln.net) for ln in inv.lines] == [
        ("call_out", Decimal("75.00")),
        ("labour", Decimal("81.00")),
        ("part", Decimal("15.00")),
    ]
    assert inv.lines[1].unit_price == Decimal("54.00") and inv.lines[1].quantity == Decimal("1.5")
    assert "band weekend 1.5" in inv.lines[1].rule and inv.lines[0].rule.startswith("call_out_fee:band weekend")
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("171.00"), Decimal("39.33"), Decimal("210.33"))

    inv = _priced("limble:wo:5003:r2")
    # nordic-hvac, NH-101 personal 70.00/h, cost 38.00/h, VAT 20 %, no travel rate; all times are
    # weekdays between 08:00 and 18:00 in London, so no band applies:
    #   call-out visit 5003 (Thu 13:00)                          60.00   tax 12.00
    #   call-out visit V2 (Fri 09:00): once per corrective visit  60.00   tax 12.00
    #   visit 5003: 50 min -> 60 min (minimum) = 1 h × 70.00 = 70.00   tax 14.00
    #   visit V2: 70 min -> 75 min = 1.25 h × 70.00 = 87.50            tax 17.50
    #   travel V2 40 min -> 45 min: not billed, cost 40 worked min × 38.00 / 60 = 25.333 -> 25.33
    #   2 belts × (7.80 × 1.20 = 9.36) = 18.72                         tax 3.744 -> 3.74
    #   congestion charge 15.00 × 1.10 = 16.50                          tax 3.30
    # net 60.00 + 60.00 + 70.00 + 87.50 + 18.72 + 16.50 = 312.72
    # tax 12.00 + 12.00 + 14.00 + 17.50 + 3.74 + 3.30 = 62.54; total 375.26
    # cost on worked time: 50 × 38.00 / 60 = 31.666 -> 31.67 + 70 × 38.00 / 60 = 44.333 -> 44.33 + 25.33 + 15.60
    #   + 15.00 = 131.93 (call-outs cost nothing)
    assert inv.invoice_number == "NHV-WO-5003-R2" and inv.invoice_key == "nordic-hvac:wo:5003:r2"
    assert [ln.source for ln in inv.lines if ln.kind == "call_out"] == ["work_order:5003", "visit:V2"]
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("312.72"), Decimal("62.54"), Decimal("375.26"))
    assert inv.cost_total == Decimal("131.93")


def test_demo_work_order_executing_a_quote_bills_only_its_extra():
    inv = _priced("maintainx:wo:1012:r1")
    # Quote Q-2026-012 was invoiced in full on approval (acme-fm quotes.invoice_at: approval), so WO 1012
    # bills only what is outside the quote: 4.2 kg R410A × (24.00 × 1.20 = 28.80) = 120.96, tax 27.8208 -> 27.82.
    # No call-out (priced by its quote). Its time is inside the quote: cost only
    #   T31 08:00-12:30 less 30 min break = 240 min, + 13:30-17:00 = 210 min -> 450 min = 7.5 h × 24.00 = 180.00
    #   T34 08:00-12:00 less 30 min = 210 min = 3.5 h × 16.00 = 56.00
    # cost 180.00 + 56.00 + 4.2 × 24.00 = 100.80 -> 336.80; margin 120.96 - 336.80 = -215.84
    assert [(ln.kind, ln.quantity, ln.unit_price, ln.net, ln.tax) for ln in inv.lines] == [
        ("part", Decimal("4.2"), Decimal("28.80"), Decimal("120.96"), Decimal("27.82"))
    ]
    assert (inv.net_total, inv.tax_total, inv.total) == (Decimal("120.96"), Decimal("27.82"), Decimal("148.78"))
    assert (inv.cost_total, inv.margin) == (Decimal("336.80"), Decimal("-215.84"))
