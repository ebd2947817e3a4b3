"""The synthetic scenario of the shared samples, priced with totals written out by hand.

Two technicians about 3 h 15 min each on a Saturday, a contactor at 38.50, 2.5 kg of refrigerant
at 24.00/kg and a 6.50 parking expense, under the sample rate card with its contract ("abono").
Data: tests/golden/synthetic/ (see its README for provenance and the mapping).
"""

from __future__ import annotations

import json
from copy import deepcopy
from decimal import Decimal
from pathlib import Path

import yaml

from broker.config import Tenant
from broker.events import parse_event
from broker.pricing import price_event
from connectors.sdk.invoice import Invoice

DATA = Path(__file__).parent / "golden" / "synthetic"


def _tenant() -> Tenant:
    return Tenant.model_validate(yaml.safe_load((DATA / "tenant.yaml").read_text(encoding="utf-8")))


def _event_raw() -> dict:
    return json.loads((DATA / "work_order_completed.json").read_text(encoding="utf-8"))


def test_translation_matches_the_sample_data():
    card = yaml.safe_load((DATA / "rate_card.yaml").read_text(encoding="utf-8"))
    canonical = json.loads((DATA / "canonical_WorkOrderCompleted.json").read_text(encoding="utf-8"))
    tenant = _tenant()
    event = parse_event(_event_raw())
    # rate card
    assert tenant.currency == card["currency"] and tenant.timezone == card["timezone"]
    assert tenant.vat_percent == Decimal(card["vat_percent"])
    assert tenant.rate_card.billing_increment_minutes == card["billing_increment_minutes"]
    assert tenant.rate_card.minimum_billable_minutes == card["minimum_billable_minutes"]
    assert {k: v.hourly_rate for k, v in tenant.rate_card.skills.items()} == {
        k: Decimal(v["hourly_rate"]) for k, v in card["skills"].items()
    }
    assert [(b.name, b.factor) for b in tenant.rate_card.time_bands] == [
        (m["name"], Decimal(m["factor"])) for m in card["multipliers"]
    ]
    assert tenant.rate_card.call_out_fee == Decimal(card["call_out_fee"]["default"])
    assert tenant.rate_card.time_bands[1].call_out_fee == Decimal(card["call_out_fee"]["weekend"])
    assert tenant.rate_card.parts_markup_percent == Decimal(card["parts"]["markup_percent"])
    for tech in card["technicians"]:
        mine = tenant.rate_card.technicians[str(tech["ids"]["maintainx"])]
        assert mine.skill == tech["skill"] and mine.hourly_rate == (
            Decimal(tech["hourly_rate"]) if "hourly_rate" in tech else None
        )
    client = card["clients"][0]
    contract = tenant.clients[client["key"]].contracts[0]
    assert tenant.clients[client["key"]].skill_rates == {k: Decimal(v) for k, v in client["rate_overrides"].items()}
    assert contract.id == client["contract"]["id"] and contract.sites == client["contract"]["sites"]
    assert (
        contract.covers.corrective_hours_per_month == client["contract"]["covers"]["corrective_labour_hours_per_month"]
    )
    # event
    assert (
        event.data.client_id == canonical["client"]["external_id"]
        and event.data.contract_ref == canonical["contract_ref"]
    )
    assert [(e.technician_id, e.start.isoformat(), e.duration_seconds) for e in event.data.time_entries] == [
        (lab["technician_external_id"], lab["start"].replace("Z", "+00:00"), lab["duration_seconds"])
        for lab in canonical["labour"]
    ]
    assert [(p.sku, p.unit_cost) for p in event.data.parts] == [
        (p["sku"], Decimal(p["unit_cost"])) for p in canonical["parts"]
    ]
    assert [e.amount for e in event.data.expenses] == [Decimal(e["amount"]) for e in canonical["expenses"]]
    assert event.data.parts[1].quantity == Decimal("2.5")  # the issue's scenario (the canonical file says 3 kg)


def test_synthetic_scenario_by_hand():
    invoice = price_event(parse_event(_event_raw()), "synthetic-fm", _tenant())
    # Saturday 2025-03-15 in Lisbon (WET = UTC+0). Bands (first match wins): holiday, weekend, night, overtime.
    #   Both technicians work 09:05-12:20 and 09:10-12:25: all "weekend" (× 1.50).
    #   Rates: tech 31 hvac -> the client's hvac rate 40.00 (client+skill beats skill 42.00) × 1.50 = 60.00/h
    #          tech 32 electrical -> personal 36.00 (no client rate for electrical) × 1.50 = 54.00/h
    #   11700 s = 195 min each, an exact multiple of 15 min: 3.25 h each, 390 min in all.
    #   Contract ABONO-2025-HAD (valid 2025, site LIS-A-RT): 4 h = 240 min of corrective labour a month,
    #   nothing used yet this month, consumed in time order: tech 31 (from 09:05) 195 min, then tech 32
    #   (from 09:10) 45 min -> tech 31 fully covered, tech 32 bills 150 min = 2.5 h × 54.00 = 135.00.
    #   Call-out: the visit starts Saturday 09:05 -> the weekend fee 75.00 (the contract does not cover call-outs).
    #   Parts: contactor 38.50 × 1.20 = 46.20; R410A 24.00 × 1.20 = 28.80/kg × 2.5 kg = 72.00.
    #   Parking 6.50 at cost.
    # lines:                       net       VAT 23 %
    #   call-out (weekend)         75.00     17.25
    #   tech 31 3.25 h covered      0.00      0.00
    #   tech 32 0.75 h covered      0.00      0.00
    #   tech 32 2.5 h × 54.00     135.00     31.05
    #   contactor                  46.20     10.626 -> 10.63
    #   R410A 2.5 kg               72.00     16.56
    #   parking                     6.50      1.495 -> 1.50
    # net 334.70; VAT 17.25 + 31.05 + 10.63 + 16.56 + 1.50 = 76.99; total 411.69
    # cost: labour 195 min × 20.00/60 = 65.00 + 195 min × 18.00/60 = 58.50 (13.50 covered + 45.00 billed);
    #       parts 38.50 + 2.5 × 24.00 = 60.00; parking 6.50 -> 228.50; margin 334.70 - 228.50 = 106.20
    assert isinstance(invoice, Invoice)
    assert [(ln.kind, ln.quantity, ln.unit_price, ln.net, ln.tax, ln.covered_by) for ln in invoice.lines] == [
        ("call_out", Decimal("1"), Decimal("75.00"), Decimal("75.00"), Decimal("17.25"), None),
        ("labour", Decimal("3.25"), Decimal("0"), Decimal("0.00"), Decimal("0.00"), "ABONO-2025-HAD"),
        ("labour", Decimal("0.75"), Decimal("0"), Decimal("0.00"), Decimal("0.00"), "ABONO-2025-HAD"),
        ("labour", Decimal("2.5"), Decimal("54.00"), Decimal("135.00"), Decimal("31.05"), None),
        ("part", Decimal("1"), Decimal("46.20"), Decimal("46.20"), Decimal("10.63"), None),
        ("part", Decimal("2.5"), Decimal("28.80"), Decimal("72.00"), Decimal("16.56"), None),
        ("expense", Decimal("1"), Decimal("6.50"), Decimal("6.50"), Decimal("1.50"), None),
    ]
    assert (str(invoice.net_total), str(invoice.tax_total), str(invoice.total)) == ("334.70", "76.99", "411.69")
    assert (str(invoice.cost_total), str(invoice.margin)) == ("228.50", "106.20")
    assert invoice.lines[1].rule.startswith("contract:ABONO-2025-HAD:corrective_allowance 4 h/month")
    assert "rate:client_skill:CLI-HAD:hvac × band weekend 1.5" in invoice.lines[1].rule
    assert invoice.lines[3].rule.startswith("rate:technician:32 × band weekend 1.5")
    assert invoice.lines[0].rule.startswith("call_out_fee:band weekend")
    a = invoice.allowance
    assert (a.key, a.month, a.used_before_minutes, a.needed_minutes, a.consumed_minutes, a.remaining_minutes) == (
        "synthetic-fm:CLI-HAD:2025-03",
        "2025-03",
        0,
        390,
        240,
        0,
    )
    assert invoice.issue_date.isoformat() == "2025-03-15" and invoice.contract_id == "ABONO-2025-HAD"


def test_synthetic_scenario_with_the_canonical_3_kg():
    raw = deepcopy(_event_raw())
    raw["data"]["parts"][1]["quantity"] = "3"
    invoice = price_event(parse_event(raw), "synthetic-fm", _tenant())
    # as above with 3 kg: R410A 3 × 28.80 = 86.40, VAT 19.872 -> 19.87
    # net 334.70 - 72.00 + 86.40 = 349.10; VAT 76.99 - 16.56 + 19.87 = 80.30; total 429.40
    # cost 228.50 - 60.00 + 72.00 = 240.50 (= MaintainX's own cost total, 24050 cents); margin 108.60
    assert (str(invoice.net_total), str(invoice.tax_total), str(invoice.total)) == ("349.10", "80.30", "429.40")
    assert (str(invoice.cost_total), str(invoice.margin)) == ("240.50", "108.60")


def test_synthetic_scenario_later_in_the_month_bills_everything():
    # The same work order priced when another work order already used the month's 4 h:
    # no allowance left: tech 31 3.25 h × 60.00 = 195.00 (VAT 44.85) and tech 32 3.25 h × 54.00 = 175.50
    # (VAT 40.365 -> 40.37) replace the 135.00 line (VAT 31.05):
    # net 334.70 - 135.00 + 195.00 + 175.50 = 570.20; VAT 76.99 - 31.05 + 44.85 + 40.37 = 131.16; total 701.36
    invoice = price_event(
        parse_event(_event_raw()), "synthetic-fm", _tenant(), allowance_used={"synthetic-fm:wo:5550001:r1": 240}
    )
    assert [(ln.quantity, ln.net) for ln in invoice.lines if ln.kind == "labour"] == [
        (Decimal("3.25"), Decimal("195.00")),
        (Decimal("3.25"), Decimal("175.50")),
    ]
    assert (str(invoice.net_total), str(invoice.tax_total), str(invoice.total)) == ("570.20", "131.16", "701.36")
    assert (invoice.allowance.used_before_minutes, invoice.allowance.consumed_minutes) == (240, 0)
