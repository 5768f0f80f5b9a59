"""What the local stack runs: each component knows how to prepare, start and probe itself."""

from __future__ import annotations

import asyncio
import ssl
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from fleetgate.stack import kafka, maven
from fleetgate.stack.settings import StackSettings

Probe = Callable[[], Awaitable[str]]


@dataclass
class Component:
    """A child process of ``fleetgate up`` and how to tell that it really answers."""

    name: str
    endpoint: str
    argv: list[str]
    probe: Probe
    version: str = ""
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 120.0


def service_env(settings: StackSettings) -> dict[str, str]:
    """Environment for the project's own services so they find the stack's parts."""
    return {
        "FLEETGATE_HOME": str(settings.home.resolve()),
        "FLEETGATE_KAFKA__BOOTSTRAP": settings.kafka_bootstrap,
        "FLEETGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "FLEETGATE_CASSANDRA__HOSTS": settings.host,
        "FLEETGATE_CASSANDRA__PORT": str(settings.cassandra_port),
        "FLEETGATE_CASSANDRA__KEYSPACE": settings.cassandra.keyspace,
        "FLEETGATE_MQTT__HOST": settings.host,
        "FLEETGATE_MQTT__PORT": str(settings.broker_port),
        "FLEETGATE_LOG_FORMAT": "json",
    }


def kafka_component(settings: StackSettings, *, java: str, lib_dir: Path) -> Component:
    conf = settings.home / "kafka" / "conf"
    data = settings.home / "kafka" / "data"
    kafka.write_config(
        conf_dir=conf,
        data_dir=data,
        host=settings.host,
        port=settings.kafka_port,
        controller_port=settings.kafka_controller_port,
    )
    kafka.format_storage(java=java, lib_dir=lib_dir, conf_dir=conf, data_dir=data)
    bootstrap = settings.kafka_bootstrap

    async def probe() -> str:
        cluster = await kafka.probe(bootstrap=bootstrap)
        return f"cluster {cluster}"

    return Component(
        name="kafka",
        endpoint=bootstrap,
        argv=kafka.command(
            java=java,
            lib_dir=lib_dir,
            conf_dir=conf,
            heap_mb=settings.kafka_heap_mb,
            quick_jit=not settings.kafka_full_jit,
        ),
        probe=probe,
        version=kafka.KAFKA_VERSION,
    )


def cassandra_component(settings: StackSettings, *, java: str, lib_dir: Path) -> Component:
    from fleetgate.stack import cassandra

    conf = settings.home / "cassandra" / "conf"
    data = settings.home / "cassandra" / "data"
    cassandra.write_config(
        conf_dir=conf,
        data_dir=data,
        host=settings.host,
        cql_port=settings.cassandra_port,
        storage_port=settings.cassandra_storage_port,
    )
    host, port = settings.host, settings.cassandra_port

    async def probe() -> str:
        version = await cassandra.wait_ready(host=host, port=port, timeout_s=5.0)
        return f"release {version}"

    return Component(
        name="cassandra",
        endpoint=f"{host}:{port}",
        argv=cassandra.command(
            java=java,
            lib_dir=lib_dir,
            conf_dir=conf,
            data_dir=data,
            heap_mb=settings.cassandra_heap_mb,
            quick_jit=not settings.cassandra_full_jit,
        ),
        probe=probe,
        version=cassandra.CASSANDRA_VERSION,
        ready_timeout_s=settings.start_timeout_s,
    )


async def tls_probe(*, host: str, port: int, pki_dir: Path, client: str = "ops") -> str:
    """A mutual-TLS handshake with a service certificate: the broker answers."""
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca-chain.pem"))
    ctx.load_cert_chain(
        str(pki_dir / "services" / f"{client}.pem"), str(pki_dir / "services" / f"{client}.key")
    )
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ctx, server_hostname=host), 5.0
    )
    cipher = writer.get_extra_info("cipher")
    writer.close()
    await writer.wait_closed()
    del reader
    return f"mTLS {cipher[1] if cipher else ''}".strip()


def broker_version(kind: str) -> str:
    if kind == "mosquitto":
        from fleetgate.stack.prereq import mosquitto_version

        return f"mosquitto {mosquitto_version() or '?'}"
    from importlib.metadata import version

    return f"amqtt {version('amqtt')} (hardened)"


def broker_component(settings: StackSettings) -> Component:
    host, port, pki = settings.host, settings.broker_port, settings.pki_dir

    async def probe() -> str:
        return await tls_probe(host=host, port=port, pki_dir=pki)

    return Component(
        name=f"broker ({settings.broker_kind})",
        endpoint=f"{host}:{port}",
        argv=[
            sys.executable,
            "-m",
            "fleetgate",
            "broker",
            "--broker",
            settings.broker_kind,
            "--host",
            host,
            "--port",
            str(port),
        ],
        probe=probe,
        env=service_env(settings),
        version=broker_version(settings.broker_kind),
    )


def resolve_jars(settings: StackSettings) -> tuple[Path, Path]:
    """The Kafka and Cassandra lib directories (resolved from Maven Central once)."""
    from fleetgate.stack import cassandra

    kafka_lib = maven.resolve(
        name=f"kafka-{kafka.KAFKA_VERSION}",
        coordinates=kafka.MAVEN_COORDINATES,
        cache_dir=settings.cache_dir,
    )
    cassandra_lib = maven.resolve(
        name=f"cassandra-{cassandra.CASSANDRA_VERSION}",
        coordinates=cassandra.MAVEN_COORDINATES,
        cache_dir=settings.cache_dir,
    )
    return kafka_lib, cassandra_lib


async def http_probe(*, host: str, port: int, path: str = "/metrics") -> str:
    """An HTTP GET that answers 200: the service is serving its metrics."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 5.0)
    finally:
        writer.close()
    parts = status.decode(errors="replace").split()
    if len(parts) < 2 or parts[1] != "200":
        raise ConnectionError(f"{path} answered {status!r}")
    return f"metrics on :{port}"


def _fleetgate(*args: str) -> list[str]:
    return [sys.executable, "-m", "fleetgate", *args]


WORKER_PORTS = {
    "processors-commands": "processors_metrics_port",
    "processors-state": "processors_state_metrics_port",
}
"""The processors workers ``fleetgate up`` runs, in the recommended layout (commands apart
from shadow and telemetry), and the :class:`StackSettings` field of each one's metrics port."""


def worker_port(settings: StackSettings, name: str) -> int:
    """The metrics port of the worker ``name`` (a key of :data:`WORKER_PORTS`)."""
    port: int = getattr(settings, WORKER_PORTS[name])
    return port


def _worker(settings: StackSettings, name: str, env: dict[str, str]) -> Component:
    host, port = settings.host, worker_port(settings, name)

    async def probe() -> str:
        return await http_probe(host=host, port=port)

    return Component(
        name=name,
        endpoint=f"{host}:{port}/metrics",
        argv=_fleetgate("processors", "--role", name.removeprefix("processors-")),
        probe=probe,
        env={**env, "FLEETGATE_PROCESSORS__METRICS_PORT": str(port)},
        version="fleetgate",
        ready_timeout_s=settings.start_timeout_s,
    )


def service_components(settings: StackSettings) -> list[Component]:
    """The project's own services, started once the broker answers."""
    host = settings.host
    env = service_env(settings)
    gw_port = settings.gateway_metrics_port

    async def gateway_probe() -> str:
        return await http_probe(host=host, port=gw_port)

    return [
        Component(
            name="gateway",
            endpoint=f"{host}:{gw_port}/metrics",
            argv=_fleetgate("gateway"),
            probe=gateway_probe,
            env={
                **env,
                "FLEETGATE_GATEWAY__METRICS_HOST": host,
                "FLEETGATE_GATEWAY__METRICS_PORT": str(gw_port),
            },
            version="fleetgate",
        ),
        *(_worker(settings, name, env) for name in WORKER_PORTS),
    ]


def fleet_component(settings: StackSettings, *, log: Path) -> Component:
    """The demo fleet: ``settings.vehicles`` simulated vehicles until the stack stops."""

    async def probe() -> str:
        return f"{settings.vehicles} vehicles (see {log})"

    return Component(
        name="fleet",
        endpoint=f"{settings.vehicles} vehicles",
        argv=_fleetgate(
            "sim",
            "--vehicles",
            str(settings.vehicles),
            "--quiet",
            "--broker",
            f"{settings.host}:{settings.broker_port}",
        ),
        probe=probe,
        env=service_env(settings),
        version="simulator",
    )
