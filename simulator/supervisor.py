"""Runs a simulated fleet: certificates, worker processes, the live view, Ctrl-C, the summary.

:func:`run_fleet` is the public entry point (``fleetgate sim`` and the bench scenario call it).
It issues missing vehicle certificates in bulk, deals the vehicles to worker processes
(``spawn``; each holds at most ``max_per_worker`` connections, and every core gets one),
merges their snapshots every second and returns the summary of CONTRACT §5.

Stopping: after ``duration_s``, on Ctrl-C or SIGTERM, or when ``stop`` (a
``threading.Event``) is set, the workers are told to stop; they drain their acks (up to
``drain_s``), disconnect cleanly and send their final snapshot. A second Ctrl-C terminates
them at once; the summary then holds their last snapshots.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

from certs.layout import PkiPaths
from fleetgate.errors import UserError
from schemas.ids import make_vin
from simulator.progress import View, make_view
from simulator.settings import SimSettings, cpu_count, split, worker_count
from simulator.stats import build_summary, merge
from simulator.tls import issue_vehicle_certs, missing_vehicle_certs
from simulator.worker import WorkerPlan, raise_nofile_limit, worker_main

GRACE_S = 20.0
"""How long after the drain time workers may take to finish before they are terminated."""


@dataclass
class _Signals:
    stop: threading.Event
    hard: threading.Event = field(default_factory=threading.Event)
    count: int = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count == 1:
            self.stop.set()
        else:
            self.hard.set()


@contextlib.contextmanager
def _handle_signals(handler: _Signals) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def prepare_certificates(
    settings: SimSettings, *, on_issue: Callable[[int], None] | None = None
) -> int:
    """Issue certificates for every simulated vehicle that has none; how many were issued."""
    opts = settings.sim
    paths = PkiPaths(settings.home)
    if not paths.ca_chain.is_file():
        raise UserError(
            f"no CA chain at {paths.ca_chain}; run 'fleetgate certs init' (or 'fleetgate up') "
            "first, or set FLEETGATE_HOME"
        )
    vins = [make_vin(opts.first + i) for i in range(opts.vehicles)]
    missing = missing_vehicle_certs(paths, vins)
    if not missing:
        return 0
    if not paths.exists():
        raise UserError(
            f"{len(missing)} vehicle certificates are missing under {paths.dir / 'vehicles'} "
            "and there is no issuing CA key to issue them"
        )
    try:
        return issue_vehicle_certs(paths, missing, workers=cpu_count(), on_progress=on_issue)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot issue vehicle certificates: {exc}") from None


def run_fleet(
    settings: SimSettings,
    *,
    view: View | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the fleet of ``settings.sim`` until it is done; the summary (CONTRACT §5)."""
    opts = settings.sim
    prepare_certificates(settings)
    raise_nofile_limit()  # for the workers, which inherit it
    workers = worker_count(
        opts.vehicles,
        requested=opts.workers,
        max_per_worker=opts.max_per_worker,
        cpus=cpu_count(),
    )
    seed = opts.seed if opts.seed is not None else random.SystemRandom().randrange(2**32)
    numbers = split(range(opts.first, opts.first + opts.vehicles), workers)
    home = settings.home.resolve()
    context = multiprocessing.get_context("spawn")
    snapshots: queue.Queue[dict[str, Any]] = context.Queue()  # type: ignore[assignment]
    stop_workers = context.Event()
    processes: list[BaseProcess] = []
    for index, share in enumerate(numbers):
        plan = WorkerPlan(
            index=index,
            numbers=share,
            options=opts,
            home=home,
            seed=seed + index,
            workers=workers,
            log_level=settings.log_level,
            log_format=settings.log_format,
        )
        processes.append(
            context.Process(
                target=worker_main,
                args=(plan, snapshots, stop_workers),
                name=f"fleetgate-sim-{index}",
                daemon=True,
            )
        )
    view = view or make_view(total=opts.vehicles, title="fleetgate sim", enabled=False)
    signals = _Signals(stop or threading.Event())
    latest: dict[int, dict[str, Any]] = {}
    peak = 0
    started = time.monotonic()
    stopped_at: float | None = None
    with _handle_signals(signals):
        for process in processes:
            process.start()
        view.start()
        try:
            while True:
                _drain(snapshots, latest, wait=0.25)
                merged = merge(latest.values())
                peak = max(peak, merged["links"].get("online", 0))
                elapsed = time.monotonic() - started
                phase = "stopping" if stopped_at is not None else "running"
                view.update(merged, elapsed=elapsed, phase=phase)
                timed_out = bool(opts.duration_s) and elapsed >= (opts.duration_s or 0.0)
                if opts.flood:  # a flood worker times its own run, from its first message
                    timed_out = False
                if stopped_at is None and (signals.stop.is_set() or timed_out):
                    stopped_at = elapsed
                    stop_workers.set()
                done = {i for i, s in latest.items() if s["done"]}
                dead = {i for i, p in enumerate(processes) if p.exitcode is not None}
                if len(done | dead) == len(processes):
                    if stopped_at is None:
                        stopped_at = elapsed
                    if len(done) < len(processes):  # what the last ones sent as they exited
                        _drain(snapshots, latest, wait=1.0)
                    break
                late = stopped_at is not None and elapsed - stopped_at > opts.drain_s + GRACE_S
                if signals.hard.is_set() or late:
                    break
        finally:
            view.stop()
            stop_workers.set()
            _reap(processes, hard=signals.hard.is_set())
    return _summary(settings, latest, processes, peak=peak, duration=stopped_at or 0.0)


def _drain(
    snapshots: queue.Queue[dict[str, Any]], latest: dict[int, dict[str, Any]], *, wait: float
) -> None:
    """Keep the newest snapshot of each worker from what is queued (waiting up to ``wait``
    for the first one)."""
    with contextlib.suppress(queue.Empty):
        snap = snapshots.get(timeout=wait)
        latest[snap["worker"]] = snap
        while True:
            snap = snapshots.get_nowait()
            latest[snap["worker"]] = snap


def _reap(processes: list[BaseProcess], *, hard: bool) -> None:
    for process in processes:
        if process.exitcode is None and not hard:
            process.join(timeout=5)
        if process.exitcode is None:
            process.terminate()
            process.join(timeout=5)
        if process.exitcode is None:
            process.kill()
            process.join()


def _summary(
    settings: SimSettings,
    latest: dict[int, dict[str, Any]],
    processes: list[BaseProcess],
    *,
    peak: int,
    duration: float,
) -> dict[str, Any]:
    opts = settings.sim
    merged = merge(latest.values())
    lost_workers = [i for i in range(len(processes)) if not latest.get(i, {}).get("done")]
    if lost_workers:
        merged["errors"]["worker_lost"] = len(lost_workers)
        missing = opts.vehicles - merged["vehicles"]
        merged["links"]["gave_up"] = merged["links"].get("gave_up", 0) + max(0, missing)
    merged["vehicles"] = opts.vehicles
    extra: dict[str, Any] = {
        "profile": opts.profile,
        "rate_hz": opts.rate_hz,
        "qos": opts.qos,
        "broker": opts.broker,
        "ssl_read_buffer": opts.ssl_read_buffer,
    }
    extra["handshakes_per_s"] = connect_rate(merged["marks"], merged["counts"]["connects"])
    if opts.flood:
        extra["flood"] = flood_figures(merged["marks"], window=opts.window)
    return build_summary(merged, duration_s=duration, peak_connected=peak, extra=extra)


def connect_rate(marks: list[dict[str, float]], connects: int) -> float | None:
    """Successful connections per second, from the first to the last one (all workers). Pure."""
    firsts = [m["first_connect"] for m in marks if "first_connect" in m]
    lasts = [m["last_connect"] for m in marks if "last_connect" in m]
    if not firsts or connects < 2:
        return None
    span = max(lasts) - min(firsts)
    return round(connects / span, 1) if span > 0 else None


def flood_figures(marks: list[dict[str, float]], *, window: int) -> dict[str, Any]:
    """msgs/s of a flood over all workers: every message over the span from the first start
    to the last acknowledgement (QoS 1) or PINGRESP (QoS 0). Pure."""
    runs = [m for m in marks if "flood_start" in m]
    if not runs:
        return {"msgs_per_s": None, "messages": 0, "span_s": None, "window": window}
    start = min(m["flood_start"] for m in runs)
    end = max(m["flood_end"] for m in runs)
    messages = int(sum(m["flood_messages"] for m in runs))
    span = end - start
    return {
        "msgs_per_s": round(messages / span, 1) if span > 0 else None,
        "messages": messages,
        "span_s": round(span, 3),
        "window": window,
    }
