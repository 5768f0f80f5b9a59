"""The ``outbound`` topic through the Faust app's Kafka producer (the processors are its one
producer). Records go straight to the transport producer: key, value and headers are bytes
already, so Faust's channel and serializer layers would only cost time."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable
from typing import Any

from processors.ports import OutboundError
from processors.records import OutboundRecord


class FaustOutbound:
    """:class:`processors.ports.Outbound` on the app's producer."""

    def __init__(self, *, producer: Any, topic: str) -> None:
        self._producer = producer
        self._topic = topic
        # message ids: unique per worker run, cheap per record
        self._prefix = uuid.uuid4().hex[:16]
        self._counter = itertools.count()
        self.sent = 0

    async def send(self, record: OutboundRecord) -> Awaitable[object]:
        message_id = f"{self._prefix}-{next(self._counter):x}"
        try:
            delivery: Awaitable[object] = await self._producer.send(
                self._topic,
                key=record.key,
                value=record.value,
                partition=None,
                timestamp=None,
                headers=list(record.headers(message_id=message_id)),
            )
        except Exception as exc:  # the producer's errors are all "try again later"
            raise OutboundError(f"outbound record to {record.target}: {exc}") from exc
        self.sent += 1
        return delivery
