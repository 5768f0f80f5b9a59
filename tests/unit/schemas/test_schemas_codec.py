"""schemas.codec: decode_uplink's results and one-line error messages."""

from __future__ import annotations

import pytest

from schemas.codec import (
    MAX_PAYLOAD_BYTES,
    PayloadError,
    decode,
    decode_uplink,
    model_for,
)
from schemas.telemetry import Telemetry
from schemas.topics import TopicKind

pytestmark = pytest.mark.unit

VIN = "FGTSMV00000000001"
CID = "3f2c1a9e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"


def test_decode_telemetry() -> None:
    message = decode_uplink(
        TopicKind.TELEMETRY, b'{"ts": 1700000000000, "seq": 1, "signals": {"speed": 12.5}}'
    )
    assert message == Telemetry(ts=1_700_000_000_000, seq=1, signals={"speed": 12.5})


@pytest.mark.parametrize(
    ("kind", "payload", "message"),
    [
        (
            TopicKind.TELEMETRY,
            b'{"ts": 1, "seq": 1, "signals": {"speed": NaN}}',
            "telemetry.signals.speed: value is not finite",
        ),
        (
            TopicKind.TELEMETRY,
            b'{"ts": 1, "seq": 1, "signals": {"speed": [1]}}',
            "telemetry.signals.speed: must be a number, a string or a boolean",
        ),
        (
            TopicKind.TELEMETRY,
            b'{"ts": 1, "seq": 1, "signals": {"9x": 1}}',
            "telemetry.signals.9x: name must be a letter, then up to 63 of A-Za-z0-9_.-",
        ),
        (
            TopicKind.TELEMETRY,
            b'{"ts": 1,',
            "telemetry: invalid JSON at line 1 column 9: EOF while parsing a value",
        ),
        (TopicKind.TELEMETRY, b"\xff", "telemetry: invalid JSON at line 1 column 1"),
        (TopicKind.TELEMETRY, b"[1]", "telemetry: expected a JSON object"),
        (TopicKind.TELEMETRY, b"", "telemetry: empty payload"),
        (TopicKind.TELEMETRY, b'{"seq": 1, "signals": {}}', "telemetry.ts: field required"),
        (
            TopicKind.TELEMETRY,
            b'{"ts": 1, "seq": 1, "signals": {}, "x": 0}',
            "telemetry.x: unexpected field",
        ),
        (
            TopicKind.TELEMETRY,
            b'{"ts": "1", "seq": -1, "signals": {}}',
            "telemetry.ts: expected an integer (and 1 more error)",
        ),
        (TopicKind.CONNECTION, b'{"online": "yes"}', "connection.online: expected true or false"),
        (
            TopicKind.COMMAND_RESULT,
            b'{"status": "done"}',
            "command_result.status: input should be 'succeeded', 'failed' or 'rejected'",
        ),
        (
            TopicKind.APP_COMMAND,
            b'{"command_id": "42", "vin": "' + VIN.encode() + b'", "name": "x"}',
            "app_command.command_id: '42' must be a UUID (8-4-4-4-12 hex digits)",
        ),
        (
            TopicKind.APP_COMMAND,
            b'{"command_id": "' + CID.encode() + b'", "vin": "FGTSMV0000000000I", "name": "x"}',
            "app_command.vin: VIN 'FGTSMV0000000000I' has illegal character 'I' at position 17",
        ),
        (
            TopicKind.APP_COMMAND,
            b'{"command_id": "'
            + CID.encode()
            + b'", "vin": "'
            + VIN.encode()
            + b'", "name": "x", "params": {"a": [1, {"b": Infinity}]}}',
            "app_command.params.a[1].b: value is not finite",
        ),
        (TopicKind.COMMAND, b"{}", "command: not an uplink topic"),
        (TopicKind.OTA_CHUNK, b"raw", "ota_chunk: not an uplink topic"),
    ],
)
def test_error_messages(kind: TopicKind, payload: bytes, message: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_uplink(kind, payload)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_payload_too_large() -> None:
    with pytest.raises(PayloadError, match="payload too large"):
        decode_uplink(TopicKind.TELEMETRY, b" " * (MAX_PAYLOAD_BYTES + 1))


def test_error_message_is_short() -> None:
    payload = b'{"ts": 1, "seq": 1, "signals": {"' + b"a" * 5000 + b'": 1}}'
    with pytest.raises(PayloadError) as info:
        decode_uplink(TopicKind.TELEMETRY, payload)
    assert len(str(info.value)) <= 300


def test_decode_downlink_and_raw() -> None:
    message = decode(TopicKind.COMMAND, b'{"name": "horn", "expires_at": 5}')
    assert message.model_dump() == {"name": "horn", "params": {}, "expires_at": 5}
    with pytest.raises(PayloadError, match="raw bytes"):
        model_for(TopicKind.OTA_CHUNK)


def test_payload_error_is_value_error() -> None:
    assert issubclass(PayloadError, ValueError)
