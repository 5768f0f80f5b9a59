"""What the processors' services need from the outside world, as protocols.

The Cassandra repositories (``processors.store.repo_*``) and the Kafka outbound adapter
(:mod:`processors.outbound`) implement them; agent tests use in-memory ones.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from processors.commands.logic import Command, Staged
from processors.records import OutboundRecord
from processors.shadow.stored import ShadowRow
from processors.store.repo_commands import DeadlineRow
from processors.store.repo_shadow import LoadedShadow
from processors.store.schema import Ecu
from processors.store.session import StoreError

Ack = Callable[[], None]
"""Acknowledge the Kafka record an input came from (its offset may then be committed)."""


class OutboundError(Exception):
    """Kafka did not take an outbound record (retried like a store error)."""


TRANSIENT: tuple[type[BaseException], ...] = (StoreError, OutboundError)


class Outbound(Protocol):
    async def send(self, record: OutboundRecord) -> Awaitable[object]:
        """Queue ``record`` for Kafka (raises OutboundError); await the result to know the
        broker has it."""


class Clock(Protocol):
    def wall_ms(self) -> int: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()


class ShadowStore(Protocol):
    async def load(self, *, vin: str) -> LoadedShadow: ...

    async def save(self, *, row: ShadowRow, stored_version: int | None) -> bool: ...


class VehicleDirectory(Protocol):
    async def apps_of(self, *, vin: str) -> frozenset[str] | None: ...

    async def is_linked(self, *, app_id: str, vin: str) -> bool: ...

    async def update_ecus(self, *, vin: str, ecus: Mapping[str, Ecu], ts_ms: int) -> None: ...


class CommandStore(Protocol):
    async def get(self, *, command_id: str) -> Command | None: ...

    async def record_new(self, *, command: Command, partition: int, now_ms: int) -> None: ...

    async def save_status(self, *, command: Command, partition: int, now_ms: int) -> None: ...

    async def deadlines(self, *, partition: int, now_ms: int) -> list[DeadlineRow]: ...

    async def stage(self, *, command: Command, now_ms: int) -> None: ...

    async def staged(self, *, vin: str) -> list[Staged]: ...

    async def unstage(self, *, vin: str, staged_at: int, command_id: str) -> None: ...
