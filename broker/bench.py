"""``fleetgate bench connect``: idle mutual-TLS vehicles per broker, memory and handshake rate.

For each broker (the hardened embedded amqtt, then Mosquitto as the baseline), in one run:
a fresh ``fleetgate broker`` on a free port with a temporary ``FLEETGATE_HOME``; N vehicles
(``-p connections=5000``) connect from worker processes (:mod:`broker.bench_client`) with
their own certificates and client id = VIN, at ``-p concurrency``; the broker process's RSS
is read before and after (``/proc/<pid>/status`` VmRSS: the Python process for amqtt, the
``mosquitto`` process for Mosquitto). Figures: :func:`broker.bench_calc.broker_figures`.

The vehicles' certificates are issued once into a cache (``~/.cache/fleetgate/bench-pki``,
or ``-p cache=DIR``) and reused; each broker's home gets a copy of the rest of that PKI.
Every process started here is stopped before :func:`run` returns, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, BinaryIO

from broker import bench_calc as calc
from broker.bench_calc import ConnectParams, WorkerReport
from broker.bench_client import WorkerSpec, raise_nofile, worker_main
from broker.runstate import RunState, read_state
from certs import pki, store
from certs.layout import PkiPaths, locked
from fleetgate.bench.report import Outcome
from fleetgate.errors import UserError
from fleetgate.settings import default_cache
from schemas.ids import Role, make_vin

SERVICES = ("gateway", "processors", "ops", "broker-admin")
CACHE_MAX_AGE = timedelta(days=300)
"""A cached bench PKI older than this is rebuilt (its leaves live two years)."""
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
_PR_SET_PDEATHSIG = 1


async def run(params: dict[str, str]) -> Outcome:
    """The ``connect`` scenario: result = the first broker (amqtt), baseline = the second."""
    try:
        p = calc.parse_params(params)
    except calc.BenchParamError as exc:
        raise UserError(str(exc)) from None
    hard = raise_nofile()  # the brokers started below inherit it
    per_worker = -(-p.connections // p.workers) + calc.FD_OVERHEAD
    if p.connections + calc.FD_OVERHEAD > hard or per_worker > hard:
        raise UserError(
            f"{p.connections} connections need {p.connections + calc.FD_OVERHEAD} open files "
            f"in the broker process; the limit here is {hard} (ulimit -Hn)"
        )
    vins = [make_vin(n) for n in range(p.connections)]
    paths = await asyncio.to_thread(prepare_cache, p.cache, vins)
    figures: dict[str, dict[str, Any]] = {}
    with _cancelled_by_sigterm():
        for kind in p.brokers:
            figures[kind] = calc.json_safe(await measure(kind, p=p, paths=paths, vins=vins))
    first = figures[p.brokers[0]]
    second = figures[p.brokers[1]] if len(p.brokers) > 1 else None
    if second is not None:
        first["vs_baseline"] = {
            key: calc.ratio_or_none(first[key], second[key])
            for key in ("kib_per_connection", "handshakes_per_s", "cpu_ms_per_handshake")
        }
    notes = [
        f"result = {p.brokers[0]}"
        + (f", baseline = {p.brokers[1]}" if second is not None else "")
        + f"; {p.connections} idle mutual-TLS vehicles each, from {p.workers} client "
        f"processes, {p.concurrency} handshakes at a time; memory = delta VmRSS of the broker "
        "process / connected",
        *(calc.projection_note(k, f, fd_hard_limit=hard) for k, f in figures.items()),
        "machine load (1-minute average) before each broker: "
        + ", ".join(f"{k} {f['load_avg_1m']}" for k, f in figures.items())
        + "; cpu_s.others = CPU time of other programs while connecting",
    ]
    return Outcome(
        result=first,
        baseline=second,
        headline="kib_per_connection",
        params=p.as_json(),
        notes=notes,
    )


@contextlib.contextmanager
def _cancelled_by_sigterm() -> Iterator[None]:
    """SIGTERM cancels the bench like Ctrl-C does, so that it stops what it started."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - always inside a task
        yield
        return
    received: list[int] = []

    def on_sigterm() -> None:
        received.append(signal.SIGTERM)
        task.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    except (RuntimeError, ValueError):  # not the main thread: leave SIGTERM alone
        yield
        return
    try:
        yield
    except asyncio.CancelledError:
        if not received:
            raise
        task.uncancel()
        raise UserError("stopped by SIGTERM (brokers and clients stopped)", exit_code=143) from None
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


# --- the PKI -----------------------------------------------------------------------------------


def prepare_cache(where: str, vins: list[str]) -> PkiPaths:
    """The cached bench PKI (in ``where``, or the default cache) with certificates for
    ``vins``, issued in bulk when missing."""
    cache = Path(where).expanduser() if where else default_cache() / "bench-pki"
    try:
        return _prepare_cache(cache, vins)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot prepare the bench PKI under {cache}: {exc}") from None


def _prepare_cache(cache: Path, vins: list[str]) -> PkiPaths:
    paths = PkiPaths(cache)
    if paths.exists():
        age = time.time() - paths.ca.stat().st_mtime
        if age > CACHE_MAX_AGE.total_seconds():
            with locked(paths):
                store.init_pki(paths, now=datetime.now(UTC), lifetimes=pki.Lifetimes(), force=True)
    store.ensure_pki(cache, services=SERVICES)
    with locked(paths):
        store.issue_leaves(
            paths,
            Role.VEHICLE,
            vins,
            now=datetime.now(UTC),
            lifetimes=pki.Lifetimes(),
            workers=os.cpu_count() or 1,
            skip_existing=True,
        )
    return paths


def make_home(kind: str, source: PkiPaths) -> Path:
    """A temporary ``FLEETGATE_HOME`` holding ``source``'s PKI without the vehicles (the
    brokers never read them)."""
    home = Path(tempfile.mkdtemp(prefix=f"fleetgate-bench-{kind}-"))
    target = PkiPaths(home)
    shutil.copytree(source.dir, target.dir, ignore=shutil.ignore_patterns("vehicles", ".*"))
    target.role_dir(Role.VEHICLE).mkdir(mode=0o700, exist_ok=True)
    return home


# --- one broker --------------------------------------------------------------------------------


def _die_with_parent() -> None:  # in the child between fork and exec
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def _rss(pid: int) -> int:
    return calc.vmrss_kib(_read(f"/proc/{pid}/status"))


def _cpu_s(pid: int) -> float:
    return calc.cpu_ticks(_read(f"/proc/{pid}/stat")) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    return calc.machine_busy_ticks(_read("/proc/stat")) / os.sysconf("SC_CLK_TCK")


def _open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def _log_tail(home: Path, lines: int = 3) -> str:
    try:
        text = (home / "broker.log").read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "empty log"


@contextlib.asynccontextmanager
async def running_broker(kind: str, *, p: ConnectParams, home: Path) -> AsyncIterator[RunState]:
    """``python -m broker --broker kind`` on a free port under ``home``; stopped on exit."""
    attempt = str(min(p.attempt_timeout_s, 300.0))
    env = {
        **os.environ,
        "FLEETGATE_HOME": str(home),
        "FLEETGATE_LOG_FORMAT": "json",
        "FLEETGATE_LOG_LEVEL": "WARNING",
        "FLEETGATE_BROKER__MAX_CONNECTIONS": str(min(1_000_000, p.connections + 1000)),
        "FLEETGATE_BROKER__MAX_PENDING": str(max(512, 2 * p.concurrency)),
        "FLEETGATE_BROKER__HANDSHAKE_TIMEOUT_S": attempt,
        "FLEETGATE_BROKER__CONNECT_TIMEOUT_S": attempt,
    }
    command = [sys.executable, "-m", "broker", "--broker", kind, "--host", p.host, "--port", "0"]
    log = await asyncio.to_thread(_open_log, home)
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop it in order
            preexec_fn=_die_with_parent,
        )
    finally:
        log.close()
    state: RunState | None = None
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while state is None:
            found = await asyncio.to_thread(read_state, home)
            if found is not None and found.pid == process.pid:
                state = found
            elif process.returncode is not None:
                raise UserError(f"the {kind} broker exited at start: {_log_tail(home)}")
            elif time.monotonic() > deadline:
                raise UserError(f"the {kind} broker did not start in {START_TIMEOUT_S:.0f} s")
            else:
                await asyncio.sleep(0.1)
        yield state
        if process.returncode is not None:
            raise UserError(f"the {kind} broker died during the bench: {_log_tail(home)}")
    finally:
        await _stop(process, child=state.child_pid if state else None)


def _open_log(home: Path) -> BinaryIO:
    return (home / "broker.log").open("ab")


async def _stop(process: asyncio.subprocess.Process, *, child: int | None) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()
    if child is not None:  # Mosquitto dies with its supervisor; make sure of it
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)


async def measure(
    kind: str, *, p: ConnectParams, paths: PkiPaths, vins: list[str]
) -> dict[str, Any]:
    """One broker's figures: start it, connect every vehicle, read its RSS, stop it."""
    home = await asyncio.to_thread(make_home, kind, paths)
    try:
        async with running_broker(kind, p=p, home=home) as state:
            pid = state.child_pid if kind == "mosquitto" and state.child_pid else state.pid
            await asyncio.sleep(1.0)  # let start-up work finish before the first reading
            load = os.getloadavg()[0]
            rss_before, cpu_before, busy_before = _rss(pid), _cpu_s(pid), _machine_busy_s()
            specs = _specs(p=p, paths=paths, vins=vins, port=state.port)
            async with client_workers(specs, timeout_s=p.timeout_s) as reports:
                await asyncio.sleep(p.settle_s)
                rss_after, cpu_after, busy_after = _rss(pid), _cpu_s(pid), _machine_busy_s()
                fds = _open_fds(pid)
        figures = calc.broker_figures(
            kind=kind,
            requested=p.connections,
            reports=reports,
            rss_before_kib=rss_before,
            rss_after_kib=rss_after,
            cpu_seconds=cpu_after - cpu_before,
            machine_busy_s=busy_after - busy_before,
            open_fds=fds,
        )
        figures["load_avg_1m"] = round(load, 2)
        return figures
    finally:
        await asyncio.to_thread(shutil.rmtree, home, ignore_errors=True)


# --- the client workers ------------------------------------------------------------------------


def _specs(*, p: ConnectParams, paths: PkiPaths, vins: list[str], port: int) -> list[WorkerSpec]:
    shares = calc.split_evenly(vins, p.workers)
    concurrency = calc.split_evenly([""] * p.concurrency, p.workers)
    specs: list[WorkerSpec] = []
    for share, slots in zip(shares, concurrency, strict=True):
        vehicles: list[tuple[str, str, str]] = []
        for vin in share:
            cert, key = paths.vehicle(vin)
            vehicles.append((vin, str(cert), str(key)))
        specs.append(
            WorkerSpec(
                host=p.host,
                port=port,
                server_hostname=p.host,
                ca_chain=str(paths.ca_chain),
                vehicles=vehicles,
                concurrency=max(1, len(slots)),
                keepalive_s=p.keepalive_s,
                attempt_timeout_s=p.attempt_timeout_s,
                timeout_s=p.timeout_s,
                hold_s=p.timeout_s + p.settle_s + 120,
            )
        )
    return specs


async def _receive(conn: Connection, process: BaseProcess, *, within: float, what: str) -> Any:
    """The worker's next message, which must be ``what``, within ``within`` seconds."""
    deadline = time.monotonic() + within
    while not conn.poll():
        if not process.is_alive() and not conn.poll():
            raise UserError(f"a client worker died (exit code {process.exitcode}) before {what}")
        if time.monotonic() > deadline:
            raise UserError(f"a client worker sent no {what} within {within:.0f} s")
        await asyncio.sleep(0.05)
    tag, payload = conn.recv()
    if tag == "error":
        raise UserError(f"a client worker failed: {payload}")
    if tag != what:
        raise UserError(f"a client worker sent {tag!r} instead of {what!r}")
    return payload


@contextlib.asynccontextmanager
async def client_workers(
    specs: list[WorkerSpec], *, timeout_s: float
) -> AsyncIterator[list[WorkerReport]]:
    """Start one process per spec, connect all of them at once; yields their reports while
    the connections are still open; closes them and stops every process on exit."""
    context = multiprocessing.get_context("spawn")
    workers: list[tuple[BaseProcess, Connection]] = []
    try:
        for spec in specs:
            mine, theirs = context.Pipe()
            process: BaseProcess = context.Process(
                target=worker_main, args=(spec, theirs), daemon=True
            )
            process.start()
            theirs.close()
            workers.append((process, mine))
        for process, conn in workers:
            await _receive(conn, process, within=START_TIMEOUT_S, what="ready")
        for _, conn in workers:
            conn.send("go")
        reports: list[WorkerReport] = []
        for process, conn in workers:
            report = await _receive(conn, process, within=timeout_s + 60, what="report")
            reports.append(report)
        yield reports
        for _, conn in workers:
            conn.send("close")
        for process, conn in workers:
            await _receive(conn, process, within=30, what="closed")
    finally:
        for process, conn in workers:
            with contextlib.suppress(OSError):
                conn.close()
            process.join(timeout=0.5)  # after "closed" it exits by itself; else stop it now
            if process.is_alive():
                process.terminate()
                process.join(timeout=2)
            if process.is_alive():
                process.kill()
                process.join(timeout=2)
