"""MQTT 3.1.1 sessions on ``asyncio.Protocol``: the thin adapter between the codec and a
TLS transport. One :class:`MqttConnection` per connection; a vehicle's :class:`Session`
(unacknowledged QoS 1 messages, packet ids) outlives its connections, as a persistent MQTT
session does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from simulator.codec import (
    DISCONNECT_BYTES,
    PINGREQ_BYTES,
    PUBACK,
    SUBACK_FAILURE,
    Ack,
    Connack,
    Pingresp,
    ProtocolError,
    Publish,
    Suback,
    encode_puback,
    encode_publish_raw,
    mark_dup,
)
from simulator.errors import ClosedBeforeConnack, ConnectRefused
from simulator.parser import PacketIds, PacketReader
from simulator.stats import Stats

MAX_INFLIGHT: Final = 100
"""Unacknowledged QoS 1 messages a simulated vehicle keeps; more are dropped (``backlog_full``)."""

now = time.perf_counter


class Session:
    """What a vehicle keeps across reconnects (clean_session=False)."""

    __slots__ = ("ids", "inflight")

    def __init__(self) -> None:
        self.inflight: dict[int, tuple[float, bytes]] = {}
        """packet id -> (time sent, the PUBLISH packet)"""
        self.ids = PacketIds()


class BaseConnection(asyncio.Protocol):
    """Connection set-up shared by vehicles and the flood load: CONNECT, CONNACK, loss."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[Connack] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future()
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connack.done():
            self.connack.set_exception(exc or ClosedBeforeConnack("closed before CONNACK"))
            self.connack.exception()  # retrieved: nobody may be waiting any more
        if not self.closed.done():
            self.closed.set_result(exc)

    def got_connack(self, packet: Connack) -> None:
        if self.connack.cancelled():  # the connect was given up (timeout, stop): just close
            self.abort()
            return
        if self.connack.done():
            raise ProtocolError("a second CONNACK")
        if packet.return_code:
            self.connack.set_exception(ConnectRefused(packet.return_code))
        else:
            self.connack.set_result(packet)

    async def handshake(self, connect_packet: bytes) -> Connack:
        """Send CONNECT and wait for an accepting CONNACK (else raise); the caller bounds the
        wait with ``asyncio.timeout``."""
        assert self.transport is not None
        self.transport.write(connect_packet)
        return await self.connack

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def disconnect(self) -> None:
        """Clean DISCONNECT (the broker drops the Last Will), then close."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(DISCONNECT_BYTES)
            self.transport.close()

    def fail(self, exc: BaseException) -> None:
        """The peer broke the protocol: record why, drop the connection."""
        if not self.connack.done():
            self.connack.set_exception(exc)
            self.connack.exception()
        if not self.closed.done():
            self.closed.set_result(exc)
        self.abort()


class MqttConnection(BaseConnection):
    """A vehicle's connection: QoS 1 publishing with acknowledgement timing, subscriptions,
    keep-alive, and every incoming PUBLISH handed to ``on_publish``."""

    def __init__(
        self,
        *,
        session: Session,
        stats: Stats,
        on_publish: Callable[[Publish], None],
        max_packet: int,
    ) -> None:
        super().__init__()
        self.session = session
        self.stats = stats
        self.on_publish = on_publish
        self.reader = PacketReader(max_packet=max_packet)
        self.last_tx = now()
        self.ping_sent: float | None = None
        self.suback: asyncio.Future[tuple[int, ...]] | None = None

    async def subscribe(self, packet: bytes) -> tuple[int, ...]:
        """Send a SUBSCRIBE and wait for its SUBACK's return codes (the caller bounds the wait
        with ``asyncio.timeout``); refused filters are counted as ``subscribe_refused``."""
        assert self.transport is not None
        self.suback = asyncio.get_running_loop().create_future()
        self.transport.write(packet)
        return await self.suback

    def connection_lost(self, exc: Exception | None) -> None:
        if self.suback is not None and not self.suback.done():
            self.suback.set_exception(exc or ConnectionResetError("closed before SUBACK"))
            self.suback.exception()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        try:
            packets = self.reader.feed(data)
        except ProtocolError as exc:
            self.stats.error("protocol_error")
            self.fail(exc)
            return
        for packet in packets:
            try:
                self._dispatch(packet)
            except ProtocolError as exc:
                self.stats.error("protocol_error")
                self.fail(exc)
                return

    def _dispatch(self, packet: object) -> None:
        if isinstance(packet, Ack):
            if packet.kind == PUBACK:
                sent = self.session.inflight.pop(packet.packet_id, None)
                if sent is not None:
                    self.stats.counts["acked"] += 1
                    self.stats.histograms["publish_ack"].add((now() - sent[0]) * 1000)
        elif isinstance(packet, Publish):
            self.stats.counts["received"] += 1
            if packet.qos and packet.packet_id is not None and self.transport is not None:
                self.transport.write(encode_puback(packet.packet_id))
            self.on_publish(packet)
        elif isinstance(packet, Connack):
            self.got_connack(packet)
        elif isinstance(packet, Suback):
            if SUBACK_FAILURE in packet.return_codes:
                self.stats.error("subscribe_refused")
            if self.suback is not None and not self.suback.done():
                self.suback.set_result(packet.return_codes)
        elif isinstance(packet, Pingresp):
            self.ping_sent = None

    def publish(self, first: int, topic_field: bytes, payload: bytes, *, kind: str) -> bool:
        """Send a PUBLISH (``first`` carries QoS and flags); False if it had to be dropped."""
        transport = self.transport
        if transport is None or transport.is_closing():
            self.stats.error("not_connected")
            return False
        if first & 0x06:
            inflight = self.session.inflight
            if len(inflight) >= MAX_INFLIGHT:
                self.stats.error("backlog_full")
                return False
            packet_id = self.session.ids.next(inflight)
            packet = encode_publish_raw(first, topic_field, packet_id, payload)
            inflight[packet_id] = (now(), packet)
        else:
            packet = encode_publish_raw(first, topic_field, 0, payload)
        transport.write(packet)
        self.last_tx = now()
        self.stats.published(kind)
        return True

    def resend_inflight(self) -> int:
        """Retransmit every unacknowledged QoS 1 message with DUP (session resumption)."""
        if self.transport is None or not self.session.inflight:
            return 0
        t = now()
        inflight = self.session.inflight
        packets = []
        for packet_id, (_, packet) in list(inflight.items()):
            dup = mark_dup(packet)
            inflight[packet_id] = (t, dup)
            packets.append(dup)
        self.transport.write(b"".join(packets))
        self.stats.counts["retransmitted"] += len(packets)
        return len(packets)

    def keepalive(self, *, interval: float, t: float) -> None:
        """Ping when nothing was sent for ``interval`` seconds; drop the connection when a
        ping went unanswered for as long."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.ping_sent is not None:
            if t - self.ping_sent > interval:
                self.stats.error("keepalive_timeout")
                self.fail(TimeoutError("no PINGRESP"))
        elif t - self.last_tx >= interval:
            self.ping_sent = self.last_tx = t
            self.transport.write(PINGREQ_BYTES)
