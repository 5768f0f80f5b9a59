"""Real brokers for the simulator's integration tests: ``python -m broker`` (the
``fleetgate broker`` command) on a free port, each with its own ``$FLEETGATE_HOME`` and PKI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from broker.runstate import read_state
from certs import store
from certs.layout import PkiPaths

ROOT = Path(__file__).resolve().parents[3]
OBSERVER = "sim-observer"


@dataclass
class SimBroker:
    kind: str
    home: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def paths(self) -> PkiPaths:
        return PkiPaths(self.home)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log(self) -> str:
        return (self.home / "broker.log").read_text(errors="replace")[-4000:]


def start_broker(kind: str, home: Path) -> SimBroker:
    store.ensure_pki(home, services=("gateway", "broker-admin", OBSERVER))
    env = {
        **os.environ,
        "FLEETGATE_HOME": str(home),
        "FLEETGATE_LOG_FORMAT": "json",
        "FLEETGATE_BROKER__CRL_POLL_S": "0.5",
        "FLEETGATE_BROKER__MAX_QUEUED": "200000",
        "FLEETGATE_BROKER__MAX_PENDING": "512",
    }
    with (home / "broker.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "broker", "--broker", kind, "--port", "0"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = read_state(home)
        if state is not None and state.pid == process.pid:
            return SimBroker(kind, home, state.port, process)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    stop_broker(process)
    raise RuntimeError(f"{kind} broker did not start: {(home / 'broker.log').read_text()[-3000:]}")


def stop_broker(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session", params=["mosquitto", "amqtt"])
def sim_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimBroker]:
    kind = str(request.param)
    running = start_broker(kind, tmp_path_factory.mktemp(f"sim-{kind}"))
    try:
        yield running
    finally:
        stop_broker(running.process)


@dataclass
class SimRun:
    returncode: int
    summary: dict[str, Any]
    stderr: str
    seconds: float


def sim_command(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    environment = {
        **os.environ,
        "FLEETGATE_HOME": str(home),
        "FLEETGATE_SIM__SEED": "7",
        "FLEETGATE_SIM__COMMAND_FAILURE_RATE": "0",
        **(env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "simulator", "--quiet", *args],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], *, started: float, timeout: float = 120) -> SimRun:
    out, err = process.communicate(timeout=timeout)
    summary = json.loads(out) if out.strip().startswith("{") else {}
    return SimRun(process.returncode, summary, err, time.monotonic() - started)


def run_sim(
    home: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> SimRun:
    started = time.monotonic()
    return finish(sim_command(home, *args, env=env), started=started, timeout=timeout)
