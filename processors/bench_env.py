"""The full path the processors' bench scenarios run on, in a temp directory on free ports:
a PKI, Kafka and Cassandra (given, or started from the cached jars), Mosquitto, a fresh
topic prefix and keyspace with the bench vehicles, then the gateway (``python -m gateway``)
and a processors worker (``python -m processors``, optionally under cProfile). Everything
started here is stopped when its block ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetgate.bench.nodes import HOST, cassandra_node, kafka_node
from fleetgate.errors import UserError
from fleetgate.settings import load_settings
from processors.settings import ProcessorSettings
from schemas.ids import Role, make_vin

STALL_S = 30.0
APP = "bench-app"
OPS = "bench-ops"
FIRST_VEHICLE = 900_000
"""Number of the first bench vehicle (``schemas.ids.make_vin``), as the simulator numbers."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def fleet_vins(count: int) -> list[str]:
    return [make_vin(FIRST_VEHICLE + i) for i in range(count)]


# --------------------------------------------------------------------------------------------
# parameters


def parse_params(
    params: dict[str, str],
    defaults: dict[str, str],
    *,
    scenario: str,
    floats: Sequence[str] = (),
    zero_ok: Sequence[str] = (),
    choices: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """Defaults merged with ``params``; whole numbers >= 1 (``zero_ok``: >= 0), ``floats`` > 0,
    ``bootstrap``/``cassandra`` as given (``host:port`` or empty), ``choices`` one of theirs.
    A bad one: UserError. Pure."""
    unknown = set(params) - set(defaults)
    if unknown:
        raise UserError(
            f"unknown {scenario} parameter(s) {sorted(unknown)}; known: {sorted(defaults)}"
        )
    merged: dict[str, Any] = defaults | params
    for key, value in merged.items():
        if key in (choices or {}):
            if value not in (choices or {})[key]:
                allowed = " or ".join((choices or {})[key])
                raise UserError(f"{scenario} parameter {key}={value!r} must be {allowed}")
            continue
        if key in ("bootstrap", "cassandra"):
            host, _, port = str(value).rpartition(":")
            if value and (not host or not port.isdigit()):
                raise UserError(f"{scenario} parameter {key}={value!r} is not host:port")
            continue
        kind, cast = ("a number", float) if key in floats else ("a whole number", int)
        try:
            merged[key] = cast(value)
        except ValueError:
            raise UserError(f"{scenario} parameter {key}={value!r} is not {kind}") from None
        if key in floats and not 0 < merged[key] < 1e6:
            raise UserError(f"{scenario} parameter {key} must be above 0")
        if key not in floats and merged[key] < (0 if key in zero_ok else 1):
            raise UserError(
                f"{scenario} parameter {key} must be at least {int(key not in zero_ok)}"
            )
    return merged


# --------------------------------------------------------------------------------------------
# the stack


@dataclass
class Stack:
    root: Path
    home: Path
    broker_port: int
    bootstrap: str
    settings: ProcessorSettings
    profile: list[str] = field(default_factory=list)
    """The worker's top functions (cProfile), filled when :func:`cloud` ends with profiling."""


def bench_settings(
    root: Path, bootstrap: str, contact: tuple[str, int], partitions: int
) -> ProcessorSettings:
    tag = uuid.uuid4().hex[:8]
    tuning = load_settings(ProcessorSettings).processors
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
            # the worker's tuning from FLEETGATE_PROCESSORS__* as for `fleetgate processors`
            "processors": tuning.model_copy(update={"metrics_port": free_port()}).model_dump(),
        }
    )


def make_pki(home: Path, *, vins: list[str], apps: Sequence[str], services: Sequence[str]) -> None:
    """A fresh PKI under ``home`` with the bench identities (before Mosquitto starts: its
    configuration names every app and service)."""
    from certs import pki, store
    from certs.layout import PkiPaths
    from simulator.settings import cpu_count
    from simulator.tls import issue_vehicle_certs

    paths = store.ensure_pki(home, services=("gateway", "broker-admin", *services))
    if apps:
        store.issue_leaves(paths, Role.APP, list(apps), now=datetime.now(UTC),
                           lifetimes=pki.Lifetimes())  # fmt: skip
    issue_vehicle_certs(PkiPaths(home), vins, workers=cpu_count())


@contextlib.asynccontextmanager
async def services(
    root: Path, *, vins: list[str], app: str | None, p: dict[str, Any]
) -> AsyncIterator[Stack]:
    """PKI, Kafka, Cassandra, Mosquitto, topics and a keyspace holding ``vins`` (linked to
    ``app`` if given); the keyspace is dropped at the end. Kafka and Cassandra (unless given)
    compile with C1 only, or with C2 too when ``p["jit"]`` is ``full``."""
    from gateway.bench import mosquitto_broker
    from processors.worker import preflight

    home = root / "home"
    quick = p.get("jit", "quick") == "quick"
    await asyncio.to_thread(make_pki, home, vins=vins, apps=[app] if app else [], services=[OPS])
    async with (
        kafka_node(root, p["bootstrap"], quick_jit=quick) as bootstrap,
        cassandra_node(root, p["cassandra"], quick_jit=quick) as contact,
        mosquitto_broker(home) as port,
    ):
        settings = bench_settings(root, bootstrap, contact, p["partitions"])
        await prepare_store(settings, vins, app=app)
        try:
            await preflight(settings)
            yield Stack(root, home, port, bootstrap, settings)
        finally:
            with contextlib.suppress(Exception):
                await drop_keyspace(settings)


@dataclass
class Workers:
    """The processors workers of a bench, by role."""

    by_role: dict[str, WorkerProcess]

    @property
    def state(self) -> WorkerProcess:
        """The worker that handles telemetry and shadows (its metrics tell the lag)."""
        return self.by_role.get("state") or self.by_role["all"]


@contextlib.asynccontextmanager
async def cloud(
    stack: Stack, *, profile: bool, roles: Sequence[str] = ("all",)
) -> AsyncIterator[Workers]:
    """The gateway and one processors worker per role on ``stack`` (the first one under
    cProfile if ``profile``; its top functions land in ``stack.profile``)."""
    from gateway.bench import gateway_child, top_functions

    s = stack.settings
    gateway_params = {"profile": 0, "partitions": s.kafka.partitions}
    async with gateway_child(stack.root, stack.home, stack.broker_port, stack.bootstrap,
                             s.kafka.topic_prefix, gateway_params):  # fmt: skip
        prof = stack.root / "processors.prof"
        workers: dict[str, WorkerProcess] = {}
        try:
            for i, role in enumerate(roles):
                port = s.processors.metrics_port if i == 0 else free_port()
                tuning = s.processors.model_copy(update={"role": role, "metrics_port": port})
                workers[role] = WorkerProcess.start(
                    s.model_copy(update={"processors": tuning}),
                    stack.root / f"processors-{role}.log",
                    profile=prof if profile and i == 0 else None,
                )
            for worker in workers.values():
                await worker.wait_assigned()
            yield Workers(workers)
        finally:
            for worker in workers.values():
                await asyncio.to_thread(worker.stop)
            if profile and prof.exists():
                stack.profile.extend(top_functions(prof, count=12))


async def prepare_store(settings: ProcessorSettings, vins: list[str], *, app: str | None) -> None:
    """Create the keyspace (every migration) and the bench vehicles, linked to ``app``."""
    from processors.inventory.logic import VehicleRecord
    from processors.runtime import connect_session
    from processors.store.migrate import migrate
    from processors.store.repo_inventory import InventoryRepository
    from processors.store.schema import Replication

    session = await connect_session(settings)
    try:
        keyspace = settings.cassandra.keyspace
        await migrate(session=session, keyspace=keyspace, replication=Replication())
        repo = InventoryRepository(session=session, keyspace=keyspace)
        slots = asyncio.Semaphore(64)

        async def add(vin: str) -> None:
            async with slots:
                await repo.upsert(record=VehicleRecord(vin=vin, model="bench"), now_ms=now_ms())
                if app:
                    await repo.link(vin=vin, app_id=app, now_ms=now_ms())

        await asyncio.gather(*(add(v) for v in vins))
    finally:
        await session.close()


_SERVED = (
    ("write", "SELECT keyspace_name, table_name, count FROM system_views.local_write_latency"),
    ("read", "SELECT keyspace_name, table_name, count FROM system_views.local_read_latency"),
)


async def cassandra_counts(settings: ProcessorSettings) -> dict[str, float]:
    """Requests Cassandra has served so far, by kind and table of the bench keyspace and of
    ``system`` (``write shadows``, ``write paxos``: lightweight transactions, ``write
    batches``: the batch log), from its ``system_views``; empty if it has none."""
    from processors.runtime import connect_session
    from processors.store.session import StoreError

    keyspaces = (settings.cassandra.keyspace, "system")
    out: dict[str, float] = {}
    session = await connect_session(settings)
    try:
        for kind, query in _SERVED:
            for row in await session.execute(query=query, prepared=False):
                if row["keyspace_name"] in keyspaces and row["count"]:
                    out[f"{kind} {row['table_name']}"] = float(row["count"])
    except StoreError:
        return {}
    finally:
        await session.close()
    return out


def rates(
    before: Mapping[str, float], after: Mapping[str, float], seconds: float
) -> dict[str, float]:
    """Per-second rates of the counters that moved between two readings, busiest first. Pure."""
    moved = {k: (v - before.get(k, 0.0)) / max(seconds, 1e-9) for k, v in after.items()}
    return {k: round(v, 1) for k, v in sorted(moved.items(), key=lambda kv: -kv[1]) if v > 0}


async def drop_keyspace(settings: ProcessorSettings) -> None:
    from processors.runtime import connect_session

    session = await connect_session(settings)
    try:
        await session.execute(query=f"DROP KEYSPACE IF EXISTS {settings.cassandra.keyspace}",
                              prepared=False, timeout_s=60)  # fmt: skip
    finally:
        await session.close()


def settings_env(settings: ProcessorSettings) -> dict[str, str]:
    """Environment variables that give a ``python -m processors`` these settings."""
    env = {
        "FLEETGATE_HOME": str(settings.home),
        "FLEETGATE_LOG_LEVEL": settings.log_level,
        "FLEETGATE_LOG_FORMAT": "json",
        "FLEETGATE_KAFKA__BOOTSTRAP": settings.kafka.bootstrap,
        "FLEETGATE_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "FLEETGATE_KAFKA__PARTITIONS": str(settings.kafka.partitions),
        "FLEETGATE_CASSANDRA__HOSTS": ",".join(settings.cassandra.hosts),
        "FLEETGATE_CASSANDRA__PORT": str(settings.cassandra.port),
        "FLEETGATE_CASSANDRA__KEYSPACE": settings.cassandra.keyspace,
    }
    for name, value in settings.processors.model_dump().items():
        if value is not None:
            env[f"FLEETGATE_PROCESSORS__{name.upper()}"] = str(value)
    return env


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    @classmethod
    def start(
        cls, settings: ProcessorSettings, log: Path, *, profile: Path | None = None
    ) -> WorkerProcess:
        role = settings.processors.role
        argv = [sys.executable, "-m", "processors", *(("--role", role) if role != "all" else ())]
        if profile is not None:
            argv = [sys.executable, "-m", "fleetgate.bench.nodes", "profile", str(profile),
                    "processors"]  # fmt: skip
        with log.open("ab") as out:
            process = subprocess.Popen(argv, env={**os.environ, **settings_env(settings)},
                                       stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        assert settings.processors.metrics_port is not None
        return cls(process, log, settings.processors.metrics_port)

    async def wait_assigned(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "partitions assigned" in self.log.read_text(errors="replace"):
                return
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.2)
        tail = self.log.read_text(errors="replace")[-1500:]
        raise UserError(f"the processors worker did not start: {tail}")

    async def metrics(self) -> dict[str, float]:
        return await read_metrics(self.metrics_port)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    from fleetgate.stack import prereq

    return prereq.free_port()


async def read_metrics(port: int) -> dict[str, float]:
    """The ``fleetgate_*`` samples of a worker's ``/metrics`` (name with labels -> value)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    values: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("fleetgate_"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values
