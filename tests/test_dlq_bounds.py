"""Dead letters stay bounded and findable; outcomes are published once (broker/dlq.py, broker/outcomes.py)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from broker import dlq
from broker.kafka import ensure_topics
from broker.outcomes import OutcomeLog
from broker.settings import TOPIC_DLQ, TOPIC_EVENTS
from tests.delivery_support import publish_records


def test_small_records_are_dead_lettered_whole():
    assert dlq.bounded_copy(b"k", b"v" * dlq.DLQ_MAX_VALUE_BYTES) == (b"k", b"v" * dlq.DLQ_MAX_VALUE_BYTES, [])
    assert dlq.bounded_copy(None, None) == (None, None, [])


def test_an_oversized_value_becomes_its_head_with_size_and_sha256():
    value = bytes(range(256)) * 4000  # 1,024,000 bytes
    key = b"K" * 5000
    new_key, new_value, headers = dlq.bounded_copy(key, value)
    assert new_value == value[:65536] and len(new_value) == 65536
    assert new_key == b"K" * 1024
    assert headers == [
        ("dlq.value.truncated", b"true"),
        ("dlq.value.size", b"1024000"),
        ("dlq.value.sha256", hashlib.sha256(value).hexdigest().encode()),
        ("dlq.key.truncated", b"true"),
        ("dlq.key.size", b"5000"),
        ("dlq.key.sha256", hashlib.sha256(key).hexdigest().encode()),
    ]


def test_clip_bounds_log_text():
    assert dlq.clip("short") == "short"
    assert dlq.clip("x" * 400) == "x" * 300 + "… (400 chars)"
    assert dlq.clip(b"ab", 10) == "b'ab'"


@pytest.mark.integration
def test_replay_refuses_a_bounded_copy_and_names_the_original(kafka):
    ensure_topics(kafka, 1, [TOPIC_DLQ, TOPIC_EVENTS])
    value = b"{" + b" " * 700_000 + b"}"
    key, head, extra = dlq.bounded_copy(b"acme-fm:wo:1", value)
    headers = (
        dlq.dlq_headers(
            topic=TOPIC_EVENTS,
            partition=0,
            offset=41,
            stage="decode",
            error_class="too_large",
            exc=ValueError("event is 700002 bytes"),
            tenant="acme-fm",
        )
        + extra
    )
    publish_records(kafka, TOPIC_DLQ, [(key, head)], headers=headers)
    [record] = dlq.read_dlq(kafka)
    assert record.truncated and len(record.value) == 65536 and record.tenant == "acme-fm"
    report = dlq.replay(kafka, group="bounded-replay")
    assert [(i.action, i.reason) for i in report.items] == [
        ("refused", f"a bounded copy of a 700002-byte value: the original is at {TOPIC_EVENTS}:0:41")
    ]


@pytest.mark.integration
def test_outcome_log_publishes_to_the_key_partition_and_finds_it_after(kafka):
    """The scan after a crash: a record is found from a lower bound taken before it was sent, and
    a different value (or a bound past it) is not."""
    import faust

    from broker.dlq import key_partition

    ensure_topics(kafka, 4, ["billing.deliveries"])

    async def go() -> tuple:
        app = faust.App("outcome-log-test", broker=f"kafka://{kafka}", store="memory://", web_enabled=False)
        topic = app.topic("billing.deliveries", key_type=bytes, value_type=bytes)
        await app.producer.start()
        log = OutcomeLog(topic, kafka)
        try:
            key = b"acme-fm:wo:1:r1"
            partition = await log.partition_for(key)
            before = await log.low_water(partition)
            offset = await log.publish(key, b'{"outcome":"created"}', partition)
            found = await log.contains(partition, before, key, b'{"outcome":"created"}')
            other = await log.contains(partition, before, key, b'{"outcome":"already_delivered"}')
            past = await log.contains(partition, offset + 1, key, b'{"outcome":"created"}')
            return partition, before, offset, await log.low_water(partition), found, other, past
        finally:
            await log.aclose()
            await app.producer.stop()

    partition, before, offset, after, found, other, past = asyncio.run(go())
    assert partition == key_partition(b"acme-fm:wo:1:r1", 4)
    assert (before, offset, after) == (0, 0, 1)
    assert (found, other, past) == (True, False, False)


def test_redaction_reads_the_environment_again_only_when_it_changed(monkeypatch):
    monkeypatch.setenv("ACME_API_KEY", "first-key-123")
    monkeypatch.setenv("ACME_USER", "not-a-secret-name")
    assert dlq.redact("Bearer abc.def uses first-key-123 as not-a-secret-name") == (
        "Bearer [REDACTED] uses [REDACTED] as not-a-secret-name"
    )
    values = dlq.secret_values()
    assert dlq.secret_values() is values  # the environment did not change: not read again
    monkeypatch.setenv("ACME_API_KEY", "second-key-456")  # a changed value
    assert dlq.redact("first-key-123, second-key-456") == "first-key-123, [REDACTED]"
    monkeypatch.setenv("LEDGER_TOKEN", "second-key-456-and-more")  # a new variable holding a longer secret
    assert dlq.redact("second-key-456-and-more") == "[REDACTED]"  # removed whole: longest first
    monkeypatch.setenv("SHORT_SECRET", "12345")  # under 6 characters: never redacted
    monkeypatch.delenv("ACME_API_KEY")
    assert dlq.redact("second-key-456 12345") == "second-key-456 12345"
