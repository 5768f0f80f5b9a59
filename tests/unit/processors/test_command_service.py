"""The command service on in-memory ports: delivery, rejection, duplicates, offline staging in
order, expiry, results, time-outs and timers re-armed by a new owner."""

from __future__ import annotations

import uuid

import pytest

from processors.commands.service import CommandService
from processors.links import LinkCache
from schemas.commands import CommandRequest, CommandResult, CommandResultStatus
from schemas.connectivity import ConnectivityCause, ConnectivityEvent
from schemas.ids import make_vin
from schemas.topics import MqttTopics
from tests.unit.processors.fakes import (
    Acks,
    FakeClock,
    MemoryCommandStore,
    MemoryDirectory,
    MemoryOutbound,
    MemoryShadowStore,
    meta,
)

pytestmark = pytest.mark.unit

VIN = make_vin(21)
APP = "app1"


class World:
    def __init__(
        self, store: MemoryCommandStore | None = None, clock: FakeClock | None = None
    ) -> None:
        self.clock = clock or FakeClock()
        self.store = store or MemoryCommandStore()
        self.directory = MemoryDirectory()
        self.directory.add(VIN, APP)
        self.directory.add(make_vin(22))  # known, linked to nobody
        self.outbound = MemoryOutbound()
        self.acks = Acks()
        self.service = CommandService(
            store=self.store,
            shadows=MemoryShadowStore(),
            directory=self.directory,
            links=LinkCache(directory=self.directory, clock=self.clock, ttl_s=5),
            outbound=self.outbound,
            clock=self.clock,
            result_grace_s=2.0,
        )

    async def request(
        self, cid: str | None = None, *, vin: str = VIN, app: str = APP, ttl_s: int = 60
    ) -> str:
        cid = cid or str(uuid.uuid4())
        req = CommandRequest(command_id=cid, vin=vin, name="doors.lock", ttl_s=ttl_s)
        m = meta(vin, sender=f"app:{app}", topic=MqttTopics.app_commands(app), at=self.clock.wall)
        await self.service.on_request(meta=m, partition=0, request=req, ack=self.acks(cid))
        await self.service.queue.join()
        return cid

    async def connect(self, online: bool) -> None:
        m = meta(VIN, sender=f"vehicle:{VIN}", topic=MqttTopics.connection(VIN), at=self.clock.wall)
        event = ConnectivityEvent(
            vin=VIN, online=online, ts=self.clock.wall, cause=ConnectivityCause.BIRTH
        )
        await self.service.on_connectivity(meta=m, partition=0, event=event, ack=self.acks("c"))
        await self.service.queue.join()

    async def result(self, cid: str, status: CommandResultStatus) -> None:
        m = meta(
            VIN,
            sender=f"vehicle:{VIN}",
            topic=MqttTopics.command_result(VIN, cid),
            at=self.clock.wall,
        )
        res = CommandResult(status=status, detail="x")
        await self.service.on_result(
            meta=m, partition=0, command_id=cid, result=res, ack=self.acks("res")
        )
        await self.service.queue.join()

    async def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.service.fire_due()
        await self.service.queue.join()

    def statuses(self, cid: str, app: str = APP) -> list[str]:
        return [s["status"] for s in self.outbound.to(MqttTopics.app_command_status(app, cid))]

    def deliveries(self, cid: str) -> int:
        return self.outbound.targets().count(MqttTopics.command(VIN, cid))


async def test_online_vehicle_gets_the_command_and_the_app_every_status() -> None:
    w = World()
    await w.connect(True)
    cid = await w.request()
    assert w.deliveries(cid) == 1
    assert w.statuses(cid) == ["accepted", "delivered"]
    assert cid in w.acks.done
    await w.result(cid, CommandResultStatus.SUCCEEDED)
    assert w.statuses(cid) == ["accepted", "delivered", "succeeded"]
    assert w.store.commands[cid].status.value == "succeeded"


async def test_unlinked_app_and_unknown_vehicle_are_rejected() -> None:
    w = World()
    await w.connect(True)
    cid = await w.request(app="stranger")
    assert w.statuses(cid, "stranger") == ["rejected"]
    assert (
        "not linked" in w.outbound.to(MqttTopics.app_command_status("stranger", cid))[0]["detail"]
    )
    other = await w.request(vin=make_vin(23))
    assert (
        "unknown vehicle" in w.outbound.to(MqttTopics.app_command_status(APP, other))[0]["detail"]
    )
    assert not any("/commands/" in t and t.startswith("vehicles/") for t in w.outbound.targets())
    assert w.store.commands == {}


async def test_the_same_command_id_twice_is_one_command() -> None:
    w = World()
    await w.connect(True)
    cid = await w.request()
    await w.request(cid)
    assert w.deliveries(cid) == 1
    assert w.statuses(cid) == ["accepted", "delivered", "delivered"]
    # after a restart (nothing in memory) the store still knows it
    fresh = World(store=w.store)
    await fresh.connect(True)
    await fresh.request(cid)
    assert fresh.deliveries(cid) == 0
    assert fresh.statuses(cid) == ["delivered"]
    # another app reusing the id learns nothing about the command
    await fresh.request(cid, app="app2")
    assert fresh.statuses(cid, "app2") == ["rejected"]


async def test_offline_vehicle_gets_its_commands_in_order_on_connect() -> None:
    w = World()
    await w.connect(False)
    cids = []
    for _ in range(3):
        cids.append(await w.request())
        w.clock.advance(0.01)
    assert all(w.deliveries(c) == 0 for c in cids)
    assert all(w.statuses(c) == ["accepted"] for c in cids)
    assert all(c in w.acks.done for c in cids)
    await w.connect(True)
    downlinks = [t for t in w.outbound.targets() if t.startswith(f"vehicles/{VIN}/commands/")]
    assert downlinks == [MqttTopics.command(VIN, c) for c in cids]
    assert w.store.staged_rows[VIN] == []
    assert all(w.statuses(c) == ["accepted", "delivered"] for c in cids)


async def test_expired_commands_are_never_delivered() -> None:
    w = World()
    await w.connect(False)
    short = await w.request(ttl_s=5)
    long = await w.request(ttl_s=600)
    await w.tick(6)  # the timer fires while the vehicle is away
    assert w.statuses(short) == ["accepted", "expired"]
    await w.connect(True)
    assert w.deliveries(short) == 0
    assert w.deliveries(long) == 1
    assert w.statuses(short) == ["accepted", "expired"]


async def test_expired_on_connect_without_the_timer() -> None:
    w = World()
    await w.connect(False)
    cid = await w.request(ttl_s=5)
    w.clock.advance(10)  # no timer ran (say the worker was busy)
    await w.connect(True)
    assert w.deliveries(cid) == 0
    assert w.statuses(cid) == ["accepted", "expired"]


async def test_delivered_without_result_times_out_and_late_results_are_ignored() -> None:
    w = World()
    await w.connect(True)
    cid = await w.request(ttl_s=10)
    await w.tick(11)  # past the TTL, within the 2 s grace
    assert w.statuses(cid) == ["accepted", "delivered"]
    await w.tick(2)
    assert w.statuses(cid) == ["accepted", "delivered", "timed_out"]
    await w.result(cid, CommandResultStatus.SUCCEEDED)
    assert w.statuses(cid)[-1] == "timed_out"
    assert "res" in w.acks.done


async def test_a_new_owner_rearms_the_timers_of_its_partitions() -> None:
    w = World()
    await w.connect(False)
    cid = await w.request(ttl_s=5)
    successor = World(store=w.store, clock=w.clock)
    await successor.service.on_assigned({0})
    await successor.service.queue.join()
    await successor.tick(6)
    assert successor.statuses(cid) == ["expired"]
    assert w.store.commands[cid].status.value == "expired"
