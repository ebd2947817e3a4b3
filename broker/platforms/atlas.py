"""Atlas CMMS (Grashjs/cmms): ``WORK_ORDER_STATUS_CHANGE`` webhooks, hydrated through the REST API.

Sources: the Atlas CMMS code (``github.com/Grashjs/cmms``, AGPL-3.0; read, nothing copied):
``service/WebhookDispatchService.java`` (headers, signature, delivery), ``service/WorkOrderService.java``
(the payload), ``controller/LaborController.java``, ``PartQuantityController.java``,
``AdditionalCostController.java`` and ``WorkOrderController.java`` (the API paths),
``service/RateLimiterService.java`` (the request limit), the models ``WorkOrder``, ``Labor``,
``PartQuantity``, ``Part`` and ``AdditionalCost``; as summarised in the project's platform notes
(``docs/intake.md``, "Platforms").

* **Signature.** ``X-Webhook-Signature`` is the lower-case hex HMAC-SHA256 of the raw JSON body under
  the webhook endpoint's ``secret``. ``X-Webhook-Timestamp`` (epoch milliseconds) is not signed, so
  it proves nothing and is not checked: replay protection is the intake's deduplication by event id.
  ``X-Webhook-Id`` is a random UUID per send, so it is not used as the event id either.
* **Trigger.** ``X-Webhook-Event`` ``WORK_ORDER_STATUS_CHANGE`` (any other event is ignored; the
  header is not signed, and when it is absent the signed body's shape decides: ``workOrderId`` and
  ``newStatus``) with ``newStatus`` ``COMPLETE``; any other status is ignored. Atlas sends each
  webhook once and never retries (a failed delivery is only logged on its side): a webhook answered
  503 here is lost, so pair Atlas with a reconciliation poll.
* **Hydration.** The body carries the work order itself (``changedWorkOrder``) only when the
  endpoint has ``serialize`` on; otherwise (``null``) ``GET /work-orders/{id}``, and a work order no
  longer ``COMPLETE`` by then is ignored (its next completion sends a new webhook). Then
  ``GET /labors/work-order/{id}``, ``GET /part-quantities/work-order/{id}`` and
  ``GET /additional-costs/work-order/{id}``, with ``Authorization: Bearer <JWT>``. Atlas publishes no
  request limit; recent versions of its code limit each authenticated user to 100 requests a
  minute and 1000 an hour by default (``security.rate-limit.authenticated.*``, which whoever runs
  it may change): the broker keeps to :data:`REQUESTS_PER_MINUTE` = 100 (an assumption;
  ``api.requests_per_minute`` overrides it; the hourly limit is not kept). Atlas's 429 names no
  ``Retry-After``: the client backs off exponentially.
* **Mapping** (:func:`map_work_order`): ``parentPreventiveMaintenance`` set (a work order generated
  by a preventive maintenance schedule) -> ``maintenance.scheduled_job.closed`` (the work order id
  is the ``scheduled_job_id``: one per occurrence), else ``maintenance.work_order.completed``
  (``corrective``); the client is the first of ``customers`` (its id), the site ``location.id``
  (the asset is not used); labours -> time entries starting at ``startedAt`` lasting ``duration``
  seconds, technician ``assignedTo.id`` (labours with ``includeToTotalTime`` false or no duration
  are left out); part quantities -> parts (``part.barcode`` as the SKU, else the part id;
  ``part.name``; ``quantity``; ``part.unit``, else ``un``; ``part.cost`` as the unit cost); additional
  costs with ``includeToTotalCost`` true -> expenses (``cost``). Atlas has no contract field and no
  completion counter: no ``contract_ref``, revision 1. Money (``cost``, JSON doubles) is read from the
  number's text, never through binary floating point, and written with at least two decimals
  (``38.5`` -> ``"38.50"``, ``0.125`` stays ``"0.125"``); only digits beyond the sixth decimal (noise
  of a double) are rounded, half to even. Dates are ISO-8601 text (Spring's default) or epoch
  milliseconds (when Jackson writes dates as numbers); naive ones are read in the tenant's time zone.
  The event id is ``atlas:{workOrderId}:COMPLETE:{completedOn}`` (``occurredAt`` when the work order
  has no ``completedOn``), in UTC: the same completion always has the same id, and a completion
  after a reopen has another.
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
    bad_signature,
    decimal_text,
    equal,
    from_unix,
    hex_signature,
    invalid,
    items,
    job_event,
    money_text,
    obj,
    parse_instant,
    required_header,
    text_id,
    utc_text,
)

__all__ = ["Atlas", "map_work_order", "signature"]

SIGNATURE_HEADER = "x-webhook-signature"
EVENT_HEADER = "x-webhook-event"
STATUS_CHANGE = "WORK_ORDER_STATUS_CHANGE"
COMPLETE = "COMPLETE"
#: Atlas's default limit per authenticated user (``RateLimiterService``); not published: an assumption.
REQUESTS_PER_MINUTE = 100


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Webhook-Signature`` value Atlas sends for ``body``."""
    return hex_signature(secret, body)


def _record_id(value: Any, where: str) -> str:
    """An Atlas id (a ``Long``) as text; 422 unless digits (it goes into API paths)."""
    text = text_id(value, where)
    if not (text.isascii() and text.isdigit()):
        raise invalid(f"field {where!r}: expected a numeric id, got {show_value(value)}")
    return text


def _instant(value: Any, where: str, zone: str) -> datetime:
    """An Atlas date: ISO-8601 text (Spring's default Jackson setting), or epoch milliseconds (when
    dates are written as numbers)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return from_unix(value, where, millis=True)
    return parse_instant(value, where, zone)


class Atlas(Adapter):
    """The Atlas CMMS adapter (module docstring)."""

    name = "atlas"
    requests_per_minute = REQUESTS_PER_MINUTE

    def verify(
        self,
        hook: Webhook,
        secret: bytes,
        now: float,  # noqa: ARG002 - Atlas signs no timestamp
        tolerance: float,  # noqa: ARG002 - Atlas signs no timestamp
    ) -> None:
        given = required_header(hook, SIGNATURE_HEADER)
        if not equal(signature(secret, hook.body), given.strip().lower()):
            raise bad_signature(f"header {SIGNATURE_HEADER!r}: the signature does not match the body")

    async def events(self, payload: Any, hook: Webhook, ctx: Context, api: Any) -> list[dict[str, Any]] | Ignored:
        body = obj(payload, "body")
        event = hook.header(EVENT_HEADER)
        if event is not None and event != STATUS_CHANGE:
            return Ignored(f"webhook event {show_value(event)} bills nothing")
        if event is None and not ("workOrderId" in body and "newStatus" in body):
            return Ignored("the body is not a work order status change (no workOrderId and newStatus)")
        status = body.get("newStatus")
        if status != COMPLETE:
            return Ignored(f"newStatus {show_value(status)} is not a completion")
        wo_id = _record_id(body.get("workOrderId"), "workOrderId")
        occurred = _instant(body.get("occurredAt"), "occurredAt", ctx.timezone)
        if body.get("changedWorkOrder") is not None:
            work_order, where = obj(body["changedWorkOrder"], "changedWorkOrder"), "changedWorkOrder"
        else:  # the endpoint does not serialize the work order
            where = f"GET /work-orders/{wo_id}"
            work_order = obj(await api.get(f"work-orders/{wo_id}"), where)
            if work_order.get("status") != COMPLETE:
                return Ignored(
                    f"work order {wo_id} is no longer complete (status {show_value(work_order.get('status'))})"
                )
        if text_id(work_order.get("id"), f"{where}.id") != wo_id:
            raise invalid(f"field '{where}.id': {show_value(work_order.get('id'))} is not workOrderId {wo_id}")
        labors = items(await api.get(f"labors/work-order/{wo_id}"), f"GET /labors/work-order/{wo_id}")
        parts = items(await api.get(f"part-quantities/work-order/{wo_id}"), f"GET /part-quantities/work-order/{wo_id}")
        costs = items(
            await api.get(f"additional-costs/work-order/{wo_id}"), f"GET /additional-costs/work-order/{wo_id}"
        )
        return [map_work_order(work_order, labors, parts, costs, ctx, occurred, where=where)]


def map_work_order(
    work_order: dict[str, Any],
    labors: list[dict[str, Any]],
    parts: list[dict[str, Any]],
    costs: list[dict[str, Any]],
    ctx: Context,
    occurred: datetime,
    *,
    where: str = "workOrder",
) -> dict[str, Any]:
    """The canonical event of a completed Atlas work order (``changedWorkOrder`` or
    ``GET /work-orders/{id}``; ``where`` names it in errors) with its ``labors``, part quantities
    (``parts``) and additional ``costs`` as the API lists them; ``occurred``: the webhook's
    ``occurredAt`` (the time when the work order has no ``completedOn``). Raises 422
    :class:`~broker.platforms.base.Rejected` naming a field the mapping needs and cannot read."""
    wo_id = text_id(work_order.get("id"), f"{where}.id")
    customers = items(work_order.get("customers"), f"{where}.customers")
    if not customers:
        raise invalid(f"field '{where}.customers': the work order names no customer, got []")
    client_ref = text_id(customers[0].get("id"), f"{where}.customers[0].id")
    location = work_order.get("location")
    site_ref = None
    if location is not None:
        site_ref = text_id(obj(location, f"{where}.location").get("id"), f"{where}.location.id")
    completed_on = work_order.get("completedOn")
    completed = occurred if completed_on is None else _instant(completed_on, f"{where}.completedOn", ctx.timezone)
    data: dict[str, Any] = {
        "revision": 1,
        "client_id": ctx.client(client_ref),
        "site_id": ctx.site(site_ref, f"{where}.location.id"),
        "time_entries": _time_entries(labors, ctx),
        "parts": _parts(parts),
        "expenses": _expenses(costs),
    }
    if isinstance(work_order.get("title"), str):
        data["summary"] = work_order["title"][:200]
    return job_event(
        ctx,
        preventive=work_order.get("parentPreventiveMaintenance") is not None,
        job_id=wo_id,
        event_id=f"atlas:{wo_id}:{COMPLETE}:{utc_text(completed)}",
        time=completed,
        subject=f"work-orders/{wo_id}",
        data=data,
    )


def _time_entries(labors: list[dict[str, Any]], ctx: Context) -> list[dict[str, Any]]:
    entries = []
    for index, labor in enumerate(labors):
        where = f"labors[{index}]"
        if labor.get("includeToTotalTime") is False:
            continue
        seconds = labor.get("duration")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise invalid(f"field '{where}.duration': expected seconds, got {show_value(seconds)}")
        if seconds == 0:
            continue
        assigned = obj(labor.get("assignedTo"), f"{where}.assignedTo")
        entry: dict[str, Any] = {
            "id": text_id(labor.get("id"), f"{where}.id"),
            "technician_id": ctx.technician(text_id(assigned.get("id"), f"{where}.assignedTo.id")),
        }
        if labor.get("startedAt") is not None:
            entry["start"] = utc_text(_instant(labor["startedAt"], f"{where}.startedAt", ctx.timezone))
        entry["duration_seconds"] = seconds
        entries.append(entry)
    return entries


def _parts(quantities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    parts = []
    for index, line in enumerate(quantities):
        where = f"partQuantities[{index}]"
        quantity = decimal_text(line.get("quantity"), f"{where}.quantity")
        if quantity == "0":
            continue
        part = obj(line.get("part"), f"{where}.part")
        part_id = text_id(part.get("id"), f"{where}.part.id")
        parts.append(
            {
                "id": text_id(line.get("id"), f"{where}.id"),
                "sku": str(part.get("barcode") or part_id),
                "description": str(part.get("name") or f"Part {part_id}"),
                "quantity": quantity,
                "unit": str(part.get("unit") or "un"),
                "unit_cost": money_text(part.get("cost"), f"{where}.part.cost"),
            }
        )
    return parts


def _expenses(costs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    expenses = []
    for index, cost in enumerate(costs):
        where = f"additionalCosts[{index}]"
        if cost.get("includeToTotalCost") is not True:
            continue
        category = cost.get("category")
        label = category.get("name") if isinstance(category, dict) else None
        expenses.append(
            {
                "id": text_id(cost.get("id"), f"{where}.id"),
                "description": str(cost.get("description") or label or "Expense"),
                "amount": money_text(cost.get("cost"), f"{where}.cost"),
            }
        )
    return expenses
