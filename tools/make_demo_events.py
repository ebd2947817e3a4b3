#!/usr/bin/env python3
"""Write ``broker/examples/events.ndjson``: the demo's maintenance CloudEvents for March 2026.

Deterministic: hand-written special cases plus routine events drawn from ``random.Random(SEED)``;
running it again rewrites the file byte for byte. Usage::

    python tools/make_demo_events.py [--out broker/examples/events.ndjson]

Tenants and clients are those of ``broker/examples/config.yaml``. Event ids are
``<platform>:<doc>:<document id>:r<revision>`` (``maintainx:wo:1001:r1``), so they are unique and
say what they are. Special cases (their totals are checked by hand in ``tests/test_pricing.py``):

* ``maintainx:wo:1001:r1``   – acme-fm corrective repair, two technicians, travel, 2.5 kg refrigerant,
  billable + non-billable expense;
* ``maintainx:wo:1007:r1``   – acme-fm weekend call-out (Saturday 2026-03-14 night leak);
* ``limble:sj:SJ-2026-0311:r1`` – nordic-hvac scheduled job (``maintenance.scheduled_job.closed``);
* ``erpnext:qt:Q-2026-012:r1`` – acme-fm approved quote, one line at reduced 6 % VAT;
* ``maintainx:wo:1012:r1``   – acme-fm work order executing quote Q-2026-012;
* ``limble:wo:5003:r1`` / ``limble:wo:5003:r2`` – nordic-hvac work order and its revision 2;
* ``erpnext:qt:Q-2026-019:r1`` – acme-fm warranty quote at 0.00 (prices to NotBillable);
* ``maintainx:wo:1042:r1``   – the ONE invalid event: a part with quantity ``"-2"``.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

SEED = 20260301
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "broker" / "examples" / "events.ndjson"
ROUTINE_EVENTS = 46

WO = "maintenance.work_order.completed"
SJ = "maintenance.scheduled_job.closed"
QT = "maintenance.quote.approved"

TENANTS = {
    "acme-fm": {
        "zone": ZoneInfo("Europe/Lisbon"),
        "wo_platform": "maintainx",
        "sj_platform": "infraspeak",
        "qt_platform": "erpnext",
        "clients": {
            "CLI-HAL": ["LIS-HAL-ROOF", "LIS-HAL-KITCHEN"],
            "CLI-MRN": ["LIS-MRN-HALL"],
            "CLI-CDP": ["LIS-CDP-PLANT", "LIS-CDP-WARD2"],
        },
        "technicians": {"T31": "hvac", "T32": "electrical", "T33": "plumbing", "T34": "general"},
        "parts": [
            # sku, description, unit, unit_cost, unit_price (None: cost + markup)
            ("CTR-40A", "Contactor 40A 3P", "un", "38.50", None),
            ("REF-R410A", "Refrigerant R410A", "kg", "24.00", None),
            ("CU-PIPE-15", "Copper pipe 15 mm", "m", "6.80", None),
            ("CBL-H07-2.5", "Cable H07V-K 2.5 mm²", "m", "0.62", "0.95"),
            ("FLT-G4-592", "Air filter G4 592x592", "un", "5.10", "8.40"),
            ("VLV-BALL-22", "Ball valve 22 mm", "un", "9.35", None),
            ("FIT-COMP-15", "Compression fitting 15 mm", "un", "1.90", "3.75"),
            ("SIL-300", "Sanitary silicone 300 ml", "un", "4.20", None),
        ],
        "expenses": [("Parking", True), ("Toll Ponte 25 de Abril", True), ("Fuel", False), ("Technician lunch", False)],
    },
    "nordic-hvac": {
        "zone": ZoneInfo("Europe/London"),
        "wo_platform": "limble",
        "sj_platform": "limble",
        "qt_platform": "limble",
        "clients": {
            "CLI-TGO": ["LDN-TGO-B1", "LDN-TGO-ROOF"],
            "CLI-NCS": ["BRK-NCS-CS2"],
        },
        "technicians": {"NH-101": "hvac", "NH-102": "electrical", "NH-103": "plumbing", "NH-104": "general"},
        "parts": [
            ("REF-R32", "Refrigerant R32", "kg", "18.00", None),
            ("FLT-F7-592", "Bag filter F7 592x592", "un", "14.20", "22.50"),
            ("BELT-SPA-1250", "V-belt SPA 1250", "un", "7.80", None),
            ("CBL-6242Y-2.5", "Twin and earth cable 2.5 mm²", "m", "0.85", None),
            ("CAP-RUN-10", "Run capacitor 10 uF", "un", "6.40", "12.00"),
            ("GLY-PG30", "Propylene glycol 30 %", "l", "3.10", None),
        ],
        "expenses": [("Parking", True), ("Congestion charge", True), ("Fuel", False), ("Subsistence", False)],
    },
}

CORRECTIVE_SUMMARIES = [
    "AHU fan motor tripping – replaced contactor",
    "Chiller low refrigerant alarm – leak found and repaired",
    "Kitchen extract fan not running",
    "Water leak under washbasin",
    "Emergency lighting fault in stairwell",
    "Boiler lockout – ignition electrode replaced",
    "Cold room temperature high",
    "Tripped RCD on lighting circuit",
]
PREVENTIVE_SUMMARIES = [
    "Quarterly PPM – AHU filters and belts",
    "Monthly chiller inspection",
    "Annual emergency lighting test",
    "Legionella flushing and temperature checks",
]


def iso(dt: datetime) -> str:
    return dt.isoformat(timespec="seconds")


def local(tenant: str, day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=TENANTS[tenant]["zone"])


def envelope(tenant: str, platform: str, etype: str, doc: str, doc_id: str, revision: int, time: datetime, data: dict) -> dict:
    subject = {"wo": "work-orders", "sj": "scheduled-jobs", "qt": "quotes"}[doc]
    return {
        "specversion": "1.0",
        "id": f"{platform}:{doc}:{doc_id}:r{revision}",
        "source": f"/platforms/{platform}",
        "type": etype,
        "time": iso(time),
        "subject": f"{subject}/{doc_id}",
        "datacontenttype": "application/json",
        "tenant": tenant,
        "data": data,
    }


def entry(eid: str, tech: str, start: datetime, minutes: int, **extra) -> dict:
    out = {"id": eid, "technician_id": tech, "start": iso(start), "end": iso(start + timedelta(minutes=minutes))}
    out.update(extra)
    return out


# --------------------------------------------------------------------------- special cases
def special_events() -> list[dict]:
    events: list[dict] = []

    # acme-fm WO 1001: corrective, two technicians (T31 127 min -> 135 min; T32 40 min -> 60 min minimum),
    # 25 min travel, contactor + 2.5 kg refrigerant at cost + 20 %, parking (billable) + lunch (not).
    start = local("acme-fm", 3, 9, 5)
    events.append(envelope("acme-fm", "maintainx", WO, "wo", "1001", 1, local("acme-fm", 3, 11, 30), {
        "work_order_id": "1001",
        "kind": "corrective",
        "client_id": "CLI-HAL",
        "site_id": "LIS-HAL-ROOF",
        "summary": "Rooftop chiller C2 tripping – contactor replaced, refrigerant topped up",
        "time_entries": [
            entry("TE-1001-1", "T31", start, 127),
            entry("TE-1001-2", "T32", local("acme-fm", 3, 9, 10), 40),
            {"id": "TE-1001-3", "technician_id": "T31", "kind": "travel", "duration_seconds": 1500},
        ],
        "parts": [
            {"id": "P-1001-1", "sku": "CTR-40A", "description": "Contactor 40A 3P", "quantity": "1", "unit": "un", "unit_cost": "38.50"},
            {"id": "P-1001-2", "sku": "REF-R410A", "description": "Refrigerant R410A", "quantity": "2.5", "unit": "kg", "unit_cost": "24.00"},
        ],
        "expenses": [
            {"id": "E-1001-1", "description": "Parking", "amount": "6.50"},
            {"id": "E-1001-2", "description": "Technician lunch", "amount": "12.00", "billable": False},
        ],
    }))

    # acme-fm WO 1007: Saturday night call-out, plumber 85 min -> 90 min, 4 fittings at catalogue price.
    events.append(envelope("acme-fm", "maintainx", WO, "wo", "1007", 1, local("acme-fm", 14, 23, 20), {
        "work_order_id": "1007",
        "kind": "corrective",
        "client_id": "CLI-MRN",
        "site_id": "LIS-MRN-HALL",
        "summary": "Weekend call-out: burst pipe in market hall toilets",
        "time_entries": [entry("TE-1007-1", "T33", local("acme-fm", 14, 21, 40), 85)],
        "parts": [
            {"id": "P-1007-1", "sku": "FIT-COMP-15", "description": "Compression fitting 15 mm", "quantity": "4", "unit": "un",
             "unit_cost": "1.90", "unit_price": "3.75"},
            {"id": "P-1007-2", "sku": "CU-PIPE-15", "description": "Copper pipe 15 mm (client stock)", "quantity": "1.5", "unit": "m",
             "client_supplied": True},
        ],
    }))

    # nordic-hvac SJ-2026-0311: scheduled PPM, NH-102 115 min (6900 s) -> 120 min, 6 filters, parking + 10 % handling.
    events.append(envelope("nordic-hvac", "limble", SJ, "sj", "SJ-2026-0311", 1, local("nordic-hvac", 11, 10, 5), {
        "scheduled_job_id": "SJ-2026-0311",
        "kind": "preventive",
        "client_id": "CLI-TGO",
        "site_id": "LDN-TGO-B1",
        "contract_ref": "PPM-TGO-2026",
        "summary": "Quarterly PPM – AHU-1 filters and controls",
        "time_entries": [{"id": "TE-0311-1", "technician_id": "NH-102", "start": iso(local("nordic-hvac", 11, 8, 10)),
                          "duration_seconds": 6900}],
        "parts": [
            {"id": "P-0311-1", "sku": "FLT-F7-592", "description": "Bag filter F7 592x592", "quantity": "6", "unit": "un",
             "unit_cost": "5.10", "unit_price": "8.40"},
        ],
        "expenses": [{"id": "E-0311-1", "description": "Parking", "amount": "8.00"}],
    }))

    # acme-fm quote Q-2026-012: compressor replacement, 10 h labour, documentation at reduced 6 % VAT.
    events.append(envelope("acme-fm", "erpnext", QT, "qt", "Q-2026-012", 1, local("acme-fm", 10, 16, 45), {
        "quote_id": "Q-2026-012",
        "client_id": "CLI-HAL",
        "site_id": "LIS-HAL-ROOF",
        "summary": "Replace scroll compressor on rooftop chiller C2",
        "lines": [
            {"id": "QL-012-1", "sku": "CMP-SCROLL-10", "description": "Scroll compressor 10 kW", "quantity": "1", "unit_price": "980.00"},
            {"id": "QL-012-2", "sku": "SRV-LAB-H", "description": "Technician labour (hour)", "quantity": "10", "unit_price": "45.00"},
            {"id": "QL-012-3", "description": "Technical documentation booklet", "quantity": "1", "unit_price": "25.00", "tax_rate": "6"},
        ],
    }))

    # acme-fm WO 1012 executes quote Q-2026-012 (priced as an ordinary work order in issue 2).
    events.append(envelope("acme-fm", "maintainx", WO, "wo", "1012", 1, local("acme-fm", 20, 17, 10), {
        "work_order_id": "1012",
        "kind": "corrective",
        "quote_id": "Q-2026-012",
        "client_id": "CLI-HAL",
        "site_id": "LIS-HAL-ROOF",
        "summary": "Compressor replacement on chiller C2 (quote Q-2026-012)",
        "time_entries": [
            entry("TE-1012-1", "T31", local("acme-fm", 20, 8, 0), 270, break_minutes=30),
            entry("TE-1012-2", "T34", local("acme-fm", 20, 8, 0), 240, break_minutes=30),
            entry("TE-1012-3", "T31", local("acme-fm", 20, 13, 30), 210),
        ],
        "parts": [
            {"id": "P-1012-1", "sku": "REF-R410A", "description": "Refrigerant R410A", "quantity": "4.2", "unit": "kg", "unit_cost": "24.00"},
        ],
    }))

    # nordic-hvac WO 5003 r1 and its revision 2 (the technician forgot a second visit and a belt).
    r1 = {
        "work_order_id": "5003",
        "kind": "corrective",
        "client_id": "CLI-NCS",
        "site_id": "BRK-NCS-CS2",
        "summary": "Cold store evaporator fan noisy",
        "time_entries": [entry("TE-5003-1", "NH-101", local("nordic-hvac", 5, 13, 0), 50)],
        "parts": [],
        "expenses": [{"id": "E-5003-1", "description": "Congestion charge", "amount": "15.00"}],
    }
    events.append(envelope("nordic-hvac", "limble", WO, "wo", "5003", 1, local("nordic-hvac", 5, 14, 0), r1))
    r2 = dict(r1, revision=2, summary="Cold store evaporator fan noisy – belt replaced on second visit")
    r2["time_entries"] = r1["time_entries"] + [
        entry("TE-5003-2", "NH-101", local("nordic-hvac", 6, 9, 0), 70, visit_id="V2"),
        {"id": "TE-5003-3", "technician_id": "NH-101", "kind": "travel", "duration_seconds": 2400, "visit_id": "V2"},
    ]
    r2["parts"] = [{"id": "P-5003-1", "sku": "BELT-SPA-1250", "description": "V-belt SPA 1250", "quantity": "2", "unit": "un",
                    "unit_cost": "7.80"}]
    events.append(envelope("nordic-hvac", "limble", WO, "wo", "5003", 2, local("nordic-hvac", 9, 11, 30), r2))

    # acme-fm warranty quote at zero price -> NotBillable (valid event, no invoice).
    events.append(envelope("acme-fm", "erpnext", QT, "qt", "Q-2026-019", 1, local("acme-fm", 18, 12, 0), {
        "quote_id": "Q-2026-019",
        "client_id": "CLI-CDP",
        "site_id": "LIS-CDP-PLANT",
        "summary": "Warranty replacement of pump seal – no charge",
        "lines": [{"id": "QL-019-1", "sku": "SEAL-PMP-32", "description": "Pump mechanical seal (warranty)", "quantity": "1",
                   "unit_price": "0.00"}],
    }))

    # THE invalid event: negative part quantity (fails broker.events.parse_event).
    events.append(envelope("acme-fm", "maintainx", WO, "wo", "1042", 1, local("acme-fm", 24, 15, 0), {
        "work_order_id": "1042",
        "kind": "corrective",
        "client_id": "CLI-CDP",
        "site_id": "LIS-CDP-WARD2",
        "summary": "Ward 2 radiator valve replaced",
        "time_entries": [entry("TE-1042-1", "T33", local("acme-fm", 24, 13, 30), 75)],
        "parts": [{"id": "P-1042-1", "sku": "VLV-BALL-22", "description": "Ball valve 22 mm", "quantity": "-2", "unit": "un",
                   "unit_cost": "9.35"}],
    }))
    return events


# --------------------------------------------------------------------------- routine events
def _quantity(rng: random.Random, unit: str) -> str:
    if unit == "un":
        return str(rng.randint(1, 4))
    return str(Decimal(rng.randint(3, 60)) / 10)  # 0.3 .. 6.0 kg / m / l


def _parts(rng: random.Random, cfg: dict, prefix: str, count: int) -> list[dict]:
    out = []
    for n, (sku, desc, unit, cost, price) in enumerate(rng.sample(cfg["parts"], count), start=1):
        part = {"id": f"P-{prefix}-{n}", "sku": sku, "description": desc, "quantity": _quantity(rng, unit), "unit": unit,
                "unit_cost": cost}
        if price is not None:
            part["unit_price"] = price
        if rng.random() < 0.08:
            part["client_supplied"] = True
        out.append(part)
    return out


def _expenses(rng: random.Random, cfg: dict, prefix: str) -> list[dict]:
    out = []
    for n in range(1, rng.choice([0, 0, 1, 1, 2]) + 1):
        desc, billable = rng.choice(cfg["expenses"])
        item = {"id": f"E-{prefix}-{n}", "description": desc, "amount": f"{Decimal(rng.randint(150, 2500)) / 100:.2f}"}
        if not billable:
            item["billable"] = False
        out.append(item)
    return out


def routine_event(rng: random.Random, tenant: str, day: int, seq: int, next_wo: dict[str, int]) -> dict:
    cfg = TENANTS[tenant]
    client = rng.choice(sorted(cfg["clients"]))
    site = rng.choice(cfg["clients"][client])
    roll = rng.random()
    techs = sorted(cfg["technicians"])
    if roll < 0.12:
        quote_id = f"Q-2026-{100 + seq:03d}" if tenant == "acme-fm" else f"NQ-{700 + seq}"
        lines = []
        for n, (sku, desc, unit, cost, price) in enumerate(rng.sample(cfg["parts"], rng.randint(1, 2)), start=1):
            unit_price = price or f"{Decimal(cost) * Decimal('1.35'):.2f}"
            lines.append({"id": f"QL-{seq}-{n}", "sku": sku, "description": desc, "quantity": _quantity(rng, unit),
                          "unit_price": unit_price})
        lines.append({"id": f"QL-{seq}-{len(lines) + 1}", "sku": "SRV-LAB-H", "description": "Technician labour (hour)",
                      "quantity": str(rng.randint(2, 8)), "unit_price": "45.00" if tenant == "acme-fm" else "65.00"})
        time = local(tenant, day, rng.randint(9, 17), rng.choice([0, 15, 30, 45]))
        return envelope(tenant, cfg["qt_platform"], QT, "qt", quote_id, 1, time, {
            "quote_id": quote_id, "client_id": client, "site_id": site, "lines": lines,
            "summary": "Proposal: " + rng.choice(CORRECTIVE_SUMMARIES).split(" – ")[0].lower(),
        })

    scheduled = roll < 0.32
    preventive_wo = not scheduled and roll < 0.40
    prefix = f"{seq:03d}"
    start = local(tenant, day, rng.randint(7, 14), rng.choice([0, 5, 10, 20, 30, 40, 45, 50]))
    entries = []
    crew = rng.sample(techs, 2 if rng.random() < 0.3 else 1)
    end = start
    for n, tech in enumerate(crew, start=1):
        minutes = rng.randint(25, 300)
        extra = {}
        if minutes > 240:
            extra["break_minutes"] = 30
        if rng.random() < 0.25:
            other = rng.choice(sorted(set(cfg["technicians"].values())))
            extra["skill"] = other
        e = entry(f"TE-{prefix}-{n}", tech, start + timedelta(minutes=5 * (n - 1)), minutes, **extra)
        entries.append(e)
        end = max(end, start + timedelta(minutes=5 * (n - 1) + minutes))
    if rng.random() < 0.3:
        entries.append({"id": f"TE-{prefix}-T", "technician_id": crew[0], "kind": "travel",
                        "duration_seconds": rng.randint(10, 50) * 60})
    data = {
        "client_id": client,
        "site_id": site,
        "time_entries": entries,
        "parts": _parts(rng, cfg, prefix, rng.randint(0, 3)),
        "expenses": _expenses(rng, cfg, prefix),
        "summary": rng.choice(PREVENTIVE_SUMMARIES if (scheduled or preventive_wo) else CORRECTIVE_SUMMARIES),
    }
    time = end + timedelta(minutes=rng.randint(2, 40))
    if scheduled:
        job_id = f"SJ-2026-{day:02d}-{seq:02d}"
        data = {"scheduled_job_id": job_id, "kind": "preventive", **data}
        if rng.random() < 0.5:
            data["contract_ref"] = f"PPM-{client[4:]}-2026"
        return envelope(tenant, cfg["sj_platform"], SJ, "sj", job_id, 1, time, data)
    wo_id = str(next_wo[tenant])
    next_wo[tenant] += 1
    data = {"work_order_id": wo_id, "kind": "preventive" if preventive_wo else "corrective", **data}
    return envelope(tenant, cfg["wo_platform"], WO, "wo", wo_id, 1, time, data)


def build() -> list[dict]:
    rng = random.Random(SEED)
    events = special_events()
    next_wo = {"acme-fm": 1101, "nordic-hvac": 5101}  # routine work order ids (specials use lower ids)
    for seq in range(1, ROUTINE_EVENTS + 1):
        tenant = "acme-fm" if seq % 5 in (1, 2, 4) else "nordic-hvac"
        day = 1 + (seq * 31 // (ROUTINE_EVENTS + 1)) % 31
        events.append(routine_event(rng, tenant, day, seq, next_wo))
    events.sort(key=lambda e: (datetime.fromisoformat(e["time"]), e["id"]))
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "duplicate event ids"
    return events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    events = build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8", newline="\n") as fh:
        for event in events:
            fh.write(json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {len(events)} events to {args.out}")


if __name__ == "__main__":
    main()
