"""One conformance suite, two brokers: every test using ``broker`` runs against the embedded
amqtt broker and against Mosquitto, each started as ``python -m broker`` with its own PKI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from schemas.topics import MqttTopics

from .support import HEALTHCHECK, VIN_HEALTHY, BrokerProcess, connected, make_pki, start_broker


@pytest.fixture(scope="session", params=["amqtt", "mosquitto"])
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    kind = str(request.param)
    test_pki = make_pki(tmp_path_factory.mktemp(f"home-{kind}"))
    running = start_broker(kind, test_pki)
    try:
        yield running
    finally:
        running.stop()


class Healthy:
    """A vehicle connected for the whole session: every bad-input test checks it still works."""

    def __init__(self, broker: BrokerProcess) -> None:
        self.broker = broker
        self.vehicle = connected(broker, broker.pki.vehicle(VIN_HEALTHY))
        assert self.vehicle.subscribe(f"vehicles/{VIN_HEALTHY}/commands/+") == [1]
        self.service = connected(broker, broker.pki.service(HEALTHCHECK), client_id="healthcheck-1")
        self.count = 0

    def check(self) -> None:
        """The vehicle is still connected and still receives a fresh command."""
        self.count += 1
        command_id = f"00000000-0000-4000-8000-{self.count:012d}"
        topic = MqttTopics.command(VIN_HEALTHY, command_id)
        payload = f"check {self.count}".encode()
        assert self.service.publish(topic, payload)
        assert self.vehicle.expect(topic, payload), f"healthy vehicle missed {topic}"
        assert not self.vehicle.disconnected.is_set()

    def close(self) -> None:
        self.vehicle.close()
        self.service.close()


@pytest.fixture(scope="session")
def healthy(broker: BrokerProcess) -> Iterator[Healthy]:
    checker = Healthy(broker)
    try:
        yield checker
        checker.check()
    finally:
        checker.close()
