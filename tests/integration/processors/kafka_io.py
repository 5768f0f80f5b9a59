"""Test helpers on the real Kafka: uplink records exactly as the gateway makes them (its own
pure routing), and a reader of the ``outbound`` topic."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from gateway.routing import Accepted, route_uplink
from schemas.topics import HEADER_TARGET_TOPIC, KafkaTopics


@dataclass(frozen=True)
class Out:
    target: str
    payload: dict[str, Any]
    at: float


class Gateway:
    """Publishes what a vehicle or an app would publish, as the gateway routes it."""

    def __init__(self, *, bootstrap: str, prefix: str) -> None:
        self.topics = KafkaTopics(prefix)
        self._producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, topic: str, payload: dict[str, Any] | bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        routed = route_uplink(
            topic=topic,
            payload=body,
            received_at_ms=time.time_ns() // 1_000_000,
            message_id=uuid.uuid4().hex,
            kafka=self.topics,
        )
        assert isinstance(routed, Accepted), routed
        record = routed.record
        await self._producer.send_and_wait(
            record.topic, key=record.key, value=record.value, headers=list(record.headers)
        )


class Outbound:
    """Everything the processors put on the ``outbound`` topic, as it arrives."""

    def __init__(self, *, bootstrap: str, prefix: str) -> None:
        self._consumer = AIOKafkaConsumer(
            KafkaTopics(prefix).outbound,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=5,
        )
        self.records: list[Out] = []
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()

    async def start(self) -> None:
        await self._consumer.start()
        self._task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batch.values():
                for r in records:
                    target = dict(r.headers)[HEADER_TARGET_TOPIC].decode()
                    self.records.append(Out(target, json.loads(r.value), now))
            if batch:
                self._arrived.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self._consumer.stop()

    def to(self, target: str) -> list[dict[str, Any]]:
        return [o.payload for o in self.records if o.target == target]

    async def wait_for(
        self, check: Callable[[], bool], *, timeout_s: float = 30.0, what: str = "records"
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                seen = [o.target for o in self.records][-20:]
                raise AssertionError(f"timed out waiting for {what}; last targets: {seen}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.5))
