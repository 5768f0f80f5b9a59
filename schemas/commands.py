"""Commands: app request, vehicle downlink, vehicle result, app status. Pure.

Lifecycle (the processors apply it): ``accepted → delivered → succeeded | failed``;
``accepted → expired`` (TTL passed before delivery); ``delivered → timed_out`` (no result
before the TTL); anything invalid → ``rejected``.
"""

from __future__ import annotations

import enum
from typing import Annotated, Final

from pydantic import AfterValidator, Field, JsonValue, StringConstraints

from schemas.base import (
    CommandId,
    Detail,
    EpochMs,
    FleetModel,
    VinStr,
    json_object_checker,
)

COMMAND_NAME_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$"
"""A command name: a letter, then up to 63 of ``A-Za-z0-9_.-`` (e.g. ``doors.lock``)."""
MIN_TTL_S: Final = 1
MAX_TTL_S: Final = 7 * 24 * 3600
DEFAULT_TTL_S: Final = 300
"""TTL of a command request that gives none (not in the contract; documented)."""
MAX_PARAMS_DEPTH: Final = 6
MAX_PARAMS_VALUES: Final = 256

CommandName = Annotated[str, StringConstraints(pattern=COMMAND_NAME_PATTERN)]
Params = Annotated[
    dict[str, JsonValue],
    AfterValidator(json_object_checker(max_depth=MAX_PARAMS_DEPTH, max_nodes=MAX_PARAMS_VALUES)),
    Field(
        description=(
            f"A JSON object, at most {MAX_PARAMS_DEPTH} levels deep and {MAX_PARAMS_VALUES} values"
        )
    ),
]


class CommandResultStatus(enum.StrEnum):
    """What a vehicle answers."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


class CommandState(enum.StrEnum):
    """The status an app sees for its command."""

    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"
    TIMED_OUT = "timed_out"

    @property
    def is_final(self) -> bool:
        """No status follows this one."""
        return self not in (CommandState.ACCEPTED, CommandState.DELIVERED)

    @classmethod
    def from_result(cls, status: CommandResultStatus) -> CommandState:
        return cls(status.value)


class CommandRequest(FleetModel):
    """``apps/<app id>/commands``: ``{"command_id", "vin", "name", "params", "ttl_s"}``.

    The same ``command_id`` sent twice is one command. ``ttl_s`` (1 s .. 7 days) defaults to
    300 s; ``params`` to ``{}``.
    """

    command_id: CommandId
    vin: VinStr
    name: CommandName
    params: Params = Field(default_factory=dict)
    ttl_s: Annotated[int, Field(ge=MIN_TTL_S, le=MAX_TTL_S)] = DEFAULT_TTL_S


class CommandDownlink(FleetModel):
    """``vehicles/<VIN>/commands/<command_id>``: ``{"name", "params", "expires_at"}``.

    A vehicle must not execute it after ``expires_at`` (epoch ms); it answers ``rejected``.
    """

    name: CommandName
    params: Params = Field(default_factory=dict)
    expires_at: EpochMs


class CommandResult(FleetModel):
    """``vehicles/<VIN>/commands/<command_id>/result``: ``{"status", "detail"}``."""

    status: CommandResultStatus
    detail: Detail = None


class CommandStatus(FleetModel):
    """``apps/<app id>/commands/<command_id>/status``: ``{"status", "detail", "ts"}``.

    ``vin`` (an addition) names the vehicle, so an app need not remember it.
    """

    status: CommandState
    detail: Detail = None
    ts: EpochMs
    vin: VinStr | None = None
