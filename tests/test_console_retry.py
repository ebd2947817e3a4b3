"""Parked invoices in the status view and the console, and the console's Retry now (no Kafka: the request
publisher is a fake): statuses ``parked`` / ``needs_reauth`` with their reason and next attempt, the list
filter, the document page's button, ``POST /api/documents/{order_key}/retry`` (who, on what, the audit rows,
the 202 answer) and the ``billing.invoice.retry_requested`` record in the history."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broker.approvals import retry_request_event
from broker.statusdb.mapping import Consumed
from broker.statusdb.read import document_history, get_invoice
from tests.console_support import T0, console_client, filled_database
from tests.status_view_support import invoice, outcome
from tests.test_console import ALICE, BOB, CAROL, audit_rows, keys, problem
from tests.test_console_approval import FakeKafka, with_outcomes

PARKED = invoice(wo="1007", hours="2")
REAUTH = invoice(wo="1008", hours="1")
NEXT = datetime(2026, 3, 2, 10, 5, tzinfo=UTC)
WHY = "retryable: Xero 503: Service Unavailable; next attempt at 2026-03-02T10:05:00+00:00"


def _parked() -> list[Consumed]:
    """The console's scenario plus an acme-fm invoice parked (WO 1007) and one that needs re-authorisation (1008)."""
    reauth = "needs_reauth: xero refused acme-fm's refresh token; next attempt at 2026-03-02T10:05:00+00:00"
    request = retry_request_event(PARKED.invoice_key, "bob").model_dump_json(exclude_none=True).encode()
    return [
        *with_outcomes(
            (PARKED, outcome(PARKED, "parked", error=WHY, next_attempt_at=NEXT, billed_total="0")),
            (REAUTH, outcome(REAUTH, "needs_reauth", error=reauth, next_attempt_at=NEXT, billed_total="0")),
        ),
        # an earlier request, not acted on yet: history only
        Consumed("billing.approvals", 0, 0, PARKED.order_key.encode(), request, (), T0 + 2000),
    ]


@pytest.fixture
def console(tmp_path):
    """``(engine, kafka, client)``: the status database with :func:`_parked`, a fake Kafka, the console over both."""
    engine = filled_database(tmp_path, _parked())
    kafka = FakeKafka()
    yield engine, kafka, console_client(engine, bootstrap="kafka:9092", decider=kafka)
    engine.dispose()


def test_parked_and_needs_reauth_are_statuses_with_reason_and_next_attempt(console):
    engine, _, client = console
    row = get_invoice(engine, PARKED.invoice_key)
    assert row is not None and (row.status, row.error) == ("parked", WHY)
    assert get_invoice(engine, REAUTH.invoice_key).status == "needs_reauth"  # type: ignore[union-attr]
    listed = client.get("/api/invoices?status=parked,needs_reauth", auth=BOB)
    assert keys(listed) == [REAUTH.invoice_key, PARKED.invoice_key]
    item = listed.json()["items"][1]
    assert item["status_reason"] == WHY
    assert listed.json()["status_counts"]["parked"] == 1
    [parked] = [e for e in document_history(engine, PARKED.order_key).events if e.kind == "outcome"]
    assert parked.detail["next_attempt_at"] == "2026-03-02T10:05:00Z"  # type: ignore[index]


def test_retry_publishes_the_request_audits_it_and_answers_202(console):
    engine, kafka, client = console
    answer = client.post(f"/api/documents/{PARKED.order_key}/retry", auth=BOB)
    assert answer.status_code == 202, answer.text
    [(bootstrap, request)] = kafka.sent
    assert bootstrap == "kafka:9092"
    assert answer.json() == {
        "request": request.id,
        "type": "billing.invoice.retry_requested",
        "invoice_key": PARKED.invoice_key,
        "operator": "bob",
        "to": "billing.approvals:1:0",
    }
    assert request.retry_requested and not request.approved and request.order_key == PARKED.order_key
    named = client.post(f"/api/documents/{REAUTH.order_key}/retry", json={"invoice_key": REAUTH.invoice_key}, auth=BOB)
    assert named.status_code == 202 and kafka.sent[1][1].invoice_key == REAUTH.invoice_key
    assert audit_rows(engine) == [
        ("bob", "retry_now", PARKED.invoice_key, "acme-fm", "ok"),
        ("bob", "retry_now", REAUTH.invoice_key, "acme-fm", "ok"),
    ]


def test_only_a_parked_version_of_a_visible_tenant_can_be_retried(console):
    engine, kafka, client = console
    refusals = [  # who, which document (and version), the answer and its detail's start
        (CAROL, PARKED.order_key, None, 404, "no document 'acme-fm:wo:1007' (or not one of your tenants')"),
        (BOB, "acme-fm:wo:9999", None, 404, "no document"),
        (BOB, "acme-fm:wo:1001", None, 409, "no version of acme-fm:wo:1001 is parked"),
        (BOB, "acme-fm:wo:1001", "acme-fm:wo:1001:r1", 409, "acme-fm:wo:1001:r1 is paid, not parked: nothing was"),
    ]
    for who, order_key, version, status, detail in refusals:
        body = {"invoice_key": version} if version else None
        assert problem(client.post(f"/api/documents/{order_key}/retry", json=body, auth=who), status)[
            "detail"
        ].startswith(detail)
    assert kafka.sent == []
    assert audit_rows(engine) == [("bob", "retry_now", "acme-fm:wo:1001:r1", "acme-fm", "refused")]
    offline = console_client(engine, decider=kafka)
    assert problem(offline.post(f"/api/documents/{PARKED.order_key}/retry", auth=ALICE), 503)["title"] == (
        "Kafka not configured"
    )


def test_the_page_shows_reason_next_attempt_and_the_retry_button(console):
    _, kafka, client = console
    assert client.post("/login", data={"username": "bob", "password": "bob-pw", "next": "/"}).status_code == 303
    listing = client.get("/?status=parked")
    assert listing.status_code == 200 and "next attempt at 2026-03-02T10:05:00" in listing.text
    page = client.get(f"/documents/{PARKED.order_key}")
    assert f'action="/documents/{PARKED.order_key}/retry"' in page.text and 'id="retry"' in page.text
    assert "Xero 503: Service Unavailable; next attempt at 2026-03-02T10:05:00+00:00" in page.text
    assert 'id="retry"' not in client.get("/documents/acme-fm:wo:1001").text  # nothing parked there
    done = client.post(f"/documents/{PARKED.order_key}/retry", data={"invoice_key": PARKED.invoice_key})
    assert done.status_code == 303 and "notice=Retry+of" in done.headers["location"]
    assert [d.type for _, d in kafka.sent] == ["billing.invoice.retry_requested"]


def test_a_retry_request_appears_in_the_documents_history(console):
    engine, _, _ = console
    events = document_history(engine, PARKED.order_key).events
    assert [(e.kind, e.name) for e in events] == [
        ("invoice", "r1"),
        ("outcome", "parked"),
        ("approval", "retry_requested"),
    ]
    assert get_invoice(engine, PARKED.invoice_key).status == "parked"  # type: ignore[union-attr]
