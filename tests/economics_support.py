"""The economic report's test scenario: a tenant with two clients, one contract with a monthly fee and a
corrective allowance, and the documents of March and April 2026 priced from events by the pricing
engine (``broker.pricing.price_with_state``, which calls ``price_event``, with the allowance table as a
dict, as the pricing agent chains it). Used by ``tests/test_economics.py`` (pure) and
``tests/test_economics_cli.py`` (``billing.invoices`` on the embedded Kafka, the HTML in Chromium).

Every figure the tests expect is computed by hand in ``tests/test_economics.py``.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from broker.config import Tenant
from broker.events import parse_event
from broker.pricing import price_with_state
from connectors.sdk.invoice import Invoice, NotBillable
from tests.golden.pricing_cases import BASE_TENANT

TENANT_ID = "acme"

TENANT: dict[str, Any] = {
    "name": "Test FM",
    "currency": "EUR",
    "timezone": "Europe/Lisbon",
    "vat_percent": "23",
    "invoice_prefix": "ACME",
    "payment_terms_days": 30,
    "billing": {"system": "xero", "settings": {}},
    "economics": {"target_margin_percent": "40"},
    "clients": {
        "CLI-1": {
            "name": "Hotel Atlântico Lisboa, S.A.",
            "contact_id": "c-1",
            "contracts": [
                {
                    "id": "AB-1",
                    "valid_from": "2026-01-01",
                    "valid_to": "2026-04-15",
                    "sites": ["SITE-1"],
                    "monthly_fee": "150.00",
                    "covers": {"preventive_labour": True, "corrective_hours_per_month": "2"},
                }
            ],
        },
        "CLI-2": {"name": "Escritórios Norte, Lda.", "contact_id": "c-2", "hourly_rate": "40.00"},
    },
    # the golden table's rate card (hvac 42.00/h cost 24.00, electrical 38.00/22.00, general 30.00/16.00,
    # T32 36.00/21.00, call-out 45.00, parts markup 20 %), without a travel rate
    "rate_card": {k: v for k, v in deepcopy(BASE_TENANT["rate_card"]).items() if k != "travel_hourly_rate"},
}


def tenant(**overrides: Any) -> Tenant:
    raw = deepcopy(TENANT)
    raw.update(overrides)
    return Tenant.model_validate(raw)


def entry(eid: str, tech: str, minutes: int, visit: str = "V1") -> dict[str, Any]:
    return {"id": eid, "technician_id": tech, "duration_seconds": minutes * 60, "visit_id": visit}


def event(
    doc_id: str,
    time: str,
    *,
    client: str,
    site: str,
    entries: list[dict[str, Any]],
    parts: tuple[dict[str, Any], ...] = (),
    expenses: tuple[dict[str, Any], ...] = (),
    assets: tuple[str, ...] = (),
    revision: int = 1,
    scheduled: bool = False,
    tenant_id: str = TENANT_ID,
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "client_id": client,
        "site_id": site,
        "revision": revision,
        "time_entries": entries,
        "parts": list(parts),
        "expenses": list(expenses),
        "asset_ids": list(assets),
    }
    if scheduled:
        data["scheduled_job_id"] = doc_id
    else:
        data.update(work_order_id=doc_id, kind="corrective")
    return {
        "specversion": "1.0",
        "id": f"evt-{doc_id}-{revision}",
        "source": "/platforms/test",
        "type": "maintenance.scheduled_job.closed" if scheduled else "maintenance.work_order.completed",
        "time": time,
        "tenant": tenant_id,
        "data": data,
    }


def part(pid: str, quantity: str, unit_cost: str) -> dict[str, Any]:
    return {
        "id": pid,
        "sku": f"SKU-{pid}",
        "description": f"Part {pid}",
        "quantity": quantity,
        "unit": "un",
        "unit_cost": unit_cost,
    }


#: The events in the order the platform sent them (WO 1001 completed, then reopened and completed again).
EVENTS: list[dict[str, Any]] = [
    # March. WO 1001 r1: T31 100 min -> 105 billed, all inside the 120-min allowance (replaced by r2)
    event("1001", "2026-03-05T12:00:00Z", client="CLI-1", site="SITE-1", entries=[entry("TE-1", "T31", 100)],
          parts=(part("P-1", "2", "10.00"),), assets=("CH-01",)),
    # WO 1001 r2: T31 130 min -> 135 billed: 120 covered, 15 billed at 42.00
    event("1001", "2026-03-06T12:00:00Z", client="CLI-1", site="SITE-1", entries=[entry("TE-1", "T31", 130)],
          parts=(part("P-1", "2", "10.00"),), assets=("CH-01",), revision=2),
    # SJ 2001: preventive, covered by the contract: not billable
    event("2001", "2026-03-10T10:00:00Z", client="CLI-1", site="SITE-1", entries=[entry("TE-1", "T32", 50, "2001")],
          assets=("CH-01", "AHU-02"), scheduled=True),
    # WO 3001: CLI-2, two technicians on one visit, a parking
    event("3001", "2026-03-12T10:00:00Z", client="CLI-2", site="SITE-2",
          entries=[entry("TE-1", "T32", 45), entry("TE-2", "T31", 70)],
          expenses=({"id": "E-1", "description": "Parking", "amount": "6.50", "billable": True},), assets=("LIFT-1",)),
    # April. WO 1002: T31 30 min -> the 60-min minimum, covered by April's allowance
    event("1002", "2026-04-07T10:00:00Z", client="CLI-1", site="SITE-1", entries=[entry("TE-1", "T31", 30)],
          assets=("CH-01",)),
    # WO 3002: CLI-2, T31 120 min and a part
    event("3002", "2026-04-20T09:00:00Z", client="CLI-2", site="SITE-2", entries=[entry("TE-1", "T31", 120)],
          parts=(part("P-9", "1", "50.00"),), assets=("LIFT-1",)),
    # May: outside the range
    event("1003", "2026-05-04T10:00:00Z", client="CLI-1", site="SITE-1", entries=[entry("TE-1", "T31", 60)]),
]  # fmt: skip


def priced_documents(
    events: list[dict[str, Any]] | None = None, tenant_id: str = TENANT_ID
) -> list[Invoice | NotBillable]:
    """Price ``events`` (default :data:`EVENTS`) in order, the allowance table chained as the pricing agent does."""
    config = tenant()
    allowances: dict[str, Any] = {}
    out = []
    for raw in EVENTS if events is None else events:
        result = price_with_state(parse_event(raw), tenant_id, config, allowances=allowances, quotes={})
        for table, key, value in result.writes:
            assert table == "corrective-allowance"
            allowances[key] = value
        out.append(result.priced)
    return out
