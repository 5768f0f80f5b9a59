"""In-memory stand-ins for the processors' ports (unit tests only; integration tests use the
real Cassandra and Kafka)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from processors.commands.logic import Command, Staged
from processors.links import LinkCache
from processors.records import Incoming, OutboundRecord
from processors.shadow.logic import Shadow
from processors.shadow.service import ShadowService
from processors.shadow.stored import ShadowRow, from_row
from processors.store.repo_commands import DONE, DeadlineRow
from processors.store.repo_shadow import LoadedShadow
from processors.store.schema import Ecu
from schemas.ids import Identity, Role
from schemas.topics import parse_topic


class FakeClock:
    def __init__(self, wall_ms: int = 1_700_000_000_000) -> None:
        self.wall = wall_ms
        self.mono = 1000.0

    def wall_ms(self) -> int:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += int(seconds * 1000)
        self.mono += seconds


class MemoryOutbound:
    def __init__(self) -> None:
        self.records: list[OutboundRecord] = []

    async def send(self, record: OutboundRecord) -> Awaitable[object]:
        self.records.append(record)
        done: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def to(self, prefix: str) -> list[dict[str, Any]]:
        """Decoded payloads of records whose target starts with ``prefix``."""
        return [json.loads(r.value) for r in self.records if r.target.startswith(prefix)]

    def targets(self) -> list[str]:
        return [r.target for r in self.records]


class MemoryShadowStore:
    def __init__(self) -> None:
        self.rows: dict[str, ShadowRow] = {}
        self.saves = 0

    async def load(self, *, vin: str) -> LoadedShadow:
        row = self.rows.get(vin)
        if row is None:
            return LoadedShadow(Shadow(vin=vin), None)
        shadow = from_row(
            vin=vin,
            reported=row.reported,
            desired=row.desired,
            metadata=row.metadata,
            version=row.version,
            updated_at=row.updated_at,
        )
        return LoadedShadow(shadow, row.version)

    async def save(self, *, row: ShadowRow, stored_version: int | None) -> bool:
        current = self.rows.get(row.vin)
        if (current.version if current else None) != stored_version:
            return False
        self.rows[row.vin] = row
        self.saves += 1
        return True


@dataclass
class MemoryDirectory:
    apps: dict[str, set[str]] = field(default_factory=dict)
    ecus: dict[str, dict[str, Ecu]] = field(default_factory=dict)

    def add(self, vin: str, *apps: str) -> None:
        self.apps.setdefault(vin, set()).update(apps)

    async def apps_of(self, *, vin: str) -> frozenset[str] | None:
        found = self.apps.get(vin)
        return None if found is None else frozenset(found)

    async def is_linked(self, *, app_id: str, vin: str) -> bool:
        return app_id in self.apps.get(vin, set())

    async def update_ecus(self, *, vin: str, ecus: Mapping[str, Ecu], ts_ms: int) -> None:
        self.ecus.setdefault(vin, {}).update(ecus)


class MemoryCommandStore:
    def __init__(self) -> None:
        self.commands: dict[str, Command] = {}
        self.staged_rows: dict[str, list[Staged]] = {}
        self.deadline_rows: dict[tuple[int, str], DeadlineRow] = {}

    async def get(self, *, command_id: str) -> Command | None:
        return self.commands.get(command_id)

    def _deadline(self, command: Command, partition: int) -> None:
        state = DONE if command.status.is_final else command.status.name
        row = DeadlineRow(command.command_id, command.vin, command.expires_at, state)
        self.deadline_rows[(partition, command.command_id)] = row

    async def record_new(self, *, command: Command, partition: int, now_ms: int) -> None:
        self.commands[command.command_id] = command
        self._deadline(command, partition)

    async def save_status(self, *, command: Command, partition: int, now_ms: int) -> None:
        self.commands[command.command_id] = command
        self._deadline(command, partition)

    async def deadlines(self, *, partition: int, now_ms: int) -> list[DeadlineRow]:
        return [r for (p, _), r in self.deadline_rows.items() if p == partition and r.state != DONE]

    async def stage(self, *, command: Command, now_ms: int) -> None:
        rows = self.staged_rows.setdefault(command.vin, [])
        if all(r.command_id != command.command_id for r in rows):
            rows.append(Staged(command.command_id, command.created_at, command.expires_at))

    async def staged(self, *, vin: str) -> list[Staged]:
        return list(self.staged_rows.get(vin, []))

    async def unstage(self, *, vin: str, staged_at: int, command_id: str) -> None:
        rows = self.staged_rows.get(vin, [])
        self.staged_rows[vin] = [r for r in rows if r.command_id != command_id]


def meta(vin: str, *, sender: str, topic: str, at: int) -> Incoming:
    role, _, ident = sender.partition(":")
    identity = Identity(role=Role.APP if role == "app" else Role.VEHICLE, id=ident)
    return Incoming(vin, at, identity, parse_topic(topic), uuid.uuid4().hex)


class Acks:
    """Counts acknowledgements (the fake of a Kafka record's ack)."""

    def __init__(self) -> None:
        self.done: list[str] = []

    def __call__(self, name: str) -> Any:
        def ack() -> None:
            self.done.append(name)

        return ack


def same(command: Command, **changes: Any) -> Command:
    return replace(command, **changes)


def shadow_service(
    *,
    clock: FakeClock,
    store: MemoryShadowStore,
    outbound: MemoryOutbound | None = None,
    directory: MemoryDirectory | None = None,
    **tuning: Any,
) -> ShadowService:
    """A shadow service on the in-memory stand-ins (``tuning``: its other keyword arguments,
    ``interval_s`` first of all)."""
    directory = directory if directory is not None else MemoryDirectory()
    return ShadowService(
        store=store,
        directory=directory,
        links=LinkCache(directory=directory, clock=clock, ttl_s=5),
        outbound=outbound if outbound is not None else MemoryOutbound(),
        clock=clock,
        **tuning,
    )
