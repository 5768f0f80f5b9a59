"""Bulk MQTT reading: framing, PUBLISH decoding, and the buffer paho reads through."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mqtt_read import InMessage, ProtocolError, ReadBuffer, decode_publish, frame

pytestmark = pytest.mark.unit


def remaining(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length & 0x7F, length >> 7
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def publish(topic: str, payload: bytes, *, qos: int, mid: int, retain: bool = False) -> bytes:
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + (mid.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | qos << 1 | int(retain)]) + remaining(len(body)) + body


messages = st.builds(
    InMessage,
    topic=st.text(min_size=1, max_size=80),
    payload=st.binary(max_size=600),
    mid=st.integers(1, 65535),
    qos=st.integers(0, 1),
    retain=st.booleans(),
)


@given(message=messages)
def test_a_publish_decodes_to_what_was_sent(message: InMessage) -> None:
    mid = message.mid if message.qos else 0
    packet = publish(message.topic, message.payload, qos=message.qos, mid=mid,
                     retain=message.retain)  # fmt: skip
    framed = frame(packet, 0)
    assert framed is not None
    assert framed[1] == len(packet)
    decoded = decode_publish(packet[0], packet, framed[0], framed[1])
    assert decoded == InMessage(message.topic, message.payload, mid, message.qos, message.retain)


@given(length=st.integers(0, 268_435_455))
def test_frame_reads_every_remaining_length(length: int) -> None:
    header = b"\x30" + remaining(length)
    assert frame(header, 0) is None or length == 0  # the body is not there yet
    framed = frame(header + b"\x00" * min(length, 10), 0)
    assert (framed is None) == (length > 10)


def test_frame_refuses_a_fifth_length_byte_and_waits_for_a_partial_one() -> None:
    with pytest.raises(ProtocolError):
        frame(b"\x30\xff\xff\xff\xff\x01", 0)
    assert frame(b"\x30\xff", 0) is None
    assert frame(b"\x30", 0) is None


@pytest.mark.parametrize(
    ("body", "qos"),
    [(b"", 0), (b"\x00", 1), (b"\x00\x05ab", 0), (b"\x00\x01a\x00", 1)],
)
def test_a_short_publish_is_a_protocol_error(body: bytes, qos: int) -> None:
    with pytest.raises(ProtocolError):
        decode_publish(0x30 | qos << 1, body, 0, len(body))


def test_qos_2_is_left_to_paho() -> None:
    packet = publish("a/b", b"x", qos=1, mid=7)
    with pytest.raises(ProtocolError):
        decode_publish(0x34, packet, 2, len(packet))


class Trickle:
    """A socket that hands out a byte stream in given pieces, then would block."""

    def __init__(self, pieces: list[bytes], *, end: bool = False) -> None:
        self.pieces = pieces
        self.end = end
        self.sent: list[bytes] = []

    def recv(self, size: int) -> bytes:
        if self.pieces:
            return self.pieces.pop(0)[:size]
        if self.end:
            return b""
        raise BlockingIOError

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)


@given(
    batch=st.lists(messages, min_size=1, max_size=20),
    cuts=st.lists(st.integers(1, 50), max_size=30),
)
def test_packets_split_anywhere_come_out_whole_and_in_order(
    batch: list[InMessage], cuts: list[int]
) -> None:
    stream = b"".join(
        publish(m.topic, m.payload, qos=m.qos, mid=m.mid if m.qos else 0) for m in batch
    )
    pieces, at = [], 0
    for cut in cuts:
        pieces.append(stream[at : at + cut])
        at += cut
    pieces.append(stream[at:])
    buffer = ReadBuffer(Trickle([p for p in pieces if p]))
    got: list[InMessage] = []
    while buffer.fill():
        while (packet := buffer.next_packet()) is not None:
            first, start, end = packet
            got.append(decode_publish(first, buffer.data, start, end))
            buffer.pos = end
    assert [(m.topic, m.payload) for m in got] == [(m.topic, m.payload) for m in batch]


def test_paho_sees_only_the_packet_it_is_given_then_the_end() -> None:
    connack, pingresp = b"\x20\x02\x00\x00", b"\xd0\x00"
    buffer = ReadBuffer(Trickle([connack + pingresp[:1]], end=True))
    assert buffer.fill()
    packet = buffer.next_packet()
    assert packet == (0x20, 2, 4)
    with pytest.raises(BlockingIOError):
        buffer.recv(1)  # nothing given to paho yet
    buffer.give_to_paho(packet[2])
    assert buffer.recv(1) == b"\x20"
    assert buffer.recv(100) == b"\x02\x00\x00"
    with pytest.raises(BlockingIOError):
        buffer.recv(1)  # the next packet is not whole: paho must not start it
    assert buffer.next_packet() is None
    assert not buffer.fill()
    assert buffer.closed is False
    buffer.give_rest_to_paho()
    assert buffer.recv(5) == b"\xd0"
    assert buffer.recv(5) == b""  # then the end: paho reports the connection lost
    assert buffer.closed
    buffer.send(b"x")  # everything else goes to the socket
    assert buffer._sock.sent == [b"x"]


def test_a_socket_error_reaches_paho_after_the_bytes_before_it() -> None:
    class Failing(Trickle):
        def recv(self, size: int) -> bytes:
            if self.pieces:
                return self.pieces.pop(0)
            raise ConnectionResetError("reset by peer")

    buffer = ReadBuffer(Failing([b"\xd0\x00"]))
    assert buffer.fill()
    assert not buffer.fill()
    buffer.give_rest_to_paho()
    assert buffer.recv(2) == b"\xd0\x00"
    with pytest.raises(ConnectionResetError):
        buffer.recv(1)
