"""Acceptance: the invoice lifecycle through the whole pipeline, on every one of the eight billing systems.

One Tansu broker, the eight emulators (each through its conformance harness, validating requests against
the system's spec where the repository has it) and one ``python -m broker run`` worker serve the module:
one tenant per billing system (plus a Xero tenant whose corrections policy is ``reject``). Events go in on
``maintenance.events``; the scenarios run as phases, each for all eight systems at once, and the
parametrized tests check what each system holds afterwards:

* **reopen**: revision 1 completed, the work order reopened, revision 2 completed with a higher total ->
  revision 1 retired by the system's rules (``docs/connectors.md`` §5a), revision 2 billed; the customers'
  balance grew by revision 2's total to the cent;
* **cancel**: revision 1 completed, then cancelled -> retired, balance back where it was; the completion
  re-sent is not billed (``cancelled``);
* **paid**: revision 1 completed and paid, revision 2 completed -> a credit note for revision 1 (PayPal, which
  has none: its total deducted on revision 2, as its connector documents), balance = revision 2 − paid;
* **correction**: revision 1 completed, then the same revision with other content -> ``amended``: the billed
  document replaced by ``<number>-C1`` with the new total (corrections ``reject``: ``content_conflict``).

Expected totals come from the pure pricing function; what the systems hold is read back through the harnesses.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.config import parse_config
from broker.demo import Tally
from broker.embedded import EmbeddedKafka
from broker.events import parse_event
from broker.kafka import ensure_topics, publish
from broker.pricing import price_event
from broker.settings import TOPIC_EVENTS
from connectors.testing.harness import ConnectorHarness
from tests.conftest import WorkerProcess
from tests.delivery_support import FAST_ENV, metric, metrics_text, outcomes_by_key, wait_for

pytestmark = pytest.mark.integration

#: billing system -> (harness, invoice prefix of its tenant)
SYSTEMS: dict[str, tuple[str, str]] = {
    "xero": ("connectors.xero.testing:XeroHarness", "XER"),
    "quickbooks": ("connectors.quickbooks.testing:QuickBooksHarness", "QBO"),
    "zoho": ("connectors.zoho.testing:ZohoHarness", "ZOH"),
    "freshbooks": ("connectors.freshbooks.testing:FreshBooksHarness", "FRB"),
    "moloni": ("connectors.moloni.testing:MoloniHarness", "MOL"),
    "invoicexpress": ("connectors.invoicexpress.testing:InvoiceXpressHarness", "IXP"),
    "stripe": ("connectors.stripe.testing:StripeHarness", "STR"),
    "paypal": ("connectors.paypal.testing:PayPalHarness", "PPL"),
}
#: How each system retires an unpaid finalised invoice with the harness's settings (docs/connectors.md §5a).
UNPAID_RETIREMENT = {
    "xero": "voided",
    "quickbooks": "voided",
    "zoho": "voided",
    "freshbooks": "deleted",
    "moloni": "credited",
    "invoicexpress": "credited",
    "stripe": "voided",
    "paypal": "voided",
}
REJECT_TENANT = "lc-xero-strict"
CLIENT = "CLI-1"


def tenant_of(system: str) -> str:
    return f"lc-{system}"


def harness_for(system: str) -> ConnectorHarness:
    module, _, name = SYSTEMS[system][0].partition(":")
    harness: ConnectorHarness = getattr(importlib.import_module(module), name)()
    return harness


def tenant_config(system: str, harness: ConnectorHarness, prefix: str, **extra: Any) -> dict[str, Any]:
    contact_id, name = harness.contact()
    client: dict[str, Any] = {"name": name}
    if contact_id is not None:
        client["contact_id"] = contact_id
    return {
        "name": f"Lifecycle on {system}",
        "currency": harness.currency,
        "vat_percent": str(harness.tax_rate),
        "invoice_prefix": prefix,
        "billing": {"system": system, "settings": harness.settings()},
        "clients": {CLIENT: client},
        "rate_card": {
            "skills": {"general": {"hourly_rate": "40.00"}},
            "default_skill": "general",
            "technicians": {"T1": {"skill": "general"}},
        },
        **extra,
    }


def completion(tenant: str, wo: str, revision: int, minutes: int, *, tag: str = "") -> bytes:
    when = datetime.now(UTC)
    start = when - timedelta(minutes=minutes + 5)
    event = {
        "specversion": "1.0",
        "id": f"lc:{tenant}:{wo}:r{revision}{tag}",
        "source": "/platforms/test",
        "type": "maintenance.work_order.completed",
        "time": when.isoformat(),
        "tenant": tenant,
        "data": {
            "work_order_id": wo,
            "revision": revision,
            "client_id": CLIENT,
            "site_id": "SITE-1",
            "time_entries": [
                {
                    "id": "TE-1",
                    "technician_id": "T1",
                    "start": start.isoformat(),
                    "end": (start + timedelta(minutes=minutes)).isoformat(),
                }
            ],
        },
    }
    return json.dumps(event).encode()


def change(tenant: str, wo: str, revision: int, kind: str, reason: str | None = None) -> bytes:
    data: dict[str, Any] = {"work_order_id": wo, "revision": revision, "client_id": CLIENT}
    if reason:
        data["reason"] = reason
    event = {
        "specversion": "1.0",
        "id": f"lc:{tenant}:{wo}:r{revision}:{kind}",
        "source": "/platforms/test",
        "type": f"maintenance.work_order.{kind}",
        "time": datetime.now(UTC).isoformat(),
        "tenant": tenant,
        "data": data,
    }
    return json.dumps(event).encode()


class Env:
    def __init__(self, kafka: str, harnesses: dict[str, ConnectorHarness], worker: WorkerProcess, config: Path):
        self.kafka, self.harnesses, self.worker = kafka, harnesses, worker
        self.config = parse_config(yaml.safe_load(config.read_text(encoding="utf-8")))
        self.tally = Tally(kafka)
        self.results: dict[str, dict[str, Any]] = {system: {} for system in SYSTEMS}

    def total(self, raw: bytes) -> Decimal:
        """The total pricing gives ``raw`` (the pure function the worker runs)."""
        event = parse_event(raw)
        priced = price_event(event, event.tenant, self.config.tenant(event.tenant))
        assert priced.status == "invoice", priced
        return priced.total

    def publish(self, *events: bytes) -> None:
        publish(self.kafka, TOPIC_EVENTS, list(events))

    def outcomes(self, key: str) -> list[dict]:
        return outcomes_by_key(self.tally).get(key, [])

    def wait(self, keys: dict[str, int], what: str, timeout: float = 60) -> None:
        """Until every invoice key in ``keys`` has at least that many outcomes."""
        wait_for(
            lambda: all(len(self.outcomes(k)) >= n for k, n in keys.items()),
            timeout=timeout,
            what=what,
            tally=self.tally,
            workers=[self.worker],
        )

    def step(self, events: dict[str, bytes], keys: Callable[[str], dict[str, int]], what: str) -> None:
        """Publish one event per system, wait for their outcomes."""
        self.publish(*events.values())
        self.wait({k: n for system in events for k, n in keys(system).items()}, what)

    def balances(self) -> dict[str, Decimal]:
        return {system: h.balance() for system, h in self.harnesses.items()}

    def held(self, system: str, number: str) -> list[Any]:
        return [h for h in self.harnesses[system].invoices() if h.number == number]


def key(system: str, wo: str, revision: int) -> str:
    return f"{tenant_of(system)}:wo:{wo}:r{revision}"


def number(system: str, wo: str, revision: int) -> str:
    return f"{SYSTEMS[system][1]}-WO-{wo}-R{revision}"


def run_scenarios(env: Env) -> None:
    """Every phase for all eight systems at once; what each test checks goes into ``env.results``."""
    systems = list(SYSTEMS)

    # ---- reopen: r1, reopen, r2 (higher total)
    before = env.balances()
    r1 = {s: completion(tenant_of(s), "RO", 1, 60) for s in systems}
    env.step(r1, lambda s: {key(s, "RO", 1): 1}, "reopen scenario: revision 1")
    env.step(
        {s: change(tenant_of(s), "RO", 1, "reopened", "More work found") for s in systems},
        lambda s: {key(s, "RO", 1): 2},
        "reopen scenario: the reopening",
    )
    r2 = {s: completion(tenant_of(s), "RO", 2, 150) for s in systems}
    env.step(r2, lambda s: {key(s, "RO", 2): 1}, "reopen scenario: revision 2")
    after = env.balances()
    for s in systems:
        env.results[s]["reopen"] = {
            "r1_total": env.total(r1[s]),
            "r2_total": env.total(r2[s]),
            "delta": after[s] - before[s],
            "r1_held": env.held(s, number(s, "RO", 1)),
            "r2_held": env.held(s, number(s, "RO", 2)),
        }

    # ---- cancel: r1, cancel, r1 re-sent
    before = env.balances()
    c1 = {s: completion(tenant_of(s), "CX", 1, 60) for s in systems}
    env.step(c1, lambda s: {key(s, "CX", 1): 1}, "cancel scenario: revision 1")
    env.step(
        {s: change(tenant_of(s), "CX", 1, "cancelled") for s in systems},
        lambda s: {key(s, "CX", 1): 2},
        "cancel scenario: the cancellation",
    )
    env.step(
        {s: completion(tenant_of(s), "CX", 1, 60, tag=":again") for s in systems},
        lambda s: {key(s, "CX", 1): 3},
        "cancel scenario: revision 1 re-sent",
    )
    after = env.balances()
    for s in systems:
        env.results[s]["cancel"] = {"total": env.total(c1[s]), "delta": after[s] - before[s]}

    # ---- paid: r1, paid, r2
    before = env.balances()
    notes_before = {s: len(h.credit_notes()) for s, h in env.harnesses.items()}
    p1 = {s: completion(tenant_of(s), "PD", 1, 60) for s in systems}
    env.step(p1, lambda s: {key(s, "PD", 1): 1}, "paid scenario: revision 1")
    for s in systems:
        env.harnesses[s].mark_paid(env.outcomes(key(s, "PD", 1))[0]["external_id"])
    p2 = {s: completion(tenant_of(s), "PD", 2, 150) for s in systems}
    env.step(p2, lambda s: {key(s, "PD", 2): 1}, "paid scenario: revision 2")
    after = env.balances()
    for s in systems:
        notes = env.harnesses[s].credit_notes()[notes_before[s] :]
        env.results[s]["paid"] = {
            "r1_total": env.total(p1[s]),
            "r2_total": env.total(p2[s]),
            "delta": after[s] - before[s],
            "notes": [n.total for n in notes],
        }

    # ---- correction: r1, then r1 with other content (same revision); the strict tenant rejects it
    before = env.balances()
    k1 = {s: completion(tenant_of(s), "CO", 1, 60) for s in systems}
    k1[REJECT_TENANT] = completion(REJECT_TENANT, "CO", 1, 60)
    env.publish(*k1.values())
    env.wait({**{key(s, "CO", 1): 1 for s in systems}, f"{REJECT_TENANT}:wo:CO:r1": 1}, "correction: revision 1")
    k2 = {s: completion(tenant_of(s), "CO", 1, 105, tag=":fixed") for s in systems}
    k2[REJECT_TENANT] = completion(REJECT_TENANT, "CO", 1, 105, tag=":fixed")
    env.publish(*k2.values())
    env.wait({**{key(s, "CO", 1): 2 for s in systems}, f"{REJECT_TENANT}:wo:CO:r1": 2}, "correction: new content")
    after = env.balances()
    for s in systems:
        env.results[s]["correction"] = {
            "r1_total": env.total(k1[s]),
            "fixed_total": env.total(k2[s]),
            "delta": after[s] - before[s],
            "fixed_held": env.held(s, number(s, "CO", 1) + "-C1"),
        }
    env.results["xero"]["strict"] = {
        "r1_total": env.total(k1[REJECT_TENANT]),
        "fixed_total": env.total(k2[REJECT_TENANT]),
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lifecycle")
    harnesses: dict[str, ConnectorHarness] = {}
    kafka = EmbeddedKafka().start()
    worker = None
    try:
        tenants: dict[str, Any] = {}
        secrets: dict[str, str] = {}
        for system, (_path, prefix) in SYSTEMS.items():
            harness = harnesses[system] = harness_for(system)
            harness.start()
            tenants[tenant_of(system)] = tenant_config(system, harness, prefix)
            secrets.update(harness.env())
        tenants[REJECT_TENANT] = tenant_config("xero", harnesses["xero"], "XRJ", corrections="reject")
        config = tmp / "config.yaml"
        config.write_text(yaml.safe_dump({"tenants": tenants}, sort_keys=False, allow_unicode=True), encoding="utf-8")
        ensure_topics(kafka.bootstrap, 4)
        worker = WorkerProcess(config, kafka.bootstrap, tmp, **FAST_ENV, **secrets).start()
        e = Env(kafka.bootstrap, harnesses, worker, config)
        run_scenarios(e)
        yield e
        e.tally.close()
    finally:
        if worker is not None:
            worker.stop()
        for harness in harnesses.values():
            harness.stop()
        kafka.stop()
    for harness in harnesses.values():
        harness.assert_healthy()  # no request the system's spec refuses, no emulator crash


def outcome(env: Env, system: str, wo: str, revision: int, n: int) -> dict[str, Any]:
    """The ``n``-th outcome (0-based) of invoice version ``wo`` r``revision`` of ``system``'s tenant."""
    return env.outcomes(key(system, wo, revision))[n]


def cents(value: Any) -> Decimal:
    return Decimal(str(value))


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_reopen_holds_then_the_next_revision_amends(env, system):
    got = env.results[system]["reopen"]
    first, held, amended = (
        outcome(env, system, "RO", 1, 0),
        outcome(env, system, "RO", 1, 1),
        outcome(env, system, "RO", 2, 0),
    )
    assert first["outcome"] == "created" and cents(first["billed_total"]) == got["r1_total"]
    assert held["outcome"] == "held" and held["external_number"] == first["external_number"]
    assert cents(held["billed_total"]) == got["r1_total"]  # what the system holds: revision 1, as it was
    assert amended["outcome"] == "created" and amended["amendment"] == UNPAID_RETIREMENT[system], amended
    assert amended["replaced"] == key(system, "RO", 1)
    assert cents(amended["billed_total"]) == got["r2_total"] != got["r1_total"]
    [r2] = got["r2_held"]
    assert r2.total == got["r2_total"]
    if UNPAID_RETIREMENT[system] != "deleted":
        assert len(got["r1_held"]) == 1  # voided or credited in place: still there, retired
    assert got["delta"] == got["r2_total"]  # the customers owe revision 2's total, to the cent


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_cancel_retires_the_invoice_and_a_resent_completion_is_not_billed(env, system):
    got = env.results[system]["cancel"]
    created, cancelled, again = env.outcomes(key(system, "CX", 1))[:3]
    assert created["outcome"] == "created"
    assert cancelled["outcome"] == "cancelled" and cancelled["amendment"] == UNPAID_RETIREMENT[system], cancelled
    assert cancelled["external_number"] == created["external_number"] and cancelled["replaced"] == key(system, "CX", 1)
    assert cents(cancelled["total"]) == got["total"] and cents(cancelled["billed_total"]) == Decimal("0")
    assert (cancelled["credit_note_number"] is not None) == (UNPAID_RETIREMENT[system] == "credited")
    assert again["outcome"] == "cancelled" and cents(again["billed_total"]) == Decimal("0")
    assert got["delta"] == Decimal("0.00")


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_a_revision_of_a_paid_invoice_goes_through_a_credit_note(env, system):
    got = env.results[system]["paid"]
    amended = outcome(env, system, "PD", 2, 0)
    assert got["r2_total"] > got["r1_total"]
    if system == "paypal":  # no credit notes: the paid total is deducted on revision 2 (docs/connectors.md §5a)
        assert amended["amendment"] == "deducted" and got["notes"] == []
    else:
        assert amended["amendment"] == "credited" and got["notes"] == [got["r1_total"]]
        assert amended["credit_note_number"] is not None
    assert got["delta"] == got["r2_total"] - got["r1_total"]


@pytest.mark.parametrize("system", list(SYSTEMS))
def test_a_correction_of_the_same_revision_amends_the_billed_document(env, system):
    got = env.results[system]["correction"]
    created, amended = env.outcomes(key(system, "CO", 1))[:2]
    assert created["outcome"] == "created" and cents(created["billed_total"]) == got["r1_total"]
    assert amended["outcome"] == "amended", amended
    assert amended["external_number"] != created["external_number"]  # a new document: <our number>-C1
    assert amended["amendment"] == UNPAID_RETIREMENT[system] and amended["replaced"] == key(system, "CO", 1)
    assert cents(amended["billed_total"]) == cents(amended["total"]) == got["fixed_total"] != got["r1_total"]
    [fixed] = got["fixed_held"]
    assert fixed.total == got["fixed_total"]
    # the strict tenant bills in the same Xero organisation: its revision 1 stays billed (rejected correction)
    strict = env.results["xero"]["strict"]["r1_total"] if system == "xero" else Decimal("0")
    assert got["delta"] == got["fixed_total"] + strict


def test_a_correction_the_tenant_rejects_is_dead_lettered_naming_both_totals(env):
    got = env.results["xero"]["strict"]
    created, dead = env.outcomes(f"{REJECT_TENANT}:wo:CO:r1")[:2]
    assert created["outcome"] == "created"
    assert dead["outcome"] == "dead_lettered" and dead["error"].startswith("content_conflict: ")
    assert f"total {got['fixed_total']} EUR" in dead["error"]
    assert f"bills it as XRJ-WO-CO-R1 with total {got['r1_total']} EUR" in dead["error"]
    assert cents(dead["billed_total"]) == got["r1_total"]  # the billing system still holds revision 1's content
    [record] = [d for d in env.tally.dead if d["headers"].get("dlq.error.class") == "content_conflict"]
    assert record["headers"]["dlq.tenant"] == REJECT_TENANT and record["key"] == f"{REJECT_TENANT}:wo:CO".encode()
    assert [h.number for h in env.harnesses["xero"].invoices() if h.number.startswith("XRJ-WO-CO")] == ["XRJ-WO-CO-R1"]


def test_ignored_event_types_are_counted_and_unknown_ones_dead_lettered(env):
    tenant = tenant_of("xero")
    created = json.loads(completion(tenant, "IG", 1, 60))
    ignored = {**created, "id": "lc:ignored", "type": "maintenance.work_order.assigned"}
    unknown = {**created, "id": "lc:unknown", "type": "maintenance.work_order.exploded"}
    dead_before = len(env.tally.dead)
    env.publish(json.dumps(ignored).encode(), json.dumps(unknown).encode())
    wait_for(
        lambda: len(env.tally.dead) > dead_before,
        timeout=30,
        what="the unknown type in the DLQ",
        tally=env.tally,
        workers=[env.worker],
    )
    time.sleep(1.0)
    env.tally.poll(0.5)
    [dead] = env.tally.dead[dead_before:]
    assert dead["headers"]["dlq.error.class"] == "unknown_type" and b"lc:unknown" in dead["value"]
    text = metrics_text(env.worker)
    assert metric(text, "broker_events_ignored_total", type="maintenance.work_order.assigned") == 1
    assert metric(text, "broker_events_ignored_total", type="maintenance.work_order.exploded") == 0
    assert metric(text, "broker_cancellations_total", billing_system="xero", action="voided") >= 1
