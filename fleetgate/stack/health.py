"""``fleetgate status``: ask each component of the running stack whether it answers."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import asdict, dataclass, field

from fleetgate.stack import runstate
from fleetgate.stack.settings import StackSettings


@dataclass
class ComponentHealth:
    name: str
    endpoint: str
    version: str
    healthy: bool
    detail: str


@dataclass
class HealthReport:
    running: bool
    components: list[ComponentHealth] = field(default_factory=list)
    starting: bool = False

    @property
    def healthy(self) -> bool:
        return (
            self.running
            and not self.starting
            and bool(self.components)
            and all(c.healthy for c in self.components)
        )


async def _probe(settings: StackSettings, name: str) -> str:
    from fleetgate.stack import components, kafka

    if name == "kafka":
        return f"cluster {await kafka.probe(bootstrap=settings.kafka_bootstrap)}"
    if name == "cassandra":
        from fleetgate.stack import cassandra

        version = await cassandra.wait_ready(
            host=settings.host, port=settings.cassandra_port, timeout_s=5.0
        )
        return f"release {version}"
    if name.startswith("broker"):
        return await components.tls_probe(
            host=settings.host, port=settings.broker_port, pki_dir=settings.pki_dir
        )
    if name == "gateway":
        return await components.http_probe(host=settings.host, port=settings.gateway_metrics_port)
    if name in components.WORKER_PORTS:
        port = components.worker_port(settings, name)
        return await components.http_probe(host=settings.host, port=port)
    return "running"


async def check(settings: StackSettings) -> HealthReport:
    from fleetgate.stack.process import pid_alive

    state = runstate.read(settings.run_file)
    if state is None:
        return HealthReport(running=False)
    for name in ("aiokafka", "cassandra"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    async def one(comp: runstate.ComponentState) -> ComponentHealth:
        if not pid_alive(comp.pid):
            return ComponentHealth(comp.name, comp.endpoint, comp.version, False, "not running")
        try:
            detail = await asyncio.wait_for(_probe(settings, comp.name), 10.0)
        except Exception as exc:
            return ComponentHealth(comp.name, comp.endpoint, comp.version, False, str(exc)[:120])
        return ComponentHealth(comp.name, comp.endpoint, comp.version, True, detail)

    results = await asyncio.gather(*(one(c) for c in state.components.values()))
    return HealthReport(
        running=pid_alive(state.pid), components=list(results), starting=not state.ready
    )


def render(report: HealthReport, *, json_out: bool) -> None:
    if json_out:
        print(json.dumps({"healthy": report.healthy, "running": report.running,
                          "starting": report.starting,
                          "components": [asdict(c) for c in report.components]}))  # fmt: skip
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not report.running and not report.components:
        console.print("no stack is running (start one with `fleetgate up`)")
        return
    table = Table(title="fleetgate stack")
    for column in ("component", "endpoint", "version", "health", "detail"):
        table.add_column(column)
    for c in report.components:
        mark = "[green]healthy[/green]" if c.healthy else "[red]DOWN[/red]"
        table.add_row(c.name, c.endpoint, c.version, mark, c.detail)
    console.print(table)
    if report.starting:
        console.print("the stack is still starting")
