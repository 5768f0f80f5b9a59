"""aiokafka clients as the gateway needs them (thin; keyword-only)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner

from fleetgate.kafka_fetch import EagerConsumer
from fleetgate.logs import get_logger, quiet_drivers

log = get_logger(__name__)


class CachedPartitioner:
    """aiokafka's default partitioner (murmur2 of the key, like Java's and Faust's) with a
    bounded memo: the keys are VINs, which repeat, and murmur2 in pure Python costs more than
    the rest of a send."""

    def __init__(self, size: int = 262_144) -> None:
        self._size = size
        self._memo: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(DefaultPartitioner()(key, all_partitions, available))
        memo_key = (key, len(all_partitions))
        found = self._memo.get(memo_key)
        if found is None:
            if len(self._memo) >= self._size:
                self._memo.clear()
            found = self._memo[memo_key] = int(DefaultPartitioner()(key, all_partitions, available))
        return found


def make_producer(
    *, bootstrap: str, client_id: str, linger_ms: int, request_timeout_ms: int = 30_000
) -> Any:
    """Idempotent, ``acks=all``: a record is acknowledged once every in-sync replica has it,
    and retries never duplicate or reorder within a partition. Batches never expire while
    Kafka is away (aiokafka retries idempotent batches until they succeed)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        partitioner=CachedPartitioner(),
        linger_ms=linger_ms,
        max_batch_size=1024 * 1024,  # any valid uplink record (<= 256 KiB) fits one
        max_request_size=4 * 1024 * 1024,
        request_timeout_ms=request_timeout_ms,
        retry_backoff_ms=100,
        metadata_max_age_ms=60_000,
    )


def make_consumer(
    *,
    bootstrap: str,
    client_id: str,
    group_id: str,
    fetch_max_wait_ms: int,
    max_poll_records: int,
) -> Any:
    """Committed by hand (after the broker's PUBACK); short fetch waits for command latency;
    a new group starts at the earliest record, so nothing produced before it is skipped."""
    return EagerConsumer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        fetch_min_bytes=1,
        max_poll_records=max_poll_records,
        session_timeout_ms=15_000,
        heartbeat_interval_ms=3_000,
        retry_backoff_ms=100,
        metadata_max_age_ms=60_000,
    )


def subscribe(*, consumer: Any, topic: str, listener: ConsumerRebalanceListener) -> None:
    consumer.subscribe([topic], listener=listener)


async def start_when_ready(*, client: Any, what: str, bootstrap: str, retry_s: float = 2.0) -> None:
    """``await client.start()``, retrying while Kafka does not answer (logged once a while)."""
    attempt = 0
    while True:
        try:
            with quiet_drivers():
                await client.start()
            if attempt:
                log.info("Kafka reachable", client=what, bootstrap=bootstrap)
            return
        except KafkaError as exc:
            if attempt % 15 == 0:
                log.warning(
                    "Kafka not reachable yet", client=what, bootstrap=bootstrap, error=str(exc)
                )
            attempt += 1
            await asyncio.sleep(retry_s)
