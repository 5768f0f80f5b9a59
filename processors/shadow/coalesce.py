"""Write coalescing: at most one Cassandra write per vehicle per interval. Pure.

A vehicle's shadow becomes *dirty* when an update touches it. It is written at once when its
last write is at least ``interval`` ago (the leading edge), otherwise when that interval has
passed (the trailing edge), so a vehicle reporting ten times a second costs one write per
interval and its last value is never held back longer than one interval. A vehicle whose
unsaved changes are all telemetry signals may wait ``telemetry_interval`` instead (longer by
default: telemetry changes every few seconds, and each write is a lightweight transaction);
any other change makes it due after ``interval`` again. While *draining* (the worker stops or
gives up partitions) every dirty vehicle is due immediately.
"""

from __future__ import annotations

import heapq
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
    telemetry_only: bool = False
    """Every unsaved change is telemetry (``telemetry_interval`` applies)."""


@dataclass(frozen=True, slots=True)
class FlushPlan:
    due: tuple[str, ...]
    """Vehicles to write now."""
    wake_at: float | None
    """When the next vehicle becomes due (None: nothing is waiting)."""


def due_at(
    state: WriteState, *, interval: float, draining: bool, telemetry_interval: float | None = None
) -> float | None:
    """When this vehicle should be written (``-inf``: now), or None for nothing to write."""
    if not state.dirty or state.writing:
        return None
    if draining or state.last_write is None:
        return float("-inf")
    if state.telemetry_only and telemetry_interval is not None:
        return state.last_write + telemetry_interval
    return state.last_write + interval


def plan(
    states: Mapping[str, WriteState],
    *,
    now: float,
    interval: float,
    draining: bool,
    telemetry_interval: float | None = None,
) -> FlushPlan:
    """Which vehicles to write now and when to look again."""
    due: list[str] = []
    wake: float | None = None
    for key, state in states.items():
        at = due_at(
            state, interval=interval, draining=draining, telemetry_interval=telemetry_interval
        )
        if at is None:
            continue
        if at <= now:
            due.append(key)
        elif wake is None or at < wake:
            wake = at
    return FlushPlan(tuple(due), wake)


class DueQueue:
    """When each dirty vehicle is due, as a heap, so that the flusher looks only at the
    vehicles whose time has come (not at every dirty one, every tick). An entry may be stale
    (the vehicle was written meanwhile): the caller checks :func:`due_at` again. No I/O."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, key: str, at: float) -> None:
        heapq.heappush(self._heap, (at, key))

    def pop_due(self, now: float) -> list[str]:
        """The keys due by ``now`` (each once), removed from the queue."""
        due: dict[str, None] = {}
        while self._heap and self._heap[0][0] <= now:
            due[heapq.heappop(self._heap)[1]] = None
        return list(due)

    @property
    def next_at(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()
