"""Reading MQTT from the broker in bulk: framing and PUBLISH decoding (pure), and the
buffer that sits between the TLS socket and paho.

paho reads a packet with three or more ``recv`` calls on the TLS socket (its first byte,
each byte of its length, its body) and builds a ``MQTTMessage`` (with a ``threading``
condition) for every PUBLISH. The gateway reads whatever the socket has in one ``recv``
into a :class:`ReadBuffer`, frames the packets itself, decodes MQTT 3.1.1 PUBLISH packets of
QoS 0 and 1 here (:func:`decode_publish`, a few slices) and lets paho read every other
packet (CONNACK, SUBACK, PUBACK of our publishes, PINGRESP, QoS 2, MQTT 5) from the same
buffer, so its state machine stays in charge of them. paho only ever sees whole packets:
:attr:`ReadBuffer.limit` ends its view at the end of the packet it is given.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

PUBLISH: Final = 3
"""MQTT packet type of PUBLISH (the high nibble of the first byte)."""
PUBACK_COMMAND: Final = 0x40
_PUBACK: Final = (PUBACK_COMMAND << 24) | (2 << 16)
"""A PUBACK packet is 0x40, remaining length 2, the packet id: one big-endian 32-bit word."""
CHUNK: Final = 256 * 1024
"""Most bytes taken from the socket per ``recv``."""


class ProtocolError(ValueError):
    """The broker sent bytes that are not MQTT (paho then closes the connection)."""


@dataclass(slots=True)
class InMessage:
    """A PUBLISH received from the broker."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    retain: bool = False
    dup: bool = False


def frame(data: bytes | bytearray, start: int) -> tuple[int, int] | None:
    """``(body start, packet end)`` of the packet at ``data[start:]``, or None while it is
    incomplete; raises :class:`ProtocolError` for a remaining length of more than 4 bytes."""
    end = len(data)
    index = start + 1
    length = 0
    shift = 0
    while True:
        if index >= end:
            return None
        byte = data[index]
        index += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 21:
            raise ProtocolError("remaining length longer than 4 bytes")
    stop = index + length
    return (index, stop) if stop <= end else None


def decode_publish(first: int, data: bytes, start: int, end: int) -> InMessage:
    """An MQTT 3.1.1 PUBLISH of QoS 0 or 1: its first byte, and its body ``data[start:end]``."""
    qos = (first >> 1) & 3
    if qos > 1:
        raise ProtocolError(f"QoS {qos} PUBLISH is not decoded here")
    if end - start < 2:
        raise ProtocolError("PUBLISH too short for its topic length")
    at = start + 2 + ((data[start] << 8) | data[start + 1])
    if qos:
        if end < at + 2:
            raise ProtocolError("PUBLISH too short for its packet id")
        mid = (data[at] << 8) | data[at + 1]
        payload = data[at + 2 : end]
    else:
        if end < at:
            raise ProtocolError("PUBLISH too short for its topic")
        mid = 0
        payload = data[at:end]
    topic = data[start + 2 : at].decode("utf-8", "replace")
    return InMessage(topic, payload, mid, qos, bool(first & 1), bool(first & 8))


def pubacks(mids: Sequence[int]) -> bytes:
    """The PUBACK packets of ``mids``, back to back (one write)."""
    return struct.pack(f"!{len(mids)}I", *(_PUBACK | mid for mid in mids))


class ReadBuffer:
    """Bytes read from the TLS socket and not handled yet; paho's socket (it delegates sending
    and everything else to the real one) and the gateway's reader."""

    __slots__ = ("_data", "_eof", "_error", "_sock", "limit", "pos")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._data = b""
        self.pos = 0
        """Where the next unhandled packet starts."""
        self.limit = 0
        """How far paho may read (the end of the packet it was given)."""
        self._eof = False
        self._error: OSError | None = None

    @property
    def closed(self) -> bool:
        """The socket reached its end (or failed) and every byte before that was read."""
        return (self._eof or self._error is not None) and self.pos >= len(self._data)

    def fill(self) -> bool:
        """Read what the socket has (without blocking); False if nothing was there."""
        if self._eof or self._error is not None:
            return False
        chunks = [self._data[self.pos :]] if self.pos < len(self._data) else []
        got = False
        sock = self._sock
        while True:
            try:
                chunk = sock.recv(CHUNK)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                break
            except OSError as exc:
                self._error = exc
                break
            if not chunk:
                self._eof = True
                break
            chunks.append(chunk)
            got = True
            if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                break
        if got:
            self._data = b"".join(chunks)
            self.pos = self.limit = 0
        return got

    def next_packet(self) -> tuple[int, int, int] | None:
        """``(first byte, body start, end)`` of the next whole packet, or None."""
        data, pos = self._data, self.pos
        if pos >= len(data):
            return None
        framed = frame(data, pos)
        if framed is None:
            return None
        return data[pos], framed[0], framed[1]

    @property
    def data(self) -> bytes:
        return self._data

    def give_to_paho(self, end: int) -> None:
        """Let paho read the packet at :attr:`pos` (up to ``end``)."""
        self.limit = end

    def give_rest_to_paho(self) -> None:
        """Let paho read everything, and see the end of the stream or the socket's error."""
        self.limit = len(self._data)

    def dispatch(
        self,
        *,
        paho_read: Callable[[], object],
        on_message: Callable[[InMessage], None],
        fast: bool,
        reading: Callable[[], bool],
    ) -> None:
        """Hand out the whole packets buffered, in order, while ``reading()``: MQTT 3.1.1
        PUBLISH of QoS 0/1 (``fast``) decoded to ``on_message``, any other packet to paho
        (``paho_read`` reads it from here). Stops when paho closed the connection."""
        while reading():
            try:
                packet = self.next_packet()
            except ProtocolError:
                self.give_rest_to_paho()  # paho finds the same fault and disconnects
                paho_read()
                return
            if packet is None:
                return
            first, start, end = packet
            if fast and first >> 4 == PUBLISH and not first & 4:
                try:
                    message = decode_publish(first, self._data, start, end)
                except ProtocolError:
                    pass
                else:
                    self.pos = end
                    on_message(message)
                    continue
            self.give_to_paho(end)
            paho_read()
            if self.pos < end:
                return  # paho closed the connection

    # --- paho's view ------------------------------------------------------------------------
    def recv(self, size: int) -> bytes:
        pos, limit = self.pos, self.limit
        if pos >= limit:
            if self.limit >= len(self._data):
                if self._error is not None:
                    raise self._error
                if self._eof:
                    return b""
            raise BlockingIOError
        stop = min(limit, pos + size)
        self.pos = stop
        return self._data[pos:stop]

    def pending(self) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:  # send, fileno, close, setblocking, ...
        return getattr(self._sock, name)
