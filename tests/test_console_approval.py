"""The console's approve and reject actions over a status database (no Kafka: the decision publisher is a fake):
who may decide, on what, the audit rows, the 202 answer with the decision's id, the page's buttons, and the
status view's rows for ``awaiting_approval`` / ``rejected`` outcomes and ``billing.approvals`` records."""

from __future__ import annotations

import json

import pytest

from broker.approvals import ApprovalDecision, PublishedDecision, decision_event
from broker.statusdb.mapping import Consumed, map_record
from broker.statusdb.read import document_history, get_invoice
from connectors.sdk.invoice import DeliveryOutcome, Invoice
from tests.console_support import T0, console_client, filled_database, scenario
from tests.status_view_support import as_bytes, invoice, outcome
from tests.test_console import ALICE, BOB, CAROL, audit_rows, problem

HELD = invoice(wo="1005", hours="3")
HELD_2 = invoice(wo="1006", hours="1")


def with_outcomes(*results: tuple[Invoice, DeliveryOutcome]) -> list[Consumed]:
    """The console's scenario plus, for each ``(invoice, outcome)`` of ``results``, the invoice and then its outcome."""
    out = scenario()
    for n, (inv, result) in enumerate(results):
        at = T0 + 1000 + 10 * n
        out.append(Consumed("billing.invoices", 0, 100 + n, inv.order_key.encode(), as_bytes(inv), (), at))
        out.append(Consumed("billing.deliveries", 0, 100 + n, inv.invoice_key.encode(), as_bytes(result), (), at + 5))
    return out


def _awaiting() -> list[Consumed]:
    """The console's scenario plus two acme-fm invoices awaiting approval (WO 1005 and 1006)."""
    why = "client CLI-HAL requires approval"
    return with_outcomes(*((i, outcome(i, "awaiting_approval", error=why, billed_total="0")) for i in (HELD, HELD_2)))


class FakeKafka:
    """Takes decisions as Kafka would: each at the next offset of partition 1."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ApprovalDecision]] = []
        self.fail: Exception | None = None

    def __call__(self, bootstrap: str, decision: ApprovalDecision) -> PublishedDecision:
        if self.fail is not None:
            raise self.fail
        self.sent.append((bootstrap, decision))
        return PublishedDecision(decision.id, "billing.approvals", 1, len(self.sent) - 1)


@pytest.fixture
def engine(tmp_path):
    engine = filled_database(tmp_path, _awaiting())
    yield engine
    engine.dispose()


@pytest.fixture
def kafka():
    return FakeKafka()


@pytest.fixture
def client(engine, kafka):
    return console_client(engine, bootstrap="kafka:9092", decider=kafka)


def test_the_status_view_shows_awaiting_approval_and_rejected(engine):
    row = get_invoice(engine, HELD.invoice_key)
    assert row is not None and row.status == "awaiting_approval" and row.error == "client CLI-HAL requires approval"
    rejected = map_record(
        Consumed("billing.deliveries", 0, 9, HELD.invoice_key.encode(), as_bytes(outcome(HELD, "rejected")), (), 1)
    )
    assert rejected.invoices[0].columns["outcome"] == "rejected"
    decision = decision_event(True, HELD.invoice_key, "bob")
    raw = decision.model_dump_json(exclude_none=True).encode()
    mapped = map_record(Consumed("billing.approvals", 1, 3, HELD.order_key.encode(), raw, (), T0))
    assert mapped.invoices == () and mapped.unreadable is None
    assert mapped.event is not None
    assert (mapped.event["kind"], mapped.event["name"], mapped.event["invoice_key"]) == (
        "approval",
        "approved",
        HELD.invoice_key,
    )
    bad = map_record(Consumed("billing.approvals", 1, 4, b"k", b'{"type": "billing.invoice.approved"}', (), T0))
    assert bad.unreadable is not None and bad.unreadable["error"].startswith("not a valid approval decision")


def test_approve_publishes_the_decision_audits_it_and_answers_202(client, engine, kafka):
    answer = client.post(f"/api/documents/{HELD.order_key}/approve", auth=BOB)
    assert answer.status_code == 202, answer.text
    body = answer.json()
    [(bootstrap, decision)] = kafka.sent
    assert bootstrap == "kafka:9092"
    assert body == {
        "decision": decision.id,
        "type": "billing.invoice.approved",
        "invoice_key": HELD.invoice_key,
        "operator": "bob",
        "reason": None,
        "to": "billing.approvals:1:0",
    }
    assert (decision.invoice_key, decision.data.operator, decision.order_key) == (
        HELD.invoice_key,
        "bob",
        HELD.order_key,
    )
    assert audit_rows(engine) == [("bob", "approve", HELD.invoice_key, "acme-fm", "ok")]
    # a second click before the worker's outcome reached the status view: refused, nothing published
    again = problem(client.post(f"/api/documents/{HELD.order_key}/approve", auth=ALICE), 409)
    assert again["detail"].startswith(f"{HELD.invoice_key} was approved by bob at ")
    refused = problem(client.post(f"/api/documents/{HELD.order_key}/reject", auth=BOB), 409)
    assert refused["title"] == "Already decided" and len(kafka.sent) == 1
    assert [row[4] for row in audit_rows(engine)] == ["ok", "refused", "refused"]


def test_reject_carries_the_reason_and_a_version_can_be_named(client, kafka):
    answer = client.post(
        f"/api/documents/{HELD_2.order_key}/reject",
        json={"invoice_key": HELD_2.invoice_key, "reason": "wrong client"},
        auth=BOB,
    )
    assert answer.status_code == 202, answer.text
    [(_, decision)] = kafka.sent
    assert (decision.type, decision.data.reason) == ("billing.invoice.rejected", "wrong client")
    too_long = problem(
        client.post(f"/api/documents/{HELD.order_key}/reject", json={"reason": "x" * 501}, auth=BOB), 400
    )
    assert too_long["parameter"] == "reason"


def test_only_a_version_awaiting_approval_of_a_visible_tenant_can_be_decided(client, engine, kafka):
    assert problem(client.post(f"/api/documents/{HELD.order_key}/approve", auth=CAROL), 404)["title"] == "Not found"
    assert problem(client.post("/api/documents/acme-fm:wo:9999/approve", auth=BOB), 404)
    delivered = problem(client.post("/api/documents/acme-fm:wo:1001/approve", auth=BOB), 409)
    assert delivered["detail"] == "no version of acme-fm:wo:1001 awaits approval"
    named = problem(
        client.post("/api/documents/acme-fm:wo:1001/approve", json={"invoice_key": "acme-fm:wo:1001:r1"}, auth=BOB),
        409,
    )
    assert named["detail"] == "acme-fm:wo:1001:r1 is paid, not awaiting approval: nothing was changed"
    assert problem(
        client.post(f"/api/documents/{HELD.order_key}/approve", json={"invoice_key": "acme-fm:wo:1005:r9"}, auth=BOB),
        404,
    )
    assert kafka.sent == []
    assert audit_rows(engine) == [("bob", "approve", "acme-fm:wo:1001:r1", "acme-fm", "refused")]


def test_without_kafka_or_when_kafka_fails_the_answer_is_503_and_audited(engine, kafka):
    offline = console_client(engine, decider=kafka)
    assert problem(offline.post(f"/api/documents/{HELD.order_key}/approve", auth=BOB), 503)["title"] == (
        "Kafka not configured"
    )
    kafka.fail = ConnectionError("no broker")
    failing = console_client(engine, bootstrap="kafka:9092", decider=kafka)
    body = problem(failing.post(f"/api/documents/{HELD.order_key}/approve", auth=BOB), 503)
    assert body["detail"] == "ConnectionError: no broker"
    assert [row[4] for row in audit_rows(engine)] == ["failed", "failed"]
    assert client_can_still_approve(engine, kafka)


def client_can_still_approve(engine, kafka) -> bool:
    """A failed attempt is not a decision: approving again works once Kafka answers."""
    kafka.fail = None
    ok = console_client(engine, bootstrap="kafka:9092", decider=kafka)
    return ok.post(f"/api/documents/{HELD.order_key}/approve", auth=BOB).status_code == 202


def test_the_page_shows_the_buttons_and_the_forms_decide(client, engine, kafka):
    login = client.post("/login", data={"username": "bob", "password": "bob-pw", "next": "/"})
    assert login.status_code == 303
    page = client.get(f"/documents/{HELD.order_key}")
    assert page.status_code == 200
    assert f'action="/documents/{HELD.order_key}/approve"' in page.text
    assert f'<input type="hidden" name="invoice_key" value="{HELD.invoice_key}">' in page.text
    assert "awaiting approval" in page.text
    assert 'id="approve"' not in client.get("/documents/acme-fm:wo:1001").text  # nothing awaits there
    done = client.post(f"/documents/{HELD.order_key}/reject", data={"invoice_key": HELD.invoice_key, "reason": "no"})
    assert done.status_code == 303 and done.headers["location"].startswith(
        f"/documents/{HELD.order_key}?notice=Rejected"
    )
    assert kafka.sent[0][1].type == "billing.invoice.rejected" and kafka.sent[0][1].data.reason == "no"
    again = client.post(f"/documents/{HELD.order_key}/approve", data={"invoice_key": HELD.invoice_key})
    assert "notice=Not+approved" in again.headers["location"]
    assert client.post(f"/documents/{HELD.order_key}/delete", data={}).status_code == 404


def test_decisions_appear_in_the_documents_history(tmp_path):
    decision = decision_event(False, HELD.invoice_key, "bob", "duplicate job")
    raw = decision.model_dump_json(exclude_none=True).encode()
    records = [*_awaiting(), Consumed("billing.approvals", 0, 0, HELD.order_key.encode(), raw, (), T0 + 2000)]
    engine = filled_database(tmp_path, records)
    try:
        events = document_history(engine, HELD.order_key).events
        assert [(e.kind, e.name) for e in events] == [
            ("invoice", "r1"),
            ("outcome", "awaiting_approval"),
            ("approval", "rejected"),
        ]
        assert json.loads(json.dumps(events[-1].detail))["data"]["reason"] == "duplicate job"
    finally:
        engine.dispose()
