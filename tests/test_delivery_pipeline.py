"""Acceptance: duplicate events, timeout after commit, poison data, replay, amendments.

One Tansu broker, one Xero emulator (spec validation on) and one worker process serve the whole
module (each test uses its own work orders), which keeps the default suite fast. Events go in on
``maintenance.events``, so every test crosses enrich, pricing and delivery.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.cli import main
from broker.demo import Tally
from broker.dlq import key_partition
from broker.embedded import EmbeddedKafka
from broker.kafka import ensure_topics, publish
from broker.settings import TOPIC_EVENTS, TOPIC_INVOICES
from connectors.xero.emulator import XeroEmulator
from tests.conftest import WorkerProcess
from tests.delivery_support import (
    FAST_ENV,
    ORG_ACME,
    ORG_NORDIC,
    delivery_config,
    metric,
    metrics_text,
    outcomes_by_key,
    wait_for,
    work_order,
)

pytestmark = pytest.mark.integration

BAD_CONTACT = "3f1c2a10-5b1e-4c7a-9d01-00000000dead"
BAD_CONTACT_2 = "3f1c2a10-5b1e-4c7a-9d01-00000000beef"
PARTITIONS = 4


class Env:
    def __init__(self, kafka: str, xero: XeroEmulator, worker: WorkerProcess, tally: Tally, tmp: Path):
        self.kafka, self.xero, self.worker, self.tally, self.tmp = kafka, xero, worker, tally, tmp

    def publish(self, *events: bytes) -> None:
        publish(self.kafka, TOPIC_EVENTS, list(events))

    def wait_outcomes(self, key: str, n: int = 1, timeout: float = 60) -> list[dict]:
        wait_for(
            lambda: len(outcomes_by_key(self.tally).get(key, [])) >= n,
            timeout=timeout,
            what=f"{n} outcome(s) of {key}",
            tally=self.tally,
            workers=[self.worker],
        )
        return outcomes_by_key(self.tally)[key]

    def invoices(self, number: str) -> list[dict]:
        return [inv for inv in self.xero.invoices() if inv["InvoiceNumber"] == number]


@pytest.fixture(scope="module")
def env(xero_validator, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("delivery-pipeline")
    kafka = EmbeddedKafka().start()
    xero = XeroEmulator(tenant_ids=(ORG_ACME, ORG_NORDIC), request_validator=xero_validator, hang_seconds=4).start()
    config = delivery_config(
        tmp,
        xero.url,
        settings={
            "acme-fm": {"timeout_seconds": 1.5},
            "nordic-hvac": {"invoice_status": "DRAFT"},
        },
        clients={
            "acme-fm": {
                "CLI-BAD": {"name": "Cliente Sem Contacto, Lda", "contact_id": BAD_CONTACT},
                "CLI-BAD2": {"name": "Outro Cliente, Lda", "contact_id": BAD_CONTACT_2},
            }
        },
    )
    ensure_topics(kafka.bootstrap, PARTITIONS)
    worker = WorkerProcess(config, kafka.bootstrap, tmp, **FAST_ENV).start()
    tally = Tally(kafka.bootstrap)
    e = Env(kafka.bootstrap, xero, worker, tally, tmp)
    try:
        yield e
    finally:
        tally.close()
        worker.stop()
        xero.stop()
        kafka.stop()
        assert not xero.validation_failures, xero.validation_failures
        assert not xero.server_errors, xero.server_errors


def _partition(key: str) -> int:
    return key_partition(key.encode(), PARTITIONS)


# --------------------------------------------------------------------------- duplicate events
def test_same_event_published_three_times_gives_one_invoice(env):
    event = work_order("acme-fm", "DUP-1", minutes=95, parts=2)
    env.publish(event, event, event)
    outcomes = env.wait_outcomes("acme-fm:wo:DUP-1:r1", 3)
    assert sorted(o["outcome"] for o in outcomes) == ["already_delivered", "already_delivered", "created"]
    assert len(env.invoices("ACME-WO-DUP-1-R1")) == 1
    time.sleep(1)
    env.tally.poll(0.5)
    assert len(outcomes_by_key(env.tally)["acme-fm:wo:DUP-1:r1"]) == 3


# --------------------------------------------------------------------------- timeout after commit
@pytest.mark.parametrize("fault", ["drop_after_commit", "timeout_after_commit"])
def test_timeout_after_commit_is_reconciled_by_lookup(env, fault):
    wo = f"TAC-{fault[:4].upper()}"
    calls_before = len(env.xero.calls)
    env.xero.inject_fault(fault)
    env.publish(work_order("acme-fm", wo))
    [outcome] = env.wait_outcomes(f"acme-fm:wo:{wo}:r1")
    number = f"ACME-WO-{wo}-R1"
    assert outcome["outcome"] == "created" and outcome["reconciled"] is True, outcome
    assert outcome["external_number"] == number
    held = env.invoices(number)
    assert len(held) == 1 and outcome["external_id"] == held[0]["InvoiceID"]
    # the emulator stored the invoice and dropped the connection (status 0); the worker then looked
    # the number up instead of sending the invoice again
    calls = [c for c in env.xero.calls[calls_before:] if c[1].lower().startswith("/api.xro/2.0/invoices")]
    assert calls[0] == ("PUT", "/api.xro/2.0/Invoices", 0)
    assert ("GET", "/api.xro/2.0/Invoices", 200) in calls[1:]
    assert [c for c in calls[1:] if c[0] == "PUT"] == []


# --------------------------------------------------------------------------- poison data
def test_validation_error_goes_to_the_dlq_once_and_the_partition_keeps_flowing(env):
    poison_key = "acme-fm:wo:POISON-1"
    partition = _partition(poison_key)
    followers = [f"NEXT-{i}" for i in range(40) if _partition(f"acme-fm:wo:NEXT-{i}") == partition][:3]
    assert len(followers) == 3
    env.publish(work_order("acme-fm", "POISON-1", client="CLI-BAD"), *[work_order("acme-fm", wo) for wo in followers])
    [outcome] = env.wait_outcomes(f"{poison_key}:r1")
    for wo in followers:
        [ok] = env.wait_outcomes(f"acme-fm:wo:{wo}:r1")
        assert ok["outcome"] == "created"
    assert outcome["outcome"] == "dead_lettered" and outcome["attempts"] == 1
    dead = [r for r in env.tally.dead if r["key"] == poison_key.encode()]
    assert len(dead) == 1
    h = dead[0]["headers"]
    assert h["dlq.topic"] == TOPIC_INVOICES and int(h["dlq.partition"]) == partition and int(h["dlq.offset"]) >= 0
    assert h["dlq.stage"] == "deliver" and h["dlq.error.class"] == "permanent"
    assert h["dlq.exception.type"] == "PermanentError" and h["dlq.http.status"] == "400"
    assert BAD_CONTACT in h["dlq.message"] and "does not exist" in h["dlq.message"]
    assert h["dlq.tenant"] == "acme-fm" and h["dlq.connector"] == "xero"
    assert h["dlq.attempts"] == "1" and h["dlq.replay.count"] == "0"
    assert h["dlq.idempotency.key"] == "acme-fm:xero:acme-fm:wo:POISON-1:r1:create"
    assert datetime.fromisoformat(h["dlq.first.failure"]).tzinfo is not None
    assert json.loads(dead[0]["value"])["invoice_number"] == "ACME-WO-POISON-1-R1"  # the original record
    assert env.invoices("ACME-WO-POISON-1-R1") == []
    # the followers on the same partition went through
    assert all(len(env.invoices(f"ACME-WO-{wo}-R1")) == 1 for wo in followers)


# --------------------------------------------------------------------------- replay
def test_replay_after_fixing_the_cause_delivers_once_and_again_does_nothing(env):
    since = datetime.now(UTC).isoformat()
    key = "acme-fm:wo:POISON-2:r1"
    env.publish(work_order("acme-fm", "POISON-2", client="CLI-BAD2"))
    [first] = env.wait_outcomes(key)
    assert first["outcome"] == "dead_lettered"
    runner = CliRunner()
    args = ["--bootstrap-servers", env.kafka, "--tenant", "acme-fm", "--since", since]

    listed = runner.invoke(main, ["dlq", "list", *args, "--format", "json"])
    assert listed.exit_code == 0, listed.output
    [record] = json.loads(listed.output)
    assert record["stage"] == "deliver" and record["error_class"] == "permanent" and record["target"] == TOPIC_INVOICES
    shown = runner.invoke(main, ["dlq", "show", record["id"], "--bootstrap-servers", env.kafka])
    assert shown.exit_code == 0 and "dlq.error.class" in shown.output and "ACME-WO-POISON-2-R1" in shown.output
    assert runner.invoke(main, ["dlq", "show", "billing.dlq:0:999999", "--bootstrap-servers", env.kafka]).exit_code == 1
    assert runner.invoke(main, ["dlq", "show", "nonsense", "--bootstrap-servers", env.kafka]).exit_code == 2

    dry = runner.invoke(main, ["dlq", "replay", *args, "--dry-run"])
    assert dry.exit_code == 0 and "1 would be replayed" in dry.output, dry.output

    env.xero.add_contact("Outro Cliente, Lda", ORG_ACME, contact_id=BAD_CONTACT_2)  # the fix
    replayed = runner.invoke(main, ["dlq", "replay", *args])
    assert replayed.exit_code == 0 and "1 replayed" in replayed.output, replayed.output
    outcomes = env.wait_outcomes(key, 2)
    assert outcomes[1]["outcome"] == "created"
    assert len(env.invoices("ACME-WO-POISON-2-R1")) == 1

    again = runner.invoke(main, ["dlq", "replay", *args])
    assert again.exit_code == 0 and "0 replayed" in again.output, again.output
    time.sleep(2)
    env.tally.poll(0.5)
    assert len(outcomes_by_key(env.tally)[key]) == 2
    assert len(env.invoices("ACME-WO-POISON-2-R1")) == 1


def test_replay_refuses_records_over_the_limit(env):
    """A record that keeps failing is refused once it was replayed ``--limit`` times."""
    since = datetime.now(UTC).isoformat()
    env.publish(work_order("acme-fm", "POISON-3", client="CLI-BAD"))
    env.wait_outcomes("acme-fm:wo:POISON-3:r1")
    runner = CliRunner()
    args = ["--bootstrap-servers", env.kafka, "--tenant", "acme-fm", "--since", since, "--limit", "1"]
    assert "1 replayed" in runner.invoke(main, ["dlq", "replay", *args]).output
    env.wait_outcomes("acme-fm:wo:POISON-3:r1", 2)  # dead-lettered again, now with dlq.replay.count 1
    wait_for(
        lambda: any(r["headers"].get("dlq.replay.count") == "1" for r in env.tally.dead),
        timeout=30,
        what="the second dead letter",
        tally=env.tally,
    )
    out = runner.invoke(main, ["dlq", "replay", *args]).output
    assert "0 replayed, 1 refused" in out, out


# --------------------------------------------------------------------------- amendments
def _amounts(doc: dict) -> tuple[Decimal, Decimal, Decimal]:
    return Decimal(str(doc["SubTotal"])), Decimal(str(doc["TotalTax"])), Decimal(str(doc["Total"]))


def test_revision_2_of_an_unpaid_authorised_invoice_voids_it_and_creates_the_new_one(env):
    env.publish(work_order("acme-fm", "AMEND-1", 1, minutes=70, parts=1))
    [r1] = env.wait_outcomes("acme-fm:wo:AMEND-1:r1")
    assert r1["outcome"] == "created"
    env.publish(work_order("acme-fm", "AMEND-1", 2, minutes=130, parts=3))
    [r2] = env.wait_outcomes("acme-fm:wo:AMEND-1:r2")
    # Xero: an approved invoice without payments is voided (no credit note needed)
    assert r2["outcome"] == "created"
    assert r2["amendment"] == "voided"
    assert r2["replaced"] == "acme-fm:wo:AMEND-1:r1"
    assert r2["credit_note_number"] is None

    [old] = env.invoices("ACME-WO-AMEND-1-R1")
    [new] = env.invoices("ACME-WO-AMEND-1-R2")
    priced_r2 = env.tally.priced["acme-fm:wo:AMEND-1:r2"]
    assert old["Status"] == "VOIDED"
    assert new["Status"] == "AUTHORISED"
    assert _amounts(new) == (
        Decimal(priced_r2["net_total"]),
        Decimal(priced_r2["tax_total"]),
        Decimal(priced_r2["total"]),
    )
    assert _amounts(new) != _amounts(old)
    assert not [cn for cn in env.xero.credit_notes(ORG_ACME) if "AMEND-1" in cn["CreditNoteNumber"]]
    order = [(h[1], h[3]) for h in env.xero.history if "AMEND-1" in h[3]]
    assert order == [
        ("invoice.created", "ACME-WO-AMEND-1-R1"),
        ("invoice.status", "ACME-WO-AMEND-1-R1"),
        ("invoice.created", "ACME-WO-AMEND-1-R2"),
    ]

    # the same revision 2 again changes nothing (no second void, no second invoice)
    env.publish(work_order("acme-fm", "AMEND-1", 2, minutes=130, parts=3))
    env.wait_outcomes("acme-fm:wo:AMEND-1:r2", 2)
    assert len(env.invoices("ACME-WO-AMEND-1-R2")) == 1
    assert [(h[1], h[3]) for h in env.xero.history if "AMEND-1" in h[3]] == order


def test_revision_2_of_a_draft_deletes_it_and_creates_the_new_one(env):
    env.publish(work_order("nordic-hvac", "AMEND-D", 1, minutes=70))
    env.wait_outcomes("nordic-hvac:wo:AMEND-D:r1")
    env.publish(work_order("nordic-hvac", "AMEND-D", 2, minutes=100, parts=1))
    [r2] = env.wait_outcomes("nordic-hvac:wo:AMEND-D:r2")
    assert r2["outcome"] == "created" and r2["amendment"] == "deleted" and r2["credit_note_number"] is None
    [old] = env.invoices("NHV-WO-AMEND-D-R1")
    [new] = env.invoices("NHV-WO-AMEND-D-R2")
    assert old["Status"] == "DELETED" and new["Status"] == "DRAFT"
    priced_r2 = env.tally.priced["nordic-hvac:wo:AMEND-D:r2"]
    assert _amounts(new) == (
        Decimal(priced_r2["net_total"]),
        Decimal(priced_r2["tax_total"]),
        Decimal(priced_r2["total"]),
    )
    assert not [cn for cn in env.xero.credit_notes(ORG_NORDIC) if "AMEND-D" in cn["CreditNoteNumber"]]


def test_metrics_cover_delivery(env):
    text = metrics_text(env.worker)
    assert metric(text, "broker_delivery_attempts_total", billing_system="xero", result="ok") >= 5
    assert metric(text, "broker_delivery_attempts_total", billing_system="xero", result="permanent") >= 1
    assert metric(text, "broker_delivery_lookups_total", billing_system="xero", result="found") >= 2
    assert metric(text, "broker_dead_letters_total", stage="deliver", error_class="permanent") >= 1
    assert metric(text, "broker_amendments_total", billing_system="xero", action="voided") >= 1
    assert metric(text, "broker_amendments_total", billing_system="xero", action="deleted") >= 1
    assert metric(text, "broker_ledger_transitions_total", state="delivered") >= 5
    assert metric(text, "broker_delivery_latency_seconds_count", billing_system="xero") >= 5
    wait_for(
        lambda: metric(metrics_text(env.worker), "broker_ledger_entries", state="delivered") >= 5,
        timeout=15,
        what="the ledger gauge",
    )
    assert "broker_delivery_in_flight" in text and "broker_invoices_parked_total" in text
