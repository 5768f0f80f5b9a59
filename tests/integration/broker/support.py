"""Test PKI, broker processes and MQTT probes for the broker conformance suite."""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from certs import badcerts, pki, store
from certs.layout import PkiPaths, make_dir, write_issued
from schemas.ids import Identity, Role, make_vin
from tests.support.brokers import BrokerProcess as _BrokerProcess
from tests.support.brokers import start_broker as _start_broker

ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"

VIN_A, VIN_B, VIN_HEALTHY, VIN_REVOKE, VIN_REVOKED, VIN_C = (make_vin(100 + i) for i in range(6))
VINS = (VIN_A, VIN_B, VIN_HEALTHY, VIN_REVOKE, VIN_REVOKED, VIN_C)
APP_1, APP_2 = "companion", "intruder"
GATEWAY = "gateway"
# On Mosquitto the client id is the CN, so each concurrent service connection needs its own
HEALTHCHECK, PROBE_A, PROBE_B = "healthcheck", "probe-a", "probe-b"
BAD_VIN_CN = "FGTSMVIOQaaaaaaa1"  # 17 characters, I O Q and lowercase: no VIN; forged with our CA
MAX_PACKET = 65_536


@dataclass(frozen=True)
class Creds:
    cert: Path
    key: Path
    id: str


@dataclass
class PkiUnderTest:
    home: Path
    paths: PkiPaths = field(init=False)

    def __post_init__(self) -> None:
        self.paths = PkiPaths(self.home)

    def creds(self, role: Role, ident: str) -> Creds:
        cert, key = self.paths.leaf(Identity(role=role, id=ident))
        return Creds(cert, key, ident)

    def vehicle(self, vin: str) -> Creds:
        return self.creds(Role.VEHICLE, vin)

    def service(self, name: str) -> Creds:
        return self.creds(Role.SERVICE, name)

    def app(self, app_id: str) -> Creds:
        return self.creds(Role.APP, app_id)

    def bad(self, name: str) -> Creds:
        return Creds(self.home / "bad" / f"{name}.pem", self.home / "bad" / f"{name}.key", name)


def make_pki(home: Path) -> PkiUnderTest:
    """A fresh PKI: vehicles, two apps, the gateway; forged and broken certificates in bad/."""
    now = datetime.now(UTC)
    lifetimes = pki.Lifetimes()
    test_pki = PkiUnderTest(home)
    paths = test_pki.paths
    store.init_pki(paths, now=now, lifetimes=lifetimes)
    store.issue_leaves(paths, Role.VEHICLE, VINS, now=now, lifetimes=lifetimes)
    store.issue_leaves(paths, Role.APP, [APP_1, APP_2], now=now, lifetimes=lifetimes)
    services = [GATEWAY, HEALTHCHECK, PROBE_A, PROBE_B, "broker-admin"]
    store.issue_leaves(paths, Role.SERVICE, services, now=now, lifetimes=lifetimes)
    store.revoke(paths, VIN_REVOKED, now=now, lifetimes=lifetimes)
    ca = store.load_issuing_ca(paths)
    victim = Identity(role=Role.VEHICLE, id=VIN_C)
    bad = {
        "foreign": badcerts.foreign_leaf(victim, now=now),
        "expired": badcerts.expired_leaf(ca, victim, now=now),
        "not_yet_valid": badcerts.not_yet_valid_leaf(ca, victim, now=now),
        "bad_vin": pki.issue_leaf(
            ca,
            Identity(role=Role.VEHICLE, id=BAD_VIN_CN),
            validity=pki.Validity.starting(now, lifetimes.leaf),
        ),
    }
    make_dir(home / "bad")
    for name, issued in bad.items():
        creds = test_pki.bad(name)
        write_issued(issued, cert_path=creds.cert, key_path=creds.key, durable=False)
    return test_pki


def revoke(test_pki: PkiUnderTest, ident: str) -> None:
    store.revoke(test_pki.paths, ident, now=datetime.now(UTC), lifetimes=pki.Lifetimes())


# --- brokers ---------------------------------------------------------------------------------


BrokerProcess = _BrokerProcess[PkiUnderTest]


def start_broker(
    kind: str, test_pki: PkiUnderTest, *, env: dict[str, str] | None = None
) -> BrokerProcess:
    """``python -m broker`` (the ``fleetgate broker`` command) on a free port."""
    return _start_broker(
        kind,
        test_pki,
        env={
            "FLEETGATE_BROKER__CRL_POLL_S": "0.5",
            "FLEETGATE_BROKER__MAX_PACKET_SIZE": str(MAX_PACKET),
            "FLEETGATE_BROKER__CONNECT_TIMEOUT_S": "3",
            "FLEETGATE_BROKER__HANDSHAKE_TIMEOUT_S": "3",
            "FLEETGATE_BROKER__MAX_PENDING": "64",
            **(env or {}),
        },
    )


# --- MQTT probes -----------------------------------------------------------------------------


def client_context(ca: Path, creds: Creds | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if creds is not None:
        context.load_cert_chain(creds.cert, creds.key)
    return context


class Probe:
    """A paho-mqtt 3.1.1 client (network thread) that records what happens to it."""

    def __init__(
        self,
        port: int,
        *,
        ca: Path,
        creds: Creds | None,
        client_id: str | None = None,
        clean_session: bool = True,
    ) -> None:
        cid = client_id if client_id is not None else (creds.id if creds else "")
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cid,
            clean_session=clean_session,
            reconnect_on_failure=False,
        )
        self.client.tls_set_context(client_context(ca, creds))
        self.port = port
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.connack: queue.Queue[int] = queue.Queue()
        self.subacks: dict[int, list[int]] = {}
        self.acked: set[int] = set()
        self.disconnected = threading.Event()
        self._events = threading.Condition()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe  # type: ignore[assignment]
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect

    # callbacks (network thread)
    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, rc: object, props: object = None
    ) -> None:
        self.connack.put(int(getattr(rc, "value", rc)))  # type: ignore[call-overload]

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.messages.put((msg.topic, bytes(msg.payload)))

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        codes: list[object],
        props: object = None,
    ) -> None:
        with self._events:
            self.subacks[mid] = [int(getattr(c, "value", c)) for c in codes]  # type: ignore[call-overload]
            self._events.notify_all()

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        rc: object = None,
        props: object = None,
    ) -> None:
        with self._events:
            self.acked.add(mid)
            self._events.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: object,
        rc: object = None,
        props: object = None,
    ) -> None:
        self.disconnected.set()
        self.connack.put(-1)

    def _wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        with self._events:
            return self._events.wait_for(predicate, timeout=timeout)

    def connect(self, timeout: float = 5.0) -> int | None:
        """The CONNACK return code (0: accepted), or None if the connection failed first."""
        try:
            self.client.connect(HOST, self.port, keepalive=30)
        except (OSError, ssl.SSLError):
            return None
        self.client.loop_start()
        try:
            rc = self.connack.get(timeout=timeout)
        except queue.Empty:
            return None
        return None if rc < 0 else rc

    def subscribe(self, topic_filter: str, qos: int = 1, timeout: float = 5.0) -> list[int]:
        _, mid = self.client.subscribe(topic_filter, qos=qos)
        assert mid is not None
        assert self._wait(lambda: mid in self.subacks, timeout), f"no SUBACK for {topic_filter}"
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes, qos: int = 1, timeout: float = 5.0) -> bool:
        info = self.client.publish(topic, payload, qos=qos)
        if qos == 0:
            return info.rc == 0
        return self._wait(lambda: info.mid in self.acked, timeout)

    def expect(self, topic: str, payload: bytes, timeout: float = 5.0) -> bool:
        """Wait for one message (others seen meanwhile are kept for :meth:`drain`)."""
        seen: list[tuple[str, bytes]] = []
        deadline = time.monotonic() + timeout
        found = False
        while not found and (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            found = message == (topic, payload)
            if not found:
                seen.append(message)
        for message in seen:
            self.messages.put(message)
        return found

    def drain(self) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        while True:
            try:
                out.append(self.messages.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def probe(broker: BrokerProcess, creds: Creds | None, **kwargs: Any) -> Probe:
    """A probe for ``broker`` (kwargs: client_id, clean_session); not connected yet."""
    return Probe(broker.port, ca=broker.pki.paths.ca_chain, creds=creds, **kwargs)


def connected(broker: BrokerProcess, creds: Creds | None, **kwargs: Any) -> Probe:
    client = probe(broker, creds, **kwargs)
    rc = client.connect()
    assert rc == 0, f"{creds.id if creds else 'no certificate'}: CONNACK {rc}"
    return client


def raw_tls(port: int, ca: Path, creds: Creds | None) -> ssl.SSLSocket:
    sock = socket.create_connection((HOST, port), timeout=5)
    return client_context(ca, creds).wrap_socket(sock, server_hostname=HOST)


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the other end closes (or resets) the connection within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            if sock.recv(4096) == b"":
                return True
        except TimeoutError:
            return False
        except (OSError, ssl.SSLError):
            return True
    return False


def closed_or_silent(sock: socket.socket, timeout: float) -> bool:
    """The other end sends nothing (no CONNACK) within ``timeout``, or closes."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except TimeoutError:
        return True
    except (OSError, ssl.SSLError):
        return True
