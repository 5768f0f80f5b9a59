"""Against the session's real Kafka broker: topics created idempotently, records keyed by VIN."""

from __future__ import annotations

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from fleetgate.stack import kafka
from schemas.ids import make_vin

pytestmark = pytest.mark.integration


async def test_topics_are_created_once(kafka_bootstrap: str, topic_prefix: str) -> None:
    names = [f"{topic_prefix}telemetry", f"{topic_prefix}deadletter"]
    created = await kafka.create_topics(bootstrap=kafka_bootstrap, names=names, partitions=3)
    assert sorted(created) == sorted(names)
    again = await kafka.create_topics(bootstrap=kafka_bootstrap, names=names, partitions=3)
    assert again == []


async def test_records_keyed_by_vin_keep_order_per_vin(
    kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = f"{topic_prefix}telemetry"
    await kafka.create_topics(bootstrap=kafka_bootstrap, names=[topic], partitions=4)
    vins = [make_vin(i) for i in range(5)]
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for seq in range(20):
            for vin in vins:
                await producer.send(topic, key=vin.encode(), value=str(seq).encode())
        await producer.flush()
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=50,
    )
    await consumer.start()
    seen: dict[str, list[int]] = {v: [] for v in vins}
    partitions: dict[str, set[int]] = {v: set() for v in vins}
    try:
        while sum(len(s) for s in seen.values()) < 100:
            batch = await consumer.getmany(timeout_ms=5000)
            assert batch, "no records from the real broker within 5 s"
            for records in batch.values():
                for record in records:
                    vin = record.key.decode()
                    seen[vin].append(int(record.value))
                    partitions[vin].add(record.partition)
    finally:
        await consumer.stop()
    for vin in vins:
        assert seen[vin] == list(range(20))
        assert len(partitions[vin]) == 1
