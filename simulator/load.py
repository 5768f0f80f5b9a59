"""The load primitive (``--profile flood``): pre-encoded telemetry as fast as MQTT flow control
allows, so the simulator is never the bottleneck of a benchmark.

QoS 1: every connection keeps ``window`` PUBLISH packets in flight, built once (one per packet
id); each PUBACK that arrives sends the same packet id's PUBLISH again, all acks of one read
answered with one write. QoS 0: the pre-joined packets are written until the transport asks
to pause; at the end a PINGREQ/PINGRESP round trip proves the broker has read everything.

Each worker records when its flood started and when its last ack (QoS 1) or PINGRESP (QoS 0)
came; the supervisor divides all messages by the span from the first start to the last end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from schemas.topics import MqttTopics
from simulator import drive
from simulator.client import BaseConnection, now
from simulator.codec import (
    PINGREQ_BYTES,
    PUBACK,
    Ack,
    Connack,
    Pingresp,
    ProtocolError,
    encode_publish_raw,
    encode_topic,
    publish_header,
)
from simulator.parser import PacketReader
from simulator.stats import Stats
from simulator.tls import Endpoint, open_tls
from simulator.vehicle import LinkEvent, RetryPolicy, after_failure, telemetry_payload
from simulator.worker import Worker, WorkerPlan

PUMP_WRITES = 8
"""QoS 0: writes per connection per loop iteration before others get their turn."""


def flood_payload(number: int, *, size: int, ts_ms: int) -> bytes:
    """A realistic telemetry payload of vehicle ``number``, padded with ``pad<i>`` string
    signals (256 characters at most each) to about ``size`` bytes (0: no padding)."""
    import random

    state = drive.initial_state(number, random.Random(number))
    signals: dict[str, bool | int | float | str] = dict(
        drive.signals(state, model=drive.model_of(number), route=drive.make_route(number))
    )
    payload = telemetry_payload(ts_ms, 0, signals)
    i = 0
    while len(payload) < size:
        missing = size - len(payload) - len(f',"pad{i}":""')
        if missing <= 0:
            break
        signals[f"pad{i}"] = "x" * min(256, missing)
        payload = telemetry_payload(ts_ms, 0, signals)
        i += 1
    return payload


def flood_packets(topic: str, payload: bytes, *, qos: int, window: int) -> list[bytes]:
    """QoS 1: ``window + 1`` packets, index = packet id (index 0 empty). QoS 0: ``window``
    copies of the packet joined into one write."""
    first = publish_header(topic, qos=qos)[0]
    field = encode_topic(topic)
    if qos == 0:
        return [encode_publish_raw(first, field, 0, payload) * window]
    return [b""] + [encode_publish_raw(first, field, pid, payload) for pid in range(1, window + 1)]


def scan_pubacks(data: bytes) -> tuple[list[int], int]:
    """Packet ids of the PUBACKs at the start of ``data`` and how many bytes they took (the
    hot path: a broker's answer to a window of QoS 1 messages is a run of PUBACKs)."""
    pids = []
    i, n = 0, len(data)
    while i + 4 <= n and data[i] == 0x40 and data[i + 1] == 2:
        pids.append(data[i + 2] << 8 | data[i + 3])
        i += 4
    return pids, i


class FloodConnection(BaseConnection):
    def __init__(self, *, packets: list[bytes], qos: int, window: int, stats: Stats) -> None:
        super().__init__()
        self.packets = packets
        self.qos = qos
        self.window = window
        self.stats = stats
        self.hist = stats.histograms["publish_ack"]
        self.sent_at = [0.0] * len(packets)
        self.reader = PacketReader()
        self.running = False
        self.paused = False
        self.outstanding = 0
        self.messages = 0
        """QoS 1: acknowledged; QoS 0: written."""
        self.last = 0.0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        assert self.transport is not None
        self.running = True
        if self.qos:
            t = now()
            self.transport.write(b"".join(self.packets[1:]))
            for pid in range(1, len(self.packets)):
                self.sent_at[pid] = t
            self.outstanding = self.window
            self.stats.published("telemetry", self.window)
        else:
            self._pump()

    def stop(self) -> None:
        self.running = False
        if self.transport is None or self.transport.is_closing():
            self._finish()
        elif self.qos == 0:
            self.transport.write(PINGREQ_BYTES)
        elif self.outstanding == 0:
            self._finish()

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.running and self.qos == 0:
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        transport = self.transport
        if not self.running or self.paused or transport is None or transport.is_closing():
            return
        blob = self.packets[0]
        writes = 0
        while writes < PUMP_WRITES and not self.paused:
            transport.write(blob)
            writes += 1
        self.messages += writes * self.window
        self.stats.published("telemetry", writes * self.window)
        if not self.paused:
            asyncio.get_running_loop().call_soon(self._pump)

    def data_received(self, data: bytes) -> None:
        t = now()
        if self.reader.pending:
            pids: list[int] = []
            rest = data
        else:
            pids, used = scan_pubacks(data)
            rest = data[used:]
        if rest:
            try:
                packets = self.reader.feed(rest)
            except ProtocolError as exc:
                self._protocol_error(str(exc))
                return
            for packet in packets:
                if isinstance(packet, Ack) and packet.kind == PUBACK:
                    pids.append(packet.packet_id)
                elif isinstance(packet, Connack):
                    self.got_connack(packet)
                elif isinstance(packet, Pingresp):
                    self.last = t
                    self._finish()
                else:
                    self._protocol_error(f"unexpected {type(packet).__name__}")
                    return
        if pids:
            self._acked(pids, t)

    def _acked(self, pids: list[int], t: float) -> None:
        sent_at, hist, packets = self.sent_at, self.hist, self.packets
        running = self.running
        resend = []
        for pid in pids:
            sent = sent_at[pid] if pid < len(sent_at) else 0.0
            if not sent:
                self._protocol_error(f"PUBACK for packet id {pid}, which is not in flight")
                return
            hist.add((t - sent) * 1000)
            if running:
                resend.append(packets[pid])
                sent_at[pid] = t
            else:
                sent_at[pid] = 0.0
                self.outstanding -= 1
        self.messages += len(pids)
        self.stats.counts["acked"] += len(pids)
        self.last = t
        if resend and self.transport is not None:
            self.transport.write(b"".join(resend))
            self.stats.published("telemetry", len(resend))
        if not running and self.outstanding == 0:
            self._finish()

    def _protocol_error(self, reason: str) -> None:
        self.stats.error("protocol_error")
        self.fail(ProtocolError(reason))
        self._finish()


class FloodWorker(Worker):
    def __init__(self, plan: WorkerPlan, *args: Any) -> None:
        super().__init__(plan, *args)
        opts = self.options
        self.retry = RetryPolicy(opts.max_attempts, opts.backoff_base_s, opts.backoff_cap_s)
        self.conns: list[FloodConnection] = []
        self.gave_up = 0
        self.connecting_now = 0

    def link_counts(self) -> Mapping[str, int]:
        waiting = len(self.plan.numbers) - len(self.conns) - self.gave_up
        return {"online": len(self.conns), "gave_up": self.gave_up, "connecting": waiting}

    def unreachable(self, kind: str) -> None:
        for _ in self.plan.numbers:
            self.stats.error(kind)
        self.gave_up = len(self.plan.numbers)

    async def run(self, endpoint: Endpoint) -> None:
        from schemas.ids import make_vin

        semaphore = asyncio.Semaphore(self.options.max_connecting)
        rate = self.options.ramp_per_s / self.plan.workers
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for i, number in enumerate(self.plan.numbers):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stopping():
                break
            vin = make_vin(number)
            tasks.append(asyncio.create_task(self._connect(endpoint, number, vin, semaphore)))
        await asyncio.gather(*tasks)
        if self.conns and not self.stopping():
            await self._flood()
        for conn in self.conns:
            conn.disconnect()
        if self.conns:
            await asyncio.wait([c.closed for c in self.conns], timeout=2)

    async def _connect(
        self, endpoint: Endpoint, number: int, vin: str, semaphore: asyncio.Semaphore
    ) -> None:
        opts = self.options
        payload = flood_payload(number, size=opts.payload_bytes, ts_ms=int(time.time() * 1000))
        packets = flood_packets(
            MqttTopics.telemetry(vin), payload, qos=opts.qos, window=opts.window
        )
        attempt = 0
        while not self.stopping():
            conn = FloodConnection(
                packets=packets, qos=opts.qos, window=opts.window, stats=self.stats
            )
            try:
                async with semaphore, asyncio.timeout(opts.connect_timeout_s):
                    t0 = now()
                    await open_tls(
                        endpoint=endpoint,
                        tls=self.tls,
                        vin=vin,
                        protocol=conn,
                        handshake_timeout=opts.connect_timeout_s + 5,
                    )
                    self.stats.histograms["tls"].add((now() - t0) * 1000)
                    await conn.handshake(self.connect_packet(vin, clean=True, will=None))
                    self.stats.histograms["handshake"].add((now() - t0) * 1000)
            except Exception as exc:
                conn.abort()
                self.failed(exc, vin=vin)
                attempt += 1
                event, delay = after_failure(attempt, policy=self.retry, roll=self.rng.random())
                if event is LinkEvent.GIVE_UP:
                    self.gave_up += 1
                    return
                await asyncio.sleep(delay)
                continue
            self.connected()
            self.conns.append(conn)
            return

    async def _flood(self) -> None:
        loop = asyncio.get_running_loop()
        wall0, t0 = time.time(), now()
        for conn in self.conns:
            conn.start()
        duration = self.options.duration_s
        deadline = loop.time() + duration if duration else None
        while not self.stopping() and (deadline is None or loop.time() < deadline):
            await asyncio.sleep(0.02)
            if all(c.closed.done() for c in self.conns):
                break
        for conn in self.conns:
            conn.stop()
        await asyncio.wait([c.done for c in self.conns], timeout=max(self.options.drain_s, 0.1))
        last = max((c.last for c in self.conns), default=t0)
        marks = self.stats.marks
        marks["flood_start"] = wall0
        marks["flood_end"] = wall0 + max(last - t0, 0.0)
        marks["flood_messages"] = float(sum(c.messages for c in self.conns))
        self.stats.counts["unacked"] += sum(c.outstanding for c in self.conns)
