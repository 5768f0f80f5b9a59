"""gateway.window: in-order release of out-of-order completions (PUBACKs, offset commits)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.window import OffsetWindow, Window

pytestmark = pytest.mark.unit


@given(st.data(), st.integers(min_value=0, max_value=60))
def test_released_in_arrival_order_and_only_after_every_predecessor(
    data: st.DataObject, count: int
) -> None:
    window: Window[str] = Window()
    tickets = [window.push(f"m{i}") for i in range(count)]
    order = data.draw(st.permutations(tickets))
    released: list[str] = []
    completed: set[int] = set()
    for ticket in order:
        window.complete(ticket)
        completed.add(ticket)
        ready = window.pop_ready()
        for item in ready:
            assert all(t in completed for t in range(int(item[1:]) + 1))
        released.extend(ready)
    assert released == [f"m{i}" for i in range(count)]
    assert len(window) == 0


def test_nothing_released_while_the_first_is_pending() -> None:
    window: Window[int] = Window()
    first, second = window.push(1), window.push(2)
    window.complete(second)
    assert window.pop_ready() == []
    window.complete(first)
    assert window.pop_ready() == [1, 2]


def test_cleared_window_ignores_old_tickets_and_keeps_numbering() -> None:
    window: Window[str] = Window()
    old = window.push("old")
    assert window.clear() == ["old"]
    new = window.push("new")
    window.complete(old)
    assert window.pop_ready() == []
    window.complete(new)
    assert window.pop_ready() == ["new"]
    assert new != old


def test_completing_twice_or_unknown_tickets_is_harmless() -> None:
    window: Window[str] = Window()
    a = window.push("a")
    window.complete(a)
    window.complete(a)
    window.complete(99)
    assert window.pop_ready() == ["a"]
    assert window.pop_ready() == []


@given(st.data(), st.lists(st.integers(min_value=0, max_value=10), min_size=1, max_size=40))
def test_offset_window_commits_after_the_contiguous_prefix(
    data: st.DataObject, gaps: list[int]
) -> None:
    offsets: list[int] = []
    position = 0
    for gap in gaps:  # offsets increase, possibly with gaps (compaction, markers)
        position += gap + 1
        offsets.append(position)
    window = OffsetWindow()
    tickets = {window.push(offset): offset for offset in offsets}
    done: set[int] = set()
    for ticket in data.draw(st.permutations(list(tickets))):
        done.add(tickets[ticket])
        moved = window.complete(ticket)
        prefix = 0
        while prefix < len(offsets) and offsets[prefix] in done:
            prefix += 1
        expected = offsets[prefix - 1] + 1 if prefix else None
        assert window.committable == expected
        if moved is not None:
            assert moved == expected
    assert window.committable == offsets[-1] + 1
    assert len(window) == 0
