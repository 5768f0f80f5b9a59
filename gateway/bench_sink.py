"""The sinks of ``fleetgate bench ingest`` (``python -m gateway.bench sink mqtt|kafka …``).

``mqtt <home> <port>``: a service subscriber on ``vehicles/+/telemetry`` (the baseline);
``kafka <home> <bootstrap> <prefix>``: reads the gateway's telemetry topic from the start.
Prints ``{"ready": true}``, then every 0.25 s ``{"p0": n, "p1": n, "p1_last": t, "p2": n, …}``
(distinct messages per phase: 0 warm-up, 1 throughput, 2 latency; wall-clock time of the last
new one) and, on SIGTERM, a last
line with the phase-2 latencies (ms from publish to arrival here).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from fleetgate.errors import UserError


class Tally:
    def __init__(self) -> None:
        self.seen: dict[int, set[tuple[bytes, int]]] = {0: set(), 1: set(), 2: set()}
        self.last: dict[int, float] = {0: 0.0, 1: 0.0, 2: 0.0}
        self.latencies: list[float] = []

    def add(self, key: bytes, value: bytes | bytearray, now: float) -> None:
        body = json.loads(value)
        signals = body["signals"]
        phase = int(signals["phase"])
        ident = (key, body["seq"])
        seen = self.seen[phase]
        if ident in seen:
            return
        seen.add(ident)
        self.last[phase] = now
        if phase == 2:
            self.latencies.append((now - signals["t"]) * 1000)

    def status(self, *, final: bool = False) -> str:
        out: dict[str, Any] = {
            "p0": len(self.seen[0]),
            "p1": len(self.seen[1]),
            "p1_last": self.last[1],
            "p2": len(self.seen[2]),
            "p2_last": self.last[2],
        }
        if final:
            out["latencies"] = [round(v, 3) for v in self.latencies]
        return json.dumps(out)


async def _report(tally: Tally, stop: asyncio.Event) -> None:
    while not stop.is_set():
        print(tally.status(), flush=True)
        await asyncio.sleep(0.25)


async def mqtt_sink(home: Path, port: int, tally: Tally, stop: asyncio.Event) -> None:
    from certs.layout import PkiPaths
    from gateway.bench import SINK_NAME
    from gateway.mqtt import MqttLink
    from gateway.mqtt_options import LinkOptions, tls_context
    from gateway.mqtt_read import InMessage
    from schemas.topics import parse_topic

    paths = PkiPaths(home)
    cert, key = paths.service(SINK_NAME)
    link: MqttLink

    def on_message(msg: InMessage, generation: int) -> None:
        vin = parse_topic(msg.topic).vin or ""
        tally.add(vin.encode(), msg.payload, time.time())
        link.ack(msg.mid, msg.qos, generation)

    link = MqttLink(
        options=LinkOptions(host="127.0.0.1", port=port, client_id=SINK_NAME),
        context=tls_context(ca_chain=str(paths.ca_chain), certfile=str(cert), keyfile=str(key)),
        on_message=on_message,
        subscriptions=[("vehicles/+/telemetry", 1)],
    )
    await link.start(wait_s=60)
    print(json.dumps({"ready": True}), flush=True)
    try:
        await stop.wait()
    finally:
        await link.close()


async def kafka_sink(bootstrap: str, prefix: str, tally: Tally, stop: asyncio.Event) -> None:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition

    from schemas.topics import KafkaTopics

    topic = KafkaTopics(prefix).telemetry
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=5
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        while not partitions:
            await asyncio.sleep(0.2)
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        print(json.dumps({"ready": True}), flush=True)
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            now = time.time()
            for records in batch.values():
                for record in records:
                    tally.add(record.key, record.value, now)
    finally:
        await consumer.stop()


async def _serve(argv: list[str]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    tally = Tally()
    reporter = asyncio.create_task(_report(tally, stop))
    kind, home = argv[0], Path(argv[1])
    if kind == "mqtt":
        await mqtt_sink(home, int(argv[2]), tally, stop)
    elif kind == "kafka":
        await kafka_sink(argv[2], argv[3], tally, stop)
    else:
        raise UserError(f"unknown sink {kind!r}")
    await reporter
    print(tally.status(final=True), flush=True)


def profile_gateway(out: Path) -> None:
    """Run the gateway (settings from the environment) under cProfile, counting CPU time
    (not wall time: on a busy machine a syscall's wait is not the gateway's cost)."""
    import cProfile

    from gateway.cli import main as gateway_main

    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        gateway_main([])
    finally:
        profiler.disable()
        profiler.dump_stats(str(out))


def main(argv: list[str]) -> None:
    """``sink mqtt <home> <port> [prefix]`` | ``sink kafka <home> <bootstrap> <prefix>`` |
    ``profile <out.prof>`` (the gateway under cProfile)."""
    if len(argv) == 2 and argv[0] == "profile":
        profile_gateway(Path(argv[1]))
        return
    if len(argv) < 4 or argv[0] != "sink":
        sys.exit("usage: python -m gateway.bench sink mqtt|kafka <home> <port|bootstrap> <prefix>")
    from fleetgate.logs import configure_logging

    configure_logging(level="WARNING", fmt="json")  # stdout carries the status lines
    asyncio.run(_serve(argv[1:]))
