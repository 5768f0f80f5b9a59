"""``fleetgate bench <scenario> [--json FILE] [-p key=value …]``."""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from fleetgate.bench.report import Outcome, build
from fleetgate.errors import UserError

# scenario -> "module:function"; each function is ``async def run(params) -> Outcome``.
SCENARIOS: dict[str, str] = {
    "connect": "broker.bench:run",
    "commands": "processors.bench_commands:run",
    "telemetry": "processors.bench_telemetry:run",
    "publish": "simulator.bench:run",
    "ingest": "gateway.bench:run",
}

Runner = Callable[[dict[str, str]], Coroutine[Any, Any, Outcome]]


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"parameter {pair!r} is not key=value")
        params[key.strip()] = value.strip()
    return params


def bench(
    scenario: Annotated[str, typer.Argument(help="what to measure; `fleetgate bench list`")],
    json_file: Annotated[Path | None, typer.Option("--json", help="write the result here")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="scenario parameter key=value")
    ] = None,
) -> None:
    """Measure a scenario and its baseline in one run; print (and write) one JSON object."""
    if scenario == "list":
        for name, target in sorted(SCENARIOS.items()):
            typer.echo(f"{name:12} {target}")
        return
    if scenario not in SCENARIOS:
        known = ", ".join(sorted(SCENARIOS)) or "none yet"
        raise UserError(f"unknown bench scenario {scenario!r}; known: {known}")
    module_name, _, func_name = SCENARIOS[scenario].partition(":")
    runner: Runner = getattr(importlib.import_module(module_name), func_name)
    from fleetgate.logs import configure_logging

    configure_logging(level="WARNING")
    outcome: Outcome = asyncio.run(runner(_parse_params(param or [])))
    report: dict[str, Any] = build(scenario=scenario, outcome=outcome)
    text = json.dumps(report, indent=2)
    typer.echo(text)
    if json_file is not None:
        json_file.write_text(text + "\n")


def register(app: typer.Typer) -> None:
    app.command()(bench)
