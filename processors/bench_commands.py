"""``fleetgate bench commands``: app -> vehicle -> app round trip over the whole path, with
background telemetry from a simulated fleet.

Set-up (:mod:`processors.bench_env`): Mosquitto, the gateway, Kafka, Cassandra, a processors
worker, ``vehicles`` simulated vehicles (``fleetgate sim``'s fleet: mutual TLS, telemetry at
``telemetry_hz`` each, commands answered at once and always successfully), all linked to the
bench app. The app (its own certificate, MQTT over mutual TLS) sends ``commands`` commands at
``rate`` per second, round robin over the vehicles, and times each status it receives on
``apps/<app>/commands/<id>/status`` from its publish. Headline ``p99_ms``: request ->
``succeeded``; ``delivered_*``: request -> ``delivered``; ``lost``: expected statuses
(accepted, delivered, succeeded) never received; ``duplicates``: one seen twice.
``hops_p50_ms``/``hops_p99_ms`` split the trip with the statuses' own ``ts``: app -> gateway
(the accepted status carries the gateway's receive time), gateway -> processors ->
downlink sent (delivered ts), downlink -> vehicle -> result handled (succeeded ts), result
-> app.

The measurement starts once the worker has caught up with the fleet's start (``settle_s``),
with ``jit=full`` (the default) once the bench's own Kafka and Cassandra have compiled their
hot code (:class:`fleetgate.bench.nodes.JitSettle`; commands flow at the rate meanwhile,
untimed), and after
``warmup`` commands sent at the same steady rate (``warmup_*``: their round trips, not
in the headline: a freshly started stack is slower for its first seconds of commands);
``telemetry_*`` say how fresh the background telemetry was during it.

Baseline, in the same run with the same background load: a service client publishes the
same commands on ``vehicles/<VIN>/commands/<id>`` and times ``…/<id>/result`` from the same
vehicles (the broker alone, no cloud).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from fleetgate.bench.kafka_hop import kafka_hop
from fleetgate.bench.nodes import (
    HOST,
    JIT_MAX_S,
    JIT_SETTLED_PCT,
    JIT_WINDOW_S,
    JitSettle,
    busiest,
    children_cpu,
    cpu_pct,
    jit_cpu,
    thread_cpu,
)
from fleetgate.bench.report import Outcome, latency_summary
from fleetgate.errors import UserError
from processors import bench_env as env
from processors.bench_figures import (
    APP_STATUSES,
    Event,
    since_sent,
    telemetry_figures,
    trip_figures,
)
from schemas.topics import MqttTopics, parse_topic

DEFAULTS = {"vehicles": "1000", "commands": "600", "rate": "20", "telemetry_hz": "0.1",
            "warmup": "300", "partitions": "6", "profile": "0", "bootstrap": "",
            "cassandra": "", "workers": "split", "jit": "full"}  # fmt: skip
WORKER_LAYOUTS = {"split": ("state", "commands"), "single": ("all",)}
"""``workers``: a ``commands`` and a ``state`` worker (the recommended layout), or one worker
running every agent."""
SETTLED_LAG_MS = 100.0
"""The worker has caught up with the fleet's start (births, full reported shadows) once the
telemetry it handles is this fresh on average for three seconds in a row."""
SETTLE_MAX_S = 180.0
SETTLE_S = 15.0
"""How long after the last command a missing status is still waited for."""


def parse_params(params: dict[str, str]) -> dict[str, Any]:
    p = env.parse_params(params, DEFAULTS, scenario="commands", floats=("telemetry_hz",),
                         zero_ok=("warmup", "profile"),
                         choices={"workers": tuple(WORKER_LAYOUTS),
                                  "jit": ("full", "quick")})  # fmt: skip
    if p["profile"] > 1:
        raise UserError("commands parameter profile must be 0 or 1")
    return p


# --------------------------------------------------------------------------------------------
# the fleet and the clients


class _Watch:
    """A :class:`simulator.progress.View` that only remembers how many vehicles are online."""

    def __init__(self) -> None:
        self.online = 0
        self.summary: dict[str, Any] = {}

    def start(self) -> None:
        pass

    def update(self, merged: Mapping[str, Any], *, elapsed: float, phase: str) -> None:
        self.online = int(merged["links"].get("online", 0))

    def stop(self) -> None:
        pass


@contextlib.asynccontextmanager
async def simulated_fleet(stack: env.Stack, count: int, rate_hz: float) -> AsyncIterator[_Watch]:
    """``fleetgate sim``'s fleet on the bench broker (worker processes), until all are online."""
    from simulator.settings import SimOptions, SimSettings
    from simulator.supervisor import run_fleet

    options = SimOptions(vehicles=count, first=env.FIRST_VEHICLE, rate_hz=rate_hz,
                         broker=f"{HOST}:{stack.broker_port}", command_latency_ms=(0.0, 0.0),
                         command_failure_rate=0.0, ramp_per_s=500.0, max_attempts=0)  # fmt: skip
    settings = SimSettings(home=stack.home, log_level="WARNING", log_format="json", sim=options)
    watch, stop = _Watch(), threading.Event()
    task = asyncio.ensure_future(asyncio.to_thread(run_fleet, settings, view=watch, stop=stop))
    try:
        deadline = time.monotonic() + 60 + count / 50
        while watch.online < count:
            if task.done() or time.monotonic() > deadline:
                raise UserError(f"only {watch.online} of {count} simulated vehicles came online")
            await asyncio.sleep(0.25)
        yield watch
    finally:
        stop.set()
        watch.summary = await task


async def _client(
    stack: env.Stack, *, app: bool, name: str, topic_filter: str, on_event: Callable[[Event], None]
) -> Any:
    """An MQTT connection (mutual TLS) of the bench app or a service; every message received
    on ``topic_filter`` becomes an :data:`Event`."""
    from certs.layout import PkiPaths
    from gateway.mqtt import MqttLink
    from gateway.mqtt_options import LinkOptions, tls_context
    from gateway.mqtt_read import InMessage

    paths = PkiPaths(stack.home)
    cert, key = paths.app(name) if app else paths.service(name)
    link: MqttLink

    def on_message(msg: InMessage, generation: int) -> None:
        now = time.time() * 1000
        cid = parse_topic(msg.topic).command_id or ""
        body = json.loads(msg.payload)
        ts = body.get("ts")
        on_event((cid, str(body.get("status")), now, ts if isinstance(ts, int) else None))
        link.ack(msg.mid, msg.qos, generation)

    link = MqttLink(
        options=LinkOptions(host=HOST, port=stack.broker_port, client_id=name),
        context=tls_context(ca_chain=str(paths.ca_chain), certfile=str(cert), keyfile=str(key)),
        on_message=on_message,
        subscriptions=[(topic_filter, 1)],
    )
    await link.start(wait_s=60)
    return link


async def _drive(
    send: Callable[[str, str], None],
    events: list[Event],
    *,
    final: str,
    vins: list[str],
    count: int,
    rate: int,
    warmup: int,
    jit: JitSettle | None,
    measuring: Callable[[], Awaitable[None]],
) -> tuple[dict[str, float], dict[str, float]]:
    """Commands at one steady ``rate``/s with no pause: while ``jit`` is busy (untimed),
    then ``warmup``, then ``count`` (``measuring`` is awaited right before the first);
    waits for their statuses (until every one has its ``final`` status, or none came for
    SETTLE_S). Returns the warm-up's and the measurement's (id -> wall ms sent)."""
    warm: dict[str, float] = {}
    sent: dict[str, float] = {}
    started, i = time.monotonic(), 0

    async def pace() -> None:
        nonlocal i
        i += 1
        pause = started + i / rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)

    check = started
    while jit is not None:
        if time.monotonic() >= check:
            check += 1.0
            if not jit.busy():
                break
        send(vins[-1 - i % len(vins)], str(uuid.uuid4()))
        await pace()
    for n in range(warmup + count):
        if n == warmup:
            await measuring()
        cid = str(uuid.uuid4())
        if n < warmup:
            warm[cid] = time.time() * 1000
            send(vins[-1 - i % len(vins)], cid)
        else:
            sent[cid] = time.time() * 1000
            send(vins[((n - warmup) * 7) % len(vins)], cid)
        await pace()
    last, seen = time.monotonic(), -1
    while (done := len({e[0] for e in events if e[1] == final and e[0] in sent})) < count:
        if done != seen:
            seen, last = done, time.monotonic()
        elif time.monotonic() - last > SETTLE_S:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # a late duplicate
    return warm, sent


# --------------------------------------------------------------------------------------------
# the scenario


async def run(params: dict[str, str]) -> Outcome:
    p = parse_params(params)
    vins = env.fleet_vins(p["vehicles"])
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        async with (
            env.services(Path(tmp), vins=vins, app=env.APP, p=p) as stack,
            env.cloud(
                stack, profile=bool(p["profile"]), roles=WORKER_LAYOUTS[p["workers"]]
            ) as workers,
            simulated_fleet(stack, p["vehicles"], p["telemetry_hz"]) as watch,
        ):
            settled = await _settle(workers.state)
            own_jvms = not (p["bootstrap"] or p["cassandra"])
            jit = JitSettle() if own_jvms and p["jit"] == "full" else None
            result = await _trips(stack, workers, vins, p, cloud=True, own_jvms=own_jvms, jit=jit)
            result["jit_settle_s"] = jit.seconds if jit else None
            baseline = await _trips(stack, workers, vins, p, cloud=False, own_jvms=own_jvms)
            hop = await kafka_hop(bootstrap=stack.bootstrap, count=p["commands"], rate=p["rate"])
            result.update({f"kafka_hop_{k}": v for k, v in hop.items()})
            result["vehicles_online"] = watch.online
            result["worker_nice"] = {role: os.getpriority(os.PRIO_PROCESS, w.process.pid)
                                     for role, w in workers.by_role.items()}  # fmt: skip
            result["settle_s"] = settled
    summary = watch.summary
    result["sim_msgs_per_s"] = summary.get("msgs_per_s")
    result["sim_commands_answered"] = summary.get("commands_answered")
    notes = [
        "p*_ms: app publishes the command -> its status 'succeeded' arrives (delivered_*: "
        "-> 'delivered'); hops_* split it with the statuses' ts (one clock, ms)",
        f"background: {p['vehicles']} simulated vehicles, telemetry at {p['telemetry_hz']} Hz "
        "each, through the gateway and the processors, during both measurements",
        "baseline: the same commands from a service client straight to the vehicles and their "
        "results back, through Mosquitto alone",
        f"warmup_*: the first {p['warmup']} commands, sent at the same steady rate just before "
        "the measured ones and left out of p*_ms: a freshly started stack is slower for its "
        "first seconds of commands",
        (
            f"jit={p['jit']}: the bench's own Kafka and Cassandra compile with C2 like "
            "long-running nodes, and commands flow at the same rate, untimed, until their JIT "
            f"compilers use under {JIT_SETTLED_PCT:.0f}% of a core over {JIT_WINDOW_S:.0f} s "
            f"(jit_settle_s; null: not within {JIT_MAX_S:.0f} s, or not the bench's own JVMs); "
            "jit_cpu_pct: the compilers' CPU during the measurement"
            if p["jit"] == "full"
            else "jit=quick: Kafka and Cassandra compile with C1 only (as `fleetgate up` runs "
            "them: quick to start, more CPU per request) and nothing waits for their JIT"
        ),
        "kafka_hop_*: one record from a producer to a consumer through the same Kafka, as "
        "many and at the same rate, under the same background load, after both measurements; "
        "a command's round trip crosses Kafka four times (request, downlink, result, status)",
        "measured once the worker keeps up with the fleet's start (births, full reported "
        f"shadows): telemetry fresher than {SETTLED_LAG_MS:.0f} ms on average for 3 s "
        "(settle_s; null: it did not within 180 s)",
        "worker_nice: each worker's CPU niceness (FLEETGATE_PROCESSORS__NICE; a state worker "
        "defaults to 10, so telemetry work waits for idle CPU instead of delaying commands)",
        "cpu_pct: CPU of each process kind over the measurement, % of one core "
        f"({os.cpu_count()} cores; other work on the machine is not counted)",
    ]
    notes.append(busiest(result["cpu_pct"]))
    if settled is None:
        notes.append(
            "the worker never caught up with the background telemetry (it handled "
            f"{result.get('telemetry_msgs_per_s')} msgs/s of {summary.get('msgs_per_s')} sent; "
            f"mean lag {result.get('telemetry_lag_mean_ms')} ms): the commands queued behind "
            "it, so 'lost' counts statuses still queued when the bench stopped waiting; lower "
            "telemetry_hz or vehicles to measure the command path itself"
        )
    if stack.profile:
        notes.append("processors profile (cProfile, main thread, top by own CPU time): "
                     + "; ".join(stack.profile))  # fmt: skip
    return Outcome(result=result, baseline=baseline, headline="p99_ms", params=p, notes=notes)


async def _settle(worker: env.WorkerProcess) -> float | None:
    """Wait until the worker keeps up with the background telemetry; how long that took
    (None: it did not within SETTLE_MAX_S, the measurement goes ahead anyway)."""
    started = time.monotonic()
    fresh, last = 0, await worker.metrics()
    while time.monotonic() - started < SETTLE_MAX_S:
        await asyncio.sleep(1.0)
        now = await worker.metrics()
        lag = telemetry_figures(last, now, 1.0)["telemetry_lag_mean_ms"]
        fresh, last = (fresh + 1 if lag is not None and lag < SETTLED_LAG_MS else 0), now
        if fresh == 3:
            return round(time.monotonic() - started, 1)
    return None


async def _trips(
    stack: env.Stack,
    workers: env.Workers,
    vins: list[str],
    p: dict[str, Any],
    *,
    cloud: bool,
    own_jvms: bool,
    jit: JitSettle | None = None,
) -> dict[str, Any]:
    """Command round trips through the cloud (the app's view) or the broker alone; the
    measurement (CPU, Cassandra requests, telemetry) starts with its first command;
    ``jit_cpu_pct`` only when Kafka and Cassandra are the bench's own (``own_jvms``)."""
    events: list[Event] = []
    if cloud:
        expected: tuple[str, ...]
        name, expected, topic_filter = env.APP, APP_STATUSES, f"apps/{env.APP}/commands/+/status"
    else:
        name, expected, topic_filter = env.OPS, ("succeeded",), "vehicles/+/commands/+/result"
    link = await _client(
        stack, app=cloud, name=name, topic_filter=topic_filter, on_event=events.append
    )

    def send(vin: str, cid: str) -> None:
        if cloud:
            body: dict[str, Any] = {"command_id": cid, "vin": vin, "name": "doors.lock",
                                    "params": {}, "ttl_s": 60}  # fmt: skip
            topic = MqttTopics.app_commands(env.APP)
        else:
            body = {"name": "doors.lock", "params": {}, "expires_at": env.now_ms() + 60_000}
            topic = MqttTopics.command(vin, cid)
        link.publish(topic, json.dumps(body).encode(), qos=1)

    worker = workers.state
    pids = {role: w.process.pid for role, w in workers.by_role.items()}
    mark: dict[str, Any] = {}

    async def measuring() -> None:
        mark.update(store=await env.cassandra_counts(stack.settings), cpu=children_cpu(),
                    jit=jit_cpu(), metrics=await worker.metrics(), t=time.monotonic(),
                    threads={role: thread_cpu(pid) for role, pid in pids.items()})  # fmt: skip

    try:
        warm, sent = await _drive(
            send, events, final="succeeded", vins=vins, count=p["commands"], rate=p["rate"],
            warmup=p["warmup"], jit=jit, measuring=measuring,
        )  # fmt: skip
        span = time.monotonic() - mark["t"]
        usage = cpu_pct(mark["cpu"], children_cpu(), span)
        worker_threads = {role: cpu_pct(mark["threads"][role], thread_cpu(pid), span)
                          for role, pid in pids.items()}  # fmt: skip
        background = telemetry_figures(mark["metrics"], await worker.metrics(), span)
        ops = env.rates(mark["store"], await env.cassandra_counts(stack.settings), span)
        compiling = round(100 * max(0.0, jit_cpu() - mark["jit"]) / span, 1) if own_jvms else None
    finally:
        await link.close()
    figures = trip_figures(sent, events, expected=expected)
    warm_up = latency_summary(since_sent(warm, events, expected[-1]))
    figures.update({f"warmup_{k}": v for k, v in warm_up.items() if k != "count"})
    return {**figures, "cpu_pct": usage, "jit_cpu_pct": compiling,
            "worker_cpu_pct": worker_threads, **background,
            "cassandra_ops_per_s": ops}  # fmt: skip
