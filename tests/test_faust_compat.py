"""Contract tests of the faust-streaming / aiokafka hooks in :mod:`broker.faust_compat` (the seek
fix on a real Tansu).

One test per hook (``test_hook_*``): each checks that the private detail exists on the installed
version with the signature / behaviour the broker relies on. If an upgrade moves one (or fixes the
upstream behaviour we work around), a test here fails and names it.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from typing import Any

import faust
import faust.streams
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.consumer.group_coordinator import GroupCoordinator
from faust.exceptions import ConsumerNotStarted
from faust.tables.recovery import Recovery
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import Message
from mode.threads import ServiceThread

from broker import faust_compat, metrics
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
        if all(pos >= ends[tp] for pos, tp in zip(positions, tps, strict=True)):
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


def _app(name: str) -> faust_compat.BrokerApp:
    """An app that never connects (nothing here starts it)."""
    return faust_compat.create_faust_app(name, broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False)


def _params(fun: Callable[..., object]) -> list[str]:
    return list(inspect.signature(fun).parameters)


class _Event:
    """The part of ``faust.EventT`` the hooks use: ``message`` and ``ack()``."""

    def __init__(self, message: Message, last: bool = True) -> None:
        self.message = message
        self.last = last

    def ack(self) -> bool:
        return self.last


def _message(topic: str = "compat-src", partition: int = 0, offset: int = 5) -> Message:
    return Message(topic, partition, offset, 0.0, 0, {}, b"k", b"v", None)


# --------------------------------------------------------------------------- seek fix (SeekingConsumerThread)
def test_hook_app_new_transport():
    """``App._new_transport()`` builds the app's transport: ours is :class:`SeekingTransport`."""
    assert _params(faust.App._new_transport) == ["self"]
    assert type(_app("compat-transport").transport) is faust_compat.SeekingTransport


def test_hook_transport_consumer_class():
    """``Transport.Consumer`` is the consumer class the transport instantiates."""
    assert faust_aiokafka.Transport.Consumer is faust_aiokafka.Consumer
    assert type(_app("compat-consumer").consumer) is faust_compat.SeekingConsumer


def test_hook_consumer_new_consumer_thread():
    """``Consumer._new_consumer_thread()`` builds the consumer's thread (``Consumer._thread``)."""
    assert _params(faust_aiokafka.Consumer._new_consumer_thread) == ["self"]
    consumer = _app("compat-thread").consumer
    assert type(consumer._thread) is faust_compat.SeekingConsumerThread
    assert type(consumer._new_consumer_thread()) is faust_compat.SeekingConsumerThread


def test_hook_consumer_thread_seek_to_committed():
    """Faust's ``perform_seek`` awaits ``Consumer.seek_to_committed()``, which returns the thread's
    ``seek_to_committed()``: the method :class:`SeekingConsumerThread` overrides."""
    assert "await self.seek_to_committed()" in inspect.getsource(faust_consumer.Consumer.perform_seek)
    assert _params(faust_aiokafka.AIOKafkaConsumerThread.seek_to_committed) == ["self"]
    consumer = _app("compat-seek").consumer
    committed = {TopicPartition("t", 0): None}

    async def seek_to_committed() -> dict:
        return committed

    consumer._thread.seek_to_committed = seek_to_committed
    assert asyncio.run(consumer.seek_to_committed()) is committed


def test_hook_consumer_thread_commit():
    """Faust's ``Consumer._commit(offsets)`` returns the thread's ``commit(offsets)``, a coroutine
    answering whether it committed: :class:`SeekingConsumerThread` counts the False answers."""
    from broker import metrics

    assert "self._thread.commit(offsets)" in inspect.getsource(faust_consumer.ThreadDelegateConsumer._commit)
    assert _params(faust_aiokafka.AIOKafkaConsumerThread.commit) == ["self", "offsets"]
    consumer = _app("compat-commit").consumer
    answers = iter([True, False])

    async def commit(self, offsets):  # the base class's commit, standing in for Kafka's answer
        return next(answers)

    before = metrics.COMMIT_FAILURES._value.get()
    original = faust_aiokafka.AIOKafkaConsumerThread.commit
    faust_aiokafka.AIOKafkaConsumerThread.commit = commit
    try:
        tp = TopicPartition("t", 0)
        assert asyncio.run(consumer._commit({tp: 5})) is True
        assert asyncio.run(consumer._commit({tp: 6})) is False
    finally:
        faust_aiokafka.AIOKafkaConsumerThread.commit = original
    assert metrics.COMMIT_FAILURES._value.get() - before == 1


def test_hook_consumer_thread_call_thread():
    """``ConsumerThread.call_thread(fun, *args, **kwargs)`` is a coroutine running ``fun`` in the thread."""
    call_thread = faust_aiokafka.AIOKafkaConsumerThread.call_thread
    assert inspect.iscoroutinefunction(call_thread)
    params = inspect.signature(call_thread).parameters
    assert list(params)[:2] == ["self", "fun"]
    assert {p.kind for p in params.values()} >= {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}


def test_hook_consumer_thread_ensure_consumer():
    """``AIOKafkaConsumerThread._ensure_consumer()`` is the thread's aiokafka consumer (raises before start)."""
    assert _params(faust_aiokafka.AIOKafkaConsumerThread._ensure_consumer) == ["self"]
    thread = _app("compat-ensure").consumer._thread
    with pytest.raises(ConsumerNotStarted):
        thread._ensure_consumer()
    sentinel = object()
    thread._consumer = sentinel
    assert thread._ensure_consumer() is sentinel


def test_hook_tables_changelog_topics():
    """``app.tables.changelog_topics``: the changelog topic names (left alone by the seek fix)."""
    app = _app("compat-app")
    app.Table("table", partitions=1)
    assert app.tables.changelog_topics == {"compat-app-table-changelog"}


# --------------------------------------------------------------------------- fetch wait (SeekingConsumerThread)
def test_hook_worker_consumer_fetch_max_wait(kafka):
    """Faust writes ``fetch_max_wait_ms=1500`` into its worker consumer (no setting reaches it) and
    ``AIOKafkaConsumer.start()`` builds its fetcher from ``_fetch_max_wait_ms``: the attribute
    ``SeekingConsumerThread._create_worker_consumer`` sets to the app's ``fetch_max_wait_ms``."""
    create = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer
    assert _params(create) == ["self", "transport"]
    assert "fetch_max_wait_ms=1500," in inspect.getsource(create)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms," in inspect.getsource(AIOKafkaConsumer.start)

    async def fetcher_wait(app: faust_compat.BrokerApp) -> int:
        consumer = app.consumer._thread._create_worker_consumer(app.transport)
        await consumer.start()
        try:
            return int(consumer._fetcher._fetch_max_wait_ms)
        finally:
            await consumer.stop()

    options = {"broker": f"kafka://{kafka}", "store": "memory://", "web_enabled": False}
    ours = faust_compat.create_faust_app("compat-wait", fetch_max_wait_ms=42, **options)
    assert asyncio.run(fetcher_wait(ours)) == 42
    assert asyncio.run(fetcher_wait(faust_compat.create_faust_app("compat-faust-wait", **options))) == 1500


# --------------------------------------------------------------------------- agent crashes (BrokerApp)
def test_hook_app_on_agent_error():
    """``App._on_agent_error`` is what Faust calls when an agent raises (faust/app/base.py ``agent()``)."""
    assert "on_error=self._on_agent_error" in inspect.getsource(faust.App.agent)
    assert _params(faust.App._on_agent_error) == ["self", "agent", "exc"]
    app = _app("compat-crash")

    @app.agent(name="compat-crashing")
    async def crashing(stream):  # pragma: no cover - only its name is used
        async for _ in stream:
            pass

    before = metrics.AGENT_CRASHES.labels("compat-crashing")._value.get()
    asyncio.run(app._on_agent_error(crashing, RuntimeError("boom")))
    assert metrics.AGENT_CRASHES.labels("compat-crashing")._value.get() == before + 1


# --------------------------------------------------------------------------- the deliver stage's hooks
def test_hook_stream_current_event():
    """``faust.streams._current_event`` is the context variable ``current_event()`` and the tables read:
    :func:`set_current_event` picks the changelog partition of a table write."""
    assert isinstance(faust.streams._current_event, contextvars.ContextVar)
    app = _app("compat-current")
    table = app.Table("table", partitions=1)
    event = _Event(_message(partition=3))

    def in_a_lane_task() -> tuple[object, int | None]:
        faust_compat.set_current_event(event)
        return faust.streams.current_event(), table.partition_for_key("k")

    current, partition = contextvars.copy_context().run(in_a_lane_task)
    assert current is event
    assert partition == 3


def test_hook_stream_sensor_hooks():
    """:func:`acknowledge` does what ``Stream.ack`` does (which uses nothing else): ``event.ack()``, then
    the private sensor hooks ``Stream._on_stream_event_out`` and, for the last ack, ``_on_message_out``."""
    assert set(faust.Stream.ack.__code__.co_names) == {
        "ack",
        "message",
        "tp",
        "offset",
        "_on_stream_event_out",
        "_on_message_out",
    }

    class Recorder(faust.Sensor):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple] = []

        def on_stream_event_out(self, tp, offset, stream, event, state=None) -> None:
            self.calls.append(("event_out", tp, offset, stream, event, state))

        def on_message_out(self, tp, offset, message) -> None:
            self.calls.append(("message_out", tp, offset, message))

    app = _app("compat-ack")
    stream = app.stream(app.topic("compat-src"))
    recorder = Recorder()
    app.sensors.add(recorder)
    message = _message()
    for last in (True, False):
        event = _Event(message, last)
        assert faust_compat.acknowledge(stream, event) is last
        ours, recorder.calls = recorder.calls, []
        assert asyncio.run(stream.ack(event)) is last
        theirs, recorder.calls = recorder.calls, []
        assert ours == theirs
        assert ours[0] == ("event_out", message.tp, 5, stream, event, None)
        assert len(ours) == (2 if last else 1)


def test_hook_consumer_unacked_messages():
    """``Consumer._unacked_messages`` is the set ``track_message`` fills and ``wait_empty`` waits on;
    :func:`forget_unacked` takes a message out of it."""
    assert "self._unacked_messages" in inspect.getsource(faust_consumer.Consumer.wait_empty)
    app = _app("compat-unacked")
    consumer = app.consumer
    message = _message()
    consumer.track_message(message)
    assert message in consumer._unacked_messages
    faust_compat.forget_unacked(app, message)
    assert message not in consumer._unacked_messages
    faust_compat.forget_unacked(app, message)  # absent: nothing happens


def test_hook_flow_control():
    """Faust calls ``app.flow_control.suspend()`` when partitions are revoked and ``resume()`` after
    recovery, looking the methods up on the instance: :func:`hook_flow_control` wraps them there."""
    assert "self.flow_control.suspend" in inspect.getsource(faust.App._on_partitions_revoked)
    assert "app.flow_control.resume" in inspect.getsource(Recovery)
    app = _app("compat-flow")
    fc = app.flow_control
    seen: list[tuple[str, bool]] = []
    faust_compat.hook_flow_control(
        app,
        after_suspend=lambda: seen.append(("after_suspend", fc.is_active())),
        before_resume=lambda: seen.append(("before_resume", fc.is_active())),
    )
    app.flow_control.suspend()
    app.flow_control.resume()
    assert seen == [("after_suspend", False), ("before_resume", False)]
    assert fc.is_active()


def test_hook_table_send_changelog(monkeypatch):
    """``table[key] = value`` calls ``self.send_changelog(partition, key, value)`` synchronously and
    keeps its future: :func:`set_with_changelog` returns that very future and restores the table."""
    app = _app("compat-changelog")
    table = app.Table("table", partitions=1)
    sent: list[tuple] = []

    class FutureMessage:
        def __init__(self) -> None:
            self.message = _message()  # the sent record's partition: message.partition

    future = FutureMessage()
    event = _Event(_message())  # the tables hold a weak reference: keep it alive

    def send_changelog(self, partition, key, value, key_serializer=None, value_serializer=None):
        sent.append((partition, key, value))
        return future

    monkeypatch.setattr(type(table), "send_changelog", send_changelog)

    def in_a_lane_task() -> object:
        faust_compat.set_current_event(event)
        return faust_compat.set_with_changelog(table, "k", {"a": 1})

    assert contextvars.copy_context().run(in_a_lane_task) is future
    assert sent == [(0, "k", {"a": 1})]
    assert table["k"] == {"a": 1}
    assert "send_changelog" not in vars(table)


def test_start_offsets_are_where_the_seek_positioned_the_stream_partitions(kafka):
    """After :class:`SeekingConsumerThread`'s seek, ``start_offsets`` holds each stream partition's start
    (the committed offset, or the log start without one) and no changelog partition;
    :func:`start_offset` reads it (``None`` for a partition not positioned)."""
    ensure_topics(kafka, 1, [STREAM, OTHER, CHANGELOG])
    app = faust_compat.create_faust_app("compat-app", broker=f"kafka://{kafka}", store="memory://", web_enabled=False)
    app.Table("table", default=int)
    assert set(app.tables.changelog_topics) == {CHANGELOG}
    thread = app.consumer._thread

    async def go() -> None:
        for topic in (STREAM, OTHER):
            await _fill(kafka, topic, 4)
        tps = [TopicPartition(t, 0) for t in (STREAM, OTHER, CHANGELOG)]
        consumer = await _drained_consumer(kafka, "compat-start", tps)
        try:
            await consumer.commit({TopicPartition(OTHER, 0): 3})
            thread._consumer = consumer
            await thread._seek_to_committed_or_beginning()
        finally:
            await consumer.stop()

    assert app.consumer.start_offsets == {}
    asyncio.run(go())
    assert app.consumer.start_offsets == {TP(STREAM, 0): 0, TP(OTHER, 0): 3}
    assert faust_compat.start_offset(app, TP(OTHER, 0)) == 3
    assert faust_compat.start_offset(app, TP(STREAM, 0)) == 0
    assert faust_compat.start_offset(app, TP(CHANGELOG, 0)) is None
    assert faust_compat.start_offset(app, TP(STREAM, 1)) is None


def test_hook_consumer_partition_callbacks(monkeypatch):
    """``Consumer.on_partitions_revoked(revoked)`` and ``on_partitions_assigned(assigned, generation_id)``
    run on every rebalance; :class:`SeekingConsumer` forgets its start offsets there, then calls Faust's."""
    assert _params(faust_consumer.Consumer.on_partitions_revoked) == ["self", "revoked"]
    assert _params(faust_consumer.Consumer.on_partitions_assigned) == ["self", "assigned", "generation_id"]
    calls: list[tuple] = []

    async def revoked(self, revoked: set) -> None:
        calls.append(("revoked", dict(self.start_offsets), revoked))

    async def assigned(self, assigned: set, generation_id: int = 0) -> None:
        calls.append(("assigned", dict(self.start_offsets), assigned, generation_id))

    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_revoked", revoked)
    monkeypatch.setattr(faust_aiokafka.Consumer, "on_partitions_assigned", assigned)
    consumer = _app("compat-callbacks").consumer
    tp = TP("t", 0)
    consumer.start_offsets = {tp: 5}
    asyncio.run(consumer.on_partitions_revoked({tp}))
    consumer.start_offsets = {tp: 6}
    asyncio.run(consumer.on_partitions_assigned({tp}, 7))
    assert calls == [("revoked", {}, {tp}), ("assigned", {}, {tp}, 7)]


def test_hook_recovery_resumes_stream_partitions_before_the_seek():
    """Why the stage waits for the start offsets: Faust resumes the stream partitions, then awaits
    ``perform_seek`` (records fetched in between come from an older position), and
    ``_drain_messages`` drops a record whose hand-over is cut short by ``suspend_flow``."""
    source = inspect.getsource(Recovery._resume_streams)
    assert source.index("consumer.resume_partitions(") < source.index("consumer.perform_seek()")
    assert "callback(message), self.suspend_flow.wait()" in inspect.getsource(faust_consumer.Consumer._drain_messages)


def test_the_fetch_passes_no_record_of_a_stream_partition_before_its_seek(monkeypatch):
    """Faust's thread runs ``_fetch_records(consumer, active_partitions, timeout=..., max_records=...)``
    for every ``getmany``; :class:`SeekingConsumerThread` passes records of positioned stream
    partitions and of changelogs only."""
    assert "self._fetch_records," in inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.getmany)
    assert _params(faust_aiokafka.AIOKafkaConsumerThread._fetch_records) == [
        "self",
        "consumer",
        "active_partitions",
        "timeout",
        "max_records",
    ]
    app = faust_compat.create_faust_app(
        "compat-app", broker="kafka://127.0.0.1:1", store="memory://", web_enabled=False
    )
    app.Table("table", default=int)
    positioned, waiting, changelog = (
        TopicPartition(STREAM, 0),
        TopicPartition(STREAM, 1),
        TopicPartition(CHANGELOG, 0),
    )
    fetched = {tp: [f"{tp.topic}-{tp.partition}@{o}" for o in (7, 8)] for tp in (positioned, waiting, changelog)}
    calls: list[tuple] = []

    async def fetch_records(self, consumer, active_partitions, timeout=None, max_records=None):
        calls.append((consumer, active_partitions, timeout, max_records))
        return dict(fetched)

    monkeypatch.setattr(faust_aiokafka.AIOKafkaConsumerThread, "_fetch_records", fetch_records)
    thread = app.consumer._thread

    def fetch() -> dict:
        return asyncio.run(thread._fetch_records("c", {positioned}, timeout=1.0, max_records=10))

    assert fetch() == {changelog: fetched[changelog]}
    app.consumer.start_offsets = {TP(STREAM, 0): 7}
    assert fetch() == {positioned: fetched[positioned], changelog: fetched[changelog]}
    assert calls == [("c", {positioned}, 1.0, 10)] * 2


def test_heartbeat_answer_says_whether_the_member_is_current(kafka):
    """On a real Tansu: a joined member is current (True); with another generation or member id, or
    none, it is not (False); a consumer outside any group cannot be asked (None); while another
    member joins, the rebalance in progress proves nothing (None). This is the
    request aiokafka's own heartbeat sends (``GroupCoordinator._do_heartbeat``)."""
    assert "HeartbeatRequest(self.group_id, self.generation, self.member_id)" in inspect.getsource(
        GroupCoordinator._do_heartbeat
    )
    ensure_topics(kafka, 2, [STREAM])

    async def go() -> list[bool | None]:
        member = AIOKafkaConsumer(STREAM, bootstrap_servers=kafka, group_id="compat-heartbeat")
        loner = AIOKafkaConsumer(bootstrap_servers=kafka)
        await member.start()
        await loner.start()
        try:
            for _ in range(100):
                if member.assignment():
                    break
                await asyncio.sleep(0.1)
            coordinator = member._coordinator
            generation, member_id = coordinator.generation, coordinator.member_id
            answers = [await faust_compat.heartbeat_answer(member)]
            coordinator.generation = generation + 7
            answers.append(await faust_compat.heartbeat_answer(member))
            coordinator.generation, coordinator.member_id = generation, "someone-else"
            answers.append(await faust_compat.heartbeat_answer(member))
            coordinator.member_id = ""
            answers.append(await faust_compat.heartbeat_answer(member))
            coordinator.member_id = member_id
            answers.append(await faust_compat.heartbeat_answer(member))
            answers.append(await faust_compat.heartbeat_answer(loner))
            # another member joins: while the group rebalances, nothing is proven either way
            joiner = AIOKafkaConsumer(STREAM, bootstrap_servers=kafka, group_id="compat-heartbeat")
            joining = asyncio.ensure_future(joiner.start())
            during = []
            for _ in range(30):
                during.append(await faust_compat.heartbeat_answer(member))
                if None in during:
                    break
                await asyncio.sleep(0.1)
            await joining
            await joiner.stop()
            answers.append(None if None in during else during)
            return answers
        finally:
            await member.stop()
            await loner.stop()

    assert asyncio.run(go()) == [True, False, False, False, True, None, None]


def test_confirm_membership_without_a_started_consumer_cannot_ask():
    """``confirm_membership`` asks through the app's :class:`SeekingConsumerThread`; before the consumer
    starts it cannot ask (None), and an app on another consumer thread gives None too."""
    app = _app("compat-membership")
    assert asyncio.run(faust_compat.confirm_membership(app)) is None
    app.consumer._thread = object()
    assert asyncio.run(faust_compat.confirm_membership(app)) is None


def test_hook_consumer_thread_loop():
    """``ServiceThread.thread_loop``: the consumer thread's own event loop, where
    :meth:`SeekingConsumerThread.confirm_membership` runs its heartbeat beside the thread's fetches."""
    thread = _app("compat-thread-loop").consumer._thread
    assert isinstance(thread.thread_loop, asyncio.AbstractEventLoop)
    assert "self.thread_loop = thread_loop or asyncio.new_event_loop()" in inspect.getsource(ServiceThread.__init__)


def test_hook_recovery_seeks_standby_partitions_with_offsets_a_rebalance_left_unbuilt():
    """Why :meth:`SeekingConsumerThread._seek_wait` filters: the recovery round seeks the standby set
    after awaiting the active recovery, ``on_rebalance`` replaces that set in place and ``_add`` gives
    a new partition the offset ``None``; ``_seek_offsets`` hands the offsets to ``consumer.seek_wait``."""
    assert "await consumer.seek_wait(new_offsets)" in inspect.getsource(Recovery._seek_offsets)
    rebalance = inspect.getsource(Recovery.on_rebalance)
    assert "self.standby_tps.clear()" in rebalance and "self.add_standby(table, tp)" in rebalance
    assert "offsets.setdefault(tp, None)" in inspect.getsource(Recovery._add)
    recovery = inspect.getsource(Recovery._restart_recovery.fun)  # a mode Service.task
    assert recovery.index('"Recovery complete"') < recovery.index("consumer, standby_tps, standby_offsets")
    assert "self._thread.seek_wait(partitions)" in inspect.getsource(faust_consumer.ThreadDelegateConsumer.seek_wait)
    thread_seek_wait = inspect.getsource(faust_aiokafka.AIOKafkaConsumerThread.seek_wait)
    assert "self.call_thread(self._seek_wait, consumer, partitions)" in thread_seek_wait
    assert _params(faust_aiokafka.AIOKafkaConsumerThread._seek_wait) == ["self", "consumer", "partitions"]


def test_seek_wait_seeks_only_the_partitions_it_can(kafka):
    """On a real Tansu: offsets that are ints ``>= 0`` of assigned partitions are sought (and waited
    for); ``None``, negative offsets and partitions no longer assigned are skipped, where aiokafka
    would raise and crash the recovery."""
    ensure_topics(kafka, 2, [CHANGELOG])
    app = faust_compat.create_faust_app("compat-app", broker=f"kafka://{kafka}", store="memory://", web_enabled=False)
    thread = app.consumer._thread

    async def go() -> dict[int, int]:
        await _fill(kafka, CHANGELOG, 4)
        first = TopicPartition(CHANGELOG, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([first])
            with pytest.raises(ValueError, match="positive integer"):
                consumer.seek(first, None)  # what Faust's round would do
            await thread._seek_wait(consumer, {TP(CHANGELOG, 0): 2, TP(CHANGELOG, 1): 0})
            after_two = await consumer.position(first)
            await thread._seek_wait(consumer, {TP(CHANGELOG, 0): None})
            await thread._seek_wait(consumer, {TP(CHANGELOG, 0): -2})
            return {0: after_two, 1: await consumer.position(first)}
        finally:
            await consumer.stop()

    assert asyncio.run(go()) == {0: 2, 1: 2}


# --------------------------------------------------------------------------- one record per batch (TopicBatchingProducer)
BATCHED, SINGLE = "compat-batched", "compat-single"


def test_tansu_reports_the_end_offset_of_a_batchs_first_record(kafka):
    """The upstream behaviour ``TopicBatchingProducer`` exists for (the probe of ``docs/operations.md``):
    after a 3-record batch at offsets 1-3 Tansu's ListOffsets says 2 until another record lands; the
    offsets it assigns and its fetch high watermark are right. If this fails, Tansu changed: re-check
    whether ``BROKER_PRODUCER_MAX_BATCH_SIZE=1`` is still needed on the embedded broker."""
    ensure_topics(kafka, 1, [SINGLE])
    tp = TopicPartition(SINGLE, 0)

    async def go() -> tuple[list[int], list[int], list[int], int]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all")
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
        await producer.start()
        await consumer.start()
        try:
            ends, bases = [], []
            for count in (1, 3, 1):
                batch = producer.create_batch()
                for i in range(count):
                    batch.append(key=None, value=f"r{i}".encode(), timestamp=None)
                bases.append((await (await producer.send_batch(batch, SINGLE, partition=0))).offset)
                ends.append((await consumer.end_offsets([tp]))[tp])
            await producer.send_and_wait(SINGLE, b"last", partition=0)
            batch = producer.create_batch()
            for i in range(2):
                batch.append(key=None, value=f"t{i}".encode(), timestamp=None)
            await (await producer.send_batch(batch, SINGLE, partition=0))
            ends.append((await consumer.end_offsets([tp]))[tp])
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            offsets: list[int] = []
            while len(offsets) < 8:
                records = await consumer.getmany(tp, timeout_ms=1000)
                offsets += [m.offset for m in records.get(tp, [])]
            return bases, ends, offsets, consumer.highwater(tp)
        finally:
            await producer.stop()
            await consumer.stop()

    bases, ends, offsets, highwater = asyncio.run(go())
    assert bases == [0, 1, 4]  # offsets are assigned right
    assert ends == [1, 2, 5, 7]  # 2 (not 4) after the 3-record batch, 7 (not 8) after the 2-record one
    assert offsets == list(range(8)) and highwater == 8  # fetch answers are right


def test_hook_transport_producer_class():
    """``Transport.Producer`` is the class the transport builds the app's producer from, and
    ``Producer.send`` is what every topic send and changelog write reaches (``_ensure_producer``,
    ``_send_on_produce_message`` and ``partitioner`` used as Faust's own ``send`` uses them)."""
    assert faust_aiokafka.Transport.Producer is faust_aiokafka.Producer
    assert type(_app("compat-producer").producer) is faust_compat.TopicBatchingProducer
    assert _params(faust_aiokafka.Producer.send) == [
        "self",
        "topic",
        "key",
        "value",
        "partition",
        "timestamp",
        "headers",
        "transactional_id",
    ]
    source = inspect.getsource(faust_aiokafka.Producer.send)
    assert "self._ensure_producer()" in source and "self._send_on_produce_message(" in source
    assert _params(faust_aiokafka.Producer._ensure_producer) == ["self"]
    post_init = inspect.getsource(faust_aiokafka.Producer.__post_init__)
    assert "self._send_on_produce_message = self.app.on_produce_message.send" in post_init
    assert "self.partitioner = DefaultPartitioner()" in post_init  # what the producer partitions with


def test_records_outside_the_batched_topics_go_one_per_batch(kafka):
    """On a real Tansu, a burst of concurrent sends: the batched topic's records share batches (its
    end offset lags, the Tansu behaviour above), the other topic's go one per batch (its end offset
    is right), in order, keyed to the default partitioner's partitions, with their metadata."""
    ensure_topics(kafka, 2, [BATCHED, SINGLE])

    async def go() -> tuple[dict[str, int], list[tuple[int, bytes | None]], list[Any], int]:
        app = faust_compat.create_faust_app(
            "compat-batching",
            broker=f"kafka://{kafka}",
            store="memory://",
            web_enabled=False,
            producer_max_batch_size=16384,
            producer_acks=-1,
            batched_topics=frozenset({BATCHED}),
        )
        producer = app.producer
        await producer.start()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False)
        await consumer.start()
        try:
            sends = [
                producer.send(topic, b"k", f"{topic}-{i}".encode(), 0, None, None)
                for topic in (BATCHED, SINGLE)
                for i in range(20)
            ]
            keyed = [producer.send(SINGLE, f"key-{i}".encode(), b"v", None, 1.5, {"h": b"1"}) for i in range(6)]
            big = [producer.send(SINGLE, b"big", b"x" * 100_000, 1, None, None)]  # larger than a batch
            futures = await asyncio.gather(*sends, *keyed, *big)
            metadata = await asyncio.gather(*futures)
            await producer.flush()
            tps = [TopicPartition(topic, p) for topic in (BATCHED, SINGLE) for p in (0, 1)]
            ends = await consumer.end_offsets(tps)
            consumer.assign([TopicPartition(SINGLE, 0)])
            await consumer.seek_to_beginning(TopicPartition(SINGLE, 0))
            values: list[tuple[int, bytes | None]] = []
            while len(values) < 20:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    values += [(m.offset, m.value) for m in records]
            keyed_meta = metadata[40:46]
            assert metadata[46].partition == 1 and metadata[46].offset >= 0
            return (
                {f"{tp.topic}[{tp.partition}]": ends[tp] for tp in tps},
                values,
                keyed_meta,
                DefaultPartitioner()(b"key-0", [0, 1], [0, 1]),
            )
        finally:
            await consumer.stop()
            await producer.stop()

    from aiokafka.partitioner import DefaultPartitioner

    ends, values, keyed, partition_of_key0 = asyncio.run(go())
    assert ends[f"{BATCHED}[0]"] < 20  # batched: Tansu's end offset lags
    single_keyed = sum(1 for m in keyed if m.partition == 0)
    assert ends[f"{SINGLE}[0]"] == 20 + single_keyed and ends[f"{SINGLE}[1]"] == 6 - single_keyed + 1
    assert [v for v in values if v[1] != b"v"] == [(i, f"{SINGLE}-{i}".encode()) for i in range(20)]
    assert keyed[0].partition == partition_of_key0 and keyed[0].topic == SINGLE
    assert {m.timestamp for m in keyed} == {1500}


@pytest.mark.parametrize(("size", "batched", "producer_size"), [("1", True, 16384), ("16384", False, 16384)])
def test_the_worker_confines_one_record_per_batch_to_what_needs_it(tmp_path, monkeypatch, size, batched, producer_size):
    """``BROKER_PRODUCER_MAX_BATCH_SIZE=1`` (the embedded Tansu): the producer keeps its default batch
    size and only the internal by-client topic batches; any other value applies to every topic."""
    from broker.app import create_app
    from broker.config import load_config
    from broker.settings import Settings
    from tests.conftest import write_config

    monkeypatch.delenv("BROKER_COMMIT_INTERVAL", raising=False)
    config = load_config(write_config(tmp_path, "http://127.0.0.1:1"))
    env = {"BROKER_PRODUCER_MAX_BATCH_SIZE": size, "BROKER_DATA_DIR": str(tmp_path / "data"), "BROKER_APP_ID": "w"}
    app = create_app(Settings.from_env(env), config, "127.0.0.1:1")  # never started: no connection
    assert app.batched_topics == (frozenset({"w-events-by-client"}) if batched else None)
    assert app.conf.producer_max_batch_size == producer_size
    assert type(app.producer) is faust_compat.TopicBatchingProducer
