"""Remote commands as pure functions: the state machine as a table, and every decision.

``accepted → delivered → succeeded | failed``; ``accepted → expired`` (TTL passed before
delivery); ``delivered → timed_out`` (no result by the TTL plus a grace period); anything
invalid → ``rejected`` (app not linked to the vehicle, unknown vehicle, a vehicle that
refuses). :func:`transition` applies :data:`TRANSITIONS`; any other move raises
:class:`IllegalTransition`.

A command is identified by its ``command_id``: the same id twice is one command (one
delivery, the same statuses). Commands for an offline vehicle wait, in order, until it
connects; one whose TTL has passed is never delivered.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final

from pydantic import JsonValue

from schemas.commands import (
    CommandDownlink,
    CommandRequest,
    CommandResultStatus,
    CommandState,
    CommandStatus,
)


class CommandEvent(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"
    DELIVER = "deliver"
    SUCCEED = "succeed"
    FAIL = "fail"
    REFUSE = "refuse"
    """The vehicle answered ``rejected``."""
    EXPIRE = "expire"
    TIME_OUT = "time_out"


S = CommandState
E = CommandEvent
TRANSITIONS: Final[Mapping[tuple[CommandState | None, CommandEvent], CommandState]] = {
    (None, E.ACCEPT): S.ACCEPTED,
    (None, E.REJECT): S.REJECTED,
    (S.ACCEPTED, E.DELIVER): S.DELIVERED,
    (S.ACCEPTED, E.EXPIRE): S.EXPIRED,
    (S.DELIVERED, E.SUCCEED): S.SUCCEEDED,
    (S.DELIVERED, E.FAIL): S.FAILED,
    (S.DELIVERED, E.REFUSE): S.REJECTED,
    (S.DELIVERED, E.TIME_OUT): S.TIMED_OUT,
}
"""``(state before, event) -> state after``; ``None`` is a command not seen yet."""

RESULT_EVENTS: Final = {
    CommandResultStatus.SUCCEEDED: E.SUCCEED,
    CommandResultStatus.FAILED: E.FAIL,
    CommandResultStatus.REJECTED: E.REFUSE,
}


class IllegalTransition(ValueError):
    """An event that the command's current state does not allow."""

    def __init__(self, state: CommandState | None, event: CommandEvent) -> None:
        super().__init__(f"illegal command transition: {event.value} in state {state or 'new'}")
        self.state = state
        self.event = event


def transition(state: CommandState | None, event: CommandEvent) -> CommandState:
    """The state after ``event``; raises :class:`IllegalTransition` if not allowed."""
    after = TRANSITIONS.get((state, event))
    if after is None:
        raise IllegalTransition(state, event)
    return after


@dataclass(frozen=True, slots=True)
class Command:
    """A command as the processors keep it (times in epoch ms)."""

    command_id: str
    vin: str
    app_id: str
    name: str
    params: Mapping[str, JsonValue]
    created_at: int
    expires_at: int
    status: CommandState
    detail: JsonValue = None
    updated_at: int = 0

    def apply(self, event: CommandEvent, *, now: int, detail: JsonValue = None) -> Command:
        """This command after ``event`` (raises :class:`IllegalTransition`)."""
        return replace(self, status=transition(self.status, event), detail=detail, updated_at=now)

    def downlink(self) -> CommandDownlink:
        return CommandDownlink(name=self.name, params=dict(self.params), expires_at=self.expires_at)

    def status_message(self, *, now: int) -> CommandStatus:
        return CommandStatus(status=self.status, detail=self.detail, ts=now, vin=self.vin)


# --------------------------------------------------------------------------------------------
# a new request


@dataclass(frozen=True, slots=True)
class Rejection:
    """A request refused before it became a command; the app gets ``rejected`` + reason."""

    reason: str


def admit(
    request: CommandRequest, *, app_id: str, vehicle_known: bool, linked: bool, now: int
) -> Command | Rejection:
    """Accept ``request`` from ``app_id`` (received at ``now``) or say why not."""
    if not vehicle_known:
        return Rejection(f"unknown vehicle {request.vin}")
    if not linked:
        return Rejection(f"app {app_id} is not linked to vehicle {request.vin}")
    return Command(
        command_id=request.command_id,
        vin=request.vin,
        app_id=app_id,
        name=request.name,
        params=request.params,
        created_at=now,
        expires_at=now + request.ttl_s * 1000,
        status=transition(None, E.ACCEPT),
        updated_at=now,
    )


def rejected_status(reason: str, *, vin: str, now: int) -> CommandStatus:
    return CommandStatus(status=transition(None, E.REJECT), detail=reason, ts=now, vin=vin)


@dataclass(frozen=True, slots=True)
class Duplicate:
    """What to do with a ``command_id`` seen before.

    ``status``: the status to send the requesting app; ``resume``: the command is still
    ``accepted`` (e.g. the worker stopped before delivering it), so plan its delivery again.
    """

    status: CommandStatus
    resume: bool


def on_duplicate(existing: Command, *, app_id: str, vin: str, now: int) -> Duplicate:
    """Answer a request whose ``command_id`` is already known."""
    if existing.app_id != app_id:
        reason = "command_id is already used by another command"
        return Duplicate(rejected_status(reason, vin=vin, now=now), resume=False)
    resume = existing.status is S.ACCEPTED and existing.vin == vin
    return Duplicate(existing.status_message(now=now), resume=resume)


# --------------------------------------------------------------------------------------------
# delivery


class Delivery(enum.Enum):
    DELIVER = "deliver"
    STAGE = "stage"
    EXPIRE = "expire"


def plan_delivery(command: Command, *, online: bool, now: int) -> Delivery:
    """Deliver an accepted command now, keep it for the vehicle's next connection, or
    expire it (its TTL passed: never delivered)."""
    if now >= command.expires_at:
        return Delivery.EXPIRE
    return Delivery.DELIVER if online else Delivery.STAGE


@dataclass(frozen=True, slots=True)
class Staged:
    """A command waiting for its vehicle (a ``staged_actions`` row)."""

    command_id: str
    staged_at: int
    expires_at: int


def on_connect(staged: Sequence[Staged], *, now: int) -> tuple[list[Staged], list[Staged]]:
    """``(to deliver, to expire)`` when the vehicle connects, each in staging order."""
    ordered = sorted(staged, key=lambda s: (s.staged_at, s.command_id))
    deliver = [s for s in ordered if now < s.expires_at]
    expire = [s for s in ordered if now >= s.expires_at]
    return deliver, expire


# --------------------------------------------------------------------------------------------
# results and deadlines


@dataclass(frozen=True, slots=True)
class Ignored:
    """An input that changes nothing (late, foreign or repeated); logged, never an error."""

    reason: str


def apply_result(
    command: Command, *, vin: str, status: CommandResultStatus, detail: JsonValue, now: int
) -> list[Command] | Ignored:
    """The command's successive states after the vehicle's result (a result for a command
    still marked ``accepted`` proves its delivery: ``delivered`` first)."""
    if command.vin != vin:
        return Ignored(f"result from {vin} for a command of {command.vin}")
    event = RESULT_EVENTS[status]
    steps: list[Command] = []
    current = command
    if current.status is S.ACCEPTED:
        current = current.apply(E.DELIVER, now=now)
        steps.append(current)
    try:
        steps.append(current.apply(event, now=now, detail=detail))
    except IllegalTransition as exc:
        return Ignored(f"result {status.value} ignored: {exc}")
    return steps


def deadline(command: Command, *, result_grace_ms: int) -> int | None:
    """When the command's timer fires (epoch ms), None for a final command."""
    if command.status is S.ACCEPTED:
        return command.expires_at
    if command.status is S.DELIVERED:
        return command.expires_at + result_grace_ms
    return None


def on_deadline(command: Command, *, now: int, result_grace_ms: int) -> Command | None:
    """The command after its timer fired at ``now`` (None: nothing to do yet or any more)."""
    due = deadline(command, result_grace_ms=result_grace_ms)
    if due is None or now < due:
        return None
    event = E.EXPIRE if command.status is S.ACCEPTED else E.TIME_OUT
    reason = (
        "the TTL passed before the vehicle connected"
        if event is E.EXPIRE
        else "no result from the vehicle before the TTL"
    )
    return command.apply(event, now=now, detail=reason)
