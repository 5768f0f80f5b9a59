"""Small pure and async pieces: records in and out, the per-vehicle queue, retries, timers,
telemetry sequence tracking, write-through helpers."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.keyed import KeyedQueue, Stopping, retrying
from processors.records import (
    RecordError,
    command_status,
    incoming,
    shadow_delta,
    vehicle_error,
)
from processors.store.repo_common import ttl_until
from processors.telemetry.logic import track
from processors.timers import Timers
from schemas.commands import CommandState, CommandStatus
from schemas.ids import Role, make_vin
from schemas.topics import (
    HEADER_QOS,
    HEADER_RECEIVED_AT,
    HEADER_SENDER,
    HEADER_SOURCE_TOPIC,
    HEADER_TARGET_TOPIC,
    MqttTopics,
    TopicKind,
)
from tests.unit.processors.fakes import FakeClock

pytestmark = pytest.mark.unit

VIN = make_vin(5)


def test_incoming_reads_the_gateway_headers() -> None:
    meta = incoming(
        key=VIN.encode(),
        headers=[
            (HEADER_RECEIVED_AT, b"1700000000123"),
            (HEADER_SENDER, b"app:app-1"),
            (HEADER_SOURCE_TOPIC, MqttTopics.app_commands("app-1").encode()),
        ],
        timestamp_ms=5,
    )
    assert meta.vin == VIN
    assert meta.received_at == 1_700_000_000_123
    assert meta.sender is not None
    assert meta.sender.role is Role.APP
    assert meta.app_id == "app-1"
    assert meta.source is not None
    assert meta.source.kind is TopicKind.APP_COMMAND
    odd = incoming(key=VIN.encode(), headers={HEADER_SENDER: b"nobody"}, timestamp_ms=5)
    assert (odd.received_at, odd.sender, odd.source, odd.app_id) == (5, None, None, None)
    with pytest.raises(RecordError, match="without a key"):
        incoming(key=None, headers=None, timestamp_ms=0)
    with pytest.raises(RecordError, match="not a VIN"):
        incoming(key=b"OOPS", headers=None, timestamp_ms=0)


def test_outbound_records_name_their_target_and_qos() -> None:
    status = CommandStatus(status=CommandState.DELIVERED, ts=1, vin=VIN)
    cid = "0b7f6c2e-2f0b-4a8e-9a3e-6f1d2c3b4a5d"
    record = command_status(app_id="app1", command_id=cid, vin=VIN, status=status)
    headers = dict(record.headers(message_id="m1"))
    assert record.key == VIN.encode()
    assert headers[HEADER_TARGET_TOPIC] == MqttTopics.app_command_status("app1", cid).encode()
    assert headers[HEADER_QOS] == b"1"
    assert json.loads(record.value)["status"] == "delivered"
    delta = shadow_delta(vin=VIN, state={"a": 1}, version=3)
    assert json.loads(delta.value) == {"state": {"a": 1}, "version": 3}
    error = vehicle_error(vin=VIN, topic="t", reason="bad\nthing", ts=9)
    assert json.loads(error.value)["reason"] == "bad thing"


async def test_keyed_queue_orders_per_key_and_runs_keys_concurrently() -> None:
    queue = KeyedQueue(name="t", limit=100)
    seen: list[tuple[str, int]] = []
    gate = asyncio.Event()

    def job(key: str, n: int, wait: bool = False) -> object:
        async def run() -> None:
            if wait:
                await gate.wait()
            seen.append((key, n))

        return run

    await queue.submit("a", job("a", 1, wait=True))  # type: ignore[arg-type]
    await queue.submit("a", job("a", 2))  # type: ignore[arg-type]
    await queue.submit("b", job("b", 1))  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    assert seen == [("b", 1)]  # b is not held up by a
    gate.set()
    await queue.join()
    assert seen == [("b", 1), ("a", 1), ("a", 2)]


async def test_keyed_queue_survives_a_failing_job_and_calls_on_error() -> None:
    queue = KeyedQueue(name="t")
    errors: list[str] = []
    done: list[str] = []

    async def boom() -> None:
        raise RuntimeError("bug")

    async def fine() -> None:
        done.append("x")

    await queue.submit("a", boom, on_error=lambda: errors.append("acked"))
    await queue.submit("a", fine)
    await queue.join()
    assert errors == ["acked"]
    assert done == ["x"]
    assert queue.failures == 1


async def test_retrying_retries_transient_errors_and_gives_up_when_stopping() -> None:
    calls = 0

    async def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("down")
        return 7

    got = await retrying(
        flaky, what="x", transient=(ConnectionError,), stopping=lambda: False, first_delay_s=0
    )
    assert (got, calls) == (7, 3)

    async def down() -> int:
        raise ConnectionError("down")

    with pytest.raises(Stopping):
        await retrying(down, what="x", transient=(ConnectionError,), stopping=lambda: True)

    async def wrong() -> int:
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        await retrying(wrong, what="x", transient=(ConnectionError,), stopping=lambda: False)


def test_timers_fire_in_deadline_order() -> None:
    clock = FakeClock(wall_ms=1000)
    fired: list[str] = []
    timers = Timers(clock=clock, fire=lambda ident, key: fired.append(ident))
    timers.schedule(1500, "b", "k")
    timers.schedule(1200, "a", "k")
    assert timers.fire_due() == 1200
    clock.advance(0.3)
    assert timers.fire_due() == 1500
    assert fired == ["a"]
    clock.advance(1)
    assert timers.fire_due() is None
    assert fired == ["a", "b"]


@given(st.lists(st.integers(0, 30), min_size=1, max_size=50))
def test_telemetry_sequence_accounting(seqs: list[int]) -> None:
    state = None
    for i, seq in enumerate(seqs):
        outcome = track(state, seq=seq, ts=i if seq else 0)
        state = outcome.state
    assert state is not None
    assert state.received == len(seqs)
    assert state.lost >= 0
    assert state.duplicates + state.restarts <= len(seqs) - 1


def test_telemetry_gap_duplicate_restart() -> None:
    s = track(None, seq=0, ts=10).state
    gap = track(s, seq=3, ts=11)
    assert gap.gap == 2
    dup = track(gap.state, seq=3, ts=11)
    assert dup.duplicate
    restart = track(dup.state, seq=0, ts=20)
    assert restart.restart
    assert restart.state.lost == 2


def test_shipped_migrations_include_command_deadlines() -> None:
    from processors.store.migrate import load_migrations

    migrations = load_migrations()
    assert [m.label for m in migrations][:2] == ["0001_initial", "0002_command_deadlines"]
    assert "command_deadlines" in migrations[1].text


def test_ttl_until() -> None:
    assert ttl_until(until_ms=100_500, now_ms=0) == 101
    assert ttl_until(until_ms=0, now_ms=5_000) == 60
