"""Fuzz: bad records mixed with good ones on a real worker (issue "Never none", part 2).

Every bad record is dead-lettered exactly once, at its own position, with a reason naming the field
(``tests/fuzz_support.py`` lists the kinds) and ``dlq.tenant`` when the record names a tenant; every
good event is invoiced exactly once; no agent ever crashes (``broker_agent_crashes_total`` stays 0);
the worker's log stays bounded; its RSS after the run is within 20 % of its RSS after a warm-up.
1,000 bad records in the default suite, 10,000 in ``make test-slow``.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter

import pytest
from kafka import KafkaProducer

from broker.demo import Tally
from broker.kafka import ensure_topics
from broker.settings import TOPIC_EVENTS
from connectors.xero.emulator import XeroEmulator
from tests.conftest import WorkerProcess
from tests.delivery_support import FAST_ENV, ORG_ACME, ORG_NORDIC, delivery_config, metric, metrics_text, wait_for
from tests.fuzz_support import KINDS, Bad, bad_record, good_record

pytestmark = pytest.mark.integration


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return int(re.search(r"VmRSS:\s+(\d+) kB", fh.read()).group(1))


def _publish(bootstrap: str, records: list[tuple[bytes, bytes]]) -> list[tuple[int, int]]:
    """Publish to maintenance.events; returns each record's (partition, offset)."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=4 * 1024 * 1024, batch_size=1
    )
    try:
        futures = [producer.send(TOPIC_EVENTS, key=k, value=v) for k, v in records]
        producer.flush()
        return [(md.partition, md.offset) for md in (f.get(timeout=60) for f in futures)]
    finally:
        producer.close()


def _batch(rng: random.Random, n_bad: int, n_good: int, start: int) -> tuple[list[Bad], list[tuple[str, bytes, bytes]]]:
    kinds = sorted(KINDS)
    bad = [
        bad_record(kinds[i % len(kinds)] if i < len(kinds) else rng.choice(kinds), rng, start + i) for i in range(n_bad)
    ]
    good = [good_record(rng, start + n_bad + i) for i in range(n_good)]
    return bad, good


def _run(kafka, tmp_path, n_bad: int, seed: int) -> None:
    rng = random.Random(seed)
    xero = XeroEmulator(tenant_ids=(ORG_ACME, ORG_NORDIC), rate_limit_per_minute=1_000_000).start()
    fast = {"rate_limit_per_minute": 1_000_000}
    config = delivery_config(tmp_path, xero.url, settings={"acme-fm": fast, "nordic-hvac": fast})
    ensure_topics(kafka, 4)
    worker = WorkerProcess(config, kafka, tmp_path, **{**FAST_ENV, "BROKER_LOG_LEVEL": "INFO"}).start()
    tally = Tally(kafka)
    expected_bad: dict[tuple[int, int], Bad] = {}
    good_keys: set[str] = set()
    try:

        def send(bad: list[Bad], good: list[tuple[str, bytes, bytes]]) -> None:
            records = [(b.key, b.value) for b in bad] + [(k, v) for _, k, v in good]
            order = list(range(len(records)))
            rng.shuffle(order)
            positions = _publish(kafka, [records[i] for i in order])
            for pos, i in zip(positions, order, strict=True):
                if i < len(bad):
                    expected_bad[pos] = bad[i]
            good_keys.update(key for key, _, _ in good)

        def settled() -> bool:
            done = {o["invoice_key"] for o in tally.outcomes if o["outcome"] == "created"}
            return len(tally.dead) >= len(expected_bad) and good_keys <= done

        # warm-up: every kind at least once, then measure the baseline
        bad, good = _batch(rng, 3 * len(KINDS), 20, 0)
        send(bad, good)
        wait_for(settled, timeout=180, what="the warm-up batch", tally=tally, workers=[worker])
        time.sleep(1.0)
        rss_warm = _rss_kib(worker.proc.pid)
        log_warm = len(worker.log().encode())

        t0 = time.monotonic()
        for chunk in range(0, n_bad, 1000):
            size = min(1000, n_bad - chunk)
            bad, good = _batch(rng, size, max(1, size // 5), 100_000 + chunk * 2)
            send(bad, good)
        wait_for(settled, timeout=120 + n_bad * 0.1, what=f"{n_bad} bad + good records", tally=tally, workers=[worker])
        elapsed = time.monotonic() - t0
        time.sleep(1.0)
        rss_after = _rss_kib(worker.proc.pid)
        log_grown = len(worker.log().encode()) - log_warm

        # every bad record dead-lettered exactly once, at its position, naming the field
        seen = Counter(
            (int(d["headers"]["dlq.partition"]), int(d["headers"]["dlq.offset"]))
            for d in tally.dead
            if d["headers"].get("dlq.topic") == TOPIC_EVENTS
        )
        assert {pos: c for pos, c in seen.items() if c != 1} == {}
        assert set(seen) == set(expected_bad), (len(seen), len(expected_bad))
        problems = []
        for d in tally.dead:
            h = d["headers"]
            bad = expected_bad[(int(h["dlq.partition"]), int(h["dlq.offset"]))]
            if h["dlq.error.class"] not in bad.classes:
                problems.append((bad.kind, "class", h["dlq.error.class"], h["dlq.message"][:200]))
            missing = [m for m in bad.mentions if m not in h["dlq.message"]]
            if missing:
                problems.append((bad.kind, "message lacks", missing, h["dlq.message"][:200]))
            if h.get("dlq.tenant") != bad.tenant:
                problems.append((bad.kind, "tenant", h.get("dlq.tenant"), bad.tenant))
            if len(h["dlq.message"]) > 2000:
                problems.append((bad.kind, "message length", len(h["dlq.message"])))
            if bad.kind == "huge_record":
                if not (
                    h.get("dlq.value.truncated") == "true"
                    and int(h["dlq.value.size"]) == len(bad.value)
                    and d["value"] == bad.value[:65536]
                ):
                    problems.append((bad.kind, "bounded copy", h.get("dlq.value.size")))
            elif d["value"] != bad.value:
                problems.append((bad.kind, "value changed"))
        assert problems == [], problems[:20]

        # every good event invoiced exactly once
        created = Counter(o["invoice_key"] for o in tally.outcomes if o["outcome"] == "created")
        assert {k: c for k, c in created.items() if c != 1} == {}
        assert set(created) == good_keys
        numbers = Counter(inv["InvoiceNumber"] for inv in xero.invoices())
        assert len(numbers) == len(good_keys) and max(numbers.values()) == 1

        text = metrics_text(worker)
        assert metric(text, "broker_agent_crashes_total") == 0
        assert metric(text, "broker_dead_letters_total", error_class="internal") == 0

        # logs bounded: no whole values, no line longer than 2,000 characters
        lines = worker.log().splitlines()
        assert max(len(line) for line in lines) <= 2000
        assert log_grown < 2000 * (n_bad + n_bad // 5), log_grown
        # memory flat
        print(
            f"{n_bad} bad records in {elapsed:.1f} s ({n_bad / elapsed:.0f}/s); RSS {rss_warm} KiB after warm-up, "
            f"{rss_after} KiB after ({rss_after / rss_warm:.2f}); log +{log_grown} bytes"
        )
        assert rss_after <= rss_warm * 1.2, (rss_warm, rss_after)
    finally:
        tally.close()
        worker.stop()
        xero.stop()


def test_fuzz_1000_bad_records(kafka, tmp_path):
    _run(kafka, tmp_path, 1000, seed=8)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_fuzz_10000_bad_records(kafka, tmp_path):
    _run(kafka, tmp_path, 10_000, seed=80)
