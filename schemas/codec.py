"""One entry point to decode (and encode) every JSON payload, with short, precise errors. Pure.

``decode_uplink(kind, payload)`` validates straight from bytes (``model_validate_json``); a
bad payload raises :class:`PayloadError` whose message fits on one line, e.g.
``telemetry.signals.speed: value is not finite`` or
``telemetry: invalid JSON at line 1 column 7: EOF while parsing a value``.
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import BaseModel, ValidationError

from schemas.base import NAME_PATTERN, SHA256_PATTERN, UUID_PATTERN, JsonPathError
from schemas.commands import (
    COMMAND_NAME_PATTERN,
    CommandDownlink,
    CommandRequest,
    CommandResult,
    CommandStatus,
)
from schemas.connectivity import Connectivity
from schemas.errors import ErrorNotice
from schemas.ota import VERSION_PATTERN, OtaChunkRequest, OtaJob, OtaStatus
from schemas.shadow import AppShadowDesired, ShadowDesired, ShadowDocument, ShadowReported
from schemas.telemetry import SIGNAL_NAME_PATTERN, Telemetry
from schemas.topic_kinds import TopicKind

MAX_PAYLOAD_BYTES: Final = 256 * 1024
"""Largest JSON payload of an uplink message."""
MAX_DOWNLINK_PAYLOAD_BYTES: Final = 8 * 1024 * 1024
"""Largest JSON payload of a downlink message (an OTA job carries every chunk's digest)."""

MODELS: Final[dict[TopicKind, type[BaseModel]]] = {
    TopicKind.CONNECTION: Connectivity,
    TopicKind.TELEMETRY: Telemetry,
    TopicKind.SHADOW_REPORTED: ShadowReported,
    TopicKind.COMMAND_RESULT: CommandResult,
    TopicKind.OTA_STATUS: OtaStatus,
    TopicKind.OTA_CHUNK_REQUEST: OtaChunkRequest,
    TopicKind.COMMAND: CommandDownlink,
    TopicKind.SHADOW_DESIRED: ShadowDesired,
    TopicKind.OTA_JOB: OtaJob,
    TopicKind.ERRORS: ErrorNotice,
    TopicKind.APP_COMMAND: CommandRequest,
    TopicKind.APP_SHADOW_DESIRED: AppShadowDesired,
    TopicKind.APP_COMMAND_STATUS: CommandStatus,
    TopicKind.APP_SHADOW: ShadowDocument,
    TopicKind.APP_ERRORS: ErrorNotice,
}
"""The payload model of every JSON topic kind (all but OTA_CHUNK, whose payload is raw)."""


class PayloadError(ValueError):
    """A payload that does not match its topic's model; the message is one short line."""


def model_for(kind: TopicKind) -> type[BaseModel]:
    """The payload model of ``kind``; PayloadError for OTA chunks (raw bytes, no model)."""
    model = MODELS.get(kind)
    if model is None:
        raise PayloadError(f"{kind.value}: the payload is raw bytes, not JSON")
    return model


def decode_uplink(kind: TopicKind, payload: bytes) -> BaseModel:
    """Validate an uplink ``payload`` of ``kind`` and return its model instance.

    Raises PayloadError for a downlink kind, an empty or oversized payload, invalid JSON
    (UTF-8 included) or a payload that breaks the model.
    """
    model = _UPLINK_MODELS.get(kind)
    if model is None:
        raise PayloadError(f"{kind.value}: not an uplink topic")
    return _decode(kind, model, payload, MAX_PAYLOAD_BYTES)


def decode(kind: TopicKind, payload: bytes) -> BaseModel:
    """Validate a payload of any JSON ``kind`` (e.g. what a simulated vehicle receives)."""
    model = model_for(kind)
    limit = MAX_PAYLOAD_BYTES if kind.is_uplink else MAX_DOWNLINK_PAYLOAD_BYTES
    return _decode(kind, model, payload, limit)


def encode(message: BaseModel) -> bytes:
    """The JSON bytes of ``message`` as published (aliases, e.g. ``from``, applied)."""
    return message.model_dump_json(by_alias=True).encode("utf-8")


def _decode(kind: TopicKind, model: type[BaseModel], payload: bytes, limit: int) -> BaseModel:
    size = len(payload)
    if size > limit:
        raise PayloadError(f"{kind.value}: payload too large ({size} > {limit} bytes)")
    if not size:
        raise PayloadError(f"{kind.value}: empty payload")
    try:
        return model.model_validate_json(payload)
    except ValidationError as exc:
        raise PayloadError(describe_error(kind.value, exc)) from None


_UPLINK_MODELS: Final = {kind: model for kind, model in MODELS.items() if kind.is_uplink}
_JSON_POSITION: Final = re.compile(r"^(?P<what>.*?)\s+at line (?P<line>\d+) column (?P<col>\d+)$")
_SHORT: Final = {
    "missing": "field required",
    "extra_forbidden": "unexpected field",
    "model_type": "expected a JSON object",
    "model_attributes_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
    "finite_number": "value is not finite",
    "list_type": "expected a JSON array",
    "string_type": "expected a string",
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "float_type": "expected a number",
}
_PATTERNS: Final = {
    UUID_PATTERN: "a UUID (8-4-4-4-12 hex digits)",
    SHA256_PATTERN: "64 lowercase hex digits",
    NAME_PATTERN: "1-64 of A-Za-z0-9_.-, starting with a letter or digit",
    SIGNAL_NAME_PATTERN: "a letter, then up to 63 of A-Za-z0-9_.-",
    COMMAND_NAME_PATTERN: "a letter, then up to 63 of A-Za-z0-9_.-",
    VERSION_PATTERN: "1-64 of A-Za-z0-9_.+-, starting with a letter or digit",
}


def describe_error(label: str, exc: ValidationError) -> str:
    """One line for the first error of ``exc``: ``<label>.<path>: <what is wrong>``."""
    errors = exc.errors(include_url=False)
    if not errors:
        return f"{label}: invalid"
    first = errors[0]
    kind = first["type"]
    ctx = first.get("ctx") or {}
    if kind == "json_invalid":
        text = str(ctx.get("error", first["msg"]))
        match = _JSON_POSITION.match(text)
        if match:
            where = f"line {match['line']} column {match['col']}"
            return _clip(f"{label}: invalid JSON at {where}: {match['what']}")
        return _clip(f"{label}: invalid JSON: {text}")
    loc = first["loc"]
    path: list[str | int] = [p for p in loc if p != "[key]"]
    error = ctx.get("error")
    if isinstance(error, JsonPathError):
        path.extend(error.path)
        message = error.message
    elif kind == "value_error" and error is not None:
        message = str(error)
    elif kind == "string_pattern_mismatch" and ctx.get("pattern") in _PATTERNS:
        what = "name" if "[key]" in loc else repr(first.get("input"))[:60]
        message = f"{what} must be {_PATTERNS[ctx['pattern']]}"
    elif kind in _SHORT:
        message = _SHORT[kind]
    else:
        message = first["msg"][:1].lower() + first["msg"][1:]
    where = label + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    more = len(errors) - 1
    suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more else ""
    return _clip(f"{where}: {message}{suffix}")


def _clip(line: str, limit: int = 300) -> str:
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
