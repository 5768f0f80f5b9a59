"""What the gateway does with one message, as pure functions (no I/O).

Uplink: an MQTT message (topic, payload) becomes either a :class:`Accepted` Kafka record for
its kind's topic (key = VIN, headers: message id, receive time, sender, source topic), or a
:class:`Rejected`: a dead letter for the ``deadletter`` topic plus the error notice the sender
gets on ``vehicles/<VIN>/errors`` (``apps/<id>/errors``).

Downlink: a Kafka record of the ``outbound`` topic becomes an :class:`MqttPublish` (target
topic, QoS and retain flag from its headers, value passed through untouched) or a
:class:`Rejected` dead letter when the headers do not name a downlink topic.

The sender of an uplink message is the owner of its topic: the broker lets a vehicle (app)
publish only on its own topics, and a service never publishes uplink topics.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from schemas.codec import PayloadError, decode_uplink, encode
from schemas.commands import CommandRequest
from schemas.connectivity import Connectivity, ConnectivityCause, ConnectivityEvent
from schemas.errors import DeadLetter, ErrorNotice, short_reason
from schemas.topics import (
    HEADER_MESSAGE_ID,
    HEADER_QOS,
    HEADER_RECEIVED_AT,
    HEADER_REJECT_REASON,
    HEADER_RETAIN,
    HEADER_SENDER,
    HEADER_SOURCE_TOPIC,
    HEADER_TARGET_TOPIC,
    KafkaTopics,
    MqttTopics,
    Topic,
    TopicError,
    TopicKind,
    parse_topic,
)

Headers = tuple[tuple[str, bytes], ...]

UNKNOWN_SENDER: Final = "unknown"
"""Sender of a dead letter whose topic names no valid vehicle or app."""
OUTBOUND_SENDER: Final = "service:outbound"
"""Sender of a dead letter made of an outbound record that has no ``fg-sender`` header."""
DEFAULT_DOWNLINK_QOS: Final = 1
MAX_DEAD_LETTER_PAYLOAD: Final = 256 * 1024
"""Most payload bytes a dead letter keeps (base64 in JSON: about 342 KiB)."""


class RejectCause(enum.StrEnum):
    """Why a message was rejected (a metric label: few values)."""

    TOPIC = "topic"
    """The topic is not a fleetgate topic (bad VIN, command id, level...)."""
    DIRECTION = "direction"
    """Uplink: a downlink topic; downlink: an uplink topic."""
    PAYLOAD = "payload"
    """The payload breaks its topic's model."""
    HEADERS = "headers"
    """Downlink: the record's headers do not say where (or how) to publish."""


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


@dataclass(frozen=True, slots=True)
class MqttPublish:
    topic: str
    payload: bytes
    qos: int = DEFAULT_DOWNLINK_QOS
    retain: bool = False
    kind: TopicKind | None = None


@dataclass(frozen=True, slots=True)
class Accepted:
    """A valid uplink message and the record it becomes."""

    kind: TopicKind
    vin: str
    record: KafkaRecord


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that failed validation: its dead letter and (uplink) the sender's notice."""

    cause: RejectCause
    reason: str
    dead_letter: KafkaRecord
    notice: MqttPublish | None = None


# --------------------------------------------------------------------------------------------
# uplink


def route_uplink(
    *, topic: str, payload: bytes, received_at_ms: int, message_id: str, kafka: KafkaTopics
) -> Accepted | Rejected:
    """The Kafka record for an uplink MQTT message, or why it is rejected."""
    try:
        parsed = parse_topic(topic)
    except TopicError as exc:
        return _reject_uplink(
            RejectCause.TOPIC, str(exc), topic, payload, received_at_ms, message_id, kafka
        )
    kind = parsed.kind
    if not kind.is_uplink:
        reason = f"topic {topic!r}: {kind.value} is a downlink topic; devices do not publish it"
        return _reject_uplink(
            RejectCause.DIRECTION, reason, topic, payload, received_at_ms, message_id, kafka
        )
    try:
        message = decode_uplink(kind, payload)
    except PayloadError as exc:
        return _reject_uplink(
            RejectCause.PAYLOAD, str(exc), topic, payload, received_at_ms, message_id, kafka
        )
    vin = _target_vin(parsed, message)
    value = payload
    if kind is TopicKind.CONNECTION:
        assert isinstance(message, Connectivity)
        value = encode(connectivity_event(vin=vin, message=message, received_at_ms=received_at_ms))
    headers: Headers = (
        (HEADER_MESSAGE_ID, message_id.encode()),
        (HEADER_RECEIVED_AT, str(received_at_ms).encode()),
        (HEADER_SENDER, _sender(parsed).encode()),
        (HEADER_SOURCE_TOPIC, topic.encode()),
    )
    record = KafkaRecord(kafka.for_uplink(kind), vin.encode(), value, headers)
    return Accepted(kind, vin, record)


def _target_vin(topic: Topic, message: object) -> str:
    """The Kafka key: the vehicle the message is about."""
    if topic.vin is not None:
        return topic.vin
    assert isinstance(message, CommandRequest), topic.kind  # apps/<id>/commands only
    return message.vin


def _sender(topic: Topic) -> str:
    if topic.app_id is not None:
        return f"app:{topic.app_id}"
    return f"vehicle:{topic.vin}"


def connectivity_event(
    *, vin: str, message: Connectivity, received_at_ms: int
) -> ConnectivityEvent:
    """Birth (``online: true``) or Last Will / goodbye (``online: false``) as a Kafka event."""
    cause = ConnectivityCause.BIRTH if message.online else ConnectivityCause.WILL
    ts = message.ts if message.ts is not None else received_at_ms
    return ConnectivityEvent(vin=vin, online=message.online, ts=ts, cause=cause)


def owner_of(topic: str) -> tuple[str, str] | None:
    """``("vehicle", VIN)`` or ``("app", id)`` named by the second level of a topic that may
    not parse as a whole (the broker lets a device publish only under its own id), else None.
    """
    root, _, rest = topic.partition("/")
    ident = rest.partition("/")[0]
    try:
        if root == "vehicles":
            MqttTopics.errors(ident)
            return ("vehicle", ident)
        if root == "apps":
            MqttTopics.app_errors(ident)
            return ("app", ident)
    except TopicError:
        return None
    return None


def slice_of(topic: str, slices: int) -> int:
    """The uplink slice (0 … ``slices``-1) that owns a message: a stable hash of its sender,
    the topic's second level (``vehicles/<VIN>/…``, ``apps/<id>/…``), so one sender's
    messages all go to one instance, in order. The same in every process and release (CRC-32,
    not Python's salted ``hash``)."""
    if slices == 1:
        return 0
    sender = topic.split("/", 2)[1] if topic.count("/") else topic
    return zlib.crc32(sender.encode("utf-8", "surrogateescape")) % slices


def error_notice(*, topic: str, reason: str, received_at_ms: int) -> MqttPublish | None:
    """The ``{"topic", "reason"}`` notice for the sender of a rejected message (None when the
    topic names no vehicle or app to tell)."""
    owner = owner_of(topic)
    if owner is None:
        return None
    role, ident = owner
    target = MqttTopics.errors(ident) if role == "vehicle" else MqttTopics.app_errors(ident)
    notice = ErrorNotice(topic=topic[:65535], reason=short_reason(reason), ts=received_at_ms)
    kind = TopicKind.ERRORS if role == "vehicle" else TopicKind.APP_ERRORS
    return MqttPublish(target, encode(notice), qos=1, kind=kind)


def _reject_uplink(
    cause: RejectCause,
    reason: str,
    topic: str,
    payload: bytes,
    received_at_ms: int,
    message_id: str,
    kafka: KafkaTopics,
) -> Rejected:
    owner = owner_of(topic)
    sender = f"{owner[0]}:{owner[1]}" if owner else UNKNOWN_SENDER
    key = owner[1].encode() if owner else None
    record = dead_letter(
        reason=reason,
        topic=topic,
        sender=sender,
        key=key,
        payload=payload,
        received_at_ms=received_at_ms,
        message_id=message_id,
        kafka=kafka,
    )
    notice = error_notice(topic=topic, reason=reason, received_at_ms=received_at_ms)
    return Rejected(cause, short_reason(reason), record, notice)


def dead_letter(
    *,
    reason: str,
    topic: str,
    sender: str,
    key: bytes | None,
    payload: bytes,
    received_at_ms: int,
    message_id: str,
    kafka: KafkaTopics,
) -> KafkaRecord:
    """A ``deadletter`` record: the :class:`DeadLetter` JSON, the reason also as a header.

    A payload beyond :data:`MAX_DEAD_LETTER_PAYLOAD` bytes is cut to that (and the reason
    says so), so that every dead letter fits in a Kafka record."""
    if len(payload) > MAX_DEAD_LETTER_PAYLOAD:
        reason = (
            f"{reason} (payload cut to its first {MAX_DEAD_LETTER_PAYLOAD} of {len(payload)} bytes)"
        )
        payload = payload[:MAX_DEAD_LETTER_PAYLOAD]
    letter = DeadLetter.of(
        reason=reason,
        topic=topic[:65535],
        sender=sender[:200] or UNKNOWN_SENDER,
        payload=payload,
        received_at=received_at_ms,
    )
    headers: Headers = (
        (HEADER_MESSAGE_ID, message_id.encode()),
        (HEADER_RECEIVED_AT, str(received_at_ms).encode()),
        (HEADER_SENDER, letter.sender.encode()),
        (HEADER_SOURCE_TOPIC, letter.topic.encode()),
        (HEADER_REJECT_REASON, letter.reason.encode()),
    )
    return KafkaRecord(kafka.deadletter, key, encode(letter), headers)


# --------------------------------------------------------------------------------------------
# downlink


def header_map(headers: Sequence[tuple[str, bytes]] | None) -> Mapping[str, bytes]:
    """Headers as a mapping (the last value of a repeated name wins)."""
    return dict(headers or ())


def route_downlink(
    *,
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]] | None,
    received_at_ms: int,
    message_id: str,
    kafka: KafkaTopics,
) -> MqttPublish | Rejected:
    """The MQTT publish an ``outbound`` record asks for, or a dead letter saying why not.

    ``fg-target-topic`` must be a downlink topic; ``fg-qos`` is ``0``, ``1`` or ``2``
    (default 1); ``fg-retain`` ``1`` publishes retained. The value is published untouched
    (OTA chunks are raw bytes).
    """
    found = header_map(headers)
    payload = value if value is not None else b""
    raw_target = found.get(HEADER_TARGET_TOPIC)
    target = raw_target.decode("utf-8", "replace") if raw_target is not None else ""
    try:
        if raw_target is None:
            raise _Refusal(RejectCause.HEADERS, f"no {HEADER_TARGET_TOPIC} header")
        try:
            parsed = parse_topic(target)
        except TopicError as exc:
            raise _Refusal(RejectCause.TOPIC, str(exc)) from None
        if parsed.kind.is_uplink:
            raise _Refusal(
                RejectCause.DIRECTION, f"target {target!r} is an uplink topic, not a downlink one"
            )
        qos = _qos(found.get(HEADER_QOS))
        retain = _flag(found.get(HEADER_RETAIN), HEADER_RETAIN)
    except _Refusal as refusal:
        sender = found.get(HEADER_SENDER, b"").decode("utf-8", "replace") or OUTBOUND_SENDER
        record = dead_letter(
            reason=f"outbound record: {refusal.reason}",
            topic=target,
            sender=sender,
            key=key,
            payload=payload,
            received_at_ms=received_at_ms,
            message_id=message_id,
            kafka=kafka,
        )
        return Rejected(refusal.cause, refusal.reason, record)
    return MqttPublish(target, payload, qos=qos, retain=retain, kind=parsed.kind)


class _Refusal(Exception):
    def __init__(self, cause: RejectCause, reason: str) -> None:
        super().__init__(reason)
        self.cause = cause
        self.reason = reason


def _qos(raw: bytes | None) -> int:
    if raw is None:
        return DEFAULT_DOWNLINK_QOS
    if raw in (b"0", b"1", b"2"):
        return int(raw)
    raise _Refusal(RejectCause.HEADERS, f"{HEADER_QOS} {raw[:20]!r} must be 0, 1 or 2")


def _flag(raw: bytes | None, name: str) -> bool:
    if raw is None or raw == b"0":
        return False
    if raw == b"1":
        return True
    raise _Refusal(RejectCause.HEADERS, f"{name} {raw[:20]!r} must be 0 or 1")
