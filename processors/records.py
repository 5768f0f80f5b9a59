"""Kafka records in and out of the processors. Pure.

In: every uplink record is keyed by VIN and carries the gateway's headers (message id,
receive time, sender identity, source MQTT topic); :func:`incoming` reads them.

Out: the processors are the one producer of the ``outbound`` topic; every record is keyed by
the VIN it concerns and names the MQTT topic the gateway publishes it to (and its QoS). The
builders below are the only place that makes them; MQTT topic strings come from
:class:`schemas.topics.MqttTopics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from pydantic import BaseModel, JsonValue

from schemas.codec import encode
from schemas.commands import CommandStatus
from schemas.errors import ErrorNotice, short_reason
from schemas.ids import Identity, InvalidIdentifier, Role, parse_identity, validate_vin
from schemas.shadow import ShadowDesired, ShadowDocument
from schemas.topics import (
    HEADER_MESSAGE_ID,
    HEADER_QOS,
    HEADER_RECEIVED_AT,
    HEADER_SENDER,
    HEADER_SOURCE_TOPIC,
    HEADER_TARGET_TOPIC,
    MqttTopics,
    Topic,
    TopicError,
    parse_topic,
)

Headers = tuple[tuple[str, bytes], ...]
SENDER: Final = b"service:processors"


class RecordError(ValueError):
    """A record the processors cannot use (no VIN key, bad headers); logged and skipped."""


def header_map(
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
) -> dict[str, bytes]:
    """Headers as a dict (aiokafka gives a sequence of pairs; the last one of a name wins)."""
    if headers is None:
        return {}
    if isinstance(headers, Mapping):
        return dict(headers)
    return dict(headers)


@dataclass(frozen=True, slots=True)
class Incoming:
    """What the gateway says about an uplink record."""

    vin: str
    received_at: int
    """Epoch ms when the gateway received the MQTT message (else the record's timestamp)."""
    sender: Identity | None
    source: Topic | None
    message_id: str | None

    @property
    def app_id(self) -> str | None:
        """The app that sent it (None for a vehicle or an unknown sender)."""
        if self.sender is not None and self.sender.role is Role.APP:
            return self.sender.id
        return None


def incoming(
    *,
    key: bytes | None,
    headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None,
    timestamp_ms: int,
    identify: bool = True,
) -> Incoming:
    """Read the key and headers of an uplink record; raises :class:`RecordError`.

    ``identify=False`` skips the sender and the source topic (telemetry needs neither).
    """
    if not key:
        raise RecordError("record without a key (the VIN)")
    try:
        vin = validate_vin(key.decode("ascii"))
    except (UnicodeDecodeError, InvalidIdentifier) as exc:
        raise RecordError(f"record key is not a VIN: {exc}") from None
    found = header_map(headers)
    received_at = timestamp_ms
    raw = found.get(HEADER_RECEIVED_AT)
    if raw is not None and raw.isdigit() and len(raw) <= 16:
        received_at = int(raw)
    sender: Identity | None = None
    source: Topic | None = None
    raw_id = found.get(HEADER_MESSAGE_ID)
    message_id = raw_id.decode("utf-8", "replace") if raw_id else None
    if not identify:
        return Incoming(vin, received_at, sender, source, message_id)
    if (raw := found.get(HEADER_SENDER)) is not None:
        try:
            sender = parse_identity(raw.decode("utf-8"))
        except (UnicodeDecodeError, InvalidIdentifier):
            sender = None
    if (raw := found.get(HEADER_SOURCE_TOPIC)) is not None:
        try:
            source = parse_topic(raw.decode("utf-8"))
        except (UnicodeDecodeError, TopicError):
            source = None
    return Incoming(vin, received_at, sender, source, message_id)


# --------------------------------------------------------------------------------------------
# outbound


@dataclass(frozen=True, slots=True)
class OutboundRecord:
    """One record of the ``outbound`` topic: the gateway publishes ``value`` to ``target``."""

    vin: str
    target: str
    value: bytes
    qos: int = 1

    @property
    def key(self) -> bytes:
        return self.vin.encode("ascii")

    def headers(self, *, message_id: str) -> Headers:
        return (
            (HEADER_TARGET_TOPIC, self.target.encode("utf-8")),
            (HEADER_QOS, str(self.qos).encode("ascii")),
            (HEADER_MESSAGE_ID, message_id.encode("ascii")),
            (HEADER_SENDER, SENDER),
        )


def _record(vin: str, target: str, message: BaseModel, qos: int = 1) -> OutboundRecord:
    return OutboundRecord(vin=vin, target=target, value=encode(message), qos=qos)


def command_downlink(*, vin: str, command_id: str, message: BaseModel) -> OutboundRecord:
    return _record(vin, MqttTopics.command(vin, command_id), message)


def command_status(
    *, app_id: str, command_id: str, vin: str, status: CommandStatus
) -> OutboundRecord:
    return _record(vin, MqttTopics.app_command_status(app_id, command_id), status)


def shadow_delta(*, vin: str, state: dict[str, JsonValue], version: int) -> OutboundRecord:
    return _record(vin, MqttTopics.shadow_desired(vin), ShadowDesired(state=state, version=version))


def app_shadow(*, app_id: str, document: ShadowDocument) -> OutboundRecord:
    return _record(document.vin, MqttTopics.app_shadow(app_id, document.vin), document)


def vehicle_error(*, vin: str, topic: str, reason: str, ts: int) -> OutboundRecord:
    notice = ErrorNotice(topic=topic[:65535], reason=short_reason(reason), ts=ts)
    return _record(vin, MqttTopics.errors(vin), notice)


def app_error(*, app_id: str, vin: str, topic: str, reason: str, ts: int) -> OutboundRecord:
    notice = ErrorNotice(topic=topic[:65535], reason=short_reason(reason), ts=ts)
    return _record(vin, MqttTopics.app_errors(app_id), notice)
