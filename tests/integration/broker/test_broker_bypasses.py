"""Regressions for the two authentication bypasses of amqtt 0.12.1.

(a) A refused impostor CONNECTing with a live vehicle's client id wiped that vehicle's
    session (amqtt deleted/took over the session before authenticating).
(b) A client resuming a vehicle's persistent session (clean session off) was authenticated
    with the certificate of the session's PREVIOUS connection.

Each attack function asserts that the attack FAILS. It runs against the hardened amqtt
broker and Mosquitto (must pass) and against stock amqtt 0.12.1 (must fail: strict xfail).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.topics import MqttTopics

from .support import (
    HOST,
    PROBE_A,
    ROOT,
    VIN_A,
    VIN_B,
    BrokerProcess,
    Creds,
    PkiUnderTest,
    Probe,
    make_pki,
)

pytestmark = pytest.mark.integration


@dataclass
class Target:
    name: str
    port: int
    pki: PkiUnderTest

    def probe(self, creds: Creds | None, **kwargs: object) -> Probe:
        return Probe(self.port, ca=self.pki.paths.ca_chain, creds=creds, **kwargs)  # type: ignore[arg-type]

    def connected(self, creds: Creds | None, **kwargs: object) -> Probe:
        client = self.probe(creds, **kwargs)
        assert client.connect() == 0
        return client


def _impostor(target: Target, kind: str) -> Creds | None:
    return None if kind == "no-certificate" else target.pki.vehicle(VIN_B)


def attack_a_wipe_live_session(target: Target, impostor: Creds | None) -> None:
    victim = target.connected(target.pki.vehicle(VIN_A))
    service = target.connected(target.pki.service(PROBE_A), client_id=PROBE_A)
    try:
        assert victim.subscribe(f"vehicles/{VIN_A}/commands/+") == [1]
        attacker = target.probe(impostor, client_id=VIN_A, clean_session=True)
        rc = attacker.connect()
        attacker.close()
        topic = MqttTopics.command(VIN_A, str(uuid.uuid4()))
        assert service.publish(topic, b"unlock")
        assert victim.expect(topic, b"unlock", timeout=3), (
            f"{target.name}: after an impostor's CONNECT (CONNACK {rc}) the live vehicle "
            "no longer receives its commands: its session was wiped"
        )
    finally:
        victim.close()
        service.close()


def attack_b_resume_session(target: Target, impostor: Creds | None) -> None:
    victim = target.connected(target.pki.vehicle(VIN_A), clean_session=False)
    assert victim.subscribe(f"vehicles/{VIN_A}/commands/+") == [1]
    victim.close()  # the persistent session stays on the broker
    time.sleep(0.2)
    service = target.connected(target.pki.service(PROBE_A), client_id=PROBE_A)
    try:
        topic = MqttTopics.telemetry(VIN_A)
        assert service.subscribe(topic) == [1]
        attacker = target.probe(impostor, client_id=VIN_A, clean_session=False)
        rc = attacker.connect()
        if rc == 0:
            attacker.publish(topic, b"forged", timeout=2)
        attacker.close()
        assert not service.expect(topic, b"forged", timeout=2), (
            f"{target.name}: a client with {'no' if impostor is None else 'another'} "
            f"certificate resumed {VIN_A}'s session (CONNACK {rc}) and published as it"
        )
    finally:
        service.close()


ATTACKS = [attack_a_wipe_live_session, attack_b_resume_session]
IMPOSTORS = ["no-certificate", "other-vehicle-certificate"]


@pytest.mark.parametrize("impostor", IMPOSTORS)
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda f: f.__name__)
def test_bypass_is_closed(broker: BrokerProcess, attack: object, impostor: str) -> None:
    target = Target(f"fleetgate {broker.kind}", broker.port, broker.pki)
    attack(target, _impostor(target, impostor))  # type: ignore[operator]


# --- stock amqtt 0.12.1 ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def stock_pki(tmp_path_factory: pytest.TempPathFactory) -> PkiUnderTest:
    return make_pki(tmp_path_factory.mktemp("home-stock"))


@pytest.fixture
def stock(stock_pki: PkiUnderTest) -> Iterator[Target]:
    """A fresh stock broker per attack: one attack leaves stock amqtt in a broken state."""
    port = _free_port()
    log_path: Path = stock_pki.home / f"stock-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.broker.stock_amqtt",
                str(stock_pki.home),
                str(port),
            ],
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while b"stock amqtt ready" not in log_path.read_bytes():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        yield Target("stock amqtt 0.12.1", port, stock_pki)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.xfail(strict=True, reason="stock amqtt 0.12.1 has the bypass", raises=AssertionError)
@pytest.mark.parametrize("impostor", IMPOSTORS)
@pytest.mark.parametrize("attack", ATTACKS, ids=lambda f: f.__name__)
def test_bypass_works_against_stock_amqtt(stock: Target, attack: object, impostor: str) -> None:
    attack(stock, _impostor(stock, impostor))  # type: ignore[operator]
