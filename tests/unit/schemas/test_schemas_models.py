"""schemas message models: contract examples accepted, bad payloads rejected."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas.codec import MODELS, PayloadError, decode, encode
from schemas.commands import (
    DEFAULT_TTL_S,
    MAX_TTL_S,
    CommandRequest,
    CommandResultStatus,
    CommandState,
)
from schemas.connectivity import ConnectivityCause, ConnectivityEvent
from schemas.errors import DeadLetter, ErrorNotice, short_reason
from schemas.shadow import MAX_STATE_DEPTH, ShadowDocument
from schemas.telemetry import MAX_SIGNAL_STRING, MAX_SIGNALS, Telemetry
from schemas.topics import TopicKind

pytestmark = pytest.mark.unit

VIN = "FGTSMV00000000001"
CID = "3f2c1a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"
TS = 1_700_000_000_000
SHA = "a" * 64
MANIFEST: dict[str, Any] = {
    "artifact": "ecu-fw",
    "version": "1.2.3",
    "size": 10,
    "sha256": SHA,
    "chunk_size": 4,
    "chunk_count": 3,
    "chunks": [SHA, "b" * 64, "c" * 64],
}
SIGNATURE = "A" * 86 + "=="  # 64 bytes, base64

# one valid example per JSON topic kind, as the contract writes them
EXAMPLES: dict[TopicKind, dict[str, Any]] = {
    TopicKind.CONNECTION: {"online": True, "ts": TS},
    TopicKind.TELEMETRY: {
        "ts": TS,
        "seq": 42,
        "signals": {"speed": 88.5, "rpm": 2400, "gear": "D", "ignition": True, "hv.soc": 0.77},
    },
    TopicKind.SHADOW_REPORTED: {
        "state": {"cabin": {"temp": 21.5}, "doors": "locked"},
        "version": 3,
    },
    TopicKind.COMMAND_RESULT: {"status": "succeeded", "detail": "locked"},
    TopicKind.OTA_STATUS: {
        "job_id": "job-1",
        "state": "downloading",
        "progress": 0.5,
        "error": None,
    },
    TopicKind.OTA_CHUNK_REQUEST: {"job_id": "job-1", "from": 3, "count": 8},
    TopicKind.COMMAND: {"name": "doors.lock", "params": {"force": False}, "expires_at": TS},
    TopicKind.SHADOW_DESIRED: {"state": {"cabin": {"temp": 22}}, "version": 4},
    TopicKind.OTA_JOB: {
        "job_id": "job-1",
        "campaign_id": "spring-2025",
        "manifest": MANIFEST,
        "signature": SIGNATURE,
    },
    TopicKind.ERRORS: {
        "topic": f"vehicles/{VIN}/telemetry",
        "reason": "telemetry.ts: field required",
    },
    TopicKind.APP_COMMAND: {
        "command_id": CID,
        "vin": VIN,
        "name": "doors.lock",
        "params": {},
        "ttl_s": 60,
    },
    TopicKind.APP_SHADOW_DESIRED: {"state": {"cabin": {"temp": 22}}},
    TopicKind.APP_COMMAND_STATUS: {"status": "timed_out", "detail": None, "ts": TS},
    TopicKind.APP_SHADOW: {
        "vin": VIN,
        "version": 4,
        "ts": TS,
        "online": True,
        "state": {
            "reported": {"cabin": {"temp": 21.5}},
            "desired": {"cabin": {"temp": 22}},
            "delta": {"cabin": {"temp": 22}},
        },
        "metadata": {"reported": {"cabin": {"temp": TS}}, "desired": {"cabin": {"temp": TS}}},
    },
    TopicKind.APP_ERRORS: {"topic": "apps/a/commands", "reason": "invalid JSON"},
}


def test_every_json_kind_has_a_model_and_an_example() -> None:
    json_kinds = {k for k in TopicKind if k.is_json}
    assert set(MODELS) == json_kinds
    assert set(EXAMPLES) == json_kinds


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_example_round_trip(kind: TopicKind) -> None:
    raw = json.dumps(EXAMPLES[kind]).encode()
    message = decode(kind, raw)
    assert isinstance(message, MODELS[kind])
    again = decode(kind, encode(message))
    assert again == message
    with pytest.raises(ValidationError):  # frozen
        message.__setattr__(next(iter(type(message).model_fields)), None)


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_extra_field_rejected(kind: TopicKind) -> None:
    with pytest.raises(ValidationError, match="extra"):
        MODELS[kind].model_validate_json(json.dumps({**EXAMPLES[kind], "surprise": 1}))


def _bad(kind: TopicKind, **changes: Any) -> str:
    return json.dumps({**EXAMPLES[kind], **changes})


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, signals={"x": float("nan")})),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, signals={"x": float("inf")})),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, signals={"x": None})),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, signals={"x": {"y": 1}})),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, signals={"x": 2**63})),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, signals={"x": "s" * 257})),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, signals={"bad name": 1})),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, signals={"_x": 1})),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, signals={f"s{i}": i for i in range(257)})),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, seq=-1)),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, seq="1")),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, ts=1.5)),
        (TopicKind.TELEMETRY, _bad(TopicKind.TELEMETRY, ts=-1)),
        (TopicKind.CONNECTION, _bad(TopicKind.CONNECTION, online="true")),
        (TopicKind.CONNECTION, _bad(TopicKind.CONNECTION, online=1)),
        (TopicKind.COMMAND_RESULT, _bad(TopicKind.COMMAND_RESULT, status="done")),
        (TopicKind.COMMAND_RESULT, _bad(TopicKind.COMMAND_RESULT, detail=float("nan"))),
        (TopicKind.OTA_STATUS, _bad(TopicKind.OTA_STATUS, state="exploded")),
        (TopicKind.OTA_STATUS, _bad(TopicKind.OTA_STATUS, progress=1.01)),
        (TopicKind.OTA_STATUS, _bad(TopicKind.OTA_STATUS, progress=float("nan"))),
        (TopicKind.OTA_CHUNK_REQUEST, _bad(TopicKind.OTA_CHUNK_REQUEST, count=0)),
        (TopicKind.OTA_CHUNK_REQUEST, _bad(TopicKind.OTA_CHUNK_REQUEST, count=257)),
        (TopicKind.OTA_CHUNK_REQUEST, _bad(TopicKind.OTA_CHUNK_REQUEST, **{"from": -1})),
        (TopicKind.APP_COMMAND, _bad(TopicKind.APP_COMMAND, command_id="42")),
        (TopicKind.APP_COMMAND, _bad(TopicKind.APP_COMMAND, vin="FGTSMV0000000000Q")),
        (TopicKind.APP_COMMAND, _bad(TopicKind.APP_COMMAND, name="rm -rf")),
        (TopicKind.APP_COMMAND, _bad(TopicKind.APP_COMMAND, ttl_s=0)),
        (TopicKind.APP_COMMAND, _bad(TopicKind.APP_COMMAND, ttl_s=MAX_TTL_S + 1)),
        (TopicKind.APP_COMMAND, _bad(TopicKind.APP_COMMAND, params=[1])),
        (TopicKind.APP_COMMAND_STATUS, _bad(TopicKind.APP_COMMAND_STATUS, status="lost")),
        (TopicKind.SHADOW_REPORTED, _bad(TopicKind.SHADOW_REPORTED, state=[])),
        (TopicKind.SHADOW_REPORTED, _bad(TopicKind.SHADOW_REPORTED, state={"a": float("nan")})),
        (TopicKind.SHADOW_REPORTED, _bad(TopicKind.SHADOW_REPORTED, version=-1)),
        (TopicKind.SHADOW_DESIRED, _bad(TopicKind.SHADOW_DESIRED, version=None)),
        (TopicKind.OTA_JOB, _bad(TopicKind.OTA_JOB, signature="not base64!")),
        (TopicKind.OTA_JOB, _bad(TopicKind.OTA_JOB, signature="AAAA")),
        (TopicKind.ERRORS, _bad(TopicKind.ERRORS, reason="")),
    ],
)
def test_bad_payload_rejected(kind: TopicKind, payload: str) -> None:
    with pytest.raises(ValidationError):
        MODELS[kind].model_validate_json(payload)


def test_missing_required_field() -> None:
    for kind, example in EXAMPLES.items():
        model = MODELS[kind]
        for name, field in model.model_fields.items():
            if field.is_required():
                partial = {k: v for k, v in example.items() if k != (field.alias or name)}
                with pytest.raises(ValidationError, match="required"):
                    model.model_validate_json(json.dumps(partial))


def test_defaults_and_normalisation() -> None:
    req = CommandRequest.model_validate_json(
        json.dumps({"command_id": CID.upper(), "vin": VIN, "name": "horn"})
    )
    assert req.command_id == CID
    assert req.params == {}
    assert req.ttl_s == DEFAULT_TTL_S
    doc = ShadowDocument(vin=VIN, version=0, ts=TS)
    assert doc.state.reported == {}
    assert doc.metadata.desired == {}
    assert doc.online is None


def test_shadow_state_depth_limit() -> None:
    deep: dict[str, Any] = {"leaf": 1}
    for _ in range(MAX_STATE_DEPTH):
        deep = {"n": deep}
    with pytest.raises(PayloadError, match=r"shadow_reported\.state(\.n)+: nested deeper"):
        decode(TopicKind.SHADOW_REPORTED, json.dumps({"state": deep}).encode())
    ok: dict[str, Any] = {"leaf": 1}
    for _ in range(MAX_STATE_DEPTH - 1):
        ok = {"n": ok}
    decode(TopicKind.SHADOW_REPORTED, json.dumps({"state": ok}).encode())


def test_shadow_null_means_delete_and_is_accepted() -> None:
    msg = decode(TopicKind.APP_SHADOW_DESIRED, b'{"state": {"cabin": null}}')
    assert msg.model_dump() == {"state": {"cabin": None}, "version": None}


def test_enums_carry_contract_strings() -> None:
    assert [s.value for s in CommandResultStatus] == ["succeeded", "failed", "rejected"]
    assert [s.value for s in CommandState] == [
        "accepted", "delivered", "succeeded", "failed", "rejected", "expired", "timed_out"
    ]  # fmt: skip
    assert not CommandState.DELIVERED.is_final
    assert CommandState.EXPIRED.is_final
    assert CommandState.from_result(CommandResultStatus.FAILED) is CommandState.FAILED


def test_connectivity_event_and_dead_letter() -> None:
    event = ConnectivityEvent(vin=VIN, online=False, ts=TS, cause=ConnectivityCause.WILL)
    assert json.loads(encode(event)) == {"vin": VIN, "online": False, "ts": TS, "cause": "will"}
    with pytest.raises(ValidationError, match="illegal character"):
        ConnectivityEvent(vin="FGTSMV0000000000I", online=True, ts=TS, cause="birth")  # type: ignore[arg-type]
    letter = DeadLetter.of(
        reason="bad\nthing",
        topic="x/y",
        sender=f"vehicle:{VIN}",
        payload=b"\xff\x00",
        received_at=TS,
    )
    assert letter.reason == "bad thing"
    assert letter.payload_bytes() == b"\xff\x00"
    assert DeadLetter.model_validate_json(encode(letter)) == letter
    with pytest.raises(ValidationError, match="base64"):
        DeadLetter(reason="r", topic="t", sender="s", payload="@@", received_at=TS)


def test_short_reason() -> None:
    assert short_reason("  a \n b ") == "a b"
    assert short_reason("") == "rejected"
    assert len(short_reason("x" * 5000)) == 1024
    assert ErrorNotice(topic="t", reason=short_reason("x" * 5000)).reason.endswith("...")


signal_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=MAX_SIGNAL_STRING),
)
signal_names = st.from_regex(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}", fullmatch=True)


@given(
    ts=st.integers(min_value=0, max_value=2**45),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    signals=st.dictionaries(signal_names, signal_values, max_size=MAX_SIGNALS),
)
def test_telemetry_round_trip(ts: int, seq: int, signals: dict[str, Any]) -> None:
    message = Telemetry(ts=ts, seq=seq, signals=signals)
    again = decode(TopicKind.TELEMETRY, encode(message))
    assert again == message
    assert isinstance(again, Telemetry)
    for name, value in signals.items():
        assert type(again.signals[name]) is type(value)


def test_models_are_base_models() -> None:
    assert all(issubclass(m, BaseModel) for m in MODELS.values())
