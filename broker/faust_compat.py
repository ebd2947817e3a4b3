"""What the broker changes in faust-streaming and aiokafka, in one place.

Supported range: faust-streaming ``>=0.11,<0.16`` on aiokafka ``>=0.10,<0.15`` (pinned in
``pyproject.toml``); ``tests/test_faust_compat.py`` has one contract test per hook below, so an
upgrade that moves a private detail fails there first, not in production.

Seek of partitions without a committed offset
---------------------------------------------
While Faust recovers its tables after an assignment, its consumer already fetches the stream
partitions; records fetched while the flow is stopped are dropped and Faust asks the consumer to
seek back to the committed offsets (``Consumer.perform_seek`` -> ``seek_to_committed``). aiokafka's
``AIOKafkaConsumer.seek_to_committed`` only seeks ``if offset and offset > 0``: a partition whose
group has **no** committed offset (a new group, a crash before the first commit, a retry topic
before its first use, an offset expired under ``offsets.retention.minutes``) keeps its position
after the dropped records. Faust then accepts the next record as the first one (its read offset is
``None``) and, once it is acknowledged, commits past everything it never processed: those invoices
are never created, with no outcome and no dead letter.

Sources read (2026-12): aiokafka ``aiokafka/consumer/consumer.py`` ``seek_to_committed`` (the
``if offset and offset > 0`` guard is in every tag from v0.5.0 to v0.14.0, the latest); faust-streaming
``faust/transport/consumer.py`` ``perform_seek`` and ``getmany`` ("getmany called while flow not
active. Seek back to committed offsets"), ``faust/tables/recovery.py`` ``_resume_streams``
(perform_seek after recovery) and ``Consumer._drain_messages`` (a record is accepted when the read
offset is ``None``) — the same in every tag from v0.10.0 to v0.15.2 and in the installed 0.15.3.

:class:`SeekingConsumerThread` fixes it at the root: after the committed-offset seek, every
assigned **stream** partition without a committed offset (``None`` or ``<= 0``) is positioned at
its log-start offset, so the first record an agent sees is the partition's first record.
Changelog partitions are left alone (table recovery positions those itself).
:func:`create_faust_app` builds the app on a transport that uses it.

Agent crashes
-------------
Faust passes every exception that escapes an agent to the private ``App._on_agent_error`` (whatever
``on_error`` an agent is given) and restarts the agent. :class:`BrokerApp` counts them first: the
agents catch every per-record error themselves, so the counter must stay 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

from broker.metrics import agent_crashed

__all__ = [
    "BrokerApp",
    "SeekingConsumer",
    "SeekingConsumerThread",
    "SeekingTransport",
    "create_faust_app",
    "seek_to_committed_or_beginning",
    "uncommitted_stream_partitions",
]


def uncommitted_stream_partitions(committed: Mapping[Any, int | None], changelog_topics: set[str]) -> list[Any]:
    """The partitions of ``committed`` (``{TopicPartition: offset or None}``) that must start at their
    beginning: no committed offset (``None`` or ``<= 0``) and not a table changelog topic."""
    return [
        tp for tp, offset in committed.items() if (offset is None or offset <= 0) and tp.topic not in changelog_topics
    ]


async def seek_to_committed_or_beginning(
    consumer: AIOKafkaConsumer, changelog_topics: set[str]
) -> tuple[Mapping[TopicPartition, int | None], dict[TopicPartition, int]]:
    """Seek ``consumer``'s assigned partitions to their committed offsets, and those without one
    (except changelog topics) to their log-start offsets.

    Returns ``(committed, started)``: ``{TopicPartition: committed offset or None}`` as
    ``AIOKafkaConsumer.seek_to_committed`` returns it, and ``{TopicPartition: log-start offset}`` of
    the partitions positioned at their beginning. Raises what aiokafka raises.
    """
    committed: Mapping[TopicPartition, int | None] = await consumer.seek_to_committed()
    fresh = uncommitted_stream_partitions(committed, changelog_topics)
    started: dict[TopicPartition, int] = {}
    if fresh:
        started = dict(await consumer.beginning_offsets(fresh))
        for tp, offset in started.items():
            consumer.seek(tp, offset)
    return committed, started


class SeekingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """Faust's aiokafka consumer thread whose ``seek_to_committed`` also seeks partitions without a
    committed offset to their beginning (module docstring)."""

    async def seek_to_committed(self) -> Mapping[Any, int]:
        """Seek every assigned partition to its committed offset, or to its log start when it has none.

        Returns ``{TopicPartition: committed offset or None}`` as aiokafka does (Faust keeps the
        ``None`` ones uncommitted). Raises what aiokafka raises (``IllegalStateError`` ...).
        """
        result: Mapping[Any, int] = await self.call_thread(self._seek_to_committed_or_beginning)
        return result

    async def _seek_to_committed_or_beginning(self) -> Mapping[Any, int | None]:
        consumer = self._ensure_consumer()
        committed, fresh = await seek_to_committed_or_beginning(
            consumer, set(self.consumer.app.tables.changelog_topics)
        )
        if fresh:
            by_topic: dict[str, list[str]] = {}
            for tp, offset in sorted(fresh.items()):
                by_topic.setdefault(tp.topic, []).append(f"{tp.partition}@{offset}")
            self.log.info(
                "No committed offset, starting at the log start (partition@offset): %s",
                "; ".join(f"{topic} {' '.join(parts)}" for topic, parts in by_topic.items()),
            )
        return committed


class SeekingConsumer(faust_aiokafka.Consumer):
    """Faust's aiokafka ``Consumer`` running a :class:`SeekingConsumerThread`."""

    def _new_consumer_thread(self) -> SeekingConsumerThread:
        return SeekingConsumerThread(self, loop=self.loop, beacon=self.beacon)


class SeekingTransport(faust_aiokafka.Transport):
    """The ``kafka://`` transport with :class:`SeekingConsumer`."""

    Consumer = SeekingConsumer


class BrokerApp(faust.App):
    """``faust.App`` whose consumer transport is :class:`SeekingTransport` (any ``kafka://`` URL) and
    whose agent crashes are counted (``broker_agent_crashes_total``, :func:`broker.metrics.agent_crashed`)."""

    def _new_transport(self) -> Any:
        return SeekingTransport(self.conf.broker_consumer, self)

    async def _on_agent_error(self, agent: Any, exc: BaseException) -> None:
        await agent_crashed(agent, exc)
        await super()._on_agent_error(agent, exc)


def create_faust_app(app_id: str, **settings: Any) -> faust.App:
    """``BrokerApp(app_id, **settings)``: a Faust app with the seek fix (module docstring)."""
    return BrokerApp(app_id, **settings)
