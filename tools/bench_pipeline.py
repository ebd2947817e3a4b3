#!/usr/bin/env python3
"""Benchmark P1: enrich + price events/s, ÷ a bare Faust consume -> produce pipeline with as many hops.

Not a test: run it with ``make bench-pipeline`` (or ``python tools/bench_pipeline.py``). Each round
starts a fresh embedded Kafka (Tansu, in memory) per pipeline, writes ``--events`` events to
``maintenance.events`` (``--partitions`` partitions), then starts one worker process and reads
``billing.invoices`` until every event has its record there:

* **broker**: the worker's Faust app (:func:`broker.app.create_app`: the ``enrich`` agent decodes and
  validates, re-keys by client onto the internal by-client topic, the ``price`` agent prices with its
  allowance and quote tables and publishes to ``billing.invoices``) with the deliver stage's agents
  left out, so the figure is enrich + price alone;
* **bare**: a Faust app with the same settings (:func:`broker.app.faust_settings`: partitions,
  producer acks, batch size and linger, fetch wait, commit interval; ``bench-mid`` batches like the
  by-client topic) and two agents that forward each record unchanged: ``maintenance.events`` ->
  agent -> ``bench-mid`` -> agent -> ``billing.invoices``.

The events are the bundled demo events of per-document clients (``broker/examples/events.ndjson``:
work orders, scheduled jobs and quotes of six tenants), copied with fresh document ids until there
are ``--events``. A round's rate is the number of records over the span between the first and the
last ``billing.invoices`` record (timestamps stamped by the worker's producer), so start-up and
partition assignment are not counted. It prints each round, the median of ``--rounds`` rounds per
pipeline and the ratio broker ÷ bare (issue 15 target: ≥ 0.8), then the worker's CPU time per event
(from the first output record read to the last) and its ratio bare ÷ broker, which other load on the
machine disturbs less. Both run with
``BROKER_PRODUCER_MAX_BATCH_SIZE`` (default ``1``, what the embedded Tansu needs; ``--batch-size``
changes it for both). Figures are wall-clock on whatever machine runs it: Tansu, the worker and this
reader share its cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.settings import TOPIC_EVENTS, TOPIC_INVOICES  # noqa: E402

APP_ID = "bench-pipeline"
MID_TOPIC = "bench-mid"
EXAMPLES = ROOT / "broker" / "examples"
_DOCUMENT_IDS = ("work_order_id", "scheduled_job_id", "quote_id")  # copied with a suffix


def events(count: int) -> list[tuple[bytes, bytes]]:
    """``count`` (key, value) records: the demo's valid events of per-document clients, copied with
    fresh ids (``<id>~<copy>``; a work order's ``quote_id`` follows its quote's)."""
    from broker.config import load_config
    from broker.events import EventDecodeError, parse_event

    config = load_config(EXAMPLES / "config.yaml")
    originals = []
    for line in (EXAMPLES / "events.ndjson").read_text(encoding="utf-8").splitlines():
        try:
            event = parse_event(line)
        except EventDecodeError:
            continue  # the demo's deliberately invalid event
        if config.tenant(event.tenant).invoicing_of(event.data.client_id) == "per_document":
            originals.append(json.loads(line))
    out = []
    for i in range(count):
        copy = json.loads(json.dumps(originals[i % len(originals)]))
        suffix = f"~{i // len(originals)}"
        copy["id"] += suffix
        for name in _DOCUMENT_IDS:
            if copy["data"].get(name):
                copy["data"][name] += suffix
        value = json.dumps(copy).encode()
        out.append((parse_event(value).partition_key.encode(), value))
    return out


def _fill(bootstrap: str, records: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in records:
            producer.send(TOPIC_EVENTS, key=key, value=value)
        producer.flush()
    finally:
        producer.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process ``pid`` has used so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _read(bootstrap: str, count: int, timeout: float, worker: subprocess.Popen[bytes]) -> tuple[list[int], float]:
    """Timestamps (ms) of the first ``count`` records of ``billing.invoices``, and the worker's CPU
    seconds per event from the first record read to the last; SystemExit after ``timeout`` s."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        TOPIC_INVOICES,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
    )
    stamps: list[int] = []
    deadline = time.monotonic() + timeout
    first = (0, 0.0)  # records read and CPU seconds when the first record was read
    try:
        while len(stamps) < count:
            if time.monotonic() > deadline or worker.poll() is not None:
                raise SystemExit(f"{len(stamps)} of {count} records on {TOPIC_INVOICES} (worker exit {worker.poll()})")
            for records in consumer.poll(timeout_ms=500).values():
                stamps.extend(m.timestamp for m in records)
            if stamps and not first[0]:
                first = (len(stamps), _cpu_seconds(worker.pid))
        cpu = (_cpu_seconds(worker.pid) - first[1]) / max(count - first[0], 1)
    finally:
        consumer.close()
    return stamps[:count], cpu


def run_round(kind: str, count: int, partitions: int, batch_size: int, timeout: float) -> tuple[float, float]:
    """One round of pipeline ``kind`` (``broker`` or ``bare``): events per second (module docstring)
    and the worker's CPU milliseconds per event."""
    from broker.embedded import EmbeddedKafka
    from broker.kafka import ensure_topics

    with EmbeddedKafka() as kafka, tempfile.TemporaryDirectory() as tmp:
        ensure_topics(kafka.bootstrap, partitions, [TOPIC_EVENTS, TOPIC_INVOICES, MID_TOPIC])
        _fill(kafka.bootstrap, events(count))
        env = {
            **os.environ,
            "BROKER_APP_ID": APP_ID,
            "BROKER_TOPIC_PARTITIONS": str(partitions),
            "BROKER_DATA_DIR": str(Path(tmp) / "data"),
            "BROKER_PRODUCER_MAX_BATCH_SIZE": str(batch_size),
            "BROKER_LOG_LEVEL": "WARNING",
        }
        log = Path(tmp) / "worker.log"
        with open(log, "wb") as out:
            worker = subprocess.Popen(
                [sys.executable, __file__, "--worker", kind, "--bootstrap", kafka.bootstrap],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                stamps, cpu = _read(kafka.bootstrap, count, timeout, worker)
            except SystemExit:
                print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                raise
            finally:
                worker.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(30)
                worker.kill()  # nothing when it has exited
                worker.wait(10)
    return (count - 1) / max((max(stamps) - min(stamps)) / 1000, 0.001), cpu * 1000


# --------------------------------------------------------------------------- the worker process
def _bare_app(settings: Any, bootstrap: str) -> Any:
    """Two agents forwarding every record unchanged, on a Faust app with the worker's settings."""
    from broker.app import faust_settings
    from broker.faust_compat import BrokerApp, create_faust_app

    app: BrokerApp = create_faust_app(
        settings.app_id, **faust_settings(settings, bootstrap, internal_topics=[MID_TOPIC])
    )
    n = settings.topic_partitions
    source = app.topic(TOPIC_EVENTS, partitions=n, key_type=bytes, value_type=bytes)
    middle = app.topic(MID_TOPIC, partitions=n, key_type=bytes, value_type=bytes)
    sink = app.topic(TOPIC_INVOICES, partitions=n, key_type=bytes, value_type=bytes)

    async def forward(stream: Any, to: Any) -> None:
        async for event in stream.events():
            await to.send(key=event.key, value=event.value)

    @app.agent(source)
    async def first(stream: Any) -> None:
        await forward(stream, middle)

    @app.agent(middle)
    async def second(stream: Any) -> None:
        await forward(stream, sink)

    return app


def _broker_app(settings: Any, bootstrap: str) -> Any:
    """The worker's app (enrich, price) without the deliver stage's agents."""
    from broker.app import create_app
    from broker.config import load_config

    app = create_app(settings, load_config(EXAMPLES / "config.yaml"), bootstrap)
    for name in [name for name in app.agents if "deliver" in name]:
        del app.agents[name]
    return app


def worker(kind: str, bootstrap: str) -> None:
    """Run pipeline ``kind``'s Faust worker in this process until terminated."""
    from broker.cli import build_worker
    from broker.settings import Settings

    settings = Settings.from_env()
    app = _broker_app(settings, bootstrap) if kind == "broker" else _bare_app(settings, bootstrap)
    build_worker(app, settings).execute_from_commandline()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=6000, help="events per round (default 6000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per pipeline (default 3)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4)")
    parser.add_argument(
        "--batch-size", type=int, default=1, help="BROKER_PRODUCER_MAX_BATCH_SIZE of both workers (default 1)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a round may take (default 300)")
    parser.add_argument("--worker", choices=("broker", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.bootstrap)
        return 0
    rates: dict[str, list[float]] = {"broker": [], "bare": []}
    cpu: dict[str, list[float]] = {"broker": [], "bare": []}
    for i in range(args.rounds):
        for kind in ("broker", "bare"):  # interleaved, so that other load on the machine hits both alike
            rate, ms = run_round(kind, args.events, args.partitions, args.batch_size, args.timeout)
            rates[kind].append(rate)
            cpu[kind].append(ms)
            print(f"round {i + 1} {kind:6s}: {rate:,.0f} events/s, worker CPU {ms:.3f} ms per event", flush=True)
    broker, bare = (statistics.median(rates[kind]) for kind in ("broker", "bare"))
    broker_cpu, bare_cpu = (statistics.median(cpu[kind]) for kind in ("broker", "bare"))
    print(
        f"enrich + price: {broker:,.0f} events/s; bare Faust, 2 hops: {bare:,.0f} events/s "
        f"(medians of {args.rounds} rounds of {args.events} events, {args.partitions} partitions, "
        f"producer batch size {args.batch_size}); ratio {broker / bare:.2f}"
    )
    print(
        f"worker CPU per event: enrich + price {broker_cpu:.3f} ms, bare {bare_cpu:.3f} ms; "
        f"ratio bare/broker {bare_cpu / broker_cpu:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
