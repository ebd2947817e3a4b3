"""ERPNext / Frappe webhooks through ``broker ingest`` (real HTTP, the embedded Kafka, the platform
emulator): the signature as Frappe signs it, the doctype from the body, the URL or the fields, the
mapping of quotations, visits and timesheets (read through the REST API), and what is ignored."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from broker.platforms.emulator import PlatformEmulator
from broker.platforms.emulator.erpnext import webhook
from broker.platforms.erpnext import signature_header
from broker.settings import TOPIC_EVENTS
from tests.delivery_support import topic_records
from tests.intake_support import Intake, problem, route, sample_request

pytestmark = pytest.mark.integration

QUOTE_HEADERS, QUOTE_BODY, VECTOR = sample_request("erpnext", "webhook_quotation_on_submit")
VISIT_HEADERS, VISIT_BODY, _ = sample_request("erpnext", "webhook_maintenance_visit_on_submit")
SECRET = VECTOR["secret"].encode()
PATH = "/webhooks/erpnext/acme-fm"
HEADER = "X-Frappe-Webhook-Signature"
# A tenant in the Azores (UTC-1 in March): ERPNext's naive local times are not UTC.
CONTEXT = {
    "clients": {"Hotel Atlantico Demo": "CLI-HAL"},
    "sites": {"Hotel Atlantico Demo-Rooftop": "LIS-HAL-ROOF"},
    "technicians": {"HR-EMP-00012": "T31", "HR-EMP-00013": "T32"},
    "default_site": "LIS-HAL",
    "timezone": "Atlantic/Azores",
}
ENVELOPE = {"specversion": "1.0", "source": "/platforms/erpnext", "datacontenttype": "application/json"}


def _routes(platforms: PlatformEmulator) -> dict:
    return {("erpnext", "acme-fm"): route("erpnext", SECRET, platforms, **CONTEXT)}


def _events(bootstrap: str) -> dict[str, dict]:
    return {event["id"]: event for event in (json.loads(r.value) for r in topic_records(bootstrap, TOPIC_EVENTS))}


def test_the_sample_quotation_and_visit_become_a_quote_and_a_closed_scheduled_job(kafka_events, platforms):
    quote_id = "erpnext:Quotation:SAL-QTN-2025-00019:on_submit"
    visit_id = "erpnext:Maintenance Visit:MAT-MVS-2025-00041:on_submit"
    with Intake(kafka_events, webhooks=_routes(platforms)) as intake:
        # the quotation's webhook URL names its doctype; the visit's is inferred from its fields
        answer = intake.post(QUOTE_BODY, QUOTE_HEADERS, f"{PATH}?doctype=Quotation")
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": [quote_id], "duplicates": [], "tenant": "acme-fm"}
        answer = intake.post(VISIT_BODY, VISIT_HEADERS, PATH)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": [visit_id], "duplicates": [], "tenant": "acme-fm"}
        # Frappe tries again (a timeout on its side): nothing new, still 2xx
        again = intake.post(QUOTE_BODY, QUOTE_HEADERS, f"{PATH}?doctype=Quotation")
        assert (again.status_code, again.json()["duplicates"]) == (202, [quote_id])
        again = intake.post(VISIT_BODY, VISIT_HEADERS, PATH)
        assert (again.status_code, again.json()["duplicates"]) == (202, [visit_id])
    assert platforms.requests("erpnext") == []  # both bodies carry all the mapping needs
    assert _events(kafka_events) == {
        quote_id: {
            **ENVELOPE,
            "id": quote_id,
            "type": "maintenance.quote.approved",
            "time": "2025-03-18T01:00:00+00:00",  # transaction_date at midnight in the Azores
            "subject": "quotations/SAL-QTN-2025-00019",
            "tenant": "acme-fm",
            "data": {
                "quote_id": "SAL-QTN-2025-00019",
                "revision": 1,
                "client_id": "CLI-HAL",
                "site_id": "LIS-HAL",
                "lines": [
                    {
                        "id": "1",
                        "description": "Scroll compressor 10kW",
                        "quantity": "1",
                        "unit_price": "980",
                        "sku": "CMP-SCROLL-10",
                    },
                    {
                        "id": "2",
                        "description": "Technician labour (hour)",
                        "quantity": "10",
                        "unit_price": "45",
                        "sku": "SRV-LAB-H",
                    },
                ],
            },
        },
        visit_id: {
            **ENVELOPE,
            "id": visit_id,
            "type": "maintenance.scheduled_job.closed",
            "time": "2025-03-17T11:05:00+00:00",  # mntc_date + mntc_time 10:05 in the Azores
            "subject": "maintenance-visits/MAT-MVS-2025-00041",
            "tenant": "acme-fm",
            "data": {
                "revision": 1,
                "client_id": "CLI-HAL",
                "site_id": "LIS-HAL",
                "time_entries": [],
                "parts": [],
                "expenses": [],
                "contract_ref": "MAT-MSH-2025-00007",
                "summary": "Quarterly PM: filters, pressures, refrigerant check",
                "asset_ids": ["CH01-SN-0001"],  # the purposes' serial_no
                "scheduled_job_id": "MAT-MVS-2025-00041",
            },
        },
    }


def test_signature_vectors(kafka_events, platforms):
    with Intake(kafka_events, webhooks=_routes(platforms)) as intake:
        tampered = QUOTE_BODY.replace(b'"qty": 10', b'"qty": 100')
        assert tampered != QUOTE_BODY
        mismatch = f"header {HEADER!r}: the signature does not match the body"
        assert problem(intake.post(tampered, QUOTE_HEADERS, PATH), 401) == mismatch
        wrong = {HEADER: signature_header(b"another secret", QUOTE_BODY)}
        assert problem(intake.post(QUOTE_BODY, wrong, PATH), 401) == mismatch
        # the same JSON re-serialised (compact separators): the signature is over the bytes sent
        compact = json.dumps(json.loads(QUOTE_BODY), separators=(",", ":")).encode()
        assert problem(intake.post(compact, QUOTE_HEADERS, PATH), 401) == mismatch
        # a webhook without "Enable Security": refused
        missing = problem(intake.post(QUOTE_BODY, {}, PATH), 401)
        assert missing == f"header {HEADER!r} is missing: the request is not signed"
        # the sample's signature with our secret, under another header case: accepted
        lower = {HEADER.lower(): QUOTE_HEADERS[HEADER]}
        assert intake.post(QUOTE_BODY, lower, PATH).status_code == 202
    assert list(_events(kafka_events)) == ["erpnext:Quotation:SAL-QTN-2025-00019:on_submit"]
    assert platforms.requests("erpnext") == []


def test_what_is_ignored_refused_or_unavailable(kafka_events, platforms):
    visit = json.loads(VISIT_BODY)
    quotation = json.loads(QUOTE_BODY)
    with Intake(kafka_events, webhooks=_routes(platforms)) as intake:

        def post(data: dict, query: str = ""):
            headers, body = webhook(SECRET, data)
            return intake.post(body, headers, PATH + query)

        answer = post({**visit, "completion_status": "Partially Completed"})
        assert (answer.status_code, answer.json()) == (
            200,
            {
                "ignored": "Maintenance Visit MAT-MVS-2025-00041: completion_status 'Partially Completed' "
                "is not a completion",
                "tenant": "acme-fm",
            },
        )
        answer = post({**quotation, "docstatus": 2})
        assert answer.json()["ignored"] == (
            "Quotation SAL-QTN-2025-00019 is cancelled (docstatus 2): only a submission bills"
        )
        answer = post({"name": "ACC-SINV-2025-00007", "docstatus": 1}, "?doctype=Sales%20Invoice")
        assert (answer.status_code, answer.json()["ignored"]) == (200, "doctype 'Sales Invoice' bills nothing")
        # the body's doctype comes before the URL's
        answer = post(
            {**visit, "doctype": "Maintenance Visit", "completion_status": "Partially Completed"}, "?doctype=Quotation"
        )
        assert answer.json()["ignored"].startswith("Maintenance Visit MAT-MVS-2025-00041: completion_status")
        # a timesheet without a billable log
        answer = post({"doctype": "Timesheet", "name": "TS-1", "customer": "X", "employee": "E", "time_logs": []})
        assert answer.json()["ignored"] == "Timesheet TS-1 has no billable time logs"

        # refused: fields the mapping cannot read (422, naming them)
        assert problem(post({"name": "SAL-QTN-2025-00020"}), 422) == (
            "field 'doctype': the body names no doctype and its fields match none of Quotation, "
            "Maintenance Visit, Timesheet; add ?doctype=<DocType> to the webhook's URL"
        )
        assert problem(post({**quotation, "discount_amount": 143.0}), 422) == (
            "field 'discount_amount': the quotation has a document discount of 143, which its lines "
            "cannot carry; give the discount on the items instead"
        )
        assert problem(post({**visit, "maintenance_type": "Warranty"}), 422) == (
            "field 'maintenance_type': expected Scheduled, Unscheduled or Breakdown, got 'Warranty'"
        )
        thin = {"name": "TS-2025-00404", "docstatus": 1}
        assert problem(post(thin, "?doctype=Timesheet"), 422) == (
            "the erpnext API has no api/resource/Timesheet/TS-2025-00404 (HTTP 404)"
        )
        # the API down: 503 with Retry-After (Frappe tries 3 times, then keeps it in its Webhook Request Log)
        platforms.inject_fault("503", times=10)
        answer = post({"name": "TS-2025-00088", "docstatus": 1}, "?doctype=Timesheet")
        assert "did not answer GET api/resource/Timesheet/TS-2025-00088 (HTTP 503)" in problem(answer, 503)
        assert answer.headers["retry-after"] == "30"
    assert _events(kafka_events) == {}
    assert platforms.requests("erpnext") == [
        "GET /erpnext/api/resource/Timesheet/TS-2025-00404",
        *["GET /erpnext/api/resource/Timesheet/TS-2025-00088"] * 4,  # the client's 4 attempts
    ]


def test_timesheets_are_read_through_the_api(kafka_events, platforms):
    platforms.put(
        "erpnext",
        "Timesheet",
        "TS-2025-00089",
        {
            "name": "TS-2025-00089",
            "employee": "HR-EMP-00013",
            "customer": "Hotel Atlantico Demo",
            "docstatus": 1,
            "time_logs": [
                {
                    "idx": 1,
                    "activity_type": "Call-out repair",
                    "from_time": "2025-03-15 09:10:00",
                    "to_time": "2025-03-15 12:25:00",
                    "hours": Decimal("3.25"),
                    "is_billable": 1,
                },
                {  # not billable: left out
                    "idx": 2,
                    "activity_type": "Travel",
                    "from_time": "2025-03-15 12:25:00",
                    "to_time": "2025-03-15 13:05:00",
                    "hours": Decimal("0.667"),
                    "is_billable": 0,
                },
            ],
        },
    )
    cancelled = {"name": "TS-2025-00090", "employee": "HR-EMP-00013", "docstatus": 2, "time_logs": []}
    platforms.put("erpnext", "Timesheet", "TS-2025-00090", cancelled)
    sheet_id = "erpnext:Timesheet:TS-2025-00088:on_submit"
    visit_id = "erpnext:Maintenance Visit:MAT-MVS-2025-00052:on_submit:2025-03-15 12:31:04.120391"
    with Intake(kafka_events, webhooks=_routes(platforms)) as intake:
        # a thin Timesheet webhook (the admin's template adds the doctype): the logs come from the API
        headers, body = webhook(SECRET, {"doctype": "Timesheet", "name": "TS-2025-00088", "docstatus": 1})
        answer = intake.post(body, headers, PATH)
        assert answer.json() == {"accepted": [sheet_id], "duplicates": [], "tenant": "acme-fm"}
        assert intake.post(body, headers, PATH).json()["duplicates"] == [sheet_id]
        # a breakdown visit naming its timesheets (a field the admin adds to the webhook's body)
        headers, body = webhook(
            SECRET,
            {
                "name": "MAT-MVS-2025-00052",
                "customer": "Hotel Atlantico Demo",
                "customer_address": "Hotel Atlantico Demo-Rooftop",
                "mntc_date": "2025-03-15",
                "mntc_time": "12:30:00",
                "maintenance_type": "Breakdown",
                "completion_status": "Fully Completed",
                "docstatus": 1,
                "modified": "2025-03-15 12:31:04.120391",
                "purposes": [{"item_code": "SRV-CALLOUT", "work_done": "Replaced contactor; recharged R410A"}],
                "timesheets": ["TS-2025-00088", {"timesheet": "TS-2025-00089"}, "TS-2025-00090"],
            },
        )
        answer = intake.post(body, headers, f"{PATH}?doctype=Maintenance%20Visit")
        assert answer.json() == {"accepted": [visit_id], "duplicates": [], "tenant": "acme-fm"}
    assert platforms.requests("erpnext") == [
        *["GET /erpnext/api/resource/Timesheet/TS-2025-00088"] * 2,  # the webhook and its retry
        "GET /erpnext/api/resource/Timesheet/TS-2025-00088",
        "GET /erpnext/api/resource/Timesheet/TS-2025-00089",
        "GET /erpnext/api/resource/Timesheet/TS-2025-00090",
    ]
    # TS-2025-00088's two logs are both HR-EMP-00012's and overlap (09:05-12:20 and 09:10-12:25,
    # Azores time): the second is sent as its 3 h 15 min only
    sheet_entries = [
        {
            "id": "TS-2025-00088:1",
            "technician_id": "T31",
            "start": "2025-03-15T10:05:00+00:00",
            "end": "2025-03-15T13:20:00+00:00",
        },
        {"id": "TS-2025-00088:2", "technician_id": "T31", "duration_seconds": 11700},
    ]
    assert _events(kafka_events) == {
        sheet_id: {
            **ENVELOPE,
            "id": sheet_id,
            "type": "maintenance.work_order.completed",
            "time": "2025-03-15T13:25:00+00:00",  # the last to_time, 12:25 in the Azores
            "subject": "timesheets/TS-2025-00088",
            "tenant": "acme-fm",
            "data": {
                "revision": 1,
                "client_id": "CLI-HAL",
                "site_id": "LIS-HAL",
                "time_entries": sheet_entries,
                "parts": [],
                "expenses": [],
                "work_order_id": "TS-2025-00088",
                "kind": "corrective",
                "summary": "Call-out repair",
            },
        },
        visit_id: {
            **ENVELOPE,
            "id": visit_id,
            "type": "maintenance.work_order.completed",
            "time": "2025-03-15T13:30:00+00:00",
            "subject": "maintenance-visits/MAT-MVS-2025-00052",
            "tenant": "acme-fm",
            "data": {
                "revision": 1,
                "client_id": "CLI-HAL",
                "site_id": "LIS-HAL-ROOF",
                "time_entries": [
                    *sheet_entries,
                    {
                        "id": "TS-2025-00089:1",
                        "technician_id": "T32",
                        "start": "2025-03-15T10:10:00+00:00",
                        "end": "2025-03-15T13:25:00+00:00",
                    },
                ],
                "parts": [],
                "expenses": [],
                "summary": "Replaced contactor; recharged R410A",
                "work_order_id": "MAT-MVS-2025-00052",
                "kind": "corrective",
            },
        },
    }


def test_the_tenants_currency_and_the_api_credentials():
    from broker.platforms.base import Context, Rejected
    from broker.platforms.erpnext import ERPNext, map_quotation

    ctx = Context(tenant="acme-fm", platform="erpnext", default_site="LIS-HAL", options={"currency": "USD"})
    with pytest.raises(Rejected) as refused:
        map_quotation(json.loads(QUOTE_BODY), ctx)
    assert (refused.value.status, refused.value.detail) == (
        422,
        "field 'currency': the quotation is in 'EUR'; the tenant bills in USD",
    )
    assert ERPNext().api_headers("key-1", "secret-1") == {"Authorization": "token key-1:secret-1"}
    assert ERPNext().api_headers(None, "key-1:secret-1") == {"Authorization": "token key-1:secret-1"}
