"""Infraspeak: "work order completed" webhooks, hydrated through the REST API v3.

Sources, as summarised in the project's platform notes (``upstream-platforms.md``
section 1 and the mapping tables of section 11): the API documentation captured in
jadsonmorais/infraspeak ``apidocs/*.md`` (JSON:API documents, ``expanded=``, failure and scheduled
work fields), the Stoplight pages "Throttling" and "Generating a Token" (Bearer personal access
token, 60 requests a minute, 429 with ``Retry-After``), and two third-party receivers:
dvdjms/odooSpeak ``OdooSpeakWorkOrder.js`` (payload and trigger) and Safari94/infraspeak-integration
``WebhookController.java`` (authentication). Infraspeak's own webhook pages could not be read:
what follows marks what is inferred.

* **Authentication.** Infraspeak publishes no signature scheme: a receiver authenticates its
  calls with the ``Authorization: Bearer <token>`` header configured on the webhook subscription
  (inferred from the Spring receiver). The token is the tenant's webhook secret
  (``webhooks.infraspeak.secret_env``), compared in constant time (both sides hashed with SHA-256
  first, so not even its length is revealed). A missing header, another scheme or an empty token
  fails closed (401). Nothing is signed over the body and there is no timestamp: replay protection
  is the intake's deduplication by event id.
* **Trigger.** The body is ``{"data": {"id": "700123", "type": "failures"}}`` (inferred: the
  receiver reads only ``data.id`` and ``data.type``). ``type`` ``failures`` (or ``failure``) is a
  failure (a reactive work order); any other type is a scheduled work (a planned job occurrence),
  as that receiver does. ``data.id`` must be a numeric id (Infraspeak's ids are integers): it goes
  into the API path, so nothing else is accepted (422).
* **Hydration** (always: the body names nothing billable). ``GET /failures/{id}?expanded=events,
  stock.material,location`` or ``GET /works/scheduled/{id}?expanded=events,stock.material,client``
  with the API token (``Authorization: Bearer``), at most 60 requests a minute. A failure whose
  ``status`` (a scheduled work whose ``state``) is not ``COMPLETED`` is ignored (200).
* **Mapping** (:func:`map_failure`, :func:`map_scheduled_work`). A failure is a
  ``maintenance.work_order.completed`` (``work_order_id`` = ``failure_id``, kind ``corrective``); a
  scheduled work a ``maintenance.scheduled_job.closed`` (``scheduled_job_id`` =
  ``schedule_work_id``; its ``visit``, the occurrence's number within its plan ``work_id``, is only
  shown in the summary, "Plan 4410, visit 3: …": the scheduled work's own id already identifies
  the occurrence, so the time entries keep the event's default visit).

  - *Client*: ``client_code`` when present, else ``client_id``, else the ``client`` relationship
    (the included client's ``code``, else its id), through the tenant's ``clients`` map.
  - *Site*: ``local_code``, else ``local_id``, else the ``location`` relationship (the included
    location's ``code``, else its id), through ``sites``; scheduled works name no location in the
    documented fields, so they take ``default_site``.
  - *Asset*: ``entity_id``, the element (Infraspeak's asset) worked on, as ``asset_ids``.
  - *Contract*: the record's attribute named by option ``contract_field`` (default
    ``cost_center_name``, the cost center being Infraspeak's nearest thing to a maintenance
    contract; empty: none). Optional: the broker finds the contract by client and site, this is
    only the reference printed on the invoice (cut to 128 characters).
  - *Labour*: the ``event_registry`` items of ``included`` (all of them: the sample's
    relationship list names five of its six events, and only the six add up to its
    ``manpower_duration``), sorted by ``date``; each operator's ``STARTED``/``RESUMED`` is paired
    with that operator's next ``PAUSED``/``COMPLETED``: a time entry ``<start id>-<stop id>`` with
    ``start`` and ``end`` of technician ``operator_id`` (through ``technicians``). Dates are naive
    local times of the account (``YYYY-MM-DD HH:mm:ss``), read in the tenant's time zone and
    converted to UTC. A second start while the operator's clock runs is ignored (it runs from the
    first); a stop without a start, and a zero-length pair, count nothing; other actions are
    ignored. A start never stopped on a completed record is an error (422 naming the event and
    the operator): the labour cannot be closed without guessing, and billing less than was worked
    without a word is worse than refusing.
  - *Labour without events* (the scheduled work sample includes none): one entry ``manpower`` of
    ``manpower_duration`` (an ISO-8601 duration, :func:`iso_duration_seconds`) for
    ``completed_by_id``, as a duration without clock times (it is a total over every operator, not
    an interval); none when that is zero or absent.
  - *Parts*: each ``stock`` item of ``included`` with the ``material`` of its ``material_id``: id
    = the stock item's id, sku = the material's ``code`` (else ``full_code``, else its id),
    description = ``name``, quantity = ``quantity`` (exact decimal text; 0 is skipped), unit =
    ``units`` (else ``un``), unit cost = the stock item's ``mean_price`` (else the material's),
    rounded half-even to 6 decimals if it has more. The catalogue's ``default_sell_price`` is not
    sent as a unit price: it is not the price agreed with the client, the tenant's rate card
    prices parts.
  - *Expenses*: none (the fields of Infraspeak's Other Costs were not found).
  - *Event*: id ``infraspeak:failures:<id>:COMPLETED:<completed_date>`` (or
    ``infraspeak:scheduled_works:…``; the platform's local date-time with ``T``, so the id does not
    change with the tenant's time-zone setting), time = ``completed_date`` (``complete_date`` for a
    scheduled work without it) in UTC, revision 1. A record completed again after a reopen has a
    new ``completed_date``, hence a new event of revision 1 for the same document, which the
    tenant's ``corrections`` setting decides (amend or reject).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from broker.events import DECIMAL_PLACES, MAX_ID_CHARS, SCHEDULED_JOB_CLOSED, WORK_ORDER_COMPLETED, show_value
from broker.platforms.base import (
    Adapter,
    Context,
    Ignored,
    Rejected,
    Webhook,
    asset_ids,
    bad_signature,
    canonical_event,
    decimal_text,
    equal,
    invalid,
    items,
    obj,
    parse_instant,
    required_header,
    text_id,
    utc_text,
)

__all__ = [
    "FAILURE_EXPANDED",
    "SCHEDULED_EXPANDED",
    "Infraspeak",
    "iso_duration_seconds",
    "map_failure",
    "map_scheduled_work",
]

AUTH_HEADER = "authorization"
#: Published limit: 60 requests a minute (429 with ``Retry-After`` beyond).
REQUESTS_PER_MINUTE = 60
FAILURE_EXPANDED = "events,stock.material,location"
SCHEDULED_EXPANDED = "events,stock.material,client"
FAILURE_TYPES = frozenset({"failures", "failure"})
COMPLETED = "COMPLETED"
STARTS = frozenset({"STARTED", "RESUMED"})
STOPS = frozenset({"PAUSED", "COMPLETED"})

_NUMERIC_ID = re.compile(r"[0-9]{1,18}")
_DURATION = re.compile(
    r"P(?:([0-9]+)Y)?(?:([0-9]+)M)?(?:([0-9]+)W)?(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?"
)


def iso_duration_seconds(value: Any, where: str) -> int:
    """An ISO-8601 duration as Infraspeak writes it (``P0Y0M0DT1H55M0S``) in whole seconds, exactly:
    weeks, days, hours, minutes and seconds (integers). Years and months have no fixed length and
    must be 0. Raises 422 naming ``where``."""
    text = value if isinstance(value, str) else ""
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise invalid(f"field {where!r}: expected an ISO-8601 duration like 'P0Y0M0DT1H55M0S', got {show_value(value)}")
    years, months, weeks, days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    if years or months:
        raise invalid(f"field {where!r}: a duration in years or months has no exact length, got {show_value(value)}")
    return (((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds


class Infraspeak(Adapter):
    """The Infraspeak adapter (module docstring)."""

    name = "infraspeak"
    requests_per_minute = REQUESTS_PER_MINUTE

    def verify(
        self,
        hook: Webhook,
        secret: bytes,
        now: float,  # noqa: ARG002 - no timestamp: replay protection is the intake's deduplication
        tolerance: float,  # noqa: ARG002
    ) -> None:
        value = required_header(hook, AUTH_HEADER)
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if not token:  # the value itself is never shown: it may be a token
            raise bad_signature(f"header {AUTH_HEADER!r}: expected 'Bearer <token>', got no scheme and token")
        if scheme.lower() != "bearer":
            raise bad_signature(
                f"header {AUTH_HEADER!r}: expected 'Bearer <token>', got scheme {show_value(scheme, 20)}"
            )
        if not equal(hashlib.sha256(secret).digest(), hashlib.sha256(token.encode()).digest()):
            raise bad_signature(
                f"header {AUTH_HEADER!r}: the bearer token is not the tenant's Infraspeak webhook token"
            )

    async def events(
        self,
        payload: Any,
        hook: Webhook,  # noqa: ARG002 - the body says it all
        ctx: Context,
        api: Any,
    ) -> list[dict[str, Any]] | Ignored:
        data = obj(obj(payload, "body").get("data"), "data")
        kind = data.get("type")
        if not isinstance(kind, str) or not kind:
            raise invalid(f"field 'data.type': expected the record type ('failures', ...), got {show_value(kind)}")
        record_id = text_id(data.get("id"), "data.id")
        if not _NUMERIC_ID.fullmatch(record_id):
            raise invalid(f"field 'data.id': expected a numeric Infraspeak id, got {show_value(record_id)}")
        if api is None:
            raise Rejected(
                503,
                "unavailable",
                "webhooks.infraspeak.api is not configured: the record cannot be read",
                retry_after=30,
            )
        failure = kind in FAILURE_TYPES
        if failure:
            path, expanded, what, state_field = f"failures/{record_id}", FAILURE_EXPANDED, "failure", "status"
        else:
            path, expanded, what, state_field = (
                f"works/scheduled/{record_id}",
                SCHEDULED_EXPANDED,
                "scheduled work",
                "state",
            )
        document = obj(await api.get(path, {"expanded": expanded}), f"GET /{path}")
        data, attrs, _ = _parts_of(document)
        found = attrs.get("failure_id" if failure else "schedule_work_id", data.get("id"))
        if str(found) != record_id:
            raise invalid(f"GET /{path}: the API answered {what} {show_value(found)}, not {record_id}")
        state = attrs.get(state_field)
        if state != COMPLETED:
            return Ignored(f"{what} {record_id} has {state_field} {show_value(state)}, not COMPLETED")
        return [map_failure(document, ctx) if failure else map_scheduled_work(document, ctx)]


# --------------------------------------------------------------------------- mapping
def map_failure(document: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The canonical event of a completed failure: ``document`` is the JSON:API answer of
    ``GET /failures/{id}?expanded=events,stock.material,location``. Raises 422
    :class:`~broker.platforms.base.Rejected` naming a field the mapping needs and cannot read."""
    data, attrs, included = _parts_of(document)
    failure_id = text_id(attrs.get("failure_id", data.get("id")), "data.attributes.failure_id")
    completed_text, completed = _completed(attrs, ctx, ("completed_date",))
    event_data = _work_data(data, attrs, included, ctx, "failure")
    description = attrs.get("description") or attrs.get("problem_name")
    code = attrs.get("code")
    if isinstance(description, str) and description:
        summary = f"{code}: {description}" if isinstance(code, str) and code else description
        event_data["summary"] = summary[:200]
    event_data["time_entries"] = _labour(included, ctx, "failure")
    event_data["work_order_id"] = failure_id
    event_data["kind"] = "corrective"
    return canonical_event(
        ctx,
        type_=WORK_ORDER_COMPLETED,
        event_id=f"infraspeak:failures:{failure_id}:{COMPLETED}:{completed_text}",
        time=completed,
        subject=f"failures/{failure_id}",
        data=event_data,
    )


def map_scheduled_work(document: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The canonical event of a completed scheduled work: ``document`` is the JSON:API answer of
    ``GET /works/scheduled/{id}?expanded=events,stock.material,client``. Raises 422
    :class:`~broker.platforms.base.Rejected` naming a field the mapping needs and cannot read."""
    data, attrs, included = _parts_of(document)
    job_id = text_id(attrs.get("schedule_work_id", data.get("id")), "data.attributes.schedule_work_id")
    completed_text, completed = _completed(attrs, ctx, ("completed_date", "complete_date"))
    event_data = _work_data(data, attrs, included, ctx, "scheduled work")
    note = attrs.get("observation")
    occurrence = ", ".join(
        f"{label} {value}" for label, value in (("plan", attrs.get("work_id")), ("visit", attrs.get("visit"))) if value
    )
    summary = ": ".join(
        part for part in (occurrence[:1].upper() + occurrence[1:], note) if isinstance(part, str) and part
    )
    if summary:
        event_data["summary"] = summary[:200]
    if any(item.get("type") == "event_registry" for item in included):
        event_data["time_entries"] = _labour(included, ctx, "scheduled work")
    else:
        event_data["time_entries"] = _manpower(attrs, ctx)
    event_data["scheduled_job_id"] = job_id
    return canonical_event(
        ctx,
        type_=SCHEDULED_JOB_CLOSED,
        event_id=f"infraspeak:scheduled_works:{job_id}:{COMPLETED}:{completed_text}",
        time=completed,
        subject=f"works/scheduled/{job_id}",
        data=event_data,
    )


def _parts_of(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """``data``, ``data.attributes`` and ``included`` of a JSON:API document (422 naming what lacks)."""
    data = obj(document.get("data"), "data")
    return data, obj(data.get("attributes"), "data.attributes"), items(document.get("included"), "included")


def _completed(attrs: dict[str, Any], ctx: Context, names: tuple[str, ...]) -> tuple[str, datetime]:
    """The completion date-time: its text as the platform wrote it (``T`` for the space) and as UTC."""
    for name in names:
        value = attrs.get(name)
        if value not in (None, ""):
            moment = parse_instant(value, f"data.attributes.{name}", ctx.timezone)
            return str(value).replace(" ", "T"), moment
    raise invalid(f"field 'data.attributes.{names[0]}': the record has no completion date, got null")


def _work_data(
    data: dict[str, Any], attrs: dict[str, Any], included: list[dict[str, Any]], ctx: Context, what: str
) -> dict[str, Any]:
    """Revision, client, site, parts, expenses and contract: what failures and scheduled works share."""
    out: dict[str, Any] = {
        "revision": 1,
        "client_id": _client(data, attrs, included, ctx, what),
        "site_id": _site(data, attrs, included, ctx),
        "time_entries": [],
        "parts": _parts(included),
        "expenses": [],
    }
    field = ctx.options.get("contract_field", "cost_center_name")
    contract = attrs.get(field) if field else None
    if isinstance(contract, (str, int)) and not isinstance(contract, bool) and str(contract).strip():
        out["contract_ref"] = str(contract).strip()[:MAX_ID_CHARS]
    assets = asset_ids(attrs.get("entity_id"))
    if assets:
        out["asset_ids"] = assets
    return out


def _related(data: dict[str, Any], name: str, included: list[dict[str, Any]]) -> tuple[str, dict[str, Any]] | None:
    """The id of the to-one relationship ``name`` and the attributes of its included item ({} when
    not included), or None when the record has no such relationship."""
    relationships = data.get("relationships")
    relation = relationships.get(name) if isinstance(relationships, dict) else None
    target = relation.get("data") if isinstance(relation, dict) else None
    if not isinstance(target, dict) or target.get("id") in (None, ""):
        return None
    ref = text_id(target.get("id"), f"data.relationships.{name}.data.id")
    for item in included:
        if item.get("type") == target.get("type", name) and str(item.get("id")) == ref:
            attributes = item.get("attributes")
            return ref, attributes if isinstance(attributes, dict) else {}
    return ref, {}


def _client(
    data: dict[str, Any], attrs: dict[str, Any], included: list[dict[str, Any]], ctx: Context, what: str
) -> str:
    for key in ("client_code", "client_id"):
        if attrs.get(key) not in (None, ""):
            return ctx.client(text_id(attrs[key], f"data.attributes.{key}"))
    related = _related(data, "client", included)
    if related is not None:
        ref, client = related
        code = client.get("code")
        return ctx.client(code if isinstance(code, str) and code else ref)
    raise invalid(
        f"field 'data.attributes.client_code': the {what} names no client "
        "(no client_code, client_id nor client relationship)"
    )


def _site(data: dict[str, Any], attrs: dict[str, Any], included: list[dict[str, Any]], ctx: Context) -> str:
    for key in ("local_code", "local_id"):
        if attrs.get(key) not in (None, ""):
            return ctx.site(text_id(attrs[key], f"data.attributes.{key}"), f"data.attributes.{key}")
    related = _related(data, "location", included)
    if related is not None:
        ref, location = related
        code = location.get("code")
        return ctx.site(code if isinstance(code, str) and code else ref, "data.relationships.location")
    return ctx.site(None, "data.attributes.local_id")


def _labour(included: list[dict[str, Any]], ctx: Context, what: str) -> list[dict[str, Any]]:
    """Time entries from the ``event_registry`` items (module docstring, "Labour")."""
    moves: list[tuple[datetime, int, str, str, str, Any]] = []
    for index, item in enumerate(included):
        if item.get("type") != "event_registry":
            continue
        where = f"included[{index}]"
        attrs = obj(item.get("attributes"), f"{where}.attributes")
        action = attrs.get("action")
        if action not in STARTS and action not in STOPS:
            continue
        operator = text_id(attrs.get("operator_id"), f"{where}.attributes.operator_id")
        moment = parse_instant(attrs.get("date"), f"{where}.attributes.date", ctx.timezone)
        moves.append((moment, index, operator, str(action), text_id(item.get("id"), f"{where}.id"), attrs.get("date")))
    moves.sort(key=lambda move: (move[0], move[1]))
    running: dict[str, tuple[datetime, int, str, str, Any]] = {}
    spans: list[tuple[datetime, int, datetime, str, str, str]] = []
    for moment, index, operator, action, event_id, text in moves:
        if action in STARTS:
            running.setdefault(operator, (moment, index, event_id, action, text))
            continue
        started = running.pop(operator, None)
        if started is not None and moment > started[0]:
            spans.append((started[0], started[1], moment, operator, started[2], event_id))
    if running:
        operator, (_, index, event_id, action, text) = min(running.items(), key=lambda run: run[1][1])
        raise invalid(
            f"field 'included[{index}]': event {show_value(event_id)} ({action} by operator {operator} at "
            f"{show_value(text)}) has no later PAUSED or COMPLETED of that operator; the completed {what}'s "
            "labour cannot be closed"
        )
    spans.sort(key=lambda span: (span[0], span[1]))
    return [
        {
            "id": f"{start_id}-{stop_id}",
            "technician_id": ctx.technician(operator),
            "start": utc_text(start),
            "end": utc_text(end),
        }
        for start, _, end, operator, start_id, stop_id in spans
    ]


def _manpower(attrs: dict[str, Any], ctx: Context) -> list[dict[str, Any]]:
    """One ``manpower`` entry of ``manpower_duration`` for ``completed_by_id`` (none when 0 or absent)."""
    duration = attrs.get("manpower_duration")
    if duration in (None, ""):
        return []
    seconds = iso_duration_seconds(duration, "data.attributes.manpower_duration")
    if seconds == 0:
        return []
    operator = text_id(attrs.get("completed_by_id"), "data.attributes.completed_by_id")
    return [{"id": "manpower", "technician_id": ctx.technician(operator), "duration_seconds": seconds}]


def _money(value: Any, where: str) -> str:
    """A price as decimal text, rounded half-even to the event schema's decimals when it has more."""
    text = decimal_text(value, where)
    if len(text.partition(".")[2]) <= DECIMAL_PLACES:
        return text
    return format(Decimal(text).quantize(Decimal(1).scaleb(-DECIMAL_PLACES), rounding=ROUND_HALF_EVEN), "f")


def _parts(included: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Part usages from the ``stock`` items and their ``material`` (module docstring, "Parts")."""
    materials: dict[str, tuple[int, dict[str, Any]]] = {}
    for index, item in enumerate(included):
        if item.get("type") == "material":
            attrs = obj(item.get("attributes"), f"included[{index}].attributes")
            key = attrs.get("material_id", item.get("id"))
            materials[text_id(key, f"included[{index}].attributes.material_id")] = (index, attrs)
    parts = []
    for index, item in enumerate(included):
        if item.get("type") != "stock":
            continue
        where = f"included[{index}]"
        attrs = obj(item.get("attributes"), f"{where}.attributes")
        stock_id = text_id(item.get("id"), f"{where}.id")
        material_id = text_id(attrs.get("material_id"), f"{where}.attributes.material_id")
        if material_id not in materials:
            raise invalid(
                f"field '{where}.attributes.material_id': material {material_id} of stock item {stock_id} "
                "is not in 'included' (expanded=stock.material)"
            )
        at, material = materials[material_id]
        quantity = decimal_text(attrs.get("quantity"), f"{where}.attributes.quantity")
        if Decimal(quantity) == 0:
            continue
        sku = next((str(v) for v in (material.get("code"), material.get("full_code")) if v not in (None, "")), None)
        units = material.get("units")
        part: dict[str, Any] = {
            "id": stock_id,
            "sku": sku or material_id,
            "description": str(material.get("name") or f"Material {material_id}"),
            "quantity": quantity,
            "unit": units if isinstance(units, str) and units else "un",
        }
        if attrs.get("mean_price") is not None:
            part["unit_cost"] = _money(attrs["mean_price"], f"{where}.attributes.mean_price")
        elif material.get("mean_price") is not None:
            part["unit_cost"] = _money(material["mean_price"], f"included[{at}].attributes.mean_price")
        parts.append(part)
    return parts
