"""The downlink loop: the Kafka ``outbound`` topic to MQTT, committed only after the PUBACK.

A consumer group (every gateway instance in it) reads ``outbound``; each record is published
to the topic its ``fg-target-topic`` header names, with the QoS of ``fg-qos`` (default 1),
the value untouched. Per partition the gateway tracks which records the broker acknowledged
and commits the offset after the contiguous acknowledged prefix, so a crash re-delivers
(never skips) what was not confirmed. A record that names no downlink topic goes to the
dead-letter topic and counts as done. At most ``max_inflight`` records are unacknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from functools import partial
from typing import Any

from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import TopicPartition

from fleetgate.logs import get_logger
from gateway.ids import MessageIds
from gateway.metrics import GatewayMetrics
from gateway.mqtt import MqttLink
from gateway.producer import ReliableProducer
from gateway.routing import MqttPublish, route_downlink
from gateway.window import OffsetWindow
from schemas.topics import KafkaTopics

log = get_logger(__name__)

LAG_INTERVAL_S = 5.0


class DownlinkBridge(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Consumes ``outbound``, publishes, commits; :meth:`run` until cancelled."""

    def __init__(
        self,
        *,
        consumer: Any,
        producer: ReliableProducer,
        link: MqttLink,
        kafka: KafkaTopics,
        metrics: GatewayMetrics,
        max_inflight: int,
        commit_interval_ms: int,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._link = link
        self._kafka = kafka
        self._metrics = metrics
        self._max = max_inflight
        self._commit_interval_s = commit_interval_ms / 1000
        self._windows: dict[TopicPartition, OffsetWindow] = {}
        self._to_commit: dict[TopicPartition, int] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._assigned = asyncio.Event()
        self._empty = asyncio.Event()
        self._stopping = False
        self._ids = MessageIds()
        self.inflight = 0

    # --- rebalance listener --------------------------------------------------------------------
    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self.commit(only=set(revoked))
        for tp in revoked:
            window = self._windows.pop(tp, None)
            if window is not None:
                self._release(len(window))  # their publishes complete, uncounted
            self._to_commit.pop(tp, None)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        for tp in assigned:
            self._windows.setdefault(tp, OffsetWindow())
        self._assigned.set()
        log.info("outbound partitions assigned", partitions=sorted(tp.partition for tp in assigned))

    async def wait_assigned(self) -> None:
        await self._assigned.wait()

    # --- loop --------------------------------------------------------------------------------
    async def run(self) -> None:
        committer = asyncio.create_task(self._commit_loop(), name="downlink-commit")
        lag = asyncio.create_task(self._lag_loop(), name="downlink-lag")
        try:
            while not self._stopping:
                await self._room.wait()
                room = max(1, self._max - self.inflight)
                batch = await self._consumer.getmany(timeout_ms=200, max_records=room)
                for tp, records in batch.items():
                    window = self._windows.setdefault(tp, OffsetWindow())
                    for record in records:
                        self._deliver(tp, window, record)
        finally:
            committer.cancel()
            lag.cancel()
            for task in (committer, lag):
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def _deliver(self, tp: TopicPartition, window: OffsetWindow, record: Any) -> None:
        ticket = window.push(record.offset)
        self.inflight += 1
        if self.inflight >= self._max:
            self._room.clear()
        result = route_downlink(
            key=record.key,
            value=record.value,
            headers=record.headers,
            received_at_ms=time.time_ns() // 1_000_000,
            message_id=self._ids.next(),
            kafka=self._kafka,
        )
        done = partial(self._published, tp, window, ticket)
        if isinstance(result, MqttPublish):
            kind = result.kind
            started = time.perf_counter()

            def acked() -> None:
                self._metrics.publish_seconds.observe(time.perf_counter() - started)
                if kind is not None:
                    self._metrics.downlink_by_kind[kind].inc()
                done()

            self._link.publish(result.topic, result.payload, qos=result.qos,
                               retain=result.retain, on_done=acked)  # fmt: skip
            return
        log.warning("outbound record rejected", partition=tp.partition, offset=record.offset,
                    reason=result.reason)  # fmt: skip
        self._metrics.downlink_reject_by_cause[result.cause].inc()

        def written(exc: BaseException | None) -> None:
            if exc is not None:
                log.error("dead letter of an outbound record not written", error=repr(exc))
            done()

        self._producer.submit(result.dead_letter, written)

    def _published(self, tp: TopicPartition, window: OffsetWindow, ticket: int) -> None:
        if self._windows.get(tp) is not window:
            return  # partition revoked meanwhile: its new owner re-delivers
        committable = window.complete(ticket)
        if committable is not None:
            self._to_commit[tp] = committable
        self._release(1)

    def _release(self, count: int) -> None:
        self.inflight -= count
        if self.inflight < self._max:
            self._room.set()
        if self.inflight <= 0:
            self._empty.set()

    # --- commits and lag -----------------------------------------------------------------------
    async def commit(self, *, only: set[TopicPartition] | None = None) -> None:
        offsets = {
            tp: offset for tp, offset in self._to_commit.items() if only is None or tp in only
        }
        if not offsets:
            return
        for tp in offsets:
            self._to_commit.pop(tp, None)
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("outbound offsets not committed (re-delivered later)", error=repr(exc))

    async def _commit_loop(self) -> None:
        while True:
            await asyncio.sleep(self._commit_interval_s)
            await self.commit()

    async def _lag_loop(self) -> None:
        while True:
            await asyncio.sleep(LAG_INTERVAL_S)
            total = 0
            for tp in self._consumer.assignment():
                high = self._consumer.highwater(tp)
                if high is None:
                    continue
                with contextlib.suppress(KafkaError, AssertionError):
                    total += max(0, high - await self._consumer.position(tp))
            self._metrics.consumer_lag.set(total)

    async def drain(self, timeout_s: float) -> None:
        """Stop consuming, wait for the broker's acknowledgements (bounded), commit."""
        self._stopping = True
        if self.inflight > 0:
            self._empty.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._empty.wait(), timeout_s)
        await self.commit()
