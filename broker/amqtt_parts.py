"""The pieces the hardened amqtt broker plugs into amqtt 0.12.1 (pinned: see :func:`check_amqtt`).

- :class:`PeerReader` / :class:`PeerWriter`: stream adapters carrying the connection's own
  :class:`~broker.listener.Peer`, a packet-size limit and read back-pressure;
- :class:`FleetHandler`: amqtt's broker protocol handler with bounded outgoing queues and an
  enforced keep-alive;
- :class:`PolicyPlugin`: the per-topic ACL as an amqtt topic plugin calling
  :mod:`broker.policy`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib import metadata
from typing import Any, NoReturn

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.contexts import Action, BaseContext
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin
from amqtt.session import OutgoingApplicationMessage, Session

from broker import mqtt_frames, policy
from broker.listener import Peer
from fleetgate.logs import get_logger
from schemas.ids import Identity

log = get_logger(__name__)

AMQTT_VERSION = "0.12.1"
IDENTITY = "fleetgate.identity"
"""Session attribute: the identity that owns the session (set only after authentication)."""
AUTHENTICATED = "fleetgate.authenticated"
"""Session attribute: this connection passed authentication (consumed by ``_authenticate``)."""


def check_amqtt() -> None:
    """The overrides in :mod:`broker.embedded` copy amqtt 0.12.1 code; refuse any other."""
    found = metadata.version("amqtt")
    if found != AMQTT_VERSION:
        raise RuntimeError(
            f"the hardened broker is written against amqtt=={AMQTT_VERSION}, found {found}; "
            "its security overrides must be reviewed before running on another version"
        )


@dataclass(frozen=True, slots=True)
class Limits:
    max_packet_size: int
    max_inflight: int
    max_queued: int


class ProtocolViolation(Exception):
    """A client sent a malformed or oversized packet; its connection is cut."""


class PeerWriter(StreamWriterAdapter):  # type: ignore[misc]  # amqtt is untyped
    """amqtt's stream writer plus the peer of THIS connection."""

    def __init__(self, writer: asyncio.StreamWriter, peer: Peer) -> None:
        super().__init__(writer)
        self.peer = peer
        self._transport = writer.transport

    def abort(self) -> None:
        self.is_closed = True
        self._transport.abort()


class PeerReader(StreamReaderAdapter):  # type: ignore[misc]
    """amqtt's stream reader, one checked packet at a time, with back-pressure.

    It reads a whole packet (header, remaining length, body) from the socket, refuses one
    above ``max_packet_size`` before reading its body, and one that is malformed
    (:func:`broker.mqtt_frames.frame_problem`); then amqtt's parser reads from that packet
    only. While the session has ``max_inflight`` received messages not yet routed, the next
    packet waits: a fast publisher is slowed by TCP instead of queued in memory.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: PeerWriter, limits: Limits) -> None:
        super().__init__(reader)
        self._stream = reader
        self._writer = writer
        self._limits = limits
        self._frame = b""
        self._pos = 0
        self._first = True
        self.session: Session | None = None

    async def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._frame):
            await self._next_frame()
        if n < 0 or self._pos + n > len(self._frame):
            self._writer.abort()
            raise ProtocolViolation("the parser read past the end of a packet")
        chunk = self._frame[self._pos : self._pos + n]
        self._pos += n
        return chunk

    async def _next_frame(self) -> None:
        session = self.session
        if session is not None:
            # amqtt's queue offers no "room again" event; poll while it is full
            while session.delivered_message_queue.qsize() >= self._limits.max_inflight:  # noqa: ASYNC110
                await asyncio.sleep(0.002)
        header = await self._stream.readexactly(1)
        encoded = b""
        try:
            while (length := mqtt_frames.decode_remaining_length(encoded)) is None:
                encoded += await self._stream.readexactly(1)
        except mqtt_frames.Malformed as exc:
            self._refuse(str(exc))
        if length > self._limits.max_packet_size:
            self._refuse(f"packet of {length} bytes, the limit is {self._limits.max_packet_size}")
        body = await self._stream.readexactly(length) if length else b""
        problem = mqtt_frames.frame_problem(header[0], body, first_packet=self._first)
        if problem is not None:
            self._refuse(problem)
        self._first = False
        self._frame, self._pos = header + encoded + body, 0

    def _refuse(self, reason: str) -> NoReturn:
        peer = self._writer.peer
        log.warning("protocol violation, closing", identity=str(peer.identity), reason=reason)
        self._writer.abort()
        raise ProtocolViolation(reason)


class FleetHandler(BrokerProtocolHandler):  # type: ignore[misc]
    """amqtt's broker handler with bounded queues toward a client and a real keep-alive.

    Stock amqtt starts one task per message per subscriber and never drops: a slow client
    makes the broker grow without bound. Here at most ``max_inflight`` QoS 1/2 messages are in
    flight to one client and at most ``max_queued`` wait; beyond that messages are dropped
    and counted (what Mosquitto does with ``max_queued_messages``). Stock amqtt also ignores a
    client that stops talking; here the connection is closed after 1.5 keep-alive periods.
    """

    def configure(self, limits: Limits) -> None:
        self._limits = limits
        self._inflight = asyncio.Semaphore(limits.max_inflight)
        self._queued = 0
        self.dropped = 0

    async def mqtt_publish(
        self,
        topic: str,
        data: bytes | bytearray,
        qos: int | None,
        retain: bool,
        ack_timeout: int | None = None,
    ) -> OutgoingApplicationMessage:
        limits: Limits | None = getattr(self, "_limits", None)
        if limits is None:
            return await super().mqtt_publish(topic, data, qos, retain, ack_timeout)
        if self._queued >= limits.max_queued:
            self.dropped += 1
            if self.dropped % 1000 == 1:
                log.warning(
                    "client queue full, dropping", client=self._client_id(), dropped=self.dropped
                )
            return OutgoingApplicationMessage(None, topic, qos, data, retain)
        self._queued += 1
        try:
            if not qos:
                return await super().mqtt_publish(topic, data, qos, retain, ack_timeout)
            async with self._inflight:
                return await super().mqtt_publish(topic, data, qos, retain, ack_timeout)
        finally:
            self._queued -= 1

    def handle_read_timeout(self) -> None:
        log.info("keep-alive expired, closing", client=self._client_id())
        if isinstance(self.writer, PeerWriter):
            self.writer.abort()

    def _client_id(self) -> str | None:
        return self.session.client_id if self.session else None


def session_identity(session: Session | None) -> Identity | None:
    identity = session.attributes.get(IDENTITY) if session is not None else None
    return identity if isinstance(identity, Identity) else None


def check_topic(
    session: Session | None, topic: str | None, action: Action | None
) -> policy.Decision:
    """The ACL: the session owner's identity against :mod:`broker.policy`."""
    identity = session_identity(session)
    if identity is None or topic is None:
        return policy.Decision(False, "no authenticated identity")
    if action == Action.PUBLISH:
        return policy.may_publish(identity, topic)
    if action == Action.SUBSCRIBE:
        return policy.may_subscribe(identity, topic)
    if action == Action.RECEIVE:
        return policy.may_receive(identity, topic)
    return policy.Decision(False, f"unknown action {action!r}")


class PolicyPlugin(BaseTopicPlugin, BaseAuthPlugin):  # type: ignore[misc]
    """amqtt plugin: per-topic ACL (and authentication result) from :mod:`broker.policy`.

    The hardened broker calls :meth:`check` directly on its hot path (amqtt's plugin manager
    starts a task per plugin call, per message and subscriber); amqtt's generic plugin
    calls land in the same function.
    """

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)

    def check(self, session: Session | None, topic: str | None, action: Action | None) -> bool:
        decision = check_topic(session, topic, action)
        if not decision.allowed:
            log.info(
                "refused",
                action=str(action),
                topic=topic,
                client=session.client_id if session else None,
                reason=decision.reason,
            )
        return decision.allowed

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        return self.check(session, topic, action)

    async def authenticate(self, *, session: Session) -> bool | None:
        return session.attributes.get(AUTHENTICATED) is True

    @dataclass
    class Config:
        """No options: the policy is code."""


def listener_config(*, session_expiry_s: int) -> dict[str, Any]:
    """amqtt configuration: one external listener (fed by broker.listener) and the ACL plugin."""
    return {
        "listeners": {"default": {"type": "external", "bind": "fleetgate-tls"}},
        "plugins": {f"{PolicyPlugin.__module__}.{PolicyPlugin.__qualname__}": {}},
        "session_expiry_interval": session_expiry_s,
    }
