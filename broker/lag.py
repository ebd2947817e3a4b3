"""Consumer lag of the worker's group: committed offset against end offset, per topic and partition.

:class:`LagSampler` runs in a daemon thread of ``broker run``: every ``interval`` seconds it asks
Kafka (kafka-python's admin client, the group's own coordinator) for the group's committed offsets
and the partitions' end offsets, and sets ``broker_consumer_lag{topic,partition}`` (messages not
yet committed; 0 when caught up). The same figure as ``kafka-consumer-groups.sh --describe``, so
it is right whichever worker of the group owns a partition; every worker exports it, and
dashboards take ``max by (topic, partition)``. Labels are bounded: the group's topics and their
partition numbers. A failed sample is logged and counted (``broker_consumer_lag_errors_total``);
the last values stay.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from broker import metrics
from broker.kafka_security import client_options

__all__ = ["LagSampler", "lag_by_partition"]

log = logging.getLogger(__name__)


def lag_by_partition(committed: Mapping[Any, int], ends: Mapping[Any, int]) -> dict[tuple[str, int], int]:
    """``{(topic, partition): end - committed}`` (never below 0) for the partitions in both maps;
    keys are ``TopicPartition``-like (``.topic``, ``.partition``)."""
    return {
        (tp.topic, tp.partition): max(0, int(ends[tp]) - int(offset))
        for tp, offset in committed.items()
        if tp in ends and offset is not None and offset >= 0
    }


class LagSampler:
    """Samples the lag of consumer group ``group`` on ``bootstrap`` every ``interval`` seconds.
    ``sample``: a function returning ``(committed, ends)`` (kafka-python by default)."""

    def __init__(
        self,
        bootstrap: str,
        group: str,
        *,
        interval: float = 15.0,
        sample: Callable[[], tuple[Mapping[Any, int], Mapping[Any, int]]] | None = None,
    ):
        self.bootstrap = bootstrap
        self.group = group
        self.interval = interval
        self.sample = sample or self._kafka_sample
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> LagSampler:
        """Sample in a daemon thread until :meth:`stop`."""
        self._thread = threading.Thread(target=self._run, name="broker-lag", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()

    def sample_once(self) -> dict[tuple[str, int], int]:
        """Take one sample and set the gauges; returns it. Raises what the client raises."""
        committed, ends = self.sample()
        found = lag_by_partition(committed, ends)
        for (topic, partition), lag in found.items():
            metrics.CONSUMER_LAG.labels(topic, str(partition)).set(lag)
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample_once()
            except Exception as exc:  # noqa: BLE001 - Kafka away: counted, retried next interval
                metrics.CONSUMER_LAG_ERRORS.inc()
                log.warning("consumer lag of group %s: %s: %s", self.group, type(exc).__name__, exc)

    def _kafka_sample(self) -> tuple[Mapping[Any, int], Mapping[Any, int]]:
        from kafka import KafkaAdminClient, KafkaConsumer

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000, **client_options())
        try:
            if hasattr(admin, "list_group_offsets"):  # kafka-python 3
                offsets = admin.list_group_offsets({self.group: None})[self.group]
            else:  # kafka-python 2
                offsets = admin.list_consumer_group_offsets(self.group)
        finally:
            admin.close()
        committed = {tp: meta.offset for tp, meta in offsets.items()}
        if not committed:
            return {}, {}
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000, **client_options())
        try:
            ends = consumer.end_offsets(list(committed))
        finally:
            consumer.close()
        return committed, ends
