"""Acceptance: a revoked Xero connection, on a real Tansu broker and a real ``python -m broker run`` worker.

Both example Xero tenants (acme-fm, nordic-hvac) share one connection. After the user disconnects the
app, their invoices are parked as ``needs_reauth`` (retry topics) after one token call in all, none is
dead-lettered, the gauge says two tenants need re-authorisation; ``broker connectors authorize`` stores
new tokens and the parked invoices are delivered from the retry topics, each once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from broker.demo import Tally
from broker.kafka import ensure_topics
from broker.settings import TOPIC_INVOICES
from tests import delivery_support as ds
from tests.test_connectors_cli import authorize_via_cli

pytestmark = pytest.mark.integration


def test_revoked_connection_parks_after_one_token_call_and_authorize_resumes(kafka, xero, tmp_path, worker_factory):
    consent = {"authorize_url": f"{xero.url}/identity/connect/authorize"}
    config = ds.delivery_config(tmp_path, xero.url, settings={"acme-fm": consent, "nordic-hvac": consent})
    ensure_topics(kafka, 4)
    worker = worker_factory(config, kafka, **ds.FAST_ENV)
    tally = Tally(kafka)
    ds.publish_records(kafka, TOPIC_INVOICES, ds.priced([ds.work_order("acme-fm", "WARM-A")], config))
    ds.wait_for(lambda: len(tally.outcomes) >= 1, timeout=60, what="the warm-up invoice", tally=tally, workers=[worker])

    xero.revoke_connection()  # the user disconnected the app in Xero
    uses = len(xero.refresh_token_uses)
    events = [ds.work_order("acme-fm", f"A-{n}") for n in range(1, 5)] + [ds.work_order("nordic-hvac", "N-1")]
    ds.publish_records(kafka, TOPIC_INVOICES, ds.priced(events, config))

    def auth_state(state: str) -> float:
        return ds.metric(ds.metrics_text(worker), "broker_tenants_auth_state", billing_system="xero", state=state)

    def parked() -> float:
        return ds.metric(
            ds.metrics_text(worker), "broker_invoices_parked_total", billing_system="xero", reason="needs_reauth"
        )

    ds.wait_for(lambda: auth_state("needs_reauth") == 2, timeout=60, what="both tenants needs_reauth", tally=tally)
    ds.wait_for(lambda: parked() >= 8, timeout=60, what="parked invoices coming due and parked again", tally=tally)
    assert auth_state("ok") == 0
    assert len(xero.refresh_token_uses) == uses + 1  # one token call, however many invoices and tenants
    assert len(tally.outcomes) == 1 and tally.dead == []  # nothing dead-lettered
    assert ds.metric(ds.metrics_text(worker), "broker_dead_letters_total") == 0
    # one needs_reauth outcome per invoice, however often it came due and was parked again
    tally.poll()
    waiting = sorted((o["invoice_key"], o["outcome"], bool(o["next_attempt_at"])) for o in tally.parked)
    keys = [f"acme-fm:wo:A-{n}:r1" for n in range(1, 5)] + ["nordic-hvac:wo:N-1:r1"]
    assert waiting == sorted((key, "needs_reauth", True) for key in keys)

    authorize_via_cli(config, Path(os.environ["BROKER_TOKEN_DIR"]), tenant="nordic-hvac")
    started = time.monotonic()
    ds.wait_for(lambda: len(tally.outcomes) >= 6, timeout=60, what="the parked invoices", tally=tally, workers=[worker])
    assert time.monotonic() - started < 30  # within the longest park delay (8 s) and a cycle or two
    assert sorted(o["outcome"] for o in tally.outcomes) == ["created"] * 6
    acme = sorted(i["InvoiceNumber"] for i in xero.invoices(ds.ORG_ACME))
    assert len(acme) == len(set(acme)) == 5 and len(xero.invoices(ds.ORG_NORDIC)) == 1
    ds.wait_for(lambda: auth_state("needs_reauth") == 0, timeout=10, what="the gauge back to 0", tally=tally)
    assert auth_state("ok") == 2
    assert len(xero.refresh_token_uses) == uses + 1  # the authorised access token needed no refresh
