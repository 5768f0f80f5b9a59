"""A single-node Kafka (KRaft, broker + controller in one JVM) from Maven jars, and topic set-up."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

from fleetgate.errors import ServiceUnavailable, UserError

KAFKA_VERSION = "4.1.1"
MAVEN_COORDINATES = (
    f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}",
    "org.slf4j:slf4j-reload4j:1.7.36",
)
MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"

_LOG4J = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.kafka.request.logger=WARN
"""


def server_properties(
    *, data_dir: Path, host: str, port: int, controller_port: int, partitions: int = 12
) -> str:
    """``server.properties`` for one combined broker/controller tuned for a small machine."""
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{host}:{controller_port}",
            f"listeners=PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
            f"advertised.listeners=PLAINTEXT://{host}:{port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={data_dir}",
            f"num.partitions={partitions}",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=12",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=4",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "num.network.threads=2",
            "num.io.threads=4",
            "log.retention.hours=24",
            "log.segment.bytes=67108864",
            "",
        ]
    )


def write_config(
    *, conf_dir: Path, data_dir: Path, host: str, port: int, controller_port: int
) -> Path:
    conf_dir.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    props = conf_dir / "server.properties"
    props.write_text(
        server_properties(data_dir=data_dir, host=host, port=port, controller_port=controller_port)
    )
    (conf_dir / "log4j.properties").write_text(_LOG4J)
    return props


def _jvm(*, java: str, lib_dir: Path, conf_dir: Path, heap_mb: int) -> list[str]:
    return [
        java,
        f"-Xms{heap_mb}m",
        f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j.configuration=file:{conf_dir / 'log4j.properties'}",
        f"-Dkafka.logs.dir={conf_dir}",
        "-cp",
        f"{lib_dir}/*",
    ]


def format_storage(*, java: str, lib_dir: Path, conf_dir: Path, data_dir: Path) -> bool:
    """Format the KRaft metadata once; False when ``data_dir`` was already formatted."""
    if (data_dir / "meta.properties").exists():
        return False
    argv = [
        *_jvm(java=java, lib_dir=lib_dir, conf_dir=conf_dir, heap_mb=256),
        STORAGE_TOOL,
        "format",
        "-t",
        str(uuid.uuid4().hex[:22]),
        "-c",
        str(conf_dir / "server.properties"),
        "--ignore-formatted",
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        raise UserError(
            f"formatting Kafka storage failed: {lines[-1] if lines else proc.returncode}"
        )
    return True


def command(
    *, java: str, lib_dir: Path, conf_dir: Path, heap_mb: int = 512, quick_jit: bool = True
) -> list[str]:
    """The broker's argv (pure). ``quick_jit`` compiles with C1 only
    (``-XX:TieredStopAtLevel=1``): a fresh broker's C2 compiler thread otherwise takes ~30 %
    of a core for its first minutes (measured during ``fleetgate bench commands`` on 2 cores),
    which delays everything else on a small machine; a long-lived broker on a bigger machine
    wants ``quick_jit=False``."""
    jvm = _jvm(java=java, lib_dir=lib_dir, conf_dir=conf_dir, heap_mb=heap_mb)
    if quick_jit:
        jvm.insert(-2, "-XX:TieredStopAtLevel=1")
    return [
        *jvm,
        MAIN_CLASS,
        str(conf_dir / "server.properties"),
    ]


async def probe(*, bootstrap: str, timeout_s: float = 5.0) -> str:
    """The cluster id when Kafka answers a metadata request, else raise."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000)
    )
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        cluster = await asyncio.wait_for(admin.describe_cluster(), timeout_s)
        if not cluster.get("brokers"):
            raise ServiceUnavailable(f"Kafka at {bootstrap} has no broker registered yet")
        await asyncio.wait_for(admin.list_topics(), timeout_s)
        return str(cluster.get("cluster_id", "?"))
    finally:
        await admin.close()


async def wait_ready(*, bootstrap: str, timeout_s: float) -> str:
    """Wait until Kafka answers metadata requests; returns the cluster id."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return await probe(bootstrap=bootstrap, timeout_s=3.0)
        except Exception as exc:
            last = exc
            await asyncio.sleep(0.5)
    raise ServiceUnavailable(f"Kafka at {bootstrap} did not answer within {timeout_s:.0f}s: {last}")


async def create_topics(
    *,
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
    attempts: int = 10,
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); returns the ones created.

    Transient errors (a broker just started, a leader moving) are retried with backoff.
    """
    from aiokafka.errors import KafkaConnectionError, NodeNotReadyError, RequestTimedOutError

    names = list(names)
    for attempt in range(attempts):
        try:
            return await _create_topics(
                bootstrap=bootstrap,
                names=names,
                partitions=partitions,
                replication_factor=replication_factor,
                configs=configs,
            )
        except (KafkaConnectionError, NodeNotReadyError, RequestTimedOutError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(min(0.2 * 2**attempt, 3.0))
    raise AssertionError("unreachable")


async def _create_topics(
    *,
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 1,
    configs: dict[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet (idempotent); returns the ones created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [n for n in dict.fromkeys(names) if n not in existing]
        if not wanted:
            return []
        new = [
            NewTopic(
                name=n,
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs=dict(configs or {}),
            )
            for n in wanted
        ]
        response = await admin.create_topics(new, timeout_ms=30_000)
        errors = [
            (name, code, msg)
            for name, code, msg in getattr(response, "topic_errors", [])
            if code not in (0, 36)  # 36: TOPIC_ALREADY_EXISTS (another instance won the race)
        ]
        if errors:
            raise UserError(f"creating Kafka topics failed: {errors}")
        return wanted
    finally:
        await admin.close()
