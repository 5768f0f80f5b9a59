"""Fixtures: a broker per kind (embedded amqtt and Mosquitto, each with its own PKI) and a
gateway running in the test's event loop against the session's Kafka."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from gateway.service import Gateway
from gateway.settings import GatewaySettings

from .support import BrokerProcess, broker_for, fleet_vins, make_gateway_pki

VINS = fleet_vins(8)


@pytest.fixture(scope="module", params=["amqtt", "mosquitto"])
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    kind = str(request.param)
    test_pki = make_gateway_pki(tmp_path_factory.mktemp(f"gw-{kind}"), VINS)
    running = broker_for(kind, test_pki)
    try:
        yield running
    finally:
        running.stop()


def settings_for(
    broker: BrokerProcess, *, bootstrap: str, prefix: str, **gateway: object
) -> GatewaySettings:
    return GatewaySettings(
        home=broker.pki.home,
        kafka={"bootstrap": bootstrap, "topic_prefix": prefix, "partitions": 2},
        mqtt={"host": "127.0.0.1", "port": broker.port, "client_name": "gateway"},
        gateway={"metrics_port": 0, **gateway},
    )


@pytest.fixture
async def gateway(
    broker: BrokerProcess, kafka_bootstrap: str, topic_prefix: str
) -> AsyncIterator[Gateway]:
    gw = Gateway(settings=settings_for(broker, bootstrap=kafka_bootstrap, prefix=topic_prefix))
    stop = asyncio.Event()
    task = asyncio.create_task(gw.run(stop=stop))
    ready = asyncio.create_task(gw.ready.wait())
    await asyncio.wait({task, ready}, timeout=90, return_when=asyncio.FIRST_COMPLETED)
    if not gw.ready.is_set():
        ready.cancel()
        stop.set()
        await task  # raises what went wrong
        raise AssertionError("the gateway did not get ready in 90 s")
    try:
        yield gw
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
