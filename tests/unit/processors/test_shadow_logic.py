"""The shadow's pure logic: per-leaf merge with timestamps, versions, desired, delta, document."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import JsonValue

from processors.shadow.logic import (
    Applied,
    Fields,
    Leaf,
    Refused,
    Shadow,
    apply_connectivity,
    apply_desired,
    apply_reported,
    compact,
    delta,
    document,
    json_equal,
    materialize,
    merge,
    timestamps,
)
from schemas.ids import make_vin
from schemas.shadow import MAX_STATE_VALUES

pytestmark = pytest.mark.unit

VIN = make_vin(1)
LEAF_PATHS = [("a", "b"), ("a", "c"), ("d",), ("e", "f", "g"), ("e", "h")]
scalars = st.one_of(
    st.integers(-5, 5), st.booleans(), st.sampled_from(["x", "y"]), st.lists(st.integers(0, 2))
)


def nest(path: tuple[str, ...], value: JsonValue) -> dict[str, JsonValue]:
    out: dict[str, JsonValue] = {path[-1]: value}
    for key in reversed(path[:-1]):
        out = {key: out}
    return out


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


@st.composite
def updates(draw: st.DrawFn) -> dict[str, JsonValue]:
    """A partial update over a fixed set of leaf paths (values or null)."""
    chosen = draw(st.lists(st.sampled_from(LEAF_PATHS), min_size=1, max_size=4, unique=True))
    out: dict[str, Any] = {}
    for path in chosen:
        value: Any = draw(st.one_of(scalars, st.none()))
        out = deep_merge(out, nest(path, value))
    return out


def applied(result: Applied | Refused) -> Applied:
    assert isinstance(result, Applied), result
    return result


# -- merge ----------------------------------------------------------------------------------


@given(st.lists(updates(), min_size=1, max_size=8))
def test_merging_twice_is_merging_once(batch: list[dict[str, JsonValue]]) -> None:
    fields: dict[Any, Leaf] = {}
    for ts, update in enumerate(batch):
        once, _, _ = merge(fields, update, ts)
        twice, changed, touched = merge(once, update, ts)
        assert twice == once
        assert not changed
        assert not touched
        fields = dict(once)


@given(st.lists(updates(), min_size=1, max_size=8), st.randoms(use_true_random=False))
def test_arrival_order_does_not_matter_with_distinct_timestamps(
    batch: list[dict[str, JsonValue]], rnd: random.Random
) -> None:
    stamped = list(enumerate(batch, start=1))
    in_order: Fields = {}
    for ts, update in stamped:
        in_order, _, _ = merge(in_order, update, ts)
    shuffled = stamped[:]
    rnd.shuffle(shuffled)
    out_of_order: Fields = {}
    for ts, update in shuffled:
        out_of_order, _, _ = merge(out_of_order, update, ts)
    assert materialize(out_of_order) == materialize(in_order)
    assert timestamps(out_of_order) == timestamps(in_order)


@given(updates(), updates())
def test_an_older_message_never_overwrites_a_newer_value(
    newer: dict[str, JsonValue], older: dict[str, JsonValue]
) -> None:
    fields, _, _ = merge({}, newer, 100)
    after, _, _ = merge(fields, older, 50)
    for path, leaf in fields.items():
        assert after[path] == leaf


def test_nested_objects_merge_per_leaf() -> None:
    fields, _, _ = merge({}, {"cabin": {"temp": 20, "fan": 2}, "doors": {"locked": True}}, 1)
    fields, changed, _ = merge(fields, {"cabin": {"temp": 22}}, 2)
    assert changed
    assert materialize(fields) == {"cabin": {"temp": 22, "fan": 2}, "doors": {"locked": True}}
    assert timestamps(fields) == {"cabin": {"temp": 2, "fan": 1}, "doors": {"locked": 1}}


def test_null_deletes_and_an_older_write_does_not_resurrect() -> None:
    fields, _, _ = merge({}, {"a": {"b": 1, "c": 2}}, 1)
    fields, changed, _ = merge(fields, {"a": None}, 5)
    assert changed
    assert materialize(fields) == {}
    fields, changed, _ = merge(fields, {"a": {"b": 7}}, 3)  # older than the delete
    assert not changed
    assert materialize(fields) == {}
    fields, changed, _ = merge(fields, {"a": {"b": 8}}, 6)  # newer: comes back
    assert changed
    assert materialize(fields) == {"a": {"b": 8}}


def test_scalar_and_object_replace_each_other_by_time() -> None:
    fields, _, _ = merge({}, {"a": 1}, 1)
    fields, _, _ = merge(fields, {"a": {"b": 2}}, 2)
    assert materialize(fields) == {"a": {"b": 2}}
    fields, changed, _ = merge(fields, {"a": 3}, 1)  # older scalar: dropped
    assert not changed
    assert materialize(fields) == {"a": {"b": 2}}
    fields, _, _ = merge(fields, {"a": [1, 2]}, 3)  # arrays replace whole
    assert materialize(fields) == {"a": [1, 2]}


def test_same_value_later_touches_without_changing() -> None:
    fields, _, _ = merge({}, {"a": 1}, 1)
    fields, changed, touched = merge(fields, {"a": 1.0}, 2)
    assert touched
    assert not changed
    assert timestamps(fields) == {"a": 2}


def test_json_equal_never_mixes_booleans_and_numbers() -> None:
    assert json_equal(1, 1.0)
    assert not json_equal(True, 1)
    assert not json_equal([True], [1])
    assert json_equal({"a": [1, {"b": "x"}]}, {"a": [1.0, {"b": "x"}]})


# -- versions, desired, delta -----------------------------------------------------------------


@given(st.lists(updates(), min_size=1, max_size=10))
def test_version_grows_by_one_exactly_on_change(batch: list[dict[str, JsonValue]]) -> None:
    shadow = Shadow(vin=VIN)
    for ts, update in enumerate(batch, start=1):
        before = materialize(shadow.reported)
        result = applied(apply_reported(shadow, update, ts))
        after = materialize(result.shadow.reported)
        assert result.changed == (not json_equal(before, after))
        assert result.shadow.version == shadow.version + (1 if result.changed else 0)
        again = applied(apply_reported(result.shadow, update, ts))
        assert again.shadow == result.shadow
        assert not again.touched
        shadow = result.shadow


def test_desired_optimistic_concurrency() -> None:
    shadow = applied(apply_reported(Shadow(vin=VIN), {"temp": 20}, 1)).shadow
    assert shadow.version == 1
    ok = applied(apply_desired(shadow, {"temp": 22}, 2, expected_version=1))
    assert ok.changed
    assert ok.shadow.version == 2
    stale = apply_desired(ok.shadow, {"temp": 23}, 3, expected_version=1)
    assert isinstance(stale, Refused)
    assert "version conflict" in stale.reason
    # a replay of the update that was applied is a harmless duplicate
    replay = applied(apply_desired(ok.shadow, {"temp": 22}, 2, expected_version=1))
    assert replay.shadow == ok.shadow
    assert not replay.touched
    free = applied(apply_desired(ok.shadow, {"temp": 23}, 3, expected_version=None))
    assert free.shadow.version == 3


@given(st.lists(updates(), min_size=1, max_size=5), st.lists(updates(), max_size=5))
def test_delta_is_desired_minus_reported_leafwise(
    desired: list[dict[str, JsonValue]], reported: list[dict[str, JsonValue]]
) -> None:
    shadow = Shadow(vin=VIN)
    ts = 0
    for update in desired:
        ts += 1
        shadow = applied(apply_desired(shadow, update, ts, expected_version=None)).shadow
    for update in reported:
        ts += 1
        shadow = applied(apply_reported(shadow, update, ts)).shadow
    d = delta(shadow)
    for path, leaf in shadow.desired.items():
        if leaf.deleted:
            continue
        rep = shadow.reported.get(path)
        in_sync = rep is not None and not rep.deleted and json_equal(rep.value, leaf.value)
        node: Any = d
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        assert (node is None) == in_sync
    # reporting the desired state empties the delta
    ts += 1
    synced = applied(apply_reported(shadow, materialize(shadow.desired), ts)).shadow
    assert delta(synced) == {}


def test_delta_shrinks_as_the_vehicle_reports() -> None:
    shadow = applied(apply_reported(Shadow(vin=VIN), {"climate": {"on": False, "t": 20}}, 1))
    want: dict[str, JsonValue] = {"climate": {"on": True, "t": 22}, "doors": {"locked": True}}
    s = applied(apply_desired(shadow.shadow, want, 2, expected_version=None)).shadow
    assert delta(s) == want
    s = applied(apply_reported(s, {"climate": {"on": True}}, 3)).shadow
    assert delta(s) == {"climate": {"t": 22}, "doors": {"locked": True}}
    s = applied(apply_reported(s, {"climate": {"t": 22.0}, "doors": {"locked": True}}, 4)).shadow
    assert delta(s) == {}


def test_state_too_large_is_refused() -> None:
    big = {f"k{i}": i for i in range(MAX_STATE_VALUES - 10)}
    shadow = applied(apply_reported(Shadow(vin=VIN), big, 1)).shadow
    more = {f"m{i}": i for i in range(20)}
    result = apply_reported(shadow, more, 2)
    assert isinstance(result, Refused)
    assert "limits" in result.reason


def test_document_and_connectivity() -> None:
    s = applied(apply_reported(Shadow(vin=VIN), {"cabin": {"temp": 20}}, 1000)).shadow
    s = applied(apply_desired(s, {"cabin": {"temp": 22}}, 2000, expected_version=1)).shadow
    conn = apply_connectivity(s, online=True, ts=3000)
    assert conn.touched
    assert not conn.changed
    assert conn.shadow.version == s.version
    doc = document(conn.shadow)
    assert doc.vin == VIN
    assert doc.version == 2
    assert doc.ts == 2000
    assert doc.online is True
    assert doc.state.reported == {"cabin": {"temp": 20}}
    assert doc.state.desired == {"cabin": {"temp": 22}}
    assert doc.state.delta == {"cabin": {"temp": 22}}
    assert doc.metadata.reported == {"cabin": {"temp": 1000}}
    assert doc.metadata.desired == {"cabin": {"temp": 2000}}
    assert not apply_connectivity(conn.shadow, online=True, ts=3000).touched


def test_compact_drops_old_tombstones_only() -> None:
    s = applied(apply_reported(Shadow(vin=VIN), {"a": 1, "b": 2}, 10)).shadow
    s = applied(apply_reported(s, {"a": None}, 20)).shadow
    s = applied(apply_reported(s, {"c": None}, 1000)).shadow
    kept = compact(s, now=1500, keep_tombstones_ms=600)
    assert ("a",) not in kept.reported
    assert ("c",) in kept.reported
    assert materialize(kept.reported) == {"b": 2}


@settings(max_examples=50)
@given(st.lists(updates(), min_size=1, max_size=6))
def test_document_validates_against_the_schema(batch: list[dict[str, JsonValue]]) -> None:
    shadow = Shadow(vin=VIN)
    for ts, update in enumerate(batch, start=1):
        shadow = applied(apply_reported(shadow, update, ts)).shadow
        shadow = applied(apply_desired(shadow, update, ts, expected_version=None)).shadow
    doc = document(shadow)
    assert type(doc).model_validate_json(doc.model_dump_json()) == doc
