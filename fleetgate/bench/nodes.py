"""What several bench scenarios start: Kafka and Cassandra from the cached jars (or the ones
given), each in a temp directory on free ports, stopped when the block ends; and a runner
that profiles a service process (``python -m fleetgate.bench.nodes profile OUT MODULE``)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


def _java_and_jars(name: str, coordinates: Any) -> tuple[str, Path]:
    from fleetgate.settings import default_cache
    from fleetgate.stack import maven, prereq

    java = prereq.require_java()
    return java, maven.resolve(name=name, coordinates=coordinates, cache_dir=default_cache())


@contextlib.asynccontextmanager
async def _child(
    root: Path, name: str, argv: list[str], ready: Callable[[], Awaitable[object]], *, stop_s: float
) -> AsyncIterator[None]:
    from fleetgate.stack.process import ChildProcess

    child = ChildProcess(name=name, argv=argv, log_path=root / f"{name}.log")
    child.start()
    try:
        await ready()
        yield
    finally:
        child.stop(timeout_s=stop_s)


@contextlib.asynccontextmanager
async def kafka_node(
    root: Path, bootstrap: str = "", *, quick_jit: bool = True
) -> AsyncIterator[str]:
    """``bootstrap`` if given, else a Kafka started for the block under ``root`` (C1 only
    unless ``quick_jit`` is False: :func:`fleetgate.stack.kafka.command`)."""
    if bootstrap:
        yield bootstrap
        return
    from fleetgate.stack import kafka, prereq

    java, lib = _java_and_jars(f"kafka-{kafka.KAFKA_VERSION}", kafka.MAVEN_COORDINATES)
    port, controller = prereq.free_port(), prereq.free_port()
    conf, data = root / "kafka" / "conf", root / "kafka" / "data"
    kafka.write_config(
        conf_dir=conf, data_dir=data, host=HOST, port=port, controller_port=controller
    )
    kafka.format_storage(java=java, lib_dir=lib, conf_dir=conf, data_dir=data)
    argv = kafka.command(java=java, lib_dir=lib, conf_dir=conf, heap_mb=512, quick_jit=quick_jit)
    async with _child(
        root,
        "kafka",
        argv,
        lambda: kafka.wait_ready(bootstrap=f"{HOST}:{port}", timeout_s=120),
        stop_s=30,
    ):
        yield f"{HOST}:{port}"


@contextlib.asynccontextmanager
async def cassandra_node(
    root: Path, contact: str = "", *, quick_jit: bool = True
) -> AsyncIterator[tuple[str, int]]:
    """``host:port`` if given, else a Cassandra node started for the block under ``root``
    (C1 only unless ``quick_jit`` is False)."""
    if contact:
        given_host, _, given_port = contact.rpartition(":")
        yield given_host, int(given_port)
        return
    from fleetgate.stack import cassandra, prereq

    name = f"cassandra-{cassandra.CASSANDRA_VERSION}"
    java, lib = _java_and_jars(name, cassandra.MAVEN_COORDINATES)
    port, storage = prereq.free_port(), prereq.free_port()
    conf, data = root / "cassandra" / "conf", root / "cassandra" / "data"
    cassandra.write_config(
        conf_dir=conf, data_dir=data, host=HOST, cql_port=port, storage_port=storage
    )
    argv = cassandra.command(
        java=java, lib_dir=lib, conf_dir=conf, data_dir=data, heap_mb=1024, quick_jit=quick_jit
    )
    async with _child(
        root,
        "cassandra",
        argv,
        lambda: cassandra.wait_ready(host=HOST, port=port, timeout_s=300),
        stop_s=60,
    ):
        yield HOST, port


async def terminate(process: asyncio.subprocess.Process, *, grace_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; returns once the process is gone."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace_s)
    if process.returncode is None:
        process.kill()
        await process.wait()


def thread_cpu(pid: int) -> dict[str, float]:
    """Seconds of process ``pid``'s main thread (``main``) and its other threads
    (``threads``) on a CPU, and waiting for one while runnable (``main_waiting``,
    ``threads_waiting``: the machine's other work taking the cores). Linux ``/proc``
    (``schedstat``); empty elsewhere or once the process is gone."""
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, IndexError, ValueError):
                running, waiting = (task / "schedstat").read_text().split()[:2]
                kind = "main" if task.name == str(pid) else "threads"
                out[kind] = out.get(kind, 0.0) + int(running) / 1e9
                out[f"{kind}_waiting"] = out.get(f"{kind}_waiting", 0.0) + int(waiting) / 1e9
    return out


_PROCESSORS = re.compile(r"(?:-m|profile \S+) processors(?: --role (\w+))?\s*$")
_KINDS = (
    ("kafka.Kafka", "kafka"),
    ("CassandraDaemon", "cassandra"),
    ("mosquitto", "mosquitto"),
    (" sink ", "subscriber"),
    ("resource_tracker", "resource_tracker"),
    ("-m gateway", "gateway"),
    ("multiprocessing", "simulator"),
)


def process_kind(argv: str) -> str:
    """What a bench child process is, from its command line (arguments space-separated). Pure."""
    worker = _PROCESSORS.search(argv)
    if worker is not None:
        role = worker.group(1)
        return "processors" if role in (None, "all") else f"processors-{role}"
    found = next((kind for marker, kind in _KINDS if marker in f"{argv} "), None)
    return found or Path(argv.split(" ")[0]).name


def _children(pid: int | None) -> Iterator[tuple[Path, str, list[str]]]:
    """The child processes of ``pid`` (default: this process): each one's ``/proc`` entry,
    :func:`process_kind` and ``stat`` fields after the command name. Linux; else none."""
    parent = str(pid or os.getpid())
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if fields[1] != parent:
                    continue
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                yield entry, process_kind(argv), fields


def children_cpu(pid: int | None = None) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the child processes of ``pid`` (default:
    this process), summed by kind: kafka, cassandra, mosquitto, gateway, processors,
    simulator (other children by their executable's name). Linux ``/proc``; else empty."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for _, kind, fields in _children(pid):
        out[kind] = out.get(kind, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


_JVM_KINDS = ("kafka", "cassandra")


def jit_cpu(pid: int | None = None) -> float:
    """CPU seconds used so far by the JIT compiler threads (``C1 CompilerThread…``,
    ``C2 CompilerThread…``) of the Kafka and Cassandra child processes of ``pid`` (default:
    this process). A compiler thread that has ended no longer counts, so the sum may drop.
    Linux ``/proc``; else 0."""
    total = 0
    for entry, kind, _ in _children(pid):
        if kind not in _JVM_KINDS:
            continue
        with contextlib.suppress(OSError):
            for task in (entry / "task").iterdir():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    stat = (task / "stat").read_text()
                    if "CompilerThre" in stat.partition(")")[0]:
                        fields = stat.rpartition(")")[2].split()
                        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def jit_busy_pct(samples: Sequence[tuple[float, float]], *, window_s: float) -> float | None:
    """% of one core the JIT compilers used over the last ``window_s`` seconds of ``samples``
    ((monotonic s, :func:`jit_cpu` s), oldest first); None until the samples span the window.
    A drop (a compiler thread ended) counts as nothing. Pure."""
    if not samples or samples[-1][0] - samples[0][0] < window_s:
        return None
    start = samples[-1][0] - window_s
    used = 0.0
    for (_, a), (t, b) in itertools.pairwise(samples):
        if t > start:
            used += max(0.0, b - a)
    return round(100 * used / window_s, 1)


JIT_WINDOW_S = 60.0
JIT_SETTLED_PCT = 4.0
JIT_MAX_S = 420.0


class JitSettle:
    """Whether the bench's own Kafka and Cassandra still compile hot code (C2): asked once a
    second while load flows; done when their compiler threads used under
    JIT_SETTLED_PCT % of a core over JIT_WINDOW_S, or after JIT_MAX_S."""

    def __init__(
        self, *, read: Callable[[], float] = jit_cpu, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._read, self._clock = read, clock
        self._samples: list[tuple[float, float]] = []
        self._started = clock()
        self.seconds: float | None = None
        """How long the compilers took to settle; None: not (yet) within JIT_MAX_S."""

    def busy(self) -> bool:
        now = self._clock()
        self._samples.append((now, self._read()))
        pct = jit_busy_pct(self._samples, window_s=JIT_WINDOW_S)
        if pct is not None and pct < JIT_SETTLED_PCT:
            self.seconds = round(now - self._started, 1)
            return False
        return now - self._started < JIT_MAX_S


def cpu_pct(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """CPU used between two :func:`children_cpu` readings, in % of one core. Pure."""
    span = max(seconds, 1e-9)
    return {k: round(100 * (v - before.get(k, 0.0)) / span, 1) for k, v in sorted(after.items())}


def busiest(usage: dict[str, float]) -> str:
    """One line naming the process kind that used the most CPU (a :func:`cpu_pct` result). Pure."""
    if not usage:
        return "CPU per process: not measured (no /proc)"
    kind = max(usage, key=lambda k: usage[k])
    total = sum(usage.values())
    cores = os.cpu_count() or 1
    return (
        f"busiest process: {kind} at {usage[kind]:.0f}% of a core; the bench's processes "
        f"together {total:.0f}% of {100 * cores}% (the publishing bench process not counted)"
    )


def profile_module(out: Path, module: str) -> None:
    """Run ``python -m module`` under cProfile (CPU time of the main thread, not wall time:
    on a busy machine a wait is not the service's cost); the stats go to ``out`` on exit."""
    import cProfile
    import runpy

    profiler = cProfile.Profile(time.process_time)
    sys.argv = [module]
    profiler.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        profiler.disable()
        profiler.dump_stats(str(out))


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "profile":
        sys.exit("usage: python -m fleetgate.bench.nodes profile OUT.prof MODULE")
    profile_module(Path(sys.argv[2]), sys.argv[3])
