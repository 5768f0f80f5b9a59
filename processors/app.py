"""The Faust app of the processors: every topic and agent declared once, here.

Topics (names from :class:`schemas.topics.KafkaTopics`, keyed by VIN, raw bytes)::

    shadow agent     <- shadow.reported, shadow.desired, connectivity
    command agent    <- command.requests, command.results, connectivity
    telemetry agent  <- telemetry
    all of them      -> outbound (the processors are its one producer)

Several workers side by side share the consumer group ``<prefix>processors``; Kafka splits
the partitions between them, and the range assignor (:mod:`processors.transport`) keeps a
vehicle's partitions of every topic on one worker. Nothing happens at import time:
:func:`build_app` makes the app, whose start connects the services (``runtime_factory``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from fleetgate.logs import get_logger
from processors.commands import agents as command_agents
from processors.settings import ROLE_AGENTS, ProcessorSettings
from processors.shadow import agents as shadow_agents
from processors.telemetry import agents as telemetry_agents
from processors.transport import LowLatencyTransport
from schemas.topics import KafkaTopics

_log = get_logger(__name__)
RuntimeFactory = Callable[["ProcessorApp"], Awaitable[Any]]


@dataclass(frozen=True)
class Channels:
    """The Faust topics (each a channel over one or more Kafka topics)."""

    shadow: Any
    commands: Any
    telemetry: Any
    outbound: Any


class ProcessorApp(faust.App):
    """A Faust app that brings its services up before its agents and down after them."""

    runtime: Any = None
    channels: Channels
    kafka_topics: KafkaTopics
    fetch_max_wait_ms: int = 200
    runtime_factory: RuntimeFactory | None = None

    def _new_transport(self) -> Any:
        return LowLatencyTransport(self.conf.broker_consumer, self)

    async def on_start(self) -> None:
        if self.runtime is None and self.runtime_factory is not None:
            self.runtime = await self.runtime_factory(self)
        await super().on_start()

    async def on_stop(self) -> None:
        # Faust's stop waits until every event is acknowledged; the shadow flusher (still
        # running) writes everything dirty meanwhile. Only then the services stop.
        await super().on_stop()
        if self.runtime is not None:
            await self.runtime.stop()

    def partitions_of(self, tps: Any) -> set[int]:
        """Partition numbers of our own topics among ``tps`` (co-partitioned by VIN)."""
        ours = set(self.kafka_topics.all())
        return {tp.partition for tp in tps if tp.topic in ours}


def _raw_topic(app: ProcessorApp, *names: str) -> Any:
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


def group_id(*, prefix: str, role: str) -> str:
    """The Kafka consumer group of a role's workers (``all`` keeps the historical name)."""
    return f"{prefix}processors" if role == "all" else f"{prefix}processors-{role}"


def build_app(
    *, settings: ProcessorSettings, runtime_factory: RuntimeFactory | None = None
) -> ProcessorApp:
    """The processors' Faust app for ``settings`` (not started): the agents of its role."""
    kafka = settings.kafka
    tuning = settings.processors
    agents = ROLE_AGENTS[tuning.role]
    names = KafkaTopics(kafka.topic_prefix)
    datadir = Path(settings.home) / "processors"
    datadir.mkdir(parents=True, exist_ok=True)
    brokers = [f"aiokafka://{b.strip()}" for b in kafka.bootstrap.split(",") if b.strip()]
    app = ProcessorApp(
        group_id(prefix=kafka.topic_prefix, role=tuning.role),
        broker=brokers,
        web_enabled=False,
        datadir=str(datadir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # a worker that dies (kill -9, lost host) gives up its partitions after 10 s, not 60
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        producer_acks=-1,
        producer_linger_ms=0,
        stream_wait_empty=True,
    )
    app.kafka_topics = names
    app.fetch_max_wait_ms = tuning.fetch_max_wait_ms
    app.runtime_factory = runtime_factory
    app.channels = Channels(
        shadow=_raw_topic(app, names.shadow_reported, names.shadow_desired, names.connectivity),
        commands=_raw_topic(app, names.command_requests, names.command_results, names.connectivity),
        telemetry=_raw_topic(app, names.telemetry),
        outbound=_raw_topic(app, names.outbound),
    )
    if "shadow" in agents:
        shadow_agents.register(app, app.channels.shadow, names)
    if "commands" in agents:
        command_agents.register(app, app.channels.commands, names)
    if "telemetry" in agents:
        telemetry_agents.register(app, app.channels.telemetry)
    pending: set[asyncio.Task[None]] = set()

    async def revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # called after Faust waited for every event of them to be acknowledged
        if app.runtime is not None:
            app.runtime.forget(app.partitions_of(args[0]))

    async def assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        if app.runtime is not None:
            partitions = app.partitions_of(args[0])
            _log.info("partitions assigned", partitions=sorted(partitions))
            task = asyncio.ensure_future(app.runtime.assigned(partitions))
            pending.add(task)
            task.add_done_callback(pending.discard)

    app.on_partitions_revoked.connect(revoked)
    app.on_partitions_assigned.connect(assigned)
    return app
