"""A small MQTT 3.1.1 client codec: encoders for what a vehicle sends, an incremental parser
for what a broker sends. Pure: no I/O, no clocks.

Encoders return ``bytes`` ready for ``transport.write``; the packets a client receives are the
dataclasses here, parsed by :class:`simulator.parser.PacketReader`.

Only what a client needs is here: CONNECT (with Last Will), CONNACK, PUBLISH QoS 0/1 (QoS 2
parses too), PUBACK, SUBSCRIBE/SUBACK, UNSUBACK, PINGREQ/PINGRESP, DISCONNECT.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Final

MAX_REMAINING_LENGTH: Final = 268_435_455
"""Largest remaining length MQTT can express (4 length bytes)."""
DEFAULT_MAX_PACKET: Final = 16 * 1024 * 1024
"""Largest packet :class:`PacketReader` accepts by default (an OTA chunk plus headers)."""

CONNECT: Final = 1
CONNACK: Final = 2
PUBLISH: Final = 3
PUBACK: Final = 4
PUBREC: Final = 5
PUBREL: Final = 6
PUBCOMP: Final = 7
SUBSCRIBE: Final = 8
SUBACK: Final = 9
UNSUBSCRIBE: Final = 10
UNSUBACK: Final = 11
PINGREQ: Final = 12
PINGRESP: Final = 13
DISCONNECT: Final = 14

PINGREQ_BYTES: Final = b"\xc0\x00"
PINGRESP_BYTES: Final = b"\xd0\x00"
DISCONNECT_BYTES: Final = b"\xe0\x00"
DUP_FLAG: Final = 0x08
SUBACK_FAILURE: Final = 0x80


class ProtocolError(ValueError):
    """Bytes that are not valid MQTT 3.1.1 from a broker; the message says why."""


class ConnackCode(enum.IntEnum):
    """CONNACK return codes of MQTT 3.1.1 (§3.2.2.3)."""

    ACCEPTED = 0
    UNACCEPTABLE_PROTOCOL_VERSION = 1
    IDENTIFIER_REJECTED = 2
    SERVER_UNAVAILABLE = 3
    BAD_USERNAME_OR_PASSWORD = 4
    NOT_AUTHORIZED = 5


# --- packets a client receives ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    return_code: int


@dataclass(frozen=True, slots=True)
class Publish:
    topic: str
    payload: bytes
    qos: int = 0
    packet_id: int | None = None
    retain: bool = False
    dup: bool = False


@dataclass(frozen=True, slots=True)
class Ack:
    """PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK: a packet type and a packet id."""

    kind: int
    packet_id: int


@dataclass(frozen=True, slots=True)
class Suback:
    packet_id: int
    return_codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Pingresp:
    pass


Packet = Connack | Publish | Ack | Suback | Pingresp


# --- encoding --------------------------------------------------------------------------------


def encode_remaining_length(length: int) -> bytes:
    """The variable-length encoding of a remaining length (1 to 4 bytes)."""
    if not 0 <= length <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {length} out of range 0..{MAX_REMAINING_LENGTH}")
    out = bytearray()
    while True:
        digit = length % 128
        length //= 128
        if length:
            out.append(digit | 0x80)
        else:
            out.append(digit)
            return bytes(out)


def _string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return _binary(raw)


def _binary(raw: bytes) -> bytes:
    if len(raw) > 65_535:
        raise ValueError(f"string of {len(raw)} bytes is longer than 65535")
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_remaining_length(len(body)) + body


def _check_packet_id(packet_id: int) -> None:
    if not 1 <= packet_id <= 65_535:
        raise ValueError(f"packet id {packet_id} out of range 1..65535")


def _check_qos(qos: int) -> None:
    if qos not in (0, 1, 2):
        raise ValueError(f"QoS {qos} is not 0, 1 or 2")


@dataclass(frozen=True, slots=True)
class Will:
    """The Last Will a broker publishes when a connection dies without DISCONNECT."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False


def encode_connect(
    *,
    client_id: str,
    keepalive: int = 60,
    clean_session: bool = True,
    will: Will | None = None,
    username: str | None = None,
    password: bytes | None = None,
) -> bytes:
    """CONNECT for protocol level 4 (MQTT 3.1.1)."""
    if not 0 <= keepalive <= 65_535:
        raise ValueError(f"keepalive {keepalive} out of range 0..65535")
    if password is not None and username is None:
        raise ValueError("MQTT 3.1.1 allows a password only with a username")
    flags = 0x02 if clean_session else 0
    payload = _string(client_id)
    if will is not None:
        _check_qos(will.qos)
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
        payload += _string(will.topic) + _binary(will.payload)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
    if password is not None:
        flags |= 0x40
        payload += _binary(password)
    header = b"\x00\x04MQTT\x04" + bytes((flags,)) + struct.pack("!H", keepalive)
    return _packet(CONNECT << 4, header + payload)


def publish_header(topic: str, *, qos: int, retain: bool = False, dup: bool = False) -> bytes:
    """First byte of a PUBLISH (flags included); see :func:`encode_publish`."""
    _check_qos(qos)
    return bytes(((PUBLISH << 4) | (DUP_FLAG if dup else 0) | (qos << 1) | int(retain),))


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int = 0,
    packet_id: int | None = None,
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    """PUBLISH; ``packet_id`` is required for QoS 1 and 2 and forbidden for QoS 0."""
    first = publish_header(topic, qos=qos, retain=retain, dup=dup)[0]
    if qos == 0:
        if packet_id is not None:
            raise ValueError("a QoS 0 PUBLISH has no packet id")
        if dup:
            raise ValueError("a QoS 0 PUBLISH cannot be a duplicate")
        variable = _string(topic)
    else:
        if packet_id is None:
            raise ValueError(f"a QoS {qos} PUBLISH needs a packet id")
        _check_packet_id(packet_id)
        variable = _string(topic) + struct.pack("!H", packet_id)
    if not topic or "+" in topic or "#" in topic:
        raise ValueError(f"{topic!r} is not a topic name")
    return _packet(first, variable + payload)


def encode_topic(topic: str) -> bytes:
    """A topic name as it appears in a PUBLISH (length prefix + UTF-8), for pre-encoding."""
    return _string(topic)


def encode_publish_raw(first: int, topic_field: bytes, packet_id: int, payload: bytes) -> bytes:
    """A PUBLISH from pre-encoded parts (hot path): ``first`` from :func:`publish_header`,
    ``topic_field`` from :func:`encode_topic`; ``packet_id`` 0 means none (QoS 0)."""
    if packet_id:
        body_len = len(topic_field) + 2 + len(payload)
        return b"".join(
            (
                bytes((first,)),
                encode_remaining_length(body_len),
                topic_field,
                packet_id.to_bytes(2, "big"),
                payload,
            )
        )
    body_len = len(topic_field) + len(payload)
    return b"".join((bytes((first,)), encode_remaining_length(body_len), topic_field, payload))


def mark_dup(packet: bytes) -> bytes:
    """The same QoS 1/2 PUBLISH with the DUP flag set (a retransmission)."""
    if not packet or packet[0] >> 4 != PUBLISH or not packet[0] & 0x06:
        raise ValueError("only a QoS 1 or 2 PUBLISH can be marked DUP")
    return bytes((packet[0] | DUP_FLAG,)) + packet[1:]


def encode_puback(packet_id: int) -> bytes:
    _check_packet_id(packet_id)
    return bytes((PUBACK << 4, 2)) + struct.pack("!H", packet_id)


def encode_subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """SUBSCRIBE for ``(filter, max QoS)`` pairs."""
    _check_packet_id(packet_id)
    if not filters:
        raise ValueError("SUBSCRIBE needs at least one topic filter")
    body = struct.pack("!H", packet_id)
    for topic_filter, qos in filters:
        _check_qos(qos)
        if not topic_filter:
            raise ValueError("an empty topic filter")
        body += _string(topic_filter) + bytes((qos,))
    return _packet((SUBSCRIBE << 4) | 0x02, body)
