"""schemas.topics: building, parsing and naming topics."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.ids import NAME_RE, VIN_ALPHABET, Identity, Role, make_vin
from schemas.topics import (
    HEADER_MESSAGE_ID,
    HEADER_QOS,
    HEADER_RECEIVED_AT,
    HEADER_REJECT_REASON,
    HEADER_SENDER,
    HEADER_SOURCE_TOPIC,
    HEADER_TARGET_TOPIC,
    MAX_CHUNK_INDEX,
    MAX_TOPIC_LENGTH,
    Direction,
    KafkaTopics,
    MqttTopics,
    Topic,
    TopicError,
    TopicKind,
    downlink_filters,
    parse_topic,
    topic_matches,
    uplink_filters,
    validate_command_id,
    validate_job_id,
)

pytestmark = pytest.mark.unit

VIN = "FGTSMV00000000001"
CID = "3f2c1a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"

vins = st.one_of(
    st.integers(min_value=0, max_value=33**11 - 1).map(make_vin),
    st.text(alphabet=VIN_ALPHABET, min_size=17, max_size=17),
)
app_ids = st.from_regex(NAME_RE, fullmatch=True)
command_ids = st.uuids().map(str)
job_ids = st.from_regex(NAME_RE, fullmatch=True)
indexes = st.integers(min_value=0, max_value=MAX_CHUNK_INDEX)


def build_all(vin: str, app_id: str, cid: str, job: str, index: int) -> dict[TopicKind, str]:
    return {
        TopicKind.CONNECTION: MqttTopics.connection(vin),
        TopicKind.TELEMETRY: MqttTopics.telemetry(vin),
        TopicKind.SHADOW_REPORTED: MqttTopics.shadow_reported(vin),
        TopicKind.COMMAND_RESULT: MqttTopics.command_result(vin, cid),
        TopicKind.OTA_STATUS: MqttTopics.ota_status(vin),
        TopicKind.OTA_CHUNK_REQUEST: MqttTopics.ota_chunk_request(vin),
        TopicKind.COMMAND: MqttTopics.command(vin, cid),
        TopicKind.SHADOW_DESIRED: MqttTopics.shadow_desired(vin),
        TopicKind.OTA_JOB: MqttTopics.ota_jobs(vin),
        TopicKind.OTA_CHUNK: MqttTopics.ota_chunk(vin, job, index),
        TopicKind.ERRORS: MqttTopics.errors(vin),
        TopicKind.APP_COMMAND: MqttTopics.app_commands(app_id),
        TopicKind.APP_SHADOW_DESIRED: MqttTopics.app_shadow_desired(app_id, vin),
        TopicKind.APP_COMMAND_STATUS: MqttTopics.app_command_status(app_id, cid),
        TopicKind.APP_SHADOW: MqttTopics.app_shadow(app_id, vin),
        TopicKind.APP_ERRORS: MqttTopics.app_errors(app_id),
    }


def test_contract_strings() -> None:
    built = build_all(VIN, "app-1", CID, "job.7", 12)
    assert built[TopicKind.CONNECTION] == f"vehicles/{VIN}/connection"
    assert built[TopicKind.TELEMETRY] == f"vehicles/{VIN}/telemetry"
    assert built[TopicKind.SHADOW_REPORTED] == f"vehicles/{VIN}/shadow/reported"
    assert built[TopicKind.COMMAND_RESULT] == f"vehicles/{VIN}/commands/{CID}/result"
    assert built[TopicKind.OTA_STATUS] == f"vehicles/{VIN}/ota/status"
    assert built[TopicKind.OTA_CHUNK_REQUEST] == f"vehicles/{VIN}/ota/chunks/request"
    assert built[TopicKind.COMMAND] == f"vehicles/{VIN}/commands/{CID}"
    assert built[TopicKind.SHADOW_DESIRED] == f"vehicles/{VIN}/shadow/desired"
    assert built[TopicKind.OTA_JOB] == f"vehicles/{VIN}/ota/jobs"
    assert built[TopicKind.OTA_CHUNK] == f"vehicles/{VIN}/ota/chunks/job.7/12"
    assert built[TopicKind.ERRORS] == f"vehicles/{VIN}/errors"
    assert built[TopicKind.APP_COMMAND] == "apps/app-1/commands"
    assert built[TopicKind.APP_SHADOW_DESIRED] == f"apps/app-1/vehicles/{VIN}/shadow/desired"
    assert built[TopicKind.APP_COMMAND_STATUS] == f"apps/app-1/commands/{CID}/status"
    assert built[TopicKind.APP_SHADOW] == f"apps/app-1/vehicles/{VIN}/shadow"
    assert built[TopicKind.APP_ERRORS] == "apps/app-1/errors"
    assert set(built) == set(TopicKind)


@given(vin=vins, app_id=app_ids, cid=command_ids, job=job_ids, index=indexes)
def test_build_parse_round_trip(vin: str, app_id: str, cid: str, job: str, index: int) -> None:
    for kind, text in build_all(vin, app_id, cid, job, index).items():
        topic = parse_topic(text)
        assert topic.kind is kind
        assert str(topic) == text
        assert topic == Topic(
            kind,
            vin=topic.vin,
            app_id=topic.app_id,
            command_id=topic.command_id,
            job_id=topic.job_id,
            index=topic.index,
        )
        assert MqttTopics.topic(kind, **_fields(topic)) == text
        if kind.role is Role.VEHICLE:
            assert topic.vin == vin
            assert topic.owner == Identity(role=Role.VEHICLE, id=vin)
        else:
            assert topic.app_id == app_id
            assert topic.owner == Identity(role=Role.APP, id=app_id)
        assert topic.owner_id == topic.owner.id
        if "{command_id}" in kind.template:
            assert topic.command_id == cid
        if kind is TopicKind.OTA_CHUNK:
            assert (topic.job_id, topic.index) == (job, index)
        # exactly one kind's filter matches each topic
        matching = [k for k in TopicKind if topic_matches(k.filter, text)]
        assert matching == [kind]


def _fields(topic: Topic) -> dict[str, str | int]:
    names = ("vin", "app_id", "command_id", "job_id", "index")
    return {n: getattr(topic, n) for n in names if getattr(topic, n) is not None}


def test_kind_properties() -> None:
    assert TopicKind.TELEMETRY.direction is Direction.UPLINK
    assert TopicKind.TELEMETRY.role is Role.VEHICLE
    assert TopicKind.COMMAND.direction is Direction.DOWNLINK
    assert TopicKind.APP_COMMAND.role is Role.APP
    assert TopicKind.APP_COMMAND.is_uplink
    assert TopicKind.APP_SHADOW.direction is Direction.DOWNLINK
    assert not TopicKind.OTA_CHUNK.is_json
    assert TopicKind.OTA_CHUNK.filter == "vehicles/+/ota/chunks/+/+"
    uplink = {k for k in TopicKind if k.is_uplink}
    assert uplink == {
        TopicKind.CONNECTION,
        TopicKind.TELEMETRY,
        TopicKind.SHADOW_REPORTED,
        TopicKind.COMMAND_RESULT,
        TopicKind.OTA_STATUS,
        TopicKind.OTA_CHUNK_REQUEST,
        TopicKind.APP_COMMAND,
        TopicKind.APP_SHADOW_DESIRED,
    }


def test_target_vin() -> None:
    assert parse_topic(MqttTopics.app_shadow_desired("a", VIN)).target_vin == VIN
    assert parse_topic(MqttTopics.app_commands("a")).target_vin is None
    assert parse_topic(MqttTopics.telemetry(VIN)).target_vin == VIN


def test_uplink_filters() -> None:
    assert uplink_filters() == (
        "vehicles/+/connection",
        "vehicles/+/telemetry",
        "vehicles/+/shadow/reported",
        "vehicles/+/commands/+/result",
        "vehicles/+/ota/status",
        "vehicles/+/ota/chunks/request",
        "apps/+/commands",
        "apps/+/vehicles/+/shadow/desired",
    )
    assert set(uplink_filters()).isdisjoint(downlink_filters())


def test_device_subscriptions() -> None:
    assert MqttTopics.vehicle_subscriptions(VIN) == (
        f"vehicles/{VIN}/commands/+",
        f"vehicles/{VIN}/shadow/desired",
        f"vehicles/{VIN}/ota/jobs",
        f"vehicles/{VIN}/ota/chunks/+/+",
        f"vehicles/{VIN}/errors",
    )
    assert MqttTopics.app_subscription("app-1") == "apps/app-1/#"


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("vehicles/FGTSMV0000000000I/telemetry", "illegal character 'I' at position 17"),
        ("vehicles/FGTSMV0000000000O/telemetry", "I, O and Q are never used"),
        ("vehicles/FGTSMV0000000000Q/telemetry", "illegal character 'Q'"),
        ("vehicles/fgtsmv00000000001/telemetry", "illegal character 'f' at position 1"),
        ("vehicles/FGTSMV0000000001/telemetry", "has 16 characters"),
        ("vehicles/FGTSMV000000000001/telemetry", "has 18 characters"),
        ("vehicles//telemetry", "has 0 characters"),
        (f"vehicles/{VIN}/speed", "unknown topic: no vehicle topic vehicles/<VIN>/speed"),
        (f"vehicles/{VIN}/telemetry/extra", "unknown topic"),
        (f"vehicles/{VIN}/telemetry/", "unknown topic"),
        (f"vehicles/{VIN}", "unknown topic: too few levels"),
        (f"/vehicles/{VIN}/telemetry", "must not start with '/'"),
        ("cars/x/telemetry", "must start with vehicles/ or apps/"),
        ("$SYS/broker/uptime", "reserved for the broker"),
        ("", "is empty"),
        (f"vehicles/{VIN}/+", "wildcard"),
        ("vehicles/+/telemetry", "wildcard"),
        (f"vehicles/{VIN}/#", "wildcard"),
        ("vehicles/" + "A" * MAX_TOPIC_LENGTH, "too long"),
        (f"vehicles/{VIN}/commands/not-a-uuid/result", "command id 'not-a-uuid' is not a UUID"),
        (f"vehicles/{VIN}/commands/{CID.upper()}", "must be a UUID in lowercase"),
        (f"vehicles/{VIN}/ota/chunks/job/01", "without sign or leading zeros"),
        (f"vehicles/{VIN}/ota/chunks/job/-1", "chunk index '-1'"),
        (f"vehicles/{VIN}/ota/chunks/job/{MAX_CHUNK_INDEX + 1}", "must be an integer in 0.."),
        (f"vehicles/{VIN}/ota/chunks/job/x", "chunk index 'x'"),
        (f"vehicles/{VIN}/ota/chunks/job/\u0663", "chunk index"),
        (f"vehicles/{VIN}/ota/chunks/-job/1", "job id '-job' is not valid"),
        ("apps/-bad/commands", "app id '-bad' is not valid"),
        ("apps/a b/commands", "app id 'a b' is not valid"),
        ("apps/app/commands/x", "unknown topic: no app topic apps/<app id>/commands/x"),
        ("apps/app/vehicles/FGTSMV00000000001/shadow/reported", "unknown topic"),
        ("apps/app/vehicles/FGTSMV0000000000I/shadow", "illegal character 'I'"),
    ],
)
def test_rejections_are_precise(topic: str, reason: str) -> None:
    with pytest.raises(TopicError) as info:
        parse_topic(topic)
    message = str(info.value)
    assert reason in message
    assert message.startswith("topic ")
    assert "\n" not in message


def test_builders_validate() -> None:
    with pytest.raises(TopicError, match="illegal character 'O'"):
        MqttTopics.telemetry("FGTSMV0000000000O")
    with pytest.raises(TopicError, match="not a UUID"):
        MqttTopics.command(VIN, "42")
    with pytest.raises(TopicError, match="app id"):
        MqttTopics.app_commands("a/b")
    with pytest.raises(TopicError, match="chunk index"):
        MqttTopics.ota_chunk(VIN, "job", -1)
    with pytest.raises(TopicError, match="job id"):
        MqttTopics.ota_chunk(VIN, "a+b", 0)


def test_topic_constructor_checks_fields() -> None:
    with pytest.raises(TopicError, match="needs vin"):
        Topic(TopicKind.TELEMETRY)
    with pytest.raises(TopicError, match="has no command id"):
        Topic(TopicKind.TELEMETRY, vin=VIN, command_id=CID)
    with pytest.raises(TopicError, match="needs command id"):
        Topic(TopicKind.COMMAND, vin=VIN)


def test_id_validators() -> None:
    cid = str(uuid.uuid4())
    assert validate_command_id(cid) == cid
    assert validate_job_id("campaign-1.wave_2") == "campaign-1.wave_2"
    with pytest.raises(TopicError):
        validate_command_id(cid.replace("-", ""))
    with pytest.raises(TopicError):
        validate_job_id("x" * 65)


def test_topic_error_is_value_error() -> None:
    assert issubclass(TopicError, ValueError)


# -------------------------------------------------------------------------------------------
# Kafka


def test_kafka_topic_names() -> None:
    k = KafkaTopics()
    assert k.all() == (
        "fleetgate.telemetry",
        "fleetgate.shadow.reported",
        "fleetgate.command.results",
        "fleetgate.ota.status",
        "fleetgate.ota.chunk.requests",
        "fleetgate.connectivity",
        "fleetgate.command.requests",
        "fleetgate.shadow.desired",
        "fleetgate.outbound",
        "fleetgate.deadletter",
    )
    assert len(set(k.all())) == len(k.all())


def test_kafka_prefix_and_for_uplink() -> None:
    k = KafkaTopics("t123.")
    assert k.telemetry == "t123.telemetry"
    assert all(name.startswith("t123.") for name in k.all())
    assert k.for_uplink(TopicKind.TELEMETRY) == k.telemetry
    assert k.for_uplink(TopicKind.CONNECTION) == k.connectivity
    assert k.for_uplink(TopicKind.SHADOW_REPORTED) == k.shadow_reported
    assert k.for_uplink(TopicKind.COMMAND_RESULT) == k.command_results
    assert k.for_uplink(TopicKind.OTA_STATUS) == k.ota_status
    assert k.for_uplink(TopicKind.OTA_CHUNK_REQUEST) == k.ota_chunk_requests
    assert k.for_uplink(TopicKind.APP_COMMAND) == k.command_requests
    assert k.for_uplink(TopicKind.APP_SHADOW_DESIRED) == k.shadow_desired
    for kind in TopicKind:
        if not kind.is_uplink:
            with pytest.raises(TopicError, match="downlink"):
                k.for_uplink(kind)


@pytest.mark.parametrize("prefix", ["a b.", "x/", "ü.", "p" * 201])
def test_kafka_prefix_rejected(prefix: str) -> None:
    with pytest.raises(TopicError, match="prefix"):
        KafkaTopics(prefix)


def test_header_names_distinct() -> None:
    names = [
        HEADER_MESSAGE_ID,
        HEADER_RECEIVED_AT,
        HEADER_SENDER,
        HEADER_SOURCE_TOPIC,
        HEADER_TARGET_TOPIC,
        HEADER_QOS,
        HEADER_REJECT_REASON,
    ]
    assert len(set(names)) == len(names)
    assert all(isinstance(n, str) and n.isascii() for n in names)
