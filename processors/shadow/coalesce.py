"""Write coalescing: at most one Cassandra write per vehicle per interval. Pure.

A vehicle's shadow becomes *dirty* when an update touches it. It is written at once when its
last write is at least ``interval`` ago (the leading edge), otherwise when that interval has
passed (the trailing edge), so a vehicle reporting ten times a second costs one write per
interval and its last value is never held back longer than one interval. While *draining*
(the worker stops or gives up partitions) every dirty vehicle is due immediately.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WriteState:
    """What the coalescer knows about one vehicle (times in monotonic seconds)."""

    dirty: bool = False
    last_write: float | None = None
    """When the last write started; None if never written by this worker."""
    writing: bool = False
    """A write is in flight: the next one waits for it."""


@dataclass(frozen=True, slots=True)
class FlushPlan:
    due: tuple[str, ...]
    """Vehicles to write now."""
    wake_at: float | None
    """When the next vehicle becomes due (None: nothing is waiting)."""


def due_at(state: WriteState, *, interval: float, draining: bool) -> float | None:
    """When this vehicle should be written (``-inf``: now), or None for nothing to write."""
    if not state.dirty or state.writing:
        return None
    if draining or state.last_write is None:
        return float("-inf")
    return state.last_write + interval


def plan(
    states: Mapping[str, WriteState], *, now: float, interval: float, draining: bool
) -> FlushPlan:
    """Which vehicles to write now and when to look again."""
    due: list[str] = []
    wake: float | None = None
    for key, state in states.items():
        at = due_at(state, interval=interval, draining=draining)
        if at is None:
            continue
        if at <= now:
            due.append(key)
        elif wake is None or at < wake:
            wake = at
    return FlushPlan(tuple(due), wake)
