"""``fleetgate bench ingest``: simulated vehicles (mutual TLS, QoS 1) -> Mosquitto -> gateway
-> Kafka, against the same load through the broker alone (a service subscriber in place of
the gateway), in one run.

Two phases per target: *throughput* (every vehicle publishes ``messages / vehicles``
numbered telemetry messages as fast as a window of ``window`` unacknowledged publishes
allows; ``msgs_per_s`` is all messages over the time from the first publish to the last one
seen at the sink) and *latency* (``latency_messages`` at ``latency_rate`` per second;
``p50_ms``/``p99_ms`` from publish to the Kafka consumer reading it, or to the subscriber
receiving it; ``ack_p50_ms``/``ack_p99_ms`` from publish to the vehicle's PUBACK, which
the gateway sends once Kafka acknowledged the record, while the broker alone acknowledges at
once). ``lost`` counts (VIN, seq) never seen. Publishers run in this process, each
sink (``python -m gateway.bench sink kafka|mqtt``) and the gateway (``python -m gateway``,
under cProfile with ``-p profile=1``) in processes of their own.

Before measuring, ``warmup`` messages go through each target unmeasured (a freshly started
Kafka JVM is slow until its JIT has warmed up).

Parameters (``-p key=value``): vehicles (50), messages (20000), window (20), warmup (3000),
latency_messages (3000), latency_rate (500), partitions (6), bootstrap (a running Kafka;
default: start one), profile (0: 1 runs the gateway under cProfile and adds its top
functions by CPU time to the notes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from fleetgate.bench.nodes import kafka_node, terminate
from fleetgate.bench.report import Outcome, latency_summary
from fleetgate.errors import UserError
from gateway.mqtt import MqttLink
from gateway.mqtt_options import LinkOptions, tls_context
from schemas.ids import Role, make_vin
from schemas.topics import MqttTopics

DEFAULTS = {
    "vehicles": "50",
    "messages": "20000",
    "window": "20",
    "warmup": "3000",
    "latency_messages": "3000",
    "latency_rate": "500",
    "partitions": "6",
    "bootstrap": "",
    "profile": "0",
}
SINK_NAME = "bench-sink"
STALL_S = 30.0


def _ints(params: dict[str, str]) -> dict[str, Any]:
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise UserError(f"unknown ingest parameter(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    merged: dict[str, Any] = DEFAULTS | params
    for key in ("vehicles", "messages", "window", "warmup", "latency_messages",
                "latency_rate", "partitions", "profile"):  # fmt: skip
        try:
            merged[key] = int(merged[key])
        except ValueError:
            raise UserError(f"ingest parameter {key}={merged[key]!r} is not an integer") from None
        if merged[key] < (0 if key in ("profile", "warmup") else 1):
            raise UserError(f"ingest parameter {key} must be positive")
    return merged


async def run(params: dict[str, str]) -> Outcome:
    """The ``ingest`` scenario (see the module doc)."""
    p = _ints(params)
    vins = [make_vin(700_000 + i) for i in range(p["vehicles"])]
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        root = Path(tmp)
        home = root / "home"
        _make_pki(home, vins)
        async with kafka_node(root, p["bootstrap"]) as bootstrap, mosquitto_broker(home) as port:
            fleet = await VehicleLinks.connect(home=home, port=port, vins=vins)
            try:
                baseline = await _measure(p, fleet, _sink_argv("mqtt", home, port, None, ""))
                prefix = f"bench{os.getpid()}."
                async with gateway_child(root, home, port, bootstrap, prefix, p) as profile:
                    kafka_sink = _sink_argv("kafka", home, port, bootstrap, prefix)
                    result = await _measure(p, fleet, kafka_sink)
            finally:
                await fleet.close()
    notes = [
        "one machine runs the publishers, Mosquitto, the gateway, Kafka and the sink: they "
        "compete for its CPUs (and other work on it makes the figures noisy)",
        "baseline: the same load through Mosquitto to one service subscriber (mutual TLS, "
        "QoS 1), instead of the gateway to Kafka",
    ]
    if profile:
        notes.append("gateway profile (cProfile, top by own time): " + "; ".join(profile))
    return Outcome(result=result, baseline=baseline, headline="msgs_per_s", params=p, notes=notes)


def _make_pki(home: Path, vins: list[str]) -> None:
    from certs import pki, store

    paths = store.ensure_pki(home, services=("gateway", SINK_NAME, "broker-admin"))
    store.issue_leaves(paths, Role.VEHICLE, vins, now=datetime.now(UTC), lifetimes=pki.Lifetimes())


@contextlib.asynccontextmanager
async def mosquitto_broker(home: Path) -> AsyncIterator[int]:
    from broker.mosquitto import MosquittoBroker
    from broker.settings import BrokerOptions
    from certs.layout import PkiPaths

    options = BrokerOptions(kind="mosquitto", port=0, max_queued=1_000_000)
    broker = MosquittoBroker(options=options, paths=PkiPaths(home))
    await broker.start()
    try:
        yield broker.port
    finally:
        await broker.stop()


@contextlib.asynccontextmanager
async def gateway_child(
    root: Path, home: Path, port: int, bootstrap: str, prefix: str, p: dict[str, Any]
) -> AsyncIterator[list[str]]:
    from fleetgate.stack.process import ChildProcess

    prof = root / "gateway.prof"
    argv = [sys.executable, "-m", "gateway.bench", "profile", str(prof)]
    if not p["profile"]:
        argv = [sys.executable, "-m", "gateway"]
    env = {
        "FLEETGATE_HOME": str(home),
        "FLEETGATE_KAFKA__BOOTSTRAP": bootstrap,
        "FLEETGATE_KAFKA__TOPIC_PREFIX": prefix,
        "FLEETGATE_KAFKA__PARTITIONS": str(p["partitions"]),
        "FLEETGATE_MQTT__PORT": str(port),
        "FLEETGATE_GATEWAY__METRICS_PORT": "0",
        "FLEETGATE_LOG_FORMAT": "json",
    }
    log = root / "gateway.log"
    child = ChildProcess(name="gateway", argv=argv, log_path=log, env=env)
    child.start()
    top: list[str] = []
    try:
        deadline = time.monotonic() + 90
        while "Ctrl-C stops it" not in log.read_text(errors="replace"):
            if not child.alive() or time.monotonic() > deadline:
                raise UserError(f"the gateway did not start: {child.log_tail(3)}")
            await asyncio.sleep(0.2)
        yield top
    finally:
        await asyncio.to_thread(child.stop, timeout_s=30)
        if p["profile"] and prof.exists():
            top.extend(top_functions(prof))


def top_functions(path: Path, count: int = 15) -> list[str]:
    """The functions with the most CPU time of their own, with their share of the total."""
    import pstats

    stats = pstats.Stats(str(path))
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    rows = sorted(table.items(), key=lambda item: item[1][2], reverse=True)
    total = sum(row[1][2] for row in rows) or 1.0
    out = []
    for (file, line, func), (_, calls, own, _cum, _) in rows[:count]:
        where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if line else file
        out.append(f"{func} ({where}) {own:.2f}s {100 * own / total:.0f}% x{calls}")
    return out


# --- publishers --------------------------------------------------------------------------------


class VehicleLinks:
    """One MQTT connection per vehicle, all in this event loop."""

    def __init__(self, links: list[tuple[str, MqttLink]]) -> None:
        self.links = links

    @classmethod
    async def connect(cls, *, home: Path, port: int, vins: list[str]) -> VehicleLinks:
        from certs.layout import PkiPaths

        paths = PkiPaths(home)
        links = []
        for vin in vins:
            cert, key = paths.vehicle(vin)
            context = tls_context(ca_chain=str(paths.ca_chain), certfile=str(cert),
                                  keyfile=str(key))  # fmt: skip
            link = MqttLink(
                options=LinkOptions(host="127.0.0.1", port=port, client_id=vin),
                context=context,
                on_message=lambda message, generation: None,
            )
            links.append((vin, link))
        await asyncio.gather(*(link.start(wait_s=60) for _, link in links))
        return cls(links)

    async def publish(
        self,
        *,
        phase: int,
        per_vehicle: int,
        window: int,
        rate: float,
        acks: list[float] | None = None,
    ) -> float:
        """Publish; returns the wall-clock time of the first publish. ``acks`` gets the ms
        from each publish to its PUBACK (through the gateway: to Kafka's acknowledgement)."""
        started = time.time()
        gap = len(self.links) / rate if rate else 0.0

        async def one(index: int, vin: str, link: MqttLink) -> None:
            room = asyncio.Semaphore(window)
            topic = MqttTopics.telemetry(vin)
            begin = time.monotonic() + (gap * index / len(self.links))
            for seq in range(per_vehicle):
                await room.acquire()
                if gap:
                    delay = begin + seq * gap - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                payload = b'{"ts":%d,"seq":%d,"signals":{"phase":%d,"t":%.6f,"speed":88.5}}' % (
                    int(time.time() * 1000),
                    seq,
                    phase,
                    time.time(),
                )
                done = room.release
                if acks is not None:
                    done = partial(_acked, acks, time.perf_counter(), room.release)
                link.publish(topic, payload, qos=1, on_done=done)

        await asyncio.gather(*(one(i, vin, link) for i, (vin, link) in enumerate(self.links)))
        return started

    async def close(self) -> None:
        await asyncio.gather(*(link.close() for _, link in self.links))


def _acked(acks: list[float], sent: float, release: Callable[[], None]) -> None:
    acks.append((time.perf_counter() - sent) * 1000)
    release()


# --- measuring -----------------------------------------------------------------------------------


def _sink_argv(kind: str, home: Path, port: int, bootstrap: str | None, prefix: str) -> list[str]:
    target = bootstrap if kind == "kafka" and bootstrap else str(port)
    return [sys.executable, "-m", "gateway.bench", "sink", kind, str(home), target, prefix]


async def _measure(p: dict[str, Any], fleet: VehicleLinks, argv: list[str]) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
    )
    assert process.stdout is not None
    status: dict[str, Any] = {}
    try:
        while not status.get("ready"):
            status = json.loads(await asyncio.wait_for(process.stdout.readline(), 90) or b"{}")
            if not status:
                raise UserError("the bench sink did not start")
        vehicles = len(fleet.links)
        if p["warmup"]:  # a fresh JVM (Kafka) is slow until its JIT has warmed up
            warm = max(1, p["warmup"] // vehicles)
            await fleet.publish(phase=0, per_vehicle=warm, window=p["window"], rate=0)
            await _until(process, "p0", warm * vehicles)
        per_vehicle = max(1, p["messages"] // vehicles)
        started = await fleet.publish(phase=1, per_vehicle=per_vehicle, window=p["window"], rate=0)
        status = await _until(process, "p1", per_vehicle * vehicles)
        span = max(1e-9, status["p1_last"] - started)
        lat_per_vehicle = max(1, p["latency_messages"] // vehicles)
        acks: list[float] = []
        await fleet.publish(phase=2, per_vehicle=lat_per_vehicle, window=p["window"],
                            rate=p["latency_rate"], acks=acks)  # fmt: skip
        final = await _until(process, "p2", lat_per_vehicle * vehicles)
        process.send_signal(signal.SIGTERM)
        async for line in process.stdout:  # the last line has the latencies
            final = json.loads(line)
        summary = latency_summary(final.get("latencies", []))
        acked = latency_summary(acks)
        lost = per_vehicle * vehicles - status["p1"] + lat_per_vehicle * vehicles - final["p2"]
        return {
            "msgs_per_s": round(status["p1"] / span, 1),
            "messages": per_vehicle * vehicles,
            "p50_ms": summary["p50_ms"],
            "p99_ms": summary["p99_ms"],
            "max_ms": summary["max_ms"],
            "ack_p50_ms": acked["p50_ms"],
            "ack_p99_ms": acked["p99_ms"],
            "latency_rate": p["latency_rate"],
            "lost": lost,
        }
    finally:
        await terminate(process)


async def _until(process: asyncio.subprocess.Process, key: str, want: int) -> dict[str, Any]:
    """Sink status lines until ``key`` reaches ``want`` or stops moving for STALL_S."""
    assert process.stdout is not None
    best: dict[str, Any] = {}
    moved = time.monotonic()
    while True:
        line = await asyncio.wait_for(process.stdout.readline(), STALL_S + 5)
        if not line:
            raise UserError("the bench sink stopped")
        status: dict[str, Any] = json.loads(line)
        if status.get(key, 0) > best.get(key, -1):
            moved = time.monotonic()
        best = status
        if status.get(key, 0) >= want or time.monotonic() - moved > STALL_S:
            return status


if __name__ == "__main__":
    from gateway.bench_sink import main

    main(sys.argv[1:])
