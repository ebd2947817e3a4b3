"""MaintainX webhooks through ``broker ingest`` (real HTTP, the embedded Kafka, the platform emulator):
the signature as MaintainX signs it, the mapping of a hydrated work order, and what is ignored."""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from broker.platforms.emulator.maintainx import webhook
from broker.platforms.maintainx import signature_header
from tests.intake_support import Intake, problem, route, sample_request
from tests.intake_support import published as _events

pytestmark = pytest.mark.integration

HEADERS, BODY, VECTOR = sample_request("maintainx", "webhook_work_order_status_change")
SECRET = VECTOR["secret"].encode()
SIGNED_AT = int(VECTOR["timestamp"])
PATH = "/webhooks/maintainx/acme-fm"
SIGNATURE = "x-maintainx-webhook-body-signature"
CONTEXT = {
    "clients": {"CLI-HAD": "CLI-HAL"},
    "sites": {"611": "LIS-HAL-ROOF"},
    "technicians": {"31": "T31", "32": "T32"},
    "timezone": "Europe/Lisbon",
}


def test_the_sample_webhook_becomes_one_hydrated_work_order_event(kafka_events, platforms):
    routes = {("maintainx", "acme-fm"): route("maintainx", SECRET, platforms, **CONTEXT)}
    with Intake(kafka_events, clock=lambda: SIGNED_AT + 60, webhooks=routes) as intake:
        answer = intake.post(BODY, HEADERS, PATH)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": ["maintainx:5550123:DONE:1"], "duplicates": [], "tenant": "acme-fm"}
        # MaintainX sends again (no answer in 10 s): nothing new, still 2xx, and no second API call
        again = intake.post(BODY, HEADERS, PATH)
        assert again.status_code == 202
        assert again.json() == {"accepted": [], "duplicates": ["maintainx:5550123:DONE:1"], "tenant": "acme-fm"}
    assert platforms.requests("maintainx") == ["GET /maintainx/v1/workorders/5550123"]
    [event] = _events(kafka_events)
    assert event == {
        "specversion": "1.0",
        "id": "maintainx:5550123:DONE:1",
        "source": "/platforms/maintainx",
        "type": "maintenance.work_order.completed",
        "time": "2025-03-15T12:40:07+00:00",
        "subject": "work-orders/5550123",
        "datacontenttype": "application/json",
        "tenant": "acme-fm",
        "data": {
            "revision": 1,
            "client_id": "CLI-HAL",
            "site_id": "LIS-HAL-ROOF",
            "time_entries": [
                {"id": "time-1", "technician_id": "T31", "duration_seconds": 11700},
                {"id": "time-2", "technician_id": "T32", "duration_seconds": 11700},
            ],
            "parts": [
                {
                    "id": "963",
                    "sku": "CTR-40A",
                    "description": "Contactor 40A 3P",
                    "quantity": "1",
                    "unit": "un",
                    "unit_cost": "38.50",
                },
                {
                    "id": "964",
                    "sku": "REF-R410A",
                    "description": "Refrigerant R410A (kg)",
                    "quantity": "3",
                    "unit": "un",
                    "unit_cost": "24.00",
                },
            ],
            "expenses": [{"id": "expense-1", "description": "Parking", "amount": "6.50"}],
            "contract_ref": "ABONO-2025-HAD",
            "asset_ids": ["42001"],
            "summary": "Chiller CH-01 tripping on high pressure",
            "work_order_id": "5550123",
            "kind": "corrective",
        },
    }


def test_signature_vectors(kafka_events, platforms):
    routes = {("maintainx", "acme-fm"): route("maintainx", SECRET, platforms, **CONTEXT)}
    header = "x-maintainx-webhook-body-signature"
    with Intake(kafka_events, clock=lambda: SIGNED_AT, webhooks=routes) as intake:
        tampered = BODY.replace(b'"DONE"', b'"DONE" ')
        assert "does not match" in problem(intake.post(tampered, HEADERS, PATH), 401)
        wrong = dict(HEADERS, **{header: signature_header(b"another secret", SIGNED_AT, BODY)})
        assert "does not match" in problem(intake.post(BODY, wrong, PATH), 401)
        missing = {k: v for k, v in HEADERS.items() if k != header}
        assert (
            problem(intake.post(BODY, missing, PATH), 401) == f"header {header!r} is missing: the request is not signed"
        )
        garbled = dict(HEADERS, **{header: "v1=abc"})
        assert "expected 't=<timestamp>,v1=<hex>'" in problem(intake.post(BODY, garbled, PATH), 401)
    # the same request, correctly signed, 301 s later than its timestamp: stale
    with Intake(kafka_events, clock=lambda: SIGNED_AT + 301, webhooks=routes) as intake:
        detail = problem(intake.post(BODY, HEADERS, PATH), 401)
        assert detail == (f"header {header!r}: timestamp {SIGNED_AT} is 301 s from now; the tolerance is 300 s")
    assert _events(kafka_events) == []
    assert platforms.requests("maintainx") == []  # nothing is fetched for an unverified webhook


def test_other_statuses_are_ignored_and_unknown_routes_are_404(kafka_events, platforms):
    routes = {("maintainx", "acme-fm"): route("maintainx", SECRET, platforms, **CONTEXT)}
    now = int(time.time())
    with Intake(kafka_events, webhooks=routes) as intake:
        headers, body = webhook(SECRET, 5550123, timestamp=now, occurred_at="2025-03-15T10:00:00Z", status="ON_HOLD")
        answer = intake.post(body, headers, PATH)
        assert answer.status_code == 200
        assert answer.json() == {"ignored": "newStatus 'ON_HOLD' is not a completion", "tenant": "acme-fm"}
        headers, body = webhook(SECRET, 5550123, timestamp=now, occurred_at="2025-03-15T10:00:00Z")
        assert "'nordic-hvac'" in problem(intake.post(body, headers, "/webhooks/maintainx/nordic-hvac"), 404)
        assert "'upkeep'" in problem(intake.post(body, headers, "/webhooks/upkeep/acme-fm"), 404)
        # a work order the API does not know: 422 naming it
        headers, body = webhook(SECRET, 999, timestamp=now, occurred_at="2025-03-15T10:00:00Z")
        assert problem(intake.post(body, headers, PATH), 422) == "the maintainx API has no workorders/999 (HTTP 404)"
        # the API down: 503 with Retry-After, so MaintainX sends it again
        platforms.inject_fault("503", times=10)
        headers, body = webhook(SECRET, 5550123, timestamp=now, occurred_at="2025-03-15T10:00:00Z")
        answer = intake.post(body, headers, PATH)
        assert "did not answer GET workorders/5550123 (HTTP 503)" in problem(answer, 503)
        assert answer.headers["retry-after"] == "30"
        # a re-completion after a reopen (doneCount 2) is revision 2
        platforms.reset_state()
        headers, body = webhook(SECRET, 5550123, timestamp=now, occurred_at="2025-03-16T09:00:00Z", done_count=2)
        assert intake.post(body, headers, PATH).json()["accepted"] == ["maintainx:5550123:DONE:2"]
    [event] = _events(kafka_events)
    assert (event["id"], event["time"], event["data"]["revision"]) == (
        "maintainx:5550123:DONE:2",
        "2025-03-16T09:00:00+00:00",
        2,
    )


def _counted(page: str, platform: str) -> dict[str, int]:
    pattern = rf'broker_webhooks_received_total\{{platform="{platform}",result="([a-z_]+)"\}} ([0-9.e+]+)'
    return {m.group(1): int(float(m.group(2))) for m in re.finditer(pattern, page)}


def test_bad_requests_get_problem_documents_and_are_counted_by_reason(kafka_events, platforms):
    from broker.settings import IntakeSettings

    routes = {("maintainx", "acme-fm"): route("maintainx", SECRET, platforms, **CONTEXT)}
    settings = IntakeSettings(publish_timeout=2.0, max_body_bytes=4000)
    now = int(time.time())
    with Intake(kafka_events, settings, webhooks=routes) as intake:
        before = _counted(httpx.get(f"{intake.url}/metrics/", timeout=10).text, "maintainx")
        big = b'{"pad": "' + b"x" * 4000 + b'"}'
        headers = {"content-type": "application/json", SIGNATURE: signature_header(SECRET, now, big)}
        assert problem(intake.post(big, headers, PATH), 413) == "the body is 4011 bytes; the limit is 4000"
        headers, body = webhook(SECRET, 5550123, timestamp=now, occurred_at="2025-03-15T10:00:00Z")
        form = dict(headers, **{"content-type": "application/x-www-form-urlencoded"})
        assert problem(intake.post(body, form, PATH), 415) == (
            "header 'Content-Type': 'application/x-www-form-urlencoded'; expected application/json"
        )
        for raw, detail in (
            (b"\xff\xfe{}", "the body is not JSON: not UTF-8 (invalid start byte at byte 0)"),
            (b'{"workOrderId": ', "the body is not JSON: Expecting value: line 1 column 17 (char 16)"),
            (b"[" * 1500 + b"]" * 1500, "the body is not JSON: maximum recursion depth exceeded while decoding"),
        ):
            signed = {"content-type": "application/json", SIGNATURE: signature_header(SECRET, now, raw)}
            assert problem(intake.post(raw, signed, PATH), 422).startswith(detail), raw[:20]
        odd = json.dumps({"newStatus": "DONE", "workOrderId": [1], "occurredAt": "2025-03-15T10:00:00Z"}).encode()
        signed = {"content-type": "application/json", SIGNATURE: signature_header(SECRET, now, odd)}
        assert problem(intake.post(odd, signed, PATH), 422) == "field 'workOrderId': expected an id, got [1]"
        after = _counted(httpx.get(f"{intake.url}/metrics/", timeout=10).text, "maintainx")
    grew = {result: after.get(result, 0) - before.get(result, 0) for result in after}
    assert {k: v for k, v in grew.items() if v} == {"too_large": 1, "unsupported_media_type": 1, "invalid": 4}
    assert _events(kafka_events) == []
    assert platforms.requests("maintainx") == []
