"""Acceptance ("never none"): ``kill -9`` **every** worker of a two-worker group while it delivers, start
two fresh workers at once: every invoice is created exactly once and has exactly one ``created`` outcome.

Each trial runs on its own Tansu, its own Xero emulator and a new consumer group (app id), so the
group's partitions are in the states the bug report names: some committed, some never (the kill can
come before a partition's first commit). Two workers with the same app id share the partitions; the
kill sends SIGKILL to both, then two fresh members of the same group are started together.

As in ``tests/test_delivery_crash.py`` the emulator keeps **no idempotency cache** and **accepts
duplicate invoice numbers**: nothing on the billing-system side hides a second create.

Scenarios:

* ``whole group``: 200 work orders on ``maintenance.events`` (enrich, price and deliver all run);
  both workers are killed from the test process a few random milliseconds after a random number
  of the invoices exist in the emulator.
* ``never committed``: a new group; 200 priced invoices on ``billing.invoices``; the emulator's
  ``on_invoice_created`` hook kills both workers at the first create, before it answers — so the
  group has no committed offset at all (checked).
* ``retry topic first use``: the emulator is down (503) for every organisation; 200 work orders on
  ``maintenance.events`` get parked on ``billing.invoices.retry.1`` for the first time; both
  workers are killed while a random number of them sit there, before the retry topic's first commit
  (checked); the emulator recovers and two fresh workers start.

A trial passes when the group has settled (its committed offsets reached the end of every input
topic, so nothing is left to consume again) and then: each of the 200 invoice numbers exists once
in the emulator and no other; each invoice key has exactly one ``created`` outcome on
``billing.deliveries`` (read from its beginning to its end); nothing is dead-lettered. A trial
whose invoices are not all delivered fails after 180 s, or sooner when the group settles with
invoices missing (committed offsets past records nobody processed) or stops moving (no new outcome,
no commit for 60 s: records dropped on a partition never committed leave it behind forever), naming
how many are missing, where their records are and which partitions lag.

Default suite: 2 trials of ``whole group``, 1 of each other scenario. ``slow``: 20 trials of each
(``GROUP_CRASH_TRIALS`` overrides). Every trial runs even after one failed; the test then fails
listing the failed trials with their figures.
``GROUP_CRASH_LOG_LEVEL`` sets the workers' log level (default ``INFO``: the logs name the
partitions positioned at their beginning); the logs are in the test's ``tmp_path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker.demo import Tally
from broker.embedded import EmbeddedKafka
from broker.kafka import ensure_topics
from broker.settings import ALL_TOPICS, TOPIC_EVENTS, TOPIC_INVOICES, retry_topic
from connectors.xero.emulator import XeroEmulator
from tests.delivery_support import (
    FAST_ENV,
    ORG_ACME,
    ORG_NORDIC,
    GroupOffsets,
    delivery_config,
    group_worker,
    metric,
    metrics_text,
    outcomes_by_key,
    priced,
    publish_records,
    read_to_end,
    work_order,
)

pytestmark = pytest.mark.integration

N = 200
PARTITIONS = 4
FAST = {"rate_limit_per_minute": 100000}
#: park delays of the workers: a parked invoice sits 10 s on billing.invoices.retry.1, long enough to
#: kill the group before that topic's first commit
PARK_DELAYS = (10, 20, 40)
RETRY_TOPICS = [retry_topic(i) for i in range(1, len(PARK_DELAYS) + 1)]
ENV = {
    **FAST_ENV,
    "BROKER_PARK_DELAYS": ",".join(map(str, PARK_DELAYS)),
    "BROKER_LOG_LEVEL": os.environ.get("GROUP_CRASH_LOG_LEVEL", "INFO"),
}
DELIVERED = ("created", "already_delivered")
#: trials of each ``slow`` test
SLOW_TRIALS = int(os.environ.get("GROUP_CRASH_TRIALS", "20"))


@dataclass
class Trial:
    """One trial's world: a Tansu, an emulator, a new consumer group, its workers and observers."""

    name: str
    tmp: Path
    bootstrap: str
    xero: XeroEmulator
    config: Path
    app_id: str
    tally: Tally
    offsets: GroupOffsets
    keys: set[str] = field(default_factory=set)
    numbers: dict[str, str] = field(default_factory=dict)  # invoice key -> our invoice number
    workers: list = field(default_factory=list)  # every worker started, in order
    created: int = 0  # invoices created in the emulator (on_invoice_created)
    kill_at_create: int | None = None  # the hook kills the group at this create
    figures: dict = field(default_factory=dict)  # printed per trial
    t0: float = field(default_factory=time.monotonic)

    @property
    def live(self) -> list:
        return [w for w in self.workers if w.proc.poll() is None]

    def start_pair(self, generation: int) -> list:
        """Two members of the group, started together."""
        pair = [
            group_worker(self.config, self.bootstrap, self.tmp, f"g{generation}-{m}", app_id=self.app_id, **ENV)
            for m in "ab"
        ]
        for w in pair:
            w.start()
        self.workers.extend(pair)
        return pair

    def kill_all(self) -> None:
        """SIGKILL every live worker (all signals first, then the waits)."""
        live = self.live
        for w in live:
            os.killpg(w.proc.pid, signal.SIGKILL)
        for w in live:
            w.proc.wait(10)

    def delivered(self) -> set[str]:
        return {k for k, os_ in outcomes_by_key(self.tally).items() if any(o["outcome"] in DELIVERED for o in os_)}

    def logs(self, lines: int = 25) -> str:
        """The last ``lines`` lines of each worker's log, without the HTTP client's request lines and
        Faust's offset tables."""
        out = []
        for w in self.workers:
            kept = [
                line
                for line in w.log().splitlines()
                if line.strip() and "HTTP Request:" not in line and not line.startswith(("|", "+", "\u3003"))
            ]
            out.append(f"--- {w.log_path} (exit {w.proc.poll()})\n" + "\n".join(kept[-lines:]))
        return "\n".join(out)

    def fail(self, what: str) -> None:
        raise AssertionError(f"{self.name}: {what}\n{self.logs()}")

    def wait(self, predicate, *, timeout: float, what: str, poll: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            self.tally.poll(poll)
            if time.monotonic() > deadline:
                self.fail(f"timed out after {timeout:.0f} s waiting for {what}")

    def committed_summary(self) -> str:
        """Per input topic: how many partitions have a committed offset, e.g. ``billing.invoices 2/4``."""
        committed = self.offsets.committed()
        return ", ".join(f"{t} {sum(1 for tp in committed if tp.topic == t)}/{PARTITIONS}" for t in self.input_topics)

    @property
    def input_topics(self) -> list[str]:
        return input_topics(self.app_id)

    # ---------------------------------------------------------------- after the restart
    def wait_all_delivered(self, timeout: float = 180.0, settled_for: float = 15.0, stalled_for: float = 60.0) -> None:
        """Until every key has a created/already_delivered outcome. Fails at ``timeout``, when a worker
        exits, as soon as the group has stayed settled ``settled_for`` seconds with keys missing (its
        committed offsets are at the end of every input topic: nothing will process them), or when
        nothing moved (no new outcome, no commit) for ``stalled_for`` seconds with keys missing."""
        deadline = time.monotonic() + timeout
        settled_since = None
        next_check = 0.0
        progress, progress_at = None, time.monotonic()
        while True:
            self.tally.poll(0.2)
            missing = self.keys - self.delivered()
            if not missing:
                return
            now = time.monotonic()
            dead = [w for w in self.workers[-2:] if w.proc.poll() is not None]
            if dead:
                self.fail(
                    f"worker {dead[0].log_path.name} exited ({dead[0].proc.poll()}) with {len(missing)} invoices missing"
                )
            if now >= next_check:
                next_check = now + 1.0
                mark = (len(self.tally.outcomes), sum(self.offsets.committed().values()))
                if mark != progress:
                    progress, progress_at = mark, now
                elif now - progress_at >= stalled_for:
                    self.fail(
                        f"stalled: no new outcome and no commit for {stalled_for:.0f} s with {len(missing)} of "
                        f"{N} invoices not delivered ({self.where(missing)}); lag {self.lag_text()}"
                    )
                if self.offsets.lag():
                    settled_since = None
                elif settled_since is None:
                    settled_since = now
                elif now - settled_since >= settled_for:
                    self.fail(
                        f"the group settled (committed offsets at the end of every input topic) with "
                        f"{len(missing)} of {N} invoices never delivered: {self.where(missing)}"
                    )
            if now > deadline:
                self.fail(
                    f"timed out after {timeout:.0f} s: {len(missing)} of {N} invoices not delivered "
                    f"({self.where(missing)}); lag {self.lag_text()}"
                )

    def lag_text(self) -> str:
        """``topic[partition] records behind`` of the partitions not committed to their end; ``(no commit)``
        when the group never committed that partition."""
        committed = self.offsets.committed()
        return (
            ", ".join(
                f"{tp.topic}[{tp.partition}] {n}{'' if tp in committed else ' (no commit)'}"
                for tp, n in sorted(self.offsets.lag().items())
            )
            or "none"
        )

    def uncommitted_records(self) -> str:
        """The records after the committed offset of each lagging partition (offsets and keys)."""
        committed, lag = self.offsets.committed(), self.offsets.lag()
        out = []
        for topic in sorted({tp.topic for tp in lag}):
            for partition, offset, key in self.offsets.records(topic):
                tp = next(tp for tp in self.offsets.tps if tp.topic == topic and tp.partition == partition)
                if tp in lag and offset >= committed.get(tp, 0):
                    out.append(f"{topic}[{partition}]@{offset} {key.decode() if key else key}")
        return f"records not committed: {out[:40]}"

    def where(self, missing: set[str]) -> str:
        """Where the records of the ``missing`` invoice keys are: priced or not, parked on a retry topic."""
        priced_keys = set(self.tally.priced)
        parked = {k.decode() for t in RETRY_TOPICS for k in self.offsets.keys(t) if k}
        never_priced = sorted(k for k in missing if k not in priced_keys)
        on_retry = sorted(k for k in missing if k.rsplit(":", 1)[0] in parked)
        in_emulator = sorted(
            k for k in missing if self.numbers[k] in {i["InvoiceNumber"] for i in self.xero.invoices()}
        )
        return (
            f"{len(never_priced)} never priced (no record on billing.invoices), {len(on_retry)} parked on a retry "
            f"topic, {len(in_emulator)} created in the emulator without an outcome; committed "
            f"{self.committed_summary()}; e.g. {sorted(missing)[:5]}"
        )

    def verify(self) -> dict:
        """Wait until the group has settled, read billing.deliveries to its end and assert exactly-once."""
        started = time.monotonic()
        deadline = started + 60
        while self.offsets.lag():
            self.tally.poll(0.5)
            if time.monotonic() > deadline:
                self.fail(
                    f"all delivered but the group did not settle within 60 s: lag {self.lag_text()}; "
                    f"{self.uncommitted_records()}"
                )
        self.figures["settle_s"] = round(time.monotonic() - started, 1)  # all delivered -> all committed
        read_to_end(self.tally)
        problems = []
        held = Counter(inv["InvoiceNumber"] for inv in self.xero.invoices())
        expected = Counter(self.numbers.values())
        if held != expected:
            problems.append(
                f"emulator: {sum(1 for n in expected if n not in held)} missing, duplicated "
                f"{ {n: c for n, c in held.items() if c > 1} }, unexpected "
                f"{sorted(n for n in held if n not in expected)[:5]}"
            )
        by_key = outcomes_by_key(self.tally)
        created = {k: sum(1 for o in by_key.get(k, []) if o["outcome"] == "created") for k in self.keys}
        if created != dict.fromkeys(self.keys, 1):
            wrong = {k: c for k, c in created.items() if c != 1}
            problems.append(
                f"{len(wrong)} invoice keys without exactly one `created` outcome "
                f"({sum(1 for c in wrong.values() if c == 0)} with none, "
                f"{sum(c - 1 for c in wrong.values() if c > 1)} extra `created` records): "
                f"{dict(sorted(wrong.items())[:8])}"
            )
        if set(by_key) - self.keys:
            problems.append(f"outcomes for unknown keys {sorted(set(by_key) - self.keys)[:5]}")
        if self.tally.dead:
            problems.append(f"{len(self.tally.dead)} dead letters, e.g. {self.tally.dead[:2]}")
        # a worker killed while sending a request leaves a truncated body: not a broker bug
        bad_requests = [f for f in self.xero.validation_failures if "not JSON" not in f]
        if bad_requests or self.xero.server_errors:
            problems.append(
                f"emulator: invalid requests {bad_requests[:3]}, server errors {self.xero.server_errors[:3]}"
            )
        if problems:
            self.fail("; ".join(problems))
        assert held == expected
        assert created == dict.fromkeys(self.keys, 1)
        assert not self.tally.dead
        kinds = Counter(o["outcome"] for o in self.tally.outcomes)
        suppressed = 0.0
        for w in self.live:
            with contextlib.suppress(OSError):
                suppressed += metric(metrics_text(w), "broker_duplicates_suppressed_total", kind="outcome")
        return {"outcomes": dict(kinds), "suppressed": suppressed}

    def close(self) -> None:
        for w in self.live:
            os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait(10)
        self.tally.close()
        self.offsets.close()
        self.xero.stop()


def input_topics(app_id: str) -> list[str]:
    """The topics the group's agents consume (its stage inputs; not the table changelogs)."""
    return [TOPIC_EVENTS, f"{app_id}-events-by-client", TOPIC_INVOICES, *RETRY_TOPICS]


def _run(scenario, xero_validator, tmp_path: Path, trials: int, seed: int) -> None:
    """``trials`` independent trials of ``scenario``; every trial runs (a failed one is printed with its
    figures and worker log tails), then the test fails listing the failed trials."""
    total = time.monotonic()
    failed: list[str] = []
    for i in range(trials):
        rng = random.Random(f"{seed}-{i}")
        tmp = tmp_path / f"trial-{i:02d}"
        tmp.mkdir()
        with EmbeddedKafka() as kafka:
            trial = _setup(
                f"{scenario.__name__.lstrip('_')} trial {i}",
                tmp,
                kafka.bootstrap,
                xero_validator,
                app_id=f"group-crash-{i:02d}",
            )
            try:
                scenario(trial, rng, i)
                trial.figures.update(trial.verify())
                print(f"{trial.name}: ok in {time.monotonic() - trial.t0:.1f} s; {trial.figures}")
            except AssertionError as exc:
                print(f"{trial.name}: FAILED after {time.monotonic() - trial.t0:.1f} s; {trial.figures}\n{exc}")
                failed.append(f"{trial.name} ({trial.figures}): {str(exc).splitlines()[0]}")
            finally:
                trial.close()
    print(f"{trials} trials in {time.monotonic() - total:.1f} s, {len(failed)} failed")
    assert not failed, f"{len(failed)} of {trials} trials failed:\n" + "\n".join(failed)


def _setup(name: str, tmp: Path, bootstrap: str, xero_validator, *, app_id: str) -> Trial:
    holder: dict[str, Trial] = {}

    def on_created(tenant: str, invoice: dict) -> None:  # emulator thread, lock held, before the answer
        trial = holder["trial"]
        trial.created += 1
        if trial.kill_at_create is not None and trial.created == trial.kill_at_create:
            for w in trial.live:
                os.killpg(w.proc.pid, signal.SIGKILL)

    xero = XeroEmulator(
        tenant_ids=(ORG_ACME, ORG_NORDIC),
        request_validator=xero_validator,
        idempotency_ttl=0,
        enforce_unique_numbers=False,
        rate_limit_per_minute=100000,
        on_invoice_created=on_created,
    ).start()
    config = delivery_config(tmp, xero.url, settings={"acme-fm": FAST, "nordic-hvac": FAST})
    # the internal topic too (Faust would create it at its first start), so its offsets can be read at once
    ensure_topics(bootstrap, PARTITIONS, [*ALL_TOPICS, *RETRY_TOPICS, f"{app_id}-events-by-client"])
    trial = Trial(
        name=name,
        tmp=tmp,
        bootstrap=bootstrap,
        xero=xero,
        config=config,
        app_id=app_id,
        tally=Tally(bootstrap),
        offsets=GroupOffsets(bootstrap, app_id, input_topics(app_id), PARTITIONS),
    )
    holder["trial"] = trial
    return trial


def _batch(trial: Trial, label: str) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """N work orders (two tenants, alternating) as ``(events, invoices)``: ``(key, value)`` records for
    maintenance.events (keyed ``tenant:doc:id`` like ``broker publish``) and the same priced for
    billing.invoices. Fills ``trial.keys`` and ``trial.numbers``."""
    events = [work_order("acme-fm" if j % 2 else "nordic-hvac", f"{label}-{j:03d}") for j in range(N)]
    invoices = priced(events, trial.config)
    for _key, value in invoices:
        doc = json.loads(value)
        trial.numbers[doc["invoice_key"]] = doc["invoice_number"]
    trial.keys = set(trial.numbers)
    assert len(trial.keys) == N
    return [(key, event) for (key, _), event in zip(invoices, events, strict=True)], invoices


def _whole_group(trial: Trial, rng: random.Random, i: int) -> None:
    """Both workers killed from the test process once a random number of invoices exist."""
    events, _ = _batch(trial, f"G{i:02d}")
    trial.start_pair(0)
    publish_records(trial.bootstrap, TOPIC_EVENTS, events)
    target = rng.randint(1, N - 1)
    trial.wait(lambda: trial.created >= target, timeout=120, what=f"{target} invoices before the kill", poll=0.01)
    time.sleep(rng.uniform(0.0, 0.05))
    trial.kill_all()
    _restart(trial, target)


def _never_committed(trial: Trial, rng: random.Random, i: int) -> None:
    """New group, priced invoices waiting; both workers killed at the emulator's first create."""
    _, invoices = _batch(trial, f"F{i:02d}")
    publish_records(trial.bootstrap, TOPIC_INVOICES, invoices)
    trial.kill_at_create = 1
    pair = trial.start_pair(0)
    trial.wait(lambda: all(w.proc.poll() is not None for w in pair), timeout=120, what="the kill at the first create")
    committed = trial.offsets.committed()
    assert not committed, f"{trial.name}: the group committed before the first create: {committed}"
    _restart(trial, 1)


def _retry_first_use(trial: Trial, rng: random.Random, i: int) -> None:
    """Billing system down; both workers killed while invoices sit on retry.1 (never committed)."""
    events, _ = _batch(trial, f"R{i:02d}")
    trial.xero.outage(3600)  # every organisation answers 503 until healed
    trial.start_pair(0)
    publish_records(trial.bootstrap, TOPIC_EVENTS, events)
    retry1 = [tp for tp in trial.offsets.tps if tp.topic == RETRY_TOPICS[0]]
    target = rng.randint(1, N)

    def parked() -> int:
        return sum(trial.offsets.ends(retry1).values())

    trial.wait(
        lambda: parked() >= target, timeout=120, what=f"{target} invoices parked on {RETRY_TOPICS[0]}", poll=0.05
    )
    time.sleep(rng.uniform(0.0, 0.5))
    trial.kill_all()
    on_retry = parked()
    committed = {tp: o for tp, o in trial.offsets.committed().items() if tp.topic in RETRY_TOPICS}
    assert not committed, f"{trial.name}: {RETRY_TOPICS[0]} was committed before the kill: {committed}"
    assert trial.created == 0
    trial.xero.outage(0)  # healthy again
    trial.figures["parked_at_kill"] = on_retry
    _restart(trial, target)


def _restart(trial: Trial, target: int) -> None:
    """After the kill: note the figures, start two fresh members together, wait until all delivered."""
    t_kill = time.monotonic()
    trial.tally.poll(0.2)
    trial.figures.update(
        kill_at_s=round(t_kill - trial.t0, 1),
        target=target,
        created_at_kill=trial.created,
        outcomes_at_kill=len(trial.delivered() & trial.keys),
        committed_at_kill=trial.committed_summary(),
    )
    trial.kill_at_create = None
    trial.start_pair(1)
    trial.wait_all_delivered()
    trial.figures["recovery_s"] = round(time.monotonic() - t_kill, 1)


@pytest.mark.timeout(900)
def test_whole_group_killed_during_delivery_2_trials(xero_validator, tmp_path):
    _run(_whole_group, xero_validator, tmp_path, trials=2, seed=3)


@pytest.mark.timeout(900)
def test_group_killed_before_its_first_commit(xero_validator, tmp_path):
    _run(_never_committed, xero_validator, tmp_path, trials=1, seed=1)


@pytest.mark.timeout(900)
def test_group_killed_while_invoices_sit_on_a_retry_topic_first_used(xero_validator, tmp_path):
    _run(_retry_first_use, xero_validator, tmp_path, trials=1, seed=1)


@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_whole_group_killed_during_delivery_20_trials(xero_validator, tmp_path):
    _run(_whole_group, xero_validator, tmp_path, trials=SLOW_TRIALS, seed=20)


@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_group_killed_before_its_first_commit_20_trials(xero_validator, tmp_path):
    _run(_never_committed, xero_validator, tmp_path, trials=SLOW_TRIALS, seed=21)


@pytest.mark.slow
@pytest.mark.timeout(5400)
def test_group_killed_while_invoices_sit_on_a_retry_topic_first_used_20_trials(xero_validator, tmp_path):
    _run(_retry_first_use, xero_validator, tmp_path, trials=SLOW_TRIALS, seed=22)
