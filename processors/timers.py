"""In-memory timers keyed by id: a heap of deadlines (epoch ms) and the loop that fires them."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Callable

from processors.ports import Clock


class Timers:
    """``fire(id, key)`` is called once a deadline passes (a stale entry may fire; the callback
    decides whether it still matters)."""

    def __init__(self, *, clock: Clock, fire: Callable[[str, str], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._heap: list[tuple[int, str, str]] = []
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def schedule(self, due_ms: int, ident: str, key: str) -> None:
        heapq.heappush(self._heap, (due_ms, ident, key))
        self._wakeup.set()

    def fire_due(self) -> int | None:
        """Fire what is due; returns when the next deadline is (epoch ms), None if none."""
        now = self._clock.wall_ms()
        while self._heap and self._heap[0][0] <= now:
            _, ident, key = heapq.heappop(self._heap)
            self._fire(ident, key)
        return self._heap[0][0] if self._heap else None

    async def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            next_due = self.fire_due()
            now = self._clock.wall_ms()
            delay = 1.0 if next_due is None else min(1.0, max(0.0, (next_due - now) / 1000))
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)

    def wake(self) -> None:
        self._wakeup.set()
