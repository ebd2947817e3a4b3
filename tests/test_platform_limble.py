"""Limble webhooks through ``broker ingest`` (real HTTP, the embedded Kafka, the platform emulator):
the signature as Limble signs it (timestamp and token, not the body), the re-fetched task's mapping,
what is ignored, and the API's failures."""

from __future__ import annotations

import pytest

from broker.platforms.emulator import PlatformEmulator, sample
from broker.platforms.emulator.limble import DEFAULT_CLIENT_ID, webhook
from broker.platforms.limble import Limble, signature
from tests.intake_support import Intake, problem, route, sample_request
from tests.intake_support import published as _events

pytestmark = pytest.mark.integration

HEADERS, BODY, VECTOR = sample_request("limble", "webhook_task_complete")
API_KEY = VECTOR["oldest_limble_api_key"].encode()
SIGNED_AT = int(HEADERS["timestamp"])
PATH = "/webhooks/limble/acme-fm"
CONTEXT = {
    "sites": {"7": "LIS-A-RT"},
    "technicians": {"31": "tech-01", "32": "tech-02"},
    "timezone": "Europe/Lisbon",
}
EVENT_ID = "limble:8203:COMPLETE:1742042400"
HYDRATION = [
    "GET /limble/v2/tasks",
    "GET /limble/v2/tasks/labor",
    "GET /limble/v2/tasks/8203/parts",
    "GET /limble/v2/tasks/8203/invoices",
]


def _routes(platforms: PlatformEmulator, **context) -> dict:
    return {("limble", "acme-fm"): route("limble", API_KEY, platforms, **dict(CONTEXT, **context))}


def test_the_key_is_the_hex_sha256_of_the_oldest_api_key():
    # the sample's test vector: HMAC-SHA256 keyed with the 64 hex characters of SHA-256(API key)
    assert signature(API_KEY, HEADERS["timestamp"], HEADERS["token"]) == HEADERS["signature"]
    assert signature(API_KEY, HEADERS["timestamp"], HEADERS["token"] + "x") != HEADERS["signature"]


def test_the_sample_webhook_becomes_one_refetched_work_order_event(kafka_events, platforms):
    now = [SIGNED_AT + 60]
    with Intake(kafka_events, clock=lambda: now[0], webhooks=_routes(platforms)) as intake:
        answer = intake.post(BODY, HEADERS, PATH)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": [EVENT_ID], "duplicates": [], "tenant": "acme-fm"}
        # Limble sends it again 10 minutes later (no answer within 10 s), signed afresh: nothing new
        now[0] = SIGNED_AT + 610
        headers, body = webhook(API_KEY, 8203, timestamp=SIGNED_AT + 600)
        again = intake.post(body, headers, PATH)
        assert again.status_code == 202
        assert again.json() == {"accepted": [], "duplicates": [EVENT_ID], "tenant": "acme-fm"}
    assert platforms.requests("limble") == HYDRATION * 2
    [event] = _events(kafka_events)
    assert event == {
        "specversion": "1.0",
        "id": "limble:8203:COMPLETE:1742042400",
        "source": "/platforms/limble",
        "type": "maintenance.work_order.completed",
        "time": "2025-03-15T12:40:00+00:00",
        "subject": "work-orders/8203",
        "datacontenttype": "application/json",
        "tenant": "acme-fm",
        "data": {
            "revision": 1,
            "client_id": "CLI-HAD",
            "site_id": "LIS-A-RT",
            "time_entries": [
                {"id": "time-1", "technician_id": "tech-01", "duration_seconds": 11700},
                {"id": "time-2", "technician_id": "tech-02", "duration_seconds": 11700},
            ],
            "parts": [
                {
                    "id": "3301",
                    "sku": "3301",
                    "description": "Contactor 40A 3P",
                    "quantity": "1",
                    "unit": "un",
                    "unit_cost": "38.50",
                },
                {
                    "id": "3302",
                    "sku": "3302",
                    "description": "Refrigerant R410A (kg)",
                    "quantity": "2.5",
                    "unit": "un",
                    "unit_cost": "24.00",
                },
            ],
            "expenses": [{"id": "77", "description": "Parking", "amount": "6.50"}],
            "contract_ref": "ABONO-2025-HAD",
            "summary": "Chiller CH-01 tripping on high pressure",
            "asset_ids": ["1501"],
            "work_order_id": "8203",
            "kind": "corrective",
        },
    }


def test_a_preventive_task_closes_a_scheduled_job(kafka_events, platforms):
    task = dict(
        sample("limble", "tasks_8203.json")[0],
        taskID=8210,
        name="Quarterly chiller inspection",
        type=1,
        dateCompleted=1742211000,
        meta1="CLI-HAD",
        meta2="",
        locationID=0,
        assetID=0,  # Limble's "no asset": no asset_ids
    )
    platforms.put("limble", "tasks", "8210", task)
    platforms.put(
        "limble",
        "labor",
        "8210",
        [
            {"taskID": 8210, "userID": 32, "timeSpent": 5400, "dateLogged": 1742210000},
            {"taskID": 8210, "userID": 31, "timeSpent": 0, "dateLogged": 1742210000},
        ],
    )
    platforms.put("limble", "parts", "8210", [{"partID": 3310, "partName": "Filter G4", "quantity": 6, "usedPrice": 5}])
    routes = _routes(platforms, default_site="LIS-A-RT")
    headers, body = webhook(API_KEY, 8210, timestamp=SIGNED_AT)
    with Intake(kafka_events, clock=lambda: SIGNED_AT, webhooks=routes) as intake:
        answer = intake.post(body, headers, PATH)
        assert answer.status_code == 202, answer.text
    assert platforms.requests("limble") == [
        "GET /limble/v2/tasks",
        "GET /limble/v2/tasks/labor",
        "GET /limble/v2/tasks/8210/parts",
        "GET /limble/v2/tasks/8210/invoices",
    ]
    [event] = _events(kafka_events)
    assert event == {
        "specversion": "1.0",
        "id": "limble:8210:COMPLETE:1742211000",
        "source": "/platforms/limble",
        "type": "maintenance.scheduled_job.closed",
        "time": "2025-03-17T11:30:00+00:00",
        "subject": "work-orders/8210",
        "datacontenttype": "application/json",
        "tenant": "acme-fm",
        "data": {
            "revision": 1,
            "client_id": "CLI-HAD",
            "site_id": "LIS-A-RT",
            "time_entries": [{"id": "time-1", "technician_id": "tech-02", "duration_seconds": 5400}],
            "parts": [
                {
                    "id": "3310",
                    "sku": "3310",
                    "description": "Filter G4",
                    "quantity": "6",
                    "unit": "un",
                    "unit_cost": "5.00",
                }
            ],
            "expenses": [],
            "summary": "Quarterly chiller inspection",
            "scheduled_job_id": "8210",
        },
    }


def test_signature_vectors(kafka_events, platforms):
    with Intake(kafka_events, clock=lambda: SIGNED_AT, webhooks=_routes(platforms)) as intake:
        for name, value in (("timestamp", str(SIGNED_AT + 1)), ("token", HEADERS["token"] + "x")):
            tampered = dict(HEADERS, **{name: value})
            assert problem(intake.post(BODY, tampered, PATH), 401) == (
                "header 'signature': the signature does not match the timestamp and token"
            )
        wrong = dict(HEADERS, signature=signature(b"a newer api key", HEADERS["timestamp"], HEADERS["token"]))
        assert "does not match" in problem(intake.post(BODY, wrong, PATH), 401)
        for name in ("timestamp", "token", "signature"):
            missing = {k: v for k, v in HEADERS.items() if k != name}
            assert problem(intake.post(BODY, missing, PATH), 401) == (
                f"header {name!r} is missing: the request is not signed"
            )
        garbled = dict(HEADERS, timestamp="2025-03-15T12:40:10Z")
        assert problem(intake.post(BODY, garbled, PATH), 401) == (
            "header 'timestamp': expected unix seconds, got '2025-03-15T12:40:10Z'"
        )
    # the same request, correctly signed, 301 s after its timestamp: stale
    with Intake(kafka_events, clock=lambda: SIGNED_AT + 301, webhooks=_routes(platforms)) as intake:
        assert problem(intake.post(BODY, HEADERS, PATH), 401) == (
            f"header 'timestamp': timestamp {SIGNED_AT} is 301 s from now; the tolerance is 300 s"
        )
    assert _events(kafka_events) == []
    assert platforms.requests("limble") == []  # nothing is fetched for an unverified webhook


def test_the_unsigned_body_only_names_a_task_the_api_is_asked_about(kafka_events, platforms):
    platforms.put("limble", "tasks", "8204", dict(sample("limble", "tasks_8203.json")[0], taskID=8204, status=0))
    with Intake(kafka_events, clock=lambda: SIGNED_AT, webhooks=_routes(platforms)) as intake:
        # the sample's signed headers with other bodies (the body is not signed): the task the API
        # knows, as it is there; an open task is ignored; an unknown one is refused; a non-numeric id
        # never reaches the API
        forged = BODY.replace(b'"user":"tech01@example.com"', b'"user":"mallory@example.com","dateCompleted":1')
        assert intake.post(forged, HEADERS, PATH).json()["accepted"] == [EVENT_ID]
        open_task = BODY.replace(b"8203", b"8204")
        assert intake.post(open_task, HEADERS, PATH).json() == {
            "ignored": "task 8204 is not complete in Limble (status 0)",
            "tenant": "acme-fm",
        }
        unknown = BODY.replace(b"8203", b"999")
        assert problem(intake.post(unknown, HEADERS, PATH), 422) == (
            "the limble API has no task 999 (GET /tasks?tasks=999 answered no such task)"
        )
        for task_id in (b'"8203/../../users"', b'"8203?tasks=1"', b"-1", b"true"):
            path_trick = BODY.replace(b"8203", task_id)
            assert "field 'taskID': expected " in problem(intake.post(path_trick, HEADERS, PATH), 422)
    assert platforms.requests("limble") == [*HYDRATION, "GET /limble/v2/tasks", "GET /limble/v2/tasks"]
    assert [event["id"] for event in _events(kafka_events)] == [EVENT_ID]


def test_other_statuses_and_task_types_are_ignored(kafka_events, platforms):
    platforms.put("limble", "tasks", "8205", dict(sample("limble", "tasks_8203.json")[0], taskID=8205, type=5))
    with Intake(kafka_events, clock=lambda: SIGNED_AT, webhooks=_routes(platforms)) as intake:
        for status, category, reason in (
            ("CHANGED COMPLETED TASK", "task", "status 'CHANGED COMPLETED TASK' is not a completion"),
            ("COMPLETE", "po", "category 'po' bills nothing"),
        ):
            headers, body = webhook(API_KEY, 8203, timestamp=SIGNED_AT, status=status, category=category)
            answer = intake.post(body, headers, PATH)
            assert answer.status_code == 200
            assert answer.json() == {"ignored": reason, "tenant": "acme-fm"}
        headers, body = webhook(API_KEY, 8205, timestamp=SIGNED_AT)
        assert intake.post(body, headers, PATH).json() == {
            "ignored": "task 8205 is of type 5 (cycle count), which bills nothing",
            "tenant": "acme-fm",
        }
    assert platforms.requests("limble") == ["GET /limble/v2/tasks"]
    assert _events(kafka_events) == []


def test_the_api_down_is_503_and_its_429_is_waited_out(kafka_events, platforms):
    refused = _routes(platforms)
    refused[("limble", "acme-fm")].api_headers = Limble().api_headers(DEFAULT_CLIENT_ID, "a revoked client secret")
    with Intake(kafka_events, clock=lambda: SIGNED_AT, webhooks=refused) as intake:
        answer = intake.post(BODY, HEADERS, PATH)
        assert problem(answer, 503) == (
            "the limble API refused the broker's credentials (HTTP 401); check the tenant's webhooks api settings"
        )
        assert answer.headers["retry-after"] == "30"
    with Intake(kafka_events, clock=lambda: SIGNED_AT, webhooks=_routes(platforms)) as intake:
        platforms.inject_fault("503", times=4)  # every attempt of the first GET
        answer = intake.post(BODY, HEADERS, PATH)
        assert "did not answer GET tasks (HTTP 503)" in problem(answer, 503)
        assert answer.headers["retry-after"] == "30"
        platforms.reset_state()
        platforms.inject_fault("429", times=1)  # the first GET is throttled once, then retried
        assert intake.post(BODY, HEADERS, PATH).json()["accepted"] == [EVENT_ID]
    assert platforms.requests("limble") == ["GET /limble/v2/tasks", *HYDRATION]
    assert platforms.count_429 == 1
    assert len(_events(kafka_events)) == 1
