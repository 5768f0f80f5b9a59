"""The gateway against real brokers (embedded amqtt and Mosquitto) and a real Kafka: every
uplink kind, connectivity events, rejects to the dead-letter topic with a notice, downlink
(JSON and raw bytes), commits after the PUBACK."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from gateway.service import Gateway
from schemas.codec import encode
from schemas.connectivity import Connectivity, ConnectivityEvent
from schemas.errors import DeadLetter, ErrorNotice
from schemas.ids import Role
from schemas.topics import (
    HEADER_MESSAGE_ID,
    HEADER_QOS,
    HEADER_RECEIVED_AT,
    HEADER_SENDER,
    HEADER_SOURCE_TOPIC,
    HEADER_TARGET_TOPIC,
    KafkaTopics,
    MqttTopics,
)

from .conftest import VINS, settings_for
from .devices import Device, telemetry
from .support import APP, BrokerProcess, read_topic

pytestmark = pytest.mark.integration

CMD = "0b0e7f6e-6f5c-4d6e-9c1e-6a1f2b3c4d5e"


async def connect(broker: BrokerProcess, role: Role, ident: str, **kwargs: Any) -> Device:
    if role is Role.VEHICLE and "subscribe" not in kwargs:
        kwargs["subscribe"] = MqttTopics.vehicle_subscriptions(ident)
    if role is Role.APP and "subscribe" not in kwargs:
        kwargs["subscribe"] = [MqttTopics.app_subscription(ident)]
    return await asyncio.to_thread(Device.connect, broker, role, ident, **kwargs)


async def one(bootstrap: str, topic: str, want: int = 1) -> list[Any]:
    records = await read_topic(bootstrap=bootstrap, topic=topic, want=want, timeout_s=30)
    assert len(records) >= want, f"{topic}: {len(records)} records, wanted {want}"
    return records


def headers(record: Any) -> dict[str, bytes]:
    return dict(record.headers)


async def test_every_uplink_kind_reaches_its_topic(
    broker: BrokerProcess, gateway: Gateway, kafka_bootstrap: str, topic_prefix: str
) -> None:
    vin = VINS[0]
    kafka = KafkaTopics(topic_prefix)
    vehicle = await connect(broker, Role.VEHICLE, vin)
    app = await connect(broker, Role.APP, APP)
    sent = {
        kafka.telemetry: (vehicle, MqttTopics.telemetry(vin), telemetry(7)),
        kafka.shadow_reported: (
            vehicle,
            MqttTopics.shadow_reported(vin),
            b'{"state": {"cabin": {"temp": 21}}, "version": 3}',
        ),
        kafka.command_results: (
            vehicle,
            MqttTopics.command_result(vin, CMD),
            b'{"status": "succeeded", "detail": "done"}',
        ),
        kafka.ota_status: (
            vehicle,
            MqttTopics.ota_status(vin),
            b'{"job_id": "job-1", "state": "downloading", "progress": 0.5}',
        ),
        kafka.ota_chunk_requests: (
            vehicle,
            MqttTopics.ota_chunk_request(vin),
            b'{"job_id": "job-1", "from": 3, "count": 2}',
        ),
        kafka.command_requests: (
            app,
            MqttTopics.app_commands(APP),
            json.dumps({"command_id": CMD, "vin": vin, "name": "lock", "ttl_s": 60}).encode(),
        ),
        kafka.shadow_desired: (
            app,
            MqttTopics.app_shadow_desired(APP, vin),
            b'{"state": {"cabin": {"temp": 19}}}',
        ),
    }
    try:
        before = int(time.time() * 1000)
        for device, topic, payload in sent.values():
            await asyncio.to_thread(device.publish, topic, payload)
        for kafka_topic, (device, topic, payload) in sent.items():
            (record,) = await one(kafka_bootstrap, kafka_topic)
            assert record.key == vin.encode(), kafka_topic  # app messages: the target VIN
            assert record.value == payload  # passed through untouched
            found = headers(record)
            uuid.UUID(found[HEADER_MESSAGE_ID].decode())
            assert int(found[HEADER_RECEIVED_AT]) >= before
            sender = f"app:{APP}" if device is app else f"vehicle:{vin}"
            assert found[HEADER_SENDER] == sender.encode()
            assert found[HEADER_SOURCE_TOPIC] == topic.encode()
        assert gateway.metrics.value(
            "fleetgate_gateway_uplink_messages_total", kind="telemetry"
        ) == pytest.approx(1)
    finally:
        vehicle.close()
        app.close()


async def test_birth_and_last_will_become_connectivity_events(
    broker: BrokerProcess, gateway: Gateway, kafka_bootstrap: str, topic_prefix: str
) -> None:
    vin = VINS[1]
    topic = MqttTopics.connection(vin)
    will = encode(Connectivity(online=False))
    vehicle = await connect(broker, Role.VEHICLE, vin, will=(topic, will))
    await asyncio.to_thread(
        vehicle.publish, topic, encode(Connectivity(online=True, ts=1_700_000_000_000))
    )
    vehicle.kill()  # no DISCONNECT: the broker publishes the will
    records = await one(kafka_bootstrap, KafkaTopics(topic_prefix).connectivity, want=2)
    events = [ConnectivityEvent.model_validate_json(r.value) for r in records]
    assert [(e.vin, e.online, e.cause.value) for e in events] == [
        (vin, True, "birth"),
        (vin, False, "will"),
    ]
    assert events[0].ts == 1_700_000_000_000
    assert events[1].ts >= int(headers(records[1])[HEADER_RECEIVED_AT]) - 1
    assert all(r.key == vin.encode() for r in records)


async def test_rejects_go_to_dead_letters_with_a_notice_and_the_gateway_goes_on(
    broker: BrokerProcess, gateway: Gateway, kafka_bootstrap: str, topic_prefix: str
) -> None:
    vin = VINS[2]
    kafka = KafkaTopics(topic_prefix)
    vehicle = await connect(broker, Role.VEHICLE, vin)
    app = await connect(broker, Role.APP, APP)
    bad_telemetry = b'{"ts": 1, "seq": 1, "signals": {"speed": "x"}, "extra": 1}'
    bad_command = b'{"command_id": "nope", "vin": "' + vin.encode() + b'"}'
    try:
        await asyncio.to_thread(vehicle.publish, MqttTopics.telemetry(vin), bad_telemetry)
        await asyncio.to_thread(app.publish, MqttTopics.app_commands(APP), bad_command)
        await asyncio.to_thread(vehicle.publish, MqttTopics.telemetry(vin), telemetry(1))

        notice = ErrorNotice.model_validate_json(
            await asyncio.to_thread(vehicle.expect, MqttTopics.errors(vin))
        )
        assert notice.topic == MqttTopics.telemetry(vin)
        assert "extra" in notice.reason
        app_notice = ErrorNotice.model_validate_json(
            await asyncio.to_thread(app.expect, MqttTopics.app_errors(APP))
        )
        assert app_notice.topic == MqttTopics.app_commands(APP)
        assert "command_id" in app_notice.reason

        letters = await one(kafka_bootstrap, kafka.deadletter, want=2)
        by_topic = {DeadLetter.model_validate_json(r.value).topic: r for r in letters}
        letter = DeadLetter.model_validate_json(by_topic[MqttTopics.telemetry(vin)].value)
        assert letter.payload_bytes() == bad_telemetry
        assert letter.sender == f"vehicle:{vin}"
        assert letter.reason == notice.reason
        assert by_topic[MqttTopics.telemetry(vin)].key == vin.encode()
        app_letter = DeadLetter.model_validate_json(by_topic[MqttTopics.app_commands(APP)].value)
        assert app_letter.payload_bytes() == bad_command
        assert app_letter.sender == f"app:{APP}"

        (good,) = await one(kafka_bootstrap, kafka.telemetry)  # the gateway kept going
        assert json.loads(good.value)["seq"] == 1
        assert gateway.metrics.value(
            "fleetgate_gateway_uplink_rejects_total", cause="payload"
        ) == pytest.approx(2)
    finally:
        vehicle.close()
        app.close()


async def test_downlink_publishes_to_devices_and_commits_after_the_puback(
    broker: BrokerProcess, gateway: Gateway, kafka_bootstrap: str, topic_prefix: str
) -> None:
    vin = VINS[3]
    kafka = KafkaTopics(topic_prefix)
    vehicle = await connect(broker, Role.VEHICLE, vin)
    app = await connect(broker, Role.APP, APP)
    chunk = bytes(range(256)) * 16 + b"\x00\xff"  # raw bytes, not UTF-8
    command = b'{"name": "lock", "params": {}, "expires_at": 1900000000000}'
    status = json.dumps({"status": "delivered", "ts": 1_700_000_000_000, "vin": vin}).encode()
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        sends = [
            (MqttTopics.command(vin, CMD), command, b"1"),
            ("vehicles/not-a-vin/commands/x", b"{}", b"1"),  # rejected: dead letter
            (MqttTopics.ota_chunk(vin, "job-1", 0), chunk, b"1"),
            (MqttTopics.app_command_status(APP, CMD), status, b"0"),
        ]
        for target, value, qos in sends:
            await producer.send_and_wait(
                kafka.outbound,
                value,
                key=vin.encode(),
                partition=0,
                headers=[(HEADER_TARGET_TOPIC, target.encode()), (HEADER_QOS, qos)],
            )
        started = time.perf_counter()
        got = await asyncio.to_thread(vehicle.expect, MqttTopics.command(vin, CMD))
        assert got == command
        assert time.perf_counter() - started < 5
        assert (
            await asyncio.to_thread(vehicle.expect, MqttTopics.ota_chunk(vin, "job-1", 0)) == chunk
        )
        assert (
            await asyncio.to_thread(app.expect, MqttTopics.app_command_status(APP, CMD)) == status
        )

        (letter,) = await one(kafka_bootstrap, kafka.deadletter)
        dead = DeadLetter.model_validate_json(letter.value)
        assert dead.topic == "vehicles/not-a-vin/commands/x"
        assert "outbound record" in dead.reason

        # every record acknowledged, so offset 4 (after the last one) gets committed
        checker = AIOKafkaConsumer(
            bootstrap_servers=kafka_bootstrap, group_id=gateway.settings.gateway.consumer_group
        )
        await checker.start()
        try:
            tp = TopicPartition(kafka.outbound, 0)
            deadline = time.monotonic() + 10
            committed = None
            while time.monotonic() < deadline:
                committed = await checker.committed(tp)
                if committed == len(sends):
                    break
                await asyncio.sleep(0.2)
            assert committed == len(sends)
        finally:
            await checker.stop()
    finally:
        await producer.stop()
        vehicle.close()
        app.close()


async def test_mqtt5_session_with_expiry(
    broker: BrokerProcess, kafka_bootstrap: str, topic_prefix: str
) -> None:
    if broker.kind != "mosquitto":
        pytest.skip("the embedded amqtt broker speaks MQTT 3.1.1 only")
    settings = settings_for(
        broker, bootstrap=kafka_bootstrap, prefix=topic_prefix, protocol="5", client_id="gw5"
    )
    settings = settings.model_copy(update={"mqtt": settings.mqtt.model_copy(
        update={"client_name": "gateway-2"})})  # fmt: skip
    gw = Gateway(settings=settings)
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop=stop))
    vin = VINS[4]
    vehicle = await connect(broker, Role.VEHICLE, vin)
    try:
        await asyncio.wait_for(gw.ready.wait(), 90)
        await asyncio.to_thread(vehicle.publish, MqttTopics.telemetry(vin), telemetry(5))
        (record,) = await one(kafka_bootstrap, KafkaTopics(topic_prefix).telemetry)
        assert json.loads(record.value)["seq"] == 5
    finally:
        vehicle.close()
        stop.set()
        await asyncio.wait_for(task, 60)
