"""Structural checks of the MQTT 3.1.1 packets a client sends. Pure.

amqtt's parser trusts the remaining length less than it trusts the fields: a SUBSCRIBE whose
fields run past its remaining length makes it read into the next packet and wait there, so
a malformed packet can desynchronise a connection instead of closing it. The embedded broker
therefore reads whole packets itself and hands amqtt only packets that pass
:func:`frame_problem`; anything else closes the connection (MQTT 3.1.1 §4.8: a protocol
violation closes the network connection).
"""

from __future__ import annotations

from typing import Final

CONNECT: Final = 1
PUBLISH: Final = 3
PUBACK: Final = 4
PUBREC: Final = 5
PUBREL: Final = 6
PUBCOMP: Final = 7
SUBSCRIBE: Final = 8
UNSUBSCRIBE: Final = 10
PINGREQ: Final = 12
DISCONNECT: Final = 14

MAX_LENGTH_BYTES: Final = 4
"""The remaining length takes at most four bytes (up to 268,435,455)."""


class Malformed(ValueError):
    """Why a packet is not well-formed."""


def decode_remaining_length(encoded: bytes) -> int | None:
    """The remaining length if ``encoded`` is complete, None if more bytes are needed.

    Raises :class:`Malformed` beyond four bytes.
    """
    value = 0
    for i, byte in enumerate(encoded):
        if i >= MAX_LENGTH_BYTES:
            raise Malformed("remaining length longer than four bytes")
        value += (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if i + 1 != len(encoded):
                raise Malformed("bytes after the end of the remaining length")
            return value
    if len(encoded) >= MAX_LENGTH_BYTES:
        raise Malformed("remaining length longer than four bytes")
    return None


class _Cursor:
    def __init__(self, body: bytes) -> None:
        self.body = body
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.body):
            raise Malformed(f"{what} runs past the end of the packet")
        chunk = self.body[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u16(self, what: str) -> int:
        return int.from_bytes(self.take(2, what), "big")

    def string(self, what: str) -> str:
        raw = self.take(self.u16(what), what)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise Malformed(f"{what} is not UTF-8") from None
        if "\0" in text:
            raise Malformed(f"{what} contains NUL")
        return text

    def binary(self, what: str) -> bytes:
        return self.take(self.u16(what), what)

    def done(self, what: str) -> None:
        if self.pos != len(self.body):
            raise Malformed(f"{len(self.body) - self.pos} bytes after the end of the {what}")


def _connect(body: bytes) -> None:
    c = _Cursor(body)
    if c.string("protocol name") != "MQTT":
        raise Malformed("protocol name is not MQTT")
    c.take(1, "protocol level")  # amqtt answers an unsupported level itself
    flags = c.take(1, "connect flags")[0]
    if flags & 0x01:
        raise Malformed("reserved connect flag set")
    will, will_qos = bool(flags & 0x04), (flags >> 3) & 0x03
    if will_qos == 3 or (not will and (will_qos or flags & 0x20)):
        raise Malformed("inconsistent will flags")
    if flags & 0x40 and not flags & 0x80:
        raise Malformed("password without user name")
    c.take(2, "keep alive")
    c.string("client id")
    if will:
        c.string("will topic")
        c.binary("will message")
    if flags & 0x80:
        c.string("user name")
    if flags & 0x40:
        c.binary("password")
    c.done("CONNECT")


def _publish(flags: int, body: bytes) -> None:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise Malformed("PUBLISH with QoS 3")
    if qos == 0 and flags & 0x08:
        raise Malformed("DUP flag on a QoS 0 PUBLISH")
    c = _Cursor(body)
    topic = c.string("topic")
    if not topic or "+" in topic or "#" in topic:
        raise Malformed("PUBLISH topic empty or with a wildcard")
    if qos and c.u16("packet id") == 0:
        raise Malformed("packet id 0")


def _subscribe(body: bytes, *, unsubscribe: bool) -> None:
    c = _Cursor(body)
    if c.u16("packet id") == 0:
        raise Malformed("packet id 0")
    what = "UNSUBSCRIBE" if unsubscribe else "SUBSCRIBE"
    count = 0
    while c.pos < len(body):
        if not c.string("topic filter"):
            raise Malformed("empty topic filter")
        if not unsubscribe and c.take(1, "requested QoS")[0] > 2:
            raise Malformed("requested QoS above 2")
        count += 1
    if not count:
        raise Malformed(f"{what} without a topic filter")


def frame_problem(first_byte: int, body: bytes, *, first_packet: bool) -> str | None:
    """Why the client packet ``first_byte`` + ``body`` is malformed, or None if it is fine.

    ``first_packet``: it is the connection's first packet, which must be a CONNECT.
    """
    kind, flags = first_byte >> 4, first_byte & 0x0F
    try:
        if first_packet != (kind == CONNECT):
            return "the first packet must be a CONNECT, and only the first"
        if kind == PUBLISH:
            _publish(flags, body)
            return None
        expected_flags = 0x02 if kind in (PUBREL, SUBSCRIBE, UNSUBSCRIBE) else 0x00
        if flags != expected_flags:
            return f"packet type {kind} with flags {flags:#x}"
        if kind == CONNECT:
            _connect(body)
        elif kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            if len(body) != 2:
                return f"packet type {kind} of {len(body)} bytes instead of 2"
        elif kind in (SUBSCRIBE, UNSUBSCRIBE):
            _subscribe(body, unsubscribe=kind == UNSUBSCRIBE)
        elif kind in (PINGREQ, DISCONNECT):
            if body:
                return f"packet type {kind} with a body"
        else:
            return f"packet type {kind} is not sent by clients"
    except Malformed as exc:
        return str(exc)
    return None
