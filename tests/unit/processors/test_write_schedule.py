"""The flusher's due queue, the telemetry write interval, the worker roles and their niceness."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetgate.settings import KafkaConnection
from processors.app import build_app, group_id
from processors.settings import ProcessorSettings, ProcessorTuning
from processors.shadow.coalesce import DueQueue, WriteState, due_at
from processors.shadow.service import ShadowService
from schemas.ids import make_vin
from schemas.shadow import ShadowReported
from schemas.telemetry import Telemetry
from schemas.topics import MqttTopics
from tests.unit.processors.fakes import (
    Acks,
    FakeClock,
    MemoryShadowStore,
    meta,
    shadow_service,
)

pytestmark = pytest.mark.unit

VIN = make_vin(41)


@given(
    st.lists(st.tuples(st.sampled_from("abcdef"), st.floats(0, 100)), max_size=30),
    st.floats(0, 100),
)
def test_due_queue_pops_exactly_what_is_due(pushes: list[tuple[str, float]], now: float) -> None:
    queue = DueQueue()
    for key, at in pushes:
        queue.push(key, at)
    due = queue.pop_due(now)
    assert len(due) == len(set(due))
    assert set(due) == {k for k, at in pushes if at <= now}
    later = [at for _, at in pushes if at > now]
    assert queue.next_at == (min(later) if later else None)
    assert len(queue) == len(later)


def test_telemetry_only_changes_wait_the_telemetry_interval() -> None:
    written = WriteState(dirty=True, last_write=10.0)
    telemetry = WriteState(dirty=True, last_write=10.0, telemetry_only=True)
    assert due_at(written, interval=5, draining=False, telemetry_interval=30) == 15.0
    assert due_at(telemetry, interval=5, draining=False, telemetry_interval=30) == 40.0
    assert due_at(telemetry, interval=5, draining=False) == 15.0  # no telemetry interval
    assert due_at(telemetry, interval=5, draining=True, telemetry_interval=30) == float("-inf")
    never = WriteState(dirty=True, telemetry_only=True)
    assert due_at(never, interval=5, draining=False, telemetry_interval=30) == float("-inf")


def _service(clock: FakeClock, store: MemoryShadowStore) -> ShadowService:
    return shadow_service(clock=clock, store=store, interval_s=1.0, telemetry_interval_s=30.0)


async def _telemetry(svc: ShadowService, acks: Acks, name: str, ts: int, speed: int) -> None:
    m = meta(VIN, sender=f"vehicle:{VIN}", topic=MqttTopics.telemetry(VIN), at=ts)
    message = Telemetry(ts=ts, seq=speed, signals={"speed": speed})
    await svc.on_telemetry(meta=m, partition=0, message=message, ack=acks(name))
    await svc.queue.join()


async def _flush(svc: ShadowService) -> None:
    svc.flush_due()
    await svc.queue.join()


async def test_a_reported_change_cuts_the_telemetry_wait_short() -> None:
    clock, store, acks = FakeClock(), MemoryShadowStore(), Acks()
    svc = _service(clock, store)
    await _telemetry(svc, acks, "t1", clock.wall, 1)
    await _flush(svc)  # the first change is written at once
    assert acks.done == ["t1"]
    clock.advance(2)
    await _telemetry(svc, acks, "t2", clock.wall, 2)
    await _flush(svc)
    assert acks.done == ["t1"]  # telemetry only: waits 30 s, not 1 s
    m = meta(VIN, sender=f"vehicle:{VIN}", topic=MqttTopics.shadow_reported(VIN), at=clock.wall)
    update = ShadowReported(state={"doors": "locked"})
    await svc.on_reported(meta=m, partition=0, update=update, ack=acks("r1"))
    await svc.queue.join()
    await _flush(svc)  # more than 1 s since the last write: due now
    assert acks.done == ["t1", "t2", "r1"]
    clock.advance(2)
    await _telemetry(svc, acks, "t3", clock.wall, 3)
    clock.advance(20)
    await _flush(svc)
    assert acks.done[-1] == "r1"
    clock.advance(11)
    await _flush(svc)
    assert acks.done[-1] == "t3"
    assert store.rows[VIN].version == svc.shadow_of(VIN).version  # type: ignore[union-attr]


async def test_draining_writes_telemetry_at_once() -> None:
    clock, store, acks = FakeClock(), MemoryShadowStore(), Acks()
    svc = _service(clock, store)
    await _telemetry(svc, acks, "t1", clock.wall, 1)
    await _flush(svc)
    clock.advance(1)
    await _telemetry(svc, acks, "t2", clock.wall, 2)
    await svc.drain()
    assert acks.done == ["t1", "t2"]


@pytest.mark.parametrize(
    ("role", "agents", "group"),
    [
        ("all", {"shadow", "commands", "telemetry"}, "u.processors"),
        ("commands", {"commands"}, "u.processors-commands"),
        ("state", {"shadow", "telemetry"}, "u.processors-state"),
    ],
)
def test_a_role_runs_its_agents_in_its_own_group(
    tmp_path: Path, role: str, agents: set[str], group: str
) -> None:
    settings = ProcessorSettings(
        home=tmp_path,
        kafka=KafkaConnection(topic_prefix="u."),
        processors=ProcessorTuning(role=role),  # type: ignore[arg-type]
    )
    app = build_app(settings=settings)
    assert {name.rsplit(".", 1)[-1] for name in app.agents} == agents
    assert app.conf.id == group == group_id(prefix="u.", role=role)


@pytest.mark.parametrize(
    ("role", "nice", "expected"),
    [("state", None, 10), ("commands", None, 0), ("all", None, 0), ("state", 0, 0), ("all", 5, 5)],
)
def test_a_state_worker_yields_the_cpu_by_default(
    role: str, nice: int | None, expected: int
) -> None:
    tuning = ProcessorTuning(role=role, nice=nice)  # type: ignore[arg-type]
    assert tuning.niceness() == expected


def test_lower_priority_covers_every_thread_and_never_raises_it() -> None:
    script = (
        "import os, pathlib, threading, time\n"
        "t = threading.Thread(target=time.sleep, args=(1,)); t.start()\n"
        "from processors.worker import lower_priority\n"
        "print(lower_priority(7), lower_priority(3))\n"
        "tasks = pathlib.Path('/proc/self/task').iterdir()\n"
        "print(sorted({os.getpriority(os.PRIO_PROCESS, int(x.name)) for x in tasks}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split("\n")
    ours = os.getpriority(os.PRIO_PROCESS, 0)  # inherited by the child, never raised
    expected = max(7, ours)
    assert out[:2] == [f"{expected} {expected}", f"[{expected}]"]
