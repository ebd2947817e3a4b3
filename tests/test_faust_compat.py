"""Contract tests of the faust-streaming / aiokafka hooks in :mod:`broker.faust_compat`, on a real Tansu.

One test per hook: if an upgrade moves a private detail (or fixes the upstream behaviour we work
around), a test here fails and names it.
"""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka

from broker import faust_compat
from broker.kafka import ensure_topics

pytestmark = pytest.mark.integration

STREAM, OTHER, CHANGELOG = "compat-stream", "compat-other", "compat-app-table-changelog"


async def _fill(bootstrap: str, topic: str, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=16384)
    await producer.start()
    try:
        for i in range(n):
            await producer.send_and_wait(topic, value=f"r{i}".encode(), partition=0)
    finally:
        await producer.stop()


async def _drained_consumer(bootstrap: str, group: str, tps: list[TopicPartition]) -> AIOKafkaConsumer:
    """A group consumer that has read every record of ``tps`` (as Faust's fetcher does during recovery)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    for _ in range(100):
        positions = [await consumer.position(tp) for tp in tps]
        if all(pos >= ends[tp] for pos, tp in zip(positions, tps)):
            break
        await consumer.getmany(timeout_ms=200)
    return consumer


def test_aiokafka_seek_to_committed_keeps_the_position_of_a_partition_without_commit(kafka):
    """The upstream behaviour the hook exists for. If this fails, aiokafka changed ``seek_to_committed``:
    re-check whether :class:`broker.faust_compat.SeekingConsumerThread` is still needed."""
    ensure_topics(kafka, 1, [STREAM])

    async def go() -> tuple[dict, int]:
        await _fill(kafka, STREAM, 5)
        tp = TopicPartition(STREAM, 0)
        consumer = await _drained_consumer(kafka, "compat-upstream", [tp])
        try:
            committed = await consumer.seek_to_committed()
            return committed, await consumer.position(tp)
        finally:
            await consumer.stop()

    committed, position = asyncio.run(go())
    assert committed == {TopicPartition(STREAM, 0): None}
    assert position == 5  # not rewound: the records 0..4 would be skipped


def test_seek_to_committed_or_beginning(kafka):
    """Uncommitted stream partitions go back to their first record; committed ones to their commit;
    changelog partitions stay where table recovery put them."""
    ensure_topics(kafka, 1, [STREAM, OTHER, CHANGELOG])

    async def go() -> tuple[dict, dict, dict[str, int]]:
        for topic in (STREAM, OTHER, CHANGELOG):
            await _fill(kafka, topic, 4)
        tps = [TopicPartition(t, 0) for t in (STREAM, OTHER, CHANGELOG)]
        consumer = await _drained_consumer(kafka, "compat-fix", tps)
        try:
            await consumer.commit({TopicPartition(OTHER, 0): 3})
            committed, started = await faust_compat.seek_to_committed_or_beginning(consumer, {CHANGELOG})
            positions = {tp.topic: await consumer.position(tp) for tp in tps}
            return committed, started, positions
        finally:
            await consumer.stop()

    committed, started, positions = asyncio.run(go())
    assert committed == {
        TopicPartition(STREAM, 0): None,
        TopicPartition(OTHER, 0): 3,
        TopicPartition(CHANGELOG, 0): None,
    }
    assert started == {TopicPartition(STREAM, 0): 0}
    assert positions == {STREAM: 0, OTHER: 3, CHANGELOG: 4}


def test_uncommitted_stream_partitions_rule():
    tp = faust_compat.TopicPartition
    committed = {tp("a", 0): None, tp("a", 1): 0, tp("a", 2): -1, tp("a", 3): 7, tp("a-changelog", 0): None}
    assert faust_compat.uncommitted_stream_partitions(committed, {"a-changelog"}) == [
        tp("a", 0),
        tp("a", 1),
        tp("a", 2),
    ]


def test_app_consumer_runs_the_seeking_thread():
    """The private Faust hooks used: ``App._new_transport``, ``Transport.Consumer``,
    ``Consumer._new_consumer_thread``, ``ConsumerThread.call_thread`` / ``_ensure_consumer``, and
    ``app.tables.changelog_topics``."""
    app = faust_compat.create_faust_app(
        "compat-app", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False
    )
    app.Table("table", partitions=1)
    assert type(app.transport) is faust_compat.SeekingTransport
    assert type(app.consumer) is faust_compat.SeekingConsumer
    thread = app.consumer._new_consumer_thread()
    assert type(thread) is faust_compat.SeekingConsumerThread
    for name in ("call_thread", "_ensure_consumer", "seek_to_committed"):
        assert callable(getattr(faust_aiokafka.AIOKafkaConsumerThread, name)), name
    assert app.tables.changelog_topics == {"compat-app-table-changelog"}


def test_agent_errors_reach_the_app_hook_and_are_counted():
    """``App._on_agent_error`` is what Faust calls when an agent raises (faust/app/base.py ``agent()``)."""
    import inspect

    import faust

    from broker import metrics

    assert "on_error=self._on_agent_error" in inspect.getsource(faust.App.agent)
    app = faust_compat.create_faust_app(
        "compat-crash", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False
    )

    @app.agent(name="compat-crashing")
    async def crashing(stream):  # pragma: no cover - only its name is used
        async for _ in stream:
            pass

    before = metrics.AGENT_CRASHES.labels("compat-crashing")._value.get()
    asyncio.run(app._on_agent_error(crashing, RuntimeError("boom")))
    assert metrics.AGENT_CRASHES.labels("compat-crashing")._value.get() == before + 1
