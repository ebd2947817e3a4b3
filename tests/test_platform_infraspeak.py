"""Infraspeak webhooks through ``broker ingest`` (real HTTP, the embedded Kafka, the platform emulator):
the bearer token Infraspeak sends, the hydration of failures and scheduled works, the mapping of
their JSON:API documents (naive local times read in the tenant's zone), and what is ignored."""

from __future__ import annotations

import copy

import httpx
import pytest

from broker.platforms.base import Context, Rejected
from broker.platforms.emulator import sample
from broker.platforms.emulator.infraspeak import webhook
from broker.platforms.infraspeak import iso_duration_seconds, map_scheduled_work
from tests.intake_support import Intake, problem, route, sample_request
from tests.intake_support import published as _events

pytestmark = pytest.mark.integration

_, BODY, _ = sample_request("infraspeak", "webhook_failure_completed")
TOKEN = "isk-hook-3c9f27d1a8"  # the bearer token configured on the Infraspeak webhook subscription
SECRET = TOKEN.encode()
HEADERS = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
PATH = "/webhooks/infraspeak/acme-fm"
CONTEXT = {
    "clients": {"CLI-HAD": "CLI-HAL", "8801": "CLI-HAL"},
    "sites": {"LIS-A-RT": "LIS-HAL-ROOF"},
    "technicians": {"912": "T31", "913": "T32"},
    "timezone": "Europe/Lisbon",
    "default_site": "LIS-HAL-ROOF",
}
FAILURE_EVENT = "infraspeak:failures:700123:COMPLETED:2025-03-15T12:40:00"
FAILURE_GET = "/infraspeak/v3/failures/700123?expanded=events,stock.material,location"
PARTS = [
    {
        "id": "s1",
        "sku": "CTR-40A",
        "description": "Contactor 40A 3P",
        "quantity": "1",
        "unit": "un",
        "unit_cost": "38.5",
    },
    {
        "id": "s2",
        "sku": "REF-R410A",
        "description": "Refrigerant R410A",
        "quantity": "2.5",
        "unit": "kg",
        "unit_cost": "24",
    },
]


def _send(intake: Intake, kind: str, record_id: int | str) -> httpx.Response:
    headers, body = webhook(TOKEN, kind, record_id)
    return intake.post(body, headers, PATH)


def _seconds(entry: dict) -> int:
    from datetime import datetime

    return int((datetime.fromisoformat(entry["end"]) - datetime.fromisoformat(entry["start"])).total_seconds())


def test_the_sample_webhook_becomes_one_hydrated_work_order_event(kafka_events, platforms):
    routes = {("infraspeak", "acme-fm"): route("infraspeak", SECRET, platforms, **CONTEXT)}
    with Intake(kafka_events, webhooks=routes) as intake:
        answer = intake.post(BODY, HEADERS, PATH)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": [FAILURE_EVENT], "duplicates": [], "tenant": "acme-fm"}
        # Infraspeak sends it again: hydrated again, nothing new, still 2xx
        again = intake.post(BODY, HEADERS, PATH)
        assert again.status_code == 202
        assert again.json() == {"accepted": [], "duplicates": [FAILURE_EVENT], "tenant": "acme-fm"}
    assert platforms.requests("infraspeak") == ["GET /infraspeak/v3/failures/700123"] * 2
    assert platforms.api("infraspeak").targets == [FAILURE_GET] * 2
    [event] = _events(kafka_events)
    # Lisbon is UTC+0 on 2025-03-15 (summer time starts on 30 March): the local times are the UTC times.
    # Operator 912: 09:05 STARTED -> 10:30 PAUSED, 11:00 RESUMED -> 12:40 COMPLETED; 913: 09:10 -> 12:25.
    assert event == {
        "specversion": "1.0",
        "id": FAILURE_EVENT,
        "source": "/platforms/infraspeak",
        "type": "maintenance.work_order.completed",
        "time": "2025-03-15T12:40:00+00:00",
        "subject": "failures/700123",
        "datacontenttype": "application/json",
        "tenant": "acme-fm",
        "data": {
            "revision": 1,
            "client_id": "CLI-HAL",
            "site_id": "LIS-HAL-ROOF",
            "time_entries": [
                {
                    "id": "e1-e3",
                    "technician_id": "T31",
                    "start": "2025-03-15T09:05:00+00:00",
                    "end": "2025-03-15T10:30:00+00:00",
                },
                {
                    "id": "e2-e6",
                    "technician_id": "T32",
                    "start": "2025-03-15T09:10:00+00:00",
                    "end": "2025-03-15T12:25:00+00:00",
                },
                {
                    "id": "e4-e5",
                    "technician_id": "T31",
                    "start": "2025-03-15T11:00:00+00:00",
                    "end": "2025-03-15T12:40:00+00:00",
                },
            ],
            "parts": PARTS,
            "expenses": [],
            "summary": "WO-2025-0413: Chiller CH-01 tripping on high pressure",
            "asset_ids": ["55012"],  # entity_id: the element worked on
            "work_order_id": "700123",
            "kind": "corrective",
        },
    }
    # the intervals add up to the failure's own total, manpower_duration P0Y0M0DT6H20M0S
    assert (
        sum(_seconds(e) for e in event["data"]["time_entries"]) == 85 * 60 + 195 * 60 + 100 * 60 == 6 * 3600 + 20 * 60
    )


def test_naive_times_are_read_in_the_tenant_time_zone(kafka_events, platforms):
    madrid = dict(CONTEXT, timezone="Europe/Madrid")  # UTC+1 in March 2025 (summer time from 30 March)
    routes = {("infraspeak", "iberia-fm"): route("infraspeak", SECRET, platforms, tenant="iberia-fm", **madrid)}
    with Intake(kafka_events, webhooks=routes) as intake:
        answer = intake.post(BODY, HEADERS, "/webhooks/infraspeak/iberia-fm")
        # the id keeps the platform's local time: changing the tenant's zone does not make a new event
        assert answer.json() == {"accepted": [FAILURE_EVENT], "duplicates": [], "tenant": "iberia-fm"}
    [event] = _events(kafka_events)
    assert (event["tenant"], event["time"]) == ("iberia-fm", "2025-03-15T11:40:00+00:00")
    assert event["data"]["time_entries"] == [
        {
            "id": "e1-e3",
            "technician_id": "T31",
            "start": "2025-03-15T08:05:00+00:00",
            "end": "2025-03-15T09:30:00+00:00",
        },
        {
            "id": "e2-e6",
            "technician_id": "T32",
            "start": "2025-03-15T08:10:00+00:00",
            "end": "2025-03-15T11:25:00+00:00",
        },
        {
            "id": "e4-e5",
            "technician_id": "T31",
            "start": "2025-03-15T10:00:00+00:00",
            "end": "2025-03-15T11:40:00+00:00",
        },
    ]


def test_a_completed_scheduled_work_becomes_a_scheduled_job_closed_event(kafka_events, platforms):
    routes = {("infraspeak", "acme-fm"): route("infraspeak", SECRET, platforms, **CONTEXT)}
    headers, body = webhook(TOKEN, "scheduled_works", 9875096)
    assert body == b'{"data":{"id":"9875096","type":"scheduled_works"}}'
    assert headers == HEADERS
    with Intake(kafka_events, webhooks=routes) as intake:
        answer = intake.post(body, headers, PATH)
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == ["infraspeak:scheduled_works:9875096:COMPLETED:2025-03-17T10:05:00"]
    assert platforms.api("infraspeak").targets == [
        "/infraspeak/v3/works/scheduled/9875096?expanded=events,stock.material,client"
    ]
    [event] = _events(kafka_events)
    # the sample includes no events: one entry of manpower_duration P0Y0M0DT1H55M0S (6900 s) for
    # completed_by_id 913; no location: the tenant's default site; the client is the relationship's 8801
    assert event == {
        "specversion": "1.0",
        "id": "infraspeak:scheduled_works:9875096:COMPLETED:2025-03-17T10:05:00",
        "source": "/platforms/infraspeak",
        "type": "maintenance.scheduled_job.closed",
        "time": "2025-03-17T10:05:00+00:00",
        "subject": "works/scheduled/9875096",
        "datacontenttype": "application/json",
        "tenant": "acme-fm",
        "data": {
            "revision": 1,
            "client_id": "CLI-HAL",
            "site_id": "LIS-HAL-ROOF",
            "time_entries": [{"id": "manpower", "technician_id": "T32", "duration_seconds": 6900}],
            "parts": [],
            "expenses": [],
            "contract_ref": "Hotel Atlantico Demo - Maintenance contract",
            "summary": "Plan 4410, visit 3: Quarterly chiller PM done",
            "asset_ids": ["55012"],
            "scheduled_job_id": "9875096",
        },
    }


def test_authorization_vectors(kafka_events, platforms):
    routes = {("infraspeak", "acme-fm"): route("infraspeak", SECRET, platforms, **CONTEXT)}
    with Intake(kafka_events, webhooks=routes) as intake:
        wrong = dict(HEADERS, authorization="Bearer isk-hook-3c9f27d1a9")
        assert problem(intake.post(BODY, wrong, PATH), 401) == (
            "header 'authorization': the bearer token is not the tenant's Infraspeak webhook token"
        )
        longer = dict(HEADERS, authorization=f"Bearer {TOKEN}0")
        assert "is not the tenant's" in problem(intake.post(BODY, longer, PATH), 401)
        missing = {"content-type": "application/json"}
        assert problem(intake.post(BODY, missing, PATH), 401) == (
            "header 'authorization' is missing: the request is not signed"
        )
        basic = dict(HEADERS, authorization=f"Basic {TOKEN}")
        assert problem(intake.post(BODY, basic, PATH), 401) == (
            "header 'authorization': expected 'Bearer <token>', got scheme 'Basic'"
        )
        bare = dict(HEADERS, authorization=TOKEN)  # the right token without its scheme: refused, and not echoed
        detail = problem(intake.post(BODY, bare, PATH), 401)
        assert detail == "header 'authorization': expected 'Bearer <token>', got no scheme and token"
        empty = dict(HEADERS, authorization="Bearer")
        assert "got no scheme and token" in problem(intake.post(BODY, empty, PATH), 401)
        # the scheme is case-insensitive (RFC 9110)
        assert intake.post(BODY, dict(HEADERS, authorization=f"bearer {TOKEN}"), PATH).status_code == 202
    [event] = _events(kafka_events)
    assert event["id"] == FAILURE_EVENT
    assert platforms.requests("infraspeak") == ["GET /infraspeak/v3/failures/700123"]  # none for the refused


def test_what_is_ignored_refused_and_retried(kafka_events, platforms):
    routes = {("infraspeak", "acme-fm"): route("infraspeak", SECRET, platforms, **CONTEXT)}
    failure = sample("infraspeak", "failure_700123_expanded.json")
    open_failure = copy.deepcopy(failure)
    open_failure["data"]["id"] = "700124"
    open_failure["data"]["attributes"].update(failure_id=700124, status="IN_RESOLUTION", state="IN_RESOLUTION")
    platforms.put("infraspeak", "failures", "700124", open_failure)
    unclosed = copy.deepcopy(failure)  # operator 913's COMPLETED (e6) is missing
    unclosed["data"]["id"] = "700125"
    unclosed["data"]["attributes"]["failure_id"] = 700125
    unclosed["included"] = [item for item in unclosed["included"] if item["id"] != "e6"]
    platforms.put("infraspeak", "failures", "700125", unclosed)
    planned = copy.deepcopy(sample("infraspeak", "scheduled_work_9875096.json"))
    planned["data"]["id"] = "9875097"
    planned["data"]["attributes"].update(schedule_work_id=9875097, state="SCHEDULED")
    platforms.put("infraspeak", "scheduled_works", "9875097", planned)
    with Intake(kafka_events, webhooks=routes) as intake:
        answer = _send(intake, "failures", 700124)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "ignored": "failure 700124 has status 'IN_RESOLUTION', not COMPLETED",
            "tenant": "acme-fm",
        }
        answer = _send(intake, "scheduled_works", 9875097)
        assert answer.json() == {
            "ignored": "scheduled work 9875097 has state 'SCHEDULED', not COMPLETED",
            "tenant": "acme-fm",
        }
        # a start never stopped: 422 naming the event, nothing billed
        detail = problem(_send(intake, "failures", 700125), 422)
        assert detail == (
            "field 'included[1]': event 'e2' (STARTED by operator 913 at '2025-03-15 09:10:00') has no later "
            "PAUSED or COMPLETED of that operator; the completed failure's labour cannot be closed"
        )
        # a record the API does not know; an id that is not one (never put into the API path)
        assert problem(_send(intake, "failures", 999), 422) == ("the infraspeak API has no failures/999 (HTTP 404)")
        assert problem(_send(intake, "failures", "../clients/1"), 422) == (
            "field 'data.id': expected a numeric Infraspeak id, got '../clients/1'"
        )
        assert problem(intake.post(b'{"data":{"id":"1"}}', HEADERS, PATH), 422) == (
            "field 'data.type': expected the record type ('failures', ...), got None"
        )
        calls = ["GET /infraspeak/v3/failures/700124", "GET /infraspeak/v3/works/scheduled/9875097"]
        calls += ["GET /infraspeak/v3/failures/700125", "GET /infraspeak/v3/failures/999"]
        assert platforms.requests("infraspeak") == calls
        # the API down: 503 with Retry-After, so Infraspeak sends it again (4 attempts, each a 503)
        platforms.inject_fault("503", times=4)
        answer = intake.post(BODY, HEADERS, PATH)
        assert "did not answer GET failures/700123 (HTTP 503)" in problem(answer, 503)
        assert answer.headers["retry-after"] == "30"
        # a 429 is waited out (Retry-After: 1 s) and the request tried again
        platforms.inject_fault("429", times=1)
        answer = intake.post(BODY, HEADERS, PATH)
        assert answer.status_code == 202, answer.text
        assert answer.json()["accepted"] == [FAILURE_EVENT]
    assert platforms.count_429 == 1
    assert platforms.requests("infraspeak") == calls + ["GET /infraspeak/v3/failures/700123"] * 6
    assert [event["id"] for event in _events(kafka_events)] == [FAILURE_EVENT]


def test_the_emulator_answers_as_the_api_does(platforms):
    url = platforms.base_url("infraspeak") + "/failures/700123"
    api = {"Authorization": "Bearer infraspeak-token"}
    answer = httpx.get(url)
    assert answer.status_code == 401
    assert answer.json()["errors"][0]["status"] == "401"
    bare = httpx.get(url, headers=api).json()
    assert bare["data"]["attributes"]["status"] == "COMPLETED" and bare["included"] == []
    stock = httpx.get(url, headers=api, params={"expanded": "stock"}).json()
    assert [item["id"] for item in stock["included"]] == ["s1", "s2"]
    full = httpx.get(url, headers=api, params={"expanded": "events,stock.material"}).json()
    assert [item["id"] for item in full["included"]] == ["e1", "e2", "e3", "e4", "e5", "e6", "s1", "s2", "3301", "3302"]
    unknown = httpx.get(url, headers=api, params={"expanded": "invoices"})
    assert unknown.status_code == 400 and "invoices" in unknown.json()["errors"][0]["detail"]


def test_durations_and_a_scheduled_work_without_site():
    assert iso_duration_seconds("P0Y0M0DT1H55M0S", "d") == 6900
    assert iso_duration_seconds("P0Y0M1DT0H0M7S", "d") == 86407
    assert iso_duration_seconds("PT45S", "d") == 45
    assert iso_duration_seconds("P1W", "d") == 7 * 86400
    for bad in ("P", "PT", "P1DT", "PT1.5H", "1H", "P0Y1M0DT0H0M0S", 3600, None):
        with pytest.raises(Rejected) as refused:
            iso_duration_seconds(bad, "data.attributes.manpower_duration")
        assert refused.value.status == 422 and "data.attributes.manpower_duration" in refused.value.detail
    planned = sample("infraspeak", "scheduled_work_9875096.json")
    with pytest.raises(Rejected) as refused:
        map_scheduled_work(planned, Context(tenant="acme-fm", platform="infraspeak"))
    assert refused.value.detail == (
        "field 'data.attributes.local_id': no site given and webhooks.infraspeak.default_site is not set"
    )
