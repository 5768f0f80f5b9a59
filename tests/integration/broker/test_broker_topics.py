"""Own topics work both ways; everything beyond them is refused (both brokers)."""

from __future__ import annotations

import time
import uuid

import pytest

from broker import policy
from schemas.ids import Identity, Role
from schemas.topics import MqttTopics

from .support import APP_1, APP_2, PROBE_A, PROBE_B, VIN_A, VIN_B, BrokerProcess, Probe, connected

pytestmark = pytest.mark.integration

REFUSED = 0x80


def _cmd() -> str:
    return str(uuid.uuid4())


def _gateway(broker: BrokerProcess, *filters: str, name: str = PROBE_A) -> Probe:
    gw = connected(broker, broker.pki.service(name), client_id=f"{name}-{uuid.uuid4().hex[:8]}")
    for topic_filter in filters:
        assert gw.subscribe(topic_filter) == [1]
    return gw


def _settle(client: Probe) -> list[tuple[str, bytes]]:
    time.sleep(0.3)
    return client.drain()


def test_vehicle_own_topics_both_ways(broker: BrokerProcess) -> None:
    gw = _gateway(broker, "vehicles/+/telemetry", "vehicles/+/commands/+/result")
    vehicle = connected(broker, broker.pki.vehicle(VIN_A))
    try:
        for topic_filter in MqttTopics.vehicle_subscriptions(VIN_A):
            assert vehicle.subscribe(topic_filter) == [1], topic_filter
        command_id = _cmd()
        for topic in (MqttTopics.telemetry(VIN_A), MqttTopics.command_result(VIN_A, command_id)):
            assert vehicle.publish(topic, b"up")
            assert gw.expect(topic, b"up"), topic
        downlink = [
            MqttTopics.command(VIN_A, command_id),
            MqttTopics.shadow_desired(VIN_A),
            MqttTopics.ota_jobs(VIN_A),
            MqttTopics.ota_chunk(VIN_A, "job-1", 3),
            MqttTopics.errors(VIN_A),
        ]
        for topic in downlink:
            assert gw.publish(topic, b"down")
            assert vehicle.expect(topic, b"down"), topic
    finally:
        vehicle.close()
        gw.close()


def test_vehicle_cannot_reach_beyond_its_topics(broker: BrokerProcess) -> None:
    me = Identity(role=Role.VEHICLE, id=VIN_A)
    gw = _gateway(broker, "#")
    vehicle = connected(broker, broker.pki.vehicle(VIN_A))
    try:
        filters = [
            f"vehicles/{VIN_B}/commands/+",
            "#",
            "+/+/commands/+",
            "vehicles/+/commands/+",
            f"vehicles/{VIN_A}/#",
            "$SYS/#",
            f"apps/{APP_1}/#",
        ]
        codes = {f: vehicle.subscribe(f) for f in filters}
        if broker.kind == "amqtt":  # Mosquitto 2.0 checks deliveries, not subscriptions
            assert all(c == [REFUSED] for c in codes.values()), codes
        assert vehicle.subscribe(f"vehicles/{VIN_A}/commands/+") == [1]

        # subscriptions: nothing outside its own downlink is delivered
        for topic in (
            MqttTopics.command(VIN_B, _cmd()),
            MqttTopics.telemetry(VIN_B),
            MqttTopics.telemetry(VIN_A),
            MqttTopics.app_command_status(APP_1, _cmd()),
        ):
            assert gw.publish(topic, b"not for A")
        marker = MqttTopics.command(VIN_A, _cmd())
        assert gw.publish(marker, b"marker")
        assert vehicle.expect(marker, b"marker")
        leaked = [t for t, _ in _settle(vehicle) if not policy.may_receive(me, t)]
        assert leaked == []

        # publications: nothing outside its own uplink reaches a service
        forbidden = [
            MqttTopics.telemetry(VIN_B),
            MqttTopics.shadow_reported(VIN_B),
            MqttTopics.command(VIN_A, _cmd()),  # its own downlink
            MqttTopics.command(VIN_B, _cmd()),
            MqttTopics.app_commands(APP_1),
        ]
        gw.drain()
        for topic in forbidden:
            vehicle.publish(topic, b"forged")
        assert vehicle.publish(MqttTopics.telemetry(VIN_A), b"marker")
        assert gw.expect(MqttTopics.telemetry(VIN_A), b"marker")
        assert [t for t, p in _settle(gw) if p == b"forged"] == []
    finally:
        vehicle.close()
        gw.close()


def test_apps_use_only_their_own_topics(broker: BrokerProcess) -> None:
    gw = _gateway(broker, "apps/#", "vehicles/#")
    app = connected(broker, broker.pki.app(APP_1))
    try:
        assert app.subscribe(f"apps/{APP_1}/#") == [1]
        codes = [
            app.subscribe(f)
            for f in (f"apps/{APP_2}/#", "apps/#", "#", f"vehicles/{VIN_A}/commands/+")
        ]
        if broker.kind == "amqtt":
            assert codes == [[REFUSED]] * 4

        for topic in (MqttTopics.app_commands(APP_1), MqttTopics.app_shadow_desired(APP_1, VIN_A)):
            assert app.publish(topic, b"request")
            assert gw.expect(topic, b"request"), topic
        for topic in (
            MqttTopics.app_commands(APP_2),
            MqttTopics.command(VIN_A, _cmd()),
            MqttTopics.telemetry(VIN_A),
            MqttTopics.app_command_status(APP_1, _cmd()),  # its own downlink
        ):
            app.publish(topic, b"forged")
        assert app.publish(MqttTopics.app_commands(APP_1), b"marker")
        assert gw.expect(MqttTopics.app_commands(APP_1), b"marker")
        assert [t for t, p in _settle(gw) if p == b"forged"] == []

        status = MqttTopics.app_command_status(APP_1, _cmd())
        assert gw.publish(status, b"accepted")
        assert app.expect(status, b"accepted")
        app.drain()
        assert gw.publish(MqttTopics.app_command_status(APP_2, _cmd()), b"other app")
        assert gw.publish(MqttTopics.command(VIN_A, _cmd()), b"a vehicle")
        marker = MqttTopics.app_shadow(APP_1, VIN_A)
        assert gw.publish(marker, b"marker")
        assert app.expect(marker, b"marker")
        mine = Identity(role=Role.APP, id=APP_1)
        assert [t for t, _ in _settle(app) if not policy.may_receive(mine, t)] == []
    finally:
        app.close()
        gw.close()


def test_services_use_everything(broker: BrokerProcess) -> None:
    listener = _gateway(broker, "#")
    sender = _gateway(broker, name=PROBE_B)
    try:
        topics = [
            MqttTopics.telemetry(VIN_A),
            MqttTopics.command(VIN_B, _cmd()),
            MqttTopics.app_commands(APP_2),
            "ops/anything/goes",
        ]
        for topic in topics:
            assert sender.publish(topic, b"svc")
            assert listener.expect(topic, b"svc"), topic
    finally:
        listener.close()
        sender.close()


def test_reconnect_takes_over_own_session(broker: BrokerProcess) -> None:
    gw = _gateway(broker)
    first = connected(broker, broker.pki.vehicle(VIN_A))
    second = connected(broker, broker.pki.vehicle(VIN_A))
    try:
        assert first.disconnected.wait(5), "the older connection of the same vehicle stayed open"
        assert second.subscribe(f"vehicles/{VIN_A}/commands/+") == [1]
        topic = MqttTopics.command(VIN_A, _cmd())
        assert gw.publish(topic, b"to the new connection")
        assert second.expect(topic, b"to the new connection")
    finally:
        first.close()
        second.close()
        gw.close()


def test_only_services_leave_retained_messages(broker: BrokerProcess) -> None:
    if broker.kind == "mosquitto":
        pytest.skip("Mosquitto 2.0 cannot restrict the retain flag per client")
    vehicle = connected(broker, broker.pki.vehicle(VIN_A))
    service = _gateway(broker)
    try:
        vehicle.client.publish(MqttTopics.telemetry(VIN_A), b"device retained", qos=1, retain=True)
        desired = MqttTopics.shadow_desired(VIN_B)
        service.client.publish(desired, b"service retained", qos=1, retain=True)
        time.sleep(0.3)
        late = _gateway(broker, "vehicles/#", name=PROBE_B)
        assert late.expect(desired, b"service retained")
        assert [p for _, p in _settle(late) if p == b"device retained"] == []
        late.close()
    finally:
        vehicle.close()
        service.close()
