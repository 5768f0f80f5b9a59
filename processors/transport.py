"""Faust's aiokafka transport with two changes the processors need.

- Fetching: Faust hard-codes ``fetch_max_wait_ms`` 1500 ms, and aiokafka does not fetch a
  partition whose records were just handed out until the poll of the other partitions ends,
  so a command could wait that long. :func:`fleetgate.kafka_fetch.eager_fetches` removes
  that hold-back, so the wait (``FETCH_MAX_WAIT_MS``, 200 ms by default) only bounds idle
  polling (measured on 36 partitions without it: 5 ms ~20 % of a core, 10 ms ~12 %,
  50 ms ~4 %).
- Partition assignment: without changelog tables Faust assigns round-robin, which may give
  partition 3 of ``command.requests`` and partition 3 of ``connectivity`` to different
  workers. The range assignor gives every co-partitioned topic's partition *n* to the same
  worker, so one worker owns all of a vehicle's streams (every topic is keyed by VIN and has
  the same number of partitions).
"""

from __future__ import annotations

from typing import Any

from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from faust.transport.drivers import aiokafka as driver

from fleetgate.kafka_fetch import eager_fetches

DEFAULT_FETCH_MAX_WAIT_MS = 200


class _ConsumerThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.consumer.app, "fetch_max_wait_ms", DEFAULT_FETCH_MAX_WAIT_MS)
        # aiokafka reads both when the consumer starts (pinned: aiokafka 0.14)
        for name in ("_fetch_max_wait_ms", "_partition_assignment_strategy"):
            if not hasattr(consumer, name):
                raise RuntimeError(f"aiokafka consumer has no {name}: unsupported version")
        consumer._fetch_max_wait_ms = int(wait_ms)
        consumer._partition_assignment_strategy = (RangePartitionAssignor,)
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        assert self._consumer is not None
        eager_fetches(self._consumer._fetcher)


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class LowLatencyTransport(driver.Transport):
    """``aiokafka://`` with a short fetch wait and co-partitioned assignment."""

    Consumer = _Consumer
