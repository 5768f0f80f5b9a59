"""Simulated devices for the gateway's integration tests: paho clients (own network
thread) that record what they receive, and a fleet publishing numbered QoS 1 telemetry."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from schemas.ids import Role
from schemas.topics import MqttTopics

from .support import HOST, BrokerProcess


def mqtt_client(broker: BrokerProcess, role: Role, ident: str, **kwargs: Any) -> mqtt.Client:
    cert, key = broker.pki.leaf(role, ident)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=ident, **kwargs)
    context = ssl.create_default_context(cafile=str(broker.pki.paths.ca_chain))
    context.load_cert_chain(cert, key)
    client.tls_set_context(context)
    return client


@dataclass
class Device:
    """A connected paho client (own network thread) that records what it receives."""

    client: mqtt.Client
    received: list[tuple[str, bytes]] = field(default_factory=list)
    acked: set[int] = field(default_factory=set)
    lock: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def connect(
        cls,
        broker: BrokerProcess,
        role: Role,
        ident: str,
        *,
        subscribe: Iterable[str] = (),
        will: tuple[str, bytes] | None = None,
        inflight: int = 20,
    ) -> Device:
        client = mqtt_client(broker, role, ident)
        client.max_inflight_messages_set(inflight)
        device = cls(client)
        connected = threading.Event()
        subscribed: set[int] = set()

        def on_connect(c: Any, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
            connected.set()

        def on_message(c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
            with device.lock:
                device.received.append((msg.topic, bytes(msg.payload)))
                device.lock.notify_all()

        def on_publish(c: Any, u: Any, mid: int, rc: Any = None, props: Any = None) -> None:
            with device.lock:
                device.acked.add(mid)
                device.lock.notify_all()

        def on_subscribe(c: Any, u: Any, mid: int, codes: Any, props: Any = None) -> None:
            with device.lock:
                subscribed.add(mid)
                device.lock.notify_all()

        client.on_connect, client.on_message = on_connect, on_message
        client.on_publish, client.on_subscribe = on_publish, on_subscribe
        if will is not None:
            client.will_set(will[0], will[1], qos=1)
        client.connect(HOST, broker.port, keepalive=5 if will else 30)
        client.loop_start()
        assert connected.wait(10), f"{ident} did not connect"
        for topic_filter in subscribe:
            _, mid = client.subscribe(topic_filter, qos=1)
            with device.lock:
                assert device.lock.wait_for(partial(set.__contains__, subscribed, mid), 10)
        return device

    def has_acked(self, count: int) -> bool:
        return len(self.acked) >= count

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = 10) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        if qos:
            with self.lock:
                assert self.lock.wait_for(lambda: info.mid in self.acked, timeout), topic

    def expect(self, topic: str, timeout: float = 15) -> bytes:
        def found() -> bool:
            return any(t == topic for t, _ in self.received)

        with self.lock:
            assert self.lock.wait_for(found, timeout), f"nothing on {topic}: {self.received}"
            return next(p for t, p in self.received if t == topic)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def kill(self) -> None:
        """Drop the connection without DISCONNECT (the broker publishes the will)."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()


def telemetry(seq: int) -> bytes:
    return json.dumps(
        {"ts": int(time.time() * 1000), "seq": seq, "signals": {"speed": 50.5, "t": time.time()}}
    ).encode()


class Fleet:
    """``vins`` connected vehicles publishing ``per_vin`` numbered QoS 1 telemetry messages
    each, at about ``rate`` messages per second in all, from one driver thread."""

    def __init__(self, broker: BrokerProcess, vins: list[str], *, per_vin: int, rate: float):
        self.vins, self.per_vin, self.rate = vins, per_vin, rate
        self.devices = [Device.connect(broker, Role.VEHICLE, vin, inflight=50) for vin in vins]
        self.sent = 0
        self._thread = threading.Thread(target=self._drive, name="fleet", daemon=True)
        self._stop = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def _drive(self) -> None:
        started = time.monotonic()
        topics = [MqttTopics.telemetry(vin) for vin in self.vins]
        for seq in range(self.per_vin):
            for device, topic in zip(self.devices, topics, strict=True):
                if self._stop.is_set():
                    return
                device.client.publish(topic, telemetry(seq), qos=1)
                self.sent += 1
            ahead = self.sent / self.rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)

    def wait_acked(self, timeout: float) -> None:
        """Every publish acknowledged by the broker."""
        self._thread.join(timeout)
        deadline = time.monotonic() + timeout
        for device in self.devices:
            with device.lock:
                assert device.lock.wait_for(
                    partial(device.has_acked, self.per_vin), max(0.1, deadline - time.monotonic())
                ), "a vehicle's publishes were not all acknowledged by the broker"

    def close(self) -> None:
        self._stop.set()
        for device in self.devices:
            device.close()
