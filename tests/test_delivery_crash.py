"""Acceptance: crash safety. ``kill -9`` the worker at random points while it delivers 200 invoices,
restart it: every invoice exists exactly once in the emulator, none is missing.

To prove the broker's own guarantees (ledger written ``pending`` before each call, look-up by our
number of anything whose outcome is unknown), the emulator here keeps **no idempotency cache** and
**accepts duplicate invoice numbers**: nothing on the billing-system side would hide a second create.

Trials alternate between two kill points:

* ``after-create``: the emulator's ``on_invoice_created`` hook kills the worker right after it has
  stored the k-th invoice of the run and before it answers — the invoice exists, the worker never
  heard of it, nothing was committed;
* ``random``: from the test process, a few random milliseconds after a random number of the run's
  invoices exist — anywhere between a response, the ledger write, the acknowledgement and the
  offset commit.

2 trials in the default suite (one kill right after a create, one at random), 20 in the test marked
``slow``. Each trial publishes 200 new invoices (two tenants) on ``billing.invoices``; the restarted
worker (same consumer group) carries on into the next trial, so later kills also hit a worker that is
still starting or recovering.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter

import pytest

from broker.demo import Tally
from broker.kafka import ensure_topics
from broker.settings import TOPIC_INVOICES
from connectors.xero.emulator import XeroEmulator
from tests.conftest import WorkerProcess
from tests.delivery_support import (
    FAST_ENV,
    ORG_ACME,
    ORG_NORDIC,
    GroupOffsets,
    delivery_config,
    outcomes_by_key,
    priced,
    publish_records,
    wait_for,
    work_order,
)

pytestmark = pytest.mark.integration

N = 200
FAST = {"rate_limit_per_minute": 100000}


def _trials(kafka, xero_validator, tmp_path, trials: int, seed: int) -> None:
    rng = random.Random(seed)
    state = {"kill_at": None, "created": 0, "worker": None, "killed": []}

    def on_created(tenant: str, invoice: dict) -> None:
        if state["kill_at"] is None or not invoice["InvoiceNumber"].split("-")[2].startswith("C"):
            return
        state["created"] += 1
        if state["created"] == state["kill_at"]:
            worker = state["worker"]
            os.killpg(worker.proc.pid, signal.SIGKILL)  # before the emulator answers
            state["killed"].append(invoice["InvoiceNumber"])
            state["kill_at"] = None

    xero = XeroEmulator(
        tenant_ids=(ORG_ACME, ORG_NORDIC),
        request_validator=xero_validator,
        idempotency_ttl=0,
        enforce_unique_numbers=False,
        rate_limit_per_minute=100000,
        on_invoice_created=on_created,
    ).start()
    config = delivery_config(tmp_path, xero.url, settings={"acme-fm": FAST, "nordic-hvac": FAST})
    ensure_topics(kafka, 4)
    env = {**FAST_ENV, "BROKER_LOG_LEVEL": os.environ.get("CRASH_LOG_LEVEL", "WARNING")}
    tally = Tally(kafka)
    worker = None
    try:
        worker = WorkerProcess(config, kafka, tmp_path, **env).start()
        state["worker"] = worker
        for trial in range(trials):
            t0 = time.monotonic()
            batch = [work_order("acme-fm" if i % 2 else "nordic-hvac", f"C{trial:02d}-{i:03d}") for i in range(N)]
            keys = {f"{'acme-fm' if i % 2 else 'nordic-hvac'}:wo:C{trial:02d}-{i:03d}:r1" for i in range(N)}
            mode = "after-create" if trial % 2 == 0 else "random"
            state["created"] = 0
            if mode == "after-create":
                state["kill_at"] = rng.randint(1, N)
            publish_records(kafka, TOPIC_INVOICES, priced(batch, config))
            if mode == "random":
                # from the test process, once a random number of the batch exists, plus a random few
                # milliseconds: anywhere between a response, the ledger write, the ack and the commit
                target = rng.randint(1, N - 1)
                prefix = f"-C{trial:02d}-"
                wait_for(
                    lambda prefix=prefix, target=target: sum(1 for h in xero.history if prefix in h[3]) >= target,
                    timeout=120,
                    what=f"{target} creates before the kill",
                    workers=[worker],
                    poll=0.01,
                )
                time.sleep(rng.uniform(0.0, 0.05))
                worker.kill()
            else:
                wait_for(
                    lambda worker=worker, keys=keys: (
                        worker.proc.poll() is not None or keys <= outcomes_by_key(tally).keys()
                    ),
                    timeout=120,
                    what="the kill after the k-th create",
                    tally=tally,
                    workers=[worker],
                )
                worker.proc.wait(10)
            t_kill = time.monotonic()
            done_before = len({k for k, os_ in outcomes_by_key(tally).items() if k in keys})
            worker = WorkerProcess(config, kafka, tmp_path, **env).start()  # same consumer group: resume
            state["worker"] = worker

            def delivered(keys=keys) -> set[str]:
                return keys & {
                    k
                    for k, os_ in outcomes_by_key(tally).items()
                    if any(o["outcome"] in ("created", "already_delivered") for o in os_)
                }

            try:
                wait_for(
                    lambda keys=keys: delivered() == keys,
                    timeout=180,
                    what=f"trial {trial} ({mode}): all {N} delivered",
                    tally=tally,
                    workers=[worker],
                )
            except AssertionError as exc:
                offsets = GroupOffsets(kafka, "broker-test", [TOPIC_INVOICES])
                try:
                    committed, ends = offsets.committed(), offsets.ends()
                finally:
                    offsets.close()
                missing = sorted(keys - delivered())
                raise AssertionError(
                    f"{exc}\n{len(missing)} without an outcome: {missing[:10]}; committed "
                    f"{sorted((tp.partition, o) for tp, o in committed.items())}, end "
                    f"{sorted((tp.partition, o) for tp, o in ends.items())}"
                ) from None
            numbers = Counter(
                inv["InvoiceNumber"] for inv in xero.invoices() if f"-C{trial:02d}-" in inv["InvoiceNumber"]
            )
            duplicated = {n: c for n, c in numbers.items() if c > 1}
            assert not duplicated, f"trial {trial} ({mode}): duplicates {duplicated}"
            assert len(numbers) == N, f"trial {trial} ({mode}): {N - len(numbers)} missing"
            assert not tally.dead, tally.dead[:3]
            print(
                f"trial {trial} ({mode}): ok in {time.monotonic() - t0:.1f} s (killed at {t_kill - t0:.1f} s with "
                f"{done_before} done, then {time.monotonic() - t_kill:.1f} s), killed "
                f"{'after creating ' + state['killed'][-1] if mode == 'after-create' else 'mid-run from the test'}"
            )
        assert state["killed"], "no worker was killed right after a create"
        # a worker killed in the middle of sending a request leaves a truncated body: not a broker bug
        assert all("not JSON" in f for f in xero.validation_failures), xero.validation_failures
        assert not xero.server_errors, xero.server_errors
    finally:
        tally.close()
        if worker is not None:
            worker.stop()
        xero.stop()


def test_kill_9_during_200_invoices_2_trials(kafka, xero_validator, tmp_path):
    _trials(kafka, xero_validator, tmp_path, trials=2, seed=4)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_kill_9_during_200_invoices_20_trials(kafka, xero_validator, tmp_path):
    _trials(kafka, xero_validator, tmp_path, trials=20, seed=20)
