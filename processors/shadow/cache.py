"""The shadow processor's state: vehicles' shadows in memory and their coalesced writes.

Inputs of one vehicle run one at a time on its :class:`KeyedQueue` lane (and so do its
writes). An input that changes the shadow is kept with its acknowledgement
(:meth:`ShadowCache._keep`) and acknowledged only once a write containing it succeeded, so a
worker that dies loses nothing: Kafka replays what was not acknowledged and the merge makes
replays harmless. The flusher (:meth:`ShadowCache.run`) follows the coalescer's plan; while
the worker drains (stopping, or giving up partitions) it writes every dirty vehicle at once.
The inputs themselves are in :mod:`processors.shadow.service`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fleetgate.logs import get_logger
from processors.inventory.logic import ecu_changes, ecus_from_reported
from processors.keyed import KeyedQueue, Retrier
from processors.links import LinkCache
from processors.metrics import ProcessorMetrics
from processors.ports import TRANSIENT, Ack, Clock, Outbound, ShadowStore, VehicleDirectory
from processors.records import OutboundRecord, app_shadow
from processors.shadow.coalesce import DueQueue, WriteState, due_at, plan
from processors.shadow.logic import Applied, Shadow, compact, document, materialize
from processors.shadow.stored import to_row
from processors.store.schema import Ecu

_log = get_logger(__name__)
Reapply = Callable[[Shadow], Shadow]
"""Applies an input again to a shadow reloaded after another writer changed the row."""


@dataclass(slots=True)
class Entry:
    shadow: Shadow
    stored_version: int | None
    partition: int
    last_used: float
    write: WriteState = field(default_factory=WriteState)
    unsaved: list[tuple[Reapply, Ack, bool]] = field(default_factory=list)
    """Inputs not yet in a stored write: how to re-apply each, its ack, whether telemetry."""
    published: tuple[int, bool | None] = (0, None)
    ecus: Mapping[str, Ecu] | None = None


class ShadowCache:
    """Shadows in memory by VIN, the inputs not yet stored, and the flusher that writes them."""

    def __init__(
        self,
        *,
        store: ShadowStore,
        directory: VehicleDirectory,
        links: LinkCache,
        outbound: Outbound,
        clock: Clock,
        interval_s: float,
        telemetry_interval_s: float | None = None,
        draining: Callable[[], bool] = lambda: False,
        idle_s: float = 900.0,
        max_in_flight: int = 4096,
        metrics: ProcessorMetrics | None = None,
    ) -> None:
        self._store = store
        self._directory = directory
        self._links = links
        self._outbound = outbound
        self._clock = clock
        self._interval = interval_s
        self._telemetry_interval = telemetry_interval_s
        self._draining = draining
        self._idle_s = idle_s
        self.queue = KeyedQueue(name="shadow", limit=max_in_flight)
        self._entries: dict[str, Entry] = {}
        self._dirty: set[str] = set()
        self._due = DueQueue()
        self._wakeup = asyncio.Event()
        self._sleep_until: float | None = None
        self._retry = Retrier(transient=TRANSIENT)
        self.writes = 0
        self._metrics = metrics or ProcessorMetrics()

    def _keep(
        self, entry: Entry, result: Applied, ack: Ack, reapply: Reapply, *, telemetry: bool = False
    ) -> None:
        if not result.touched:
            ack()  # a duplicate: nothing to write
            return
        entry.shadow = result.shadow
        entry.unsaved.append((reapply, ack, telemetry))
        state = entry.write
        if not state.dirty or (state.telemetry_only and not telemetry):
            entry.write = WriteState(
                dirty=True,
                last_write=state.last_write,
                writing=state.writing,
                telemetry_only=telemetry and (not state.dirty or state.telemetry_only),
            )
            self._dirty.add(entry.shadow.vin)
            self._schedule(entry)

    def _due_at(self, state: WriteState) -> float | None:
        return due_at(
            state,
            interval=self._interval,
            draining=False,
            telemetry_interval=self._telemetry_interval,
        )

    def _left(self, entry: Entry, *, last_write: float) -> WriteState:
        """The write state once a write ended, from the inputs it did not hold."""
        unsaved = entry.unsaved
        return WriteState(
            dirty=bool(unsaved),
            last_write=last_write,
            telemetry_only=bool(unsaved) and all(t for _, _, t in unsaved),
        )

    def _schedule(self, entry: Entry) -> None:
        """Put a dirty vehicle in the flusher's queue (a write in flight reschedules it when
        it ends); wake the flusher if it would sleep past the vehicle's time."""
        at = self._due_at(entry.write)
        if at is None:
            return
        at = max(at, self._clock.monotonic())
        self._due.push(entry.shadow.vin, at)
        if self._sleep_until is None or at < self._sleep_until:
            self._wakeup.set()

    # -- state ------------------------------------------------------------------------------

    async def _entry(self, vin: str, partition: int) -> Entry | None:
        entry = self._entries.get(vin)
        now = self._clock.monotonic()
        if entry is not None:
            entry.last_used = now
            entry.partition = partition
            return entry
        loaded = await self._retry.value("load shadow", lambda: self._store.load(vin=vin), vin)
        if loaded is None:
            return None
        shadow = loaded.shadow
        entry = Entry(shadow, loaded.stored_version, partition, now)
        entry.published = (shadow.version, shadow.online)
        self._entries[vin] = entry
        return entry

    def shadow_of(self, vin: str) -> Shadow | None:
        """The in-memory shadow of ``vin`` (None when not loaded)."""
        entry = self._entries.get(vin)
        return entry.shadow if entry is not None else None

    async def _send(self, record: OutboundRecord) -> None:
        async def send() -> bool:
            await (await self._outbound.send(record))
            return True

        await self._retry.value("send outbound", send, record.vin)

    # -- writes -----------------------------------------------------------------------------

    async def run(self) -> None:
        """The flusher: write what the coalescer says is due, until :meth:`stop`. It sleeps
        until the next vehicle is due (at most ``tick``), or until an input makes one due
        earlier; a draining worker (stopping, giving up partitions) looks every ``tick``."""
        tick = 0.05
        next_sweep = self._clock.monotonic() + 10.0
        while not self._retry.stopping:
            now = self._clock.monotonic()
            wake = self.flush_due()
            delay = tick if wake is None else min(tick, max(0.0, wake - now))
            self._sleep_until = now + delay
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), delay)
            self._sleep_until = None
            if now >= next_sweep:
                self._evict_idle(now)
                next_sweep = now + 10.0

    def flush_due(self) -> float | None:
        """Start the writes that are due now; returns when the next one will be."""
        return self._submit_due(self._clock.monotonic(), draining=self._draining())

    def _submit_due(self, now: float, *, draining: bool) -> float | None:
        if draining:  # every dirty vehicle now (one being written reschedules when it ends)
            states = {v: self._entries[v].write for v in self._dirty if v in self._entries}
            self._due.clear()
            for vin in plan(states, now=now, interval=self._interval, draining=True).due:
                self._start_write(self._entries[vin])
            return None
        for vin in self._due.pop_due(now):
            entry = self._entries.get(vin)
            if entry is None:
                continue
            at = self._due_at(entry.write)
            if at is None:  # written meanwhile, or a write is in flight (it reschedules)
                continue
            if at <= now:
                self._start_write(entry)
            else:
                self._due.push(vin, at)
        return self._due.next_at

    def _start_write(self, entry: Entry) -> None:
        vin = entry.shadow.vin
        state = entry.write
        entry.write = WriteState(dirty=True, last_write=state.last_write, writing=True,
                                 telemetry_only=state.telemetry_only)  # fmt: skip
        self.queue.submit_nowait(vin, functools.partial(self._write, vin))

    async def _write(self, vin: str) -> None:
        entry = self._entries.get(vin)
        if entry is None:
            return
        started = self._clock.monotonic()
        snapshot = compact(entry.shadow, now=self._clock.wall_ms())
        count = len(entry.unsaved)
        stored = entry.stored_version
        saved = await self._retry.value(
            "write shadow",
            lambda: self._store.save(row=to_row(snapshot), stored_version=stored),
            vin,
        )
        if saved is None:  # stopping: leave it dirty and unacknowledged
            entry.write = self._left(entry, last_write=started)
            return
        if not saved:
            await self._reload(entry)
            entry.write = self._left(entry, last_write=started)
            self._schedule(entry)
            return
        self.writes += 1
        self._metrics.shadow_writes.inc()
        entry.stored_version = snapshot.version
        done, entry.unsaved = entry.unsaved[:count], entry.unsaved[count:]
        entry.write = self._left(entry, last_write=started)
        if entry.write.dirty:
            self._schedule(entry)
        else:
            self._dirty.discard(vin)
        for _, ack, _ in done:
            ack()
        await self._after_write(entry, snapshot)

    async def _reload(self, entry: Entry) -> None:
        """Another writer changed the row: start again from it and re-apply our inputs."""
        vin = entry.shadow.vin
        _log.warning("shadow changed by another writer; re-applying", vin=vin)
        loaded = await self._retry.value("reload shadow", lambda: self._store.load(vin=vin), vin)
        if loaded is None:
            return
        shadow = loaded.shadow
        for reapply, _, _ in entry.unsaved:
            shadow = reapply(shadow)
        entry.shadow, entry.stored_version = shadow, loaded.stored_version

    async def _after_write(self, entry: Entry, snapshot: Shadow) -> None:
        """Tell the linked apps about a new document; keep the inventory's ECUs current."""
        vin = snapshot.vin
        reported_ecus = ecus_from_reported(materialize(snapshot.reported))
        publish = entry.published != (snapshot.version, snapshot.online)
        if not publish and (reported_ecus is None or not ecu_changes(entry.ecus, reported_ecus)):
            return
        apps = await self._retry.value("linked apps", lambda: self._links.apps_of(vin=vin), vin)
        if apps is None:
            return  # unknown vehicle: no app can see it, no inventory row to update
        if publish:
            doc = document(snapshot)
            for app_id in sorted(apps):
                await self._send(app_shadow(app_id=app_id, document=doc))
            entry.published = (snapshot.version, snapshot.online)
        if reported_ecus is not None and (changes := ecu_changes(entry.ecus, reported_ecus)):
            ts = snapshot.ts

            async def update() -> bool:
                await self._directory.update_ecus(vin=vin, ecus=changes, ts_ms=ts)
                return True

            if await self._retry.value("update ECUs", update, vin):
                entry.ecus = {**(entry.ecus or {}), **changes}

    def _evict_idle(self, now: float) -> None:
        idle = [
            vin
            for vin, e in self._entries.items()
            if now - e.last_used > self._idle_s and not e.write.dirty and not e.write.writing
        ]
        for vin in idle:
            del self._entries[vin]

    # -- life cycle -------------------------------------------------------------------------

    async def drain(self) -> None:
        """Write every dirty vehicle now and wait for the writes (and every other input)."""
        for _ in range(100):
            self._submit_due(self._clock.monotonic(), draining=True)
            await asyncio.sleep(0)
            await self.queue.join()
            if not any(self._entries[v].write.dirty for v in self._dirty if v in self._entries):
                return

    def forget(self, partitions: set[int]) -> None:
        """Drop the vehicles of partitions this worker no longer owns (another loads them)."""
        for vin in [v for v, e in self._entries.items() if e.partition in partitions]:
            del self._entries[vin]
            self._dirty.discard(vin)

    async def stop(self) -> None:
        self._retry.stopping = True
        self._wakeup.set()
        await self.queue.close()
