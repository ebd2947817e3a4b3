"""Odoo webhooks through ``broker ingest`` (real HTTP, the embedded Kafka): Odoo signs nothing, so
the URL carries the tenant's secret; the mapping of a done maintenance request, and what is ignored."""

from __future__ import annotations

import json

import pytest

from broker.settings import TOPIC_EVENTS
from tests.delivery_support import topic_records
from tests.intake_support import Intake, problem, route, sample_request

pytestmark = pytest.mark.integration

_, BODY, _ = sample_request("odoo", "webhook_maintenance_request_done")
SECRET = b"odoo-url-token-3f9c2a7b51e04d68"
PATH = "/webhooks/odoo/acme-fm"
URL = f"{PATH}?token={SECRET.decode()}"
HEADERS = {"content-type": "application/json"}  # all Odoo sends
# A tenant in the Azores (UTC-1 in March): Odoo's datetimes are UTC whatever the tenant's zone.
CONTEXT = {
    "clients": {"7": "CLI-HAL"},
    "sites": {"7": "LIS-HAL-ROOF"},
    "technicians": {"9": "T31"},
    "timezone": "Atlantic/Azores",
}
ENVELOPE = {"specversion": "1.0", "source": "/platforms/odoo", "datacontenttype": "application/json"}


def _routes() -> dict:
    return {("odoo", "acme-fm"): route("odoo", SECRET, **CONTEXT)}


def _events(bootstrap: str) -> dict[str, dict]:
    return {event["id"]: event for event in (json.loads(r.value) for r in topic_records(bootstrap, TOPIC_EVENTS))}


def _body(**changes) -> bytes:
    return json.dumps({**json.loads(BODY), **changes}, sort_keys=True).encode()


def test_the_sample_webhook_becomes_one_work_order_event(kafka_events):
    done = "odoo:maintenance.request:41:2025-03-15"
    preventive = "odoo:maintenance.request:42:2025-03-16"
    with Intake(kafka_events, webhooks=_routes()) as intake:
        answer = intake.post(BODY, HEADERS, URL)
        assert answer.status_code == 202, answer.text
        assert answer.json() == {"accepted": [done], "duplicates": [], "tenant": "acme-fm"}
        # the automation rule runs again (the request saved again in its done stage): nothing new
        again = intake.post(BODY, HEADERS, URL)
        assert again.status_code == 202
        assert again.json() == {"accepted": [], "duplicates": [done], "tenant": "acme-fm"}
        # a preventive request, 2.5001 h (9000.36 s: 9000), without a scheduled date, equipment not mapped
        body = _body(
            _id=42,
            id=42,
            maintenance_type="preventive",
            close_date="2025-03-16",
            duration=2.5001,
            schedule_date=False,
            equipment_id=8,
            name="Quarterly PM CH-01",
        )
        assert intake.post(body, HEADERS, URL).json()["accepted"] == [preventive]
    assert _events(kafka_events) == {
        done: {
            **ENVELOPE,
            "id": done,
            "type": "maintenance.work_order.completed",
            "time": "2025-03-15T01:00:00+00:00",  # close_date at midnight in the Azores
            "subject": "maintenance-requests/41",
            "tenant": "acme-fm",
            "data": {
                "revision": 1,
                "client_id": "CLI-HAL",
                "site_id": "LIS-HAL-ROOF",
                "time_entries": [
                    # 3.25 h from schedule_date, 09:00 UTC
                    {
                        "id": "time-1",
                        "technician_id": "T31",
                        "duration_seconds": 11700,
                        "start": "2025-03-15T09:00:00+00:00",
                    }
                ],
                "parts": [],
                "expenses": [],
                "summary": "Chiller CH-01 tripping on high pressure",
                "asset_ids": ["7"],  # the equipment, as Odoo numbers it (not mapped like client and site)
                "work_order_id": "41",
                "kind": "corrective",
            },
        },
        preventive: {
            **ENVELOPE,
            "id": preventive,
            "type": "maintenance.scheduled_job.closed",
            "time": "2025-03-16T01:00:00+00:00",
            "subject": "maintenance-requests/42",
            "tenant": "acme-fm",
            "data": {
                "revision": 1,
                "client_id": "8",
                "site_id": "8",
                "time_entries": [{"id": "time-1", "technician_id": "T31", "duration_seconds": 9000}],
                "parts": [],
                "expenses": [],
                "summary": "Quarterly PM CH-01",
                "asset_ids": ["8"],
                "scheduled_job_id": "42",
            },
        },
    }


def test_the_url_token_vectors(kafka_events):
    missing = "query parameter 'token' is missing: Odoo signs nothing, the webhook's URL must carry the secret"
    mismatch = "query parameter 'token': the token does not match the tenant's secret"
    with Intake(kafka_events, webhooks=_routes()) as intake:
        assert problem(intake.post(BODY, HEADERS, PATH), 401) == missing
        assert problem(intake.post(BODY, HEADERS, f"{PATH}?token="), 401) == missing
        assert problem(intake.post(BODY, HEADERS, f"{PATH}?token=another-secret"), 401) == mismatch
        assert problem(intake.post(BODY, HEADERS, f"{PATH}?token={SECRET.decode()[:-1]}"), 401) == mismatch
        # in a header instead of the URL: still missing
        assert problem(intake.post(BODY, dict(HEADERS, token=SECRET.decode()), PATH), 401) == missing
        # another tenant's URL with this token: no such route
        assert "'nordic-hvac'" in problem(intake.post(BODY, HEADERS, "/webhooks/odoo/nordic-hvac?token=x"), 404)
    assert _events(kafka_events) == {}


def test_what_is_ignored_or_refused(kafka_events):
    with Intake(kafka_events, webhooks=_routes()) as intake:
        answer = intake.post(_body(close_date=False), HEADERS, URL)
        assert (answer.status_code, answer.json()) == (
            200,
            {"ignored": "maintenance.request 41 has no close_date: it is not done", "tenant": "acme-fm"},
        )
        assert intake.post(_body(close_date=None), HEADERS, URL).status_code == 200
        order = json.dumps({"_action": "Notify billing broker(#13)", "_id": 5, "_model": "sale.order", "state": "sale"})
        answer = intake.post(order.encode(), HEADERS, URL)
        assert (answer.status_code, answer.json()["ignored"]) == (200, "model 'sale.order' bills nothing")

        assert problem(intake.post(_body(equipment_id=False), HEADERS, URL), 422) == (
            "field 'equipment_id': the request names no equipment, which is its client and site; got False"
        )
        no_type = {k: v for k, v in json.loads(BODY).items() if k != "maintenance_type"}
        assert problem(intake.post(json.dumps(no_type).encode(), HEADERS, URL), 422) == (
            "field 'maintenance_type': expected 'corrective' or 'preventive' (select it in the webhook's fields), "
            "got None"
        )
        assert problem(intake.post(_body(user_id=False), HEADERS, URL), 422) == (
            "field 'user_id': the request's 3.25 h name no technician"
        )
        assert problem(intake.post(_body(close_date="15/03/2025"), HEADERS, URL), 422) == (
            "field 'close_date': expected a date (YYYY-MM-DD), got '15/03/2025'"
        )
        # no duration, no technician needed: a request with no time entry
        answer = intake.post(_body(duration=0.0, user_id=False), HEADERS, URL)
        assert answer.json()["accepted"] == ["odoo:maintenance.request:41:2025-03-15"]
    [event] = _events(kafka_events).values()
    assert event["data"]["time_entries"] == []
