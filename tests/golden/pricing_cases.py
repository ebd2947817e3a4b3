"""Golden table of the pricing engine: inputs and the exact expected lines and totals, computed by hand.

Every expected amount below was worked out by hand (the arithmetic is in the comment above each
case) and written as a decimal literal; nothing here is computed by the code under test. Money
is compared as text, so ``"94.50"`` also checks that the amount has exactly the currency's
decimals. Conventions used in the comments:

* rounding is half-up to the currency minor unit (EUR 2 decimals, JPY 0, BHD 3), per line;
* ``15-min increment``: worked time rounded **up** to 15 min per technician per visit (once),
  then at least 60 min; ``x h × rate`` is the line amount;
* cost (``cost_basis: worked``, the default): cost rate × the minutes worked (after breaks, before
  increments and minimums) / 60, per line; ``cost_basis: billed`` (G09) uses the billed minutes;
* unless said otherwise: tenant ``acme`` (EUR, Europe/Lisbon, VAT 23 %), skills hvac 42.00/h
  (cost 24.00), electrical 38.00 (22.00), general 30.00 (16.00); T31 Ana Costa hvac; T32 Bruno
  Reis electrical with personal 36.00/h (cost 21.00); call-out 45.00; parts markup 20 %; travel
  20.00/h; the base day is Tuesday 2026-03-03 (Lisbon is on WET = UTC+0 until 2026-03-29).

Structure: :data:`CASES` (one event each) and :data:`SEQUENCES` (several events priced one
after the other with the allowance state carried over). Each case names the issue rules it
covers (``rules``), keyed like docs/pricing.md: labour, rates, travel, bands, dst, call_out,
parts, expenses, contracts, allowance, quotes, tax, reverse_charge, tax_inclusive, currency,
discounts, cost, traceability, revisions, not_billable, errors.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------- inputs
BASE_TENANT: dict[str, Any] = {
    "name": "Golden FM",
    "currency": "EUR",
    "timezone": "Europe/Lisbon",
    "vat_percent": "23",
    "invoice_prefix": "ACME",
    "payment_terms_days": 30,
    "billing": {  # valid Xero settings, so that parse_config (which checks them and the tax codes) accepts it
        "system": "xero",
        "settings": {
            "xero_tenant_id": "00000000-0000-0000-0000-000000000001",
            "client_id": "golden",
            "client_secret_env": "XERO_CLIENT_SECRET",
            "refresh_token_env": "XERO_REFRESH_TOKEN",
            "tax_types": {"23": "OUTPUT2", "13": "OUTPUT3", "6": "OUTPUT4", "0": "EXEMPTOUTPUT"},
        },
    },
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
        "travel_hourly_rate": "20.00",
        "call_out_fee": "45.00",
        "parts_markup_percent": "20",
        "expenses_handling_percent": "0",
    },
}

#: Bands in priority order (first match wins): holiday, weekend, night 18:00-07:00, overtime after 8 h.
BANDS = [
    {"name": "holiday", "holiday": True, "factor": "2.00", "call_out_fee": "90.00"},
    {"name": "weekend", "days": ["SAT", "SUN"], "factor": "1.50", "call_out_fee": "75.00"},
    {"name": "night", "start": "18:00", "end": "07:00", "factor": "1.25", "call_out_fee": "60.00"},
    {"name": "overtime", "overtime_after_hours": "8", "factor": "1.50"},
]
HOLIDAYS = ["2026-04-03", "2026-04-25", "2026-12-25"]
#: The official calendar of Portugal and Lisbon district (the holidays package), as a tenant's ``holidays:``.
PT_LISBON = {"country": "PT", "subdivision": "11"}
#: Only a night band 20:00-07:00 (for the DST days, which are Sundays).
NIGHT_ONLY = [{"name": "night", "start": "20:00", "end": "07:00", "factor": "1.25"}]

CONTRACT = {
    "id": "ABONO-1", "valid_from": "2026-01-01", "valid_to": "2026-12-31", "sites": ["SITE-1"],
    "covers": {"preventive_labour": True, "preventive_parts": False, "corrective_hours_per_month": "4",
               "call_out_fee": False},
}


def tenant(*, rate_card: dict | None = None, clients: dict | None = None, client: dict | None = None, **top) -> dict:
    """BASE_TENANT with ``rate_card`` keys replaced, ``client`` keys merged into CLI-1, ``clients`` added, ``top`` keys replaced."""
    raw = copy.deepcopy(BASE_TENANT)
    raw["rate_card"].update(copy.deepcopy(rate_card or {}))
    raw["clients"]["CLI-1"].update(copy.deepcopy(client or {}))
    raw["clients"].update(copy.deepcopy(clients or {}))
    raw.update(copy.deepcopy(top))
    return raw


def wo(*, entries=(), parts=(), expenses=(), kind="corrective", wo_id="1001", revision=1, client="CLI-1", site="SITE-1",
       time="2026-03-03T18:00:00+00:00", quote_id=None) -> dict:
    """A ``maintenance.work_order.completed`` event (raw JSON-like dict)."""
    data = {"work_order_id": wo_id, "kind": kind, "revision": revision, "client_id": client, "site_id": site,
            "time_entries": list(entries), "parts": list(parts), "expenses": list(expenses)}
    if quote_id:
        data["quote_id"] = quote_id
    return {"specversion": "1.0", "id": f"test:wo:{wo_id}:r{revision}", "source": "/platforms/test",
            "type": "maintenance.work_order.completed", "time": time, "tenant": "acme", "data": data}


def sj(*, entries=(), parts=(), expenses=(), sj_id="SJ-7", site="SITE-1", time="2026-03-03T18:00:00+00:00") -> dict:
    """A ``maintenance.scheduled_job.closed`` event."""
    return {"specversion": "1.0", "id": f"test:sj:{sj_id}:r1", "source": "/platforms/test",
            "type": "maintenance.scheduled_job.closed", "time": time, "tenant": "acme",
            "data": {"scheduled_job_id": sj_id, "client_id": "CLI-1", "site_id": site, "time_entries": list(entries),
                     "parts": list(parts), "expenses": list(expenses)}}


QUOTE_LINES = [
    {"id": "QL-1", "sku": "CMP", "description": "Scroll compressor", "quantity": "1", "unit_price": "980.00"},
    {"id": "QL-2", "description": "Labour (hour)", "quantity": "10", "unit_price": "45.00"},
    {"id": "QL-3", "description": "Documentation", "quantity": "1", "unit_price": "25.00", "tax_rate": "6"},
]


def qt(lines=QUOTE_LINES, *, quote_id="Q-12", revision=1) -> dict:
    """A ``maintenance.quote.approved`` event."""
    return {"specversion": "1.0", "id": f"test:qt:{quote_id}:r{revision}", "source": "/platforms/test",
            "type": "maintenance.quote.approved", "time": "2026-03-02T16:45:00+00:00", "tenant": "acme",
            "data": {"quote_id": quote_id, "revision": revision, "client_id": "CLI-1", "site_id": "SITE-1",
                     "lines": list(lines)}}


def dur(eid: str, tech: str, minutes: int, **kw) -> dict:
    """A duration-only time entry (no clock times: never in a band)."""
    return {"id": eid, "technician_id": tech, "duration_seconds": minutes * 60, **kw}


def at(eid: str, tech: str, start: str, end: str, **kw) -> dict:
    """A clocked time entry."""
    return {"id": eid, "technician_id": tech, "start": start, "end": end, **kw}


def part(pid: str, qty: str, *, cost=None, price=None, sku="SKU-1", **kw) -> dict:
    p = {"id": pid, "sku": sku, "description": f"Part {sku}", "quantity": qty, **kw}
    if cost is not None:
        p["unit_cost"] = cost
    if price is not None:
        p["unit_price"] = price
    return p


def expense(eid: str, amount: str, *, description="Parking", **kw) -> dict:
    return {"id": eid, "description": description, "amount": amount, **kw}


# --------------------------------------------------------------------------- expectations
@dataclass(frozen=True)
class L:
    """One expected invoice line; money as text with the currency's exact decimals."""

    kind: str
    quantity: str
    unit_price: str
    net: str
    tax_rate: str
    tax: str
    total: str
    cost: str | None = None
    source: str | None = None
    rule: str | None = None          # substring of the line's rule
    discount: str | None = None
    covered_by: str | None = None
    worked: str | None = None        # worked_minutes
    billed: int | None = None        # billed_minutes


@dataclass(frozen=True)
class Case:
    id: str
    rules: tuple[str, ...]
    event: dict
    tenant: dict = field(default_factory=tenant)
    lines: tuple[L, ...] = ()
    totals: tuple[str, str, str] | None = None   # net, tax, total
    cost: str | None = None
    margin: str | None = None
    not_billable: str | None = None              # expected reason_code
    error_field: str | None = None               # expected PricingError.field
    allowance_used: dict | None = None
    quote: dict | None = None
    allowance: tuple[int, int, int] | None = None  # used before, consumed, remaining (minutes)
    legal_notes: tuple[str, ...] | None = None
    tax_inclusive: bool | None = None
    invoice_key: str | None = None
    invoice_number: str | None = None


@dataclass(frozen=True)
class Step:
    event: dict
    lines: tuple[L, ...]
    totals: tuple[str, str, str]
    allowance: tuple[int, int, int]   # used before, consumed, remaining (minutes)
    writes_state: bool = True


@dataclass(frozen=True)
class Sequence:
    id: str
    rules: tuple[str, ...]
    tenant: dict
    steps: tuple[Step, ...]


T0 = "2026-03-03T"  # Tuesday, Lisbon = UTC+0
CASES: list[Case] = [
    # ------------------------------------------------------------------ 1. labour time
    # 127 min -> ceil(127/15) = 9 increments = 135 min = 2.25 h × 42.00 = 94.50; tax 94.50 × 0.23 = 21.735 -> 21.74
    # total 116.24; cost on the 127 worked min: 127 × 24.00 / 60 = 50.80; margin 94.50 - 50.80 = 43.70
    # (preventive: no call-out)
    Case("G01-increment-rounds-up", ("labour", "cost", "traceability"),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 127)]),
         lines=(L("labour", "2.25", "42.00", "94.50", "23", "21.74", "116.24", cost="50.80", source="time_entry:TE-1",
                  rule="rate:skill:hvac; increment 15 min; minimum 60 min", worked="127", billed=135),),
         totals=("94.50", "21.74", "116.24"), cost="50.80", margin="43.70"),
    # 120 min is an exact multiple of 15: stays 120 min = 2 h × 42.00 = 84.00 (not 135 min); tax 19.32; cost 48.00
    Case("G02-exact-multiple-not-rounded", ("labour",),
         wo(kind="preventive", entries=[at("TE-1", "T31", T0 + "09:00:00+00:00", T0 + "11:00:00+00:00")]),
         lines=(L("labour", "2", "42.00", "84.00", "23", "19.32", "103.32", cost="48.00"),),
         totals=("84.00", "19.32", "103.32"), cost="48.00", margin="36.00"),
    # 40 min -> 45 min -> raised to the 60 min minimum = 1 h × 42.00 = 42.00; tax 9.66; total 51.66
    # cost on the 40 worked min, not the 60 billed: 40 × 24.00 / 60 = 16.00; margin 42.00 - 16.00 = 26.00
    Case("G03-minimum-per-technician-visit", ("labour", "cost"),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 40)]),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66", cost="16.00", rule="minimum 60 min (applied)",
                  worked="40", billed=60),),
         totals=("42.00", "9.66", "51.66"), cost="16.00", margin="26.00"),
    # 09:00-11:30 with a 30 min unpaid break = 120 min = 2 h × 42.00 = 84.00; tax 19.32
    Case("G04-unpaid-break-subtracted", ("labour",),
         wo(kind="preventive", entries=[at("TE-1", "T31", T0 + "09:00:00+00:00", T0 + "11:30:00+00:00", break_minutes=30)]),
         lines=(L("labour", "2", "42.00", "84.00", "23", "19.32", "103.32"),),
         totals=("84.00", "19.32", "103.32"), cost="48.00"),
    # rounding per entry: 50 min -> 60 and 50 min -> 60 = 120 min = 2 h × 42.00 = 84.00 (one line, both entries)
    Case("G05-rounding-per-entry", ("labour",),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 50), dur("TE-2", "T31", 50)]),
         tenant=tenant(rate_card={"rounding_per": "entry"}),
         lines=(L("labour", "2", "42.00", "84.00", "23", "19.32", "103.32", source="time_entry:TE-1,TE-2",
                  rule="increment 15 min; per entry"),),
         totals=("84.00", "19.32", "103.32"), cost="40.00"),  # 100 worked min × 24.00 / 60
    # rounding per visit (default): 50 + 50 = 100 min -> 105 min = 1.75 h × 42.00 = 73.50; tax 16.905 -> 16.91; total 90.41
    # cost on the 100 worked min: 100 × 24.00 / 60 = 40.00; margin 73.50 - 40.00 = 33.50
    Case("G06-rounding-per-visit", ("labour",),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 50), dur("TE-2", "T31", 50)]),
         lines=(L("labour", "1.75", "42.00", "73.50", "23", "16.91", "90.41", cost="40.00", source="time_entry:TE-1,TE-2",
                  worked="100", billed=105),),
         totals=("73.50", "16.91", "90.41"), cost="40.00", margin="33.50"),
    # two visits, each with its own minimum: 20 min -> 60 min twice = 2 × 42.00; tax 9.66 × 2
    # cost 20 worked min each: 20 × 24.00 / 60 = 8.00 twice = 16.00
    Case("G07-minimum-per-visit", ("labour",),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 20), dur("TE-2", "T31", 20, visit_id="V2")]),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66", cost="8.00", source="time_entry:TE-1"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66", cost="8.00", source="time_entry:TE-2")),
         totals=("84.00", "19.32", "103.32"), cost="16.00"),
    # times with a +01:00 offset: 10:05+01:00 to 12:12+01:00 = 127 min -> 135 min = 2.25 h × 42.00 = 94.50 (a weekday
    # morning, no band configured anyway); tax 21.74; cost 127 × 24.00 / 60 = 50.80
    Case("G08-offset-times", ("labour",),
         wo(kind="preventive", entries=[at("TE-1", "T31", T0 + "10:05:00+01:00", T0 + "12:12:00+01:00")]),
         lines=(L("labour", "2.25", "42.00", "94.50", "23", "21.74", "116.24"),),
         totals=("94.50", "21.74", "116.24"), cost="50.80"),
    # G01 with cost_basis: billed (the rule before worked-time costs): cost 2.25 h × 24.00 = 54.00; margin 40.50
    Case("G09-cost-on-billed-time", ("labour", "cost"),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 127)]),
         tenant=tenant(rate_card={"cost_basis": "billed"}),
         lines=(L("labour", "2.25", "42.00", "94.50", "23", "21.74", "116.24", cost="54.00", worked="127", billed=135),),
         totals=("94.50", "21.74", "116.24"), cost="54.00", margin="40.50"),

    # ------------------------------------------------------------------ 2. rates and travel
    # T32's personal 36.00 beats the electrical 38.00: 1 h × 36.00 = 36.00; tax 8.28; cost 1 h × 21.00
    Case("G10-technician-rate", ("rates",),
         wo(kind="preventive", entries=[dur("TE-1", "T32", 60)]),
         lines=(L("labour", "1", "36.00", "36.00", "23", "8.28", "44.28", cost="21.00", rule="rate:technician:T32"),),
         totals=("36.00", "8.28", "44.28"), cost="21.00", margin="15.00"),
    # client rate 40.00 beats T32's personal rate: 1 h × 40.00 = 40.00; tax 9.20
    Case("G11-client-rate-beats-technician", ("rates",),
         wo(kind="preventive", entries=[dur("TE-1", "T32", 60)]),
         tenant=tenant(client={"hourly_rate": "40.00"}),
         lines=(L("labour", "1", "40.00", "40.00", "23", "9.20", "49.20", cost="21.00", rule="rate:client:CLI-1"),),
         totals=("40.00", "9.20", "49.20"), cost="21.00"),
    # client+skill 44.00 for electrical beats client 40.00: T32 1 h × 44.00 = 44.00 (tax 10.12);
    # T31 (hvac, no client+skill rate) -> client 40.00 (tax 9.20); net 84.00, tax 19.32; cost 21.00 + 24.00 = 45.00
    Case("G12-client-skill-beats-client", ("rates",),
         wo(kind="preventive", entries=[dur("TE-1", "T32", 60), dur("TE-2", "T31", 60)]),
         tenant=tenant(client={"hourly_rate": "40.00", "skill_rates": {"electrical": "44.00"}}),
         lines=(L("labour", "1", "44.00", "44.00", "23", "10.12", "54.12", rule="rate:client_skill:CLI-1:electrical"),
                L("labour", "1", "40.00", "40.00", "23", "9.20", "49.20", rule="rate:client:CLI-1")),
         totals=("84.00", "19.32", "103.32"), cost="45.00", margin="39.00"),
    # T99 is not in the rate card -> default skill general 30.00: 90 min = 1.5 h × 30.00 = 45.00; tax 10.35;
    # cost 1.5 × 16.00 = 24.00
    Case("G13-default-skill", ("rates",),
         wo(kind="preventive", entries=[dur("TE-1", "T99", 90)]),
         lines=(L("labour", "1.5", "30.00", "45.00", "23", "10.35", "55.35", cost="24.00", rule="rate:skill:general"),),
         totals=("45.00", "10.35", "55.35"), cost="24.00"),
    # labour 60 min = 42.00 (tax 9.66); travel 25 min -> 30 min (no minimum) = 0.5 h × 20.00 = 10.00 (tax 2.30)
    # net 52.00, tax 11.96; cost on worked time 24.00 + 25 × 24.00 / 60 = 24.00 + 10.00 = 34.00; margin 18.00
    Case("G14-travel-time-rate", ("travel",),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 60), dur("TE-2", "T31", 25, kind="travel")]),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66"),
                L("travel", "0.5", "20.00", "10.00", "23", "2.30", "12.30", cost="10.00", rule="rate:travel",
                  worked="25", billed=30)),
         totals=("52.00", "11.96", "63.96"), cost="34.00", margin="18.00"),
    # mileage 0.40/km: 37.5 km × 0.40 = 15.00 (tax 3.45); cost 37.5 × 0.25 = 9.375 -> 9.38; travel time (25 min
    # worked) is cost only: 25 × 24.00 / 60 = 10.00. net 42.00 + 15.00 = 57.00; tax 9.66 + 3.45 = 13.11; total 70.11
    # cost 24.00 + 9.38 + 10.00 = 43.38; margin 57.00 - 43.38 = 13.62
    Case("G15-travel-mileage", ("travel", "cost"),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 60), dur("TE-2", "T31", 25, kind="travel", distance_km="37.5")]),
         tenant=tenant(rate_card={"travel_billing": "mileage", "mileage_rate_per_km": "0.40", "mileage_cost_per_km": "0.25"}),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66"),
                L("travel", "37.5", "0.40", "15.00", "23", "3.45", "18.45", cost="9.38", rule="rate:mileage per km")),
         totals=("57.00", "13.11", "70.11"), cost="43.38", margin="13.62"),
    # travel_billing both: the travel time and the kilometres, each its own line, on one corrective visit of three
    # technicians (mileage 0.40/km, cost 0.25/km; travel 20.00/h; one call-out for the visit, 45.00, tax 10.35):
    #   labour T31 60 min = 1 h × 42.00 = 42.00 (tax 9.66; cost 60 × 24.00 / 60 = 24.00)
    #          T32 50 -> 60 min = 1 h × 36.00 = 36.00 (tax 8.28; cost 50 × 21.00 / 60 = 17.50)
    #          T99 90 min = 1.5 h × 30.00 = 45.00 (tax 10.35; cost 90 × 16.00 / 60 = 24.00)
    #   T31 travel 25 -> 30 min = 0.5 h × 20.00 = 10.00 (tax 2.30; cost 25 × 24.00 / 60 = 10.00)
    #       30 km × 0.40 = 12.00 (tax 2.76; cost 30 × 0.25 = 7.50)
    #   T32 travel 20 -> 30 min = 0.5 h × 20.00 = 10.00 (tax 2.30; cost 20 × 21.00 / 60 = 7.00)
    #       12.5 km × 0.40 = 5.00 (tax 1.15; cost 12.5 × 0.25 = 3.125 -> 3.13)
    #   T99 travel 10 -> 15 min = 0.25 h × 20.00 = 5.00 (tax 1.15; cost 10 × 16.00 / 60 = 2.666.. -> 2.67)
    #       8 km × 0.40 = 3.20 (tax 0.736 -> 0.74; cost 8 × 0.25 = 2.00)
    # net 45.00 + 42.00 + 36.00 + 45.00 + 10.00 + 12.00 + 10.00 + 5.00 + 5.00 + 3.20 = 213.20
    # tax 10.35 + 9.66 + 8.28 + 10.35 + 2.30 + 2.76 + 2.30 + 1.15 + 1.15 + 0.74 = 49.04; total 262.24
    # cost 24.00 + 17.50 + 24.00 + 10.00 + 7.50 + 7.00 + 3.13 + 2.67 + 2.00 = 97.80; margin 213.20 - 97.80 = 115.40
    Case("G16-travel-time-and-mileage", ("travel", "cost"),
         wo(entries=[dur("TE-1", "T31", 60), dur("TE-2", "T32", 50), dur("TE-3", "T99", 90),
                     dur("TE-4", "T31", 25, kind="travel", distance_km="30"),
                     dur("TE-5", "T32", 20, kind="travel", distance_km="12.5"),
                     dur("TE-6", "T99", 10, kind="travel", distance_km="8")]),
         tenant=tenant(rate_card={"travel_billing": "both", "mileage_rate_per_km": "0.40", "mileage_cost_per_km": "0.25"}),
         lines=(L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66", cost="24.00", worked="60", billed=60),
                L("labour", "1", "36.00", "36.00", "23", "8.28", "44.28", cost="17.50", worked="50", billed=60),
                L("labour", "1.5", "30.00", "45.00", "23", "10.35", "55.35", cost="24.00", worked="90", billed=90),
                L("travel", "0.5", "20.00", "10.00", "23", "2.30", "12.30", cost="10.00", rule="rate:travel",
                  source="time_entry:TE-4", worked="25", billed=30),
                L("travel", "30", "0.40", "12.00", "23", "2.76", "14.76", cost="7.50", rule="rate:mileage per km",
                  source="time_entry:TE-4"),
                L("travel", "0.5", "20.00", "10.00", "23", "2.30", "12.30", cost="7.00", worked="20", billed=30),
                L("travel", "12.5", "0.40", "5.00", "23", "1.15", "6.15", cost="3.13"),
                L("travel", "0.25", "20.00", "5.00", "23", "1.15", "6.15", cost="2.67", worked="10", billed=15),
                L("travel", "8", "0.40", "3.20", "23", "0.74", "3.94", cost="2.00")),
         totals=("213.20", "49.04", "262.24"), cost="97.80", margin="115.40"),
    # one client billed both ways while the rate card bills time, its kilometres at their own VAT (tax.rates.mileage 6):
    # labour 1 h × 42.00 = 42.00 (tax 9.66); travel 25 -> 30 min = 10.00 (tax 2.30); 10 km × 0.40 = 4.00 (tax 6 %: 0.24)
    # net 56.00; tax 12.20; total 68.20; cost 24.00 + 10.00 + 10 × 0.25 = 2.50 -> 36.50
    Case("G17-client-travel-billing-and-mileage-vat", ("travel", "tax"),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 60), dur("TE-2", "T31", 25, kind="travel", distance_km="10")]),
         tenant=tenant(rate_card={"mileage_rate_per_km": "0.40", "mileage_cost_per_km": "0.25"},
                       client={"travel_billing": "both"}, tax={"rates": {"mileage": "6"}}),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66"),
                L("travel", "0.5", "20.00", "10.00", "23", "2.30", "12.30", cost="10.00"),
                L("travel", "10", "0.40", "4.00", "6", "0.24", "4.24", cost="2.50")),
         totals=("56.00", "12.20", "68.20"), cost="36.50", margin="19.50"),

    # ------------------------------------------------------------------ 3. time bands (BANDS)
    # 17:00-19:30 with night from 18:00: 60 min normal + 90 min night (exact, no rounding).
    # 1 h × 42.00 = 42.00 (tax 9.66); night 42.00 × 1.25 = 52.50/h; 1.5 h × 52.50 = 78.75 (tax 18.1125 -> 18.11)
    # net 120.75; tax 27.77; total 148.52; cost 24.00 + 36.00 = 60.00; margin 60.75
    Case("G20-band-crossing-split", ("bands", "traceability"),
         wo(kind="preventive", entries=[at("TE-1", "T31", T0 + "17:00:00+00:00", T0 + "19:30:00+00:00")]),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=HOLIDAYS),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66", cost="24.00", source="time_entry:TE-1"),
                L("labour", "1.5", "52.50", "78.75", "23", "18.11", "96.86", cost="36.00", source="time_entry:TE-1",
                  rule="rate:skill:hvac × band night 1.25")),
         totals=("120.75", "27.77", "148.52"), cost="60.00", margin="60.75"),
    # 17:05-19:40: 55 min normal + 100 min night = 155 min -> 165 min once for the visit (11 increments).
    # whole increments: normal 3 (rest 10 min), night 6 (rest 10 min); 2 left -> one each: 60 + 105 min.
    # 1 h × 42.00 = 42.00 (tax 9.66); 1.75 h × 52.50 = 91.875 -> 91.88 (tax 21.1324 -> 21.13)
    # net 133.88; tax 30.79; total 164.67; cost on the worked minutes: 55 × 24.00 / 60 = 22.00 and
    # 100 × 24.00 / 60 = 40.00 = 62.00; margin 133.88 - 62.00 = 71.88
    Case("G21-band-crossing-rounded-once", ("bands", "labour"),
         wo(kind="preventive", entries=[at("TE-1", "T31", T0 + "17:05:00+00:00", T0 + "19:40:00+00:00")]),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=HOLIDAYS),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66", cost="22.00", worked="55", billed=60),
                L("labour", "1.75", "52.50", "91.88", "23", "21.13", "113.01", cost="40.00", worked="100", billed=105)),
         totals=("133.88", "30.79", "164.67"), cost="62.00", margin="71.88"),
    # Saturday 2026-03-07 10:00-12:00: weekend 42.00 × 1.50 = 63.00/h; 2 h × 63.00 = 126.00; tax 28.98
    Case("G22-saturday", ("bands",),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2026-03-07T10:00:00+00:00", "2026-03-07T12:00:00+00:00")]),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=HOLIDAYS),
         lines=(L("labour", "2", "63.00", "126.00", "23", "28.98", "154.98", rule="band weekend 1.5"),),
         totals=("126.00", "28.98", "154.98"), cost="48.00"),
    # Sunday 2026-03-08 06:00-07:30 is both night and weekend: weekend is listed first and wins (no stacking):
    # 1.5 h × 63.00 = 94.50; tax 21.735 -> 21.74
    Case("G23-sunday-night-first-band-wins", ("bands",),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2026-03-08T06:00:00+00:00", "2026-03-08T07:30:00+00:00")]),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=HOLIDAYS),
         lines=(L("labour", "1.5", "63.00", "94.50", "23", "21.74", "116.24", rule="band weekend"),),
         totals=("94.50", "21.74", "116.24"), cost="36.00"),
    # Good Friday 2026-04-03 (in the holiday calendar) 10:00-11:00 Lisbon summer time (+01:00):
    # holiday 42.00 × 2.00 = 84.00/h; 1 h = 84.00; tax 19.32
    Case("G24-public-holiday", ("bands",),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2026-04-03T10:00:00+01:00", "2026-04-03T11:00:00+01:00")],
            time="2026-04-03T12:00:00+01:00"),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=HOLIDAYS),
         lines=(L("labour", "1", "84.00", "84.00", "23", "19.32", "103.32", rule="band holiday 2"),),
         totals=("84.00", "19.32", "103.32"), cost="24.00"),
    # Regional calendar (holidays: {country: PT, subdivision: "11"}, the holidays package): Friday 2025-06-13,
    # Santo António, is a holiday of Lisbon district (PT-11) only. 10:00-11:00 Lisbon summer time (+01:00):
    # holiday 42.00 × 2.00 = 84.00/h; 1 h = 84.00; tax 19.32; cost 24.00
    Case("G24a-regional-holiday-calendar", ("bands",),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2025-06-13T10:00:00+01:00", "2025-06-13T11:00:00+01:00")],
            time="2025-06-13T12:00:00+01:00"),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=PT_LISBON),
         lines=(L("labour", "1", "84.00", "84.00", "23", "19.32", "103.32", rule="band holiday 2"),),
         totals=("84.00", "19.32", "103.32"), cost="24.00"),
    # the same with remove: [2025-06-13]: a Friday at normal rate, 1 h × 42.00 = 42.00; tax 9.66
    Case("G24b-regional-holiday-removed", ("bands",),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2025-06-13T10:00:00+01:00", "2025-06-13T11:00:00+01:00")],
            time="2025-06-13T12:00:00+01:00"),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=dict(PT_LISBON, remove=["2025-06-13"])),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66", rule="rate:skill:hvac; increment"),),
         totals=("42.00", "9.66", "51.66"), cost="24.00"),
    # the national calendar alone (holidays: {country: PT}) has no 13 June: normal rate, 42.00; tax 9.66
    Case("G24c-national-calendar-without-the-region", ("bands",),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2025-06-13T10:00:00+01:00", "2025-06-13T11:00:00+01:00")],
            time="2025-06-13T12:00:00+01:00"),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays={"country": "PT"}),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66", rule="rate:skill:hvac; increment"),),
         totals=("42.00", "9.66", "51.66"), cost="24.00"),
    # Saturday 2026-06-13 (Santo António in PT-11) 10:00-12:00 +01:00: holiday, listed first, beats weekend:
    # 2 h × 84.00 = 168.00; tax 38.64; cost 48.00. With remove: [2026-06-13] the Saturday is weekend:
    # 42.00 × 1.50 = 63.00/h; 2 h = 126.00; tax 28.98; cost 48.00
    Case("G24d-regional-holiday-on-a-saturday", ("bands",),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2026-06-13T10:00:00+01:00", "2026-06-13T12:00:00+01:00")],
            time="2026-06-13T12:30:00+01:00"),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=PT_LISBON),
         lines=(L("labour", "2", "84.00", "168.00", "23", "38.64", "206.64", rule="band holiday 2"),),
         totals=("168.00", "38.64", "206.64"), cost="48.00"),
    Case("G24e-regional-holiday-removed-on-a-saturday", ("bands",),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2026-06-13T10:00:00+01:00", "2026-06-13T12:00:00+01:00")],
            time="2026-06-13T12:30:00+01:00"),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=dict(PT_LISBON, remove=["2026-06-13"])),
         lines=(L("labour", "2", "63.00", "126.00", "23", "28.98", "154.98", rule="band weekend 1.5"),),
         totals=("126.00", "28.98", "154.98"), cost="48.00"),
    # 07:00-17:30 with a 30 min break (taken off the end) = 07:00-17:00 = 10 h; overtime after 8 h:
    # 07:00-15:00 normal 8 h × 42.00 = 336.00 (tax 77.28); 15:00-17:00 overtime 42.00 × 1.50 = 63.00/h,
    # 2 h = 126.00 (tax 28.98). net 462.00; tax 106.26; total 568.26; cost 10 × 24.00 = 240.00
    Case("G25-overtime-after-8h", ("bands",),
         wo(kind="preventive", entries=[at("TE-1", "T31", T0 + "07:00:00+00:00", T0 + "17:30:00+00:00", break_minutes=30)]),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=HOLIDAYS),
         lines=(L("labour", "8", "42.00", "336.00", "23", "77.28", "413.28", cost="192.00"),
                L("labour", "2", "63.00", "126.00", "23", "28.98", "154.98", cost="48.00", rule="band overtime 1.5")),
         totals=("462.00", "106.26", "568.26"), cost="240.00", margin="222.00"),

    # ------------------------------------------------------------------ DST change days (NIGHT_ONLY 20:00-07:00)
    # 2026-03-29: 01:00 UTC clocks go 01:00 WET -> 02:00 WEST. 05:30Z-07:30Z = 06:30-08:30 WEST:
    # night until 07:00 local = 30 min, then 90 min normal (120 min, 8 increments exactly).
    # 0.5 h × 52.50 = 26.25 (tax 6.0375 -> 6.04); 1.5 h × 42.00 = 63.00 (tax 14.49)
    # net 89.25; tax 20.53; total 109.78; cost 12.00 + 36.00 = 48.00
    Case("G26-dst-spring-band-boundary", ("dst", "bands"),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2026-03-29T05:30:00+00:00", "2026-03-29T07:30:00+00:00")],
            time="2026-03-29T08:00:00+00:00"),
         tenant=tenant(rate_card={"time_bands": NIGHT_ONLY}),
         lines=(L("labour", "0.5", "52.50", "26.25", "23", "6.04", "32.29", cost="12.00"),
                L("labour", "1.5", "42.00", "63.00", "23", "14.49", "77.49", cost="36.00")),
         totals=("89.25", "20.53", "109.78"), cost="48.00"),
    # night shift over the spring change: 2026-03-28 22:00Z (22:00 WET) to 2026-03-29 03:00Z (04:00 WEST):
    # the wall clock says 6 h but 5 h were worked, all night: 5 h × 52.50 = 262.50; tax 60.375 -> 60.38; cost 120.00
    Case("G27-dst-spring-night-shift-real-hours", ("dst", "bands"),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2026-03-28T22:00:00+00:00", "2026-03-29T03:00:00+00:00")],
            time="2026-03-29T04:00:00+00:00"),
         tenant=tenant(rate_card={"time_bands": NIGHT_ONLY}),
         lines=(L("labour", "5", "52.50", "262.50", "23", "60.38", "322.88", cost="120.00"),),
         totals=("262.50", "60.38", "322.88"), cost="120.00"),
    # 2026-10-25: 01:00 UTC clocks go 02:00 WEST -> 01:00 WET. 00:30Z-02:30Z = 01:30 WEST to 02:30 WET:
    # 2 real hours (the wall clock shows 1 h), all night: 2 h × 52.50 = 105.00; tax 24.15; cost 48.00
    Case("G28-dst-autumn-repeated-hour", ("dst", "bands"),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2026-10-25T00:30:00+00:00", "2026-10-25T02:30:00+00:00")],
            time="2026-10-25T03:00:00+00:00"),
         tenant=tenant(rate_card={"time_bands": NIGHT_ONLY}),
         lines=(L("labour", "2", "52.50", "105.00", "23", "24.15", "129.15", cost="48.00"),),
         totals=("105.00", "24.15", "129.15"), cost="48.00"),
    # 2026-10-25 after the change (WET = UTC+0): 06:00Z-08:00Z = 06:00-08:00 local: 1 h night + 1 h normal
    # 52.50 (tax 12.075 -> 12.08) + 42.00 (tax 9.66) = 94.50; tax 21.74
    Case("G29-dst-autumn-band-boundary", ("dst", "bands"),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2026-10-25T06:00:00+00:00", "2026-10-25T08:00:00+00:00")],
            time="2026-10-25T09:00:00+00:00"),
         tenant=tenant(rate_card={"time_bands": NIGHT_ONLY}),
         lines=(L("labour", "1", "52.50", "52.50", "23", "12.08", "64.58"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66")),
         totals=("94.50", "21.74", "116.24"), cost="48.00"),
    # a band starting at 01:30, a wall time that does not exist on 2026-03-29: 00:00Z-02:00Z = 00:00 WET ..
    # (01:00Z = 02:00 WEST) .. 03:00 WEST. 00:00-01:00 local is before 01:30 (normal, 1 h × 42.00 = 42.00);
    # from the jump the wall clock reads 02:00-03:00 (band "early" × 2: 1 h × 84.00 = 84.00)
    # tax 9.66 + 19.32 = 28.98; net 126.00; total 154.98
    Case("G30-dst-band-start-in-spring-gap", ("dst", "bands"),
         wo(kind="preventive", entries=[at("TE-1", "T31", "2026-03-29T00:00:00+00:00", "2026-03-29T02:00:00+00:00")],
            time="2026-03-29T03:00:00+00:00"),
         tenant=tenant(rate_card={"time_bands": [{"name": "early", "start": "01:30", "end": "07:00", "factor": "2"}]}),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66"),
                L("labour", "1", "84.00", "84.00", "23", "19.32", "103.32", rule="band early 2")),
         totals=("126.00", "28.98", "154.98"), cost="48.00"),

    # ------------------------------------------------------------------ 4. call-out
    # corrective on a weekday: call-out 45.00 (tax 10.35) + 1 h × 42.00 (tax 9.66) = 87.00; tax 20.01
    Case("G31-call-out-corrective", ("call_out",),
         wo(entries=[at("TE-1", "T31", T0 + "09:00:00+00:00", T0 + "10:00:00+00:00")]),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=HOLIDAYS),
         lines=(L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35", source="work_order:1001",
                  rule="call_out_fee; corrective visit"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66")),
         totals=("87.00", "20.01", "107.01"), cost="24.00"),
    # Saturday 10:00: the visit starts in the weekend band -> call-out 75.00 (tax 17.25); 1 h × 63.00 (tax 14.49)
    # net 138.00; tax 31.74; total 169.74
    Case("G32-call-out-out-of-hours-band-fee", ("call_out", "bands"),
         wo(entries=[at("TE-1", "T31", "2026-03-07T10:00:00+00:00", "2026-03-07T11:00:00+00:00")]),
         tenant=tenant(rate_card={"time_bands": BANDS}, holidays=HOLIDAYS),
         lines=(L("call_out", "1", "75.00", "75.00", "23", "17.25", "92.25", rule="call_out_fee:band weekend"),
                L("labour", "1", "63.00", "63.00", "23", "14.49", "77.49")),
         totals=("138.00", "31.74", "169.74"), cost="24.00"),
    # a band without its own fee: call_out_fee_out_of_hours 65.00 (tax 14.95); 21:00-22:00 night 1 h × 52.50
    # (tax 12.075 -> 12.08). net 117.50; tax 27.03; total 144.53
    Case("G33-call-out-out-of-hours-default", ("call_out", "bands"),
         wo(entries=[at("TE-1", "T31", T0 + "21:00:00+00:00", T0 + "22:00:00+00:00")]),
         tenant=tenant(rate_card={"time_bands": NIGHT_ONLY, "call_out_fee_out_of_hours": "65.00"}),
         lines=(L("call_out", "1", "65.00", "65.00", "23", "14.95", "79.95", rule="call_out_fee_out_of_hours (band night)"),
                L("labour", "1", "52.50", "52.50", "23", "12.08", "64.58")),
         totals=("117.50", "27.03", "144.53"), cost="24.00"),
    # two visits of a corrective work order: two call-outs (2 × 45.00, tax 10.35 each) + 2 × 1 h × 42.00
    # net 174.00; tax 20.70 + 19.32 = 40.02; total 214.02
    Case("G34-call-out-once-per-visit", ("call_out",),
         wo(entries=[dur("TE-1", "T31", 60), dur("TE-2", "T31", 60, visit_id="V2")]),
         lines=(L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35", source="work_order:1001"),
                L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35", source="visit:V2"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66")),
         totals=("174.00", "40.02", "214.02"), cost="48.00"),
    # call_out_per: work_order -> one call-out 45.00 for the same two visits: net 129.00; tax 10.35 + 19.32 = 29.67
    Case("G35-call-out-per-work-order-setting", ("call_out",),
         wo(entries=[dur("TE-1", "T31", 60), dur("TE-2", "T31", 60, visit_id="V2")]),
         tenant=tenant(rate_card={"call_out_per": "work_order"}),
         lines=(L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66")),
         totals=("129.00", "29.67", "158.67"), cost="48.00"),
    # scheduled job (preventive): no call-out; 1 h × 42.00
    Case("G36-no-call-out-on-preventive", ("call_out",),
         sj(entries=[dur("TE-1", "T31", 60)]),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66"),),
         totals=("42.00", "9.66", "51.66"), cost="24.00", invoice_number="ACME-SJ-SJ-7-R1"),

    # ------------------------------------------------------------------ 5. parts
    # event catalogue price wins: 4 × 3.75 = 15.00 (tax 3.45), cost 4 × 1.90 = 7.60
    # cost + 20 %: 24.00 × 1.20 = 28.80/kg; 2.5 kg = 72.00 (tax 16.56), cost 60.00
    # 9.35 × 1.20 = 11.22/m; 1.3 m = 14.586 -> 14.59 (tax 3.3557 -> 3.36), cost 12.155 -> 12.16
    # price without cost: 1.3 × 0.95 = 1.235 -> 1.24 (tax 0.2852 -> 0.29), cost 0
    # net 102.83; tax 23.66; total 126.49; cost 79.76; margin 23.07
    Case("G40-parts-price-sources-and-fractions", ("parts", "cost"),
         wo(kind="preventive", parts=[part("P-1", "4", cost="1.90", price="3.75", sku="FIT-15"),
                                      part("P-2", "2.5", cost="24.00", sku="R410A", unit="kg"),
                                      part("P-3", "1.3", cost="9.35", sku="PIPE", unit="m"),
                                      part("P-4", "1.3", price="0.95", sku="CBL", unit="m")]),
         lines=(L("part", "4", "3.75", "15.00", "23", "3.45", "18.45", cost="7.60", source="part:P-1", rule="part:catalogue_price"),
                L("part", "2.5", "28.80", "72.00", "23", "16.56", "88.56", cost="60.00", rule="part:cost_plus_markup 20%"),
                L("part", "1.3", "11.22", "14.59", "23", "3.36", "17.95", cost="12.16"),
                L("part", "1.3", "0.95", "1.24", "23", "0.29", "1.53", cost="0.00")),
         totals=("102.83", "23.66", "126.49"), cost="79.76", margin="23.07"),
    # category markup: refrigerant 35 %: 18.00 × 1.35 = 24.30/kg; 2 kg = 48.60 (tax 11.178 -> 11.18), cost 36.00;
    # no category -> 20 %: 10.00 × 1.20 = 12.00 (tax 2.76), cost 10.00. net 60.60; tax 13.94; cost 46.00
    Case("G41-parts-category-markup", ("parts",),
         wo(kind="preventive", parts=[part("P-1", "2", cost="18.00", sku="R32", category="refrigerant", unit="kg"),
                                      part("P-2", "1", cost="10.00", sku="VLV")]),
         tenant=tenant(rate_card={"parts_markup_by_category": {"refrigerant": "35"}}),
         lines=(L("part", "2", "24.30", "48.60", "23", "11.18", "59.78", cost="36.00",
                  rule="part:cost_plus_markup 35% (category refrigerant)"),
                L("part", "1", "12.00", "12.00", "23", "2.76", "14.76", cost="10.00")),
         totals=("60.60", "13.94", "74.54"), cost="46.00", margin="14.60"),
    # tenant catalogue: FLT-1 at 8.40: 6 × 8.40 = 50.40 (tax 11.592 -> 11.59), cost 6 × 5.10 = 30.60;
    # SEAL-9 cost 3.00, category consumables 50 %: 4.50; 2 × 4.50 = 9.00 (tax 2.07), cost 6.00
    # net 59.40; tax 13.66; total 73.06; cost 36.60
    Case("G42-parts-tenant-catalogue", ("parts",),
         wo(kind="preventive", parts=[part("P-1", "6", sku="FLT-1"), part("P-2", "2", sku="SEAL-9")]),
         tenant=tenant(rate_card={"catalogue": {"FLT-1": {"unit_price": "8.40", "unit_cost": "5.10"},
                                                "SEAL-9": {"unit_cost": "3.00", "category": "consumables"}},
                                  "parts_markup_by_category": {"consumables": "50"}}),
         lines=(L("part", "6", "8.40", "50.40", "23", "11.59", "61.99", cost="30.60", rule="part:tenant_catalogue_price"),
                L("part", "2", "4.50", "9.00", "23", "2.07", "11.07", cost="6.00", rule="cost_plus_markup 50%")),
         totals=("59.40", "13.66", "73.06"), cost="36.60"),
    # client-supplied part B: neither billed nor costed. A: 2 × (10.00 × 1.20 = 12.00) = 24.00; tax 5.52; cost 20.00
    Case("G43-client-supplied-part", ("parts",),
         wo(kind="preventive", parts=[part("P-1", "2", cost="10.00", sku="A"),
                                      part("P-2", "5", cost="99.00", sku="B", client_supplied=True)]),
         lines=(L("part", "2", "12.00", "24.00", "23", "5.52", "29.52", cost="20.00", source="part:P-1"),),
         totals=("24.00", "5.52", "29.52"), cost="20.00", margin="4.00"),
    # unknown SKU with no price and no cost: an error for the event (dead-lettered), never a zero line
    Case("G44-unknown-sku-without-cost-is-an-error", ("parts", "errors"),
         wo(parts=[part("P-1", "1", cost="1.00"), part("P-2", "1", sku="MYSTERY-9")]),
         error_field="data.parts.1.unit_cost"),

    # ------------------------------------------------------------------ 6. expenses
    # handling 10 %: 6.55 × 1.10 = 7.205 -> 7.21 (tax 1.6583 -> 1.66); lunch 12.00 not billable: cost only
    # cost 6.55 + 12.00 = 18.55; margin 7.21 - 18.55 = -11.34
    Case("G50-expenses-handling-and-non-billable", ("expenses", "cost"),
         wo(kind="preventive", expenses=[expense("E-1", "6.55"), expense("E-2", "12.00", description="Lunch", billable=False)]),
         tenant=tenant(rate_card={"expenses_handling_percent": "10"}),
         lines=(L("expense", "1", "7.21", "7.21", "23", "1.66", "8.87", cost="6.55", source="expense:E-1"),),
         totals=("7.21", "1.66", "8.87"), cost="18.55", margin="-11.34"),
    # two parkings of 6.50: 1.495 -> 1.50 per line, tax total 3.00 (document-level rounding would give 2.99)
    Case("G51-tax-rounded-per-line", ("tax", "expenses"),
         wo(kind="preventive", expenses=[expense("E-1", "6.50"), expense("E-2", "6.50")]),
         lines=(L("expense", "1", "6.50", "6.50", "23", "1.50", "8.00"), L("expense", "1", "6.50", "6.50", "23", "1.50", "8.00")),
         totals=("13.00", "3.00", "16.00"), cost="13.00"),

    # ------------------------------------------------------------------ 7. contracts (CONTRACT: ABONO-1 on SITE-1 in 2026)
    # scheduled job 90 min, preventive labour covered -> only a covered line (1.5 h at 0.00): no invoice
    # cost 1.5 × 24.00 = 36.00
    Case("G60-scheduled-job-covered-no-invoice", ("contracts", "not_billable"),
         sj(entries=[dur("TE-1", "T31", 90)]),
         tenant=tenant(client={"contracts": [CONTRACT]}),
         lines=(L("labour", "1.5", "0", "0.00", "23", "0.00", "0.00", cost="36.00", covered_by="ABONO-1",
                  rule="contract:ABONO-1:preventive_labour"),),
         not_billable="covered_by_contract", cost="36.00"),
    # labour covered, parts not: covered 1.5 h line + 2 × 12.00 = 24.00 (tax 5.52); cost 36.00 + 20.00 = 56.00
    Case("G61-scheduled-job-labour-covered-parts-billed", ("contracts",),
         sj(entries=[dur("TE-1", "T31", 90)], parts=[part("P-1", "2", cost="10.00")]),
         tenant=tenant(client={"contracts": [CONTRACT]}),
         lines=(L("labour", "1.5", "0", "0.00", "23", "0.00", "0.00", covered_by="ABONO-1"),
                L("part", "2", "12.00", "24.00", "23", "5.52", "29.52")),
         totals=("24.00", "5.52", "29.52"), cost="56.00", margin="-32.00"),
    # preventive parts covered too -> everything covered: no invoice; cost 36.00 + 20.00
    Case("G62-scheduled-job-labour-and-parts-covered", ("contracts", "not_billable"),
         sj(entries=[dur("TE-1", "T31", 90)], parts=[part("P-1", "2", cost="10.00")]),
         tenant=tenant(client={"contracts": [dict(CONTRACT, covers=dict(CONTRACT["covers"], preventive_parts=True))]}),
         lines=(L("labour", "1.5", "0", "0.00", "23", "0.00", "0.00", covered_by="ABONO-1"),
                L("part", "2", "0", "0.00", "23", "0.00", "0.00", covered_by="ABONO-1")),
         not_billable="covered_by_contract", cost="56.00"),
    # a site the contract does not cover: billed normally, 1.5 h × 42.00 = 63.00; tax 14.49
    Case("G63-contract-other-site", ("contracts",),
         sj(entries=[dur("TE-1", "T31", 90)], site="SITE-2"),
         tenant=tenant(client={"contracts": [CONTRACT]}),
         lines=(L("labour", "1.5", "42.00", "63.00", "23", "14.49", "77.49"),),
         totals=("63.00", "14.49", "77.49"), cost="36.00"),
    # contract ended 2026-02-28, event in March: billed normally
    Case("G64-contract-expired", ("contracts",),
         sj(entries=[dur("TE-1", "T31", 90)]),
         tenant=tenant(client={"contracts": [dict(CONTRACT, valid_to="2026-02-28")]}),
         lines=(L("labour", "1.5", "42.00", "63.00", "23", "14.49", "77.49"),),
         totals=("63.00", "14.49", "77.49"), cost="36.00"),
    # call-out covered by contract: a zero-priced call-out line; labour 42.00 (tax 9.66)
    Case("G65-call-out-covered", ("contracts", "call_out"),
         wo(entries=[dur("TE-1", "T31", 60)]),
         tenant=tenant(client={"contracts": [dict(CONTRACT, covers={"call_out_fee": True})]}),
         lines=(L("call_out", "1", "0", "0.00", "23", "0.00", "0.00", covered_by="ABONO-1", rule="contract:ABONO-1:call_out_fee"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66")),
         totals=("42.00", "9.66", "51.66"), cost="24.00"),
    # allowance 4 h = 240 min, another work order used 150 min this month -> 90 min left.
    # 09:00-11:00 = 120 min: 90 min covered (1.5 h at 0.00, cost 36.00), 30 min billed 0.5 h × 42.00 = 21.00
    # (tax 4.83); call-out 45.00 (tax 10.35). net 66.00; tax 15.18; total 81.18; cost 36.00 + 12.00 = 48.00
    Case("G66-corrective-allowance-partly-left", ("allowance", "contracts"),
         wo(entries=[at("TE-1", "T31", T0 + "09:00:00+00:00", T0 + "11:00:00+00:00")]),
         tenant=tenant(client={"contracts": [CONTRACT]}),
         allowance_used={"acme:wo:0999:r1": 150},
         lines=(L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
                L("labour", "1.5", "0", "0.00", "23", "0.00", "0.00", cost="36.00", covered_by="ABONO-1",
                  rule="contract:ABONO-1:corrective_allowance 4 h/month"),
                L("labour", "0.5", "42.00", "21.00", "23", "4.83", "25.83", cost="12.00")),
         totals=("66.00", "15.18", "81.18"), cost="48.00", margin="18.00", allowance=(150, 90, 0)),
    # the same event re-processed (redelivery): its recorded 90 min are re-used, the invoice is identical
    Case("G67-allowance-redelivery-reuses-consumption", ("allowance",),
         wo(entries=[at("TE-1", "T31", T0 + "09:00:00+00:00", T0 + "11:00:00+00:00")]),
         tenant=tenant(client={"contracts": [CONTRACT]}),
         allowance_used={"acme:wo:0999:r1": 150, "acme:wo:1001:r1": 90},
         lines=(L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
                L("labour", "1.5", "0", "0.00", "23", "0.00", "0.00", covered_by="ABONO-1"),
                L("labour", "0.5", "42.00", "21.00", "23", "4.83", "25.83")),
         totals=("66.00", "15.18", "81.18"), cost="48.00", allowance=(150, 90, 0)),
    # revision 2 replaces r1's consumption (120 min); others used 60 -> 180 left. r2: 09:00-13:00 = 240 min:
    # 180 covered (3 h, cost 72.00), 60 billed 1 h × 42.00 (tax 9.66) + call-out 45.00 (tax 10.35)
    # net 87.00; tax 20.01; total 107.01; cost 96.00
    Case("G68-allowance-revision-replaces", ("allowance", "revisions"),
         wo(entries=[at("TE-1", "T31", T0 + "09:00:00+00:00", T0 + "13:00:00+00:00")], revision=2),
         tenant=tenant(client={"contracts": [CONTRACT]}),
         allowance_used={"acme:wo:1001:r1": 120, "acme:wo:0999:r1": 60},
         lines=(L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
                L("labour", "3", "0", "0.00", "23", "0.00", "0.00", cost="72.00", covered_by="ABONO-1"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66", cost="24.00")),
         totals=("87.00", "20.01", "107.01"), cost="96.00", allowance=(60, 180, 0),
         invoice_key="acme:wo:1001:r2", invoice_number="ACME-WO-1001-R2"),

    # ------------------------------------------------------------------ 8. quotes (QUOTE_LINES: 980.00, 10 × 45.00, 25.00 @ 6 %)
    # in full at approval: 980.00 (tax 225.40) + 450.00 (tax 103.50) + 25.00 @ 6 % (tax 1.50)
    # net 1455.00; tax 330.40; total 1785.40; cost 0
    Case("G80-quote-fixed-price-at-approval", ("quotes",),
         qt(),
         lines=(L("quote", "1", "980.00", "980.00", "23", "225.40", "1205.40", source="quote_line:QL-1", rule="quote:fixed_price"),
                L("quote", "10", "45.00", "450.00", "23", "103.50", "553.50", source="quote_line:QL-2"),
                L("quote", "1", "25.00", "25.00", "6", "1.50", "26.50", rule="own tax rate")),
         totals=("1455.00", "330.40", "1785.40"), cost="0.00", invoice_number="ACME-QT-Q-12-R1"),
    # deposit 30 % at approval, per quote line: 980.00 × 0.30 = 294.00 (tax 67.62); 450.00 × 0.30 = 135.00
    # (tax 31.05); 25.00 × 0.30 = 7.50 @ 6 % (tax 0.45). net 436.50; tax 99.12; total 535.62
    Case("G81-quote-deposit-at-approval", ("quotes",),
         qt(),
         tenant=tenant(quotes={"deposit_percent": "30"}),
         lines=(L("quote", "1", "294.00", "294.00", "23", "67.62", "361.62", rule="quote:deposit 30%"),
                L("quote", "1", "135.00", "135.00", "23", "31.05", "166.05"),
                L("quote", "1", "7.50", "7.50", "6", "0.45", "7.95")),
         totals=("436.50", "99.12", "535.62")),
    # balance with the work order: 980 - 294 = 686.00 (tax 157.78); 450 - 135 = 315.00 (tax 72.45);
    # 25.00 - 7.50 = 17.50 @ 6 % (tax 1.05); extra part outside the quote 1 × 12.00 (tax 2.76).
    # the 2 h of labour are inside the quote: cost only (48.00). No call-out.
    # net 1030.50; tax 234.04; total 1264.54; cost 48.00 + 10.00 = 58.00; margin 972.50
    Case("G82-quote-balance-on-completion-plus-extras", ("quotes", "cost"),
         wo(entries=[dur("TE-1", "T31", 120)], parts=[part("P-1", "1", cost="10.00", outside_quote=True)], quote_id="Q-12"),
         tenant=tenant(quotes={"deposit_percent": "30"}),
         quote=qt(),
         lines=(L("quote", "1", "686.00", "686.00", "23", "157.78", "843.78", rule="quote:balance after 30% deposit"),
                L("quote", "1", "315.00", "315.00", "23", "72.45", "387.45"),
                L("quote", "1", "17.50", "17.50", "6", "1.05", "18.55"),
                L("part", "1", "12.00", "12.00", "23", "2.76", "14.76", cost="10.00")),
         totals=("1030.50", "234.04", "1264.54"), cost="58.00", margin="972.50"),
    # invoice_at completion: the approval itself is not billed
    Case("G83-quote-billed-on-completion-approval", ("quotes", "not_billable"),
         qt(),
         tenant=tenant(quotes={"invoice_at": "completion"}),
         not_billable="billed_on_completion"),
    # ... and the work order bills the quote lines (1455.00, tax 330.40) + 1 h extra labour (42.00, tax 9.66)
    # net 1497.00; tax 340.06; total 1837.06; cost 24.00
    Case("G84-quote-at-completion-with-extra-labour", ("quotes",),
         wo(entries=[dur("TE-1", "T31", 60, outside_quote=True)], quote_id="Q-12"),
         tenant=tenant(quotes={"invoice_at": "completion"}),
         quote=qt(),
         lines=(L("quote", "1", "980.00", "980.00", "23", "225.40", "1205.40"),
                L("quote", "10", "45.00", "450.00", "23", "103.50", "553.50"),
                L("quote", "1", "25.00", "25.00", "6", "1.50", "26.50"),
                L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66")),
         totals=("1497.00", "340.06", "1837.06"), cost="24.00"),
    # quote invoiced in full at approval: the work order bills only its extra (parking 6.50, tax 1.495 -> 1.50);
    # its 2 h inside the quote are cost only (48.00). cost 54.50; margin -48.00
    Case("G85-quote-invoiced-at-approval-work-order-extras-only", ("quotes", "cost"),
         wo(entries=[dur("TE-1", "T31", 120)], expenses=[expense("E-1", "6.50", outside_quote=True)], quote_id="Q-12"),
         lines=(L("expense", "1", "6.50", "6.50", "23", "1.50", "8.00"),),
         totals=("6.50", "1.50", "8.00"), cost="54.50", margin="-48.00"),
    # ... and without extras there is nothing to bill
    Case("G86-quote-work-order-without-extras", ("quotes", "not_billable"),
         wo(entries=[dur("TE-1", "T31", 120)], quote_id="Q-12"),
         not_billable="zero_total", cost="48.00"),
    # balance needed but the approved quote is unknown: an error for the event
    Case("G87-quote-missing-is-an-error", ("quotes", "errors"),
         wo(entries=[dur("TE-1", "T31", 60)], quote_id="Q-12"),
         tenant=tenant(quotes={"deposit_percent": "30"}),
         error_field="data.quote_id"),

    # ------------------------------------------------------------------ 9. tax
    # rates per line type: labour 6 %, part 23 %, expense 13 %, call-out (not listed) the tenant's 23 %
    # call-out 45.00 (tax 10.35); 1 h 42.00 @ 6 % (tax 2.52); part 12.00 (tax 2.76); parking 6.50 @ 13 % (0.845 -> 0.85)
    # net 105.50; tax 16.48; total 121.98
    Case("G90-vat-rate-per-line-type", ("tax",),
         wo(entries=[dur("TE-1", "T31", 60)], parts=[part("P-1", "1", cost="10.00")], expenses=[expense("E-1", "6.50")]),
         tenant=tenant(tax={"rates": {"labour": "6", "part": "23", "expense": "13"}}),
         lines=(L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
                L("labour", "1", "42.00", "42.00", "6", "2.52", "44.52"),
                L("part", "1", "12.00", "12.00", "23", "2.76", "14.76"),
                L("expense", "1", "6.50", "6.50", "13", "0.85", "7.35")),
         totals=("105.50", "16.48", "121.98"), cost="40.50"),
    # EU B2B reverse charge: every line at 0 % with the legal note: 45.00 + 42.00 = 87.00, tax 0.00
    Case("G91-reverse-charge", ("reverse_charge", "tax"),
         wo(entries=[dur("TE-1", "T31", 60)]),
         tenant=tenant(client={"reverse_charge": True, "tax_number": "ESB12345678"},
                       tax={"reverse_charge_note": "Reverse charge - Article 196 Directive 2006/112/EC"}),
         lines=(L("call_out", "1", "45.00", "45.00", "0", "0.00", "45.00"), L("labour", "1", "42.00", "42.00", "0", "0.00", "42.00")),
         totals=("87.00", "0.00", "87.00"), cost="24.00",
         legal_notes=("Reverse charge - Article 196 Directive 2006/112/EC", "Customer VAT number: ESB12345678")),
    # exempt client: 0 % with its legal ground
    Case("G92-client-exemption", ("tax",),
         wo(entries=[dur("TE-1", "T31", 60)]),
         tenant=tenant(client={"tax_exempt": True, "tax_exemption_note": "Isento nos termos do artigo 9.º do CIVA"}),
         lines=(L("call_out", "1", "45.00", "45.00", "0", "0.00", "45.00"), L("labour", "1", "42.00", "42.00", "0", "0.00", "42.00")),
         totals=("87.00", "0.00", "87.00"), legal_notes=("Isento nos termos do artigo 9.º do CIVA",)),
    # tax-inclusive prices (configured rates are gross):
    #   labour 127 -> 135 min = 2.25 h × 42.00 = 94.50 gross; tax 94.50 × 23/123 = 17.6707.. -> 17.67; net 76.83
    #   part cost-plus is net 28.80/kg -> gross 28.80 × 1.23 = 35.424 -> 35.42; 2.5 × 35.42 = 88.55;
    #     tax 88.55 × 23/123 = 16.5581.. -> 16.56; net 71.99
    #   parking 6.50 net -> gross 7.995 -> 8.00; tax 8.00 × 23/123 = 1.4959.. -> 1.50; net 6.50
    # totals: net 76.83 + 71.99 + 6.50 = 155.32; tax 17.67 + 16.56 + 1.50 = 35.73; total 191.05 (= 155.32 + 35.73)
    # cost (127 worked min) 127 × 24.00 / 60 = 50.80 + 60.00 + 6.50 = 117.30; margin 155.32 - 117.30 = 38.02
    Case("G93-tax-inclusive-prices", ("tax_inclusive", "tax"),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 127)], parts=[part("P-1", "2.5", cost="24.00", unit="kg")],
            expenses=[expense("E-1", "6.50")]),
         tenant=tenant(tax={"prices_include_tax": True}),
         lines=(L("labour", "2.25", "42.00", "76.83", "23", "17.67", "94.50"),
                L("part", "2.5", "35.42", "71.99", "23", "16.56", "88.55"),
                L("expense", "1", "8.00", "6.50", "23", "1.50", "8.00")),
         totals=("155.32", "35.73", "191.05"), cost="117.30", margin="38.02", tax_inclusive=True),
    # tax-inclusive tenant, exempt client: the gross rate 42.00 loses its 23 %: 42.00 × 100/123 = 34.146.. -> 34.15
    # 1 h × 34.15 = 34.15, tax 0 (the invoice is tax-exclusive)
    Case("G94-tax-inclusive-price-for-exempt-client", ("tax_inclusive", "tax"),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 60)]),
         tenant=tenant(tax={"prices_include_tax": True},
                       client={"tax_exempt": True, "tax_exemption_note": "Exempt (Article 151)"}),
         lines=(L("labour", "1", "34.15", "34.15", "0", "0.00", "34.15"),),
         totals=("34.15", "0.00", "34.15"), tax_inclusive=False),
    # JPY (0 decimals), VAT 10 %: call-out 3000 (tax 300); 70 -> 75 min = 1.25 h × 4250 = 5312.5 -> 5313
    # (tax 531.3 -> 531); part 333 × 1.20 = 399.6 -> 400/unit, 2.5 × 400 = 1000 (tax 100)
    # net 9313; tax 931; total 10244; cost 70 worked min × 2500 / 60 = 2916.67 -> 2917 + 2.5 × 333 = 832.5 -> 833
    # = 3750; margin 9313 - 3750 = 5563
    Case("G95-jpy-no-decimals", ("currency",),
         wo(entries=[dur("TE-1", "X1", 70)], parts=[part("P-1", "2.5", cost="333", sku="GAS")]),
         tenant=tenant(currency="JPY", vat_percent="10",
                       rate_card={"skills": {"general": {"hourly_rate": "4250", "cost_rate": "2500"}}, "technicians": {},
                                  "call_out_fee": "3000", "travel_hourly_rate": None}),
         lines=(L("call_out", "1", "3000", "3000", "10", "300", "3300"),
                L("labour", "1.25", "4250", "5313", "10", "531", "5844", cost="2917"),
                L("part", "2.5", "400", "1000", "10", "100", "1100", cost="833")),
         totals=("9313", "931", "10244"), cost="3750", margin="5563"),
    # JPY tax-inclusive, 10 %: 1.5 h × 5500 = 8250 gross; tax 8250 × 10/110 = 750; net 7500
    Case("G96-jpy-tax-inclusive", ("currency", "tax_inclusive"),
         wo(kind="preventive", entries=[dur("TE-1", "X1", 90)]),
         tenant=tenant(currency="JPY", vat_percent="10", tax={"prices_include_tax": True},
                       rate_card={"skills": {"general": {"hourly_rate": "5500", "cost_rate": "2500"}}, "technicians": {},
                                  "call_out_fee": None, "travel_hourly_rate": None}),
         lines=(L("labour", "1.5", "5500", "7500", "10", "750", "8250", cost="3750"),),
         totals=("7500", "750", "8250"), cost="3750", margin="3750", tax_inclusive=True),
    # BHD (3 decimals), VAT 10 %: 70 -> 75 min = 1.25 h × 12.500 = 15.625 (tax 1.5625 -> 1.563); total 17.188;
    # cost 70 worked min × 6.000 / 60 = 7.000
    Case("G97-bhd-three-decimals", ("currency",),
         wo(kind="preventive", entries=[dur("TE-1", "X1", 70)]),
         tenant=tenant(currency="BHD", vat_percent="10",
                       rate_card={"skills": {"general": {"hourly_rate": "12.500", "cost_rate": "6.000"}}, "technicians": {}}),
         lines=(L("labour", "1.25", "12.500", "15.625", "10", "1.563", "17.188", cost="7.000"),),
         totals=("15.625", "1.563", "17.188"), cost="7.000"),

    # ------------------------------------------------------------------ 10. discounts
    # client discount labour 10 %, parts 5 %; call-out not discounted:
    #   call-out 45.00 (tax 10.35)
    #   127 -> 135 min = 2.25 h × 42.00 = 94.50 less 10 % = 85.05 (tax 19.5615 -> 19.56)
    #   part 1 × 12.00 less 5 % = 11.40 (tax 2.622 -> 2.62)
    # net 141.45; tax 32.53; total 173.98; cost 127 worked min × 24.00 / 60 = 50.80 + 10.00 = 60.80; margin 80.65
    Case("G100-client-discount-on-the-line", ("discounts", "cost"),
         wo(entries=[dur("TE-1", "T31", 127)], parts=[part("P-1", "1", cost="10.00")]),
         tenant=tenant(client={"discount": {"labour_percent": "10", "parts_percent": "5"}}),
         lines=(L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35", discount="0"),
                L("labour", "2.25", "42.00", "85.05", "23", "19.56", "104.61", discount="10", rule="discount:client 10%"),
                L("part", "1", "12.00", "11.40", "23", "2.62", "14.02", discount="5", rule="discount:client 5%")),
         totals=("141.45", "32.53", "173.98"), cost="60.80", margin="80.65"),

    # ------------------------------------------------------------------ 13. revisions and not billable
    # revision 2 is a new invoice version of the same order: 1 h × 42.00 (preventive)
    Case("G110-revision-new-invoice-version", ("revisions",),
         wo(kind="preventive", entries=[dur("TE-1", "T31", 60)], revision=2),
         lines=(L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66"),),
         totals=("42.00", "9.66", "51.66"), invoice_key="acme:wo:1001:r2", invoice_number="ACME-WO-1001-R2"),
    # only a client-supplied part and a non-billable expense: nothing to bill (cost 8.00 kept)
    Case("G111-zero-total-not-billable", ("not_billable",),
         wo(kind="preventive", parts=[part("P-1", "1", cost="5.00", client_supplied=True)],
            expenses=[expense("E-1", "8.00", description="Fuel", billable=False)]),
         not_billable="zero_total", cost="8.00"),
    # unknown client: an error naming data.client_id
    Case("G112-unknown-client-is-an-error", ("errors",),
         wo(entries=[dur("TE-1", "T31", 60)], client="CLI-NOPE"),
         error_field="data.client_id"),
    # mileage billing needs the distance
    Case("G113-mileage-without-distance-is-an-error", ("errors", "travel"),
         wo(entries=[dur("TE-1", "T31", 25, kind="travel")]),
         tenant=tenant(rate_card={"travel_billing": "mileage", "mileage_rate_per_km": "0.40"}),
         error_field="data.time_entries.0.distance_km"),
]


# --------------------------------------------------------------------------- sequences (state carried over)
_ALLOW = tenant(client={"contracts": [CONTRACT]})
SEQUENCES: list[Sequence] = [
    # allowance 4 h = 240 min a month (contract ABONO-1), consumed in processing order:
    Sequence("S1-allowance-exhaustion-and-monthly-reset", ("allowance", "contracts"), _ALLOW, (
        # WO 2001 on 2026-03-10, 09:00-12:00 = 180 min: all covered (3 h at 0.00); only the call-out is billed
        # 45.00 (tax 10.35); used before 0, consumed 180, left 60
        Step(wo(wo_id="2001", entries=[at("TE-1", "T31", "2026-03-10T09:00:00+00:00", "2026-03-10T12:00:00+00:00")],
                time="2026-03-10T12:30:00+00:00"),
             (L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
              L("labour", "3", "0", "0.00", "23", "0.00", "0.00", cost="72.00", covered_by="ABONO-1")),
             ("45.00", "10.35", "55.35"), (0, 180, 60)),
        # WO 2002 on 2026-03-20, 09:00-11:00 = 120 min: 60 min left -> 1 h covered, 1 h billed × 42.00 (tax 9.66)
        # + call-out 45.00: net 87.00; tax 20.01; allowance exhausted
        Step(wo(wo_id="2002", entries=[at("TE-1", "T31", "2026-03-20T09:00:00+00:00", "2026-03-20T11:00:00+00:00")],
                time="2026-03-20T11:30:00+00:00"),
             (L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
              L("labour", "1", "0", "0.00", "23", "0.00", "0.00", covered_by="ABONO-1"),
              L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66")),
             ("87.00", "20.01", "107.01"), (180, 60, 0)),
        # WO 2003 on 2026-03-25, 90 min: nothing left -> billed 1.5 h × 42.00 = 63.00 (tax 14.49) + 45.00
        Step(wo(wo_id="2003", entries=[at("TE-1", "T31", "2026-03-25T09:00:00+00:00", "2026-03-25T10:30:00+00:00")],
                time="2026-03-25T11:00:00+00:00"),
             (L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
              L("labour", "1.5", "42.00", "63.00", "23", "14.49", "77.49")),
             ("108.00", "24.84", "132.84"), (240, 0, 0)),
        # WO 2002 delivered again (crash/duplicate): its 60 min are re-used, same invoice, no state change
        Step(wo(wo_id="2002", entries=[at("TE-1", "T31", "2026-03-20T09:00:00+00:00", "2026-03-20T11:00:00+00:00")],
                time="2026-03-20T11:30:00+00:00"),
             (L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
              L("labour", "1", "0", "0.00", "23", "0.00", "0.00", covered_by="ABONO-1"),
              L("labour", "1", "42.00", "42.00", "23", "9.66", "51.66")),
             ("87.00", "20.01", "107.01"), (180, 60, 0), writes_state=False),
        # WO 2004 completed 2026-03-31T23:30Z = 2026-04-01 00:30 in Lisbon (WEST): April's allowance, fresh:
        # 120 min all covered; only the call-out 45.00 is billed
        Step(wo(wo_id="2004", entries=[at("TE-1", "T31", "2026-03-31T20:00:00+00:00", "2026-03-31T22:00:00+00:00")],
                time="2026-03-31T23:30:00+00:00"),
             (L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
              L("labour", "2", "0", "0.00", "23", "0.00", "0.00", covered_by="ABONO-1")),
             ("45.00", "10.35", "55.35"), (0, 120, 120)),
    )),
    # revision 2 of a work order replaces its earlier consumption (state carried over)
    Sequence("S2-allowance-revision-replaces-consumption", ("allowance", "revisions"), _ALLOW, (
        # r1: 200 min -> 210 min (rounded) all covered; call-out 45.00
        Step(wo(wo_id="3001", entries=[at("TE-1", "T31", "2026-03-10T09:00:00+00:00", "2026-03-10T12:20:00+00:00")]),
             (L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
              L("labour", "3.5", "0", "0.00", "23", "0.00", "0.00", covered_by="ABONO-1")),
             ("45.00", "10.35", "55.35"), (0, 210, 30)),
        # r2 adds a second hour-long entry: 200 + 60 = 260 min -> 270 min (rounded once for the visit); r1's 210
        # min do not count any more: 240 covered, 30 billed
        # 0.5 h × 42.00 = 21.00 (tax 4.83) + 45.00 (tax 10.35): net 66.00; tax 15.18
        Step(wo(wo_id="3001", revision=2,
                entries=[at("TE-1", "T31", "2026-03-10T09:00:00+00:00", "2026-03-10T12:20:00+00:00"),
                         at("TE-2", "T31", "2026-03-10T13:00:00+00:00", "2026-03-10T14:00:00+00:00")]),
             (L("call_out", "1", "45.00", "45.00", "23", "10.35", "55.35"),
              L("labour", "4", "0", "0.00", "23", "0.00", "0.00", covered_by="ABONO-1", source="time_entry:TE-1,TE-2"),
              L("labour", "0.5", "42.00", "21.00", "23", "4.83", "25.83")),
             ("66.00", "15.18", "81.18"), (0, 240, 0)),
    )),
]
