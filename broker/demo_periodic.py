"""The demo's periodic stage: a monthly-invoiced client, then the economic report of the demo months.

acme-fm's client ``CLI-MON`` (Condomínio Monsanto, invoiced monthly in Portuguese, contract
``AVENCA-2026-MON`` with a 120.00 monthly fee; ``broker/examples/config.yaml``) gets three work
orders in February 2026 and a revision of one. February is over, so the worker closes the period at
its next check (``BROKER_PERIOD_CHECK_SECONDS``, 2 s in the demo) and delivers one invoice with a
section per work order and the fee. The stage prints it next to what Xero holds, then writes
acme-fm's economic report for February and March 2026 (HTML with charts when matplotlib is
installed, else CSV) and prints where.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console

from broker.kafka import publish
from broker.settings import TOPIC_EVENTS

__all__ = ["MONTHLY_CLIENT", "PERIOD_ORDER_KEY", "periodic_events", "run_periodic"]

TENANT = "acme-fm"
MONTHLY_CLIENT = "CLI-MON"
PERIOD_ORDER_KEY = f"{TENANT}:per:{MONTHLY_CLIENT}-2026-02"


def _work_order(wo_id: str, revision: int, day: int, technician: str, minutes: int) -> bytes:
    end = datetime(2026, 2, day, 11, 0, tzinfo=UTC)
    start = end - timedelta(minutes=minutes)
    event = {
        "specversion": "1.0",
        "id": f"demo:wo:{wo_id}:r{revision}",
        "source": "/platforms/demo",
        "type": "maintenance.work_order.completed",
        "time": end.isoformat(),
        "tenant": TENANT,
        "data": {
            "work_order_id": wo_id,
            "revision": revision,
            "kind": "corrective",
            "client_id": MONTHLY_CLIENT,
            "site_id": "LIS-MON-A",
            "asset_ids": [f"ELEV-{day:02d}"],
            "time_entries": [
                {"id": f"TE-{wo_id}", "technician_id": technician, "start": start.isoformat(), "end": end.isoformat()}
            ],
        },
    }
    return json.dumps(event).encode()


def periodic_events() -> list[bytes]:
    """Three work orders of February 2026 for the monthly client, and a revision of the second."""
    return [
        _work_order("MON-201", 1, 4, "T31", 75),
        _work_order("MON-202", 1, 12, "T32", 50),
        _work_order("MON-203", 1, 23, "T31", 130),
        _work_order("MON-202", 2, 12, "T32", 95),
    ]


def run_periodic(
    console: Console,
    *,
    bootstrap: str,
    workdir: Path,
    config_path: Path,
    wait_for: Callable[[int], bool],
    outcomes: Callable[[], list[dict[str, Any]]],
    held_total: Callable[[dict[str, Any]], Decimal | None],
) -> bool:
    """Publish :func:`periodic_events`, wait for the period invoice and write the economic report;
    True when exactly one period invoice was created and Xero holds its total."""
    from broker.config import load_config
    from broker.economics import economic_report, select_documents
    from broker.economics_source import read_priced

    events = periodic_events()
    console.print(
        f"\n[bold]Periodic invoicing[/]: {len(events)} work order events of February 2026 for {MONTHLY_CLIENT} "
        "(invoiced monthly, in Portuguese, with a monthly fee) ..."
    )
    publish(bootstrap, TOPIC_EVENTS, events)
    if not wait_for(1):
        console.print("[red]timed out waiting for the February invoice[/]")
        return False
    mine = [o for o in outcomes() if o["invoice_key"].startswith(PERIOD_ORDER_KEY + ":")]
    created = [o for o in mine if o["outcome"] == "created"]
    ok = len(created) == 1
    for outcome in created:
        held = held_total(outcome)
        console.print(
            f"  {outcome['invoice_key']} -> {outcome.get('external_number')} in {outcome.get('billing_system')}; "
            f"Xero holds total {held}",
            highlight=False,
        )
        ok = ok and held is not None
    config = load_config(config_path)
    tenant = config.tenant(TENANT)
    selection = select_documents(read_priced(bootstrap, TENANT), TENANT, corrections=tenant.corrections)
    report = economic_report(selection.documents, TENANT, tenant, date(2026, 2, 1), date(2026, 3, 31), "client")
    path = _write_report(report, workdir)
    console.print(
        f"  economic report of {TENANT} for February and March 2026 "
        f"({report.total.documents} documents, margin {report.total.margin} EUR) written to {path}",
        highlight=False,
    )
    return ok


def _write_report(report: Any, workdir: Path) -> Path:
    from broker.economics_render import PlottingUnavailableError, to_csv, to_html

    try:
        path = workdir / "economics-acme-fm-2026-02-03.html"
        path.write_text(to_html(report), encoding="utf-8")
    except PlottingUnavailableError:
        path = workdir / "economics-acme-fm-2026-02-03.csv"
        path.write_text(to_csv(report), encoding="utf-8", newline="")
    return path
