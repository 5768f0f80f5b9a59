"""What a simulated vehicle decides: its connection life cycle, how it answers commands and
desired state, and the payloads it publishes. Pure: no I/O, no clocks (time comes in as
arguments, randomness as ``random.Random`` or a roll in [0, 1)).

Connection life cycle (:data:`TRANSITIONS`)::

    idle ──connect──▶ connecting ──online──▶ online ──lost──▶ backoff ──connect──▶ connecting
                          │                    └──drop──▶ offline (simulated outage) ──connect──▶ …
                          └──fail──▶ backoff ──give_up──▶ gave_up      any ──stop──▶ stopped

Commands (``vehicles/<VIN>/commands/<id>``): answered on ``…/<id>/result`` after a latency
drawn from the policy. One whose ``expires_at`` has passed is answered ``rejected`` with
detail ``expired`` (policy ``expired="ignore"``: not answered at all). An invalid one is
``rejected`` at once. Params ``{"simulate": "fail" | "reject" | "ignore"}`` force an outcome
and ``{"latency_ms": n}`` a latency, so tests of the cloud can provoke every status.
"""

from __future__ import annotations

import enum
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pydantic import JsonValue

from schemas.codec import PayloadError, decode, encode
from schemas.commands import CommandDownlink, CommandResult, CommandResultStatus
from schemas.connectivity import Connectivity
from schemas.shadow import ShadowDesired, ShadowReported
from schemas.topic_kinds import TopicKind
from simulator.drive import Model, Phase

SW_VERSION: Final = "2.4.1"


class Link(enum.StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    ONLINE = "online"
    BACKOFF = "backoff"
    OFFLINE = "offline"
    """Disconnected on purpose (a simulated tunnel or garage); reconnects later."""
    GAVE_UP = "gave_up"
    STOPPED = "stopped"


class LinkEvent(enum.StrEnum):
    CONNECT = "connect"
    ONLINE = "online"
    FAIL = "fail"
    GIVE_UP = "give_up"
    LOST = "lost"
    DROP = "drop"
    STOP = "stop"


TRANSITIONS: Final[dict[tuple[Link, LinkEvent], Link]] = {
    (Link.IDLE, LinkEvent.CONNECT): Link.CONNECTING,
    (Link.CONNECTING, LinkEvent.ONLINE): Link.ONLINE,
    (Link.CONNECTING, LinkEvent.FAIL): Link.BACKOFF,
    (Link.CONNECTING, LinkEvent.GIVE_UP): Link.GAVE_UP,
    (Link.BACKOFF, LinkEvent.CONNECT): Link.CONNECTING,
    (Link.ONLINE, LinkEvent.LOST): Link.BACKOFF,
    (Link.ONLINE, LinkEvent.DROP): Link.OFFLINE,
    (Link.OFFLINE, LinkEvent.CONNECT): Link.CONNECTING,
    **{
        (state, LinkEvent.STOP): Link.STOPPED
        for state in Link
        if state not in (Link.STOPPED, Link.GAVE_UP)
    },
}


class IllegalTransition(ValueError):
    """An event that the connection life cycle does not allow in the current state."""


def transition(state: Link, event: LinkEvent) -> Link:
    """The next state, or IllegalTransition."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"{event.value} is not allowed when {state.value}") from None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    """Consecutive failed attempts after which a vehicle gives up (0: never)."""
    base_s: float = 0.5
    cap_s: float = 30.0


def backoff_delay(attempt: int, *, policy: RetryPolicy, roll: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): exponential, capped,
    with "equal jitter" (half fixed, half random) so a fleet does not retry in lockstep."""
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    ceiling = min(policy.cap_s, policy.base_s * 2.0 ** min(attempt - 1, 30))
    return ceiling / 2 + roll * ceiling / 2


def after_failure(attempt: int, *, policy: RetryPolicy, roll: float) -> tuple[LinkEvent, float]:
    """(GIVE_UP, 0) once ``attempt`` reaches the policy's limit, else (FAIL, delay)."""
    if policy.max_attempts and attempt >= policy.max_attempts:
        return LinkEvent.GIVE_UP, 0.0
    return LinkEvent.FAIL, backoff_delay(attempt, policy=policy, roll=roll)


def tick_plan(rate_hz: float) -> tuple[float, int]:
    """(tick seconds, buckets): a fleet's vehicles are dealt into ``buckets`` and one bucket
    publishes per tick, so each vehicle publishes every ``tick * buckets`` = 1 / ``rate_hz``
    seconds and the load is spread evenly over time."""
    if rate_hz <= 0:
        raise ValueError("rate must be > 0")
    tick = min(0.1, 1 / rate_hz)
    return tick, max(1, round(1 / (rate_hz * tick)))


# --- payloads --------------------------------------------------------------------------------


def birth_payload(now_ms: int) -> bytes:
    return encode(Connectivity(online=True, ts=now_ms))


def will_payload() -> bytes:
    """``{"online":false}`` exactly as the contract writes it (a will has no time)."""
    return Connectivity(online=False).model_dump_json(exclude_none=True).encode()


def goodbye_payload(now_ms: int) -> bytes:
    """Published before a clean DISCONNECT (which suppresses the Last Will)."""
    return encode(Connectivity(online=False, ts=now_ms))


_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def telemetry_payload(
    ts_ms: int, seq: int, signals: Mapping[str, bool | int | float | str]
) -> bytes:
    """``{"ts", "seq", "signals"}`` (schemas.telemetry.Telemetry), encoded for the hot path."""
    return _dumps({"ts": ts_ms, "seq": seq, "signals": signals}).encode()


def reported_payload(state: Mapping[str, JsonValue], version: int) -> bytes:
    return encode(ShadowReported(state=dict(state), version=version))


def result_payload(status: CommandResultStatus, detail: str | None) -> bytes:
    return encode(CommandResult(status=status, detail=detail))


# --- the reported shadow ---------------------------------------------------------------------


def initial_reported(number: int, model: Model, phase: Phase) -> dict[str, JsonValue]:
    """What a vehicle reports about itself when it first connects."""
    return {
        "model": {
            "name": model.name,
            "powertrain": model.powertrain,
            "year": 2019 + number % 7,
        },
        "sw": {"version": SW_VERSION},
        "doors": {"locked": True},
        "climate": {"on": False, "target_c": 21.0},
        "charging": {"limit_pct": 80},
        "drive": {"state": drive_state(phase)},
    }


def drive_state(phase: Phase) -> str:
    """The coarse drive state reported in the shadow (a stop at a light is still driving)."""
    return "driving" if phase is Phase.STOPPED else phase.value


def merge_state(
    base: Mapping[str, JsonValue], patch: Mapping[str, JsonValue]
) -> dict[str, JsonValue]:
    """``patch`` merged into ``base`` (shadow rules: null deletes, objects merge key by key,
    anything else replaces). Neither input is changed."""
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            current = out.get(key)
            out[key] = merge_state(current if isinstance(current, dict) else {}, value)
        else:
            out[key] = value
    return out


def changed_part(
    base: Mapping[str, JsonValue], patch: Mapping[str, JsonValue]
) -> dict[str, JsonValue]:
    """The part of ``patch`` that would change ``base`` (what is worth reporting)."""
    out: dict[str, JsonValue] = {}
    for key, value in patch.items():
        current = base.get(key)
        if value is None:
            if key in base:
                out[key] = None
        elif isinstance(value, dict) and isinstance(current, dict):
            sub = changed_part(current, value)
            if sub:
                out[key] = sub
        elif key not in base or current != value or type(current) is not type(value):
            out[key] = value
    return out


@dataclass(frozen=True, slots=True)
class DesiredOutcome:
    applied: bool
    reason: str
    """Why not applied: ``stale`` (version not newer), ``invalid`` (bad payload)."""
    reported: dict[str, JsonValue]
    changes: dict[str, JsonValue]
    """What to report (empty: nothing to report)."""
    version: int | None


def apply_desired(
    reported: Mapping[str, JsonValue], payload: bytes, *, last_version: int | None
) -> DesiredOutcome:
    """Apply a ``shadow/desired`` delta: a newer version merges into the reported state and
    its changes are reported back; an older or equal version, or a bad payload, is ignored."""
    try:
        desired = decode(TopicKind.SHADOW_DESIRED, payload)
    except PayloadError as exc:
        return DesiredOutcome(False, f"invalid: {exc}", dict(reported), {}, last_version)
    assert isinstance(desired, ShadowDesired)
    if last_version is not None and desired.version <= last_version:
        return DesiredOutcome(False, "stale", dict(reported), {}, last_version)
    changes = changed_part(reported, desired.state)
    return DesiredOutcome(
        True, "applied", merge_state(reported, desired.state), changes, desired.version
    )


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandPolicy:
    latency_ms: tuple[float, float] = (50.0, 500.0)
    failure_rate: float = 0.02
    expired: Literal["reject", "ignore"] = "reject"


@dataclass(frozen=True, slots=True)
class CommandDecision:
    status: CommandResultStatus | None
    """None: no answer at all."""
    detail: str | None
    delay_s: float
    changes: dict[str, JsonValue] = field(default_factory=dict)
    """Reported-state changes the command made (reported after the result)."""
    expired: bool = False


def _effect(
    name: str, params: Mapping[str, Any], reported: Mapping[str, JsonValue]
) -> dict[str, JsonValue] | str:
    """Reported-state changes of a known command, or a reason to reject it."""
    if name == "doors.lock":
        return {"doors": {"locked": True}}
    if name == "doors.unlock":
        return {"doors": {"locked": False}}
    if name == "climate.start":
        target = params.get("target_c", 21.0)
        if (
            isinstance(target, bool)
            or not isinstance(target, int | float)
            or not 14 <= target <= 30
        ):
            return "target_c must be a number from 14 to 30"
        return {"climate": {"on": True, "target_c": float(target)}}
    if name == "climate.stop":
        return {"climate": {"on": False}}
    if name == "charging.set_limit":
        limit = params.get("limit_pct")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 50 <= limit <= 100:
            return "limit_pct must be an integer from 50 to 100"
        return {"charging": {"limit_pct": limit}}
    return {}  # horn, lights.flash, locate, anything else: done, nothing to report


def decide_command(
    payload: bytes,
    *,
    now_ms: int,
    reported: Mapping[str, JsonValue],
    policy: CommandPolicy,
    rng: random.Random,
) -> CommandDecision:
    """How a vehicle answers a command payload received at ``now_ms``."""
    try:
        command = decode(TopicKind.COMMAND, payload)
    except PayloadError as exc:
        return CommandDecision(CommandResultStatus.REJECTED, f"invalid command: {exc}", 0.0)
    assert isinstance(command, CommandDownlink)
    if command.expires_at <= now_ms:
        if policy.expired == "ignore":
            return CommandDecision(None, None, 0.0, expired=True)
        return CommandDecision(CommandResultStatus.REJECTED, "expired", 0.0, expired=True)
    params = command.params
    low, high = policy.latency_ms
    latency = params.get("latency_ms")
    if isinstance(latency, int) and not isinstance(latency, bool) and 0 <= latency <= 600_000:
        delay = latency / 1000
    else:
        delay = rng.uniform(low, high) / 1000
    forced = params.get("simulate")
    if forced == "ignore":
        return CommandDecision(None, None, 0.0)
    if forced == "reject":
        return CommandDecision(CommandResultStatus.REJECTED, "rejected on request", delay)
    effect = _effect(command.name, params, reported)
    if isinstance(effect, str):
        return CommandDecision(CommandResultStatus.REJECTED, effect, delay)
    if forced == "fail" or rng.random() < policy.failure_rate:
        return CommandDecision(CommandResultStatus.FAILED, "simulated failure", delay)
    return CommandDecision(
        CommandResultStatus.SUCCEEDED, "done", delay, changed_part(reported, effect)
    )
