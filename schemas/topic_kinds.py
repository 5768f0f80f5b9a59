"""The kinds of fleetgate MQTT topic (direction, owner role, template) and their id levels.

Pure; see :mod:`schemas.topics` for the table and the parser. Import from there.
"""

from __future__ import annotations

import enum
import re
from typing import Final

from schemas.ids import (
    NAME_RE,
    VIN_LENGTH,
    InvalidIdentifier,
    Role,
    validate_app_id,
    validate_vin,
)

MAX_CHUNK_INDEX: Final = 65_535
"""Largest OTA chunk index (a manifest has at most ``MAX_CHUNK_INDEX + 1`` chunks)."""


class TopicError(ValueError):
    """A topic or topic filter that fleetgate does not accept; the message says why."""


class Direction(enum.StrEnum):
    UPLINK = "uplink"
    """Device (vehicle or app) to cloud."""
    DOWNLINK = "downlink"
    """Cloud to device."""


class TopicKind(enum.StrEnum):
    """Every MQTT topic of the contract; the value is a stable name (also the JSON Schema's)."""

    # vehicle uplink
    CONNECTION = "connection"
    TELEMETRY = "telemetry"
    SHADOW_REPORTED = "shadow_reported"
    COMMAND_RESULT = "command_result"
    OTA_STATUS = "ota_status"
    OTA_CHUNK_REQUEST = "ota_chunk_request"
    # vehicle downlink
    COMMAND = "command"
    SHADOW_DESIRED = "shadow_desired"
    OTA_JOB = "ota_job"
    OTA_CHUNK = "ota_chunk"
    ERRORS = "errors"
    # app uplink
    APP_COMMAND = "app_command"
    APP_SHADOW_DESIRED = "app_shadow_desired"
    # app downlink
    APP_COMMAND_STATUS = "app_command_status"
    APP_SHADOW = "app_shadow"
    APP_ERRORS = "app_errors"

    @property
    def direction(self) -> Direction:
        return DIRECTION[self]

    @property
    def role(self) -> Role:
        """Role of the topic's owner: the vehicle or app whose id is in the topic."""
        return Role.APP if self in APP_KINDS else Role.VEHICLE

    @property
    def is_uplink(self) -> bool:
        return DIRECTION[self] is Direction.UPLINK

    @property
    def is_json(self) -> bool:
        """False only for OTA chunks, whose payload is the chunk's raw bytes."""
        return self is not TopicKind.OTA_CHUNK

    @property
    def template(self) -> str:
        """The topic with ``{vin}``, ``{app_id}``, ``{command_id}``, ``{job_id}``, ``{index}``."""
        return TEMPLATES[self]

    @property
    def filter(self) -> str:
        """An MQTT filter matching every topic of this kind (``+`` for every variable level)."""
        return FILTERS[self]


APP_KINDS: Final = frozenset(
    {
        TopicKind.APP_COMMAND,
        TopicKind.APP_SHADOW_DESIRED,
        TopicKind.APP_COMMAND_STATUS,
        TopicKind.APP_SHADOW,
        TopicKind.APP_ERRORS,
    }
)
UPLINK_KINDS: Final = (
    TopicKind.CONNECTION,
    TopicKind.TELEMETRY,
    TopicKind.SHADOW_REPORTED,
    TopicKind.COMMAND_RESULT,
    TopicKind.OTA_STATUS,
    TopicKind.OTA_CHUNK_REQUEST,
    TopicKind.APP_COMMAND,
    TopicKind.APP_SHADOW_DESIRED,
)
DIRECTION: Final = {
    kind: Direction.UPLINK if kind in UPLINK_KINDS else Direction.DOWNLINK for kind in TopicKind
}
TEMPLATES: Final = {
    TopicKind.CONNECTION: "vehicles/{vin}/connection",
    TopicKind.TELEMETRY: "vehicles/{vin}/telemetry",
    TopicKind.SHADOW_REPORTED: "vehicles/{vin}/shadow/reported",
    TopicKind.COMMAND_RESULT: "vehicles/{vin}/commands/{command_id}/result",
    TopicKind.OTA_STATUS: "vehicles/{vin}/ota/status",
    TopicKind.OTA_CHUNK_REQUEST: "vehicles/{vin}/ota/chunks/request",
    TopicKind.COMMAND: "vehicles/{vin}/commands/{command_id}",
    TopicKind.SHADOW_DESIRED: "vehicles/{vin}/shadow/desired",
    TopicKind.OTA_JOB: "vehicles/{vin}/ota/jobs",
    TopicKind.OTA_CHUNK: "vehicles/{vin}/ota/chunks/{job_id}/{index}",
    TopicKind.ERRORS: "vehicles/{vin}/errors",
    TopicKind.APP_COMMAND: "apps/{app_id}/commands",
    TopicKind.APP_SHADOW_DESIRED: "apps/{app_id}/vehicles/{vin}/shadow/desired",
    TopicKind.APP_COMMAND_STATUS: "apps/{app_id}/commands/{command_id}/status",
    TopicKind.APP_SHADOW: "apps/{app_id}/vehicles/{vin}/shadow",
    TopicKind.APP_ERRORS: "apps/{app_id}/errors",
}
FILTERS: Final = {kind: re.sub(r"\{[a-z_]+\}", "+", t) for kind, t in TEMPLATES.items()}
# which variable fields each kind carries (the rest must be None)
FIELDS: Final = {
    kind: frozenset(name for name in ("vin", "app_id", "command_id", "job_id", "index") if
                    "{" + name + "}" in template)
    for kind, template in TEMPLATES.items()
}  # fmt: skip


# --------------------------------------------------------------------------------------------
_UUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID_ANYCASE_RE: Final = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_VIN_CHARS: Final = frozenset("ABCDEFGHJKLMNPRSTUVWXYZ0123456789")


# --------------------------------------------------------------------------------------------
# identifiers inside topics


def check_vin(value: str) -> str:
    # fast path first: this runs for every message
    if len(value) == VIN_LENGTH and _VIN_CHARS.issuperset(value):
        return value
    try:
        return validate_vin(value)
    except InvalidIdentifier as exc:
        raise TopicError(str(exc)) from None


def check_app_id(value: str) -> str:
    if NAME_RE.fullmatch(value):
        return value
    try:
        return validate_app_id(value)
    except InvalidIdentifier as exc:
        raise TopicError(str(exc)) from None


def validate_command_id(value: str) -> str:
    """Return ``value`` if it is a UUID in canonical lowercase form, else raise TopicError."""
    if isinstance(value, str) and _UUID_RE.fullmatch(value):
        return value
    if isinstance(value, str) and _UUID_ANYCASE_RE.fullmatch(value):
        raise TopicError(f"command id {value!r} must be a UUID in lowercase")
    raise TopicError(
        f"command id {value!r} is not a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, lowercase hex)"
    )


def validate_job_id(value: str) -> str:
    """Return ``value`` if it is a job id (1-64 of ``A-Za-z0-9_.-``, starting alphanumeric)."""
    if isinstance(value, str) and NAME_RE.fullmatch(value):
        return value
    raise TopicError(
        f"job id {value!r} is not valid: 1-64 characters of A-Z a-z 0-9 _ . -, "
        "starting with a letter or digit"
    )


def check_index(value: int) -> int:
    if type(value) is not int or not 0 <= value <= MAX_CHUNK_INDEX:
        raise TopicError(f"chunk index {value!r} must be an integer in 0..{MAX_CHUNK_INDEX}")
    return value


def parse_index(text: str) -> int:
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise TopicError(f"chunk index {text!r} is not a decimal without sign or leading zeros")
    return check_index(int(text))
