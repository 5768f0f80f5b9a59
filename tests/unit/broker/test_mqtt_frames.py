"""broker.mqtt_frames: what the embedded broker lets through to amqtt's parser."""

from __future__ import annotations

import pytest
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.pingreq import PingReqPacket
from amqtt.mqtt.puback import PubackPacket
from amqtt.mqtt.pubcomp import PubcompPacket
from amqtt.mqtt.publish import PublishPacket
from amqtt.mqtt.pubrec import PubrecPacket
from amqtt.mqtt.pubrel import PubrelPacket
from amqtt.mqtt.subscribe import SubscribePacket
from amqtt.mqtt.unsubscribe import UnsubscribePacket
from hypothesis import given
from hypothesis import strategies as st

from broker.mqtt_frames import Malformed, decode_remaining_length, frame_problem

pytestmark = pytest.mark.unit

TOPIC = st.text(
    st.characters(blacklist_characters="+#\0", blacklist_categories=["Cs"]), min_size=1, max_size=40
)
FILTER = st.text(
    st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), min_size=1, max_size=40
)
PACKET_ID = st.integers(min_value=1, max_value=65535)


def split(packet: bytes) -> tuple[int, bytes]:
    """(first byte, body) of one encoded packet, checking its remaining length."""
    n = 1
    while packet[n] & 0x80:
        n += 1
    length = decode_remaining_length(packet[1 : n + 1])
    assert length == len(packet) - n - 1
    return packet[0], packet[n + 1 :]


def encode_length(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def connect(client_id: str, *, flags: int = 0x02, extra: bytes = b"") -> bytes:
    cid = client_id.encode()
    body = (
        b"\x00\x04MQTT\x04"
        + bytes([flags])
        + b"\x00\x3c"
        + len(cid).to_bytes(2, "big")
        + cid
        + extra
    )
    return bytes([0x10]) + encode_length(len(body)) + body


@given(st.integers(min_value=0, max_value=268_435_455))
def test_remaining_length_round_trip(value: int) -> None:
    assert decode_remaining_length(encode_length(value)) == value


def test_remaining_length_limits() -> None:
    assert decode_remaining_length(b"\x80") is None
    with pytest.raises(Malformed):
        decode_remaining_length(b"\xff\xff\xff\xff\x7f")
    with pytest.raises(Malformed):
        decode_remaining_length(b"\xff\xff\xff\xff")


@given(TOPIC, st.binary(max_size=200), PACKET_ID, st.sampled_from([0, 1, 2]), st.booleans())
def test_amqtt_publish_packets_pass(
    topic: str, data: bytes, packet_id: int, qos: int, retain: bool
) -> None:
    packet = PublishPacket.build(topic, data, packet_id if qos else None, False, qos, retain)
    first, body = split(bytes(packet.to_bytes()))
    assert frame_problem(first, body, first_packet=False) is None


@given(st.lists(st.tuples(FILTER, st.sampled_from([0, 1, 2])), min_size=1, max_size=5), PACKET_ID)
def test_amqtt_subscribe_packets_pass(topics: list[tuple[str, int]], packet_id: int) -> None:
    first, body = split(bytes(SubscribePacket.build(topics, packet_id).to_bytes()))
    assert frame_problem(first, body, first_packet=False) is None
    assert frame_problem(first, body[:-1], first_packet=False) is not None  # cut short
    assert frame_problem(first, body + b"\x00", first_packet=False) is not None


@given(st.lists(FILTER, min_size=1, max_size=5), PACKET_ID)
def test_amqtt_unsubscribe_packets_pass(topics: list[str], packet_id: int) -> None:
    first, body = split(bytes(UnsubscribePacket.build(topics, packet_id).to_bytes()))
    assert frame_problem(first, body, first_packet=False) is None


@pytest.mark.parametrize(
    "packet",
    [
        PubackPacket.build(7),
        PubrecPacket.build(7),
        PubrelPacket.build(7),
        PubcompPacket.build(7),
        PingReqPacket(),
        DisconnectPacket(),
    ],
    ids=lambda p: type(p).__name__,
)
def test_amqtt_control_packets_pass(packet: object) -> None:
    first, body = split(bytes(packet.to_bytes()))  # type: ignore[attr-defined]
    assert frame_problem(first, body, first_packet=False) is None


def test_paho_style_connect_passes() -> None:
    user = b"\x00\x04user"
    will = b"\x00\x05a/b/c\x00\x03bye"
    for packet in (
        connect("client"),
        connect("", flags=0x02),
        connect("c", flags=0x02 | 0x04 | 0x08 | 0x20, extra=will),
        connect("c", flags=0x80 | 0x40, extra=user + b"\x00\x02pw"),
    ):
        first, body = split(packet)
        assert frame_problem(first, body, first_packet=True) is None, packet


@pytest.mark.parametrize(
    ("first", "body", "first_packet", "reason"),
    [
        (0x30, b"\x00\x03a/b", True, "first packet must be a CONNECT"),
        (*split(connect("c")), False, "only the first"),
        (0x10, b"\x00\x04MQTT\x04\x03\x00\x3c\x00\x00", True, "reserved connect flag"),
        (0x10, b"\x00\x04MQTX\x04\x02\x00\x3c\x00\x00", True, "not MQTT"),
        (0x10, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x05ab", True, "runs past the end"),
        (
            0x10,
            b"\x00\x04MQTT\x04\x42\x00\x3c\x00\x00\x00\x01x",
            True,
            "password without user name",
        ),
        (0x10, b"\x00\x04MQTT\x04\x1a\x00\x3c\x00\x00", True, "will"),
        (0x36, b"\x00\x01a\x00\x01", False, "QoS 3"),
        (0x38, b"\x00\x01a", False, "DUP"),
        (0x32, b"\x00\x01a\x00\x00", False, "packet id 0"),
        (0x30, b"\x00\x03a/+", False, "wildcard"),
        (0x30, b"\x00\x02\xff\xfe", False, "not UTF-8"),
        (0x82, b"\x00\x01\x00\x00", False, "empty topic filter"),
        (0x82, b"\x00\x01", False, "without a topic filter"),
        (0x82, b"\x00\x01\x00\x01a\x03", False, "QoS above 2"),
        (0x80, b"\x00\x01\x00\x01a\x01", False, "flags"),
        (0x40, b"\x00\x01\x00", False, "instead of 2"),
        (0xC0, b"\x00", False, "with a body"),
        (0xF0, b"", False, "not sent by clients"),
        (0x00, b"", False, "not sent by clients"),
        (0x20, b"\x00\x00", False, "not sent by clients"),
    ],
)
def test_malformed_packets(first: int, body: bytes, first_packet: bool, reason: str) -> None:
    problem = frame_problem(first, body, first_packet=first_packet)
    assert problem is not None
    assert reason in problem


@given(st.integers(min_value=0, max_value=255), st.binary(max_size=300), st.booleans())
def test_never_raises(first: int, body: bytes, first_packet: bool) -> None:
    result = frame_problem(first, body, first_packet=first_packet)
    assert result is None or isinstance(result, str)
