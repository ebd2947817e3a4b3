"""Periodic invoicing through the worker on the embedded Kafka (issue 14 acceptance: "a crash at the
close producing exactly one periodic invoice").

acme-fm's client CLI-HAL is invoiced monthly under contract AV-1 (fee 150.00 a month). Four work
orders of February 2026 and a revision of one are published before the worker starts; February is
over, so the worker's period check (every second here) closes it once the events are priced. The
worker is killed with SIGKILL right at the close — as soon as the period invoice is on
``billing.invoices``, before its delivery — and, in the second trial, right after the emulator
stored the invoice and before it answered. After each restart Xero holds exactly one invoice for
the period (the emulator keeps no idempotency cache and accepts duplicate numbers, so nothing on its
side hides a second create), equal to what the pure functions build from the same events. The
month's events published once more after the delivery (older revisions after newer ones, into a
closed period) change nothing.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import yaml

from broker.config import load_config
from broker.demo import Tally
from broker.events import parse_event
from broker.kafka import ensure_topics, publish
from broker.pricing import price_event
from broker.pricing.periodic import accumulate, close_period
from broker.settings import ALL_TOPICS, TOPIC_EVENTS, TOPIC_INVOICES
from connectors.xero.emulator import XeroEmulator
from tests.conftest import EXAMPLES
from tests.delivery_support import (
    FAST_ENV,
    ORG_ACME,
    ORG_NORDIC,
    GroupOffsets,
    delivery_config,
    group_worker,
    topic_records,
    wait_for,
    work_order,
)

pytestmark = pytest.mark.integration

APP_ID = "periodic"
PERIOD_KEY = "acme-fm:per:CLI-HAL-2026-02"
NUMBER = "ACME-PE-CLI-HAL-2026-02-R1"


def _client() -> dict:
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    client = dict(raw["tenants"]["acme-fm"]["clients"]["CLI-HAL"])
    client["invoicing"] = "monthly"
    client["contracts"] = [{"id": "AV-1", "valid_from": "2026-01-01", "covers": {}, "monthly_fee": "150.00"}]
    return client


def _events() -> list[bytes]:
    days = {"P-1": 3, "P-2": 10, "P-3": 17, "P-4": 24}
    events = [
        work_order("acme-fm", wo, when=datetime(2026, 2, day, 15, tzinfo=UTC), minutes=45 + 10 * day)
        for wo, day in days.items()
    ]
    events.append(work_order("acme-fm", "P-2", 2, when=datetime(2026, 2, 11, 15, tzinfo=UTC), minutes=200))
    return events


def _expected(config_path, events: list[bytes]):
    """The period invoice the pure functions build from ``events`` (what the worker must deliver)."""
    tenant = load_config(config_path).tenant("acme-fm")
    now = datetime.now(UTC)
    table: dict = {}
    for raw in events:
        result = accumulate(
            price_event(parse_event(raw), "acme-fm", tenant, priced_at=now), "acme-fm", tenant, table, now=now
        )
        table.update((key, value) for _name, key, value in result.writes)
    [invoice] = close_period("acme-fm:CLI-HAL:2026-02", tenant, table, now=now).publish
    return invoice


def _period_records(bootstrap: str) -> list[dict]:
    return [
        json.loads(r.value)
        for r in topic_records(bootstrap, TOPIC_INVOICES)
        if r.key is not None and r.key.decode() == PERIOD_KEY
    ]


def test_a_crash_at_the_close_gives_exactly_one_periodic_invoice(kafka, xero_validator, tmp_path):
    state = {"kill": None}

    def created(_tenant: str, invoice: dict) -> None:
        if state["kill"] is not None and invoice.get("InvoiceNumber") == NUMBER:
            state["kill"]()  # SIGKILL the worker before the emulator answers

    xero = XeroEmulator(
        tenant_ids=(ORG_ACME, ORG_NORDIC),
        request_validator=xero_validator,
        idempotency_ttl=0,
        enforce_unique_numbers=False,
        on_invoice_created=created,
    ).start()
    config = delivery_config(tmp_path, xero.url, clients={"acme-fm": {"CLI-HAL": _client()}})
    env = {**FAST_ENV, "BROKER_PERIOD_CHECK_SECONDS": "1"}
    ensure_topics(kafka, 4, [*ALL_TOPICS, f"{APP_ID}-events-by-client"])
    events = _events()
    publish(kafka, TOPIC_EVENTS, events)
    expected = _expected(config, events)
    workers = []
    tally = Tally(kafka)
    offsets = None
    try:
        # trial 1: killed as soon as the close put the period invoice on billing.invoices
        first = group_worker(config, kafka, tmp_path, "w1", app_id=APP_ID, **env).start()
        workers.append(first)
        deadline = time.monotonic() + 90
        while not _period_records(kafka):
            assert time.monotonic() < deadline and first.proc.poll() is None, first.log()[-3000:]
            time.sleep(0.05)
        first.kill()
        # trial 2: killed between the emulator storing the invoice and its answer (unless trial 1's
        # worker delivered it already: then the restarted worker only finds it delivered)
        second = group_worker(config, kafka, tmp_path, "w2", app_id=APP_ID, **env)
        workers.append(second)
        state["kill"] = second.kill
        second.start()
        wait_for(lambda: xero.invoices() != [] or second.proc.poll() is not None, timeout=90, what="a create")
        state["kill"] = None
        second.kill()
        third = group_worker(config, kafka, tmp_path, "w3", app_id=APP_ID, **env).start()
        workers.append(third)
        wait_for(
            lambda: tally.poll() >= 0 and any(o["invoice_key"] == f"{PERIOD_KEY}:r1" for o in tally.outcomes),
            timeout=120,
            what="the period invoice's outcome",
            workers=[third],
        )
        # the month's events once more (a platform replaying its webhooks, or what a killed worker had
        # not committed): older revisions after newer ones, all of a closed period — nothing changes
        publish(kafka, TOPIC_EVENTS, events)
        offsets = GroupOffsets(kafka, APP_ID, [TOPIC_EVENTS, f"{APP_ID}-events-by-client"])
        wait_for(lambda: offsets.lag() == {}, timeout=60, what="the replayed events priced", workers=[third])
        time.sleep(3)  # a second close or delivery would show up by now
        tally.poll()
    finally:
        if offsets is not None:
            offsets.close()
        tally.close()
        for w in workers:
            w.stop()
        xero.stop()
    stored = [inv for inv in xero.invoices() if inv["InvoiceNumber"] == NUMBER]
    assert len(stored) == 1, [inv["InvoiceNumber"] for inv in xero.invoices()]
    assert len(xero.invoices()) == 1  # no per-document invoice for a monthly client
    assert Decimal(str(stored[0]["Total"])) == expected.total
    assert [line["Description"] for line in stored[0]["LineItems"]] == [line.description for line in expected.lines]
    # every record of the period on billing.invoices is revision 1 with the same content
    records = _period_records(kafka)
    assert {r["invoice_key"] for r in records} == {f"{PERIOD_KEY}:r1"}
    assert {r["fingerprint"] for r in records} == {expected.fingerprint}
    assert expected.lines[-1].description == "Subscription, contract AV-1 – February 2026"
