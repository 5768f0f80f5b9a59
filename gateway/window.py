"""In-order release of work that completes out of order. Pure.

The gateway PUBACKs uplink messages in the order it received them (MQTT 3.1.1 §4.6) once
Kafka acknowledged each; it commits an ``outbound`` partition's offset once every record
up to it was PUBACKed by the broker. Both are a :class:`Window`: items enter in order,
complete in any order, and leave as the contiguous completed prefix.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Window(Generic[T]):
    """Items in arrival order; :meth:`pop_ready` returns the completed prefix."""

    __slots__ = ("_done", "_items", "_next")

    def __init__(self) -> None:
        self._items: deque[tuple[int, T]] = deque()
        self._done: set[int] = set()
        self._next = 0

    def push(self, item: T) -> int:
        """Add ``item`` at the end; returns its ticket for :meth:`complete`."""
        ticket = self._next
        self._next += 1
        self._items.append((ticket, item))
        return ticket

    def complete(self, ticket: int) -> None:
        """Mark the item of ``ticket`` done (unknown or already released tickets are ignored)."""
        if self._items and self._items[0][0] <= ticket < self._next:
            self._done.add(ticket)

    def pop_ready(self) -> list[T]:
        """Remove and return the items at the front that are done, in arrival order."""
        ready: list[T] = []
        items, done = self._items, self._done
        while items and items[0][0] in done:
            ticket, item = items.popleft()
            done.discard(ticket)
            ready.append(item)
        return ready

    def clear(self) -> list[T]:
        """Forget everything (e.g. the connection the items belong to is gone)."""
        left = [item for _, item in self._items]
        self._items.clear()
        self._done.clear()
        return left

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return (item for _, item in self._items)


class OffsetWindow:
    """One Kafka partition: offsets handed out, and the offset that is safe to commit."""

    __slots__ = ("_window", "committable")

    def __init__(self) -> None:
        self._window: Window[int] = Window()
        self.committable: int | None = None
        """The next offset to consume after a restart: every record before it is done."""

    def push(self, offset: int) -> int:
        return self._window.push(offset)

    def complete(self, ticket: int) -> int | None:
        """Mark a record done; returns the new committable offset if it moved."""
        self._window.complete(ticket)
        ready = self._window.pop_ready()
        if not ready:
            return None
        self.committable = ready[-1] + 1
        return self.committable

    def __len__(self) -> int:
        return len(self._window)
