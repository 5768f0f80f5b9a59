"""A worker process of the simulator: one asyncio loop, a share of the fleet, a snapshot of
its counters to the supervisor every second. :func:`worker_main` is the process entry point
(started with the ``spawn`` method); :class:`Worker` holds what both runtimes share (the
realistic fleet in :mod:`simulator.fleet`, the flood load in :mod:`simulator.load`).

Workers ignore SIGINT: the supervisor catches Ctrl-C and sets the shared ``stop`` event, so
every worker drains, disconnects and sends its final snapshot.
"""

from __future__ import annotations

import asyncio
import random
import resource
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any, Literal

from certs.layout import PkiPaths
from fleetgate.logs import configure_logging, get_logger
from simulator.codec import Will, encode_connect
from simulator.errors import classify
from simulator.settings import SimOptions
from simulator.stats import Stats, rss_kb
from simulator.tls import Endpoint, VehicleTls, parse_broker, resolve, set_read_buffer

REPORT_S = 1.0
log = get_logger(__name__)


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker process runs (pickled to it)."""

    index: int
    numbers: list[int]
    options: SimOptions
    home: Path
    seed: int
    workers: int
    """How many workers share the fleet (each ramps at ``ramp_per_s / workers``)."""
    log_level: str = "WARNING"
    log_format: Literal["console", "json", "auto"] = "auto"


def raise_nofile_limit() -> int:
    """Raise this process's open-file limit to its hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft
        return target
    return soft


def worker_main(plan: WorkerPlan, queue: Queue[dict[str, Any]], stop: Event) -> None:
    """Entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(level=plan.log_level, fmt=plan.log_format)  # stderr; stdout is the summary
    raise_nofile_limit()
    set_read_buffer(plan.options.ssl_read_buffer)
    worker: Worker
    if plan.options.flood:
        from simulator.load import FloodWorker

        worker = FloodWorker(plan, queue, stop)
    else:
        from simulator.fleet import FleetWorker

        worker = FleetWorker(plan, queue, stop)
    asyncio.run(worker.main())


class Worker:
    """Process-wide parts: stats, TLS, the broker's address, reporting, stopping."""

    def __init__(self, plan: WorkerPlan, queue: Queue[dict[str, Any]], stop: Event) -> None:
        self.plan = plan
        self.options = plan.options
        self.queue = queue
        self.stop_event = stop
        self.stats = Stats()
        self.rng = random.Random(plan.seed)
        self.base_rss = 0
        self.peak_rss = 0
        self.tls = VehicleTls(PkiPaths(plan.home))
        self._logged: set[str] = set()

    # --- to implement ---------------------------------------------------------------------

    def link_counts(self) -> Mapping[str, int]:
        raise NotImplementedError

    def unreachable(self, kind: str) -> None:
        """The broker's address did not resolve: every vehicle fails with ``kind``."""
        raise NotImplementedError

    async def run(self, endpoint: Endpoint) -> None:
        raise NotImplementedError

    # --- shared ---------------------------------------------------------------------------

    async def main(self) -> None:
        self.base_rss = self.peak_rss = rss_kb()
        reporter = asyncio.create_task(self._report_loop())
        try:
            host, port = parse_broker(self.options.broker)
            try:
                endpoint = await resolve(host, port)
            except OSError as exc:
                log.warning("broker address unusable", broker=self.options.broker, reason=str(exc))
                self.unreachable(classify(exc))
            else:
                await self.run(endpoint)
        finally:
            reporter.cancel()
            self.send(done=True)

    def stopping(self) -> bool:
        return self.stop_event.is_set()

    async def until_stopped(self, *, finished: Any = None, poll: float = 0.1) -> None:
        """Return once the supervisor says stop, or ``finished()`` is true."""
        while not self.stop_event.is_set():
            if finished is not None and finished():
                return
            await asyncio.sleep(poll)

    def send(self, *, done: bool = False) -> None:
        current = rss_kb()
        self.peak_rss = max(self.peak_rss, current)
        self.queue.put(
            self.stats.snapshot(
                worker=self.plan.index,
                vehicles=len(self.plan.numbers),
                links=self.link_counts(),
                rss_kb=current,
                peak_rss_kb=self.peak_rss,
                base_rss_kb=self.base_rss,
                done=done,
            )
        )

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(REPORT_S)
            self.send()

    def failed(self, exc: BaseException, *, vin: str) -> str:
        """Count a failed connection attempt by kind; log the first of each kind."""
        kind = classify(exc)
        self.stats.error(kind)
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("connection failed", vin=vin, error=kind, reason=str(exc) or repr(exc))
        return kind

    def connected(self) -> None:
        """Count a successful connection; remember when the first and the last happened."""
        self.stats.counts["connects"] += 1
        wall = time.time()
        self.stats.marks.setdefault("first_connect", wall)
        self.stats.marks["last_connect"] = wall

    def connect_packet(self, vin: str, *, clean: bool, will: Will | None) -> bytes:
        return encode_connect(
            client_id=vin, keepalive=self.options.keepalive_s, clean_session=clean, will=will
        )
