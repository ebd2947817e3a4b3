"""MaintainX: ``WORK_ORDER_STATUS_CHANGE`` webhooks, hydrated through the REST API.

Sources: MaintainX's OpenAPI (``https://api.getmaintainx.com/v1/openapi.json``; tag
"Subscriptions & Webhooks", ``x-webhooks``, ``/workorders/{id}``), as summarised in the project's
platform notes (``docs/intake.md``, "Platforms").

* **Signature.** Header ``x-maintainx-webhook-body-signature: t=<timestamp>,v1=<hex>``; ``v1`` is
  the hex HMAC-SHA256 of ``"<t>.<raw body>"`` under the subscription's secret
  (``GET /subscriptions/{id}/secret``). MaintainX asks receivers to refuse signatures older than 5
  minutes: ``t`` is checked against the intake's tolerance. The unit of ``t`` is not documented:
  seconds are assumed (the values seen are 10 digits); a 13-digit value is read as milliseconds.
  The second header, ``x-maintainx-webhook-uri-signature``, signs the URI the platform called,
  which a proxy in front of the intake may rewrite: it is not checked.
* **Trigger.** ``newStatus`` ``DONE`` without ``newSubStatus`` (``CANCELED``/``SKIPPED`` are not
  billable); any other status, or another ``type``, is ignored.
* **Hydration.** The payload has no time entries: ``GET /workorders/{id}?expand=parts&expand=
  time_items&expand=expenditures&expand=location`` (100 requests a minute per user).
* **Mapping** (:func:`map_work_order`): ``type`` ``PREVENTIVE`` -> ``maintenance.scheduled_job.closed``,
  anything else -> ``maintenance.work_order.completed`` (``corrective``); the client is the work
  order's extra field ``Client code`` (option ``client_field``), the contract its ``Contract``
  (option ``contract_field``), the site its ``locationId``, the asset its ``assetId``
  (``asset_ids``); time items -> time entries of ``durationTotal`` seconds (MaintainX records
  durations, not clock times); parts at ``unitCost``
  cents, expenditures at ``rowTotal`` cents (divided by 100, exact); ``progress.doneCount`` is the
  revision (a work order completed again after a reopen is revision 2).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from broker.events import show_value
from broker.platforms.base import (
    Adapter,
    Context,
    Ignored,
    Webhook,
    asset_ids,
    bad_signature,
    check_fresh,
    decimal_text,
    equal,
    hex_signature,
    invalid,
    items,
    job_event,
    money_from_cents,
    obj,
    parse_instant,
    required_header,
    text_id,
)

__all__ = ["MaintainX", "event_id", "map_work_order", "signature_header"]

SIGNATURE_HEADER = "x-maintainx-webhook-body-signature"
#: Published limit: 100 requests a minute per user.
REQUESTS_PER_MINUTE = 100
EXPAND = ("parts", "time_items", "expenditures", "location")


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    """The ``x-maintainx-webhook-body-signature`` value MaintainX sends for ``body`` at ``timestamp``."""
    return f"t={timestamp},v1={hex_signature(secret, f'{timestamp}.'.encode() + body)}"


class MaintainX(Adapter):
    """The MaintainX adapter (module docstring)."""

    name = "maintainx"
    requests_per_minute = REQUESTS_PER_MINUTE

    def verify(self, hook: Webhook, secret: bytes, now: float, tolerance: float) -> None:
        value = required_header(hook, SIGNATURE_HEADER)
        parts = dict(item.strip().partition("=")[::2] for item in value.split(","))
        stamp, given = parts.get("t", ""), parts.get("v1", "")
        if not stamp.isdigit() or not given:
            raise bad_signature(f"header {SIGNATURE_HEADER!r}: expected 't=<timestamp>,v1=<hex>', got {value[:80]!r}")
        expected = hex_signature(secret, stamp.encode() + b"." + hook.body)
        if not equal(expected, given.lower()):
            raise bad_signature(f"header {SIGNATURE_HEADER!r}: the signature does not match the body")
        seconds = int(stamp) / 1000 if len(stamp) >= 13 else int(stamp)
        check_fresh(seconds, now, tolerance, f"header {SIGNATURE_HEADER!r}")

    async def events(
        self,
        payload: Any,
        hook: Webhook,  # noqa: ARG002 - the body says it all
        ctx: Context,
        api: Any,
    ) -> list[dict[str, Any]] | Ignored:
        body = obj(payload, "body")
        kind = body.get("type", "WORK_ORDER_STATUS_CHANGE")
        if kind != "WORK_ORDER_STATUS_CHANGE":
            return Ignored(f"webhook type {show_value(kind)} bills nothing")
        status, sub = body.get("newStatus"), body.get("newSubStatus")
        if status != "DONE" or sub:
            return Ignored(f"newStatus {show_value(status)}{f' ({sub})' if sub else ''} is not a completion")
        work_order_id = text_id(body.get("workOrderId"), "workOrderId")
        occurred = parse_instant(body.get("occurredAt"), "occurredAt")
        params = [("expand", name) for name in EXPAND]
        found = obj(await api.get(f"workorders/{work_order_id}", params), f"GET /workorders/{work_order_id}")
        work_order = obj(found.get("workOrder"), "workOrder")
        return [map_work_order(work_order, ctx, occurred, _revision(body))]

    def known_id(self, payload: Any) -> str | None:
        if not isinstance(payload, dict) or payload.get("newStatus") != "DONE" or payload.get("newSubStatus"):
            return None
        work_order_id = payload.get("workOrderId")
        if isinstance(work_order_id, bool) or not isinstance(work_order_id, (int, str)) or work_order_id == "":
            return None
        return event_id(str(work_order_id), _revision(payload))


def _revision(body: dict[str, Any]) -> int:
    """``progress.doneCount`` (1 when absent or not a positive integer)."""
    progress = body.get("progress")
    done = progress.get("doneCount") if isinstance(progress, dict) else None
    return done if isinstance(done, int) and not isinstance(done, bool) and done >= 1 else 1


def event_id(work_order_id: str, revision: int) -> str:
    """The canonical event id of a MaintainX completion: ``maintainx:<work order>:DONE:<doneCount>``."""
    return f"maintainx:{work_order_id}:DONE:{revision}"


def map_work_order(work_order: dict[str, Any], ctx: Context, occurred: datetime, revision: int) -> dict[str, Any]:
    """The canonical event of a completed MaintainX ``workOrder`` (as ``GET /workorders/{id}`` with
    the expansions returns it) that completed at ``occurred``. Raises 422
    :class:`~broker.platforms.base.Rejected` naming a field the mapping needs and cannot read."""
    wo_id = text_id(work_order.get("id"), "workOrder.id")
    extra: dict[str, Any] = work_order["extraFields"] if isinstance(work_order.get("extraFields"), dict) else {}
    client_field = ctx.options.get("client_field", "Client code")
    client_ref = extra.get(client_field)
    if not isinstance(client_ref, str) or not client_ref:
        raise invalid(
            f"field 'workOrder.extraFields.{client_field}': the work order names no client, "
            f"got {show_value(client_ref)}"
        )
    location = work_order.get("locationId")
    site_ref = None if location is None else text_id(location, "workOrder.locationId")
    entries = []
    for index, item in enumerate(items(work_order.get("timeItems", work_order.get("times")), "workOrder.timeItems")):
        seconds = item.get("durationTotal")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise invalid(
                f"field 'workOrder.timeItems[{index}].durationTotal': expected seconds, got {show_value(seconds)}"
            )
        if seconds == 0:
            continue
        user = text_id(item.get("userId"), f"workOrder.timeItems[{index}].userId")
        entries.append({"id": f"time-{index + 1}", "technician_id": ctx.technician(user), "duration_seconds": seconds})
    parts = []
    for index, part in enumerate(items(work_order.get("parts"), "workOrder.parts")):
        where = f"workOrder.parts[{index}]"
        part_id = text_id(part.get("id"), f"{where}.id")
        quantity = decimal_text(part.get("quantityUsed"), f"{where}.quantityUsed")
        if quantity == "0":
            continue
        parts.append(
            {
                "id": part_id,
                "sku": str(part.get("barcode") or part_id),
                "description": str(part.get("name") or f"Part {part_id}"),
                "quantity": quantity,
                "unit": "un",
                "unit_cost": money_from_cents(part.get("unitCost"), f"{where}.unitCost"),
            }
        )
    expenses = [
        {
            "id": f"expense-{index + 1}",
            "description": str(item.get("description") or "Expense"),
            "amount": money_from_cents(item.get("rowTotal"), f"workOrder.expenditures[{index}].rowTotal"),
        }
        for index, item in enumerate(items(work_order.get("expenditures"), "workOrder.expenditures"))
    ]
    data: dict[str, Any] = {
        "revision": revision,
        "client_id": ctx.client(client_ref),
        "site_id": ctx.site(site_ref, "workOrder.locationId"),
        "time_entries": entries,
        "parts": parts,
        "expenses": expenses,
    }
    contract = extra.get(ctx.options.get("contract_field", "Contract"))
    if isinstance(contract, str) and contract:
        data["contract_ref"] = contract
    assets = asset_ids(work_order.get("assetId"))
    if assets:
        data["asset_ids"] = assets
    if isinstance(work_order.get("title"), str):
        data["summary"] = work_order["title"][:200]
    return job_event(
        ctx,
        preventive=work_order.get("type") == "PREVENTIVE",
        job_id=wo_id,
        event_id=event_id(wo_id, revision),
        time=occurred,
        subject=f"work-orders/{wo_id}",
        data=data,
    )
