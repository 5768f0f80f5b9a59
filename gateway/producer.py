"""A Kafka producer that never gives up on a record, and sends in batches.

:meth:`ReliableProducer.submit` takes a record and a ``done`` callback and returns at once.
Records go to one *lane* per topic-partition (partitioned like aiokafka/Java/Faust: murmur2
of the key), and each lane sends what accumulated as one batch (``send_batch``) while the
previous one is in flight, so a busy gateway pays per batch, not per record, and per-VIN
order holds (one lane per partition, batches in order). ``done(None)`` runs once the
record is acknowledged (``acks=all``); ``done(error)`` only when Kafka can never take it.

aiokafka's idempotent producer retries a batch until it succeeds, except when a partition
has no leader for longer than ``request_timeout_ms`` (a Kafka restart, an outage): it then
fails the batch *after* using up its sequence numbers, and every later batch of that
partition fails with ``OutOfOrderSequenceNumber``. So on any failure this wrapper *resets*:
the lanes stop, every batch of the old producer settles, a new producer (new id, fresh
sequences) replaces it, the failed records go back to the front of their lanes in their
original order, and the lanes resume. A record whose acknowledgement was lost may be
written twice; none is lost or reordered within a partition.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.errors import KafkaError, MessageSizeTooLargeError, RecordTooLargeError

from fleetgate.logs import get_logger
from gateway.kafka import CachedPartitioner, start_when_ready
from gateway.metrics import GatewayMetrics
from gateway.routing import KafkaRecord

log = get_logger(__name__)

Done = Callable[[BaseException | None], None]
Item = tuple[int, KafkaRecord, Done]
RECORD_ERRORS: tuple[type[BaseException], ...] = (MessageSizeTooLargeError, RecordTooLargeError)
"""Errors about the record itself: re-sending it cannot help."""
MAX_BATCH_RECORDS = 4000


class _Lane:
    """Records waiting for one topic-partition, and its sending task."""

    def __init__(self) -> None:
        self.items: deque[Item] = deque()
        self.wake = asyncio.Event()
        self.idle = asyncio.Event()
        """No batch of this lane in flight: with idempotence Kafka takes one per partition at a
        time anyway, so the next batch is built when the last one is acknowledged (larger)."""
        self.idle.set()
        self.task: asyncio.Task[None] | None = None


class ReliableProducer:
    """Wraps aiokafka producers made by ``factory`` (see the module doc)."""

    def __init__(
        self, *, factory: Callable[[], Any], bootstrap: str, metrics: GatewayMetrics
    ) -> None:
        self._factory = factory
        self._bootstrap = bootstrap
        self._metrics = metrics
        self._producer: Any = None
        self._partitioner = CachedPartitioner()
        self._partitions: dict[str, list[int]] = {}
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._waiting: dict[str, list[Item]] = {}
        self._open = asyncio.Event()
        self._inflight = 0
        self._settled = asyncio.Event()
        self._failed: list[Item] = []
        self._counter = 0
        self._reset_task: asyncio.Task[None] | None = None
        self.resets = 0

    async def start(self, *, topics: Iterable[str] = ()) -> None:
        """Connect (waiting for Kafka) and learn the partitions of ``topics``."""
        self._producer = self._factory()
        await start_when_ready(client=self._producer, what="producer", bootstrap=self._bootstrap)
        for topic in topics:
            with contextlib.suppress(KafkaError):  # learnt on first use instead
                await self.learn(topic)
        self._open.set()

    async def learn(self, topic: str) -> list[int]:
        partitions = sorted(await self._producer.partitions_for(topic))
        if not partitions:
            raise KafkaError(f"topic {topic} has no partitions yet")
        if topic not in self._waiting:  # else _learn_then_release publishes it, in order
            self._partitions[topic] = partitions
        return partitions

    # --- taking records ----------------------------------------------------------------------
    def submit(self, record: KafkaRecord, done: Done) -> None:
        """Queue ``record``; ``done`` is called on the event loop once it is in Kafka."""
        number = self._counter
        self._counter += 1
        partitions = self._partitions.get(record.topic)
        if partitions is None:  # not learnt yet: wait, in order, for the topic's metadata
            waiting = self._waiting.get(record.topic)
            if waiting is None:
                waiting = self._waiting[record.topic] = []
                asyncio.get_running_loop().create_task(self._learn_then_release(record.topic))
            waiting.append((number, record, done))
            return
        partition = self._partitioner(record.key, partitions, partitions)
        self._lane(record.topic, partition).items.append((number, record, done))

    async def _learn_then_release(self, topic: str) -> None:
        delay = 0.2
        while True:
            try:
                partitions = await self.learn(topic)
                break
            except KafkaError as exc:
                log.warning("no metadata for Kafka topic yet", topic=topic, error=repr(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for item in self._waiting.pop(topic, []):
            partition = self._partitioner(item[1].key, partitions, partitions)
            self._lane(topic, partition).items.append(item)
        self._partitions[topic] = partitions

    def _lane(self, topic: str, partition: int) -> _Lane:
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[(topic, partition)] = _Lane()
            lane.task = asyncio.get_running_loop().create_task(
                self._drive(topic, partition, lane), name=f"lane-{topic}-{partition}"
            )
        if not lane.wake.is_set():
            lane.wake.set()
        return lane

    # --- sending -----------------------------------------------------------------------------
    async def _drive(self, topic: str, partition: int, lane: _Lane) -> None:
        while True:
            if not lane.items:
                lane.wake.clear()
                await lane.wake.wait()
                continue
            if not lane.idle.is_set():
                await lane.idle.wait()
                continue
            if not self._open.is_set():
                await self._open.wait()
                continue
            await self._send_batch(topic, partition, lane)

    async def _send_batch(self, topic: str, partition: int, lane: _Lane) -> None:
        producer = self._producer
        batch = producer.create_batch()
        items: list[Item] = []
        while lane.items and len(items) < MAX_BATCH_RECORDS:
            _, record, done = lane.items[0]
            meta = batch.append(
                key=record.key, value=record.value, timestamp=None, headers=list(record.headers)
            )
            if meta is None:
                if items:
                    break  # full: the rest goes in the next batch
                lane.items.popleft()
                done(RecordTooLargeError(f"record of {len(record.value)} bytes"))
                return
            items.append(lane.items.popleft())
        self._inflight += 1
        lane.idle.clear()
        started = time.perf_counter()
        try:
            future = await producer.send_batch(batch, topic, partition=partition)
        except KafkaError as exc:
            self._settle_one(lane)
            self._fail(items, exc)
            return
        future.add_done_callback(lambda f: self._on_result(lane, items, started, f))

    def _on_result(
        self, lane: _Lane, items: list[Item], started: float, future: asyncio.Future[Any]
    ) -> None:
        self._settle_one(lane)
        exc = None if future.cancelled() else future.exception()
        if future.cancelled() or (exc is not None and not isinstance(exc, RECORD_ERRORS)):
            self._fail(items, exc or asyncio.CancelledError())
            return
        if exc is None:
            self._metrics.produce_seconds.observe(time.perf_counter() - started)
        for _, _, done in items:
            done(exc)

    def _settle_one(self, lane: _Lane) -> None:
        lane.idle.set()
        self._inflight -= 1
        if self._inflight <= 0:
            self._settled.set()

    # --- recovery ----------------------------------------------------------------------------
    def _fail(self, items: list[Item], exc: BaseException) -> None:
        self._metrics.produce_retries.inc(len(items))
        self._failed.extend(items)
        if self._reset_task is None or self._reset_task.done():
            topic = items[0][1].topic if items else "?"
            log.warning("Kafka produce failed: replacing the producer, records will be re-sent",
                        topic=topic, error=repr(exc))  # fmt: skip
            self._open.clear()
            self._reset_task = asyncio.get_running_loop().create_task(self._reset())

    async def _reset(self) -> None:
        while self._inflight > 0:  # every batch of the old producer settles first
            self._settled.clear()
            await self._settled.wait()
        old = self._producer
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), 10)
        self._producer = self._factory()
        await start_when_ready(client=self._producer, what="producer", bootstrap=self._bootstrap)
        for topic in list(self._partitions):
            with contextlib.suppress(KafkaError):
                await self.learn(topic)
        self.resets += 1
        failed, self._failed = sorted(self._failed, key=lambda item: item[0]), []
        log.info("Kafka producer replaced; re-sending", records=len(failed), resets=self.resets)
        for item in reversed(failed):  # back to the front of their lanes, in order
            record = item[1]
            partitions = self._partitions.get(record.topic) or [0]
            partition = self._partitioner(record.key, partitions, partitions)
            self._lane(record.topic, partition).items.appendleft(item)
        self._open.set()

    async def stop(self) -> None:
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if self._reset_task is not None:
            tasks.append(self._reset_task)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._producer.stop(), 10)
