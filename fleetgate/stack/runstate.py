"""The run-state file of a running stack (``$FLEETGATE_HOME/run/stack.json``), so that
``fleetgate down`` and ``fleetgate status`` work from another shell."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, Field


class ComponentState(BaseModel):
    name: str
    pid: int
    endpoint: str
    version: str = ""
    log: str = ""


class RunState(BaseModel):
    pid: int
    started_at: float
    broker: str
    ready: bool = False
    """True once every component of ``fleetgate up`` answered; until then it is starting."""
    components: dict[str, ComponentState] = Field(default_factory=dict)


def write(path: Path, state: RunState) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=1))
    os.replace(tmp, path)


def read(path: Path) -> RunState | None:
    try:
        return RunState.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def remove(path: Path) -> None:
    path.unlink(missing_ok=True)
