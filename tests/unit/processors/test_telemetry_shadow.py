"""Telemetry into the shadow: the reported update of a message (pure), its merge with the
message's own ``ts`` (older never overwrites newer, duplicates harmless, the version grows
only on change), and the shadow service's handling (acknowledged after the write; a message
that would make the shadow too large is refused, reported to the vehicle and acknowledged)."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.shadow.logic import (
    Applied,
    Refused,
    Shadow,
    apply_reported,
    json_equal,
    materialize,
)
from processors.shadow.service import ShadowService
from processors.telemetry.logic import TELEMETRY_KEY, reported_update
from schemas.ids import make_vin
from schemas.shadow import MAX_STATE_VALUES
from schemas.telemetry import Telemetry
from schemas.topics import MqttTopics
from tests.unit.processors.fakes import (
    Acks,
    FakeClock,
    MemoryOutbound,
    MemoryShadowStore,
    meta,
    shadow_service,
)

pytestmark = pytest.mark.unit

VIN = make_vin(12)
NAMES = ["speed", "hv.soc", "hv.soc.max", "gear", "cabin.temp"]
values = st.one_of(
    st.integers(-3, 3), st.booleans(), st.sampled_from(["P", "D"]), st.sampled_from([0.5, 1.0])
)


@st.composite
def messages(draw: st.DrawFn, ts: int | None = None) -> Telemetry:
    signals = draw(st.dictionaries(st.sampled_from(NAMES), values, max_size=len(NAMES)))
    stamp = ts if ts is not None else draw(st.integers(1, 30))
    return Telemetry(ts=stamp, seq=draw(st.integers(0, 100)), signals=signals)


def merged(shadow: Shadow, message: Telemetry) -> Applied:
    result = apply_reported(shadow, reported_update(message), message.ts)
    assert isinstance(result, Applied), result
    return result


def telemetry_of(shadow: Shadow) -> Any:
    return materialize(shadow.reported).get(TELEMETRY_KEY, {})


def test_the_update_keeps_dotted_names_as_one_key() -> None:
    message = Telemetry(ts=5, seq=1, signals={"hv.soc": 80.5, "speed": 12})
    assert reported_update(message) == {"telemetry": {"hv.soc": 80.5, "speed": 12}}
    shadow = merged(Shadow(vin=VIN), message).shadow
    assert telemetry_of(shadow) == {"hv.soc": 80.5, "speed": 12}
    assert shadow.reported[("telemetry", "hv.soc")].ts == 5


@given(st.lists(messages(), min_size=1, max_size=10), st.randoms(use_true_random=False))
def test_each_signal_keeps_its_newest_value_whatever_the_arrival_order(
    batch: list[Telemetry], rnd: random.Random
) -> None:
    arrival = batch[:]
    rnd.shuffle(arrival)
    shadow = Shadow(vin=VIN)
    for message in arrival:
        shadow = merged(shadow, message).shadow
    # expected: per signal, the value of the newest message; equal ts: the one that came last
    newest: dict[str, tuple[int, Any]] = {}
    for message in arrival:
        for name, value in message.signals.items():
            if name not in newest or message.ts >= newest[name][0]:
                newest[name] = (message.ts, value)
    assert telemetry_of(shadow) == {name: value for name, (_, value) in newest.items()}
    for name, (ts, _) in newest.items():
        assert shadow.reported[(TELEMETRY_KEY, name)].ts == ts


@given(messages(ts=100), messages(ts=50))
def test_an_older_message_never_overwrites_a_newer_value(
    newer: Telemetry, older: Telemetry
) -> None:
    after_newer = merged(Shadow(vin=VIN), newer).shadow
    after_older = merged(after_newer, older)
    for name, value in newer.signals.items():
        assert telemetry_of(after_older.shadow)[name] == value
    if set(older.signals) <= set(newer.signals):
        assert not after_older.touched
        assert after_older.shadow == after_newer


@given(st.lists(messages(), min_size=1, max_size=8))
def test_duplicates_change_nothing(batch: list[Telemetry]) -> None:
    shadow = Shadow(vin=VIN)
    for message in batch:
        shadow = merged(shadow, message).shadow
        again = merged(shadow, message)
        assert (again.changed, again.touched) == (False, False)
        assert again.shadow == shadow


@given(st.lists(messages(), min_size=1, max_size=10))
def test_the_version_grows_by_one_exactly_when_a_value_changes(batch: list[Telemetry]) -> None:
    shadow = Shadow(vin=VIN)
    for message in batch:
        before = telemetry_of(shadow)
        result = merged(shadow, message)
        changed = not json_equal(telemetry_of(result.shadow), before)
        assert result.changed == changed
        assert result.shadow.version == shadow.version + (1 if changed else 0)
        shadow = result.shadow


def test_a_message_that_would_make_the_shadow_too_large_is_refused() -> None:
    shadow = Shadow(vin=VIN)
    for block in range(MAX_STATE_VALUES // 256 + 1):
        message = Telemetry(
            ts=block + 1, seq=block, signals={f"s{block}_{i}": i for i in range(256)}
        )
        result = apply_reported(shadow, reported_update(message), message.ts)
        if isinstance(result, Refused):
            assert "limits" in result.reason
            return
        shadow = result.shadow
    raise AssertionError("never refused")


# -- the service --------------------------------------------------------------------------


def service(clock: FakeClock, store: MemoryShadowStore, outbound: MemoryOutbound) -> ShadowService:
    return shadow_service(clock=clock, store=store, outbound=outbound, interval_s=1.0)


async def send(svc: ShadowService, acks: Acks, message: Telemetry, name: str, at: int) -> None:
    m = meta(VIN, sender=f"vehicle:{VIN}", topic=MqttTopics.telemetry(VIN), at=at)
    await svc.on_telemetry(meta=m, partition=0, message=message, ack=acks(name))
    await svc.queue.join()


async def test_telemetry_is_acknowledged_once_its_shadow_is_stored() -> None:
    clock, store, outbound, acks = FakeClock(), MemoryShadowStore(), MemoryOutbound(), Acks()
    svc = service(clock, store, outbound)
    ts = clock.wall
    await send(svc, acks, Telemetry(ts=ts, seq=1, signals={"speed": 10, "hv.soc": 80}), "t1", ts)
    await send(svc, acks, Telemetry(ts=ts - 5, seq=0, signals={"speed": 3}), "old", ts)
    assert acks.done == ["old"]  # changed nothing: acknowledged at once; t1 waits for its write
    svc.flush_due()
    await svc.queue.join()
    assert acks.done == ["old", "t1"]
    row = store.rows[VIN]
    assert json.loads(row.reported) == {"telemetry": {"speed": 10, "hv.soc": 80}}
    assert row.version == 1
    await send(svc, acks, Telemetry(ts=ts, seq=1, signals={"speed": 10}), "dup", ts)
    assert acks.done[-1] == "dup"  # a duplicate: nothing to write
    shadow = svc.shadow_of(VIN)
    assert shadow is not None
    assert shadow.version == 1


async def test_telemetry_that_breaks_the_limits_is_refused_and_acknowledged() -> None:
    clock, store, outbound, acks = FakeClock(), MemoryShadowStore(), MemoryOutbound(), Acks()
    svc = service(clock, store, outbound)
    ts = clock.wall
    blocks = MAX_STATE_VALUES // 256 + 1
    for block in range(blocks):
        signals: dict[str, bool | int | float | str] = {f"s{block}_{i}": i for i in range(256)}
        await send(svc, acks, Telemetry(ts=ts + block, seq=block, signals=signals), f"b{block}", ts)
    errors = outbound.to(MqttTopics.errors(VIN))
    assert errors  # the last block (at least) cannot fit
    assert all(e["topic"] == MqttTopics.telemetry(VIN) for e in errors)
    assert all(e["reason"].startswith("telemetry not kept in the shadow") for e in errors)
    assert f"b{blocks - 1}" in acks.done  # refused, yet acknowledged: it never blocks
    svc.flush_due()
    await svc.queue.join()
    assert sorted(acks.done) == sorted(f"b{b}" for b in range(blocks))
