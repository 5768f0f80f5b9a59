"""The shadow service on in-memory ports: coalesced writes, acks after writes, apps' desired
state, connectivity, conflicts with another writer, ECU versions."""

from __future__ import annotations

import json

import pytest

from processors.store.schema import Ecu
from schemas.connectivity import ConnectivityCause, ConnectivityEvent
from schemas.ids import make_vin
from schemas.shadow import AppShadowDesired, ShadowReported
from schemas.topics import MqttTopics
from tests.unit.processors.fakes import (
    Acks,
    FakeClock,
    MemoryDirectory,
    MemoryOutbound,
    MemoryShadowStore,
    meta,
    shadow_service,
)

pytestmark = pytest.mark.unit

VIN = make_vin(11)
APP = "app1"


class World:
    def __init__(self, interval_s: float = 1.0) -> None:
        self.clock = FakeClock()
        self.store = MemoryShadowStore()
        self.directory = MemoryDirectory()
        self.directory.add(VIN, APP)
        self.outbound = MemoryOutbound()
        self.acks = Acks()
        self.draining = False
        self.service = shadow_service(
            clock=self.clock,
            store=self.store,
            outbound=self.outbound,
            directory=self.directory,
            interval_s=interval_s,
            draining=lambda: self.draining,
        )

    async def report(self, state: dict[str, object], name: str = "r") -> None:
        m = meta(
            VIN, sender=f"vehicle:{VIN}", topic=MqttTopics.shadow_reported(VIN), at=self.clock.wall
        )
        update = ShadowReported.model_validate({"state": state})
        await self.service.on_reported(meta=m, partition=0, update=update, ack=self.acks(name))
        await self.service.queue.join()

    async def desire(
        self, state: dict[str, object], version: int | None = None, app: str = APP
    ) -> None:
        m = meta(
            VIN,
            sender=f"app:{app}",
            topic=MqttTopics.app_shadow_desired(app, VIN),
            at=self.clock.wall,
        )
        update = AppShadowDesired.model_validate({"state": state, "version": version})
        await self.service.on_desired(meta=m, partition=0, update=update, ack=self.acks("d"))
        await self.service.queue.join()

    async def connect(self, online: bool) -> None:
        m = meta(VIN, sender=f"vehicle:{VIN}", topic=MqttTopics.connection(VIN), at=self.clock.wall)
        event = ConnectivityEvent(
            vin=VIN, online=online, ts=self.clock.wall, cause=ConnectivityCause.BIRTH
        )
        await self.service.on_connectivity(meta=m, partition=0, event=event, ack=self.acks("c"))
        await self.service.queue.join()

    async def flush(self) -> None:
        self.service.flush_due()
        await self.service.queue.join()

    def stored(self) -> dict[str, object]:
        row = self.store.rows[VIN]
        return {
            "reported": json.loads(row.reported),
            "desired": json.loads(row.desired),
            "version": row.version,
        }


async def test_writes_are_coalesced_and_acks_wait_for_them() -> None:
    w = World(interval_s=1.0)
    await w.report({"speed": 1}, "r1")
    await w.flush()  # leading edge: written at once
    assert w.store.saves == 1
    assert w.acks.done == ["r1"]
    for i in range(2, 12):
        w.clock.advance(0.05)
        await w.report({"speed": i}, f"r{i}")
        await w.flush()
    assert w.store.saves == 1  # within the interval: held back...
    assert w.acks.done == ["r1"]  # ...and not acknowledged
    w.clock.advance(1.0)
    await w.flush()
    assert w.store.saves == 2
    assert w.stored()["reported"] == {"speed": 11}
    assert w.acks.done == [f"r{i}" for i in range(1, 12)]


async def test_draining_writes_at_once_and_duplicates_cost_nothing() -> None:
    w = World(interval_s=60.0)
    await w.report({"a": 1}, "first")
    await w.flush()
    await w.report({"a": 2}, "second")
    await w.flush()
    assert w.store.saves == 1
    w.draining = True
    await w.service.drain()
    assert w.store.saves == 2
    assert w.stored()["reported"] == {"a": 2}
    again = w.stored()["version"]
    await w.report({"a": 2}, "dup")  # same value, same time: a duplicate
    assert "dup" in w.acks.done
    await w.service.drain()
    assert w.store.saves == 2
    assert w.stored()["version"] == again


async def test_desired_from_a_linked_app_sends_the_delta_and_the_document() -> None:
    w = World()
    await w.connect(True)
    await w.report({"doors": {"locked": True}, "temp": 20})
    await w.desire({"doors": {"locked": False}, "temp": 20})
    deltas = w.outbound.to(MqttTopics.shadow_desired(VIN))
    assert deltas[-1] == {"state": {"doors": {"locked": False}}, "version": 2}
    doc = w.outbound.to(MqttTopics.app_shadow(APP, VIN))[-1]
    assert doc["state"]["delta"] == {"doors": {"locked": False}}
    assert doc["online"] is True
    # the vehicle reports: the delta empties, the linked app gets the new document on write
    w.clock.advance(2)
    await w.report({"doors": {"locked": False}})
    await w.flush()
    assert w.outbound.to(MqttTopics.app_shadow(APP, VIN))[-1]["state"]["delta"] == {}
    # on reconnect the vehicle gets the delta again if there is one
    await w.desire({"temp": 22})
    before = len(w.outbound.to(MqttTopics.shadow_desired(VIN)))
    await w.connect(False)
    await w.connect(True)
    after = w.outbound.to(MqttTopics.shadow_desired(VIN))
    assert len(after) == before + 1
    assert after[-1]["state"] == {"temp": 22}


async def test_unlinked_app_and_stale_version_are_refused() -> None:
    w = World()
    await w.desire({"temp": 30}, app="intruder")
    errors = w.outbound.to(MqttTopics.app_errors("intruder"))
    assert errors
    assert "not linked" in errors[0]["reason"]
    assert VIN not in w.store.rows
    await w.desire({"temp": 21}, version=0)
    await w.desire({"temp": 22}, version=0)  # the shadow is at version 1 now
    errors = w.outbound.to(MqttTopics.app_errors(APP))
    assert errors
    assert "version conflict" in errors[-1]["reason"]
    await w.flush()
    assert w.stored()["desired"] == {"temp": 21}


async def test_another_writer_is_detected_and_our_inputs_reapplied() -> None:
    w = World(interval_s=0.0)
    await w.report({"a": 1})
    await w.flush()
    # another worker (that had the partition a moment ago) wrote meanwhile
    other = World()
    other.store = w.store
    other.service._store = w.store  # share the table
    other.clock.wall = w.clock.wall + 1
    await other.report({"b": 2})
    await other.flush()
    w.clock.advance(1)
    await w.report({"c": 3}, "mine")
    await w.flush()  # conflict: reload + re-apply
    assert "mine" not in w.acks.done
    await w.flush()
    assert w.stored()["reported"] == {"a": 1, "b": 2, "c": 3}
    assert "mine" in w.acks.done


async def test_reported_ecus_update_the_inventory() -> None:
    w = World(interval_s=0.0)
    await w.report({"ecus": {"bcm": {"hw": "H1", "sw": "1.0"}, "tcu": {"sw": "7"}}})
    await w.flush()
    assert w.directory.ecus[VIN] == {"bcm": Ecu("H1", "1.0"), "tcu": Ecu(None, "7")}
    w.clock.advance(1)
    await w.report({"ecus": {"bcm": {"sw": "1.1"}}})
    await w.flush()
    assert w.directory.ecus[VIN]["bcm"] == Ecu("H1", "1.1")


async def test_oversized_state_is_refused_with_an_error_to_the_vehicle() -> None:
    w = World()
    await w.report({f"k{i}": i for i in range(1000)})
    await w.report({f"m{i}": i for i in range(100)}, "big")
    errors = w.outbound.to(MqttTopics.errors(VIN))
    assert errors
    assert "limits" in errors[0]["reason"]
    assert "big" in w.acks.done
