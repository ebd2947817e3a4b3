#!/usr/bin/env python3
"""Benchmark: event -> delivered invoice latency, p50 and p99, at several rates. Prints figures and ratios.

Not a test: run it with ``make bench-latency`` (or ``python tools/bench_latency.py``). For each of two
worker configurations it starts the embedded Kafka (Tansu, in memory), the Xero emulator (answering
at once, no rate limit) and one ``python -m broker run`` worker, warms it up, then publishes work
orders of two Xero tenants at each ``--rates`` rate (events per second) for ``--seconds`` seconds.
An event's latency is the timestamp of its ``created`` record on ``billing.deliveries`` minus the
timestamp of its record on ``maintenance.events`` (both stamped by their producers on this machine):
three Kafka hops (maintenance.events -> enrich -> by-client topic -> price -> billing.invoices ->
deliver), the Xero call (batched: ``BROKER_BATCH_LINGER_MS``) and the outcome.

* **defaults**: the broker's settings (``BROKER_FETCH_MAX_WAIT_MS``, ``BROKER_PRODUCER_LINGER_MS``,
  ``BROKER_COMMIT_INTERVAL`` as the environment or their defaults say);
* **baseline**: Faust's own values, the broker's before issue 15: fetch wait 1,500 ms, linger 0,
  commit interval 2.8 s (``--baseline-wait`` changes the fetch wait; ``--no-baseline`` skips it).

It prints p50/p99 per rate and run and the ratios defaults/baseline (below 1: faster). The worker
runs with the test settings (one record per producer batch, which the embedded Tansu needs).
Figures are wall-clock on whatever machine runs it; other load slows them. The default run takes
about two minutes (1 min 37 s on two cores); ``--seconds 60`` or ``--rates 20,50,100,200,300,500``
make longer ones.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.embedded import EmbeddedKafka  # noqa: E402
from broker.kafka import ensure_topics  # noqa: E402
from broker.settings import TOPIC_DELIVERIES, TOPIC_EVENTS, Settings  # noqa: E402
from connectors.xero.emulator import XeroEmulator  # noqa: E402
from tests.conftest import WorkerProcess  # noqa: E402
from tests.delivery_support import FAST_ENV, ORG_ACME, ORG_NORDIC, delivery_config, work_order  # noqa: E402

TENANTS = ("acme-fm", "nordic-hvac")
UNLIMITED = 10_000_000


class Pipeline:
    """Publishes work orders (one record per produce batch, as Tansu needs) and reads the ``created``
    outcomes; :meth:`latencies` pairs them by record timestamps (seconds)."""

    def __init__(self, bootstrap: str):
        from kafka import KafkaConsumer, KafkaProducer

        self.producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, batch_size=0)
        self.consumer = KafkaConsumer(
            TOPIC_DELIVERIES,
            bootstrap_servers=bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        self.sent: dict[str, object] = {}  # invoice key -> future of the event's record metadata
        self.created: dict[str, int] = {}  # invoice key -> timestamp (ms) of its created outcome

    def publish(self, tenant: str, wo_id: str) -> str:
        """Send one work order; returns its invoice key."""
        key = f"{tenant}:wo:{wo_id}"
        self.sent[f"{key}:r1"] = self.producer.send(TOPIC_EVENTS, key=key.encode(), value=work_order(tenant, wo_id))
        return f"{key}:r1"

    def wait(self, keys: set[str], timeout: float) -> None:
        """Read outcomes until every one of ``keys`` has its ``created`` record; SystemExit after ``timeout`` s."""
        self.producer.flush()
        deadline = time.monotonic() + timeout
        while not keys <= self.created.keys():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out: {len(keys - self.created.keys())} of {len(keys)} invoices not created")
            self.poll(0.2)

    def poll(self, timeout: float) -> None:
        """Read the outcomes available within ``timeout`` seconds."""
        for records in self.consumer.poll(timeout_ms=int(timeout * 1000)).values():
            for m in records:
                outcome = json.loads(m.value)
                if outcome["outcome"] == "created":
                    self.created.setdefault(outcome["invoice_key"], m.timestamp)

    def latencies(self, keys: list[str]) -> tuple[list[float], float]:
        """Seconds from each event's record to its ``created`` outcome's record, and the rate the worker
        delivered them at (events per second between the first and the last outcome)."""
        sent = [self.sent[k].get(timeout=30).timestamp for k in keys]  # type: ignore[attr-defined]
        created = [self.created[k] for k in keys]
        span = max((max(created) - min(created)) / 1000, 0.001)
        return [(c - s) / 1000 for c, s in zip(created, sent, strict=True)], (len(keys) - 1) / span

    def close(self) -> None:
        """Close the producer and the consumer."""
        self.producer.close()
        self.consumer.close()


def run(env: dict[str, str], rates: list[float], seconds: float) -> dict[float, tuple[list[float], float]]:
    """Per rate, the latencies (seconds) and the delivered rate (events/s) of one worker started with
    ``env`` (module docstring)."""
    with tempfile.TemporaryDirectory() as tmp, EmbeddedKafka() as kafka:
        tmp_path = Path(tmp)
        xero = XeroEmulator(
            tenant_ids=(ORG_ACME, ORG_NORDIC),
            rate_limit_per_minute=UNLIMITED,
            app_rate_limit_per_minute=UNLIMITED,
            daily_limit=UNLIMITED,
        ).start()
        fast = {"rate_limit_per_minute": UNLIMITED}
        config = delivery_config(tmp_path, xero.url, settings=dict.fromkeys(TENANTS, fast))
        ensure_topics(kafka.bootstrap, 4)
        worker = WorkerProcess(
            config, kafka.bootstrap, tmp_path, **{**FAST_ENV, "BROKER_LOG_LEVEL": "WARNING", **env}
        ).start()
        pipe = Pipeline(kafka.bootstrap)
        out: dict[float, tuple[list[float], float]] = {}
        try:
            pipe.wait({pipe.publish("nordic-hvac", "WARM-0")}, 120)  # the worker is up and has its partitions
            warm = {pipe.publish(TENANTS[i % 2], f"WARM-{i}") for i in range(1, 41)}  # every partition, every lane
            pipe.wait(warm, 60)
            for rate in rates:
                keys = []
                start = time.monotonic()
                for i in range(int(rate * seconds)):
                    time.sleep(max(0.0, start + i / rate - time.monotonic()))
                    keys.append(pipe.publish(TENANTS[i % 2], f"R{rate:g}-{i:06d}"))
                    pipe.poll(0)
                pipe.wait(set(keys), 120 + seconds * 10)
                out[rate] = pipe.latencies(keys)
                time.sleep(1.0)  # let the worker go idle between rates
        except SystemExit:
            print(worker.log()[-3000:], file=sys.stderr)
            raise
        finally:
            pipe.close()
            worker.stop()
            xero.stop()
    return out


def pct(values: list[float], q: int) -> float:
    """The ``q``-th percentile of ``values``."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20,100,300", help="events per second, comma-separated (default 20,100,300)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of publishing per rate (default 10)")
    parser.add_argument("--baseline-wait", type=int, default=1500, help="baseline fetch wait, ms (default 1500)")
    parser.add_argument("--no-baseline", action="store_true", help="measure the defaults only")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    settings = Settings.from_env()
    runs = {
        f"defaults (fetch wait {settings.fetch_max_wait_ms} ms, linger {settings.producer_linger_ms} ms, "
        f"commit every {settings.commit_interval:g} s)": {},
    }
    if not args.no_baseline:
        runs[f"baseline (fetch wait {args.baseline_wait} ms, linger 0 ms, commit every 2.8 s)"] = {
            "BROKER_FETCH_MAX_WAIT_MS": str(args.baseline_wait),
            "BROKER_PRODUCER_LINGER_MS": "0",
            "BROKER_COMMIT_INTERVAL": "2.8",
        }
    results = {}
    for name, env in runs.items():
        results[name] = run(env, rates, args.seconds)
        print(f"{name}:")
        for rate, (values, delivered) in results[name].items():
            behind = " (the worker falls behind: latency is queueing)" if delivered < rate * 0.95 else ""
            print(
                f"  {rate:g} events/s, {len(values)} events: p50 {pct(values, 50) * 1000:.0f} ms, "
                f"p99 {pct(values, 99) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms; "
                f"delivered at {delivered:.0f} events/s{behind}",
                flush=True,
            )
    if len(results) == 2:
        new, base = results.values()
        for rate in rates:
            (n, _), (b, _) = new[rate], base[rate]
            print(
                f"ratio defaults/baseline at {rate:g} events/s: p50 {pct(n, 50) / pct(b, 50):.2f}, "
                f"p99 {pct(n, 99) / pct(b, 99):.2f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
