"""gateway.routing: MQTT message -> Kafka record or reject; Kafka record -> MQTT publish."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.routing import (
    MAX_DEAD_LETTER_PAYLOAD,
    OUTBOUND_SENDER,
    UNKNOWN_SENDER,
    Accepted,
    KafkaRecord,
    MqttPublish,
    RejectCause,
    Rejected,
    connectivity_event,
    owner_of,
    route_downlink,
    route_uplink,
    slice_of,
)
from schemas.connectivity import Connectivity, ConnectivityCause, ConnectivityEvent
from schemas.errors import DeadLetter, ErrorNotice
from schemas.ids import VIN_ALPHABET, make_vin
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
    TopicKind,
)

pytestmark = pytest.mark.unit

KAFKA = KafkaTopics("fg.")
VIN = make_vin(1)
CMD = "0b0e7f6e-6f5c-4d6e-9c1e-6a1f2b3c4d5e"
MID = "6f1c2b1e-8a6e-4e0b-9a51-2f7c3a9b0d11"
NOW = 1_700_000_000_123

vins = st.builds(make_vin, st.integers(min_value=0, max_value=33**11 - 1))
app_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
seqs = st.integers(min_value=0, max_value=2**63 - 1)


def uplink(topic: str, payload: bytes, received: int = NOW) -> Accepted | Rejected:
    return route_uplink(
        topic=topic, payload=payload, received_at_ms=received, message_id=MID, kafka=KAFKA
    )


def telemetry(seq: int) -> bytes:
    return json.dumps({"ts": NOW, "seq": seq, "signals": {"speed": 12.5, "on": True}}).encode()


@given(vin=vins, seq=seqs)
def test_telemetry_is_keyed_by_vin_with_headers(vin: str, seq: int) -> None:
    topic = MqttTopics.telemetry(vin)
    payload = telemetry(seq)
    assert uplink(topic, payload) == Accepted(
        TopicKind.TELEMETRY,
        vin,
        KafkaRecord(
            "fg.telemetry",
            vin.encode(),
            payload,
            (
                (HEADER_MESSAGE_ID, MID.encode()),
                (HEADER_RECEIVED_AT, str(NOW).encode()),
                (HEADER_SENDER, f"vehicle:{vin}".encode()),
                (HEADER_SOURCE_TOPIC, topic.encode()),
            ),
        ),
    )


VEHICLE_CASES = [
    (MqttTopics.shadow_reported, b'{"state": {"a": 1}}', "fg.shadow.reported"),
    (MqttTopics.ota_status, b'{"job_id": "j1", "state": "succeeded"}', "fg.ota.status"),
    (MqttTopics.ota_chunk_request, b'{"job_id": "j1", "from": 2}', "fg.ota.chunk.requests"),
    (
        lambda vin: MqttTopics.command_result(vin, CMD),
        b'{"status": "failed", "detail": "door open"}',
        "fg.command.results",
    ),
]


@pytest.mark.parametrize(("build", "payload", "kafka_topic"), VEHICLE_CASES)
@given(vin=vins)
def test_vehicle_uplinks_go_to_their_kafka_topic(
    build: object, payload: bytes, kafka_topic: str, vin: str
) -> None:
    topic = build(vin)  # type: ignore[operator]
    result = uplink(topic, payload)
    assert isinstance(result, Accepted)
    assert (result.record.topic, result.record.key, result.record.value) == (
        kafka_topic,
        vin.encode(),
        payload,
    )


@given(app=app_ids, vin=vins)
def test_app_command_is_keyed_by_the_target_vin(app: str, vin: str) -> None:
    payload = json.dumps({"command_id": CMD, "vin": vin, "name": "lock"}).encode()
    result = uplink(MqttTopics.app_commands(app), payload)
    assert isinstance(result, Accepted)
    assert result.vin == vin
    assert (result.record.topic, result.record.key) == ("fg.command.requests", vin.encode())
    assert dict(result.record.headers)[HEADER_SENDER] == f"app:{app}".encode()


@given(app=app_ids, vin=vins)
def test_app_shadow_desired_is_keyed_by_the_vin_in_the_topic(app: str, vin: str) -> None:
    result = uplink(MqttTopics.app_shadow_desired(app, vin), b'{"state": {"x": 1}, "version": 2}')
    assert isinstance(result, Accepted)
    assert (result.kind, result.record.topic, result.record.key) == (
        TopicKind.APP_SHADOW_DESIRED,
        "fg.shadow.desired",
        vin.encode(),
    )


@given(vin=vins, online=st.booleans(), ts=st.none() | st.integers(0, 2**40))
def test_connection_messages_become_connectivity_events(
    vin: str, online: bool, ts: int | None
) -> None:
    body: dict[str, object] = {"online": online} | ({"ts": ts} if ts is not None else {})
    result = uplink(MqttTopics.connection(vin), json.dumps(body).encode())
    assert isinstance(result, Accepted)
    assert result.record.topic == "fg.connectivity"
    assert ConnectivityEvent.model_validate_json(result.record.value) == ConnectivityEvent(
        vin=vin,
        online=online,
        ts=ts if ts is not None else NOW,
        cause=ConnectivityCause.BIRTH if online else ConnectivityCause.WILL,
    )


def test_connectivity_event_prefers_the_birth_timestamp() -> None:
    event = connectivity_event(vin=VIN, message=Connectivity(online=True, ts=5), received_at_ms=9)
    assert (event.ts, event.cause) == (5, ConnectivityCause.BIRTH)


@given(vin=vins, payload=st.binary(max_size=300))
def test_bad_payload_is_a_dead_letter_with_the_original_bytes_and_a_notice(
    vin: str, payload: bytes
) -> None:
    topic = MqttTopics.telemetry(vin)
    result = uplink(topic, payload)
    if isinstance(result, Accepted):  # hypothesis found valid telemetry: fine
        return
    assert result.cause is RejectCause.PAYLOAD
    letter = DeadLetter.model_validate_json(result.dead_letter.value)
    assert (letter.topic, letter.sender, letter.received_at) == (topic, f"vehicle:{vin}", NOW)
    assert letter.payload_bytes() == payload
    assert letter.reason == result.reason
    assert result.dead_letter.topic == "fg.deadletter"
    assert result.dead_letter.key == vin.encode()
    assert dict(result.dead_letter.headers)[HEADER_REJECT_REASON] == result.reason.encode()
    assert result.notice is not None
    assert (result.notice.topic, result.notice.qos) == (MqttTopics.errors(vin), 1)
    assert ErrorNotice.model_validate_json(result.notice.payload) == ErrorNotice(
        topic=topic, reason=result.reason, ts=NOW
    )


def test_bad_payload_reason_says_what_is_wrong() -> None:
    result = uplink(MqttTopics.telemetry(VIN), b'{"ts": 1, "seq": -1, "signals": {}}')
    assert isinstance(result, Rejected)
    assert result.reason.startswith("telemetry.seq:")


@given(app=app_ids)
def test_bad_app_command_notifies_the_app(app: str) -> None:
    result = uplink(MqttTopics.app_commands(app), b'{"vin": "nope"}')
    assert isinstance(result, Rejected)
    assert result.notice is not None
    assert result.notice.topic == MqttTopics.app_errors(app)
    assert result.notice.kind is TopicKind.APP_ERRORS
    assert result.dead_letter.key == app.encode()
    assert DeadLetter.model_validate_json(result.dead_letter.value).sender == f"app:{app}"


def test_downlink_topic_published_by_a_device_is_rejected() -> None:
    result = uplink(MqttTopics.shadow_desired(VIN), b'{"state": {}, "version": 1}')
    assert isinstance(result, Rejected)
    assert result.cause is RejectCause.DIRECTION
    assert result.notice is not None
    assert result.notice.topic == MqttTopics.errors(VIN)


@pytest.mark.parametrize(
    ("topic", "owner"),
    [
        (f"vehicles/{VIN}/commands/NOT-A-UUID/result", ("vehicle", VIN)),
        (f"vehicles/{VIN}/nonsense", ("vehicle", VIN)),
        ("vehicles/BADVIN/telemetry", None),
        ("apps/companion/whatever/else", ("app", "companion")),
        ("other/thing", None),
        ("", None),
    ],
)
def test_unparsable_topics_are_rejected_and_told_to_their_owner_if_any(
    topic: str, owner: tuple[str, str] | None
) -> None:
    result = uplink(topic, b"{}")
    assert isinstance(result, Rejected)
    assert result.cause is RejectCause.TOPIC
    assert owner_of(topic) == owner
    letter = DeadLetter.model_validate_json(result.dead_letter.value)
    assert letter.sender == (f"{owner[0]}:{owner[1]}" if owner else UNKNOWN_SENDER)
    assert result.dead_letter.key == (owner[1].encode() if owner else None)
    assert (result.notice is None) == (owner is None)


@given(text=st.text(alphabet=VIN_ALPHABET + "IOQ/+#ab", max_size=40))
def test_routing_never_raises(text: str) -> None:
    result = uplink(text, b"{}")
    assert isinstance(result, Accepted | Rejected)


# --- downlink --------------------------------------------------------------------------------


def downlink(
    headers: list[tuple[str, bytes]], value: bytes | None = b"x"
) -> MqttPublish | Rejected:
    return route_downlink(
        key=VIN.encode(),
        value=value,
        headers=headers,
        received_at_ms=NOW,
        message_id=MID,
        kafka=KAFKA,
    )


@given(vin=vins, payload=st.binary(max_size=2000), qos=st.sampled_from([None, b"0", b"1", b"2"]))
def test_outbound_raw_bytes_pass_through_to_the_target_topic(
    vin: str, payload: bytes, qos: bytes | None
) -> None:
    target = MqttTopics.ota_chunk(vin, "job-1", 7)
    headers = [(HEADER_TARGET_TOPIC, target.encode())] + ([(HEADER_QOS, qos)] if qos else [])
    assert downlink(headers, payload) == MqttPublish(
        target, payload, qos=int(qos) if qos else 1, retain=False, kind=TopicKind.OTA_CHUNK
    )


def test_outbound_retain_flag() -> None:
    target = MqttTopics.app_shadow("companion", VIN)
    result = downlink([(HEADER_TARGET_TOPIC, target.encode()), (HEADER_RETAIN, b"1")], b"{}")
    assert result == MqttPublish(target, b"{}", qos=1, retain=True, kind=TopicKind.APP_SHADOW)


@pytest.mark.parametrize(
    ("headers", "cause"),
    [
        ([], RejectCause.HEADERS),
        ([(HEADER_TARGET_TOPIC, b"vehicles/nope/errors")], RejectCause.TOPIC),
        ([(HEADER_TARGET_TOPIC, MqttTopics.telemetry(VIN).encode())], RejectCause.DIRECTION),
        (
            [(HEADER_TARGET_TOPIC, MqttTopics.errors(VIN).encode()), (HEADER_QOS, b"3")],
            RejectCause.HEADERS,
        ),
        (
            [(HEADER_TARGET_TOPIC, MqttTopics.errors(VIN).encode()), (HEADER_RETAIN, b"yes")],
            RejectCause.HEADERS,
        ),
    ],
)
def test_outbound_records_that_name_no_downlink_topic_are_dead_letters(
    headers: list[tuple[str, bytes]], cause: RejectCause
) -> None:
    result = downlink(headers, b"payload")
    assert isinstance(result, Rejected)
    assert result.cause is cause
    assert result.notice is None
    letter = DeadLetter.model_validate_json(result.dead_letter.value)
    assert letter.sender == OUTBOUND_SENDER
    assert letter.reason.startswith("outbound record: ")
    assert base64.b64decode(letter.payload) == b"payload"
    assert (result.dead_letter.topic, result.dead_letter.key) == ("fg.deadletter", VIN.encode())


def test_outbound_dead_letter_names_the_producer_when_it_said() -> None:
    result = downlink([(HEADER_SENDER, b"service:processors")], None)
    assert isinstance(result, Rejected)
    letter = DeadLetter.model_validate_json(result.dead_letter.value)
    assert (letter.sender, letter.payload_bytes()) == ("service:processors", b"")


def test_huge_rejected_payload_is_cut_so_the_dead_letter_fits_kafka() -> None:
    payload = b"x" * (MAX_DEAD_LETTER_PAYLOAD + 10)
    result = uplink(MqttTopics.telemetry(VIN), payload)
    assert isinstance(result, Rejected)
    letter = DeadLetter.model_validate_json(result.dead_letter.value)
    assert letter.payload_bytes() == payload[:MAX_DEAD_LETTER_PAYLOAD]
    assert f"first {MAX_DEAD_LETTER_PAYLOAD} of {len(payload)} bytes" in letter.reason
    assert len(result.dead_letter.value) < 400 * 1024


@given(vin=vins, slices=st.integers(1, 64), command=st.uuids())
def test_a_senders_messages_all_belong_to_one_slice(vin: str, slices: int, command: object) -> None:
    owned = {
        slice_of(topic, slices)
        for topic in (
            MqttTopics.telemetry(vin),
            MqttTopics.connection(vin),
            MqttTopics.command_result(vin, str(command)),
            MqttTopics.ota_chunk_request(vin),
            f"vehicles/{vin}/no-such-kind",  # rejected: still the sender's slice
        )
    }
    assert len(owned) == 1
    assert 0 <= owned.pop() < slices


@given(app=app_ids, vin=vins)
def test_an_apps_messages_belong_to_its_slice(app: str, vin: str) -> None:
    assert slice_of(MqttTopics.app_commands(app), 5) == slice_of(
        MqttTopics.app_shadow_desired(app, vin), 5
    )


@given(topic=st.text(max_size=40), slices=st.integers(1, 9))
def test_any_topic_has_one_slice(topic: str, slices: int) -> None:
    assert 0 <= slice_of(topic, slices) < slices


def test_slices_are_stable_and_spread_a_fleet_evenly() -> None:
    # the same in every process and release: CRC-32 of the sender, not Python's salted hash
    assert [slice_of(MqttTopics.telemetry(make_vin(n)), 4) for n in range(8)] == [
        slice_of(MqttTopics.telemetry(make_vin(n)), 4) for n in range(8)
    ]
    assert slice_of("vehicles/FGTSMV00000000001/telemetry", 7) == (
        __import__("zlib").crc32(b"FGTSMV00000000001") % 7
    )
    counts = [0, 0, 0]
    for n in range(30_000):
        counts[slice_of(MqttTopics.telemetry(make_vin(n)), 3)] += 1
    assert all(9_000 < c < 11_000 for c in counts), counts
