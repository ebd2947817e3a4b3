"""Helpers of the delivery acceptance tests (tests/test_delivery_*.py): events, configs, waiting.

Everything runs for real: a Tansu broker per test (fixture ``kafka``), the Xero emulator on loopback
(validating every request against the official spec) and ``python -m broker run`` worker processes.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from broker.demo import Tally
from tests.conftest import EXAMPLES

ORG_ACME = "00000000-0000-0000-0000-000000000001"
ORG_NORDIC = "00000000-0000-0000-0000-000000000002"
#: tenant -> (client id, technician id) used by generated work orders
CLIENTS = {"acme-fm": ("CLI-HAL", "T31"), "nordic-hvac": ("CLI-TGO", "NH-101")}

#: Worker environment for fast tests: quick group joins, short parking, short in-line retries.
FAST_ENV = {
    "BROKER_REBALANCE_TIMEOUT": "1",
    "BROKER_SESSION_TIMEOUT": "6",
    "BROKER_RETRY_BUDGET": "2",
    "BROKER_RETRY_INITIAL": "0.2",
    "BROKER_RETRY_MAX": "1",
    "BROKER_PARK_DELAYS": "2,4,8",
    "BROKER_LOG_LEVEL": "INFO",
    # the embedded Tansu reports a wrong end offset after multi-record batches (table recovery would
    # miss records after a crash): one record per batch
    "BROKER_PRODUCER_MAX_BATCH_SIZE": "1",
}


def work_order(
    tenant: str,
    wo_id: str,
    revision: int = 1,
    *,
    minutes: int = 60,
    parts: int = 0,
    when: datetime | None = None,
    client: str | None = None,
) -> bytes:
    """A ``maintenance.work_order.completed`` CloudEvent (JSON bytes) with event time ``when`` (default now)."""
    client_id, technician = CLIENTS[tenant]
    client_id = client or client_id
    when = when or datetime.now(UTC)
    start = when - timedelta(minutes=minutes + 10)
    data: dict[str, Any] = {
        "work_order_id": wo_id,
        "revision": revision,
        "kind": "preventive",
        "client_id": client_id,
        "site_id": "SITE-1",
        "time_entries": [
            {
                "id": f"TE-{wo_id}-1",
                "technician_id": technician,
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=minutes)).isoformat(),
            }
        ],
        "parts": [
            {
                "id": f"P-{wo_id}-{i}",
                "sku": f"SKU-{i}",
                "description": f"Part {i}",
                "quantity": str(i + 1),
                "unit": "un",
                "unit_cost": "10.00",
            }
            for i in range(parts)
        ],
        "expenses": [],
    }
    event = {
        "specversion": "1.0",
        "id": f"test:wo:{wo_id}:r{revision}",
        "source": "/platforms/test",
        "type": "maintenance.work_order.completed",
        "time": when.isoformat(),
        "subject": f"work-orders/{wo_id}",
        "tenant": tenant,
        "data": data,
    }
    return json.dumps(event).encode()


def delivery_config(
    tmp_path: Path,
    emulator_url: str,
    *,
    settings: dict[str, dict] | None = None,
    clients: dict[str, dict] | None = None,
    name: str = "config.yaml",
) -> Path:
    """The example config's Xero tenants pointed at the emulator; ``settings[tenant]`` overrides connector
    settings, ``clients[tenant]`` adds clients."""
    raw = yaml.safe_load((EXAMPLES / "config.yaml").read_text(encoding="utf-8"))
    raw["tenants"] = {tid: t for tid, t in raw["tenants"].items() if t["billing"]["system"] == "xero"}
    for tenant_id, tenant in raw["tenants"].items():
        tenant["billing"]["settings"]["api_url"] = emulator_url
        tenant["billing"]["settings"]["identity_url"] = emulator_url
        tenant["billing"]["settings"].update((settings or {}).get(tenant_id, {}))
        tenant["clients"].update((clients or {}).get(tenant_id, {}))
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def priced(events: list[bytes], config_path: Path) -> list[tuple[bytes, bytes]]:
    """``(key, value)`` records for ``billing.invoices``: the events priced with the pure pricing function."""
    from broker.config import load_config
    from broker.events import parse_event
    from broker.pricing import price_event

    config = load_config(config_path)
    out = []
    for raw in events:
        ce = parse_event(raw)
        result = price_event(ce, ce.tenant, config.tenant(ce.tenant), priced_at=datetime.now(UTC))
        out.append((ce.partition_key.encode(), result.model_dump_json().encode()))
    return out


def publish_records(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes]],
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    """Produce ``records`` (``(key, value)``) to ``topic``, one record per produce batch
    (``batch_size=0``), as the broker's own producers do on the embedded Tansu
    (``BROKER_PRODUCER_MAX_BATCH_SIZE=1``): Tansu reports a wrong end offset after a multi-record
    batch, which the worker's consumer and table recovery would see but no production setup does."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0, batch_size=0)
    try:
        futures = [producer.send(topic, key=k, value=v, headers=headers or []) for k, v in records]
        producer.flush()
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close()


def wait_for(
    predicate: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    tally: Tally | None = None,
    workers: list | None = None,
    poll: float = 0.2,
) -> None:
    """Poll ``tally`` (when given) until ``predicate()``; fail naming ``what`` and the workers' log tails."""
    deadline = time.monotonic() + timeout
    while True:
        if tally is not None:
            tally.poll(poll)
        else:
            time.sleep(poll)
        if predicate():
            return
        if time.monotonic() > deadline:
            logs = "\n".join(w.log()[-3000:] for w in workers or [])
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")


def outcomes_by_key(tally: Tally) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for o in tally.outcomes:
        out.setdefault(o["invoice_key"], []).append(o)
    return out


def metrics_text(worker) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=5).read().decode()


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        metric_name = head.split("{", 1)[0]
        if metric_name != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


# ---------------------------------------------------------------- whole-group crash tests (tests/test_group_crash.py)


def group_worker(config_path: Path, bootstrap: str, tmp_path: Path, name: str, *, app_id: str, **env):
    """A worker of consumer group ``app_id`` (not started) with its own log ``worker-<name>.log`` and data
    directory ``data-<name>``: several members of one group in one test need distinct files
    (:class:`tests.conftest.WorkerProcess` names its log after the app id)."""
    from tests.conftest import WorkerProcess

    worker = WorkerProcess(
        config_path, bootstrap, tmp_path, app_id=app_id, **{"BROKER_DATA_DIR": str(tmp_path / f"data-{name}"), **env}
    )
    worker.log_path = tmp_path / f"worker-{name}.log"
    return worker


class GroupOffsets:
    """Committed offsets of consumer group ``group`` and end offsets of ``topics`` (each with
    ``partitions`` partitions, all existing), read with kafka-python without joining the group."""

    def __init__(self, bootstrap: str, group: str, topics: list[str], partitions: int = 4):
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        self.bootstrap = bootstrap
        self.group = group
        self.tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="group-offsets")
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)

    def committed(self) -> dict[Any, int]:
        """``{TopicPartition: committed offset}`` of the partitions of ``topics`` that have one."""
        offsets = self.admin.list_group_offsets(self.group).get(self.group, {})
        wanted = set(self.tps)
        return {
            tp: om.offset for tp, om in offsets.items() if tp in wanted and om.offset is not None and om.offset >= 0
        }

    def ends(self, tps: list | None = None) -> dict[Any, int]:
        """End offsets of ``tps`` (default: all); retried a few times (kafka-python 3 can raise ``KeyError``
        when a ListOffsets answer leaves a partition out)."""
        for attempt in range(10):
            try:
                return self.consumer.end_offsets(tps or self.tps)
            except Exception:
                if attempt == 9:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def lag(self) -> dict[Any, int]:
        """``{TopicPartition: end - committed}`` of the partitions not committed up to their end."""
        committed, ends = self.committed(), self.ends()
        return {tp: end - committed.get(tp, 0) for tp, end in ends.items() if end > committed.get(tp, 0)}

    def keys(self, topic: str) -> list[bytes]:
        """The keys of every record on ``topic`` (read from its beginning up to its end offsets)."""
        return [key for _partition, _offset, key in self.records(topic)]

    def records(self, topic: str) -> list[tuple[int, int, bytes | None]]:
        """``(partition, offset, key)`` of every record on ``topic`` (from its beginning up to its end offsets)."""
        from kafka import KafkaConsumer

        tps = [tp for tp in self.tps if tp.topic == topic]
        ends = self.ends(tps)
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False)
        try:
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            out: list[tuple[int, int, bytes | None]] = []
            deadline = time.monotonic() + 30
            while any(consumer.position(tp) < ends[tp] for tp in tps) and time.monotonic() < deadline:
                for msgs in consumer.poll(timeout_ms=500).values():
                    out.extend((m.partition, m.offset, m.key) for m in msgs)
            return out
        finally:
            consumer.close()

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def read_to_end(tally: Tally, timeout: float = 30.0) -> None:
    """Poll ``tally`` until it has read every partition it follows up to the end offsets taken now."""
    deadline = time.monotonic() + timeout
    consumer = tally.consumer
    while not consumer.assignment():
        tally.poll(0.2)
        if time.monotonic() > deadline:
            raise AssertionError("the tally consumer got no partitions")
    tps = sorted(consumer.assignment())
    ends = consumer.end_offsets(tps)
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        tally.poll(0.2)
        if time.monotonic() > deadline:
            behind = {
                f"{tp.topic}[{tp.partition}]": (consumer.position(tp), ends[tp])
                for tp in tps
                if consumer.position(tp) < ends[tp]
            }
            raise AssertionError(f"the tally did not reach the end offsets within {timeout:.0f} s: {behind}")


def topic_records(bootstrap: str, topic: str) -> list[Any]:
    """Every record of ``topic`` from its beginning to its end (kafka-python ``ConsumerRecord``s, in
    partition order), read without a consumer group."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        out: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                out.extend(records)
        return out
    finally:
        consumer.close()
