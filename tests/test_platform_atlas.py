"""Atlas CMMS webhooks through ``broker ingest`` (real HTTP, the embedded Kafka, the platform emulator):
the signature as Atlas signs it (the body only), the mapping of a hydrated work order, what is
ignored, and the API's failures."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from broker.platforms.atlas import signature
from broker.platforms.emulator import PlatformEmulator, sample
from broker.platforms.emulator.atlas import webhook
from tests.intake_support import Intake, problem, route, sample_request
from tests.intake_support import published as _events

pytestmark = pytest.mark.integration

HEADERS, BODY, VECTOR = sample_request("atlas", "webhook_work_order_status_change")
SECRET = VECTOR["secret"].encode()
PATH = "/webhooks/atlas/acme-fm"
CONTEXT = {
    "clients": {"88": "CLI-HAD"},
    "sites": {"777": "LIS-A-RT"},
    "technicians": {"1001": "tech-01", "1002": "tech-02"},
    "timezone": "Europe/Lisbon",
}
HYDRATION = [
    "GET /atlas/labors/work-order/12345",
    "GET /atlas/part-quantities/work-order/12345",
    "GET /atlas/additional-costs/work-order/12345",
]


def _routes(platforms: PlatformEmulator, **context) -> dict:
    return {("atlas", "acme-fm"): route("atlas", SECRET, platforms, **dict(CONTEXT, **context))}


def test_the_sample_webhook_becomes_one_hydrated_work_order_event(kafka_events, platforms):
    assert signature(SECRET, BODY) == HEADERS["X-Webhook-Signature"]  # the sample's test vector
    with Intake(kafka_events, webhooks=_routes(platforms)) as intake:
        answer = intake.post(BODY, HEADERS, PATH)
        assert answer.status_code == 202, answer.text
        event_id = "atlas:12345:COMPLETE:2025-03-15T12:40:07+00:00"
        assert answer.json() == {"accepted": [event_id], "duplicates": [], "tenant": "acme-fm"}
        # the same body again (a replay: X-Webhook-Timestamp and X-Webhook-Id are not signed and
        # change per send): verified, but a duplicate; nothing new
        replay = dict(HEADERS, **{"X-Webhook-Timestamp": "1742046008000", "X-Webhook-Id": "another-uuid"})
        again = intake.post(BODY, replay, PATH)
        assert again.status_code == 202
        assert again.json() == {"accepted": [], "duplicates": [event_id], "tenant": "acme-fm"}
    # serialize on: the work order is in the body; labours, parts and costs are fetched
    assert platforms.requests("atlas") == HYDRATION * 2
    [event] = _events(kafka_events)
    assert event == {
        "specversion": "1.0",
        "id": "atlas:12345:COMPLETE:2025-03-15T12:40:07+00:00",
        "source": "/platforms/atlas",
        "type": "maintenance.work_order.completed",
        "time": "2025-03-15T12:40:07+00:00",
        "subject": "work-orders/12345",
        "datacontenttype": "application/json",
        "tenant": "acme-fm",
        "data": {
            "revision": 1,
            "client_id": "CLI-HAD",
            "site_id": "LIS-A-RT",
            "time_entries": [
                {
                    "id": "901",
                    "technician_id": "tech-01",
                    "start": "2025-03-15T09:05:00+00:00",
                    "duration_seconds": 11700,
                },
                {
                    "id": "902",
                    "technician_id": "tech-02",
                    "start": "2025-03-15T09:10:00+00:00",
                    "duration_seconds": 11700,
                },
            ],
            "parts": [
                {
                    "id": "301",
                    "sku": "CTR-40A",
                    "description": "Contactor 40A 3P",
                    "quantity": "1",
                    "unit": "un",
                    "unit_cost": "38.50",
                },
                {
                    "id": "302",
                    "sku": "REF-R410A",
                    "description": "Refrigerant R410A",
                    "quantity": "2.5",
                    "unit": "kg",
                    "unit_cost": "24.00",
                },
            ],
            "expenses": [{"id": "51", "description": "Parking", "amount": "6.50"}],
            "summary": "Chiller CH-01 tripping on high pressure",
            "asset_ids": ["4201"],
            "work_order_id": "12345",
            "kind": "corrective",
        },
    }


def test_a_preventive_work_order_without_serialize_is_fetched_and_closes_a_scheduled_job(kafka_events, platforms):
    work_order = dict(
        sample("atlas", "webhook_work_order_status_change.body.json")["changedWorkOrder"],
        id=12346,
        title="Quarterly chiller inspection",
        completedOn="2025-03-17 11:30:00",  # naive: read in the tenant's time zone (Lisbon, UTC+0 in March)
        location=None,
        parentPreventiveMaintenance={"id": 9, "name": "Chiller quarterly"},
        category={"id": 556, "name": "Preventive"},
    )
    platforms.put("atlas", "work-orders", "12346", work_order)
    platforms.put(
        "atlas",
        "labors",
        "12346",
        [
            {"id": 911, "assignedTo": {"id": 1002}, "duration": 5400, "startedAt": 1742205600000},  # epoch ms
            {"id": 912, "assignedTo": {"id": 1001}, "duration": 600, "includeToTotalTime": False},
            {"id": 913, "assignedTo": {"id": 1001}, "duration": 0, "startedAt": None, "status": "RUNNING"},
        ],
    )
    platforms.put(
        "atlas",
        "part-quantities",
        "12346",
        [
            {"id": 311, "quantity": 6, "part": {"id": 45, "name": "Filter G4", "cost": Decimal("5.1"), "unit": None}},
            {"id": 312, "quantity": 0, "part": {"id": 46, "name": "Belt", "cost": Decimal("7.8"), "barcode": "BELT"}},
            {
                "id": 313,
                "quantity": Decimal("0.25"),
                "part": {"id": 47, "name": "Grease", "cost": Decimal("12.345"), "unit": "kg"},
            },
        ],
    )
    platforms.put(
        "atlas",
        "additional-costs",
        "12346",
        [
            {"id": 61, "description": "", "cost": 8, "includeToTotalCost": True, "category": {"name": "Parking"}},
            {"id": 62, "description": "Lunch", "cost": Decimal("11.9"), "includeToTotalCost": False},
        ],
    )
    routes = _routes(platforms, default_site="LIS-A-RT")
    headers, body = webhook(SECRET, 12346, occurred_at="2025-03-17T11:30:02.000+00:00")  # changedWorkOrder: null
    with Intake(kafka_events, webhooks=routes) as intake:
        answer = intake.post(body, headers, PATH)
        assert answer.status_code == 202, answer.text
    assert platforms.requests("atlas") == [
        "GET /atlas/work-orders/12346",
        "GET /atlas/labors/work-order/12346",
        "GET /atlas/part-quantities/work-order/12346",
        "GET /atlas/additional-costs/work-order/12346",
    ]
    [event] = _events(kafka_events)
    assert event == {
        "specversion": "1.0",
        "id": "atlas:12346:COMPLETE:2025-03-17T11:30:00+00:00",
        "source": "/platforms/atlas",
        "type": "maintenance.scheduled_job.closed",
        "time": "2025-03-17T11:30:00+00:00",
        "subject": "work-orders/12346",
        "datacontenttype": "application/json",
        "tenant": "acme-fm",
        "data": {
            "revision": 1,
            "client_id": "CLI-HAD",
            "site_id": "LIS-A-RT",
            "time_entries": [
                {
                    "id": "911",
                    "technician_id": "tech-02",
                    "start": "2025-03-17T10:00:00+00:00",
                    "duration_seconds": 5400,
                }
            ],
            "parts": [
                {
                    "id": "311",
                    "sku": "45",
                    "description": "Filter G4",
                    "quantity": "6",
                    "unit": "un",
                    "unit_cost": "5.10",
                },
                {
                    "id": "313",
                    "sku": "47",
                    "description": "Grease",
                    "quantity": "0.25",
                    "unit": "kg",
                    "unit_cost": "12.345",
                },
            ],
            "expenses": [{"id": "61", "description": "Parking", "amount": "8.00"}],
            "summary": "Quarterly chiller inspection",
            "asset_ids": ["4201"],  # the sample's asset, kept by the work order fetched
            "scheduled_job_id": "12346",
        },
    }


def test_signature_vectors(kafka_events, platforms):
    header = "X-Webhook-Signature"
    with Intake(kafka_events, webhooks=_routes(platforms)) as intake:
        tampered = BODY.replace(b'"COMPLETE"', b'"COMPLETE" ', 1)
        assert problem(intake.post(tampered, HEADERS, PATH), 401) == (
            "header 'x-webhook-signature': the signature does not match the body"
        )
        wrong = dict(HEADERS, **{header: signature(b"another secret", BODY)})
        assert "does not match" in problem(intake.post(BODY, wrong, PATH), 401)
        missing = {k: v for k, v in HEADERS.items() if k != header}
        assert problem(intake.post(BODY, missing, PATH), 401) == (
            "header 'x-webhook-signature' is missing: the request is not signed"
        )
        empty = dict(HEADERS, **{header: ""})
        assert "is missing" in problem(intake.post(BODY, empty, PATH), 401)
        # the signature over the body as Atlas would re-serialise it (spaces) does not match the raw bytes
        reserialised = json.dumps(json.loads(BODY)).encode()
        assert "does not match" in problem(intake.post(reserialised, HEADERS, PATH), 401)
    assert _events(kafka_events) == []
    assert platforms.requests("atlas") == []  # nothing is fetched for an unverified webhook


def test_other_events_and_statuses_are_ignored(kafka_events, platforms):
    work_order = sample("atlas", "webhook_work_order_status_change.body.json")["changedWorkOrder"]
    with Intake(kafka_events, webhooks=_routes(platforms)) as intake:
        headers, body = webhook(
            SECRET, 12345, occurred_at="2025-03-15T10:00:00Z", changed_work_order=work_order, status="ON_HOLD"
        )
        answer = intake.post(body, headers, PATH)
        assert answer.status_code == 200
        assert answer.json() == {"ignored": "newStatus 'ON_HOLD' is not a completion", "tenant": "acme-fm"}
        headers, body = webhook(SECRET, 12345, occurred_at="2025-03-15T10:00:00Z", event="WORK_ORDER_CHANGE")
        assert intake.post(body, headers, PATH).json() == {
            "ignored": "webhook event 'WORK_ORDER_CHANGE' bills nothing",
            "tenant": "acme-fm",
        }
        # no X-Webhook-Event header: the (signed) body's shape decides
        part_change = json.dumps({"partId": 41, "changedPart": None, "occurredAt": "2025-03-15T10:00:00Z"}).encode()
        headers = {"content-type": "application/json", "X-Webhook-Signature": signature(SECRET, part_change)}
        assert intake.post(part_change, headers, PATH).json() == {
            "ignored": "the body is not a work order status change (no workOrderId and newStatus)",
            "tenant": "acme-fm",
        }
        headers = {k: v for k, v in HEADERS.items() if k != "X-Webhook-Event"}
        assert intake.post(BODY, headers, PATH).status_code == 202
        # serialize off and the work order reopened since: ignored (its next completion is another webhook)
        platforms.put("atlas", "work-orders", "12347", dict(work_order, id=12347, status="IN_PROGRESS"))
        headers, body = webhook(SECRET, 12347, occurred_at="2025-03-15T10:00:00Z")
        assert intake.post(body, headers, PATH).json() == {
            "ignored": "work order 12347 is no longer complete (status 'IN_PROGRESS')",
            "tenant": "acme-fm",
        }
        # a work order the API does not know: 422 naming it
        headers, body = webhook(SECRET, 999, occurred_at="2025-03-15T10:00:00Z")
        assert problem(intake.post(body, headers, PATH), 422) == "the atlas API has no work-orders/999 (HTTP 404)"
    assert platforms.requests("atlas") == [*HYDRATION, "GET /atlas/work-orders/12347", "GET /atlas/work-orders/999"]
    assert [event["id"] for event in _events(kafka_events)] == ["atlas:12345:COMPLETE:2025-03-15T12:40:07+00:00"]


def test_the_api_down_is_503_and_its_429_is_waited_out(kafka_events, platforms):
    routes = _routes(platforms)
    refused = _routes(platforms)
    refused[("atlas", "acme-fm")].api_headers = {"Authorization": "Bearer an-expired-jwt"}
    with Intake(kafka_events, webhooks=refused) as intake:
        answer = intake.post(BODY, HEADERS, PATH)
        assert problem(answer, 503) == (
            "the atlas API refused the broker's credentials (HTTP 401); check the tenant's webhooks api settings"
        )
        assert answer.headers["retry-after"] == "30"
    with Intake(kafka_events, webhooks=routes) as intake:
        platforms.inject_fault("503", times=4)  # every attempt of the first GET
        answer = intake.post(BODY, HEADERS, PATH)
        assert "did not answer GET labors/work-order/12345 (HTTP 503)" in problem(answer, 503)
        assert answer.headers["retry-after"] == "30"
        platforms.reset_state()
        platforms.inject_fault("429", times=1)  # the first GET is throttled once, then retried
        assert intake.post(BODY, HEADERS, PATH).json()["accepted"] == ["atlas:12345:COMPLETE:2025-03-15T12:40:07+00:00"]
    assert platforms.requests("atlas") == ["GET /atlas/labors/work-order/12345", *HYDRATION]
    assert platforms.count_429 == 1
    assert len(_events(kafka_events)) == 1
