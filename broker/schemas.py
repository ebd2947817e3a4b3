"""JSON Schema export of the contracts (``broker schemas export [--check]``).

Files written to ``schemas/`` (draft 2020-12, generated from the pydantic models):
``maintenance-event`` (any event), one file per event type, ``invoice``, ``not-billable``,
``document-change``, ``delivery-outcome``, ``approval-decision`` and ``tenant-config``; ``intake.openapi.json``, the
OpenAPI document of ``broker ingest`` (:mod:`broker.intake`); and ``asyncapi.json``, the AsyncAPI 3
document of the topics (:mod:`broker.asyncapi`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel


def _schemas() -> dict[str, dict[str, Any]]:
    from broker.approvals import ApprovalDecision
    from broker.config import BrokerConfig
    from broker.events import (
        QuoteApproved,
        QuoteCancelled,
        ScheduledJobClosed,
        WorkOrderCancelled,
        WorkOrderCompleted,
        WorkOrderReopened,
        event_json_schema,
    )
    from connectors.sdk.invoice import DeliveryOutcome, DocumentChange, Invoice, NotBillable

    def model(m: type[BaseModel], title: str) -> dict[str, Any]:
        s = m.model_json_schema()
        s["title"] = title
        return s

    out = {
        "maintenance-event": event_json_schema(),
        "maintenance.work_order.completed": model(WorkOrderCompleted, "maintenance.work_order.completed"),
        "maintenance.scheduled_job.closed": model(ScheduledJobClosed, "maintenance.scheduled_job.closed"),
        "maintenance.quote.approved": model(QuoteApproved, "maintenance.quote.approved"),
        "maintenance.work_order.reopened": model(WorkOrderReopened, "maintenance.work_order.reopened"),
        "maintenance.work_order.cancelled": model(WorkOrderCancelled, "maintenance.work_order.cancelled"),
        "maintenance.quote.cancelled": model(QuoteCancelled, "maintenance.quote.cancelled"),
        "invoice": model(Invoice, "Invoice"),
        "not-billable": model(NotBillable, "NotBillable"),
        "document-change": model(DocumentChange, "DocumentChange"),
        "delivery-outcome": model(DeliveryOutcome, "DeliveryOutcome"),
        "approval-decision": model(ApprovalDecision, "ApprovalDecision"),
        "tenant-config": model(BrokerConfig, "BrokerConfig"),
    }
    out["maintenance-event"]["title"] = "MaintenanceEvent"
    for name, schema in out.items():
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"https://maintenance-billing-broker.invalid/schemas/{name}.schema.json"
    return out


def render() -> dict[str, str]:
    """``{file name: JSON text}`` of every schema and of the intake's OpenAPI document
    (``intake.openapi.json``), deterministic (sorted keys, trailing newline)."""
    from broker.asyncapi import asyncapi_document
    from broker.intake import openapi_document

    out = {f"{name}.schema.json": json.dumps(s, indent=2, sort_keys=True) + "\n" for name, s in _schemas().items()}
    out["intake.openapi.json"] = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    out["asyncapi.json"] = json.dumps(asyncapi_document(), indent=2, sort_keys=True) + "\n"
    return out


def export(directory: Path, check: bool = False) -> list[str]:
    """Write the schemas into ``directory`` (or only compare when ``check``).

    Returns the names of files that were (or, with ``check``, would be) changed, added, or are
    left over from a model that no longer exists.
    """
    directory.mkdir(parents=True, exist_ok=True) if not check else None
    wanted = render()
    changed = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            changed.append(name)
            if not check:
                path.write_text(text, encoding="utf-8")
    if directory.exists():
        for path in directory.glob("*.schema.json"):
            if path.name not in wanted:
                changed.append(path.name)
                if not check:
                    path.unlink()
    return sorted(changed)
