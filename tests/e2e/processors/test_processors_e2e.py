"""Apps and vehicles over MQTT (mutual TLS) through the broker, the gateway, Kafka, the
processors and Cassandra: remote commands and the device shadow, end to end."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import AbstractAsyncContextManager

import pytest
from pydantic import JsonValue

from processors.store.repo_shadow import ShadowRepository
from schemas.ids import Identity, Role
from schemas.topics import MqttTopics
from tests.e2e.processors.conftest import Stack
from tests.e2e.processors.support import APP, INTRUDER, VINS, Device

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def vehicle(stack: Stack, vin: str) -> Device:
    return Device(stack.paths, stack.broker.port, Identity(role=Role.VEHICLE, id=vin))


def app(stack: Stack, app_id: str = APP) -> Device:
    return Device(stack.paths, stack.broker.port, Identity(role=Role.APP, id=app_id))


def vehicle_session(device: Device, vin: str) -> AbstractAsyncContextManager[Device]:
    return device.online(
        subscribe=list(MqttTopics.vehicle_subscriptions(vin)),
        will=(MqttTopics.connection(vin), json.dumps({"online": False}).encode()),
    )


async def birth(device: Device, vin: str) -> None:
    await device.publish(MqttTopics.connection(vin), {"online": True, "ts": now_ms()})


def statuses(device: Device, app_id: str, cid: str) -> list[str]:
    return [s["status"] for s in device.received[MqttTopics.app_command_status(app_id, cid)]]


async def command(
    device: Device, app_id: str, vin: str, *, ttl_s: int = 60, cid: str | None = None
) -> str:
    cid = cid or str(uuid.uuid4())
    body = {"command_id": cid, "vin": vin, "name": "doors.lock", "params": {}, "ttl_s": ttl_s}
    await device.publish(MqttTopics.app_commands(app_id), body)
    return cid


async def test_app_command_reaches_the_vehicle_and_the_result_comes_back(stack: Stack) -> None:
    vin = VINS[0]
    car, phone = vehicle(stack, vin), app(stack)
    async with (
        vehicle_session(car, vin),
        phone.online(subscribe=[MqttTopics.app_subscription(APP)]),
    ):
        await birth(car, vin)
        await asyncio.sleep(1.0)  # the birth reaches the processors first
        cid = await command(phone, APP, vin)
        topic = MqttTopics.command(vin, cid)
        await car.wait_for(lambda: bool(car.received[topic]), what="the command")
        assert car.received[topic][0]["name"] == "doors.lock"
        await car.publish(
            MqttTopics.command_result(vin, cid), {"status": "succeeded", "detail": "locked"}
        )
        await phone.wait_for(lambda: "succeeded" in statuses(phone, APP, cid), what="succeeded")
        assert statuses(phone, APP, cid) == ["accepted", "delivered", "succeeded"]


async def test_unauthorized_app_is_rejected_and_a_duplicate_is_delivered_once(stack: Stack) -> None:
    vin = VINS[1]
    car, phone, intruder = vehicle(stack, vin), app(stack), app(stack, INTRUDER)
    async with (
        vehicle_session(car, vin),
        phone.online(subscribe=[MqttTopics.app_subscription(APP)]),
        intruder.online(subscribe=[MqttTopics.app_subscription(INTRUDER)]),
    ):
        await birth(car, vin)
        await asyncio.sleep(1.0)
        bad = await command(intruder, INTRUDER, vin)
        await intruder.wait_for(lambda: bool(statuses(intruder, INTRUDER, bad)), what="rejection")
        assert statuses(intruder, INTRUDER, bad) == ["rejected"]
        cid = await command(phone, APP, vin)
        await command(phone, APP, vin, cid=cid)
        await phone.wait_for(lambda: len(statuses(phone, APP, cid)) >= 3, what="statuses")
        await asyncio.sleep(1.5)
        assert len(car.received[MqttTopics.command(vin, cid)]) == 1
        assert not car.received[MqttTopics.command(vin, bad)]


async def test_offline_vehicle_gets_its_command_on_reconnect_and_never_an_expired_one(
    stack: Stack,
) -> None:
    vin = VINS[2]
    car, phone = vehicle(stack, vin), app(stack)
    async with phone.online(subscribe=[MqttTopics.app_subscription(APP)]):
        async with vehicle_session(car, vin):
            await birth(car, vin)
            await asyncio.sleep(0.5)
            # goodbye: the same message the broker publishes as the Last Will
            await car.publish(MqttTopics.connection(vin), {"online": False})
        await asyncio.sleep(2.0)
        short = await command(phone, APP, vin, ttl_s=2)
        waiting = await command(phone, APP, vin, ttl_s=120)
        await phone.wait_for(lambda: "expired" in statuses(phone, APP, short), what="expiry")
        assert statuses(phone, APP, waiting) == ["accepted"]
        async with vehicle_session(car, vin):
            await birth(car, vin)
            await car.wait_for(
                lambda: bool(car.received[MqttTopics.command(vin, waiting)]), what="queued command"
            )
            await phone.wait_for(
                lambda: "delivered" in statuses(phone, APP, waiting), what="delivered"
            )
            await asyncio.sleep(1.0)
            assert not car.received[MqttTopics.command(vin, short)]


async def test_desired_reported_delta_loop(stack: Stack) -> None:
    vin = VINS[3]
    car, phone = vehicle(stack, vin), app(stack)
    async with (
        vehicle_session(car, vin),
        phone.online(subscribe=[MqttTopics.app_subscription(APP)]),
    ):
        await birth(car, vin)
        await car.publish(
            MqttTopics.shadow_reported(vin), {"state": {"climate": {"on": False, "target_c": 20}}}
        )
        await asyncio.sleep(1.0)
        await phone.publish(
            MqttTopics.app_shadow_desired(APP, vin),
            {"state": {"climate": {"on": True, "target_c": 22}}},
        )
        desired = MqttTopics.shadow_desired(vin)
        await car.wait_for(lambda: bool(car.received[desired]), what="the delta")
        delta = car.received[desired][-1]
        assert delta["state"] == {"climate": {"on": True, "target_c": 22}}
        await car.publish(MqttTopics.shadow_reported(vin), {"state": {"climate": {"on": True}}})
        doc_topic = MqttTopics.app_shadow(APP, vin)
        await phone.wait_for(
            lambda: any(
                d["state"]["delta"] == {"climate": {"target_c": 22}}
                for d in phone.received[doc_topic]
            ),
            what="the delta shrinking",
        )
        await car.publish(MqttTopics.shadow_reported(vin), {"state": {"climate": {"target_c": 22}}})
        await phone.wait_for(
            lambda: any(
                d["state"]["delta"] == {} and d["state"]["desired"]
                for d in phone.received[doc_topic]
            ),
            what="an empty delta",
        )
        last = phone.received[doc_topic][-1]
        assert last["online"] is True
        assert last["state"]["reported"]["climate"] == {"on": True, "target_c": 22}


async def test_a_worker_killed_mid_stream_loses_no_shadow_update(stack: Stack) -> None:
    vin = VINS[4]
    car = vehicle(stack, vin)
    total = 60
    repo = ShadowRepository(session=stack.session, keyspace=stack.keyspace)
    async with vehicle_session(car, vin):
        await birth(car, vin)
        for i in range(total):
            await car.publish(
                MqttTopics.shadow_reported(vin), {"state": {"counters": {f"k{i}": i}}}
            )
            await asyncio.sleep(0.03)
            if i == total // 2:
                for worker in stack.workers:
                    worker.kill()  # kill -9: no flush, no commit
                stored = await repo.load(vin=vin)
                # coalesced writes (one per 3 s): most published updates were not stored yet
                assert len(stored.shadow.reported) < i
                replacement = stack.start_worker()
        await replacement.wait_assigned()
        deadline = time.monotonic() + 60
        counters: dict[str, JsonValue] = {}
        while time.monotonic() < deadline:
            stored = await repo.load(vin=vin)
            reported = {
                p[-1]: leaf.value
                for p, leaf in stored.shadow.reported.items()
                if p[0] == "counters"
            }
            counters = reported
            if len(counters) == total:
                break
            await asyncio.sleep(0.5)
        assert counters == {f"k{i}": i for i in range(total)}
