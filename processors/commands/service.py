"""The command processor's I/O around :mod:`processors.commands.logic`.

Every input of one vehicle (requests, results, its connectivity, its timers) runs on the
vehicle's :class:`KeyedQueue` lane, so a command staged while the vehicle is offline can
never slip past the delivery that runs when it connects. The Kafka record of an input is
acknowledged once its effects are stored and sent.

Timers (expiry of waiting commands, time-out of delivered ones) live in memory; each is
also a ``command_deadlines`` row of the vehicle's Kafka partition, which the worker that
takes the partition over reads to re-arm them.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Iterable

from fleetgate.logs import get_logger
from processors import ports
from processors.commands import logic
from processors.commands.logic import Command, CommandEvent, Delivery, Ignored, Rejection, Staged
from processors.keyed import KeyedQueue, Retrier
from processors.links import LinkCache
from processors.metrics import ProcessorMetrics
from processors.ports import TRANSIENT, Ack, Clock, Outbound
from processors.records import Incoming, OutboundRecord, command_downlink, command_status
from processors.store.repo_commands import DeadlineRow
from processors.timers import Timers
from schemas.commands import CommandRequest, CommandResult, CommandState, CommandStatus
from schemas.connectivity import ConnectivityEvent

_log = get_logger(__name__)


class CommandService:
    def __init__(
        self,
        *,
        store: ports.CommandStore,
        shadows: ports.ShadowStore,
        directory: ports.VehicleDirectory,
        links: LinkCache,
        outbound: Outbound,
        clock: Clock,
        result_grace_s: float,
        max_in_flight: int = 4096,
        metrics: ProcessorMetrics | None = None,
    ) -> None:
        self._store = store
        self._shadows = shadows
        self._directory = directory
        self._links = links
        self._outbound = outbound
        self._clock = clock
        self._grace_ms = int(result_grace_s * 1000)
        self.queue = KeyedQueue(name="commands", limit=max_in_flight)
        self._online: dict[str, bool] = {}
        self._open: dict[str, tuple[Command, int]] = {}
        self._timers = Timers(clock=clock, fire=self._due)
        self._owned: set[int] = set()
        self._deliveries: dict[str, Awaitable[object]] = {}
        self._retry = Retrier(transient=TRANSIENT)
        self._metrics = metrics or ProcessorMetrics()

    # -- inputs -----------------------------------------------------------------------------

    async def on_request(
        self, *, meta: Incoming, partition: int, request: CommandRequest, ack: Ack
    ) -> None:
        job = functools.partial(self._request, meta, partition, request, ack)
        await self.queue.submit(meta.vin, job, on_error=ack)

    async def on_result(
        self, *, meta: Incoming, partition: int, command_id: str, result: CommandResult, ack: Ack
    ) -> None:
        job = functools.partial(self._result, meta, partition, command_id, result, ack)
        await self.queue.submit(meta.vin, job, on_error=ack)

    async def on_connectivity(
        self, *, meta: Incoming, partition: int, event: ConnectivityEvent, ack: Ack
    ) -> None:
        job = functools.partial(self._connectivity, meta, partition, event, ack)
        await self.queue.submit(meta.vin, job, on_error=ack)

    async def _request(
        self, meta: Incoming, partition: int, request: CommandRequest, ack: Ack
    ) -> None:
        app_id, vin, cid = meta.app_id, request.vin, request.command_id
        log = _log.bind(vin=vin, command_id=cid, app_id=app_id)
        if app_id is None:
            log.warning("command request without an app sender; skipped")
            ack()
            return
        existing = self._open[cid][0] if cid in self._open else None
        if existing is None:
            found = await self._admit_or_find(request, app_id, meta.received_at)
            if found is None:
                return
            decision, existing = found
            if existing is None:
                await self._new(
                    decision, request=request, app_id=app_id, partition=partition, ack=ack
                )
                return
        duplicate = logic.on_duplicate(existing, app_id=app_id, vin=vin, now=self._clock.wall_ms())
        log.info("duplicate command", status=existing.status.value, resume=duplicate.resume)
        await self._status(app_id, cid, duplicate.status)
        if duplicate.resume and not await self._dispatch(existing, partition, new=False):
            return
        await self._ack(vin, ack)

    async def _new(
        self,
        decision: Command | Rejection,
        *,
        request: CommandRequest,
        app_id: str,
        partition: int,
        ack: Ack,
    ) -> None:
        """A command id not seen before: reject it, or accept and dispatch it."""
        vin, cid = request.vin, request.command_id
        if isinstance(decision, Rejection):
            _log.info("command rejected", vin=vin, command_id=cid, reason=decision.reason)
            now = self._clock.wall_ms()
            status = logic.rejected_status(decision.reason, vin=vin, now=now)
            await self._status(app_id, cid, status)
            await self._ack(vin, ack)
            return
        _log.debug("command accepted", vin=vin, command_id=cid)
        await self._status(app_id, cid, decision.status_message(now=decision.created_at))
        if await self._dispatch(decision, partition, new=True):
            await self._ack(vin, ack)

    async def _admit_or_find(
        self, request: CommandRequest, app_id: str, now: int
    ) -> tuple[Command | Rejection, Command | None] | None:
        """The admission of a request and the command already stored under its id, read
        side by side; None when the worker stopped."""
        vin, cid = request.vin, request.command_id

        async def check() -> tuple[bool, bool]:
            linked = await self._links.is_linked(app_id=app_id, vin=vin)
            known = linked or await self._directory.apps_of(vin=vin) is not None
            return known, linked

        async def stored() -> tuple[Command | None]:
            return (await self._store.get(command_id=cid),)

        found, existing = await asyncio.gather(
            self._retry.value("check app link", check, vin),
            self._retry.value("load command", stored, vin),
        )
        if found is None or existing is None:
            return None
        known, linked = found
        decision = logic.admit(request, app_id=app_id, vehicle_known=known, linked=linked, now=now)
        return decision, existing[0]

    async def _dispatch(self, command: Command, partition: int, *, new: bool) -> bool:
        """Deliver, stage or expire an accepted command; False if the worker stopped."""
        now = self._clock.wall_ms()
        online = await self._retry.value(
            "presence", lambda: self._is_online(command.vin), command.vin
        )
        if online is None:
            return False
        action = logic.plan_delivery(command, online=online, now=now)
        if action is Delivery.DELIVER:
            await self._send(
                command_downlink(
                    vin=command.vin, command_id=command.command_id, message=command.downlink()
                )
            )
            after = command.apply(CommandEvent.DELIVER, now=now)
        elif action is Delivery.EXPIRE:
            after = command.apply(CommandEvent.EXPIRE, now=now, detail="the TTL passed")
        else:
            after = command
            if not await self._retry.done(
                "stage", lambda: self._store.stage(command=command, now_ms=now), command.vin
            ):
                return False
        if after is not command:
            # the status leaves before the log write (the input is acknowledged after both;
            # a crash in between replays it: at least once)
            await self._status(after.app_id, after.command_id, after.status_message(now=now))
        if new:
            done = await self._retry.done(
                "record command",
                lambda: self._store.record_new(command=after, partition=partition, now_ms=now),
                command.vin,
            )
        elif after is not command:
            done = await self._retry.done(
                "save command",
                lambda: self._store.save_status(command=after, partition=partition, now_ms=now),
                command.vin,
            )
        else:
            done = True
        if not done:
            return False
        self._remember(after, partition)
        return True

    async def _result(
        self, meta: Incoming, partition: int, command_id: str, result: CommandResult, ack: Ack
    ) -> None:
        vin = meta.vin
        known = self._open.get(command_id)
        command = known[0] if known else None
        if command is None:
            command = await self._retry.value(
                "load command", lambda: self._store.get(command_id=command_id), vin
            )
            if command is None:
                _log.info("result for an unknown command; ignored", vin=vin, command_id=command_id)
                ack()
                return
        now = self._clock.wall_ms()
        steps = logic.apply_result(
            command, vin=vin, status=result.status, detail=result.detail, now=now
        )
        if isinstance(steps, Ignored):
            _log.info("command result ignored", vin=vin, command_id=command_id, reason=steps.reason)
            ack()
            return
        final = steps[-1]
        for step in steps:  # before the log write, as in _dispatch
            await self._status(step.app_id, command_id, step.status_message(now=now))
        if not await self._retry.done(
            "save result",
            lambda: self._store.save_status(command=final, partition=partition, now_ms=now),
            vin,
        ):
            return
        self._remember(final, partition)
        await self._ack(vin, ack)

    async def _connectivity(
        self, meta: Incoming, partition: int, event: ConnectivityEvent, ack: Ack
    ) -> None:
        vin = meta.vin
        self._online[vin] = event.online
        if event.online and not await self._deliver_staged(vin, partition):
            return
        await self._ack(vin, ack)

    async def _deliver_staged(self, vin: str, partition: int) -> bool:
        staged = await self._retry.value("read staged", lambda: self._store.staged(vin=vin), vin)
        if staged is None:
            return False
        deliver, expire = logic.on_connect(staged, now=self._clock.wall_ms())
        for item in [*deliver, *expire]:
            if not await self._release(item, partition, vin):
                return False
        return True

    async def _release(self, item: Staged, partition: int, vin: str) -> bool:
        """Deliver (or expire) one staged command, then drop its staged row."""
        cid = item.command_id
        command = await self._retry.value(
            "load command", lambda: self._store.get(command_id=cid), vin
        )
        done = (
            command is None
            or command.status is not CommandState.ACCEPTED
            or await self._dispatch(command, partition, new=False)
        )
        if not done:
            return False
        return await self._retry.done(
            "unstage",
            lambda: self._store.unstage(vin=vin, staged_at=item.staged_at, command_id=cid),
            vin,
        )

    # -- timers -----------------------------------------------------------------------------

    def _remember(self, command: Command, partition: int) -> None:
        due = logic.deadline(command, result_grace_ms=self._grace_ms)
        if due is None:
            self._open.pop(command.command_id, None)
            return
        self._open[command.command_id] = (command, partition)
        self._timers.schedule(due, command.command_id, command.vin)

    async def run(self) -> None:
        """Fire due timers until :meth:`stop`."""
        await self._timers.run(lambda: self._retry.stopping)

    def fire_due(self) -> int | None:
        """Queue the timers that are due; returns when the next one is (epoch ms)."""
        return self._timers.fire_due()

    def _due(self, command_id: str, vin: str) -> None:
        if command_id in self._open:
            self.queue.submit_nowait(vin, functools.partial(self._fire, command_id))

    async def _fire(self, command_id: str) -> None:
        known = self._open.get(command_id)
        if known is None:
            return
        command, partition = known
        now = self._clock.wall_ms()
        after = logic.on_deadline(command, now=now, result_grace_ms=self._grace_ms)
        if after is None:
            self._remember(command, partition)
            return
        vin = command.vin
        _log.info("command " + after.status.value, vin=vin, command_id=command_id)
        if not await self._retry.done(
            "save deadline",
            lambda: self._store.save_status(command=after, partition=partition, now_ms=now),
            vin,
        ):
            return
        await self._status(after.app_id, command_id, after.status_message(now=now))
        if after.status is CommandState.EXPIRED:
            await self._retry.done(
                "unstage",
                lambda: self._store.unstage(
                    vin=vin, staged_at=command.created_at, command_id=command_id
                ),
                vin,
            )
        self._remember(after, partition)

    async def on_assigned(self, partitions: Iterable[int]) -> None:
        """Re-arm the timers of partitions this worker has just taken over."""
        new = set(partitions) - self._owned
        self._owned |= new
        for partition in sorted(new):
            await self._rearm_partition(partition)

    async def _rearm_partition(self, partition: int) -> None:
        now = self._clock.wall_ms()

        async def read() -> list[DeadlineRow]:
            return await self._store.deadlines(partition=partition, now_ms=now)

        rows = await self._retry.value("read deadlines", read, f"partition {partition}")
        for row in rows or []:
            job = functools.partial(self._rearm, row.command_id, partition)
            self.queue.submit_nowait(row.vin, job)

    async def _rearm(self, command_id: str, partition: int) -> None:
        if command_id in self._open:
            return
        command = await self._retry.value(
            "load command", lambda: self._store.get(command_id=command_id), command_id
        )
        if command is not None and not command.status.is_final:
            self._remember(command, partition)

    def forget(self, partitions: set[int]) -> None:
        """Drop what belongs to partitions this worker gave up (their new owner re-arms)."""
        self._owned -= partitions
        for cid in [c for c, (_, p) in self._open.items() if p in partitions]:
            del self._open[cid]
        self._online.clear()

    async def stop(self) -> None:
        self._retry.stopping = True
        self._timers.wake()
        await self.queue.close()

    # -- helpers ----------------------------------------------------------------------------

    async def _is_online(self, vin: str) -> bool:
        known = self._online.get(vin)
        if known is None:
            loaded = await self._shadows.load(vin=vin)
            known = self._online[vin] = bool(loaded.shadow.online)
        return known

    async def _send(self, record: OutboundRecord) -> None:
        """Queue ``record`` for Kafka without waiting for the broker (the input's ack does)."""
        delivery = await self._retry.value(
            "send outbound", lambda: self._outbound.send(record), record.vin
        )
        if delivery is not None:
            self._deliveries[record.vin] = delivery

    async def _ack(self, vin: str, ack: Ack) -> None:
        """Acknowledge an input once what it sent is in Kafka (records of one vehicle share a
        partition, so the last one confirms all before it)."""
        delivery = self._deliveries.pop(vin, None)
        if delivery is not None:
            try:
                await delivery
            except Exception as exc:  # not acknowledged: replayed after a restart
                _log.error("outbound record not delivered", vin=vin, error=str(exc))
                return
        ack()

    async def _status(self, app_id: str, command_id: str, status: CommandStatus) -> None:
        vin = status.vin
        assert vin is not None
        record = command_status(app_id=app_id, command_id=command_id, vin=vin, status=status)
        self._metrics.command_statuses.labels(status.status.value).inc()
        await self._send(record)
