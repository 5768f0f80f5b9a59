"""Telemetry bookkeeping per vehicle: sequence gaps (lost messages), duplicates, restarts. Pure.

A vehicle numbers its telemetry messages (``seq``); after a reboot it may start again at 0.
A lower ``seq`` with a newer ``ts`` is such a restart; a lower or equal ``seq`` with an older
or equal ``ts`` is a duplicate (an MQTT QoS 1 redelivery) or a late message.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


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
