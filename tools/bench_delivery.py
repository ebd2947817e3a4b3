#!/usr/bin/env python3
"""Benchmark of the deliver stage (issue 15, P3 and P4). Prints figures and ratios; asserts nothing.

Not a test: run it with ``make bench-delivery`` (or ``python tools/bench_delivery.py``). It starts the
embedded Kafka (Tansu, in memory), the Xero emulator and ``python -m broker run`` workers.

* **P3, a throttled Xero tenant's backlog.** acme-fm is limited to ``--calls`` calls per
  ``--window`` seconds (Xero: 60 per 60 s; scaled down in time by default so that the run is short,
  the ratio is the same). ``--backlog`` invoices are put on ``billing.invoices`` at once. The first
  window's calls are free and go out while the backlog streams in from Kafka; after it every call
  waits for the limiter, and the invoices per call ÷ 50 is the share of the ceiling
  (50 × calls per minute) used: the ratio (1.0 = the ceiling). The baseline, in the same run, is
  ``BROKER_BATCH_MAX=1`` (one invoice per call, ``--baseline`` invoices): its invoices per minute.
* **P4, a healthy tenant during another's outage.** nordic-hvac's and acme-fm's work orders are
  published at ``--rate`` events per second each for ``--seconds`` seconds, through the whole
  pipeline (enrich, price, deliver); nordic-hvac's latency (publish to delivery outcome) p50/p99,
  first with both billing systems up (baseline), then with acme-fm's Xero organisation answering
  503 throughout. Ratio = p99 during the outage / p99 without it (1.0 = not affected).

Figures are wall-clock on whatever machine runs it (2 cores here); other load slows them.
"""

from __future__ import annotations

import argparse
import json
import math
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
from broker.settings import TOPIC_EVENTS, TOPIC_INVOICES  # noqa: E402
from connectors.xero.emulator import XeroEmulator  # noqa: E402
from tests.conftest import WorkerProcess  # noqa: E402
from tests.delivery_support import (  # noqa: E402
    FAST_ENV,
    ORG_ACME,
    ORG_NORDIC,
    delivery_config,
    priced,
    publish_records,
    work_order,
)

BATCH = 50  # invoices per Xero PUT Invoices


def _wait(tally: Tally, keys: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not keys <= {o["invoice_key"] for o in tally.outcomes}:
        if time.monotonic() > deadline:
            missing = len(keys - {o["invoice_key"] for o in tally.outcomes})
            raise SystemExit(f"timed out: {missing} of {len(keys)} invoices without an outcome")
        tally.poll(0.2)


def backlog(n: int, calls: int, window: float, batch_max: int) -> tuple[list[float], int]:
    """Deliver ``n`` invoices of one throttled tenant; ``(creation times in Xero, PUT Invoices calls)``."""
    per_call = BATCH if batch_max != 1 else 1
    with tempfile.TemporaryDirectory() as tmp, EmbeddedKafka() as kafka:
        tmp_path = Path(tmp)
        xero = XeroEmulator(tenant_ids=(ORG_ACME, ORG_NORDIC), rate_limit_per_minute=calls).start()
        xero.rate_limit_window_seconds = window
        limits = {"rate_limit_per_minute": calls, "rate_limit_window_seconds": window}
        config = delivery_config(tmp_path, xero.url, settings={"acme-fm": limits})
        ensure_topics(kafka.bootstrap, 4)
        env = {**FAST_ENV, "BROKER_LOG_LEVEL": "WARNING", "BROKER_BATCH_MAX": str(batch_max)}
        worker = WorkerProcess(config, kafka.bootstrap, tmp_path, **env).start()
        tally = Tally(kafka.bootstrap)
        try:
            warm = priced([work_order("nordic-hvac", "WARM-1")], config)
            publish_records(kafka.bootstrap, TOPIC_INVOICES, warm)
            _wait(tally, {json.loads(warm[0][1])["invoice_key"]}, 60)
            records = priced([work_order("acme-fm", f"B-{i:05d}") for i in range(n)], config)
            publish_records(kafka.bootstrap, TOPIC_INVOICES, records)
            fastest = (math.ceil(n / (per_call * calls)) - 1) * window
            _wait(tally, {json.loads(v)["invoice_key"] for _k, v in records}, fastest * 3 + 120)
            created = [h[0] for h in xero.history if h[1] == "invoice.created" and h[2] == ORG_ACME]
            puts = sum(1 for m, p, _s in xero.calls if m == "PUT" and p == "/api.xro/2.0/Invoices")
            return created, puts
        finally:
            tally.close()
            worker.stop()
            xero.stop()


def p3(args: argparse.Namespace) -> None:
    """P3 (module docstring). Throttled regime: after the first window, whose ``calls`` calls are free
    and go out as the backlog streams in from Kafka, every call waits for the limiter; its invoices
    per call ÷ 50 is the share of the ceiling used (each call is one of the ``calls`` per window)."""
    calls, window = args.calls, args.window
    created, puts = backlog(args.backlog, calls, window, 0)
    t0 = created[0]
    first = sum(1 for t in created if t < t0 + window * 0.9)
    steady_calls = puts - calls
    per_call = (len(created) - first) / steady_calls if steady_calls > 0 else float("nan")
    ceiling = BATCH * calls * 60 / window
    print(
        f"P3 batched: {len(created)} invoices at {calls} calls / {window:g} s in {created[-1] - t0:.1f} s, "
        f"{puts} PUT Invoices calls ({first} invoices in the first window's {calls} calls)"
    )
    print(
        f"   throttled regime: {per_call:.1f} invoices per call -> ratio {per_call / BATCH:.2f} of the ceiling "
        f"({per_call * calls * 60 / window:.0f} of {ceiling:.0f} invoices per minute; at Xero's 60 calls / 60 s: "
        f"{per_call * 60:.0f} of {BATCH * 60})"
    )
    if args.baseline:
        base, base_puts = backlog(args.baseline, calls, window, 1)
        rate = (len(base) - calls) / (base[-1] - base[0]) * 60 if len(base) > calls else float("nan")
        print(
            f"P3 baseline (BROKER_BATCH_MAX=1): {len(base)} invoices in {base[-1] - base[0]:.1f} s, {base_puts} calls: "
            f"{rate:.0f} invoices per minute after the first window (ceiling {calls * 60 / window:.0f})"
        )
        print(f"   speed-up of batching in the throttled regime: {per_call:.1f}x per allowed call")


def _latencies(tally: Tally, sent: dict[str, float]) -> list[float]:
    seen = {o["invoice_key"]: o for o in tally.outcomes}
    out = []
    for key, t0 in sent.items():
        at = seen[key]["at"]
        from datetime import datetime

        out.append(datetime.fromisoformat(at).timestamp() - t0)
    return out


def p4(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp, EmbeddedKafka() as kafka:
        tmp_path = Path(tmp)
        fast = {"rate_limit_per_minute": 10_000_000}
        xero = XeroEmulator(tenant_ids=(ORG_ACME, ORG_NORDIC), rate_limit_per_minute=10_000_000).start()
        config = delivery_config(tmp_path, xero.url, settings={"acme-fm": fast, "nordic-hvac": fast})
        ensure_topics(kafka.bootstrap, 4)
        worker = WorkerProcess(config, kafka.bootstrap, tmp_path, **{**FAST_ENV, "BROKER_LOG_LEVEL": "WARNING"}).start()
        tally = Tally(kafka.bootstrap)
        try:
            warm = [(b"nordic-hvac:wo:WARM", work_order("nordic-hvac", "WARM"))]
            publish_records(kafka.bootstrap, TOPIC_EVENTS, warm)
            _wait(tally, {"nordic-hvac:wo:WARM:r1"}, 90)

            def phase(name: str) -> list[float]:
                sent: dict[str, float] = {}
                n = int(args.rate * args.seconds)
                start = time.time()
                for i in range(n):
                    due = start + i / args.rate
                    time.sleep(max(0.0, due - time.time()))
                    healthy, other = f"{name}-H-{i:05d}", f"{name}-O-{i:05d}"
                    records = [
                        (f"nordic-hvac:wo:{healthy}".encode(), work_order("nordic-hvac", healthy)),
                        (f"acme-fm:wo:{other}".encode(), work_order("acme-fm", other)),
                    ]
                    sent[f"nordic-hvac:wo:{healthy}:r1"] = time.time()
                    publish_records(kafka.bootstrap, TOPIC_EVENTS, records)
                    tally.poll(0)
                _wait(tally, set(sent), 120)
                return _latencies(tally, sent)

            base = phase("base")
            xero.outage(3600, ORG_ACME)
            down = phase("down")
        finally:
            tally.close()
            worker.stop()
            xero.stop()

    def p(values: list[float], q: float) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]

    print(
        f"P4 nordic-hvac latency, {args.rate:g} events/s per tenant for {args.seconds:g} s: "
        f"baseline p50 {p(base, 50):.3f} s p99 {p(base, 99):.3f} s; "
        f"acme-fm's Xero down: p50 {p(down, 50):.3f} s p99 {p(down, 99):.3f} s"
    )
    print(f"   ratio p99 during the outage / p99 without it: {p(down, 99) / p(base, 99):.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backlog", type=int, default=2000, help="P3 invoices, batched (default 2000)")
    parser.add_argument("--baseline", type=int, default=30, help="P3 invoices, one per call (default 30)")
    parser.add_argument("--calls", type=int, default=10, help="P3 calls allowed per window (default 10)")
    parser.add_argument("--window", type=float, default=10.0, help="P3 window in seconds (default 10)")
    parser.add_argument("--rate", type=float, default=10.0, help="P4 events per second per tenant (default 10)")
    parser.add_argument("--seconds", type=float, default=15.0, help="P4 seconds per phase (default 15)")
    parser.add_argument("--only", choices=("p3", "p4"), help="run one part only")
    args = parser.parse_args(argv)
    if args.only in (None, "p3"):
        p3(args)
    if args.only in (None, "p4"):
        p4(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
