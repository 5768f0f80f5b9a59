"""No loss under faults, against Mosquitto with gateways run as ``python -m gateway``:
(a) Kafka stopped for 20 s in the middle of a stream, (b) a gateway killed with SIGKILL and
replaced, (c) two gateways sharing the load. A stream is 20 vehicles x 1000 numbered QoS 1
telemetry messages; every (VIN, seq) must reach Kafka at least once, first occurrences in
order per VIN. Two instances split the fleet in slices (``--slice K/N``): each vehicle has one
owner, so order per VIN holds with them too."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from schemas.topics import KafkaTopics

from .devices import Fleet
from .support import (
    BrokerProcess,
    GatewayProcess,
    KafkaNode,
    UniqueMessages,
    broker_for,
    check_stream,
    fleet_vins,
    make_gateway_pki,
    read_topic,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

VEHICLES, PER_VIN, RATE = 20, 1000, 1000.0
# each test uses its own gateway certificates (client ids): persistent sessions outlive tests
TOTAL = VEHICLES * PER_VIN
VINS = fleet_vins(VEHICLES, base=9000)


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    running = broker_for("mosquitto", make_gateway_pki(tmp_path_factory.mktemp("faults"), VINS))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
async def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KafkaNode]:
    node = KafkaNode(Path(tmp_path_factory.mktemp("kafka")))
    await node.start()
    try:
        yield node
    finally:
        node.stop()


async def collect(bootstrap: str, prefix: str) -> dict[str, int]:
    records = await read_topic(
        bootstrap=bootstrap,
        topic=KafkaTopics(prefix).telemetry,
        want=TOTAL,
        timeout_s=120,
        count=UniqueMessages(),
    )
    counts = check_stream(records, VINS, PER_VIN)
    print(f"\n{counts['records']} records for {TOTAL} messages, {counts['duplicates']} duplicates")
    return counts


def metrics_port(gateway: GatewayProcess) -> int:
    gateway.wait_log("/metrics", timeout=10)
    match = re.search(r"metrics on :(\d+)/metrics", gateway.log())
    assert match, gateway.log()[-2000:]
    return int(match.group(1))


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_kafka_stopped_for_20s_mid_stream_loses_nothing(
    mosquitto: BrokerProcess, own_kafka: KafkaNode, topic_prefix: str
) -> None:
    # batches wait 10 s for a leader, so the 20 s outage also replaces the producer
    gateway = GatewayProcess.start(
        broker=mosquitto,
        bootstrap=own_kafka.bootstrap,
        prefix=topic_prefix,
        extra={"FLEETGATE_GATEWAY__REQUEST_TIMEOUT_MS": "10000"},
    )
    port = metrics_port(gateway)
    fleet = Fleet(mosquitto, VINS, per_vin=PER_VIN, rate=RATE)
    try:
        fleet.start()
        await asyncio.sleep(5)
        assert fleet.sent < TOTAL / 2
        own_kafka.stop()
        stopped = time.monotonic()
        await asyncio.sleep(10)
        taken = metric(port, "fleetgate_gateway_uplink_inflight")
        await asyncio.sleep(10)
        later = metric(port, "fleetgate_gateway_uplink_inflight")
        # it stopped taking messages (the broker keeps them): what it holds stays put
        assert 0 < taken <= 2000, taken
        assert later == taken, (taken, later)
        await own_kafka.start()
        print(f"\nKafka away {time.monotonic() - stopped:.1f} s; {taken:.0f} messages held")
        await asyncio.to_thread(fleet.wait_acked, 120)
        await collect(own_kafka.bootstrap, topic_prefix)
        print("producer replaced" if "producer replaced" in gateway.log() else "no reset")
        assert gateway.child.alive()
        assert gateway.stop() == 0  # SIGTERM: drained and stopped cleanly
    finally:
        fleet.close()
        gateway.stop()


async def test_gateway_killed_mid_stream_and_replaced_loses_nothing(
    mosquitto: BrokerProcess, kafka_bootstrap: str, topic_prefix: str
) -> None:
    # its own certificate (client id): the session is what the replacement takes over
    first = GatewayProcess.start(
        broker=mosquitto, bootstrap=kafka_bootstrap, prefix=topic_prefix, name="gateway-4"
    )
    fleet = Fleet(mosquitto, VINS, per_vin=PER_VIN, rate=RATE)
    second: GatewayProcess | None = None
    try:
        fleet.start()
        await asyncio.sleep(6)
        first.kill9()
        killed_at = fleet.sent
        second = GatewayProcess.start(
            broker=mosquitto, bootstrap=kafka_bootstrap, prefix=topic_prefix, name="gateway-4"
        )
        print(f"\nkilled after {killed_at} messages published")
        assert 0 < killed_at < TOTAL
        await asyncio.to_thread(fleet.wait_acked, 120)
        await collect(kafka_bootstrap, topic_prefix)
    finally:
        fleet.close()
        first.stop()
        if second is not None:
            second.stop()


async def test_two_gateways_split_the_fleet_keep_order_and_lose_nothing(
    mosquitto: BrokerProcess, kafka_bootstrap: str, topic_prefix: str
) -> None:
    gateways = [
        GatewayProcess.start(
            broker=mosquitto,
            bootstrap=kafka_bootstrap,
            prefix=topic_prefix,
            name=name,
            slice_=(index, 2),
        )
        for index, name in enumerate(("gateway-2", "gateway-3"))
    ]
    fleet = Fleet(mosquitto, VINS, per_vin=PER_VIN, rate=RATE)
    try:
        fleet.start()
        await asyncio.to_thread(fleet.wait_acked, 120)
        counts = await collect(kafka_bootstrap, topic_prefix)  # order per VIN checked here
        assert counts["instances"] == 2, counts
        name = 'fleetgate_gateway_uplink_messages_total{kind="telemetry"}'
        ports = [metrics_port(g) for g in gateways]
        shares = [metric(port, name) for port in ports]
        others = [metric(port, "fleetgate_gateway_uplink_other_slice_messages_total")
                  for port in ports]  # fmt: skip
        print(f"messages per gateway: {shares}, left to the other slice: {others}")
        # each forwards its own vehicles (redeliveries may add a few) and leaves the rest
        assert all(share >= TOTAL / 10 for share in shares), shares
        assert sum(shares) >= TOTAL
        assert [o >= TOTAL - s for o, s in zip(others, shares, strict=True)] == [True, True]
        assert [gateway.stop() for gateway in gateways] == [0, 0]
    finally:
        fleet.close()
        for gateway in gateways:
            gateway.stop()
