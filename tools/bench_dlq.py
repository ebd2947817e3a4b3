#!/usr/bin/env python3
"""Benchmark: does a burst of bad records hold good events back? Prints figures and ratios.

Not a test: run it with ``make bench-dlq`` (or ``python tools/bench_dlq.py``). It starts the
embedded Kafka (Tansu, in memory), the Xero emulator and one ``python -m broker run`` worker, then
runs, in the same worker, ``--rounds`` times each:

* **baseline**: ``--good`` valid work orders alone; time until every one is invoiced;
* **burst**: ``--bad`` bad records (every kind of ``tests/fuzz_support.py``, mixed) published just
  before the same number of good work orders; time until every good one is invoiced, and until every
  bad one is dead-lettered.

It prints the dead-letter rate (records/s), the good events' time in both cases (medians), the
ratio burst/baseline: how much the burst delayed the good events (1.0 = not at all), and the good
events' p99 latency in both cases (each from its publication, published right after the bad ones, to
its delivery outcome read back; at the 50 ms granularity of the reader). The worker runs with the
test settings (one record per producer batch, which the embedded Tansu needs).

``--broker-delay-ms`` (default ``0,25``) repeats the burst part with the broker that far away: a
:class:`tools.latency_proxy.DelayProxy` between every client and Tansu adds that much to each round
trip (issue 15, P7: "also on a broker 25 ms away").

Then, on a fresh embedded Kafka, **replay** (``broker dlq replay``, :func:`broker.dlq.replay`):
``--replay`` dead letters spread over 4 partitions re-published in batches (the default), and, as
the baseline, ``--replay-baseline`` others one record per batch (``batch=1``: the four round trips
per record that replay made before it sent in batches); it prints both rates and their ratio.
``--replay-only`` skips the burst part; ``--replay 0`` skips this one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker import dlq  # noqa: E402
from broker.demo import Tally  # noqa: E402
from broker.embedded import EmbeddedKafka, free_port  # noqa: E402
from broker.kafka import ensure_topics  # noqa: E402
from broker.settings import TOPIC_DLQ, TOPIC_EVENTS, TOPIC_INVOICES  # noqa: E402
from connectors.xero.emulator import XeroEmulator  # noqa: E402
from tests.conftest import WorkerProcess  # noqa: E402
from tests.delivery_support import FAST_ENV, ORG_ACME, ORG_NORDIC, delivery_config  # noqa: E402
from tests.fuzz_support import KINDS, bad_record, good_record  # noqa: E402
from tests.test_fuzz_pipeline import _publish  # noqa: E402
from tools.latency_proxy import DelayProxy  # noqa: E402


def _fill_dlq(bootstrap: str, topic: str, n: int) -> None:
    """``n`` dead letters on ``topic`` (4 partitions), half from ``enrich``, half from ``deliver``, as the
    worker writes them, one record per produce batch."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, batch_size=0)
    try:
        for i in range(n):
            enrich = i % 2 == 0
            headers = dlq.dlq_headers(
                topic=TOPIC_EVENTS if enrich else TOPIC_INVOICES,
                partition=i % 4,
                offset=i,
                stage="enrich" if enrich else "deliver",
                error_class="invalid" if enrich else "permanent",
                exc=ValueError(f"data.labour[0].minutes: -{i} is not a non-negative integer"),
                tenant="acme-fm",
            )
            value = json.dumps({"specversion": "1.0", "id": f"evt-{i}", "tenant": "acme-fm", "data": {"n": i}})
            producer.send(
                topic, key=f"acme-fm:wo:B{i}".encode(), value=value.encode(), headers=headers, partition=i % 4
            )
        producer.flush()
    finally:
        producer.close()


def bench_replay(n: int, n_baseline: int) -> None:
    """Print the replay rate in batches and one record per batch (module docstring)."""
    baseline_topic = f"{TOPIC_DLQ}.bench-baseline"
    with EmbeddedKafka() as kafka:
        ensure_topics(kafka.bootstrap, 4, [TOPIC_DLQ, baseline_topic, TOPIC_EVENTS, TOPIC_INVOICES])
        _fill_dlq(kafka.bootstrap, TOPIC_DLQ, n)
        _fill_dlq(kafka.bootstrap, baseline_topic, n_baseline)
        rates = {}
        for name, topic, count, batch in (
            ("one record per batch", baseline_topic, n_baseline, 1),
            ("in batches", TOPIC_DLQ, n, dlq.REPLAY_BATCH),
        ):
            started = time.monotonic()
            report = dlq.replay(kafka.bootstrap, group=f"bench-{batch}", topic=topic, batch=batch)
            took = time.monotonic() - started
            if report.count("replayed") != count:
                raise SystemExit(f"replay ({name}): {report.count('replayed')} of {count} replayed")
            rates[name] = count / took
            print(f"replay {name}: {count} dead letters in {took:.2f} s = {rates[name]:.0f} records/s")
    ratio = rates["in batches"] / rates["one record per batch"]
    print(f"ratio replay in batches / one record per batch: {ratio:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bad", type=int, default=2000, help="bad records per burst (default 2000)")
    parser.add_argument("--good", type=int, default=100, help="good work orders per round (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each case (default 3)")
    parser.add_argument("--replay", type=int, default=4000, help="dead letters replayed in batches (default 4000)")
    parser.add_argument(
        "--replay-baseline", type=int, default=500, help="dead letters replayed one per batch (default 500)"
    )
    parser.add_argument("--replay-only", action="store_true", help="only the replay part")
    parser.add_argument(
        "--broker-delay-ms", default="0,25", help="burst part with the broker this far away, ms, comma-separated"
    )
    args = parser.parse_args(argv)
    if not args.replay_only:
        for delay_ms in (float(d) for d in args.broker_delay_ms.split(",") if d.strip()):
            burst(args, delay_ms)
    if args.replay:
        bench_replay(args.replay, args.replay_baseline)
    return 0


@contextlib.contextmanager
def _kafka(delay_ms: float) -> Iterator[EmbeddedKafka]:
    """The embedded Tansu, behind a :class:`DelayProxy` adding ``delay_ms`` per round trip when > 0."""
    if delay_ms <= 0:
        with EmbeddedKafka() as kafka:
            yield kafka
        return
    proxy_port = free_port()
    with EmbeddedKafka(advertised_port=proxy_port) as kafka, DelayProxy(proxy_port, kafka.port, delay_ms / 1000):
        yield kafka


def burst(args: argparse.Namespace, delay_ms: float = 0.0) -> None:
    """The burst part (module docstring), with the broker ``delay_ms`` away."""
    rng = random.Random(1)
    kinds = sorted(k for k in KINDS if k != "huge_record")  # the producer here sends up to 4 MiB; keep it fair
    with tempfile.TemporaryDirectory() as tmp, _kafka(delay_ms) as kafka:
        tmp_path = Path(tmp)
        xero = XeroEmulator(tenant_ids=(ORG_ACME, ORG_NORDIC), rate_limit_per_minute=10_000_000).start()
        fast = {"rate_limit_per_minute": 10_000_000}
        config = delivery_config(tmp_path, xero.url, settings={"acme-fm": fast, "nordic-hvac": fast})
        ensure_topics(kafka.bootstrap, 4)
        worker = WorkerProcess(config, kafka.bootstrap, tmp_path, **{**FAST_ENV, "BROKER_LOG_LEVEL": "WARNING"}).start()
        tally = Tally(kafka.bootstrap)
        counter = iter(range(10**9))
        try:

            def run(n_bad: int) -> tuple[float, float, list[float]]:
                bad = [bad_record(rng.choice(kinds), rng, next(counter)) for _ in range(n_bad)]
                good = [good_record(rng, next(counter)) for _ in range(args.good)]
                waiting = {k for k, _, _ in good}
                seen = {o["invoice_key"] for o in tally.outcomes}
                latencies: list[float] = []
                dead_before = len(tally.dead)
                t0 = time.monotonic()
                if bad:
                    _publish(kafka.bootstrap, [(b.key, b.value) for b in bad])
                t_good = time.monotonic()
                _publish(kafka.bootstrap, [(k, v) for _, k, v in good])
                done_good = done_bad = None
                deadline = t0 + 600
                while done_good is None or done_bad is None:
                    tally.poll(0.05)
                    now = time.monotonic()
                    arrived = {o["invoice_key"] for o in tally.outcomes} - seen
                    seen |= arrived
                    latencies += [now - t_good for _ in waiting & arrived]
                    waiting -= arrived
                    if done_good is None and not waiting:
                        done_good = now - t0
                    if done_bad is None and len(tally.dead) - dead_before >= n_bad:
                        done_bad = now - t0
                    if now > deadline:
                        raise SystemExit(f"timed out: {worker.log()[-2000:]}")
                return done_good, done_bad or 0.0, latencies

            run(50)  # warm-up
            baseline = [run(0) for _ in range(args.rounds)]
            bursts = [run(args.bad) for _ in range(args.rounds)]
        finally:
            tally.close()
            worker.stop()
            xero.stop()
    base = statistics.median(b[0] for b in baseline)
    good_after = statistics.median(b[0] for b in bursts)
    bad_done = statistics.median(b[1] for b in bursts)
    p99_base = _p99([x for b in baseline for x in b[2]])
    p99_burst = _p99([x for b in bursts for x in b[2]])
    where = f"broker {delay_ms:g} ms away" if delay_ms > 0 else "broker on loopback"
    print(f"P7 dead letters ({where}):")
    print(f"   baseline: {args.good} good work orders invoiced in {base:.2f} s (median of {args.rounds})")
    rate = args.bad / bad_done
    print(f"   burst:    {args.bad} bad records dead-lettered in {bad_done:.2f} s = {rate:.0f} records/s")
    print(f"   burst:    the {args.good} good work orders published after them invoiced in {good_after:.2f} s")
    print(f"   ratio burst/baseline for the good work orders: {good_after / base:.2f}")
    print(
        f"   good work orders' p99 latency: {p99_burst:.3f} s during the burst, {p99_base:.3f} s without "
        f"(ratio {p99_burst / p99_base:.2f}; target p99 < 1 s)"
    )


def _p99(values: list[float]) -> float:
    """The 99th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]


if __name__ == "__main__":
    raise SystemExit(main())
