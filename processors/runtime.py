"""The services behind the agents, and how a worker connects them to Cassandra and Kafka."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from fleetgate.logs import get_logger
from processors.commands.service import CommandService
from processors.links import LinkCache
from processors.metrics import MetricsServer, ProcessorMetrics
from processors.outbound import FaustOutbound
from processors.ports import SystemClock
from processors.settings import ROLE_AGENTS, ProcessorSettings
from processors.shadow.service import ShadowService
from processors.store.repo_commands import CommandRepository
from processors.store.repo_inventory import InventoryRepository
from processors.store.repo_shadow import ShadowRepository
from processors.store.session import CassandraSession
from processors.telemetry.service import TelemetryService

_log = get_logger(__name__)


@dataclass
class Runtime:
    """What the agents call; background loops (shadow flusher, command timers) included.
    A worker of one role has only that role's services (the others are None)."""

    shadow: ShadowService | None
    commands: CommandService | None
    telemetry: TelemetryService | None
    session: CassandraSession | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    metrics_server: MetricsServer | None = None

    def start(self) -> None:
        loops = [s.run() for s in (self.shadow, self.commands) if s is not None]
        self.tasks = [asyncio.ensure_future(loop) for loop in loops]

    def forget(self, partitions: set[int]) -> None:
        if self.shadow is not None:
            self.shadow.forget(partitions)
        if self.commands is not None:
            self.commands.forget(partitions)
        if self.telemetry is not None:
            self.telemetry.forget()

    async def assigned(self, partitions: set[int]) -> None:
        if self.commands is not None:
            await self.commands.on_assigned(partitions)

    async def stop(self) -> None:
        if self.shadow is not None:
            await self.shadow.drain()
            await self.shadow.stop()
        if self.commands is not None:
            await self.commands.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.session is not None:
            await self.session.close()
        if self.metrics_server is not None:
            self.metrics_server.close()
        writes = self.shadow.writes if self.shadow is not None else 0
        _log.info("processors stopped", shadow_writes=writes)


async def connect_session(settings: ProcessorSettings) -> CassandraSession:
    conn = settings.cassandra
    session = CassandraSession()
    await session.connect(
        hosts=conn.hosts,
        port=conn.port,
        keyspace=None,
        local_dc=conn.local_dc,
        timeout_s=settings.processors.connect_timeout_s,
    )
    return session


def build_runtime(*, app: Any, settings: ProcessorSettings, session: CassandraSession) -> Runtime:
    """The services of the worker's role on ``session`` and the app's outbound topic (not
    started)."""
    tuning = settings.processors
    agents = ROLE_AGENTS[tuning.role]
    clock = SystemClock()
    metrics = ProcessorMetrics()
    keyspace = settings.cassandra.keyspace
    shadows = ShadowRepository(session=session, keyspace=keyspace)
    inventory = InventoryRepository(session=session, keyspace=keyspace)
    links = LinkCache(directory=inventory, clock=clock, ttl_s=tuning.link_cache_s)
    outbound = FaustOutbound(producer=app.producer, topic=app.kafka_topics.outbound)
    shadow = (
        None
        if "shadow" not in agents
        else ShadowService(
            store=shadows,
            directory=inventory,
            links=links,
            outbound=outbound,
            clock=clock,
            interval_s=tuning.shadow_write_interval_s,
            telemetry_interval_s=tuning.telemetry_write_interval_s,
            draining=lambda: not app.flow_control.is_active(),
            idle_s=tuning.cache_idle_s,
            max_in_flight=tuning.max_in_flight,
            metrics=metrics,
        )
    )
    commands = (
        None
        if "commands" not in agents
        else CommandService(
            store=CommandRepository(session=session, keyspace=keyspace),
            shadows=shadows,
            directory=inventory,
            links=links,
            outbound=outbound,
            clock=clock,
            result_grace_s=tuning.command_result_grace_s,
            max_in_flight=tuning.max_in_flight,
            metrics=metrics,
        )
    )
    telemetry = TelemetryService(metrics=metrics) if "telemetry" in agents else None
    runtime = Runtime(shadow, commands, telemetry, session)
    if tuning.metrics_port is not None:
        runtime.metrics_server = MetricsServer(metrics=metrics, port=tuning.metrics_port)
        _log.info("metrics served", port=runtime.metrics_server.port)
    return runtime


def runtime_factory(settings: ProcessorSettings) -> Any:
    """The ``runtime_factory`` of :func:`processors.app.build_app` for a real worker."""

    async def make(app: Any) -> Runtime:
        session = await connect_session(settings)
        runtime = build_runtime(app=app, settings=settings, session=session)
        runtime.start()
        _log.info(
            "processors connected",
            role=settings.processors.role,
            keyspace=settings.cassandra.keyspace,
            prefix=settings.kafka.topic_prefix,
        )
        return runtime

    return make
