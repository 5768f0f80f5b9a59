"""The incremental MQTT 3.1.1 parser of what a broker sends to a client, and packet ids.
Pure: no I/O.

:class:`PacketReader` is fed the byte stream in arbitrary pieces and returns whole packets
(:mod:`simulator.codec` dataclasses); anything that breaks MQTT 3.1.1 (or is not a packet a
broker sends to a client) raises :class:`~simulator.codec.ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Container

from simulator.codec import (
    CONNACK,
    DEFAULT_MAX_PACKET,
    DUP_FLAG,
    PINGRESP,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    SUBACK,
    SUBACK_FAILURE,
    UNSUBACK,
    Ack,
    Connack,
    Packet,
    Pingresp,
    ProtocolError,
    Publish,
    Suback,
)


class PacketReader:
    """Incremental parser: :meth:`feed` bytes as they arrive, get whole packets back."""

    __slots__ = ("_buffer", "_max_packet")

    def __init__(self, *, max_packet: int = DEFAULT_MAX_PACKET) -> None:
        self._buffer = bytearray()
        self._max_packet = max_packet

    @property
    def pending(self) -> int:
        """Bytes of an incomplete packet held back."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Packet]:
        """Append ``data`` and return every packet now complete (possibly none)."""
        buffer = self._buffer
        buffer += data
        packets: list[Packet] = []
        pos = 0
        end = len(buffer)
        try:
            while end - pos >= 2:
                first = buffer[pos]
                length, header = _remaining_length(buffer, pos + 1, end)
                if header == 0:
                    break
                if length + header + 1 > self._max_packet:
                    raise ProtocolError(
                        f"packet of {length + header + 1} bytes exceeds {self._max_packet}"
                    )
                start = pos + 1 + header
                stop = start + length
                if stop > end:
                    break
                packets.append(_decode(first, bytes(buffer[start:stop])))
                pos = stop
        finally:
            if pos:
                del buffer[:pos]
        return packets


def _remaining_length(buffer: bytearray, pos: int, end: int) -> tuple[int, int]:
    """(remaining length, bytes it took); (0, 0) if the length is not complete yet."""
    multiplier = 1
    value = 0
    for count in range(1, 5):
        if pos >= end:
            return 0, 0
        digit = buffer[pos]
        value += (digit & 0x7F) * multiplier
        if not digit & 0x80:
            return value, count
        multiplier *= 128
        pos += 1
    raise ProtocolError("malformed remaining length (more than 4 bytes)")


def _decode(first: int, body: bytes) -> Packet:
    kind = first >> 4
    flags = first & 0x0F
    if kind == PUBLISH:
        return _decode_publish(flags, body)
    if kind in (PUBACK, PUBREC, PUBCOMP, UNSUBACK):
        _expect_flags(kind, flags, 0)
        return Ack(kind, _packet_id_only(kind, body))
    if kind == PUBREL:
        _expect_flags(kind, flags, 2)
        return Ack(kind, _packet_id_only(kind, body))
    if kind == CONNACK:
        _expect_flags(kind, flags, 0)
        if len(body) != 2:
            raise ProtocolError(f"CONNACK has {len(body)} bytes; it has exactly 2")
        if body[0] & 0xFE:
            raise ProtocolError("CONNACK acknowledge flags: reserved bits set")
        return Connack(session_present=bool(body[0] & 1), return_code=body[1])
    if kind == SUBACK:
        _expect_flags(kind, flags, 0)
        if len(body) < 3:
            raise ProtocolError("SUBACK without return codes")
        codes = tuple(body[2:])
        for code in codes:
            if code not in (0, 1, 2, SUBACK_FAILURE):
                raise ProtocolError(f"SUBACK return code {code:#x} is not valid")
        return Suback(packet_id=int.from_bytes(body[:2], "big"), return_codes=codes)
    if kind == PINGRESP:
        _expect_flags(kind, flags, 0)
        if body:
            raise ProtocolError("PINGRESP has a body")
        return Pingresp()
    raise ProtocolError(f"packet type {kind} is not one a broker sends to a client")


def _expect_flags(kind: int, flags: int, wanted: int) -> None:
    if flags != wanted:
        raise ProtocolError(f"packet type {kind}: flags {flags:#x}, expected {wanted:#x}")


def _packet_id_only(kind: int, body: bytes) -> int:
    if len(body) != 2:
        raise ProtocolError(f"packet type {kind} has {len(body)} bytes; it has exactly 2")
    packet_id = int.from_bytes(body, "big")
    if packet_id == 0:
        raise ProtocolError(f"packet type {kind} with packet id 0")
    return packet_id


def _decode_publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    dup = bool(flags & DUP_FLAG)
    if dup and qos == 0:
        raise ProtocolError("QoS 0 PUBLISH with the DUP flag")
    if len(body) < 2:
        raise ProtocolError("PUBLISH without a topic")
    topic_len = int.from_bytes(body[:2], "big")
    pos = 2 + topic_len
    if pos > len(body):
        raise ProtocolError("PUBLISH topic longer than the packet")
    try:
        topic = body[2:pos].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("PUBLISH topic is not UTF-8") from None
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise ProtocolError(f"PUBLISH topic {topic!r} is not a topic name")
    packet_id: int | None = None
    if qos:
        if pos + 2 > len(body):
            raise ProtocolError("PUBLISH without its packet id")
        packet_id = int.from_bytes(body[pos : pos + 2], "big")
        if packet_id == 0:
            raise ProtocolError("PUBLISH with packet id 0")
        pos += 2
    return Publish(
        topic=topic,
        payload=body[pos:],
        qos=qos,
        packet_id=packet_id,
        retain=bool(flags & 1),
        dup=dup,
    )


class PacketIds:
    """Packet ids 1..65535 handed out in turn, skipping the ones still in use."""

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next = 0

    def next(self, in_use: Container[int]) -> int:
        for _ in range(65_535):
            self._next = self._next % 65_535 + 1
            if self._next not in in_use:
                return self._next
        raise RuntimeError("all 65535 packet ids are in use")
