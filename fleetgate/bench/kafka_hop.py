"""One Kafka hop timed on its own: a record from a producer to a consumer through one broker,
with the gateway's producer (:func:`gateway.kafka.make_producer`, no linger) and a consumer
with :mod:`fleetgate.kafka_fetch`'s eager fetches and a 200 ms fetch wait. A bench runs it in
the same run and under the same background load as its own measurement: a path made of N
such hops cannot be quicker than N of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from fleetgate.bench.report import latency_summary
from fleetgate.kafka_fetch import EagerConsumer
from gateway.kafka import make_producer


async def kafka_hop(
    *, bootstrap: str, count: int, rate: float, partitions: int = 6
) -> dict[str, float]:
    """p50/p99/max/count of ``count`` records sent at ``rate`` per second, keyed like VINs,
    from send to receipt (ms), on a throw-away topic."""
    topic = f"fleetgate-bench-hop-{uuid.uuid4().hex[:12]}"
    admin: Any = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        return await _measure(bootstrap, topic, partitions, count=count, rate=rate)
    finally:
        with contextlib.suppress(Exception):
            await admin.delete_topics([topic])
        await admin.close()


async def _measure(
    bootstrap: str, topic: str, partitions: int, *, count: int, rate: float
) -> dict[str, float]:
    producer = make_producer(bootstrap=bootstrap, client_id="fleetgate-bench-hop", linger_ms=0)
    consumer: Any = EagerConsumer(
        bootstrap_servers=bootstrap, fetch_max_wait_ms=200, enable_auto_commit=False
    )
    sent: dict[bytes, float] = {}
    took: list[float] = []
    all_in = asyncio.Event()
    await producer.start()
    await consumer.start()
    try:
        assigned = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(assigned)
        await consumer.seek_to_end(*assigned)  # returns once the offsets are reset

        async def receive() -> None:
            async for record in consumer:
                started = sent.pop(record.value, None)
                if started is not None:
                    took.append((time.perf_counter() - started) * 1000)
                    if len(took) == count:
                        all_in.set()

        receiver = asyncio.create_task(receive())
        start = time.perf_counter()
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            value = f"{i}".encode()
            sent[value] = time.perf_counter()
            await producer.send(topic, value, key=f"HOP{i % 1000:014d}".encode())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), timeout=10)
        receiver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await receiver
    finally:
        await consumer.stop()
        await producer.stop()
    return {**latency_summary(took), "lost": len(sent)}
