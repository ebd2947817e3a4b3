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
* ``maintainx:wo:1012:r1``   – acme-fm work order executing quote Q-2026-012 (bills only its extra);
* ``limble:wo:5003:r1`` / ``limble:wo:5003:r2`` – nordic-hvac work order and its revision 2;
* ``erpnext:qt:Q-2026-019:r1`` – acme-fm warranty quote at 0.00 (prices to NotBillable);
* ``maintainx:wo:1042:r1``   – the ONE invalid event: a part with quantity ``"-2"``.

Then, **after** those (so the lines above stay byte-identical), 13 hand-written events of four small
EUR tenants on other billing systems (:data:`SMALL_TENANTS`: ``liffey-fs`` Stripe, ``invicta-mt``
QuickBooks, ``mondego-clima`` InvoiceXpress, ``sotavento-tec`` Moloni): per tenant, corrective work
orders with two technicians, parts with a fractional quantity and a billable expense, for two clients;
``upkeep:sj:PPM-0319:r1``, ``fiix:sj:PPM-0325:r1`` and ``fracttal:sj:PPM-0326:r1`` are preventive
scheduled jobs. All are valid.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

SEED = 20260301
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "broker" / "examples" / "events.ndjson"
ROUTINE_EVENTS = 46

WO = "maintenance.work_order.completed"
SJ = "maintenance.scheduled_job.closed"
QT = "maintenance.quote.approved"

#: A JSON object of an event (envelope, data, time entry, part, ...).
Json = dict[str, Any]


class TenantCfg(TypedDict):
    """What the routine events of a tenant are drawn from."""

    zone: ZoneInfo
    wo_platform: str
    sj_platform: str
    qt_platform: str
    clients: dict[str, list[str]]  # client -> sites
    technicians: dict[str, str]  # technician -> skill
    parts: list[tuple[str, str, str, str, str | None]]  # sku, description, unit, unit_cost, unit_price
    expenses: list[tuple[str, bool]]  # description, billable


TENANTS: dict[str, TenantCfg] = {
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
    """RFC 3339 with the offset, to the second."""
    return dt.isoformat(timespec="seconds")


def local(tenant: str, day: int, hour: int, minute: int) -> datetime:
    """A wall-clock time in March 2026 in the tenant's zone."""
    return datetime(2026, 3, day, hour, minute, tzinfo=TENANTS[tenant]["zone"])


def envelope(
    tenant: str, platform: str, etype: str, doc: str, doc_id: str, revision: int, time: datetime, data: Json
) -> Json:
    """The CloudEvent around ``data`` (id ``<platform>:<doc>:<doc id>:r<revision>``)."""
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


def entry(eid: str, tech: str, start: datetime, minutes: int, **extra: object) -> Json:
    """A clocked time entry of ``minutes`` from ``start`` (``extra``: more fields)."""
    out: Json = {"id": eid, "technician_id": tech, "start": iso(start), "end": iso(start + timedelta(minutes=minutes))}
    out.update(extra)
    return out


# --------------------------------------------------------------------------- special cases
def special_events() -> list[Json]:
    """The hand-written special cases (module docstring), in a fixed order."""
    events: list[Json] = []

    # acme-fm WO 1001: corrective, two technicians (T31 127 min -> 135 min; T32 40 min -> 60 min minimum),
    # 25 min travel, contactor + 2.5 kg refrigerant at cost + 20 %, parking (billable) + lunch (not).
    start = local("acme-fm", 3, 9, 5)
    events.append(
        envelope(
            "acme-fm",
            "maintainx",
            WO,
            "wo",
            "1001",
            1,
            local("acme-fm", 3, 11, 30),
            {
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
                    {
                        "id": "P-1001-1",
                        "sku": "CTR-40A",
                        "description": "Contactor 40A 3P",
                        "quantity": "1",
                        "unit": "un",
                        "unit_cost": "38.50",
                    },
                    {
                        "id": "P-1001-2",
                        "sku": "REF-R410A",
                        "description": "Refrigerant R410A",
                        "quantity": "2.5",
                        "unit": "kg",
                        "unit_cost": "24.00",
                    },
                ],
                "expenses": [
                    {"id": "E-1001-1", "description": "Parking", "amount": "6.50"},
                    {"id": "E-1001-2", "description": "Technician lunch", "amount": "12.00", "billable": False},
                ],
            },
        )
    )

    # acme-fm WO 1007: Saturday night call-out, plumber 85 min -> 90 min, 4 fittings at catalogue price.
    events.append(
        envelope(
            "acme-fm",
            "maintainx",
            WO,
            "wo",
            "1007",
            1,
            local("acme-fm", 14, 23, 20),
            {
                "work_order_id": "1007",
                "kind": "corrective",
                "client_id": "CLI-MRN",
                "site_id": "LIS-MRN-HALL",
                "summary": "Weekend call-out: burst pipe in market hall toilets",
                "time_entries": [entry("TE-1007-1", "T33", local("acme-fm", 14, 21, 40), 85)],
                "parts": [
                    {
                        "id": "P-1007-1",
                        "sku": "FIT-COMP-15",
                        "description": "Compression fitting 15 mm",
                        "quantity": "4",
                        "unit": "un",
                        "unit_cost": "1.90",
                        "unit_price": "3.75",
                    },
                    {
                        "id": "P-1007-2",
                        "sku": "CU-PIPE-15",
                        "description": "Copper pipe 15 mm (client stock)",
                        "quantity": "1.5",
                        "unit": "m",
                        "client_supplied": True,
                    },
                ],
            },
        )
    )

    # nordic-hvac SJ-2026-0311: scheduled PPM, NH-102 115 min (6900 s) -> 120 min, 6 filters, parking + 10 % handling.
    events.append(
        envelope(
            "nordic-hvac",
            "limble",
            SJ,
            "sj",
            "SJ-2026-0311",
            1,
            local("nordic-hvac", 11, 10, 5),
            {
                "scheduled_job_id": "SJ-2026-0311",
                "kind": "preventive",
                "client_id": "CLI-TGO",
                "site_id": "LDN-TGO-B1",
                "contract_ref": "PPM-TGO-2026",
                "summary": "Quarterly PPM – AHU-1 filters and controls",
                "time_entries": [
                    {
                        "id": "TE-0311-1",
                        "technician_id": "NH-102",
                        "start": iso(local("nordic-hvac", 11, 8, 10)),
                        "duration_seconds": 6900,
                    }
                ],
                "parts": [
                    {
                        "id": "P-0311-1",
                        "sku": "FLT-F7-592",
                        "description": "Bag filter F7 592x592",
                        "quantity": "6",
                        "unit": "un",
                        "unit_cost": "5.10",
                        "unit_price": "8.40",
                    },
                ],
                "expenses": [{"id": "E-0311-1", "description": "Parking", "amount": "8.00"}],
            },
        )
    )

    # acme-fm quote Q-2026-012: compressor replacement, 10 h labour, documentation at reduced 6 % VAT.
    events.append(
        envelope(
            "acme-fm",
            "erpnext",
            QT,
            "qt",
            "Q-2026-012",
            1,
            local("acme-fm", 10, 16, 45),
            {
                "quote_id": "Q-2026-012",
                "client_id": "CLI-HAL",
                "site_id": "LIS-HAL-ROOF",
                "summary": "Replace scroll compressor on rooftop chiller C2",
                "lines": [
                    {
                        "id": "QL-012-1",
                        "sku": "CMP-SCROLL-10",
                        "description": "Scroll compressor 10 kW",
                        "quantity": "1",
                        "unit_price": "980.00",
                    },
                    {
                        "id": "QL-012-2",
                        "sku": "SRV-LAB-H",
                        "description": "Technician labour (hour)",
                        "quantity": "10",
                        "unit_price": "45.00",
                    },
                    {
                        "id": "QL-012-3",
                        "description": "Technical documentation booklet",
                        "quantity": "1",
                        "unit_price": "25.00",
                        "tax_rate": "6",
                    },
                ],
            },
        )
    )

    # acme-fm WO 1012 executes quote Q-2026-012, invoiced in full on approval: the work order bills
    # only its extra outside the quote (the refrigerant top-up); its time is inside the quote (cost only).
    events.append(
        envelope(
            "acme-fm",
            "maintainx",
            WO,
            "wo",
            "1012",
            1,
            local("acme-fm", 20, 17, 10),
            {
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
                    {
                        "id": "P-1012-1",
                        "sku": "REF-R410A",
                        "description": "Refrigerant R410A",
                        "quantity": "4.2",
                        "unit": "kg",
                        "unit_cost": "24.00",
                        "outside_quote": True,
                    },
                ],
            },
        )
    )

    # nordic-hvac WO 5003 r1 and its revision 2 (the technician forgot a second visit and a belt).
    r1: Json = {
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
    r2["parts"] = [
        {
            "id": "P-5003-1",
            "sku": "BELT-SPA-1250",
            "description": "V-belt SPA 1250",
            "quantity": "2",
            "unit": "un",
            "unit_cost": "7.80",
        }
    ]
    events.append(envelope("nordic-hvac", "limble", WO, "wo", "5003", 2, local("nordic-hvac", 9, 11, 30), r2))

    # acme-fm warranty quote at zero price -> NotBillable (valid event, no invoice).
    events.append(
        envelope(
            "acme-fm",
            "erpnext",
            QT,
            "qt",
            "Q-2026-019",
            1,
            local("acme-fm", 18, 12, 0),
            {
                "quote_id": "Q-2026-019",
                "client_id": "CLI-CDP",
                "site_id": "LIS-CDP-PLANT",
                "summary": "Warranty replacement of pump seal – no charge",
                "lines": [
                    {
                        "id": "QL-019-1",
                        "sku": "SEAL-PMP-32",
                        "description": "Pump mechanical seal (warranty)",
                        "quantity": "1",
                        "unit_price": "0.00",
                    }
                ],
            },
        )
    )

    # THE invalid event: negative part quantity (fails broker.events.parse_event).
    events.append(
        envelope(
            "acme-fm",
            "maintainx",
            WO,
            "wo",
            "1042",
            1,
            local("acme-fm", 24, 15, 0),
            {
                "work_order_id": "1042",
                "kind": "corrective",
                "client_id": "CLI-CDP",
                "site_id": "LIS-CDP-WARD2",
                "summary": "Ward 2 radiator valve replaced",
                "time_entries": [entry("TE-1042-1", "T33", local("acme-fm", 24, 13, 30), 75)],
                "parts": [
                    {
                        "id": "P-1042-1",
                        "sku": "VLV-BALL-22",
                        "description": "Ball valve 22 mm",
                        "quantity": "-2",
                        "unit": "un",
                        "unit_cost": "9.35",
                    }
                ],
            },
        )
    )
    return events


# --------------------------------------------------------------------------- small tenants (other billing systems)
#: tenant -> (zone, platform); clients, technicians and rates are in broker/examples/config.yaml.
SMALL_TENANTS = {
    "liffey-fs": (ZoneInfo("Europe/Dublin"), "upkeep"),  # Stripe
    "invicta-mt": (ZoneInfo("Europe/Lisbon"), "fiix"),  # QuickBooks Online
    "mondego-clima": (ZoneInfo("Europe/Lisbon"), "infraspeak"),  # InvoiceXpress
    "sotavento-tec": (ZoneInfo("Europe/Lisbon"), "fracttal"),  # Moloni
}


def _part(
    pid: str, sku: str, description: str, quantity: str, unit: str, unit_cost: str, unit_price: str | None = None
) -> Json:
    out: Json = {
        "id": pid,
        "sku": sku,
        "description": description,
        "quantity": quantity,
        "unit": unit,
        "unit_cost": unit_cost,
    }
    if unit_price is not None:
        out["unit_price"] = unit_price
    return out


def _expense(eid: str, description: str, amount: str, billable: bool = True) -> Json:
    out: Json = {"id": eid, "description": description, "amount": amount}
    if not billable:
        out["billable"] = False
    return out


def _small_job(
    tenant: str,
    doc: str,
    doc_id: str,
    day: int,
    client: str,
    site: str,
    summary: str,
    crew: list[tuple[str, int, int, int]],
    parts: list[Json],
    expenses: list[Json],
    done_after: int = 15,
) -> Json:
    """One completed job of a small tenant. ``crew``: ``(technician, start hour, start minute, minutes)``;
    the event is sent ``done_after`` minutes after the last technician finishes."""
    zone, platform = SMALL_TENANTS[tenant]
    entries: list[Json] = []
    end: datetime | None = None
    for n, (tech, hour, minute, minutes) in enumerate(crew, start=1):
        start = datetime(2026, 3, day, hour, minute, tzinfo=zone)
        entries.append(entry(f"TE-{doc_id}-{n}", tech, start, minutes))
        end = max(end or start, start + timedelta(minutes=minutes))
    if end is None:
        raise ValueError(f"{doc_id}: a job needs at least one technician in its crew")
    data: Json = {
        "client_id": client,
        "site_id": site,
        "summary": summary,
        "time_entries": entries,
        "parts": parts,
        "expenses": expenses,
    }
    if doc == "wo":
        data = {"work_order_id": doc_id, "kind": "corrective", **data}
        etype = WO
    else:
        data = {"scheduled_job_id": doc_id, "kind": "preventive", **data}
        etype = SJ
    return envelope(tenant, platform, etype, doc, doc_id, 1, end + timedelta(minutes=done_after), data)


def small_tenant_events() -> list[Json]:
    """The four small tenants' events (no randomness), in time order."""
    events = [
        # liffey-fs (Stripe), Dublin
        _small_job(
            "liffey-fs",
            "wo",
            "3101",
            4,
            "CLI-GCD",
            "DUB-GCD-PLANT",
            "Rooftop condensing unit C1 low on refrigerant – leak brazed, contactor replaced",
            [("LF-01", 9, 10, 135), ("LF-02", 9, 20, 50)],
            [
                _part("P-3101-1", "REF-R32", "Refrigerant R32", "1.8", "kg", "19.50"),
                _part("P-3101-2", "CTR-25A", "Contactor 25A 3P", "1", "un", "31.00"),
            ],
            [
                _expense("E-3101-1", "Parking", "9.00"),
                _expense("E-3101-2", "Technician lunch", "14.50", billable=False),
            ],
        ),
        _small_job(
            "liffey-fs",
            "wo",
            "3102",
            12,
            "CLI-SBN",
            "DUB-SBN-PLANT",
            "Boiler room distribution board tripping – RCBOs and sub-main cable replaced",
            [("LF-02", 13, 5, 95), ("LF-03", 13, 5, 70)],
            [
                _part("P-3102-1", "CBL-NYY-4", "Cable NYY-J 4 mm²", "12.5", "m", "1.35"),
                _part("P-3102-2", "RCBO-32", "RCBO 32A type A", "2", "un", "27.80", "42.00"),
            ],
            [_expense("E-3102-1", "Toll M50", "3.10")],
        ),
        _small_job(
            "liffey-fs",
            "sj",
            "PPM-0319",
            19,
            "CLI-SBN",
            "DUB-SBN-AHU",
            "Quarterly PPM – AHU-2 filters, belts and dampers",
            [("LF-01", 8, 30, 110), ("LF-03", 8, 30, 80)],
            [
                _part("P-0319-1", "FLT-G4-592", "Air filter G4 592x592", "4", "un", "5.60"),
                _part("P-0319-2", "GRS-LITH", "Bearing grease (lithium)", "0.25", "kg", "16.00"),
            ],
            [_expense("E-0319-1", "Parking", "7.50")],
        ),
        # invicta-mt (QuickBooks Online), Porto
        _small_job(
            "invicta-mt",
            "wo",
            "4101",
            5,
            "CLI-HRD",
            "PRT-HRD-KITCHEN",
            "Cozinha: câmara frigorífica sem frio – válvula de expansão substituída",
            [("IM-11", 8, 45, 100), ("IM-13", 8, 50, 55)],
            [
                _part("P-4101-1", "REF-R290", "Refrigerante R290", "0.45", "kg", "38.00"),
                _part("P-4101-2", "VLV-EXP-TX3", "Válvula de expansão TX3", "1", "un", "64.00"),
            ],
            [_expense("E-4101-1", "Portagem A1", "2.35"), _expense("E-4101-2", "Almoço", "11.50", billable=False)],
        ),
        _small_job(
            "invicta-mt",
            "wo",
            "4102",
            10,
            "CLI-CSB",
            "PRT-CSB-GYM",
            "Balneários do pavilhão: fuga na coluna de água quente",
            [("IM-12", 14, 0, 80), ("IM-13", 14, 0, 80)],
            [
                _part("P-4102-1", "TUB-PPR-25", "Tubo PPR 25 mm", "3.5", "m", "2.40"),
                _part("P-4102-2", "VLV-ESF-20", 'Torneira de esfera 3/4"', "2", "un", "8.90"),
            ],
            [_expense("E-4102-1", "Estacionamento", "4.80")],
        ),
        _small_job(
            "invicta-mt",
            "sj",
            "PPM-0325",
            25,
            "CLI-CSB",
            "PRT-CSB-MAIN",
            "Manutenção preventiva trimestral – UTAs e caldeira",
            [("IM-11", 9, 0, 150), ("IM-13", 9, 0, 150)],
            [
                _part("P-0325-1", "FLT-G4-592", "Filtro G4 592x592", "6", "un", "5.20", "8.90"),
                _part("P-0325-2", "QUIM-DESC", "Desincrustante para permutador", "2.5", "l", "7.40"),
            ],
            [],
        ),
        # mondego-clima (InvoiceXpress), Coimbra
        _small_job(
            "mondego-clima",
            "wo",
            "6101",
            3,
            "CLI-QLG",
            "COI-QLG-BOILER",
            "Caldeira em bloqueio – sondas NTC substituídas, circuito atestado com glicol",
            [("MC-21", 10, 0, 145), ("MC-22", 10, 15, 60)],
            [
                _part("P-6101-1", "SENS-NTC-10K", "Sonda NTC 10k", "2", "un", "12.40"),
                _part("P-6101-2", "GLIC-MPG", "Monopropilenoglicol", "2.5", "l", "6.80"),
            ],
            [_expense("E-6101-1", "Estacionamento", "3.60")],
        ),
        _small_job(
            "mondego-clima",
            "wo",
            "6102",
            11,
            "CLI-CAA",
            "COI-CAA-ROOF",
            "Rooftop RT-3 parado – condensador de arranque e carga de refrigerante",
            [("MC-21", 8, 30, 200), ("MC-23", 8, 30, 200)],
            [
                _part("P-6102-1", "REF-R410A", "Refrigerante R410A", "3.2", "kg", "24.00"),
                _part("P-6102-2", "CAP-45-5", "Condensador 45+5 uF", "1", "un", "14.50"),
            ],
            [
                _expense("E-6102-1", "Aluguer de plataforma elevatória", "85.00"),
                _expense("E-6102-2", "Portagem A1", "4.75"),
            ],
        ),
        _small_job(
            "mondego-clima",
            "wo",
            "6103",
            20,
            "CLI-QLG",
            "COI-QLG-WING-B",
            "Ala B: iluminação do corredor – balastros e tubos substituídos por LED",
            [("MC-22", 15, 0, 65), ("MC-23", 15, 10, 40)],
            [
                _part("P-6103-1", "LED-T8-18W", "Tubo LED T8 18 W", "6", "un", "4.90"),
                _part("P-6103-2", "CBL-H07-1.5", "Cabo H07V-K 1,5 mm²", "7.5", "m", "0.48", "0.85"),
            ],
            [_expense("E-6103-1", "Estacionamento", "2.40")],
        ),
        # sotavento-tec (Moloni), Faro
        _small_job(
            "sotavento-tec",
            "wo",
            "7101",
            6,
            "CLI-PFL",
            "FAO-PFL-CHILLER",
            "Chiller da piscina em alarme de baixa pressão – fuga reparada, filtro desidratador substituído",
            [("SV-31", 9, 0, 170), ("SV-32", 9, 0, 120)],
            [
                _part("P-7101-1", "REF-R134A", "Refrigerante R134a", "4.25", "kg", "21.00"),
                _part("P-7101-2", "FLT-DRY-164", "Filtro desidratador 164", "1", "un", "18.60"),
            ],
            [
                _expense("E-7101-1", "Portagem Via do Infante", "6.45"),
                _expense("E-7101-2", "Almoço", "12.00", billable=False),
            ],
        ),
        _small_job(
            "sotavento-tec",
            "wo",
            "7102",
            16,
            "CLI-SRF",
            "FAO-SRF-COLDROOM",
            "Câmara de congelados a -12 °C – ventilador do evaporador substituído",
            [("SV-31", 7, 30, 95), ("SV-33", 7, 30, 95)],
            [
                _part("P-7102-1", "VNT-EC-250", "Ventilador EC 250 mm", "1", "un", "142.00"),
                _part("P-7102-2", "CBL-H07-1.5", "Cabo H07V-K 1,5 mm²", "6.5", "m", "0.52"),
            ],
            [_expense("E-7102-1", "Estacionamento", "1.80")],
        ),
        _small_job(
            "sotavento-tec",
            "sj",
            "PPM-0326",
            26,
            "CLI-SRF",
            "FAO-SRF-COLDROOM",
            "Manutenção preventiva mensal – câmaras frigoríficas",
            [("SV-31", 8, 0, 130), ("SV-33", 8, 0, 75)],
            [_part("P-0326-1", "LIMP-SERP", "Limpa-serpentinas", "1.5", "l", "9.80")],
            [],
        ),
        _small_job(
            "sotavento-tec",
            "wo",
            "7103",
            30,
            "CLI-PFL",
            "FAO-PFL-SPA",
            "Spa: bomba de calor sem arranque – condensador substituído",
            [("SV-32", 11, 0, 60), ("SV-33", 11, 0, 45)],
            [
                _part("P-7103-1", "CAP-35-5", "Condensador 35+5 uF", "1", "un", "12.00"),
                _part("P-7103-2", "TUB-ISOL-19", "Isolamento tubular 19 mm", "2.5", "m", "3.10"),
            ],
            [_expense("E-7103-1", "Portagem Via do Infante", "3.25")],
        ),
    ]
    events.sort(key=lambda e: (datetime.fromisoformat(e["time"]), e["id"]))
    return events


# --------------------------------------------------------------------------- routine events
def _quantity(rng: random.Random, unit: str) -> str:
    """A random quantity: whole units for ``un``, else one decimal."""
    if unit == "un":
        return str(rng.randint(1, 4))
    return str(Decimal(rng.randint(3, 60)) / 10)  # 0.3 .. 6.0 kg / m / l


def _parts(rng: random.Random, cfg: TenantCfg, prefix: str, count: int) -> list[Json]:
    """``count`` random parts of the tenant's catalogue (some client-supplied)."""
    out: list[Json] = []
    for n, (sku, desc, unit, cost, price) in enumerate(rng.sample(cfg["parts"], count), start=1):
        part: Json = {
            "id": f"P-{prefix}-{n}",
            "sku": sku,
            "description": desc,
            "quantity": _quantity(rng, unit),
            "unit": unit,
            "unit_cost": cost,
        }
        if price is not None:
            part["unit_price"] = price
        if rng.random() < 0.08:
            part["client_supplied"] = True
        out.append(part)
    return out


def _expenses(rng: random.Random, cfg: TenantCfg, prefix: str) -> list[Json]:
    """Zero to two random expenses of the tenant's kinds."""
    out: list[Json] = []
    for n in range(1, rng.choice([0, 0, 1, 1, 2]) + 1):
        desc, billable = rng.choice(cfg["expenses"])
        item: Json = {
            "id": f"E-{prefix}-{n}",
            "description": desc,
            "amount": f"{Decimal(rng.randint(150, 2500)) / 100:.2f}",
        }
        if not billable:
            item["billable"] = False
        out.append(item)
    return out


def routine_event(rng: random.Random, tenant: str, day: int, seq: int, next_wo: dict[str, int]) -> Json:
    """One random event of ``tenant`` on ``day``: a quote, a scheduled job or a work order."""
    cfg = TENANTS[tenant]
    client = rng.choice(sorted(cfg["clients"]))
    site = rng.choice(cfg["clients"][client])
    roll = rng.random()
    techs = sorted(cfg["technicians"])
    if roll < 0.12:
        quote_id = f"Q-2026-{100 + seq:03d}" if tenant == "acme-fm" else f"NQ-{700 + seq}"
        lines: list[Json] = []
        for n, (sku, desc, unit, cost, price) in enumerate(rng.sample(cfg["parts"], rng.randint(1, 2)), start=1):
            unit_price = price or f"{Decimal(cost) * Decimal('1.35'):.2f}"
            lines.append(
                {
                    "id": f"QL-{seq}-{n}",
                    "sku": sku,
                    "description": desc,
                    "quantity": _quantity(rng, unit),
                    "unit_price": unit_price,
                }
            )
        lines.append(
            {
                "id": f"QL-{seq}-{len(lines) + 1}",
                "sku": "SRV-LAB-H",
                "description": "Technician labour (hour)",
                "quantity": str(rng.randint(2, 8)),
                "unit_price": "45.00" if tenant == "acme-fm" else "65.00",
            }
        )
        time = local(tenant, day, rng.randint(9, 17), rng.choice([0, 15, 30, 45]))
        return envelope(
            tenant,
            cfg["qt_platform"],
            QT,
            "qt",
            quote_id,
            1,
            time,
            {
                "quote_id": quote_id,
                "client_id": client,
                "site_id": site,
                "lines": lines,
                "summary": "Proposal: " + rng.choice(CORRECTIVE_SUMMARIES).split(" – ")[0].lower(),
            },
        )

    scheduled = roll < 0.32
    preventive_wo = not scheduled and roll < 0.40
    prefix = f"{seq:03d}"
    start = local(tenant, day, rng.randint(7, 14), rng.choice([0, 5, 10, 20, 30, 40, 45, 50]))
    entries: list[Json] = []
    crew = rng.sample(techs, 2 if rng.random() < 0.3 else 1)
    end = start
    for n, tech in enumerate(crew, start=1):
        minutes = rng.randint(25, 300)
        extra: Json = {}
        if minutes > 240:
            extra["break_minutes"] = 30
        if rng.random() < 0.25:
            other = rng.choice(sorted(set(cfg["technicians"].values())))
            extra["skill"] = other
        e = entry(f"TE-{prefix}-{n}", tech, start + timedelta(minutes=5 * (n - 1)), minutes, **extra)
        entries.append(e)
        end = max(end, start + timedelta(minutes=5 * (n - 1) + minutes))
    if rng.random() < 0.3:
        entries.append(
            {
                "id": f"TE-{prefix}-T",
                "technician_id": crew[0],
                "kind": "travel",
                "duration_seconds": rng.randint(10, 50) * 60,
            }
        )
    data: Json = {
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


def build() -> list[Json]:
    """Every demo event, in file order."""
    rng = random.Random(SEED)
    events = special_events()
    next_wo = {"acme-fm": 1101, "nordic-hvac": 5101}  # routine work order ids (specials use lower ids)
    for seq in range(1, ROUTINE_EVENTS + 1):
        tenant = "acme-fm" if seq % 5 in (1, 2, 4) else "nordic-hvac"
        day = 1 + (seq * 31 // (ROUTINE_EVENTS + 1)) % 31
        events.append(routine_event(rng, tenant, day, seq, next_wo))
    events.sort(key=lambda e: (datetime.fromisoformat(e["time"]), e["id"]))
    events += small_tenant_events()  # after the two Xero tenants' events, which stay as they were
    ids = [e["id"] for e in events]
    assert len(ids) == len(set(ids)), "duplicate event ids"
    return events


def main() -> None:
    """Write the events file (``--out``)."""
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
