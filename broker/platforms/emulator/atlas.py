"""Atlas CMMS's API in the platform emulator: ``GET /work-orders/{id}``, ``GET /labors/work-order/{id}``,
``GET /part-quantities/work-order/{id}`` and ``GET /additional-costs/work-order/{id}`` at the root of
its API host; bearer token (a JWT in Atlas); 100 requests a minute (Atlas's default per user), its
429 without ``Retry-After``; errors ``{"success": false, "message"}`` (Atlas's ``SuccessResponse``;
the 401's message is assumed).
:func:`webhook` builds the signed ``WORK_ORDER_STATUS_CHANGE`` as Atlas's ``WebhookDispatchService``
sends it."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from broker.platforms.atlas import REQUESTS_PER_MINUTE, STATUS_CHANGE, signature
from broker.platforms.emulator import PlatformApi, sample
from connectors.sandbox import Request, Response, Router, json_response

__all__ = ["API", "webhook"]

#: The lists kept per work order (``collection`` -> API path prefix).
LISTS = {"labors": "labors", "part-quantities": "part-quantities", "additional-costs": "additional-costs"}


class API(PlatformApi):
    """Atlas's API: the sample work order 12345 (the ``changedWorkOrder`` of the sample webhook)
    with its labours, part quantities and additional costs. :meth:`PlatformApi.put` adds more:
    ``work-orders`` keyed by id, and ``labors``, ``part-quantities``, ``additional-costs`` keyed by
    the work order id, each a list."""

    name = "atlas"
    root = ""
    per_minute = REQUESTS_PER_MINUTE

    def load_samples(self) -> None:
        work_order = sample("atlas", "webhook_work_order_status_change.body.json")["changedWorkOrder"]
        wo_id = str(work_order["id"])
        self.put("work-orders", wo_id, work_order)
        self.put("labors", wo_id, sample("atlas", f"labors_work_order_{wo_id}.json"))
        self.put("part-quantities", wo_id, sample("atlas", f"part_quantities_work_order_{wo_id}.json"))
        self.put("additional-costs", wo_id, sample("atlas", f"additional_costs_work_order_{wo_id}.json"))

    def add_routes(self, router: Router) -> None:
        router.add("GET", "/work-orders/{wo_id}", self._work_order)
        for collection, prefix in LISTS.items():
            router.add("GET", f"/{prefix}/work-order/{{wo_id}}", self._lister(collection))

    def unauthorized(self) -> Response:
        return json_response(401, {"success": False, "message": "Expired or invalid JWT token"})

    def not_found(self, what: str) -> Response:  # noqa: ARG002 - Atlas does not say what
        return json_response(404, {"success": False, "message": "Not found"})

    def throttled(self, retry_after: int) -> Response:  # noqa: ARG002 - Atlas's RateLimitFilter gives none
        return json_response(
            429, {"error": "Rate limit exceeded", "message": "Too many requests. Please try again later."}
        )

    def _work_order(self, _req: Request, wo_id: str) -> Response:
        found = self.get("work-orders", wo_id)
        return self.not_found(f"work order {wo_id}") if found is None else json_response(200, found)

    def _lister(self, collection: str) -> Callable[..., Response]:
        def handler(_req: Request, wo_id: str) -> Response:
            if self.get("work-orders", wo_id) is None:  # Atlas looks the work order up first
                return self.not_found(f"work order {wo_id}")
            return json_response(200, self.get(collection, wo_id) or [])

        return handler


def _number(value: Any) -> float:
    """A :class:`~decimal.Decimal` of the sample data as the JSON number Jackson writes for a double
    (the shortest text that reads back the same double)."""
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def webhook(
    secret: bytes,
    work_order_id: int,
    *,
    occurred_at: str,
    changed_work_order: dict[str, Any] | None = None,
    status: str = "COMPLETE",
    previous_status: str = "IN_PROGRESS",
    title: str | None = None,
    event: str = STATUS_CHANGE,
    timestamp_ms: int | None = None,
) -> tuple[dict[str, str], bytes]:
    """The headers and body Atlas sends when work order ``work_order_id`` changes to ``status``:
    ``changed_work_order`` is the work order as the endpoint serializes it (``None``: the endpoint's
    ``serialize`` is off, the body says ``null``); ``timestamp_ms`` (default: now) and the random
    ``X-Webhook-Id`` are not signed."""
    if title is None:
        title = str((changed_work_order or {}).get("title", f"Work order {work_order_id}"))
    body = json.dumps(
        {
            "workOrderId": work_order_id,
            "workOrderTitle": title,
            "previousStatus": previous_status,
            "newStatus": status,
            "changedWorkOrder": changed_work_order,
            "occurredAt": occurred_at,
            "companyId": 7,
        },
        separators=(",", ":"),
        default=_number,
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Webhook-Signature": signature(secret, body),
        "X-Webhook-Timestamp": str(int(time.time() * 1000) if timestamp_ms is None else timestamp_ms),
        "X-Webhook-Id": str(uuid.uuid4()),
        "X-Webhook-Event": event,
    }
    return headers, body
