"""The stored form of a shadow (round trip) and the write coalescer's decisions."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.shadow.coalesce import FlushPlan, WriteState, plan
from processors.shadow.logic import Applied, Shadow, apply_connectivity, apply_reported
from processors.shadow.stored import StoredShadowError, from_row, to_row
from schemas.ids import make_vin

pytestmark = pytest.mark.unit

VIN = make_vin(7)

json_leaf = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.text(max_size=5),
    st.lists(st.integers(0, 3), max_size=3),
)
keys = st.sampled_from(["a", "b", "c", "ü", "x.y"])
states = st.recursive(
    st.dictionaries(keys, st.one_of(json_leaf, st.none()), max_size=3),
    lambda inner: st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)


def _roundtrip(shadow: Shadow) -> Shadow:
    row = to_row(shadow)
    return from_row(
        vin=row.vin,
        reported=row.reported,
        desired=row.desired,
        metadata=row.metadata,
        version=row.version,
        updated_at=row.updated_at,
    )


@given(st.lists(states, min_size=1, max_size=5), st.booleans())
def test_stored_row_round_trips(batch: list[dict[str, object]], online: bool) -> None:
    shadow = Shadow(vin=VIN)
    for ts, state in enumerate(batch, start=1):
        result = apply_reported(shadow, state, ts)  # type: ignore[arg-type]
        assert isinstance(result, Applied)
        shadow = result.shadow
    shadow = apply_connectivity(shadow, online=online, ts=99).shadow
    assert _roundtrip(shadow) == shadow


def test_a_row_without_metadata_loads_with_time_zero() -> None:
    shadow = from_row(
        vin=VIN,
        reported='{"a": {"b": 1}}',
        desired=None,
        metadata=None,
        version=3,
        updated_at=None,
    )
    assert shadow.version == 3
    assert shadow.reported[("a", "b")].ts == 0
    assert shadow.online is None


def test_a_corrupt_row_is_a_clear_error() -> None:
    with pytest.raises(StoredShadowError, match="reported state: invalid JSON"):
        from_row(vin=VIN, reported="{", desired="", metadata="", version=1, updated_at=0)


# -- coalescer ------------------------------------------------------------------------------


def test_leading_edge_then_trailing_edge() -> None:
    clean = WriteState()
    assert plan({"v": clean}, now=0, interval=1, draining=False) == FlushPlan((), None)
    first = WriteState(dirty=True)
    assert plan({"v": first}, now=0, interval=1, draining=False).due == ("v",)
    recent = WriteState(dirty=True, last_write=10.0)
    assert plan({"v": recent}, now=10.2, interval=1, draining=False) == FlushPlan((), 11.0)
    assert plan({"v": recent}, now=11.0, interval=1, draining=False).due == ("v",)
    assert plan({"v": recent}, now=10.2, interval=1, draining=True).due == ("v",)
    busy = WriteState(dirty=True, last_write=0.0, writing=True)
    assert plan({"v": busy}, now=100, interval=1, draining=True).due == ()


@given(st.lists(st.floats(0, 0.5), min_size=1, max_size=60), st.floats(0.05, 1.0))
def test_at_most_one_write_per_interval_and_the_last_value_is_written(
    gaps: list[float], interval: float
) -> None:
    """A discrete-event run: updates arrive after ``gaps``; the flusher follows the plan."""
    arrivals = []
    t = 0.0
    for gap in gaps:
        t += gap
        arrivals.append(t)
    now, applied, state = 0.0, 0, WriteState()
    writes: list[tuple[float, int]] = []  # (time, updates included)
    while True:
        p = plan({"v": state}, now=now, interval=interval, draining=False)
        if p.due:
            writes.append((now, applied))
            state = WriteState(dirty=False, last_write=now)
            continue
        upcoming = arrivals[applied] if applied < len(arrivals) else None
        if upcoming is not None and (p.wake_at is None or upcoming <= p.wake_at):
            now = max(now, upcoming)
            applied += 1
            state = WriteState(dirty=True, last_write=state.last_write)
        elif p.wake_at is not None:
            assert p.wake_at <= now + interval + 1e-9  # never held back longer than one interval
            now = max(now, p.wake_at)
        else:
            break
    assert writes[-1][1] == len(gaps)  # the last value was written
    times = [w for w, _ in writes]
    assert all(b - a >= interval - 1e-9 for a, b in itertools.pairwise(times))
    assert writes[-1][0] <= arrivals[-1] + interval + 1e-9
