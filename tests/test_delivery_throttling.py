"""Acceptance: throttling. A backlog for one tenant against the emulator's per-minute limit completes
with zero 429 responses and within 10 % of the fastest time the limit allows.

The full-size run (300 invoices at Xero's 60 calls / 60 s: the first 60 at once, then 60 a minute,
so the 300th can go 240 s after the first) is marked ``slow``. The default suite runs the same code
path scaled down in time: 60 invoices at 20 calls / 10 s (the emulator's ``rate_limit_window_seconds``
and the connector's ``rate_limit_window_seconds`` setting), fastest 20 s.

The backlog is put on ``billing.invoices`` directly (priced with the same pure pricing function the
worker uses), so it is all waiting at the deliver stage when the measurement starts.
"""

from __future__ import annotations

import math

import pytest

from broker.demo import Tally
from broker.kafka import ensure_topics
from broker.settings import TOPIC_INVOICES
from tests.delivery_support import (
    FAST_ENV,
    ORG_ACME,
    delivery_config,
    metric,
    metrics_text,
    priced,
    publish_records,
    wait_for,
    work_order,
)

pytestmark = pytest.mark.integration


def _run_backlog(kafka, xero, tmp_path, worker_factory, *, n: int, limit: int, window: float) -> None:
    xero.rate_limit_per_minute = limit
    xero.rate_limit_window_seconds = window
    config = delivery_config(
        tmp_path, xero.url, settings={"acme-fm": {"rate_limit_per_minute": limit, "rate_limit_window_seconds": window}}
    )
    ensure_topics(kafka, 4)
    # one invoice per call (no batched creates): the limiter's pacing of single calls is what is measured
    # here; tests/test_delivery_batched_pipeline.py has the batched backlog
    worker = worker_factory(config, kafka, **FAST_ENV, BROKER_BATCH_MAX="1")
    tally = Tally(kafka)
    try:
        # warm up (worker joined, token fetched) with one invoice of the other tenant
        publish_records(kafka, TOPIC_INVOICES, priced([work_order("nordic-hvac", "WARM-1")], config))
        wait_for(
            lambda: len(tally.outcomes) >= 1, timeout=60, what="the warm-up invoice", tally=tally, workers=[worker]
        )
        backlog = priced([work_order("acme-fm", f"T-{i:04d}") for i in range(n)], config)
        publish_records(kafka, TOPIC_INVOICES, backlog)
        fastest = (math.ceil(n / limit) - 1) * window
        wait_for(
            lambda: len(tally.outcomes) >= n + 1,
            timeout=fastest * 1.1 + 60,
            what=f"{n} invoices",
            tally=tally,
            workers=[worker],
        )
        created = [h for h in xero.history if h[1] == "invoice.created" and h[2] == ORG_ACME]
        assert len(created) == n and len({h[3] for h in created}) == n
        elapsed = created[-1][0] - created[0][0]
        print(f"{n} invoices at {limit}/{window:g}s: {elapsed:.1f} s (fastest the limit allows {fastest:.0f} s)")
        assert xero.count_429 == 0, [c for c in xero.calls if c[2] == 429][:5]
        assert elapsed >= fastest - 1, "faster than the limit allows: the emulator would have answered 429"
        assert elapsed <= fastest * 1.10, f"{elapsed:.1f} s is more than 10 % above the fastest {fastest:.0f} s"
        assert {o["outcome"] for o in tally.outcomes} == {"created"}
        text = metrics_text(worker)
        assert metric(text, "broker_rate_limit_wait_seconds_total", billing_system="xero") > fastest * 0.5
        assert metric(text, "broker_delivery_retries_total") == 0
        # never more than the declared 5 concurrent calls (the emulator would have answered 429 "concurrent")
    finally:
        tally.close()


def test_throttled_backlog_scaled_has_no_429_and_is_near_the_fastest(kafka, xero, tmp_path, worker_factory):
    _run_backlog(kafka, xero, tmp_path, worker_factory, n=60, limit=20, window=10.0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_throttled_backlog_300_at_60_per_minute(kafka, xero, tmp_path, worker_factory):
    _run_backlog(kafka, xero, tmp_path, worker_factory, n=300, limit=60, window=60.0)
