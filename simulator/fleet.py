"""The realistic fleet of one worker process: vehicles that connect at the ramp rate, drive,
publish telemetry, answer commands and desired state, drop out and come back.

One task per vehicle runs its connection life cycle (:mod:`simulator.vehicle` decides); one
ticker task publishes telemetry for a bucket of vehicles per tick (see
:func:`simulator.vehicle.tick_plan`); one task sends keep-alive pings. Commands are answered
from ``loop.call_later`` callbacks. Nothing here blocks: a vehicle costs a few KiB.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from fleetgate.logs import get_logger
from schemas.topics import MqttTopics
from simulator import drive
from simulator.client import MqttConnection, now
from simulator.codec import Will, encode_subscribe, publish_header
from simulator.onboard import Onboard, SimVehicle, ms
from simulator.tls import Endpoint, open_tls
from simulator.vehicle import (
    CommandPolicy,
    Link,
    LinkEvent,
    RetryPolicy,
    after_failure,
    backoff_delay,
    birth_payload,
    drive_state,
    goodbye_payload,
    reported_payload,
    telemetry_payload,
    tick_plan,
    transition,
    will_payload,
)
from simulator.worker import Worker, WorkerPlan

WILL = will_payload()
log = get_logger(__name__)


async def poll_until(done: Callable[[], bool], *, deadline: float, every: float = 0.05) -> None:
    """Return when ``done()`` is true or the ``now()`` clock passes ``deadline``."""
    while True:
        if done() or now() >= deadline:
            return
        await asyncio.sleep(every)


class FleetWorker(Worker):
    def __init__(self, plan: WorkerPlan, *args: Any) -> None:
        super().__init__(plan, *args)
        from schemas.ids import make_vin

        opts = self.options
        self.profile = drive.PROFILES[opts.profile]
        self.retry = RetryPolicy(opts.max_attempts, opts.backoff_base_s, opts.backoff_cap_s)
        commands = CommandPolicy(
            opts.command_latency_ms, opts.command_failure_rate, opts.expired_commands
        )
        self.onboard = Onboard(stats=self.stats, rng=self.rng, commands=commands)
        self.vehicles = [
            SimVehicle(n, make_vin(n), drive.initial_state(n, self.rng)) for n in plan.numbers
        ]
        self.tick_s, n_buckets = tick_plan(opts.rate_hz)
        self.buckets = [self.vehicles[b::n_buckets] for b in range(n_buckets)]
        self.telemetry_first = publish_header("-", qos=opts.qos)[0]
        self.endpoint: Endpoint | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.started = 0
        self.gave_up = 0

    def link_counts(self) -> Mapping[str, int]:
        return Counter(v.link.value for v in self.vehicles)

    def unreachable(self, kind: str) -> None:
        for v in self.vehicles:
            self.stats.error(kind)
            v.link = Link.GAVE_UP

    def _finished(self) -> bool:
        return self.started == len(self.vehicles) and self.gave_up == len(self.vehicles)

    async def run(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.connecting = asyncio.Semaphore(self.options.max_connecting)
        helpers = [
            asyncio.create_task(self._ramp()),
            asyncio.create_task(self._ticker()),
            asyncio.create_task(self._keepalive()),
        ]
        try:
            await self.until_stopped(finished=self._finished)
        finally:
            self.closing = True
            for task in helpers:
                task.cancel()
            await self._shutdown()

    # --- connection life cycle ------------------------------------------------------------

    async def _ramp(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        rate = self.options.ramp_per_s / self.plan.workers
        for i, v in enumerate(self.vehicles):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self._life(v))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            self.started += 1

    async def _life(self, v: SimVehicle) -> None:
        while not self.closing:
            v.link = transition(v.link, LinkEvent.CONNECT)
            try:
                conn = await self._connect(v)
            except Exception as exc:
                kind = self.failed(exc, vin=v.vin)
                v.attempts += 1
                event, delay = after_failure(v.attempts, policy=self.retry, roll=self.rng.random())
                v.link = transition(v.link, event)
                if event is LinkEvent.GIVE_UP:
                    self.gave_up += 1
                    log.debug("vehicle gave up", vin=v.vin, error=kind, attempts=v.attempts)
                    return
                await asyncio.sleep(delay)
                continue
            v.attempts = 0
            v.link = transition(v.link, LinkEvent.ONLINE)
            self._online(v, conn)
            await conn.closed
            v.conn = None
            if self.closing:
                return
            if v.dropping:
                v.dropping = False
                v.link = transition(v.link, LinkEvent.DROP)
                await asyncio.sleep(self.rng.uniform(*self.options.offline_s))
            else:
                self.stats.counts["lost"] += 1
                self.stats.error("connection_lost")
                v.link = transition(v.link, LinkEvent.LOST)
                await asyncio.sleep(backoff_delay(1, policy=self.retry, roll=self.rng.random()))

    async def _connect(self, v: SimVehicle) -> MqttConnection:
        """TCP, TLS, CONNECT/CONNACK and, unless the broker kept the session, SUBSCRIBE/SUBACK,
        all within ``connect_timeout_s``."""
        assert self.endpoint is not None
        timeout = self.options.connect_timeout_s
        async with self.connecting:
            t0 = now()
            conn = MqttConnection(
                session=v.session,
                stats=self.stats,
                on_publish=functools.partial(self.onboard.on_publish, v),
                max_packet=self.options.max_packet,
            )
            will = Will(MqttTopics.connection(v.vin), WILL, qos=1)
            try:
                async with asyncio.timeout(timeout):
                    await open_tls(
                        endpoint=self.endpoint,
                        tls=self.tls,
                        vin=v.vin,
                        protocol=conn,
                        handshake_timeout=timeout + 5,  # ours fires first: a TimeoutError
                    )
                    t1 = now()
                    connack = await conn.handshake(
                        self.connect_packet(v.vin, clean=False, will=will)
                    )
                    t2 = now()
                    if not connack.session_present:  # subscribed before it says it is online
                        filters = [(f, 1) for f in MqttTopics.vehicle_subscriptions(v.vin)]
                        packet_id = v.session.ids.next(v.session.inflight)
                        await conn.subscribe(encode_subscribe(packet_id, filters))
            except BaseException:
                conn.abort()
                raise
            self.stats.histograms["tls"].add((t1 - t0) * 1000)
            self.stats.histograms["handshake"].add((t2 - t0) * 1000)
            return conn

    def _online(self, v: SimVehicle, conn: MqttConnection) -> None:
        v.conn = conn
        self.connected()
        if v.ever_online:
            self.stats.counts["reconnects"] += 1
        v.ever_online = True
        conn.resend_inflight()
        self.onboard.publish(v, MqttTopics.connection(v.vin), birth_payload(ms()), "connection")
        v.report_version += 1
        report = reported_payload(v.reported, v.report_version)
        self.onboard.publish(v, MqttTopics.shadow_reported(v.vin), report, "shadow_reported")
        outbox, v.outbox = v.outbox, []
        for topic, payload, kind in outbox:
            self.onboard.publish(v, topic, payload, kind)
        if v.ota is not None:
            self.onboard.ota_out(v, v.ota.on_reconnect(now_ms=ms()))

    def _drop(self, v: SimVehicle) -> None:
        """A simulated disconnect: half clean (goodbye, DISCONNECT), half abrupt (the Will)."""
        conn = v.conn
        if conn is None:
            return
        v.dropping = True
        self.stats.counts["disconnects"] += 1
        if self.rng.random() < 0.5:
            self.onboard.publish(
                v, MqttTopics.connection(v.vin), goodbye_payload(ms()), "connection"
            )
            conn.disconnect()
        else:
            conn.abort()

    # --- publishing -----------------------------------------------------------------------

    async def _ticker(self) -> None:
        loop = asyncio.get_running_loop()
        tick, buckets = self.tick_s, self.buckets
        period = tick * len(buckets)
        drop_p = self.options.disconnects_per_hour / 3600 * period
        scale = self.options.time_scale
        start, k = loop.time(), 0
        while True:
            k += 1
            delay = start + k * tick - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -period:  # far behind (an overloaded loop): do not burst to catch up
                start = loop.time() - k * tick
            t, wall = now(), ms()
            for v in buckets[k % len(buckets)]:
                if v.conn is not None and v.link is Link.ONLINE:
                    self._telemetry(v, t, wall, period, scale)
                    if drop_p and self.rng.random() < drop_p:
                        self._drop(v)

    def _telemetry(self, v: SimVehicle, t: float, wall: int, period: float, scale: float) -> None:
        assert v.conn is not None
        dt = min(t - v.last_t, 300.0) if v.last_t else period
        v.last_t = t
        v.drive = state = drive.advance(
            v.drive, model=v.model, profile=self.profile, dt=dt * scale, rng=self.rng
        )
        v.seq += 1
        signals = drive.signals(state, model=v.model, route=v.route)
        payload = telemetry_payload(wall, v.seq, signals)
        v.conn.publish(self.telemetry_first, v.telemetry_field, payload, kind="telemetry")
        current = drive_state(state.phase)
        reported_drive = v.reported.get("drive")
        if not isinstance(reported_drive, dict) or reported_drive.get("state") != current:
            self.onboard.report(v, {"drive": {"state": current}})
        if v.reported.get("dtc") != state.dtc:
            self.onboard.report(v, {"dtc": state.dtc})

    async def _keepalive(self) -> None:
        interval = self.options.keepalive_s * 0.75
        while True:
            await asyncio.sleep(self.options.keepalive_s / 4)
            t = now()
            for v in self.vehicles:
                if v.conn is not None:
                    v.conn.keepalive(interval=interval, t=t)

    # --- the end --------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Stop connecting, let acks and due answers arrive, say goodbye, disconnect."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        online = [v for v in self.vehicles if v.conn is not None and v.link is Link.ONLINE]
        deadline = now() + self.options.drain_s
        await poll_until(lambda: not self.onboard.pending_answers, deadline=deadline)
        for v in online:
            self.onboard.publish(
                v, MqttTopics.connection(v.vin), goodbye_payload(ms()), "connection"
            )
        await poll_until(
            lambda: not any(v.session.inflight for v in online if v.conn is not None),
            deadline=deadline,
        )
        self.stats.counts["unacked"] += sum(len(v.session.inflight) for v in self.vehicles)
        for v in online:
            if v.conn is not None:
                v.conn.disconnect()
        closing = [v.conn.closed for v in online if v.conn is not None]
        if closing:
            await asyncio.wait(closing, timeout=2)
