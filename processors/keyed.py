"""Per-vehicle ordering with concurrency across vehicles, and retries of transient failures.

:class:`KeyedQueue` runs the jobs of one key (a VIN) one after another, in submission order,
and the jobs of different keys concurrently; ``submit`` waits while ``limit`` jobs are
pending, which pushes back on the agent and so on Kafka fetching.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fleetgate.logs import get_logger

T = TypeVar("T")
Job = Callable[[], Awaitable[None]]

_log = get_logger(__name__)


class KeyedQueue:
    """Serial per key, concurrent across keys, bounded."""

    def __init__(self, *, name: str, limit: int = 4096) -> None:
        self.name = name
        self._slots = asyncio.Semaphore(limit)
        self._queues: dict[str, deque[tuple[Job, bool, Callable[[], None] | None]]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.failures = 0

    @property
    def pending(self) -> int:
        return sum(len(q) for q in self._queues.values()) + len(self._tasks)

    async def submit(
        self, key: str, job: Job, *, on_error: Callable[[], None] | None = None
    ) -> None:
        """Queue ``job`` behind the other jobs of ``key`` (waits while the queue is full).

        ``on_error`` runs if the job raises (a bug, not a transient failure: those are
        retried inside the job): typically the input's ack, so that one bad record cannot
        hold back its partition's committed offset forever.
        """
        await self._slots.acquire()
        self._enqueue(key, job, counted=True, on_error=on_error)

    def submit_nowait(self, key: str, job: Job) -> None:
        """Queue ``job`` without waiting for room (for the processor's own short jobs)."""
        self._enqueue(key, job, counted=False)

    def _enqueue(
        self, key: str, job: Job, *, counted: bool, on_error: Callable[[], None] | None = None
    ) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = deque()
        queue.append((job, counted, on_error))
        if key not in self._tasks:
            self._idle.clear()
            self._tasks[key] = asyncio.ensure_future(self._drain(key))

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job, counted, on_error = queue.popleft()
                try:
                    await job()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a job's own bug must not stop the other keys
                    self.failures += 1
                    _log.exception("job failed", queue=self.name, key=key, error=str(exc))
                    if on_error is not None:
                        on_error()
                finally:
                    if counted:
                        self._slots.release()
        finally:
            self._queues.pop(key, None)
            self._tasks.pop(key, None)
            if not self._tasks:
                self._idle.set()

    async def join(self) -> None:
        """Wait until every submitted job has finished."""
        await self._idle.wait()

    async def close(self) -> None:
        """Cancel what is still running (its events stay unacknowledged: Kafka replays them)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Stopping(Exception):
    """The worker is stopping: a retried operation gave up (its input will be replayed)."""


async def retrying(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    transient: tuple[type[BaseException], ...],
    stopping: Callable[[], bool],
    first_delay_s: float = 0.05,
    max_delay_s: float = 5.0,
    **log_context: object,
) -> T:
    """Run ``operation`` until it succeeds; a ``transient`` error is retried with backoff.

    Raises :class:`Stopping` if the worker stops while retrying.
    """
    delay = first_delay_s
    attempt = 0
    while True:
        try:
            return await operation()
        except transient as exc:
            attempt += 1
            if stopping():
                raise Stopping(f"{what}: gave up while stopping ({exc})") from exc
            log = _log.warning if attempt in (1, 10) or attempt % 100 == 0 else _log.debug
            log("retrying", what=what, attempt=attempt, error=str(exc), **log_context)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)


class Retrier:
    """:func:`retrying` for a service's Cassandra and Kafka calls, which gives up once the
    service stops (the input then stays unacknowledged and Kafka replays it)."""

    def __init__(self, *, transient: tuple[type[BaseException], ...]) -> None:
        self.transient = transient
        self.stopping = False

    async def value(self, what: str, op: Callable[[], Awaitable[T]], key: str) -> T | None:
        """The result of ``op``; None if the service stopped while retrying."""
        try:
            return await retrying(
                op, what=what, transient=self.transient, stopping=lambda: self.stopping, key=key
            )
        except Stopping as exc:
            _log.info("gave up", what=what, key=key, reason=str(exc))
            return None

    async def done(self, what: str, op: Callable[[], Awaitable[object]], key: str) -> bool:
        """Whether ``op`` completed (False: the service stopped while retrying)."""

        async def run() -> bool:
            await op()
            return True

        return bool(await self.value(what, run, key))
