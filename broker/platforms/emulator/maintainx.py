"""MaintainX's API in the platform emulator: ``GET /v1/workorders/{id}`` (with ``expand``) and
``GET /v1/workorders/{id}/costs``; bearer token; 100 requests a minute; errors
``{"errors": [{"message"}]}``. :func:`webhook` builds the signed ``WORK_ORDER_STATUS_CHANGE``."""

from __future__ import annotations

import copy
import json

from broker.platforms.emulator import PlatformApi, sample
from broker.platforms.maintainx import REQUESTS_PER_MINUTE, SIGNATURE_HEADER, signature_header
from connectors.sandbox import Request, Response, Router, json_response

__all__ = ["API", "webhook"]

EXPANSIONS = {"parts": "parts", "time_items": "timeItems", "expenditures": "expenditures", "location": "location"}


class API(PlatformApi):
    """MaintainX ``/v1``: work orders by id (the sample 5550123; :meth:`PlatformApi.put` adds more
    to ``workorders``, keyed by id, in the expanded shape)."""

    name = "maintainx"
    root = "/v1"
    per_minute = REQUESTS_PER_MINUTE

    def load_samples(self) -> None:
        work_order = sample("maintainx", "workorder_5550123_expanded.json")["workOrder"]
        self.put("workorders", str(work_order["id"]), work_order)

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/workorders/{wo_id}/costs", self._costs)
        router.add("GET", "/workorders/{wo_id}", self._work_order)

    def unauthorized(self) -> Response:
        return json_response(401, {"errors": [{"message": "Unauthorized"}]})

    def not_found(self, what: str) -> Response:
        return json_response(404, {"errors": [{"message": f"Not found: {what}"}]})

    def _work_order(self, req: Request, wo_id: str) -> Response:
        found = self.get("workorders", wo_id)
        if found is None:
            return self.not_found(f"work order {wo_id}")
        expanded = set(req.query_lists.get("expand", []))
        unknown = expanded - set(EXPANSIONS)
        if unknown:
            return json_response(400, {"errors": [{"message": f"unknown expand value(s): {sorted(unknown)}"}]})
        work_order = copy.deepcopy(found)
        for name, key in EXPANSIONS.items():  # not expanded: not in the answer
            if name not in expanded:
                work_order.pop(key, None)
        return json_response(200, {"workOrder": work_order})

    def _costs(self, _req: Request, wo_id: str) -> Response:
        found = self.get("workorders", wo_id)
        if found is None:
            return self.not_found(f"work order {wo_id}")
        rows = [*found.get("timeItems", []), *found.get("expenditures", [])]
        rows += [
            {
                "type": "PART",
                "partId": p["id"],
                "quantity": p["quantityUsed"],
                "costPerUnit": p["unitCost"],
                "rowTotal": p["quantityUsed"] * p["unitCost"],
                "description": p.get("name"),
            }
            for p in found.get("parts", [])
        ]
        return json_response(200, {"costs": {"total": sum(int(r["rowTotal"]) for r in rows), "rows": rows}})


def webhook(
    secret: bytes, work_order_id: int, *, timestamp: int, occurred_at: str, done_count: int = 1, status: str = "DONE"
) -> tuple[dict[str, str], bytes]:
    """The headers and body MaintainX sends when work order ``work_order_id`` changes to ``status``."""
    body = json.dumps(
        {
            "workOrderId": work_order_id,
            "orgId": 321,
            "occurredAt": occurred_at,
            "oldStatus": "IN_PROGRESS",
            "newStatus": status,
            "progress": {"inProgressCount": 1, "onHoldCount": 0, "doneCount": done_count},
        },
        separators=(",", ":"),
    ).encode()
    return {"content-type": "application/json", SIGNATURE_HEADER: signature_header(secret, timestamp, body)}, body
