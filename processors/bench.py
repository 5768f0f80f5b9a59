"""``fleetgate bench commands`` and ``fleetgate bench telemetry``: the processors under load.

commands: ``commands`` app requests at ``rate`` per second over ``vehicles`` online
vehicles go into Kafka as the gateway writes them; a simulated fleet reads the ``outbound``
topic and answers every command at once. ``p50_ms``/``p99_ms``: request record sent -> the
command's downlink record read back (the processors' part of the command path, Kafka hops
included); ``roundtrip_*``: request -> ``succeeded`` status. Baseline: the same load through
an echo (a bare aiokafka consumer/producer doing no checks, no Cassandra).

telemetry: ``messages`` telemetry records of ``vehicles`` vehicles are written first; then a
worker starts and ``msgs_per_s`` is how fast it gets through them (read from its Prometheus
metrics), ``lost`` the sequence gaps it saw. Baseline: a bare consumer reading the same
records.

Both run the worker as ``python -m processors`` (a process of its own, as deployed).
Parameters (``-p key=value``): vehicles, commands, rate, messages, partitions,
bootstrap (a running Kafka, default: start one), cassandra (``host:port``, default: start one).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from fleetgate.bench.report import Outcome, latency_summary
from processors import bench_env as env
from processors.settings import ProcessorSettings, ProcessorTuning
from schemas.ids import make_vin
from schemas.topics import HEADER_TARGET_TOPIC, KafkaTopics, MqttTopics, parse_topic

COMMAND_DEFAULTS = {"vehicles": "50", "commands": "2000", "rate": "200", "partitions": "6",
                    "bootstrap": "", "cassandra": ""}  # fmt: skip
TELEMETRY_DEFAULTS = {"vehicles": "100", "messages": "50000", "partitions": "6",
                      "bootstrap": "", "cassandra": ""}  # fmt: skip


def _settings(
    root: Path, bootstrap: str, contact: tuple[str, int], partitions: int
) -> ProcessorSettings:
    tag = uuid.uuid4().hex[:8]
    return ProcessorSettings.model_validate(
        {
            "home": root / "home",
            "log_level": "INFO",
            "kafka": {
                "bootstrap": bootstrap,
                "topic_prefix": f"bench{tag}.",
                "partitions": partitions,
            },
            "cassandra": {"hosts": [contact[0]], "port": contact[1], "keyspace": f"fg_bench_{tag}"},
            "processors": ProcessorTuning(metrics_port=env.free_port()).model_dump(),
        }
    )


# --------------------------------------------------------------------------------------------
# commands


class _Fleet:
    """Answers every command downlink at once; times downlinks and final statuses."""

    def __init__(self, bootstrap: str, topics: KafkaTopics) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        self.topics = topics
        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
        self.consumer = AIOKafkaConsumer(
            topics.outbound, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, fetch_max_wait_ms=5,
        )  # fmt: skip
        self.sent: dict[str, float] = {}
        self.downlink: dict[str, float] = {}
        self.done: dict[str, float] = {}
        self.duplicates = 0
        self.deliveries: list[asyncio.Future[Any]] = []
        self.send_errors = 0

    async def _serve(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    topic = parse_topic(dict(r.headers)[HEADER_TARGET_TOPIC].decode())
                    cid = topic.command_id
                    if cid is None:
                        continue
                    if topic.vin is not None:  # a downlink: answer it
                        if cid in self.downlink:
                            self.duplicates += 1
                            continue
                        self.downlink[cid] = now
                        await self.publish(
                            self.topics.command_results, topic.vin,
                            MqttTopics.command_result(topic.vin, cid),
                            f"vehicle:{topic.vin}", {"status": "succeeded", "detail": None},
                        )  # fmt: skip
                    elif json.loads(r.value)["status"] == "succeeded":
                        self.done.setdefault(cid, now)

    async def publish(
        self, kafka_topic: str, vin: str, mqtt_topic: str, sender: str, body: dict[str, Any]
    ) -> None:
        headers = env.uplink_headers(sender=sender, topic=mqtt_topic)
        delivery = await self.producer.send(
            kafka_topic, json.dumps(body).encode(), key=vin.encode(), headers=headers
        )
        self.deliveries.append(delivery)

    async def run(self, vins: list[str], count: int, rate: int, *, warmup: int) -> float:
        await self.producer.start()
        await self.consumer.start()
        server = asyncio.ensure_future(self._serve())
        try:
            for vin in vins:
                event = {"vin": vin, "online": True, "ts": env.now_ms(), "cause": "birth"}
                await self.publish(
                    self.topics.connectivity,
                    vin,
                    MqttTopics.connection(vin),
                    f"vehicle:{vin}",
                    event,
                )
            await self.producer.flush()
            for i in range(warmup):  # prepared statements, caches, connections
                await self._command(vins[i % len(vins)], measured=False)
                await asyncio.sleep(0.02)
            await asyncio.sleep(1.0)
            self.sent.clear()
            self.downlink.clear()
            self.done.clear()
            started = time.perf_counter()
            for i in range(count):
                await self._command(vins[i % len(vins)], measured=True)
                pause = started + (i + 1) / rate - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
            last, seen = time.perf_counter(), -1
            while len(self.done) < count and time.perf_counter() - last < env.STALL_S:
                if len(self.done) != seen:
                    seen, last = len(self.done), time.perf_counter()
                await asyncio.sleep(0.05)
            outcomes = await asyncio.gather(*self.deliveries, return_exceptions=True)
            self.send_errors = sum(isinstance(o, BaseException) for o in outcomes)
            return started
        finally:
            server.cancel()
            await self.consumer.stop()
            await self.producer.stop()

    async def _command(self, vin: str, *, measured: bool) -> None:
        cid = str(uuid.uuid4())
        body = {"command_id": cid, "vin": vin, "name": "doors.lock", "ttl_s": 60}
        if measured:
            self.sent[cid] = time.perf_counter()
        await self.publish(
            self.topics.command_requests,
            vin,
            MqttTopics.app_commands(env.APP),
            f"app:{env.APP}",
            body,
        )

    def figures(self, started: float, count: int) -> dict[str, Any]:
        down = [(self.downlink[c] - t) * 1000 for c, t in self.sent.items() if c in self.downlink]
        rtt = [(self.done[c] - t) * 1000 for c, t in self.sent.items() if c in self.done]
        end = max(self.done.values(), default=started)
        result: dict[str, Any] = {
            "commands": count,
            "msgs_per_s": round(len(self.done) / max(end - started, 1e-9), 1),
        }
        result.update(latency_summary(down))
        trip = latency_summary(rtt)
        result.update({"roundtrip_p50_ms": trip["p50_ms"], "roundtrip_p99_ms": trip["p99_ms"]})
        result.update(
            {
                "lost": count - len(down),
                "unanswered": count - len(rtt),
                "duplicates": self.duplicates,
                "send_errors": self.send_errors,
            }
        )
        return result


async def _echo(bootstrap: str, topics: KafkaTopics, stop: asyncio.Event) -> None:
    """The baseline's 'processor': forwards requests as downlinks and results as statuses."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(
        topics.command_requests, topics.command_results, bootstrap_servers=bootstrap,
        auto_offset_reset="earliest", fetch_max_wait_ms=5, group_id=f"{topics.prefix}echo",
    )  # fmt: skip
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            for records in batch.values():
                for r in records:
                    vin = r.key.decode()
                    source = parse_topic(dict(r.headers)["fg-mqtt-topic"].decode())
                    if r.topic == topics.command_requests:
                        cid = json.loads(r.value)["command_id"]
                        target, value = (
                            MqttTopics.command(vin, cid),
                            b'{"name":"x","params":{},"expires_at":0}',
                        )
                    else:
                        cid = source.command_id or ""
                        target = MqttTopics.app_command_status(env.APP, cid)
                        value = json.dumps({"status": "succeeded", "ts": env.now_ms()}).encode()
                    await producer.send(
                        topics.outbound,
                        value,
                        key=r.key,
                        headers=[(HEADER_TARGET_TOPIC, target.encode())],
                    )
    finally:
        await consumer.stop()
        await producer.stop()


async def run_commands(params: dict[str, str]) -> Outcome:
    p = env.parse_params(params, COMMAND_DEFAULTS)
    vins = [make_vin(i, wmi="BNC") for i in range(p["vehicles"])]
    warmup = min(50, p["commands"])
    from processors.worker import preflight

    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        root = Path(tmp)
        async with (
            env.kafka_node(root, p["bootstrap"]) as bootstrap,
            env.cassandra_node(root, p["cassandra"]) as contact,
        ):
            settings = _settings(root, bootstrap, contact, p["partitions"])
            topics = KafkaTopics(settings.kafka.topic_prefix)
            await env.prepare_store(settings, vins)
            await preflight(settings)
            worker = env.WorkerProcess.start(settings, root / "processors.log")
            try:
                await worker.wait_assigned()
                fleet = _Fleet(bootstrap, topics)
                cpu = worker.cpu_seconds()
                started = await fleet.run(vins, p["commands"], p["rate"], warmup=warmup)
                result = fleet.figures(started, p["commands"])
                after = worker.cpu_seconds()
                if cpu is not None and after is not None:
                    per = (after - cpu) * 1000 / (p["commands"] + warmup)
                    result["worker_cpu_ms_per_command"] = round(per, 2)
            finally:
                worker.stop()
            echo_settings = _settings(root, bootstrap, contact, p["partitions"])
            echo_topics = KafkaTopics(echo_settings.kafka.topic_prefix)
            await preflight(echo_settings.model_copy(update={"cassandra": settings.cassandra}))
            stop = asyncio.Event()
            echo = asyncio.ensure_future(_echo(bootstrap, echo_topics, stop))
            baseline_fleet = _Fleet(bootstrap, echo_topics)
            started = await baseline_fleet.run(vins, p["commands"], p["rate"], warmup=warmup)
            baseline = baseline_fleet.figures(started, p["commands"])
            stop.set()
            await echo
            await env.drop_keyspace(settings)
    return Outcome(
        result=result,
        headline="p99_ms",
        baseline=baseline,
        params=p,
        notes=["p*_ms: request record -> downlink record; baseline: a bare Kafka echo"],
    )


# --------------------------------------------------------------------------------------------
# telemetry


async def run_telemetry(params: dict[str, str]) -> Outcome:
    p = env.parse_params(params, TELEMETRY_DEFAULTS)
    vins = [make_vin(i, wmi="BNT") for i in range(p["vehicles"])]
    from processors.worker import preflight

    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        root = Path(tmp)
        async with (
            env.kafka_node(root, p["bootstrap"]) as bootstrap,
            env.cassandra_node(root, p["cassandra"]) as contact,
        ):
            settings = _settings(root, bootstrap, contact, p["partitions"])
            topic = KafkaTopics(settings.kafka.topic_prefix).telemetry
            await env.prepare_store(settings, vins[:1])
            await preflight(settings)
            await env.write_telemetry(bootstrap, topic, vins, p["messages"])
            port = settings.processors.metrics_port
            assert port is not None
            worker = env.WorkerProcess.start(settings, root / "processors.log")
            try:
                await worker.wait_assigned()
                started = time.perf_counter()
                values: dict[str, float] = {}
                last, seen = time.perf_counter(), -1.0
                while time.perf_counter() - last < env.STALL_S:
                    values = await env.read_metrics(port)
                    done = values.get("fleetgate_telemetry_messages_total", 0.0)
                    if done >= p["messages"]:
                        break
                    if done != seen:
                        seen, last = done, time.perf_counter()
                    await asyncio.sleep(0.1)
                elapsed = time.perf_counter() - started
            finally:
                worker.stop()
            processed = int(values.get("fleetgate_telemetry_messages_total", 0))
            result = {
                "messages": p["messages"],
                "msgs_per_s": round(processed / elapsed, 1),
                "processed": processed,
                "lost": int(values.get("fleetgate_telemetry_lost_total", 0))
                + p["messages"]
                - processed,
                "duplicates": int(values.get("fleetgate_telemetry_duplicates_total", 0)),
            }
            baseline = {"msgs_per_s": round(await env.raw_read(bootstrap, topic, p["messages"]), 1)}
            await env.drop_keyspace(settings)
    return Outcome(
        result=result,
        headline="msgs_per_s",
        baseline=baseline,
        params=p,
        notes=["msgs_per_s includes up to 0.1 s of metrics polling; baseline: bare consumer"],
    )
