"""``fleetgate bench telemetry``: vehicle telemetry end to end, vehicle -> Mosquitto ->
gateway -> Kafka -> processors -> Cassandra shadow, against the broker alone, in one run.

Every vehicle (own certificate, mutual TLS, QoS 1, at most ``window`` unacknowledged)
publishes ``messages / vehicles`` numbered telemetry messages
``{"ts", "seq", "signals": {"bench.phase", "bench.seq", "speed_kmh"}}`` on
``vehicles/<VIN>/telemetry``, which the worker merges into the shadow's
``reported.telemetry`` (``topic=reported``: the same load as reported-state updates
``{"state": {"bench": {"phase", "seq"}, "speed_kmh"}}`` on ``vehicles/<VIN>/shadow/reported``).
``msgs_per_s``: every message over the time from the first publish until every vehicle's
shadow in Cassandra holds its last ``seq`` (read back; includes the last coalesced write, up
to the write interval); ``processed_per_s``: until the worker had merged them all (its
metrics). ``lost``: messages whose value never reached the shadow (last seq published minus
last seq stored, per vehicle); ``shadow_writes`` and
``writes_per_s`` against ``msgs_per_s`` show the coalescing. ``cpu_pct``: CPU per process
kind; ``worker_cpu_pct``: the worker's main thread (the event loop) and its other threads
(Faust's consumer thread, the Cassandra driver), on a core and waiting for one.
``profile=1`` runs the worker under cProfile and names its top functions in the notes.

Baseline: before the gateway starts, the same vehicles publish the same number of updates
to one service subscriber (``python -m processors.bench_telemetry sink``) through Mosquitto.
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
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from fleetgate.bench.nodes import HOST, busiest, children_cpu, cpu_pct, terminate, thread_cpu
from fleetgate.bench.report import Outcome
from fleetgate.errors import UserError
from processors import bench_env as env
from processors.settings import ProcessorSettings
from schemas.topics import MqttTopics

DEFAULTS = {"vehicles": "100", "messages": "20000", "window": "20", "warmup": "2000",
            "partitions": "6", "profile": "0", "topic": "telemetry", "bootstrap": "",
            "cassandra": ""}  # fmt: skip
TOPICS = {"reported": "vehicles/+/shadow/reported", "telemetry": "vehicles/+/telemetry"}
"""What the vehicles publish (``topic``): telemetry, or reported-state updates."""
COUNTERS = {"reported": "fleetgate_shadow_reported_total",
            "telemetry": "fleetgate_shadow_telemetry_total"}  # fmt: skip
"""The worker's count of the messages merged into shadows."""
WRITES = "fleetgate_shadow_writes_total"
TELEMETRY = b'{"ts":%d,"seq":%d,"signals":{"bench.phase":%d,"bench.seq":%d,"speed_kmh":%.1f}}'


def parse_params(params: dict[str, str]) -> dict[str, Any]:
    p = env.parse_params(params, DEFAULTS, scenario="telemetry", zero_ok=("warmup", "profile"),
                         choices={"topic": tuple(TOPICS)})  # fmt: skip
    if p["profile"] > 1:
        raise UserError("telemetry parameter profile must be 0 or 1")
    if p["messages"] < p["vehicles"]:
        raise UserError("telemetry parameter messages must be at least vehicles (one each)")
    return p


def bench_leaf(reported: Mapping[str, Any], topic: str) -> Any:
    """``{"phase", "seq"}`` of a stored reported state (None: nothing of the bench). Pure."""
    if topic == "reported":
        return reported.get("bench")
    signals = reported.get("telemetry")
    if not isinstance(signals, dict) or "bench.seq" not in signals:
        return None
    return {"phase": signals.get("bench.phase"), "seq": signals["bench.seq"]}


def shadow_gaps(stored: Mapping[str, Any], *, phase: int, first: int, last: int) -> tuple[int, int]:
    """(updates missing, vehicles behind) from each vehicle's stored ``bench`` leaf (``None``:
    no shadow) when every one sent seq ``first``..``last`` in ``phase``. Pure."""
    missing = behind = 0
    for bench in stored.values():
        seq = bench.get("seq", 0) if isinstance(bench, dict) and bench.get("phase") == phase else 0
        if seq < last:
            missing += last - max(int(seq), first - 1)
            behind += 1
    return missing, behind


# --------------------------------------------------------------------------------------------
# load


async def _flood(
    links: Any, p: dict[str, Any], *, phase: int, per_vehicle: int, first: int = 1
) -> float:
    """Every vehicle publishes seq ``first``..``first + per_vehicle - 1`` of ``p["topic"]``;
    the wall-clock time of the start."""
    started = time.time()
    telemetry = p["topic"] == "telemetry"

    async def one(vin: str, link: Any) -> None:
        room = asyncio.Semaphore(p["window"])
        topic = MqttTopics.telemetry(vin) if telemetry else MqttTopics.shadow_reported(vin)
        for seq in range(first, first + per_vehicle):
            await room.acquire()
            speed = 30 + seq % 100 + 0.5
            if telemetry:
                payload = TELEMETRY % (env.now_ms(), seq, phase, seq, speed)
            else:
                payload = b'{"state":{"bench":{"phase":%d,"seq":%d},"speed_kmh":%.1f}}' % (
                    phase, seq, speed,
                )  # fmt: skip
            link.publish(topic, payload, qos=1, on_done=room.release)

    await asyncio.gather(*(one(vin, link) for vin, link in links.links))
    return started


async def _stored(stack: env.Stack, vins: list[str], topic: str) -> dict[str, Any]:
    """Each vehicle's ``{"phase", "seq"}`` as Cassandra holds it (:func:`bench_leaf`)."""
    from processors.runtime import connect_session
    from processors.shadow.logic import materialize
    from processors.store.repo_shadow import ShadowRepository

    session = await connect_session(stack.settings)
    try:
        repo = ShadowRepository(session=session, keyspace=stack.settings.cassandra.keyspace)
        loaded = await asyncio.gather(*(repo.load(vin=vin) for vin in vins))
        return {s.shadow.vin: bench_leaf(materialize(s.shadow.reported), topic) for s in loaded}
    finally:
        await session.close()


# --------------------------------------------------------------------------------------------
# the scenario


def same_write_interval(settings: ProcessorSettings) -> ProcessorSettings:
    """``settings`` with telemetry written at the reported-state interval, unless the
    environment sets the telemetry interval itself."""
    if "FLEETGATE_PROCESSORS__TELEMETRY_WRITE_INTERVAL_S" in os.environ:
        return settings
    tuning = settings.processors
    same = tuning.model_copy(update={"telemetry_write_interval_s": tuning.shadow_write_interval_s})
    return settings.model_copy(update={"processors": same})


async def run(params: dict[str, str]) -> Outcome:
    from gateway.bench import VehicleLinks

    p = parse_params(params)
    vins = env.fleet_vins(p["vehicles"])
    per_vehicle = p["messages"] // p["vehicles"]
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        async with env.services(Path(tmp), vins=vins, app=None, p=p) as stack:
            stack.settings = same_write_interval(stack.settings)
            links = await VehicleLinks.connect(home=stack.home, port=stack.broker_port, vins=vins)
            try:
                baseline = await _broker_alone(stack, links, p, per_vehicle)
                async with env.cloud(stack, profile=bool(p["profile"])) as workers:
                    worker = workers.state
                    result = await _end_to_end(stack, links, worker, vins, p, per_vehicle)
            finally:
                await links.close()
    notes = [
        "msgs_per_s: first publish -> every vehicle's last update read back from Cassandra "
        "(includes the last coalesced write); processed_per_s: -> the worker merged them all",
        "telemetry is written at the reported-state interval here (telemetry_write_interval_s "
        f"= shadow_write_interval_s = {stack.settings.processors.shadow_write_interval_s} s) "
        "unless FLEETGATE_PROCESSORS__TELEMETRY_WRITE_INTERVAL_S says otherwise, so that the "
        "read-back measures the path, not a 30 s wait",
        "baseline: the same updates from the same vehicles to one MQTT service subscriber "
        "through Mosquitto alone (measured before the gateway starts)",
        f"one machine ({os.cpu_count()} cores) runs the publishers, Mosquitto, the gateway, "
        "Kafka, Cassandra and the worker; cpu_pct in % of one core",
    ]
    notes.append(busiest(result["cpu_pct"]))
    if stack.profile:
        notes.append("processors profile (cProfile, main thread, top by own CPU time): "
                     + "; ".join(stack.profile))  # fmt: skip
    return Outcome(result=result, baseline=baseline, headline="msgs_per_s", params=p, notes=notes)


async def _end_to_end(
    stack: env.Stack,
    links: Any,
    worker: env.WorkerProcess,
    vins: list[str],
    p: dict[str, Any],
    per_vehicle: int,
) -> dict[str, Any]:
    warm = max(1, p["warmup"] // len(vins)) if p["warmup"] else 0
    counter = COUNTERS[p["topic"]]
    if warm:  # a fresh Kafka/Cassandra JVM is slow until its JIT has warmed up
        await _flood(links, p, phase=0, per_vehicle=warm)
        await _until_metric(worker, counter, warm * len(vins))
    before = await worker.metrics()
    cpu, threads = children_cpu(), thread_cpu(worker.process.pid)
    started = await _flood(links, p, phase=1, per_vehicle=per_vehicle, first=warm + 1)
    total = per_vehicle * len(vins)
    handled = await _until_metric(worker, counter, before.get(counter, 0) + total)
    processed_at = time.time()
    missing, behind, moved = total, len(vins), time.monotonic()
    while missing and time.monotonic() - moved < env.STALL_S / 3:
        stored = await _stored(stack, vins, p["topic"])
        now_missing, behind = shadow_gaps(stored, phase=1, first=warm + 1, last=warm + per_vehicle)
        if now_missing < missing:
            missing, moved = now_missing, time.monotonic()
        if missing:
            await asyncio.sleep(0.2)
    stored_at = time.time()
    after = await worker.metrics()
    usage = cpu_pct(cpu, children_cpu(), stored_at - started)
    worker_threads = cpu_pct(threads, thread_cpu(worker.process.pid), stored_at - started)
    writes = after.get(WRITES, 0) - before.get(WRITES, 0)
    span = max(stored_at - started, 1e-9)
    return {
        "msgs_per_s": round(total / span, 1),
        "processed_per_s": round(total / max(processed_at - started, 1e-9), 1),
        "messages": total,
        "vehicles": len(vins),
        "lost": missing,
        "vehicles_behind": behind,
        "handled": int(handled - before.get(counter, 0)),
        "shadow_writes": int(writes),
        "writes_per_s": round(writes / span, 1),
        "writes_per_msg": round(writes / total, 4),
        "cpu_pct": usage,
        "worker_cpu_pct": worker_threads,
    }


async def _until_metric(worker: env.WorkerProcess, name: str, want: float) -> float:
    """Poll the worker's metrics until ``name`` reaches ``want`` or stops moving."""
    value, moved = -1.0, time.monotonic()
    while time.monotonic() - moved < env.STALL_S:
        now = (await worker.metrics()).get(name, 0.0)
        if now >= want:
            return now
        if now > value:
            value, moved = now, time.monotonic()
        await asyncio.sleep(0.1)
    return value


async def _broker_alone(
    stack: env.Stack, links: Any, p: dict[str, Any], per_vehicle: int
) -> dict[str, Any]:
    total = per_vehicle * len(links.links)
    async with _sink(stack, TOPICS[p["topic"]]) as statuses:
        if p["warmup"]:
            warm = max(1, p["warmup"] // len(links.links))
            await _flood(links, p, phase=0, per_vehicle=warm)
        cpu = children_cpu()
        started = await _flood(links, p, phase=2, per_vehicle=per_vehicle)
        status: dict[str, Any] = {}
        seen, moved = -1, time.monotonic()
        while status.get("count", 0) < total and time.monotonic() - moved < env.STALL_S:
            status = json.loads(await asyncio.wait_for(statuses.readline(), env.STALL_S) or "{}")
            if status.get("count", 0) > seen:
                seen, moved = status.get("count", 0), time.monotonic()
        span = max(status.get("last", started) - started, 1e-9)
        usage = cpu_pct(cpu, children_cpu(), span)
    return {
        "msgs_per_s": round(status.get("count", 0) / span, 1),
        "messages": total,
        "lost": total - status.get("count", 0),
        "cpu_pct": usage,
    }


@contextlib.asynccontextmanager
async def _sink(stack: env.Stack, topic_filter: str) -> AsyncIterator[asyncio.StreamReader]:
    """The baseline's subscriber process; yields its status lines once it is subscribed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "processors.bench_telemetry", "sink", str(stack.home),
        str(stack.broker_port), topic_filter, stdout=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if not line.startswith(b'{"ready"'):
            raise UserError("the bench subscriber did not start")
        yield process.stdout
    finally:
        await terminate(process)


async def _serve_sink(home: Path, port: int, topic_filter: str) -> None:
    """Counts distinct phase-2 (vin, seq) messages on ``topic_filter``; prints
    ``{"count": n, "last": t}`` every 0.1 s until SIGTERM."""
    from certs.layout import PkiPaths
    from gateway.mqtt import MqttLink
    from gateway.mqtt_options import LinkOptions, tls_context
    from gateway.mqtt_read import InMessage

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    seen: set[tuple[str, int]] = set()
    last = 0.0
    paths = PkiPaths(home)
    cert, key = paths.service(env.OPS)
    link: MqttLink

    def on_message(msg: InMessage, generation: int) -> None:
        nonlocal last
        body = json.loads(msg.payload)
        phase, seq = (body["signals"]["bench.phase"], body["seq"]) if "seq" in body else (
            body["state"]["bench"]["phase"], body["state"]["bench"]["seq"])  # fmt: skip
        if phase == 2 and (msg.topic, seq) not in seen:
            seen.add((msg.topic, seq))
            last = time.time()
        link.ack(msg.mid, msg.qos, generation)

    link = MqttLink(
        options=LinkOptions(host=HOST, port=port, client_id=env.OPS),
        context=tls_context(ca_chain=str(paths.ca_chain), certfile=str(cert), keyfile=str(key)),
        on_message=on_message,
        subscriptions=[(topic_filter, 1)],
    )
    await link.start(wait_s=60)
    print(json.dumps({"ready": True}), flush=True)
    try:
        while not stop.is_set():
            print(json.dumps({"count": len(seen), "last": last}), flush=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1)
    finally:
        await link.close()


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "sink":
        sys.exit("usage: python -m processors.bench_telemetry sink <home> <port> <filter>")
    from fleetgate.logs import configure_logging

    configure_logging(level="WARNING", fmt="json")  # stdout carries the status lines
    asyncio.run(_serve_sink(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
