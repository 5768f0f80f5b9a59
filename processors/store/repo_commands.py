"""``commands``, ``commands_by_vin``, the ``COMMAND`` rows of ``staged_actions`` and
``command_deadlines``. Writer: processors/commands.

A new command is written once it has been dispatched (``record_new``): its ``commands`` row
in the state it reached, its by-vehicle row and its deadline, in one unlogged batch. No
lightweight transaction: a vehicle's commands are handled by the one worker that owns its
Kafka partition, one at a time, and that worker reads ``commands`` by id before it creates
one (``get``). Every statement is an idempotent upsert and the Kafka record is acknowledged
only after the batch, so a write cut short is completed by the record's replay; a logged
batch (two more writes to the batch log per batch) would buy nothing. States are stored by
enum name (``ACCEPTED``), JSON (params, detail, payload) as text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from pydantic import JsonValue

from processors.commands.logic import Command, Staged
from processors.store.repo_common import Queries, to_ms, ttl_until
from processors.store.session import CassandraSession, Row
from schemas.commands import CommandState

KIND: Final = "COMMAND"
DONE: Final = "DONE"
DEADLINE_KEEP_MS: Final = 3600 * 1000
"""A deadline row lives this long after it is due (so a worker that takes over late still
finds it); the assignment read starts this far back."""

_INSERT = (
    "INSERT INTO ks.commands (command_id, vin, app_id, name, params, status, detail, created_at, "
    "expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_GET = (
    "SELECT command_id, vin, app_id, name, params, status, detail, created_at, expires_at, "
    "updated_at FROM ks.commands WHERE command_id = ?"
)
_SET_STATUS = "UPDATE ks.commands SET status = ?, detail = ?, updated_at = ? WHERE command_id = ?"
_BY_VIN = (
    "INSERT INTO ks.commands_by_vin (vin, created_at, command_id, app_id, name, status, detail, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_BY_VIN_STATUS = (
    "UPDATE ks.commands_by_vin SET status = ?, detail = ?, updated_at = ? "
    "WHERE vin = ? AND created_at = ? AND command_id = ?"
)
_RECENT = (
    "SELECT created_at, command_id, app_id, name, status, detail, updated_at "
    "FROM ks.commands_by_vin WHERE vin = ? LIMIT ?"
)
_DEADLINE = (
    "INSERT INTO ks.command_deadlines (kafka_partition, due_at, command_id, vin, state) "
    "VALUES (?, ?, ?, ?, ?) USING TTL ?"
)
_DEADLINES = (
    "SELECT due_at, command_id, vin, state FROM ks.command_deadlines "
    "WHERE kafka_partition = ? AND due_at >= ?"
)
_STAGE = (
    "INSERT INTO ks.staged_actions (vin, kind, staged_at, action_id, payload, expires_at) "
    "VALUES (?, ?, ?, ?, ?, ?) USING TTL ?"
)
_STAGED = (
    "SELECT staged_at, action_id, expires_at FROM ks.staged_actions WHERE vin = ? AND kind = ?"
)
_UNSTAGE = (
    "DELETE FROM ks.staged_actions WHERE vin = ? AND kind = ? AND staged_at = ? AND action_id = ?"
)


def _json(value: JsonValue) -> str | None:
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _unjson(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def command_from_row(row: Row) -> Command:
    params = _unjson(row.get("params"))
    return Command(
        command_id=row["command_id"],
        vin=row["vin"],
        app_id=row["app_id"],
        name=row["name"],
        params=params if isinstance(params, dict) else {},
        created_at=to_ms(row["created_at"]) or 0,
        expires_at=to_ms(row["expires_at"]) or 0,
        status=CommandState[row["status"]],
        detail=_unjson(row.get("detail")),
        updated_at=to_ms(row.get("updated_at")) or 0,
    )


@dataclass(frozen=True, slots=True)
class DeadlineRow:
    command_id: str
    vin: str
    due_at: int
    state: str


class CommandRepository:
    def __init__(self, *, session: CassandraSession, keyspace: str) -> None:
        self._session = session
        self._q = Queries(keyspace)

    async def get(self, *, command_id: str) -> Command | None:
        rows = await self._session.execute(query=self._q(_GET), params=(command_id,))
        return command_from_row(rows[0]) if rows else None

    def _deadline(
        self, command: Command, *, partition: int, state: str, now_ms: int
    ) -> tuple[str, tuple[object, ...]]:
        ttl = ttl_until(until_ms=command.expires_at + DEADLINE_KEEP_MS, now_ms=now_ms)
        params = (partition, command.expires_at, command.command_id, command.vin, state, ttl)
        return self._q(_DEADLINE), params

    async def record_new(self, *, command: Command, partition: int, now_ms: int) -> None:
        """A command just accepted, in the state its dispatch left it (delivered, or still
        accepted when staged): its row, its by-vehicle row and its deadline."""
        detail = _json(command.detail)
        await self._session.execute_batch(
            statements=[
                (
                    self._q(_INSERT),
                    (
                        command.command_id,
                        command.vin,
                        command.app_id,
                        command.name,
                        _json(dict(command.params)),
                        command.status.name,
                        detail,
                        command.created_at,
                        command.expires_at,
                        command.updated_at,
                    ),
                ),
                (
                    self._q(_BY_VIN),
                    (
                        command.vin,
                        command.created_at,
                        command.command_id,
                        command.app_id,
                        command.name,
                        command.status.name,
                        detail,
                        command.updated_at,
                    ),
                ),
                self._deadline(
                    command, partition=partition, state=command.status.name, now_ms=now_ms
                ),
            ],
            logged=False,
        )

    async def save_status(self, *, command: Command, partition: int, now_ms: int) -> None:
        """A new state of the command in all its tables (one unlogged batch)."""
        detail = _json(command.detail)
        state = DONE if command.status.is_final else command.status.name
        await self._session.execute_batch(
            statements=[
                (
                    self._q(_SET_STATUS),
                    (command.status.name, detail, command.updated_at, command.command_id),
                ),
                (
                    self._q(_BY_VIN_STATUS),
                    (
                        command.status.name,
                        detail,
                        command.updated_at,
                        command.vin,
                        command.created_at,
                        command.command_id,
                    ),
                ),
                self._deadline(command, partition=partition, state=state, now_ms=now_ms),
            ],
            logged=False,
        )

    async def deadlines(self, *, partition: int, now_ms: int) -> list[DeadlineRow]:
        """Open deadlines of a Kafka partition (finished commands are filtered out)."""
        rows = await self._session.execute(
            query=self._q(_DEADLINES), params=(partition, now_ms - DEADLINE_KEEP_MS)
        )
        return [
            DeadlineRow(r["command_id"], r["vin"], to_ms(r["due_at"]) or 0, r["state"])
            for r in rows
            if r["state"] != DONE
        ]

    async def stage(self, *, command: Command, now_ms: int) -> None:
        """Keep the command for the vehicle's next connection (until its TTL)."""
        ttl = ttl_until(until_ms=command.expires_at + 60_000, now_ms=now_ms)
        payload = command.downlink().model_dump_json()
        await self._session.execute(
            query=self._q(_STAGE),
            params=(
                command.vin,
                KIND,
                command.created_at,
                command.command_id,
                payload,
                command.expires_at,
                ttl,
            ),
        )

    async def staged(self, *, vin: str) -> list[Staged]:
        rows = await self._session.execute(query=self._q(_STAGED), params=(vin, KIND))
        return [
            Staged(r["action_id"], to_ms(r["staged_at"]) or 0, to_ms(r["expires_at"]) or 0)
            for r in rows
        ]

    async def unstage(self, *, vin: str, staged_at: int, command_id: str) -> None:
        await self._session.execute(
            query=self._q(_UNSTAGE), params=(vin, KIND, staged_at, command_id)
        )

    async def recent(self, *, vin: str, limit: int = 10) -> list[Row]:
        """A vehicle's latest commands, newest first (for ``fleetgate vehicles show``)."""
        return await self._session.execute(query=self._q(_RECENT), params=(vin, limit))
