"""``python -m broker`` (the ``fleetgate broker`` command) as a child of the tests, for any
suite that needs a real broker on a free port: amqtt (embedded) or Mosquitto."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from broker.runstate import RunState, read_state

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


class HasHome(Protocol):
    @property
    def home(self) -> Path: ...


P = TypeVar("P", bound=HasHome)


@dataclass
class BrokerProcess(Generic[P]):
    """A running broker; ``pki`` is the suite's own view of the PKI under its home."""

    kind: str
    pki: P
    process: subprocess.Popen[bytes]
    port: int = 0
    state: RunState | None = None

    @property
    def log(self) -> str:
        return (self.pki.home / "broker.log").read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM (then SIGKILL), and check that Mosquitto did not outlive its supervisor."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        child = self.state.child_pid if self.state else None
        if child is not None:
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                return
            os.kill(child, signal.SIGKILL)
            raise AssertionError(f"mosquitto {child} outlived its supervisor")


def _die_with_parent() -> None:  # in the child, before exec: no orphan if the tests die
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_broker(kind: str, pki: P, *, env: dict[str, str] | None = None) -> BrokerProcess[P]:
    """``python -m broker --broker <kind>`` on a free port, logging JSON to
    ``<home>/broker.log``; returns once it wrote its run state (listening)."""
    environment = {
        **os.environ,
        "FLEETGATE_HOME": str(pki.home),
        "FLEETGATE_LOG_FORMAT": "json",
        "FLEETGATE_LOG_LEVEL": "INFO",
        **(env or {}),
    }
    with (pki.home / "broker.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "broker", "--broker", kind, "--host", HOST, "--port", "0"],
            cwd=ROOT,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    running = BrokerProcess(kind, pki, process)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = read_state(pki.home)
        if state is not None and state.pid == process.pid:
            running.state, running.port = state, state.port
            return running
        if process.poll() is not None:
            break
        time.sleep(0.05)
    running.stop()
    raise RuntimeError(f"{kind} broker did not start:\n{running.log[-3000:]}")
