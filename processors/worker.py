"""Running a processors worker: in the foreground (``fleetgate processors``) or inside an
asyncio program (tests, benchmarks)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust

from fleetgate.errors import ServiceUnavailable, UserError
from fleetgate.logs import get_logger
from processors.app import ProcessorApp, build_app
from processors.runtime import connect_session, runtime_factory
from processors.settings import ProcessorSettings
from processors.store.session import StoreError
from schemas.topics import KafkaTopics

_log = get_logger(__name__)
REQUIRED_TABLES = ("vehicles", "app_vehicles", "shadows", "staged_actions", "commands",
                   "commands_by_vin", "command_deadlines")  # fmt: skip


async def preflight(settings: ProcessorSettings) -> None:
    """Fail fast, in one line, when Kafka or Cassandra is not ready for the processors."""
    from fleetgate.stack import kafka

    topics = KafkaTopics(settings.kafka.topic_prefix).all()
    try:
        if settings.processors.create_topics:
            await kafka.create_topics(
                bootstrap=settings.kafka.bootstrap,
                names=topics,
                partitions=settings.kafka.partitions,
                replication_factor=settings.kafka.replication_factor,
                attempts=3,
            )
        else:
            await kafka.probe(bootstrap=settings.kafka.bootstrap)
    except UserError:
        raise
    except Exception as exc:
        raise ServiceUnavailable(
            f"Kafka at {settings.kafka.bootstrap} unavailable: {exc or type(exc).__name__}"
        ) from None
    session = await connect_session(settings)
    try:
        keyspace = settings.cassandra.keyspace
        rows = await session.execute(
            query="SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            params=(keyspace,),
        )
    except StoreError as exc:
        raise ServiceUnavailable(f"Cassandra: {exc}") from None
    finally:
        await session.close()
    missing = sorted(set(REQUIRED_TABLES) - {r["table_name"] for r in rows})
    if missing:
        raise UserError(
            f"keyspace {keyspace} lacks {', '.join(missing)}: run `fleetgate setup` "
            "(or `fleetgate db migrate`) first"
        )


def lower_priority(nice: int) -> int:
    """Run this process at niceness ``nice`` at least: every thread it has now (Linux sets
    niceness per thread) and, by inheritance, those it starts later. Priority is never
    raised. Returns the niceness of the calling thread afterwards."""
    tasks = Path("/proc/self/task")
    tids = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [0]
    for tid in tids:
        with contextlib.suppress(OSError):  # a thread that has just ended
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


def run_foreground(settings: ProcessorSettings) -> None:
    """Run one worker until Ctrl-C / SIGTERM (returns normally after a clean stop)."""
    from fleetgate.logs import quiet_drivers

    nice = lower_priority(settings.processors.niceness())
    with quiet_drivers():
        asyncio.run(preflight(settings))
    app = build_app(settings=settings, runtime_factory=runtime_factory(settings))
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        loop=asyncio.new_event_loop(),
    )
    worker.spinner = None  # no terminal spinner escapes in logs
    _log.info("processors starting", group=app.conf.id, bootstrap=settings.kafka.bootstrap,
              nice=nice)  # fmt: skip
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise UserError("the processors worker stopped on an error (see the log above)",
                            exit_code=1) from None  # fmt: skip


@dataclass
class RunningWorker:
    """A worker started inside the current event loop."""

    app: ProcessorApp
    worker: Any
    task: asyncio.Future[Any]

    async def wait_assigned(self, timeout_s: float = 60.0) -> None:
        """Wait until the worker owns partitions and its agents run."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            consumer = self.app._consumer
            if (
                self.app.runtime is not None
                and consumer is not None
                and self.app.flow_control.is_active()
                and consumer.assignment()
            ):
                return
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.05)
        raise TimeoutError("the processors worker got no partitions in time")

    async def stop(self) -> None:
        await self.worker.stop()
        if not self.task.done():
            self.task.cancel()


async def start_in_process(
    settings: ProcessorSettings, *, app: ProcessorApp | None = None
) -> RunningWorker:
    """Start a worker in the running loop (tests, ``fleetgate bench``); stop it with
    :meth:`RunningWorker.stop`."""
    if app is None:
        app = build_app(settings=settings, runtime_factory=runtime_factory(settings))
    worker = faust.Worker(
        app,
        loglevel=settings.log_level,
        quiet=True,
        override_logging=False,
        loop=asyncio.get_running_loop(),
    )
    worker.spinner = None
    task = asyncio.ensure_future(worker.start())
    return RunningWorker(app, worker, task)
