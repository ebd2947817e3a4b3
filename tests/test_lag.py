"""Consumer lag (:mod:`broker.lag`): committed against end offsets of a real group on a real Tansu."""

from __future__ import annotations

import pytest

from broker import metrics
from broker.kafka import ensure_topics
from broker.lag import LagSampler, lag_by_partition
from tests.delivery_support import publish_records


class _TP:
    def __init__(self, topic: str, partition: int) -> None:
        self.topic, self.partition = topic, partition

    def __hash__(self) -> int:
        return hash((self.topic, self.partition))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _TP) and (self.topic, self.partition) == (other.topic, other.partition)


def test_lag_is_end_minus_committed_never_negative():
    a, b, c = _TP("t", 0), _TP("t", 1), _TP("u", 0)
    assert lag_by_partition({a: 3, b: 10, c: 4}, {a: 7, b: 9}) == {("t", 0): 4, ("t", 1): 0}


@pytest.mark.integration
def test_the_sampler_reads_the_group_lag_from_kafka(kafka):
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    ensure_topics(kafka, 2, ["lag.test"])
    publish_records(kafka, "lag.test", [(b"k", f"v{i}".encode()) for i in range(5)])
    tp = TopicPartition("lag.test", 0)
    ends = KafkaConsumer(bootstrap_servers=kafka).end_offsets([tp, TopicPartition("lag.test", 1)])
    filled = next(p for p, end in ends.items() if end == 5)  # the key put all five in one partition
    consumer = KafkaConsumer(bootstrap_servers=kafka, group_id="lag-group", enable_auto_commit=False)
    try:
        consumer.commit({filled: OffsetAndMetadata(2, "", -1)})
    finally:
        consumer.close()
    found = LagSampler(kafka, "lag-group").sample_once()
    assert found == {("lag.test", filled.partition): 3}
    sample = metrics.CONSUMER_LAG.labels("lag.test", str(filled.partition))._value.get()
    assert sample == 3
