"""The uplink loop: MQTT messages to Kafka, PUBACKed only once Kafka has them.

Per message (on the event loop, from :class:`gateway.mqtt.MqttLink`): route it (validate,
build the record or the dead letter) and hand it to :class:`gateway.producer.ReliableProducer`
in arrival order (one lane per partition keeps per-VIN order). When Kafka acknowledges a
record, the message is done; done messages are PUBACKed in arrival order (MQTT 3.1.1 §4.6).
A rejected message is PUBACKed once its dead letter is in Kafka, after the sender's error
notice was published.

Bounded: at ``max_inflight`` messages not yet acknowledged by Kafka the link stops reading
(the broker keeps the rest: its in-flight window, then its queue for our persistent session)
and resumes at half of it. A lost MQTT connection forgets its unacknowledged messages: the
broker redelivers them on the next connection (so Kafka may get them twice, never zero times).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial

from fleetgate.logs import get_logger
from gateway.ids import MessageIds
from gateway.metrics import GatewayMetrics
from gateway.mqtt import MqttLink
from gateway.mqtt_read import InMessage
from gateway.producer import ReliableProducer
from gateway.routing import (
    UNKNOWN_SENDER,
    Accepted,
    KafkaRecord,
    MqttPublish,
    RejectCause,
    dead_letter,
    error_notice,
    owner_of,
    route_uplink,
    slice_of,
)
from gateway.window import Window
from schemas.topics import KafkaTopics, TopicKind

log = get_logger(__name__)


@dataclass(slots=True)
class Entry:
    """One MQTT message on its way to Kafka."""

    mid: int
    qos: int
    generation: int
    topic: str
    payload: bytes
    received_at_ms: int
    message_id: str
    record: KafkaRecord
    kind: TopicKind | None
    cause: RejectCause | None
    notice: MqttPublish | None
    ticket: int = 0


@dataclass(slots=True)
class Elsewhere:
    """A message of another instance's slice: acknowledged in turn, not forwarded."""

    mid: int
    qos: int
    generation: int


class UplinkBridge:
    """Routes MQTT messages to Kafka; :meth:`bind` it to the link that feeds :meth:`on_message`."""

    def __init__(
        self,
        *,
        producer: ReliableProducer,
        kafka: KafkaTopics,
        metrics: GatewayMetrics,
        max_inflight: int,
        slice_index: int = 0,
        slices: int = 1,
    ) -> None:
        self._producer = producer
        self._slice, self._slices = slice_index, slices
        self._kafka = kafka
        self._metrics = metrics
        self._max = max_inflight
        self._low = max(0, max_inflight // 2)
        self._window: Window[Entry | Elsewhere] = Window()
        self._idle = asyncio.Event()
        self._idle.set()
        self._link: MqttLink | None = None
        self._ids = MessageIds()
        self._taking = True
        self.pending = 0
        """Messages received and not yet acknowledged by Kafka (old connections included)."""
        self.dropped = 0

    def bind(self, link: MqttLink) -> None:
        self._link = link

    # --- from the MQTT link (loop thread) -----------------------------------------------------
    def stop_taking(self) -> None:
        """Ignore (and never acknowledge) messages from now on: the broker keeps them."""
        self._taking = False

    def on_message(self, msg: InMessage, generation: int) -> None:
        if not self._taking:
            return
        try:
            self._take(msg, generation)
        except Exception:  # never into paho's read loop; not acked, so redelivered later
            log.exception("uplink message not handled", mid=msg.mid)

    def _take(self, msg: InMessage, generation: int) -> None:
        received = time.time_ns() // 1_000_000
        topic = msg.topic
        if self._slices > 1 and slice_of(topic, self._slices) != self._slice:
            self._elsewhere(msg, generation)
            return
        message_id = self._ids.next()
        payload = msg.payload
        result = route_uplink(
            topic=topic,
            payload=payload,
            received_at_ms=received,
            message_id=message_id,
            kafka=self._kafka,
        )
        if isinstance(result, Accepted):
            entry = Entry(
                msg.mid, msg.qos, generation, topic, payload, received, message_id,
                result.record, result.kind, None, None,
            )  # fmt: skip
        else:
            log.info("uplink message rejected", topic=topic, reason=result.reason)
            entry = Entry(
                msg.mid, msg.qos, generation, topic, payload, received, message_id,
                result.dead_letter, None, result.cause, result.notice,
            )  # fmt: skip
        entry.ticket = self._window.push(entry)
        self.pending += 1
        self._idle.clear()
        self._producer.submit(entry.record, partial(self._produced, entry))
        if self.pending >= self._max and self._link is not None and not self._link.paused:
            self._link.pause_reading()
            self._metrics.uplink_paused.set(1)
            log.warning("uplink paused: Kafka is behind", inflight=self.pending)

    def _elsewhere(self, msg: InMessage, generation: int) -> None:
        """Another slice's instance forwards this one (it gets every message too)."""
        self._metrics.uplink_elsewhere.inc()
        window = self._window
        window.complete(window.push(Elsewhere(msg.mid, msg.qos, generation)))
        self._release()

    def on_connection(self, up: bool) -> None:
        """A lost connection's unacknowledged QoS 1/2 messages will be redelivered: forget them
        (those already handed to Kafka still complete, and are not acknowledged)."""
        if up:
            return
        self._window.clear()

    def _produced(self, entry: Entry, exc: BaseException | None) -> None:
        if exc is None:
            self._done(entry)
        elif entry.cause is None:
            # Kafka will never take this record (too large): dead-letter it instead
            self._to_dead_letter(entry, f"Kafka refused the record: {type(exc).__name__}: {exc}")
            self._producer.submit(entry.record, partial(self._produced, entry))
        else:
            log.error("dead letter refused by Kafka; message dropped", topic=entry.topic,
                      error=repr(exc))  # fmt: skip
            self.dropped += 1
            self._done(entry)

    def _to_dead_letter(self, entry: Entry, reason: str) -> None:
        owner = owner_of(entry.topic)
        entry.record = dead_letter(
            reason=reason,
            topic=entry.topic,
            sender=f"{owner[0]}:{owner[1]}" if owner else UNKNOWN_SENDER,
            key=owner[1].encode() if owner else None,
            payload=entry.payload[:1024],
            received_at_ms=entry.received_at_ms,
            message_id=entry.message_id,
            kafka=self._kafka,
        )
        entry.cause, entry.kind = RejectCause.PAYLOAD, None
        entry.notice = error_notice(
            topic=entry.topic, reason=reason, received_at_ms=entry.received_at_ms
        )

    def _done(self, entry: Entry) -> None:
        link = self._link
        if entry.cause is None:
            assert entry.kind is not None
            self._metrics.uplink_by_kind[entry.kind].inc()
        else:
            self._metrics.uplink_reject_by_cause[entry.cause].inc()
            if entry.notice is not None and link is not None:
                notice = entry.notice
                link.publish(notice.topic, notice.payload, qos=notice.qos)
        self._window.complete(entry.ticket)
        self._release()
        self._settle(1)

    def _release(self) -> None:
        """PUBACK the done messages at the front, in the order they arrived."""
        ready = self._window.pop_ready()
        link = self._link
        if link is not None:
            for done in ready:
                if done.qos:
                    link.ack(done.mid, done.qos, done.generation)

    def _settle(self, finished: int) -> None:
        self.pending -= finished
        if self.pending <= 0:
            self._idle.set()
        link = self._link
        if link is not None and link.paused and self.pending <= self._low:
            link.resume_reading()
            self._metrics.uplink_paused.set(0)
            log.info("uplink resumed", inflight=self.pending)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every message taken is in Kafka (and acknowledged); False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True
