"""Limble CMMS: task webhooks (``COMPLETE``), every one re-fetched through the API v2.

Sources: Limble's API v2 documentation (its Postman collection "Limble API V2": "Webhooks",
"Securing Webhooks", "Rate limit", the ``Tasks`` routes), as stored in
``HelloMorrisMoss/LimbleConnector`` (``Limble API V2.postman_collection.json`` @30cf76b,
``LimbleConnection/registry.yaml`` @03aee62) and summarised in the project's platform notes
(``docs/intake.md``, "Platforms").

* **Signature.** Headers ``timestamp`` (unix seconds), ``token`` (random) and ``signature``: the
  lower-case hex HMAC-SHA256 of ``timestamp + token`` (the two texts joined) under a key that is the
  hex SHA-256 digest, as its 64 ASCII characters, of the account's *oldest* ``limbleAPI`` key (the
  tenant's configured secret is that API key itself). The timestamp is checked against the intake's
  tolerance. Limble's retries (after 10 min, 1 h, 2 h, 4 h) are assumed to be signed afresh, with
  a new timestamp and token: a retry that kept the first timestamp would be refused as stale.
* **The body is not signed.** Anyone who saw one signed delivery can send other bodies with its
  headers until its timestamp goes stale. So nothing of the body is trusted but the ``taskID``
  (digits only, since it goes into API paths), and the task is always re-fetched: a forged body
  can at most make the broker read, and publish, what Limble's API says of a task.
* **Trigger.** ``category`` ``task`` with ``status`` ``COMPLETE``; any other category or status
  (``CHANGED COMPLETED TASK``, ``LOGGED TIME ON TASK``, …) is ignored (answered 200, which Limble
  takes as done, like its 406). Then the task itself must be complete (``status`` 1) and of a
  billable ``type``: 1 (preventive maintenance) -> ``maintenance.scheduled_job.closed``; 2
  (unplanned work order), 4 (planned work order) and 6 (work request worked directly) ->
  ``maintenance.work_order.completed`` (``corrective``); 5 (cycle count), 7 (minimum part
  threshold), 8 (materials request) and unknown types are ignored.
* **Hydration** (HTTP Basic ``client_id:client_secret``: the tenant's ``api.username`` and secret;
  360 GET requests a minute, and 4000 an hour): ``GET /tasks?tasks={id}`` (a list),
  ``GET /tasks/labor?tasks={id}``, ``GET /tasks/{id}/parts``, ``GET /tasks/{id}/invoices``.
  Limble's 429 gives ``X-RateLimit-*-TTL`` rather than ``Retry-After``: the client backs off
  exponentially.
* **Mapping** (:func:`map_task`): the client is the task's integration field ``meta1`` (option
  ``client_field``), the contract ``meta2`` when not empty (option ``contract_field``), the site
  ``locationID``, the asset ``assetID`` (``asset_ids``; 0 is no asset); labour entries -> time entries
  of ``timeSpent`` seconds by ``userID`` (Limble records durations and a ``dateLogged``, not clock
  times: no start; ``billableTime`` is not used, the broker's rate card prices the time spent); parts at
  ``usedPrice`` (the price when used) with the part id as the SKU and unit ``un`` (the task's parts
  carry no part number nor unit of measure); task invoices -> expenses (``cost``). Money is read from
  the number's text and written with at least two decimals (``38.5`` -> ``"38.50"``), exact up to six.
  The event id is ``limble:{taskID}:COMPLETE:{dateCompleted}`` and its time ``dateCompleted`` (unix
  seconds): a task reopened and completed again has a new id; revision 1.
"""

from __future__ import annotations

import base64
import hashlib
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
    from_unix,
    hex_signature,
    invalid,
    items,
    job_event,
    money_text,
    obj,
    required_header,
    text_id,
)
from connectors.sdk.errors import ConfigError

__all__ = ["Limble", "map_task", "signature"]

TIMESTAMP_HEADER = "timestamp"
TOKEN_HEADER = "token"
SIGNATURE_HEADER = "signature"
#: Published limit of GET requests: 360 a minute (and 4000 an hour).
REQUESTS_PER_MINUTE = 360
#: Task types: 1 preventive maintenance; 2 unplanned work order, 4 planned work order, 6 work request.
PREVENTIVE = 1
CORRECTIVE = (2, 4, 6)
TYPE_NAMES = {
    1: "preventive maintenance",
    2: "unplanned work order",
    4: "planned work order",
    5: "cycle count",
    6: "work request",
    7: "minimum part threshold",
    8: "materials request",
}


def signature(api_key: bytes, timestamp: str, token: str) -> str:
    """The ``signature`` header Limble sends with ``timestamp`` and ``token``, signed with the
    account's oldest ``api_key``: HMAC-SHA256 keyed with the key's hex SHA-256 digest (as text)."""
    key = hashlib.sha256(api_key).hexdigest().encode("ascii")
    return hex_signature(key, (timestamp + token).encode())


def _task_id(value: Any, where: str) -> str:
    """A Limble id as text: a positive integer (or its digits), since it goes into API paths."""
    text = text_id(value, where)
    if not (text.isascii() and text.isdigit()) or int(text) <= 0:
        raise invalid(f"field {where!r}: expected a numeric id, got {show_value(value)}")
    return str(int(text))


class Limble(Adapter):
    """The Limble adapter (module docstring)."""

    name = "limble"
    requests_per_minute = REQUESTS_PER_MINUTE

    def api_headers(self, username: str | None, token: str) -> dict[str, str]:
        """HTTP Basic ``client_id:client_secret`` (``api.username`` and the API secret)."""
        if not username:
            raise ConfigError(
                "webhooks.limble.api.username: the Limble client id is required "
                "(the API takes HTTP Basic client_id:client_secret)"
            )
        return {"Authorization": "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode()}

    def verify(self, hook: Webhook, secret: bytes, now: float, tolerance: float) -> None:
        stamp = required_header(hook, TIMESTAMP_HEADER)
        token = required_header(hook, TOKEN_HEADER)
        given = required_header(hook, SIGNATURE_HEADER)
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
            raise bad_signature(f"header {TIMESTAMP_HEADER!r}: expected unix seconds, got {stamp[:40]!r}")
        if not equal(signature(secret, stamp, token), given.strip().lower()):
            raise bad_signature(f"header {SIGNATURE_HEADER!r}: the signature does not match the timestamp and token")
        check_fresh(int(stamp), now, tolerance, f"header {TIMESTAMP_HEADER!r}")

    async def events(
        self,
        payload: Any,
        hook: Webhook,  # noqa: ARG002 - the signed headers were checked; the body names the task
        ctx: Context,
        api: Any,
    ) -> list[dict[str, Any]] | Ignored:
        body = obj(payload, "body")
        category, status = body.get("category"), body.get("status")
        if category != "task":
            return Ignored(f"category {show_value(category)} bills nothing")
        if status != "COMPLETE":
            return Ignored(f"status {show_value(status)} is not a completion")
        task_id = _task_id(body.get("taskID"), "taskID")
        where = f"GET /tasks?tasks={task_id}"
        found = [t for t in items(await api.get("tasks", {"tasks": task_id}), where) if str(t.get("taskID")) == task_id]
        if not found:
            raise invalid(f"the limble API has no task {task_id} ({where} answered no such task)")
        task = found[0]
        if task.get("status") != 1:
            return Ignored(f"task {task_id} is not complete in Limble (status {show_value(task.get('status'))})")
        kind = task.get("type")
        if kind != PREVENTIVE and kind not in CORRECTIVE:
            name = TYPE_NAMES.get(kind, "unknown") if isinstance(kind, int) else "unknown"
            return Ignored(f"task {task_id} is of type {show_value(kind)} ({name}), which bills nothing")
        where = f"GET /tasks/labor?tasks={task_id}"
        labor = [
            entry
            for entry in items(await api.get("tasks/labor", {"tasks": task_id}), where)
            if str(entry.get("taskID", task_id)) == task_id
        ]
        parts = items(await api.get(f"tasks/{task_id}/parts"), f"GET /tasks/{task_id}/parts")
        invoices = items(await api.get(f"tasks/{task_id}/invoices"), f"GET /tasks/{task_id}/invoices")
        return [map_task(task, labor, parts, invoices, ctx)]


def map_task(
    task: dict[str, Any],
    labor: list[dict[str, Any]],
    parts: list[dict[str, Any]],
    invoices: list[dict[str, Any]],
    ctx: Context,
) -> dict[str, Any]:
    """The canonical event of a completed Limble ``task`` (an item of ``GET /tasks``) with its
    ``labor`` entries, ``parts`` and ``invoices`` as the API lists them. Raises 422
    :class:`~broker.platforms.base.Rejected` naming a field the mapping needs and cannot read."""
    task_id = _task_id(task.get("taskID"), "task.taskID")
    completed_at = task.get("dateCompleted")
    completed = from_unix(completed_at, "task.dateCompleted")
    client_field = ctx.options.get("client_field", "meta1")
    client_ref = task.get(client_field)
    if isinstance(client_ref, int) and not isinstance(client_ref, bool):
        client_ref = str(client_ref)
    if not isinstance(client_ref, str) or not client_ref.strip():
        raise invalid(f"field 'task.{client_field}': the task names no client, got {show_value(client_ref)}")
    location = task.get("locationID")
    site_ref = None if location in (None, 0, "", "0") else text_id(location, "task.locationID")
    entries = []
    for index, item in enumerate(labor):
        seconds = item.get("timeSpent")
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
            raise invalid(f"field 'labor[{index}].timeSpent': expected seconds, got {show_value(seconds)}")
        if seconds == 0:
            continue
        user = text_id(item.get("userID"), f"labor[{index}].userID")
        entries.append({"id": f"time-{index + 1}", "technician_id": ctx.technician(user), "duration_seconds": seconds})
    used = []
    for index, part in enumerate(parts):
        where = f"parts[{index}]"
        quantity = decimal_text(part.get("quantity"), f"{where}.quantity")
        if quantity == "0":
            continue
        part_id = text_id(part.get("partID"), f"{where}.partID")
        used.append(
            {
                "id": part_id,
                "sku": part_id,
                "description": str(part.get("partName") or f"Part {part_id}"),
                "quantity": quantity,
                "unit": "un",
                "unit_cost": money_text(part.get("usedPrice"), f"{where}.usedPrice"),
            }
        )
    expenses = [
        {
            "id": text_id(item.get("invoiceID"), f"invoices[{index}].invoiceID"),
            "description": str(item.get("description") or "Expense"),
            "amount": money_text(item.get("cost"), f"invoices[{index}].cost"),
        }
        for index, item in enumerate(invoices)
    ]
    data: dict[str, Any] = {
        "revision": 1,
        "client_id": ctx.client(client_ref.strip()),
        "site_id": ctx.site(site_ref, "task.locationID"),
        "time_entries": entries,
        "parts": used,
        "expenses": expenses,
    }
    contract = task.get(ctx.options.get("contract_field", "meta2"))
    if isinstance(contract, str) and contract.strip():
        data["contract_ref"] = contract.strip()
    if isinstance(task.get("name"), str):
        data["summary"] = task["name"][:200]
    assets = asset_ids(task.get("assetID"))
    if assets:
        data["asset_ids"] = assets
    return job_event(
        ctx,
        preventive=task.get("type") == PREVENTIVE,
        job_id=task_id,
        event_id=f"limble:{task_id}:COMPLETE:{completed_at}",
        time=completed,
        subject=f"work-orders/{task_id}",
        data=data,
    )
