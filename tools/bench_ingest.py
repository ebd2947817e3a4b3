#!/usr/bin/env python3
"""Benchmark: signed CloudEvents per second through ``broker ingest``, next to a bare producer.

Not a test: run it with ``make bench-ingest`` (or ``python tools/bench_ingest.py``). It starts the
embedded Kafka (Tansu, in memory) and one ``python -m broker ingest`` process, then, ``--rounds``
times each:

* **intake**: ``--events`` distinct events, each in its own HMAC-signed request, from
  ``--clients`` concurrent HTTP clients (aiohttp, keep-alive); every request must be answered 202,
  which the intake gives only after Kafka acknowledged the record (``acks=all``);
* **ERPNext webhooks**: ``--events`` quotation webhooks (``POST /webhooks/erpnext/acme-fm``, signed
  as Frappe signs them, mapped by the ERPNext adapter), the same way;
* **bare producer**: the same records published by one aiokafka producer with ``acks=all``, as
  ``--clients`` concurrent ``send_and_wait`` loops: the ceiling Kafka itself sets on this machine.

It prints requests per second, p50 and p99 latency of the intake, the producer's records per
second and the ratio intake/producer (medians of the rounds). Both run against the same Tansu in
the same run; the intake uses one record per producer batch and no idempotence, as the embedded
Tansu needs (``docs/intake.md``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SECRET = b"bench-secret"


def _events(n: int, round_no: int) -> list[bytes]:
    from broker.kafka import read_events_file

    examples = ROOT / "broker" / "examples" / "events.ndjson"
    template = next(json.loads(r) for r in read_events_file(examples) if b'"acme-fm"' in r)
    out = []
    for i in range(n):
        data = {**template["data"], "work_order_id": f"B{round_no}-{i}"}
        out.append(json.dumps({**template, "id": f"bench-{round_no}-{i}", "data": data}).encode())
    return out


def _signed_events(bodies: list[bytes]) -> list[tuple[str, bytes, dict[str, str]]]:
    """``POST /events`` requests, HMAC-signed (``X-Broker-Signature``)."""
    from broker.intake import sign

    now = int(time.time())
    headers = {"Content-Type": "application/cloudevents+json", "X-Broker-Source": "acme-fm/bench"}
    return [("/events", body, {**headers, "X-Broker-Signature": sign(SECRET, now, body)}) for body in bodies]


def _erpnext_webhooks(n: int, round_no: int) -> list[tuple[str, bytes, dict[str, str]]]:
    """ERPNext Quotation ``on_submit`` webhooks (``X-Frappe-Webhook-Signature``), one quote each."""
    from broker.platforms.emulator import sample_bytes
    from broker.platforms.emulator.erpnext import webhook

    quote = json.loads(sample_bytes("erpnext", "webhook_quotation_on_submit.body.json"))
    out = []
    for i in range(n):
        headers, body = webhook(SECRET, {**quote, "name": f"SAL-QTN-B{round_no}-{i}"})
        # Frappe sends no Content-Type unless configured; aiohttp would add application/octet-stream
        out.append(("/webhooks/erpnext/acme-fm", body, {**headers, "Content-Type": "application/json"}))
    return out


async def _intake_round(
    url: str, requests: list[tuple[str, bytes, dict[str, str]]], clients: int
) -> tuple[float, list[float]]:
    import aiohttp  # its C HTTP parser leaves more of the 2 cores to the intake than httpx's h11

    queue: asyncio.Queue[tuple[str, bytes, dict[str, str]]] = asyncio.Queue()
    for request in requests:
        queue.put_nowait(request)
    latencies: list[float] = []

    async def client() -> None:
        connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection per client
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as http:
            while not queue.empty():
                path, body, headers = queue.get_nowait()
                t0 = time.perf_counter()
                async with http.post(f"{url}{path}", data=body, headers=headers) as response:
                    text = await response.text()
                latencies.append(time.perf_counter() - t0)
                if response.status != 202:
                    raise SystemExit(f"intake answered {response.status}: {text}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.perf_counter() - t0, latencies


async def _producer_round(bootstrap: str, bodies: list[bytes], clients: int) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1, linger_ms=0)
    await producer.start()
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def sender() -> None:
        while not queue.empty():
            body = queue.get_nowait()
            key = json.loads(body)["data"]["work_order_id"]  # keyed like the intake: spread over the partitions
            await producer.send_and_wait("bench.baseline", key=f"acme-fm:wo:{key}".encode(), value=body)

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        return time.perf_counter() - t0
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import yaml

    from broker.embedded import EmbeddedKafka, free_port
    from broker.kafka import ensure_topics
    from broker.settings import TOPIC_EVENTS
    from tests.conftest import wait_ready

    with EmbeddedKafka() as kafka, tempfile.TemporaryDirectory() as tmp:
        ensure_topics(kafka.bootstrap, 4, [TOPIC_EVENTS, "bench.baseline"])
        raw = yaml.safe_load((ROOT / "broker" / "examples" / "config.yaml").read_text())
        raw["tenants"]["acme-fm"]["intake"] = [{"name": "bench", "hmac_secret_env": "BENCH_INTAKE_SECRET"}]
        raw["tenants"]["acme-fm"]["webhooks"] = {
            "erpnext": {"secret_env": "BENCH_INTAKE_SECRET", "default_site": "LIS-HAL-ROOF"}
        }
        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(raw))
        port = free_port()
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
            "BENCH_INTAKE_SECRET": SECRET.decode(),
            "BROKER_PRODUCER_IDEMPOTENCE": "false",
            "BROKER_PRODUCER_MAX_BATCH_SIZE": "1",
            "BROKER_LOG_LEVEL": "WARNING",
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "broker", "ingest", "--config", str(config), "--port", str(port)],
            env=env,
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc)
            intake_rates, p50s, p99s, producer_rates, webhook_rates = [], [], [], [], []
            for r in range(args.rounds):
                bodies = _events(args.events, r)
                elapsed, latencies = asyncio.run(_intake_round(url, _signed_events(bodies), args.clients))
                latencies.sort()
                intake_rates.append(len(bodies) / elapsed)
                p50s.append(latencies[len(latencies) // 2])
                p99s.append(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))])
                producer_rates.append(len(bodies) / asyncio.run(_producer_round(kafka.bootstrap, bodies, args.clients)))
                hooks = _erpnext_webhooks(args.events, r)
                webhook_rates.append(len(hooks) / asyncio.run(_intake_round(url, hooks, args.clients))[0])
                print(
                    f"round {r + 1}: intake {intake_rates[-1]:.0f} req/s (p50 {p50s[-1] * 1000:.1f} ms, "
                    f"p99 {p99s[-1] * 1000:.1f} ms); ERPNext webhooks {webhook_rates[-1]:.0f} req/s; "
                    f"bare producer {producer_rates[-1]:.0f} records/s"
                )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
    intake, producer = statistics.median(intake_rates), statistics.median(producer_rates)
    print(
        f"median of {args.rounds} rounds, {args.events} signed events, {args.clients} clients: "
        f"intake {intake:.0f} req/s, p50 {statistics.median(p50s) * 1000:.1f} ms, "
        f"p99 {statistics.median(p99s) * 1000:.1f} ms; ERPNext webhooks {statistics.median(webhook_rates):.0f} req/s; "
        f"bare producer {producer:.0f} records/s; "
        f"ratio intake/producer {intake / producer:.2f}"
    )


if __name__ == "__main__":
    main()
