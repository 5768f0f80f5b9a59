"""The MQTT 3.1.1 client codec: encoders, the incremental parser, packet ids."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.codec import (
    DISCONNECT_BYTES,
    PINGREQ_BYTES,
    PUBACK,
    PUBREL,
    UNSUBACK,
    Ack,
    Connack,
    Pingresp,
    ProtocolError,
    Publish,
    Suback,
    Will,
    encode_connect,
    encode_puback,
    encode_publish,
    encode_publish_raw,
    encode_remaining_length,
    encode_subscribe,
    encode_topic,
    mark_dup,
    publish_header,
)
from simulator.parser import PacketIds, PacketReader

pytestmark = pytest.mark.unit

topics = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="+#\x00"),
    min_size=1,
    max_size=40,
)


def test_remaining_length_examples_from_the_spec() -> None:
    assert encode_remaining_length(0) == b"\x00"
    assert encode_remaining_length(127) == b"\x7f"
    assert encode_remaining_length(128) == b"\x80\x01"
    assert encode_remaining_length(16_383) == b"\xff\x7f"
    assert encode_remaining_length(16_384) == b"\x80\x80\x01"
    assert encode_remaining_length(268_435_455) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError, match="out of range"):
        encode_remaining_length(268_435_456)


def test_connect_with_will_and_persistent_session() -> None:
    will = Will("vehicles/X/connection", b'{"online":false}', qos=1)
    packet = encode_connect(client_id="VIN1", keepalive=60, clean_session=False, will=will)
    assert packet[0] == 0x10
    body = packet[2:]
    assert packet[1] == len(body)
    assert body[:7] == b"\x00\x04MQTT\x04"
    flags = body[7]
    assert flags == 0x04 | (1 << 3)  # will, will QoS 1, no clean session, no retain
    assert body[8:10] == b"\x00\x3c"
    assert body[10:16] == b"\x00\x04VIN1"
    assert b"vehicles/X/connection" in body
    assert body.endswith(b'{"online":false}')


def test_connect_clean_session_without_will() -> None:
    packet = encode_connect(client_id="c", clean_session=True)
    assert packet[2 + 7] == 0x02


def test_connect_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="keepalive"):
        encode_connect(client_id="c", keepalive=70_000)
    with pytest.raises(ValueError, match="password only with a username"):
        encode_connect(client_id="c", password=b"x")


def test_publish_encoding_qos0_and_qos1() -> None:
    assert encode_publish("a/b", b"hi") == b"\x30\x07\x00\x03a/bhi"
    assert encode_publish("a/b", b"hi", qos=1, packet_id=10) == b"\x32\x09\x00\x03a/b\x00\x0ahi"
    with pytest.raises(ValueError, match="needs a packet id"):
        encode_publish("a/b", b"", qos=1)
    with pytest.raises(ValueError, match="has no packet id"):
        encode_publish("a/b", b"", qos=0, packet_id=1)
    with pytest.raises(ValueError, match="not a topic name"):
        encode_publish("a/+", b"")


@settings(deadline=None)
@given(topic=topics, payload=st.binary(max_size=300), pid=st.integers(1, 65_535))
def test_raw_publish_equals_the_checked_encoder(topic: str, payload: bytes, pid: int) -> None:
    first = publish_header(topic, qos=1)[0]
    raw = encode_publish_raw(first, encode_topic(topic), pid, payload)
    assert raw == encode_publish(topic, payload, qos=1, packet_id=pid)
    first0 = publish_header(topic, qos=0)[0]
    assert encode_publish_raw(first0, encode_topic(topic), 0, payload) == encode_publish(
        topic, payload
    )


def test_mark_dup_sets_the_flag_only_on_qos1() -> None:
    packet = encode_publish("t", b"x", qos=1, packet_id=1)
    assert mark_dup(packet)[0] == packet[0] | 0x08
    with pytest.raises(ValueError, match="QoS 1 or 2"):
        mark_dup(encode_publish("t", b"x"))


def test_subscribe_and_puback() -> None:
    packet = encode_subscribe(7, [("a/+", 1), ("b/#", 0)])
    assert packet[0] == 0x82
    assert packet[2:4] == b"\x00\x07"
    assert packet.endswith(b"\x00\x03b/#\x00")
    assert encode_puback(258) == b"\x40\x02\x01\x02"
    with pytest.raises(ValueError, match="at least one"):
        encode_subscribe(1, [])
    with pytest.raises(ValueError, match="packet id"):
        encode_puback(0)


def _broker_stream() -> tuple[bytes, list[object]]:
    parts = [
        (b"\x20\x02\x01\x00", Connack(session_present=True, return_code=0)),
        (b"\x90\x04\x00\x01\x01\x80", Suback(packet_id=1, return_codes=(1, 0x80))),
        (encode_puback(5), Ack(PUBACK, 5)),
        (
            encode_publish("vehicles/V/commands/1", b'{"x":1}', qos=1, packet_id=9),
            Publish("vehicles/V/commands/1", b'{"x":1}', qos=1, packet_id=9),
        ),
        (encode_publish("t", b"", qos=0, retain=True), Publish("t", b"", retain=True)),
        (b"\xd0\x00", Pingresp()),
        (b"\x62\x02\x00\x03", Ack(PUBREL, 3)),
        (b"\xb0\x02\x00\x04", Ack(UNSUBACK, 4)),
        (encode_publish("big", b"z" * 300, qos=1, packet_id=2), Publish("big", b"z" * 300, 1, 2)),
    ]
    return b"".join(p for p, _ in parts), [packet for _, packet in parts]


def test_parser_reads_every_packet_a_broker_sends() -> None:
    stream, expected = _broker_stream()
    assert PacketReader().feed(stream) == expected


@settings(deadline=None)
@given(cuts=st.lists(st.integers(0, 400), max_size=12))
def test_parser_is_incremental_for_any_split(cuts: list[int]) -> None:
    stream, expected = _broker_stream()
    reader = PacketReader()
    got: list[object] = []
    last = 0
    for cut in sorted(c % (len(stream) + 1) for c in cuts):
        got += reader.feed(stream[last:cut])
        last = cut
    got += reader.feed(stream[last:])
    assert got == expected
    assert reader.pending == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x10\x00", "not one a broker sends"),
        (b"\x20\x03\x00\x00\x00", "exactly 2"),
        (b"\x20\x02\x02\x00", "reserved bits"),
        (b"\x40\x02\x00\x00", "packet id 0"),
        (b"\x41\x02\x00\x01", "flags"),
        (b"\x36\x05\x00\x01t\x00\x01", "QoS 3"),
        (b"\x38\x04\x00\x01tx", "DUP"),
        (b"\x30\x03\x00\x05t", "longer than the packet"),
        (b"\x30\x04\x00\x02a+", "not a topic name"),
        (b"\x32\x04\x00\x01tx", "packet id"),
        (b"\x90\x03\x00\x01\x07", "not valid"),
        (b"\xd0\x01\x00", "has a body"),
        (b"\x30\xff\xff\xff\xff\x01", "more than 4 bytes"),
    ],
)
def test_parser_rejects_malformed_packets(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        PacketReader().feed(data)


def test_parser_enforces_its_packet_size_limit() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):
        PacketReader(max_packet=100).feed(encode_publish("t", b"x" * 200))


@settings(deadline=None)
@given(st.binary(max_size=64))
def test_parser_never_fails_other_than_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        PacketReader().feed(data)


def test_constant_packets() -> None:
    assert PINGREQ_BYTES == b"\xc0\x00"
    assert DISCONNECT_BYTES == b"\xe0\x00"


def test_packet_ids_skip_those_in_use_and_wrap() -> None:
    ids = PacketIds()
    assert ids.next(set()) == 1
    assert ids.next({2, 3}) == 4
    for _ in range(65_530):
        ids.next(set())
    assert ids.next(set()) == 65_535
    assert ids.next({1}) == 2
    with pytest.raises(RuntimeError, match="in use"):
        ids.next(set(range(1, 65_536)))
