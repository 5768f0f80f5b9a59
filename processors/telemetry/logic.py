"""Telemetry per vehicle: sequence gaps (lost messages), duplicates, restarts; the reported
update a message makes in the shadow. Pure.

A vehicle numbers its telemetry messages (``seq``); after a reboot it may start again at 0.
A lower ``seq`` with a newer ``ts`` is such a restart; a lower or equal ``seq`` with an older
or equal ``ts`` is a duplicate (an MQTT QoS 1 redelivery) or a late message.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from pydantic import JsonValue

from schemas.telemetry import Telemetry

TELEMETRY_KEY: Final = "telemetry"
"""The top-level key of the reported state that holds the last value of every signal."""


@dataclass(frozen=True, slots=True)
class SeqState:
    last_seq: int
    last_ts: int
    received: int = 1
    lost: int = 0
    duplicates: int = 0
    restarts: int = 0


@dataclass(frozen=True, slots=True)
class SeqOutcome:
    state: SeqState
    gap: int = 0
    """Messages missing right before this one."""
    duplicate: bool = False
    restart: bool = False


def track(state: SeqState | None, *, seq: int, ts: int) -> SeqOutcome:
    """The vehicle's sequence state after a message ``(seq, ts)``."""
    if state is None:
        return SeqOutcome(SeqState(last_seq=seq, last_ts=ts))
    received = state.received + 1
    if seq > state.last_seq:
        gap = seq - state.last_seq - 1
        after = replace(
            state, last_seq=seq, last_ts=max(ts, state.last_ts), received=received,
            lost=state.lost + gap,
        )  # fmt: skip
        return SeqOutcome(after, gap=gap)
    if ts > state.last_ts:
        after = replace(
            state, last_seq=seq, last_ts=ts, received=received, restarts=state.restarts + 1
        )
        return SeqOutcome(after, restart=True)
    after = replace(state, received=received, duplicates=state.duplicates + 1)
    return SeqOutcome(after, duplicate=True)


def reported_update(message: Telemetry) -> dict[str, JsonValue]:
    """The reported-state update of a telemetry message: ``{"telemetry": {<name>: value}}``.

    A signal name is one key even when it has dots (``hv.soc`` is not ``hv`` -> ``soc``), so
    each signal is one leaf of the shadow, merged with the message's ``ts``.
    """
    signals: dict[str, JsonValue] = dict(message.signals)
    return {TELEMETRY_KEY: signals}
