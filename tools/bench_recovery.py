#!/usr/bin/env python3
"""Benchmark: how long a worker takes to be ready after a restart with a large delivery ledger, for the
in-memory store and for RocksDB (``BROKER_STORE``).

Not a test: run it with ``make bench-recovery`` (or ``python tools/bench_recovery.py --entries 100000``).
It starts the embedded Kafka (Tansu, in memory), writes ``--entries`` delivered ledger entries to the
ledger's changelog topic (as a worker that delivered that many invoices would have), then, per store:
starts a worker and waits until ``/readyz`` answers 200 (its tables recovered), stops it (SIGTERM),
starts it again on the same data directory and measures that second start. With ``memory`` every
start replays the whole changelog; with ``rocksdb`` the second start reads the tables from disk and
replays only what it missed. It prints both restart times and their ratio, and each worker's RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

APP_ID = "bench-recovery"
PARTITIONS = 4


def _entries(n: int) -> list[tuple[bytes, bytes]]:
    """``n`` delivered ledger entries as (key, value) records of the changelog (JSON, like the table's)."""
    out = []
    for i in range(n):
        key = f"acme-fm:wo:B{i:07d}:r1"
        entry = {
            "invoice_key": key,
            "order_key": f"acme-fm:wo:B{i:07d}",
            "tenant": "acme-fm",
            "revision": 1,
            "state": "delivered",
            "uncertain": False,
            "external_id": f"00000000-0000-0000-0000-{i:012d}",
            "external_number": f"ACME-WO-B{i:07d}-R1",
            "attempts": 1,
            "reconciled": False,
            "delivered_at": "2026-12-06T00:00:00+00:00",
            "fingerprint": "sha256:" + "0" * 64,
        }
        out.append((json.dumps(key).encode(), json.dumps(entry).encode()))
    return out


def _fill(bootstrap: str, records: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    topic = f"{APP_ID}-delivery-ledger-changelog"
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, batch_size=0)
    try:
        for i, (key, value) in enumerate(records):
            producer.send(topic, key=key, value=value, partition=i % PARTITIONS)
        producer.flush()
    finally:
        producer.close()


def _start(store: str, bootstrap: str, config: Path, data: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    from broker.demo import DEMO_SECRETS

    env = {
        **os.environ,
        **DEMO_SECRETS,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "BROKER_APP_ID": APP_ID,
        "BROKER_TOPIC_PARTITIONS": str(PARTITIONS),
        "BROKER_DATA_DIR": str(data),
        "BROKER_METRICS_PORT": str(port),
        "BROKER_STORE": store,
        "BROKER_PRODUCER_MAX_BATCH_SIZE": "1",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "broker", "run", "--config", str(config)],
        env=env,
        stdout=open(log, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _ready(proc: subprocess.Popen[bytes], port: int, timeout: float) -> float:
    import httpx

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the worker was not ready within {timeout:.0f} s")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    import yaml

    from broker.embedded import EmbeddedKafka, free_port
    from broker.kafka import ensure_topics
    from broker.settings import ALL_TOPICS

    with EmbeddedKafka() as kafka, tempfile.TemporaryDirectory() as tmp:
        ensure_topics(
            kafka.bootstrap,
            PARTITIONS,
            [*ALL_TOPICS, f"{APP_ID}-delivery-ledger-changelog", f"{APP_ID}-events-by-client"],
        )
        t0 = time.monotonic()
        _fill(kafka.bootstrap, _entries(args.entries))
        print(f"{args.entries} ledger entries written to the changelog in {time.monotonic() - t0:.1f} s")
        raw = yaml.safe_load((ROOT / "broker" / "examples" / "config.yaml").read_text())
        raw["tenants"] = {"acme-fm": raw["tenants"]["acme-fm"]}
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        results = {}
        for store in ("memory", "rocksdb"):
            data = Path(tmp) / f"data-{store}"
            times = []
            for start in ("first", "restart"):
                port = free_port()
                proc = _start(store, kafka.bootstrap, config, data, port, Path(tmp) / f"{store}.log")
                try:
                    times.append(_ready(proc, port, args.timeout))
                    rss = _rss_kib(proc.pid)
                finally:
                    _stop(proc)
                print(f"{store:7s} {start:7s} start: ready in {times[-1]:6.1f} s, RSS {rss / 1024:.0f} MiB")
            results[store] = times[1]
        print(
            f"restart with a {args.entries}-entry ledger: memory {results['memory']:.1f} s, "
            f"rocksdb {results['rocksdb']:.1f} s; ratio rocksdb/memory {results['rocksdb'] / results['memory']:.2f}"
        )


if __name__ == "__main__":
    main()
