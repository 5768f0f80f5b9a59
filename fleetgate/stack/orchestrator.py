"""``fleetgate up``, ``down`` and ``status``: start the stack's children in order, watch them,
stop them in reverse order; the run-state file lets another shell find them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleetgate.errors import ServiceUnavailable, UserError
from fleetgate.logs import get_logger, quiet_drivers
from fleetgate.stack import runstate
from fleetgate.stack.components import Component
from fleetgate.stack.process import ChildProcess, pid_alive, terminate_group
from fleetgate.stack.settings import StackSettings

log = get_logger(__name__)
Setup = Callable[[], object]


@dataclass
class Running:
    component: Component
    child: ChildProcess


async def _wait_ready(running: Running) -> str:
    """Poll the component's probe until it answers or its child exits or time runs out."""
    comp, child = running.component, running.child
    deadline = time.monotonic() + comp.ready_timeout_s
    last: BaseException | None = None
    while time.monotonic() < deadline:
        if not child.alive():
            tail = child.log_tail(3).replace("\n", " | ")
            raise ServiceUnavailable(
                f"{comp.name} exited with code {child.exit_code()} while starting "
                f"(log {child.log_path}): {tail[-300:]}"
            )
        try:
            return await asyncio.wait_for(comp.probe(), 10.0)
        except Exception as exc:  # not ready yet
            last = exc
        await asyncio.sleep(0.5)
    raise ServiceUnavailable(
        f"{comp.name} did not answer on {comp.endpoint} within {comp.ready_timeout_s:.0f}s "
        f"({last}); see {child.log_path}"
    )


class Stack:
    """The children of one ``fleetgate up``, started in waves and stopped in reverse."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.running: list[Running] = []
        self.state = runstate.RunState(
            pid=os.getpid(), started_at=time.time(), broker=settings.broker_kind
        )

    async def start_wave(self, components: Sequence[Component]) -> None:
        """Start ``components`` together and wait until each answers."""
        wave = []
        for comp in components:
            log_path = self.settings.logs_dir / f"{comp.name.split()[0]}.log"
            child = ChildProcess(name=comp.name, argv=comp.argv, log_path=log_path, env=comp.env)
            child.start()
            running = Running(comp, child)
            self.running.append(running)
            wave.append(running)
            log.info("starting", component=comp.name, pid=child.pid, log=str(log_path))
        with quiet_drivers():
            details = await asyncio.gather(*(_wait_ready(r) for r in wave))
        for running, detail in zip(wave, details, strict=True):
            comp = running.component
            self.state.components[comp.name] = runstate.ComponentState(
                name=comp.name,
                pid=running.child.pid or 0,
                endpoint=comp.endpoint,
                version=comp.version,
                log=str(running.child.log_path),
            )
            log.info("ready", component=comp.name, endpoint=comp.endpoint, detail=detail)
        runstate.write(self.settings.run_file, self.state)

    def mark_ready(self) -> None:
        self.state.ready = True
        runstate.write(self.settings.run_file, self.state)

    def stop(self) -> None:
        for running in reversed(self.running):
            if running.child.alive():
                log.info("stopping", component=running.component.name)
            running.child.stop(timeout_s=45.0)
        self.running.clear()
        runstate.remove(self.settings.run_file)

    async def watch(self, stop: asyncio.Event) -> None:
        """Until ``stop``: report a child that exits on its own."""
        reported: set[str] = set()
        while not stop.is_set():
            for running in self.running:
                name = running.component.name
                if name not in reported and not running.child.alive():
                    reported.add(name)
                    log.error(
                        "component exited",
                        component=name,
                        code=running.child.exit_code(),
                        log=str(running.child.log_path),
                    )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


def refuse_if_running(settings: StackSettings) -> None:
    state = runstate.read(settings.run_file)
    if state is not None and pid_alive(state.pid):
        raise UserError(
            f"a stack is already running here (pid {state.pid}, home {settings.home}): "
            "`fleetgate down` stops it"
        )
    if state is not None:
        down(settings)  # leftovers of a stack that was killed


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def down(settings: StackSettings, *, timeout_s: float = 90.0) -> list[str]:
    """Stop the stack recorded under ``settings.home``; returns what was stopped."""
    state = runstate.read(settings.run_file)
    if state is None:
        return []
    stopped: list[str] = []
    if pid_alive(state.pid) and state.pid != os.getpid():
        os.kill(state.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid_alive(state.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        stopped.append(f"fleetgate up (pid {state.pid})")
    for comp in reversed(list(state.components.values())):
        if pid_alive(comp.pid):
            terminate_group(comp.pid, timeout_s=30.0)
            stopped.append(f"{comp.name} (pid {comp.pid})")
    runstate.remove(settings.run_file)
    return stopped
