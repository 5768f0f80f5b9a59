"""A processors worker consuming real Kafka records (as the gateway routes them) and keeping
its state in the real Cassandra."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from processors.inventory.logic import VehicleRecord
from processors.settings import ProcessorSettings
from processors.shadow.logic import materialize
from processors.store.repo_inventory import InventoryRepository
from processors.store.repo_shadow import ShadowRepository
from processors.store.session import CassandraSession
from processors.worker import RunningWorker, start_in_process
from schemas.ids import make_vin
from schemas.topics import MqttTopics
from tests.integration.processors.conftest import SettingsFactory, new_id, now_ms
from tests.integration.processors.kafka_io import Gateway, Outbound

pytestmark = [pytest.mark.integration, pytest.mark.slow]

APP = "app1"


async def _vehicles(session: CassandraSession, keyspace: str, first: int, count: int) -> list[str]:
    repo = InventoryRepository(session=session, keyspace=keyspace)
    vins = [make_vin(first + i, wmi="WKR") for i in range(count)]
    for vin in vins:
        await repo.upsert(record=VehicleRecord(vin=vin, model="test"), now_ms=now_ms())
        await repo.link(vin=vin, app_id=APP, now_ms=now_ms())
    return vins


@pytest.fixture
async def io(settings: ProcessorSettings) -> AsyncIterator[tuple[Gateway, Outbound]]:
    bootstrap, prefix = settings.kafka.bootstrap, settings.kafka.topic_prefix
    gw, out = (
        Gateway(bootstrap=bootstrap, prefix=prefix),
        Outbound(bootstrap=bootstrap, prefix=prefix),
    )
    await gw.start()
    await out.start()
    yield gw, out
    await gw.stop()
    await out.stop()


@pytest.fixture
async def worker(settings: ProcessorSettings) -> AsyncIterator[RunningWorker]:
    running = await start_in_process(settings)
    await running.wait_assigned()
    yield running
    await running.stop()


def statuses(out: Outbound, cid: str) -> list[str]:
    return [s["status"] for s in out.to(MqttTopics.app_command_status(APP, cid))]


async def test_command_round_trip(
    proc_session: CassandraSession,
    proc_keyspace: str,
    io: tuple[Gateway, Outbound],
    worker: RunningWorker,
) -> None:
    gw, out = io
    [vin] = await _vehicles(proc_session, proc_keyspace, 1, 1)
    await gw.publish(MqttTopics.connection(vin), {"online": True, "ts": now_ms()})
    latencies = []
    for _ in range(10):
        cid = new_id()
        started = time.monotonic()
        await gw.publish(
            MqttTopics.app_commands(APP),
            {"command_id": cid, "vin": vin, "name": "doors.lock", "ttl_s": 30},
        )
        target = MqttTopics.command(vin, cid)
        await out.wait_for(lambda t=target: bool(out.to(t)), what="downlink")  # type: ignore[misc]
        arrived = next(o.at for o in out.records if o.target == MqttTopics.command(vin, cid))
        latencies.append((arrived - started) * 1000)
    downlink = out.to(MqttTopics.command(vin, cid))[0]
    assert downlink["name"] == "doors.lock"
    assert downlink["expires_at"] > now_ms()
    await gw.publish(MqttTopics.command_result(vin, cid), {"status": "succeeded", "detail": "ok"})
    await out.wait_for(lambda: "succeeded" in statuses(out, cid), what="succeeded")
    assert statuses(out, cid) == ["accepted", "delivered", "succeeded"]
    print(f"app command -> vehicle downlink, ms: {sorted(round(x, 1) for x in latencies)}")


async def test_unlinked_app_is_rejected_and_duplicates_delivered_once(
    proc_session: CassandraSession,
    proc_keyspace: str,
    io: tuple[Gateway, Outbound],
    worker: RunningWorker,
) -> None:
    gw, out = io
    [vin] = await _vehicles(proc_session, proc_keyspace, 10, 1)
    await gw.publish(MqttTopics.connection(vin), {"online": True, "ts": now_ms()})
    cid = new_id()
    await gw.publish(
        MqttTopics.app_commands("intruder"), {"command_id": cid, "vin": vin, "name": "doors.unlock"}
    )
    rejected = MqttTopics.app_command_status("intruder", cid)
    await out.wait_for(lambda: bool(out.to(rejected)), what="rejection")
    assert out.to(rejected)[0]["status"] == "rejected"
    same = new_id()
    request = {"command_id": same, "vin": vin, "name": "horn"}
    await gw.publish(MqttTopics.app_commands(APP), request)
    await gw.publish(MqttTopics.app_commands(APP), request)
    await out.wait_for(lambda: len(statuses(out, same)) >= 3, what="statuses")
    await asyncio.sleep(1.0)
    assert len(out.to(MqttTopics.command(vin, same))) == 1
    assert not out.to(MqttTopics.command(vin, cid))


async def test_offline_vehicle_gets_queued_commands_on_reconnect_but_never_expired_ones(
    proc_session: CassandraSession,
    proc_keyspace: str,
    io: tuple[Gateway, Outbound],
    worker: RunningWorker,
) -> None:
    gw, out = io
    [vin] = await _vehicles(proc_session, proc_keyspace, 20, 1)
    await gw.publish(MqttTopics.connection(vin), {"online": False})
    short, first, second = new_id(), new_id(), new_id()
    for cid, ttl in ((short, 1), (first, 120), (second, 120)):
        await gw.publish(
            MqttTopics.app_commands(APP), {"command_id": cid, "vin": vin, "name": "x", "ttl_s": ttl}
        )
    await out.wait_for(lambda: "expired" in statuses(out, short), timeout_s=15, what="expiry")
    assert statuses(out, first) == ["accepted"]
    await gw.publish(MqttTopics.connection(vin), {"online": True, "ts": now_ms()})
    await out.wait_for(lambda: "delivered" in statuses(out, second), what="delivery")
    downlinks = [o.target for o in out.records if o.target.startswith(f"vehicles/{vin}/commands/")]
    assert downlinks == [MqttTopics.command(vin, first), MqttTopics.command(vin, second)]


async def test_shadow_loop_survives_a_restart(
    proc_session: CassandraSession,
    proc_keyspace: str,
    settings: ProcessorSettings,
    io: tuple[Gateway, Outbound],
) -> None:
    gw, out = io
    [vin] = await _vehicles(proc_session, proc_keyspace, 30, 1)
    running = await start_in_process(settings)
    try:
        await running.wait_assigned()
        await gw.publish(MqttTopics.connection(vin), {"online": True, "ts": now_ms()})
        await gw.publish(MqttTopics.shadow_reported(vin), {"state": {"climate": {"on": False}}})
        await gw.publish(
            MqttTopics.app_shadow_desired(APP, vin), {"state": {"climate": {"on": True}}}
        )
        delta_topic = MqttTopics.shadow_desired(vin)
        await out.wait_for(lambda: bool(out.to(delta_topic)), what="delta")
        assert out.to(delta_topic)[-1]["state"] == {"climate": {"on": True}}
        await gw.publish(MqttTopics.shadow_reported(vin), {"state": {"climate": {"on": True}}})
        doc_topic = MqttTopics.app_shadow(APP, vin)
        await out.wait_for(
            lambda: any(d["state"]["delta"] == {} and d["version"] == 3 for d in out.to(doc_topic)),
            what="document with an empty delta",
        )
    finally:
        await running.stop()
    stored = await ShadowRepository(session=proc_session, keyspace=proc_keyspace).load(vin=vin)
    assert stored.shadow.version == 3
    again = await start_in_process(settings)
    try:
        await again.wait_assigned()
        await gw.publish(MqttTopics.shadow_reported(vin), {"state": {"climate": {"temp": 21}}})
        await out.wait_for(
            lambda: any(d["version"] == 4 for d in out.to(doc_topic)), what="version 4"
        )
        doc = [d for d in out.to(doc_topic) if d["version"] == 4][-1]
        assert doc["state"]["reported"] == {"climate": {"on": True, "temp": 21}}
    finally:
        await again.stop()


async def test_telemetry_reaches_the_stored_shadow(
    proc_session: CassandraSession,
    proc_keyspace: str,
    worker: RunningWorker,
    io: tuple[Gateway, Outbound],
) -> None:
    gw, _ = io
    [vin] = await _vehicles(proc_session, proc_keyspace, 60, 1)
    ts = now_ms()
    newer = {"ts": ts, "seq": 2, "signals": {"speed": 50.5, "hv.soc": 80}}
    older = {"ts": ts - 1000, "seq": 1, "signals": {"speed": 10, "gear": "D"}}
    await gw.publish(MqttTopics.telemetry(vin), newer)
    await gw.publish(MqttTopics.telemetry(vin), older)  # late: only its new signal counts
    await gw.publish(MqttTopics.telemetry(vin), newer)  # a duplicate
    want = {"speed": 50.5, "hv.soc": 80, "gear": "D"}
    repo = ShadowRepository(session=proc_session, keyspace=proc_keyspace)
    stored = await repo.load(vin=vin)
    for _ in range(600):  # until the worker's coalesced write lands (no timing asserted)
        if materialize(stored.shadow.reported).get("telemetry") == want:
            break
        await asyncio.sleep(0.1)
        stored = await repo.load(vin=vin)
    assert materialize(stored.shadow.reported) == {"telemetry": want}
    assert stored.shadow.reported[("telemetry", "hv.soc")].ts == ts
    assert stored.shadow.reported[("telemetry", "gear")].ts == ts - 1000
    assert stored.shadow.version == 2


async def test_two_workers_share_the_partitions(
    proc_session: CassandraSession,
    proc_keyspace: str,
    settings: ProcessorSettings,
    make_settings: SettingsFactory,
    io: tuple[Gateway, Outbound],
) -> None:
    gw, out = io
    vins = await _vehicles(proc_session, proc_keyspace, 40, 8)
    other = make_settings()
    other = other.model_copy(update={"kafka": settings.kafka})
    one, two = await start_in_process(settings), await start_in_process(other)
    try:
        await asyncio.gather(one.wait_assigned(), two.wait_assigned())
        for _ in range(100):  # the second join moves partitions: wait until both hold some
            parts = [w.app.consumer.assignment() for w in (one, two)]
            if all(parts) and not set.intersection(*map(set, parts)):
                break
            await asyncio.sleep(0.1)
        cids = {}
        for vin in vins:
            await gw.publish(MqttTopics.connection(vin), {"online": True, "ts": now_ms()})
            cids[vin] = new_id()
            await gw.publish(
                MqttTopics.app_commands(APP), {"command_id": cids[vin], "vin": vin, "name": "x"}
            )
        await out.wait_for(
            lambda: all(out.to(MqttTopics.command(v, c)) for v, c in cids.items()),
            what="every downlink",
        )
        await asyncio.sleep(1.0)
        assert all(len(out.to(MqttTopics.command(v, c))) == 1 for v, c in cids.items())
    finally:
        await asyncio.gather(one.stop(), two.stop())
