"""Odoo 17+: an automation rule's "Send Webhook Notification" on ``maintenance.request``.

Sources: ``_run_action_webhook`` in ``odoo/addons/base/models/ir_actions.py`` (odoo/odoo; the
body, no signature), ``addons/maintenance/models/maintenance.py`` (the request's fields), as
summarised in the project's platform notes (``docs/intake.md``, "Platforms").

* **Configuring the webhook.** An automation rule on *Maintenance Request*, trigger "Stage is
  set to" a done stage (or "On save" with the domain ``close_date`` set), action "Send Webhook
  Notification" to ``https://<broker>/webhooks/odoo/<tenant>?token=<secret>``, with the fields
  ``name``, ``close_date``, ``maintenance_type``, ``equipment_id``, ``user_id``, ``duration`` and
  ``schedule_date`` selected.
* **Authentication.** Odoo signs nothing and sends no custom header, so the URL carries the
  tenant's secret (``webhooks.odoo.secret_env``): ``?token=`` is compared with it in constant
  time; a URL without it is refused (401). The secret then authenticates the sender, not the
  body, and it shows wherever the URL is logged (Odoo's automation rule, a proxy's access log):
  give Odoo a secret of its own and rotate it like a password. No timestamp: replay protection is
  the intake's deduplication by event id.
* **Delivery.** Odoo posts ``{"_model", "_id", "_action": "<name>(#<id>)", ...selected fields}``
  (sorted keys, many2one fields as bare ids, empty fields as ``false``) after the commit, once,
  with a 1 s timeout, and only logs a failure: nothing is sent again, so a 503 is lost (pair it
  with a reconciliation of the done requests).
* **Trigger.** ``_model`` ``maintenance.request`` with a ``close_date`` (Odoo sets it when the
  request reaches a done stage); without one (``false``/``null``), or another model, ignored.
* **Mapping** (:func:`map_request`): ``maintenance_type`` ``corrective`` ->
  ``maintenance.work_order.completed`` (corrective), ``preventive`` ->
  ``maintenance.scheduled_job.closed``; the id is ``_id``, the summary ``name``. A maintenance
  request names no customer: its ``equipment_id`` is the reference of both the client and the
  site (``clients`` and ``sites`` map the equipment's id to the tenant's ids), and the asset
  (``asset_ids``: the equipment's id as Odoo numbers it). One time entry for
  the request's technician ``user_id`` (``technician_user_id`` in older versions) of
  ``duration`` hours (a float; read as an exact decimal, times 3600, rounded half up to whole
  seconds), starting at ``schedule_date`` (Odoo's datetimes are naive UTC) when there is one; a
  zero duration is no entry. The event's time is ``close_date`` (a date) at midnight in the
  tenant's time zone; its id ``odoo:maintenance.request:<_id>:<close_date>`` (a request closed
  again on another day is a new event, for the same work order).
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from broker.events import show_value
from broker.platforms.base import (
    Adapter,
    Context,
    Ignored,
    Webhook,
    asset_ids,
    bad_signature,
    decimal_text,
    equal,
    invalid,
    job_event,
    local_to_utc,
    obj,
    parse_instant,
    text_id,
    utc_text,
)

__all__ = ["Odoo", "map_request"]

#: The URL query parameter that carries the tenant's secret.
TOKEN_PARAMETER = "token"
MODEL = "maintenance.request"
KINDS = ("corrective", "preventive")


def _empty(value: Any) -> bool:
    """Odoo writes an empty field as ``false`` (``null`` accepted too)."""
    return value is None or value is False or value == ""


class Odoo(Adapter):
    """The Odoo adapter (module docstring)."""

    name = "odoo"

    def verify(self, hook: Webhook, secret: bytes, now: float, tolerance: float) -> None:  # noqa: ARG002 - unsigned time
        given = hook.query.get(TOKEN_PARAMETER)
        if not given:
            raise bad_signature(
                f"query parameter {TOKEN_PARAMETER!r} is missing: Odoo signs nothing, the webhook's URL must carry "
                "the secret"
            )
        if not equal(secret, given):
            raise bad_signature(f"query parameter {TOKEN_PARAMETER!r}: the token does not match the tenant's secret")

    async def events(
        self,
        payload: Any,
        hook: Webhook,  # noqa: ARG002 - the body says it all
        ctx: Context,
        api: Any,  # noqa: ARG002 - the webhook carries the selected fields
    ) -> list[dict[str, Any]] | Ignored:
        body = obj(payload, "body")
        model = body.get("_model")
        if model != MODEL:
            return Ignored(f"model {show_value(model)} bills nothing")
        if _empty(body.get("close_date")):
            request_id = body.get("_id")
            return Ignored(f"maintenance.request {show_value(request_id)} has no close_date: it is not done")
        return [map_request(body, ctx)]


def map_request(request: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The canonical event of a done ``maintenance.request`` (the webhook's body). Raises 422
    :class:`~broker.platforms.base.Rejected` naming a field the mapping needs and cannot read."""
    request_id = text_id(request.get("_id"), "_id")
    closed = request.get("close_date")
    try:
        day = date.fromisoformat(closed) if isinstance(closed, str) else None
    except ValueError:
        day = None
    if day is None:
        raise invalid(f"field 'close_date': expected a date (YYYY-MM-DD), got {show_value(closed)}")
    kind = request.get("maintenance_type")
    if kind not in KINDS:
        raise invalid(
            f"field 'maintenance_type': expected 'corrective' or 'preventive' (select it in the webhook's fields), "
            f"got {show_value(kind)}"
        )
    equipment = request.get("equipment_id")
    if _empty(equipment):
        raise invalid(
            f"field 'equipment_id': the request names no equipment, which is its client and site; "
            f"got {show_value(equipment)}"
        )
    equipment_ref = text_id(equipment, "equipment_id")
    entries = []
    hours = request.get("duration")
    if not _empty(hours):
        seconds = (Decimal(decimal_text(hours, "duration")) * 3600).quantize(Decimal(1), ROUND_HALF_UP)
        if seconds < 0:
            raise invalid(f"field 'duration': expected hours, got {show_value(hours)}")
        if seconds > 0:
            user_field = "user_id" if "user_id" in request else "technician_user_id"
            user = request.get(user_field)
            if _empty(user):
                raise invalid(f"field {user_field!r}: the request's {hours} h name no technician")
            entry: dict[str, Any] = {
                "id": "time-1",
                "technician_id": ctx.technician(text_id(user, user_field)),
                "duration_seconds": int(seconds),
            }
            start = request.get("schedule_date")
            if not _empty(start):
                entry = {**entry, "start": utc_text(parse_instant(start, "schedule_date", "UTC"))}
            entries.append(entry)
    data: dict[str, Any] = {
        "revision": 1,
        "client_id": ctx.client(equipment_ref),
        "site_id": ctx.site(equipment_ref, "equipment_id"),
        "time_entries": entries,
        "parts": [],
        "expenses": [],
    }
    name = request.get("name")
    if isinstance(name, str) and name:
        data["summary"] = name[:200]
    assets = asset_ids(equipment_ref)
    if assets:
        data["asset_ids"] = assets
    return job_event(
        ctx,
        preventive=kind == "preventive",
        job_id=request_id,
        event_id=f"odoo:{MODEL}:{request_id}:{day.isoformat()}",
        time=local_to_utc(datetime.combine(day, time(0)), ctx.timezone),
        subject=f"maintenance-requests/{request_id}",
        data=data,
    )
