"""ERPNext / Frappe: the generic ``Webhook`` doctype on a document's ``on_submit`` (Quotation,
Maintenance Visit, Timesheet), Timesheets read through the Frappe REST API.

Sources: ``frappe/integrations/doctype/webhook/webhook.py`` in frappe/frappe (signature, body,
retries), ``frappe/rate_limiter.py`` (429), the ERPNext doctypes ``Quotation``, ``Maintenance
Visit``, ``Timesheet`` / ``Timesheet Detail`` (``erpnext/selling``, ``erpnext/maintenance``,
``erpnext/projects``), as summarised in the project's platform notes (``docs/intake.md``,
"Platforms").

* **Configuring the webhook.** One Frappe ``Webhook`` per doctype, *Doc Event* ``on_submit``,
  *Request URL* ``https://<broker>/webhooks/erpnext/<tenant>?doctype=<DocType>`` (e.g.
  ``?doctype=Maintenance%20Visit``; with *Is Dynamic URL*, ``?doctype={{ doc.doctype }}``),
  *Enable Security* on with the tenant's secret (``webhooks.erpnext.secret_env``), and a body that
  selects the document's fields (``webhook_data``) or a JSON template (``{{ doc | tojson }}``
  sends them all). Frappe puts no doctype in the body: it is the body's ``doctype`` when the
  admin adds one, else the URL's ``?doctype=``, else inferred from the fields (``quotation_to`` or
  ``party_name`` with ``items``: Quotation; ``mntc_date`` with ``maintenance_type``: Maintenance
  Visit; ``time_logs``: Timesheet). Other doctypes are ignored.
* **Signature.** Header ``X-Frappe-Webhook-Signature`` = base64 HMAC-SHA256(webhook secret,
  body): Frappe signs ``json.dumps(data)`` and sends those same bytes, so it is checked over the
  raw bytes received; a webhook without *Enable Security* (no header) is refused. Frappe signs no
  timestamp: replay protection is the intake's deduplication by event id, with no freshness
  check. No ``Content-Type`` is sent unless the admin adds one as a *Webhook Header*. Frappe tries
  3 times (1 s, 4 s, 7 s apart) and records each try in its *Webhook Request Log*; it does not
  read ``Retry-After``.
* **Trigger.** A submitted document (``docstatus`` 1; a body without ``docstatus`` is taken as
  the ``on_submit`` it was configured for); a draft (0) or cancelled (2) one is ignored. Event
  ids: ``erpnext:<doctype>:<name>:on_submit`` (``:<modified>`` appended when the body carries
  ``modified``); a submitted document cannot be submitted again (an amendment is a new name).
* **Hydration.** ``GET /api/resource/Timesheet/{name}`` (answer ``{"data": {...}}``), with
  ``Authorization: token <api key>:<api secret>`` (``api.username``: the API key, the token: the
  API secret; without a username the token is taken as ``<key>:<secret>``), ``api.base_url``: the
  site's root (``https://erp.example.com``). Frappe's limit is a site setting (``rate_limit``, in
  request time per window) and Frappe Cloud publishes no per-minute figure: 300 requests a minute
  is assumed (:data:`REQUESTS_PER_MINUTE`).
* **Mapping.**

  - *Quotation* (:func:`map_quotation`) -> ``maintenance.quote.approved``: ``name`` is the quote,
    ``party_name`` the client, ``customer_address`` (when selected) else the tenant's
    ``default_site`` the site; one line per ``items`` row (id: the row's ``name``, else its
    ``idx``, else its position; ``item_code`` the SKU, ``item_name`` the description, ``qty``,
    ``rate``, the net unit price after the row's discount, as exact decimals); no tax rate (the
    tenant's VAT applies). A document-level discount (``discount_amount``) cannot be carried by
    the lines: refused (422). Option ``currency``: refuse a quotation in another currency. Time:
    ``transaction_date`` at midnight in the tenant's time zone.
  - *Maintenance Visit* (:func:`map_visit`) with ``completion_status`` ``Fully Completed`` (else
    ignored): ``maintenance_type`` ``Scheduled`` -> ``maintenance.scheduled_job.closed``
    (``scheduled_job_id``: the visit), ``Unscheduled`` or ``Breakdown`` ->
    ``maintenance.work_order.completed`` (corrective); ``customer`` the client,
    ``customer_address`` (when selected) else ``default_site`` the site; the assets
    (``asset_ids``) the purposes' ``serial_no`` (the serial numbers serviced); the contract is the
    field named by option ``contract_field`` (default ``maintenance_schedule``; empty: none); the
    summary the purposes' ``work_done``; time ``mntc_date`` + ``mntc_time`` in the tenant's zone.
    A visit records no hours: its time entries are those of the Timesheets named in a list field
    ``timesheets`` that the admin adds to the webhook's body (names, or objects with
    ``timesheet`` or ``name``), each read through the API; without it, none.
  - *Timesheet* (:func:`map_timesheet`) -> ``maintenance.work_order.completed`` (corrective):
    ``work_order_id`` is the timesheet's ``name`` (not its logs' ``task``: a task spans several
    timesheets, and each submitted timesheet must be billed once), ``customer`` the client, the
    site ``default_site`` (or a ``customer_address`` the body adds); read through the API when
    the body has no ``time_logs``; the time is the last ``to_time``.
  - *Time logs* (:func:`time_entries`): each billable log (``is_billable`` not 0) of a Timesheet
    is a time entry of its ``employee`` from ``from_time`` to ``to_time`` (naive, in the tenant's
    time zone, which must be the Frappe site's), id ``<timesheet>:<idx>``; a log of zero length is
    left out. A Timesheet Detail has no employee of its own, so logs of one timesheet that
    overlap (ERPNext allows it with *Projects Settings* > *Ignore Employee Time Overlap*) would
    be one technician in two places: a log that starts before the end of an earlier clocked log
    of the same technician is sent as its duration only (billed at the normal rate), so no
    recorded hour is lost. Timesheets named by a visit that were cancelled (``docstatus`` 2) are
    left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from broker.events import QUOTE_APPROVED, WORK_ORDER_COMPLETED, show_value
from broker.platforms.base import (
    Adapter,
    Context,
    Ignored,
    Webhook,
    asset_ids,
    bad_signature,
    base64_signature,
    canonical_event,
    decimal_text,
    equal,
    invalid,
    items,
    job_event,
    local_to_utc,
    obj,
    parse_instant,
    required_header,
    text_id,
    utc_text,
)

__all__ = [
    "ERPNext",
    "doctype_of",
    "map_quotation",
    "map_timesheet",
    "map_visit",
    "signature_header",
    "time_entries",
    "timesheet_path",
]

SIGNATURE_HEADER = "X-Frappe-Webhook-Signature"
#: Assumed limit (Frappe Cloud publishes none per minute; a site's own is in request time).
REQUESTS_PER_MINUTE = 300
QUOTATION, VISIT, TIMESHEET = "Quotation", "Maintenance Visit", "Timesheet"
DOCTYPES = (QUOTATION, VISIT, TIMESHEET)
#: The doc event billed (the id's suffix).
EVENT = "on_submit"
SCHEDULED, CORRECTIVE = "Scheduled", ("Unscheduled", "Breakdown")
SUBJECTS = {QUOTATION: "quotations", VISIT: "maintenance-visits", TIMESHEET: "timesheets"}
DOCSTATUS = {0: "a draft", 2: "cancelled"}


def signature_header(secret: bytes, body: bytes) -> str:
    """The ``X-Frappe-Webhook-Signature`` value Frappe sends with ``body``."""
    return base64_signature(secret, body)


def timesheet_path(name: str) -> str:
    """The REST path of Timesheet ``name`` under the site's root."""
    return f"api/resource/Timesheet/{quote(name, safe='')}"


def doctype_of(body: Mapping[str, Any], query: Mapping[str, str]) -> str:
    """The doctype of a webhook: the body's ``doctype``, else the URL's ``?doctype=``, else the
    one its fields show (module docstring). Raises 422 when none does."""
    given = body.get("doctype")
    if given is not None:
        if not isinstance(given, str) or not given:
            raise invalid(f"field 'doctype': expected a DocType name, got {show_value(given)}")
        return given
    if query.get("doctype"):
        return query["doctype"]
    if ("quotation_to" in body or "party_name" in body) and "items" in body:
        return QUOTATION
    if "mntc_date" in body and "maintenance_type" in body:
        return VISIT
    if "time_logs" in body:
        return TIMESHEET
    raise invalid(
        "field 'doctype': the body names no doctype and its fields match none of "
        f"{', '.join(DOCTYPES)}; add ?doctype=<DocType> to the webhook's URL"
    )


def _event_id(doctype: str, doc: Mapping[str, Any], name: str) -> str:
    modified = doc.get("modified")
    suffix = f":{modified}" if isinstance(modified, str) and modified else ""
    return f"erpnext:{doctype}:{name}:{EVENT}{suffix}"


def _subject(doctype: str, name: str) -> str:
    return f"{SUBJECTS[doctype]}/{quote(name, safe='')}"


def _local_date(value: Any, where: str, zone: str, at: Any = None, at_where: str = "") -> datetime:
    """Date ``value`` (``YYYY-MM-DD``) at time ``at`` (``HH:MM:SS``, default midnight) in ``zone``, as UTC."""
    if not isinstance(value, str):
        raise invalid(f"field {where!r}: expected a date, got {show_value(value)}")
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise invalid(f"field {where!r}: expected a date (YYYY-MM-DD), got {show_value(value)}") from None
    clock = time(0)
    if at is not None and at != "":
        if not isinstance(at, str):
            raise invalid(f"field {at_where!r}: expected a time, got {show_value(at)}")
        try:
            clock = time.fromisoformat(at)
        except ValueError:
            raise invalid(f"field {at_where!r}: expected a time (HH:MM:SS), got {show_value(at)}") from None
    return local_to_utc(datetime.combine(day, clock), zone)


def _site_ref(doc: Mapping[str, Any]) -> str | None:
    address = doc.get("customer_address")
    return address if isinstance(address, str) and address else None


def _submitted(doctype: str, name: str, doc: Mapping[str, Any]) -> Ignored | None:
    status = doc.get("docstatus", 1)
    if status == 1 and not isinstance(status, bool):
        return None
    what = DOCSTATUS.get(status, "not submitted") if isinstance(status, int) else "not submitted"
    return Ignored(f"{doctype} {name} is {what} (docstatus {show_value(status)}): only a submission bills")


class ERPNext(Adapter):
    """The ERPNext / Frappe adapter (module docstring)."""

    name = "erpnext"
    requests_per_minute = REQUESTS_PER_MINUTE

    def api_headers(self, username: str | None, token: str) -> dict[str, str]:
        """Frappe's token authentication: ``Authorization: token <api key>:<api secret>``."""
        return {"Authorization": f"token {username}:{token}" if username else f"token {token}"}

    def verify(self, hook: Webhook, secret: bytes, now: float, tolerance: float) -> None:  # noqa: ARG002 - unsigned time
        given = required_header(hook, SIGNATURE_HEADER)
        if not equal(base64_signature(secret, hook.body), given.strip()):
            raise bad_signature(f"header {SIGNATURE_HEADER!r}: the signature does not match the body")

    async def events(self, payload: Any, hook: Webhook, ctx: Context, api: Any) -> list[dict[str, Any]] | Ignored:
        body = obj(payload, "body")
        doctype = doctype_of(body, hook.query)
        if doctype not in DOCTYPES:
            return Ignored(f"doctype {show_value(doctype)} bills nothing")
        name = text_id(body.get("name"), "name")
        not_submitted = _submitted(doctype, name, body)
        if not_submitted is not None:
            return not_submitted
        if doctype == QUOTATION:
            return [map_quotation(body, ctx)]
        if doctype == VISIT:
            status = body.get("completion_status")
            if status != "Fully Completed":
                return Ignored(f"Maintenance Visit {name}: completion_status {show_value(status)} is not a completion")
            names = _timesheet_names(body.get("timesheets"))
            sheets = [await _fetch_timesheet(api, sheet) for sheet in names]
            return [map_visit(body, [s for s in sheets if s.get("docstatus") != 2], ctx)]
        doc = body if "time_logs" in body else {**await _fetch_timesheet(api, name), **body}
        found = map_timesheet(doc, ctx)
        return found if isinstance(found, Ignored) else [found]


def _timesheet_names(value: Any) -> list[str]:
    """The names in a visit's ``timesheets`` field (names, or objects with ``timesheet`` or ``name``)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(f"field 'timesheets': expected a list of Timesheet names, got {show_value(value)}")
    names: list[str] = []
    for index, item in enumerate(value):
        ref = item.get("timesheet", item.get("name")) if isinstance(item, dict) else item
        if not isinstance(ref, str) or not ref:
            raise invalid(f"field 'timesheets[{index}]': expected a Timesheet name, got {show_value(item)}")
        if ref not in names:
            names.append(ref)
    return names


async def _fetch_timesheet(api: Any, name: str) -> dict[str, Any]:
    """Timesheet ``name`` as ``GET /api/resource/Timesheet/{name}`` answers it."""
    path = timesheet_path(name)
    if api is None:
        raise invalid(f"Timesheet {name!r} must be read from the ERPNext API, and webhooks.erpnext.api is not set")
    found = obj(await api.get(path), f"GET /{path}")
    return obj(found.get("data"), f"GET /{path}: data")


def map_quotation(quotation: Mapping[str, Any], ctx: Context) -> dict[str, Any]:
    """The ``maintenance.quote.approved`` of a submitted Quotation (the webhook's fields). Raises 422
    :class:`~broker.platforms.base.Rejected` naming a field the mapping needs and cannot read."""
    name = text_id(quotation.get("name"), "name")
    party = quotation.get("party_name", quotation.get("customer"))
    if not isinstance(party, str) or not party:
        raise invalid(f"field 'party_name': the quotation names no customer, got {show_value(party)}")
    wanted = ctx.options.get("currency")
    currency = quotation.get("currency")
    if wanted and currency is not None and currency != wanted:
        raise invalid(f"field 'currency': the quotation is in {show_value(currency)}; the tenant bills in {wanted}")
    discount = quotation.get("discount_amount")
    discount_text = None if discount is None else decimal_text(discount, "discount_amount")
    if discount_text is not None and Decimal(discount_text) != 0:
        raise invalid(
            f"field 'discount_amount': the quotation has a document discount of {discount_text}, "
            "which its lines cannot carry; give the discount on the items instead"
        )
    lines = []
    for index, item in enumerate(items(quotation.get("items"), "items")):
        where = f"items[{index}]"
        row, idx = item.get("name"), item.get("idx")
        if isinstance(row, str) and row:
            line_id = row
        elif isinstance(idx, int) and not isinstance(idx, bool):
            line_id = str(idx)
        else:
            line_id = str(index + 1)
        sku = item.get("item_code")
        description = next((v for v in (item.get("item_name"), sku) if isinstance(v, str) and v), None)
        if description is None:
            raise invalid(f"field '{where}.item_name': the row names no item, got {show_value(item.get('item_name'))}")
        line: dict[str, Any] = {
            "id": line_id,
            "description": description,
            "quantity": decimal_text(item.get("qty"), f"{where}.qty"),
            "unit_price": decimal_text(item.get("rate"), f"{where}.rate"),
        }
        if isinstance(sku, str) and sku:
            line["sku"] = sku
        lines.append(line)
    if not lines:
        raise invalid("field 'items': the quotation has no items")
    data: dict[str, Any] = {
        "quote_id": name,
        "revision": 1,
        "client_id": ctx.client(party),
        "site_id": ctx.site(_site_ref(quotation), "customer_address"),
        "lines": lines,
    }
    return canonical_event(
        ctx,
        type_=QUOTE_APPROVED,
        event_id=_event_id(QUOTATION, quotation, name),
        time=_local_date(quotation.get("transaction_date"), "transaction_date", ctx.timezone),
        subject=_subject(QUOTATION, name),
        data=data,
    )


def map_visit(visit: Mapping[str, Any], timesheets: list[dict[str, Any]], ctx: Context) -> dict[str, Any]:
    """The canonical event of a fully completed, submitted Maintenance Visit (the webhook's fields)
    with the time logs of ``timesheets`` (as the API answers them). Raises 422 naming a field."""
    name = text_id(visit.get("name"), "name")
    kind = visit.get("maintenance_type")
    if kind != SCHEDULED and kind not in CORRECTIVE:
        raise invalid(
            f"field 'maintenance_type': expected {SCHEDULED}, {' or '.join(CORRECTIVE)}, got {show_value(kind)}"
        )
    customer = text_id(visit.get("customer"), "customer")
    occurred = _local_date(visit.get("mntc_date"), "mntc_date", ctx.timezone, visit.get("mntc_time"), "mntc_time")
    entries, _ = time_entries(timesheets, ctx, "timesheets")
    data: dict[str, Any] = {
        "revision": 1,
        "client_id": ctx.client(customer),
        "site_id": ctx.site(_site_ref(visit), "customer_address"),
        "time_entries": entries,
        "parts": [],
        "expenses": [],
    }
    contract_field = ctx.options.get("contract_field", "maintenance_schedule")
    contract = visit.get(contract_field) if contract_field else None
    if isinstance(contract, str) and contract:
        data["contract_ref"] = contract
    done = [
        p["work_done"]
        for p in items(visit.get("purposes"), "purposes")
        if isinstance(p.get("work_done"), str) and p["work_done"]
    ]
    if done:
        data["summary"] = "; ".join(done)[:200]
    assets = asset_ids(*(p.get("serial_no") for p in items(visit.get("purposes"), "purposes")))
    if assets:
        data["asset_ids"] = assets
    return job_event(
        ctx,
        preventive=kind == SCHEDULED,
        job_id=name,
        event_id=_event_id(VISIT, visit, name),
        time=occurred,
        subject=_subject(VISIT, name),
        data=data,
    )


def map_timesheet(timesheet: Mapping[str, Any], ctx: Context) -> dict[str, Any] | Ignored:
    """The ``maintenance.work_order.completed`` of a submitted Timesheet (with its ``time_logs``), or
    :class:`~broker.platforms.base.Ignored` when none of its logs is billable. Raises 422 naming a field."""
    name = text_id(timesheet.get("name"), "name")
    customer = timesheet.get("customer")
    if not isinstance(customer, str) or not customer:
        raise invalid(f"field 'customer': the timesheet names no customer, got {show_value(customer)}")
    entries, last = time_entries([dict(timesheet)], ctx, "")
    if last is None:
        return Ignored(f"Timesheet {name} has no billable time logs")
    data: dict[str, Any] = {
        "revision": 1,
        "client_id": ctx.client(customer),
        "site_id": ctx.site(_site_ref(timesheet), "customer_address"),
        "time_entries": entries,
        "parts": [],
        "expenses": [],
        "work_order_id": name,
        "kind": "corrective",
    }
    activities = dict.fromkeys(
        log["activity_type"]
        for log in items(timesheet.get("time_logs"), "time_logs")
        if isinstance(log.get("activity_type"), str) and log["activity_type"]
    )
    if activities:
        data["summary"] = ", ".join(activities)[:200]
    return canonical_event(
        ctx,
        type_=WORK_ORDER_COMPLETED,
        event_id=_event_id(TIMESHEET, timesheet, name),
        time=last,
        subject=_subject(TIMESHEET, name),
        data=data,
    )


def time_entries(
    timesheets: list[dict[str, Any]], ctx: Context, where: str
) -> tuple[list[dict[str, Any]], datetime | None]:
    """The time entries of the billable logs of ``timesheets`` (module docstring, "Time logs") and
    the latest ``to_time`` of them (None: no billable log). ``where`` prefixes the fields named in
    a 422 (``timesheets`` for a visit's, empty for the webhook's own Timesheet)."""
    rows: list[tuple[str, str, datetime, datetime]] = []
    for sheet_index, sheet in enumerate(timesheets):
        at = f"{where}[{sheet_index}]." if where else ""
        sheet_name = text_id(sheet.get("name"), f"{at}name")
        employee = text_id(sheet.get("employee"), f"{at}employee")
        for index, log in enumerate(items(sheet.get("time_logs"), f"{at}time_logs")):
            log_at = f"{at}time_logs[{index}]"
            if log.get("is_billable", 1) in (0, False):
                continue
            start = parse_instant(log.get("from_time"), f"{log_at}.from_time", ctx.timezone)
            end = parse_instant(log.get("to_time"), f"{log_at}.to_time", ctx.timezone)
            if end < start:
                raise invalid(f"field '{log_at}.to_time': {log['to_time']!r} is before from_time {log['from_time']!r}")
            if end == start:
                continue
            idx = log.get("idx")
            number = idx if isinstance(idx, int) and not isinstance(idx, bool) else index + 1
            rows.append((f"{sheet_name}:{number}", ctx.technician(employee), start, end))
    clocked_until: dict[str, datetime] = {}
    clocked: set[str] = set()
    for entry_id, technician, start, end in sorted(rows, key=lambda row: (row[2], row[3])):
        until = clocked_until.get(technician)
        if until is None or start >= until:
            clocked_until[technician] = end
            clocked.add(entry_id)
    entries: list[dict[str, Any]] = []
    for entry_id, technician, start, end in rows:
        entry: dict[str, Any] = {"id": entry_id, "technician_id": technician}
        if entry_id in clocked:
            entry |= {"start": utc_text(start), "end": utc_text(end)}
        else:  # overlaps an earlier clocked log of the same technician: its duration only
            entry["duration_seconds"] = (end - start) // timedelta(seconds=1)
        entries.append(entry)
    last = max((row[3] for row in rows), default=None)
    return entries, None if last is None else last.astimezone(UTC)
