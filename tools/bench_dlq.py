#!/usr/bin/env python3
"""Benchmark: does a burst of bad records hold good events back? Prints figures and ratios.

Not a test: run it with ``make bench-dlq`` (or ``python tools/bench_dlq.py``). It starts the
embedded Kafka (Tansu, in memory), the Xero emulator and one ``python -m broker run`` worker, then
runs, in the same worker, ``--rounds`` times each:

* **baseline**: ``--good`` valid work orders alone; time until every one is invoiced;
* **burst**: ``--bad`` bad records (every kind of ``tests/fuzz_support.py``, mixed) published just
  before the same number of good work orders; time until every good one is invoiced, and until every
  bad one is dead-lettered.

It prints the dead-letter rate (records/s), the good events' time in both cases (medians), and the
ratio burst/baseline: how much the burst delayed the good events (1.0 = not at all). The worker
runs with the test settings (one record per producer batch, which the embedded Tansu needs).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.demo import Tally  # noqa: E402
from broker.embedded import EmbeddedKafka  # noqa: E402
from broker.kafka import ensure_topics  # noqa: E402
from connectors.xero.emulator import XeroEmulator  # noqa: E402
from tests.conftest import WorkerProcess  # noqa: E402
from tests.delivery_support import FAST_ENV, ORG_ACME, ORG_NORDIC, delivery_config  # noqa: E402
from tests.fuzz_support import KINDS, bad_record, good_record  # noqa: E402
from tests.test_fuzz_pipeline import _publish  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bad", type=int, default=2000, help="bad records per burst (default 2000)")
    parser.add_argument("--good", type=int, default=100, help="good work orders per round (default 100)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each case (default 3)")
    args = parser.parse_args(argv)
    rng = random.Random(1)
    kinds = sorted(k for k in KINDS if k != "huge_record")  # the producer here sends up to 4 MiB; keep it fair
    with tempfile.TemporaryDirectory() as tmp, EmbeddedKafka() as kafka:
        tmp_path = Path(tmp)
        xero = XeroEmulator(tenant_ids=(ORG_ACME, ORG_NORDIC), rate_limit_per_minute=10_000_000).start()
        fast = {"rate_limit_per_minute": 10_000_000}
        config = delivery_config(tmp_path, xero.url, settings={"acme-fm": fast, "nordic-hvac": fast})
        ensure_topics(kafka.bootstrap, 4)
        worker = WorkerProcess(config, kafka.bootstrap, tmp_path, **{**FAST_ENV, "BROKER_LOG_LEVEL": "WARNING"}).start()
        tally = Tally(kafka.bootstrap)
        counter = iter(range(10**9))
        try:

            def run(n_bad: int) -> tuple[float, float]:
                bad = [bad_record(rng.choice(kinds), rng, next(counter)) for _ in range(n_bad)]
                good = [good_record(rng, next(counter)) for _ in range(args.good)]
                keys = {k for k, _, _ in good}
                dead_before = len(tally.dead)
                t0 = time.monotonic()
                _publish(kafka.bootstrap, [(b.key, b.value) for b in bad] + [(k, v) for _, k, v in good])
                done_good = done_bad = None
                deadline = t0 + 600
                while done_good is None or done_bad is None:
                    tally.poll(0.05)
                    now = time.monotonic()
                    if done_good is None and keys <= {o["invoice_key"] for o in tally.outcomes}:
                        done_good = now - t0
                    if done_bad is None and len(tally.dead) - dead_before >= n_bad:
                        done_bad = now - t0
                    if now > deadline:
                        raise SystemExit(f"timed out: {worker.log()[-2000:]}")
                return done_good, done_bad or 0.0

            run(50)  # warm-up
            baseline = [run(0)[0] for _ in range(args.rounds)]
            bursts = [run(args.bad) for _ in range(args.rounds)]
        finally:
            tally.close()
            worker.stop()
            xero.stop()
    base = statistics.median(baseline)
    good_after = statistics.median(b[0] for b in bursts)
    bad_done = statistics.median(b[1] for b in bursts)
    print(f"baseline: {args.good} good work orders invoiced in {base:.2f} s (median of {args.rounds})")
    print(f"burst:    {args.bad} bad records dead-lettered in {bad_done:.2f} s = {args.bad / bad_done:.0f} records/s")
    print(f"burst:    the {args.good} good work orders published after them invoiced in {good_after:.2f} s")
    print(f"ratio burst/baseline for the good work orders: {good_after / base:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
