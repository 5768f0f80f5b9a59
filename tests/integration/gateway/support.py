"""Real pieces for the gateway's integration tests: a PKI, brokers (``python -m broker``),
a dedicated Kafka node that can be stopped, gateways as ``python -m gateway``, a Kafka reader
and the checks of a numbered stream (the devices are in ``devices.py``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from certs import pki, store
from certs.layout import PkiPaths
from fleetgate.logs import quiet_drivers
from fleetgate.settings import default_cache
from fleetgate.stack import kafka as kafka_stack
from fleetgate.stack import maven, prereq
from fleetgate.stack.process import ChildProcess
from schemas.ids import Identity, Role, make_vin
from schemas.topics import HEADER_MESSAGE_ID
from tests.support.brokers import BrokerProcess as _BrokerProcess
from tests.support.brokers import start_broker

ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
APP = "companion"
GATEWAYS = ("gateway", "gateway-2", "gateway-3", "gateway-4")
SERVICES = (*GATEWAYS, "tester", "tester-2", "broker-admin")


def fleet_vins(count: int, *, base: int = 5000) -> list[str]:
    return [make_vin(base + i) for i in range(count)]


@dataclass
class TestPki:
    home: Path

    @property
    def paths(self) -> PkiPaths:
        return PkiPaths(self.home)

    def leaf(self, role: Role, ident: str) -> tuple[Path, Path]:
        return self.paths.leaf(Identity(role=role, id=ident))


def make_gateway_pki(home: Path, vins: Iterable[str]) -> TestPki:
    now = datetime.now(UTC)
    lifetimes = pki.Lifetimes()
    test_pki = TestPki(home)
    store.init_pki(test_pki.paths, now=now, lifetimes=lifetimes)
    store.issue_leaves(test_pki.paths, Role.VEHICLE, list(vins), now=now, lifetimes=lifetimes)
    store.issue_leaves(test_pki.paths, Role.APP, [APP], now=now, lifetimes=lifetimes)
    store.issue_leaves(test_pki.paths, Role.SERVICE, SERVICES, now=now, lifetimes=lifetimes)
    return test_pki


BrokerProcess = _BrokerProcess[TestPki]


def broker_for(kind: str, test_pki: TestPki) -> BrokerProcess:
    """``python -m broker`` on a free port. Deep queues: the fault tests hold ~10,000
    messages at the broker while Kafka is away."""
    return start_broker(
        kind,
        test_pki,
        env={"FLEETGATE_BROKER__MAX_QUEUED": "200000", "FLEETGATE_BROKER__MAX_INFLIGHT": "200"},
    )


# --- Kafka -------------------------------------------------------------------------------------


class KafkaNode:
    """A Kafka of our own (free ports, own data dir) that a test may stop and start again."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.java = prereq.require_java()
        self.lib = maven.resolve(
            name=f"kafka-{kafka_stack.KAFKA_VERSION}",
            coordinates=kafka_stack.MAVEN_COORDINATES,
            cache_dir=default_cache(),
        )
        self.port, self.controller = prereq.free_port(), prereq.free_port()
        self.conf, self.data = root / "conf", root / "data"
        kafka_stack.write_config(
            conf_dir=self.conf,
            data_dir=self.data,
            host=HOST,
            port=self.port,
            controller_port=self.controller,
        )
        kafka_stack.format_storage(
            java=self.java, lib_dir=self.lib, conf_dir=self.conf, data_dir=self.data
        )
        self.child: ChildProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    async def start(self) -> None:
        self.child = ChildProcess(
            name="kafka",
            argv=kafka_stack.command(
                java=self.java, lib_dir=self.lib, conf_dir=self.conf, heap_mb=384
            ),
            log_path=self.root / "kafka.log",
        )
        self.child.start()
        with quiet_drivers():
            await kafka_stack.wait_ready(bootstrap=self.bootstrap, timeout_s=120)

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(timeout_s=30)
            self.child = None


async def read_topic(
    *,
    bootstrap: str,
    topic: str,
    want: int,
    timeout_s: float,
    count: Callable[[list[Any]], int] = len,
) -> list[Any]:
    """Every record of ``topic`` from the start until ``count(records)`` reaches ``want``
    (by default the number of records) or ``timeout_s`` passed."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=100
    )
    await consumer.start()
    records: list[Any] = []
    try:
        partitions: set[int] | None = None
        deadline = time.monotonic() + 30
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                await consumer._client.force_metadata_update()
                await asyncio.sleep(0.2)
        assert partitions, f"topic {topic} does not exist"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and count(records) < want:
            batch = await consumer.getmany(timeout_ms=200, max_records=10_000)
            for items in batch.values():
                records.extend(items)
    finally:
        await consumer.stop()
    return records


class UniqueMessages:
    """Counts distinct (VIN, seq) among telemetry records, incrementally."""

    def __init__(self) -> None:
        self.seen: set[tuple[bytes, int]] = set()
        self.looked = 0

    def __call__(self, records: list[Any]) -> int:
        for record in records[self.looked :]:
            self.seen.add((record.key, json.loads(record.value)["seq"]))
        self.looked = len(records)
        return len(self.seen)


def check_stream(records: list[Any], vins: list[str], per_vin: int) -> dict[str, int]:
    """Every (VIN, seq) at least once, first occurrences in order per VIN; returns counts and
    ``instances``, the gateway instances seen (told apart by the message-id prefix)."""
    seen: dict[tuple[str, str], list[int]] = defaultdict(list)
    instances: set[bytes] = set()
    for record in records:
        vin = record.key.decode()
        instances.add(dict(record.headers)[HEADER_MESSAGE_ID][:24])
        seen[(vin, "")].append(json.loads(record.value)["seq"])
    missing: dict[str, int] = {}
    disorder: dict[tuple[str, str], tuple[int, int]] = {}
    duplicates = 0
    for vin in vins:
        unique_of_vin: set[int] = set()
        for (key_vin, instance), seqs in seen.items():
            if key_vin != vin:
                continue
            firsts: list[int] = []
            unique: set[int] = set()
            for seq in seqs:
                if seq not in unique:
                    unique.add(seq)
                    firsts.append(seq)
            duplicates += len(seqs) - len(unique)
            unique_of_vin |= unique
            for a, b in itertools.pairwise(firsts):
                if b < a:
                    disorder[(vin, instance)] = (a, b)
                    break
        lost = per_vin - len(unique_of_vin & set(range(per_vin)))
        if lost:
            missing[vin] = lost
    assert not missing, f"missing messages per VIN: {dict(list(missing.items())[:5])}"
    spread = {
        vin: sorted({r.partition for r in records if r.key == vin.encode()})
        for vin, _ in list(disorder)[:3]
    }
    assert not disorder, (
        f"order broken (first occurrences) for: {dict(list(disorder.items())[:5])}; "
        f"partitions of those VINs: {spread}"
    )
    return {"records": len(records), "duplicates": duplicates, "instances": len(instances)}


# --- gateways ----------------------------------------------------------------------------------


@dataclass
class GatewayProcess:
    """``python -m gateway`` as a child (own process group, dies with the test)."""

    child: ChildProcess
    log_path: Path

    @classmethod
    def start(
        cls,
        *,
        broker: BrokerProcess,
        bootstrap: str,
        prefix: str,
        name: str = "gateway",
        shared_group: str | None = None,
        slice_: tuple[int, int] | None = None,
        extra: dict[str, str] | None = None,
    ) -> GatewayProcess:
        log_path = broker.pki.home / f"{name}-{time.monotonic_ns()}.log"
        env = {
            "FLEETGATE_HOME": str(broker.pki.home),
            "FLEETGATE_LOG_FORMAT": "json",
            "FLEETGATE_LOG_LEVEL": "INFO",
            "FLEETGATE_KAFKA__BOOTSTRAP": bootstrap,
            "FLEETGATE_KAFKA__TOPIC_PREFIX": prefix,
            "FLEETGATE_KAFKA__PARTITIONS": "4",
            "FLEETGATE_MQTT__PORT": str(broker.port),
            "FLEETGATE_MQTT__CLIENT_NAME": name,
            "FLEETGATE_GATEWAY__METRICS_PORT": "0",
            **({"FLEETGATE_GATEWAY__SHARED_GROUP": shared_group} if shared_group else {}),
            **(
                {
                    "FLEETGATE_GATEWAY__SLICE": str(slice_[0]),
                    "FLEETGATE_GATEWAY__SLICES": str(slice_[1]),
                }
                if slice_
                else {}
            ),
            **(extra or {}),
        }
        child = ChildProcess(
            name=name, argv=[sys.executable, "-m", "gateway"], log_path=log_path, env=env, cwd=ROOT
        )
        child.start()
        running = cls(child, log_path)
        try:
            running.wait_log("Ctrl-C stops it", timeout=60)
        except AssertionError:
            child.stop(timeout_s=10)
            raise
        return running

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.log():
                return
            if not self.child.alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"gateway never logged {text!r}:\n{self.log()[-3000:]}")

    def kill9(self) -> None:
        pid = self.child.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert self.child.popen is not None
        self.child.popen.wait(10)

    def stop(self) -> int | None:
        return self.child.stop(timeout_s=30)
