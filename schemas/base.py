"""Building blocks of every message model: the base class and the constrained field types.

Pure: no I/O. Models are frozen, reject unknown fields and validate strictly (no "1" for 1,
no 1.0 for an int, no NaN or Infinity anywhere).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    WithJsonSchema,
)

from schemas.ids import NAME_RE, validate_app_id, validate_vin

MAX_EPOCH_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the largest timestamp a model accepts."""
MAX_INT64: Final = 2**63 - 1
MIN_INT64: Final = -(2**63)

NAME_PATTERN: Final = NAME_RE.pattern
"""Ids of jobs, campaigns, artifacts: 1-64 of ``A-Za-z0-9_.-``, starting alphanumeric."""
VIN_PATTERN: Final = r"^[A-HJ-NPR-Z0-9]{17}$"
UUID_PATTERN: Final = r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$"
SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"


class FleetModel(BaseModel):
    """Base of every fleetgate message: frozen, no unknown fields, strict, finite numbers."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,
        allow_inf_nan=False,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
    )


class JsonPathError(ValueError):
    """A problem at ``path`` inside a JSON value; :mod:`schemas.codec` shows the full path."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


EpochMs = Annotated[int, Field(ge=0, le=MAX_EPOCH_MS, description="Unix epoch milliseconds")]
NonNegInt = Annotated[int, Field(ge=0, le=MAX_INT64)]
Version = Annotated[int, Field(ge=0, le=MAX_INT64, description="Document version")]

VinStr = Annotated[
    str,
    AfterValidator(validate_vin),
    Field(json_schema_extra={"pattern": VIN_PATTERN, "minLength": 17, "maxLength": 17}),
]
"""A VIN; the error says which character or length is wrong."""
AppIdStr = Annotated[
    str,
    AfterValidator(validate_app_id),
    Field(json_schema_extra={"pattern": NAME_PATTERN, "minLength": 1, "maxLength": 64}),
]
SafeId = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""A job id, campaign id or artifact name."""
CommandId = Annotated[
    str,
    StringConstraints(pattern=UUID_PATTERN),
    AfterValidator(str.lower),
    Field(json_schema_extra={"format": "uuid"}),
]
"""A UUID; accepted in any case, kept in canonical lowercase (as in the topics)."""
Sha256Hex = Annotated[str, StringConstraints(pattern=SHA256_PATTERN)]
"""A SHA-256 digest: 64 lowercase hex digits."""
ShortText = Annotated[str, StringConstraints(max_length=1024)]


# --------------------------------------------------------------------------------------------
# free-form JSON with limits (command params, shadow state, details)


def check_json(
    value: JsonValue,
    *,
    max_depth: int,
    max_nodes: int,
    max_string: int = 4096,
    max_key: int = 128,
) -> JsonValue:
    """Return ``value`` if it is finite JSON within the limits, else raise JsonPathError.

    Depth counts nested objects/arrays below the top; nodes count every value.
    """
    nodes = 0
    stack: list[tuple[tuple[str | int, ...], JsonValue, int]] = [((), value, 0)]
    while stack:
        path, item, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            raise JsonPathError((), f"more than {max_nodes} values")
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise JsonPathError(path, "value is not finite")
        elif isinstance(item, int):
            if not MIN_INT64 <= item <= MAX_INT64:
                raise JsonPathError(path, "integer out of 64-bit range")
        elif isinstance(item, str):
            if len(item) > max_string:
                raise JsonPathError(path, f"string longer than {max_string} characters")
        elif isinstance(item, dict):
            if depth >= max_depth and item:
                raise JsonPathError(path, f"nested deeper than {max_depth} levels")
            for key, child in item.items():
                if not key or len(key) > max_key:
                    raise JsonPathError(path, f"key {key[:40]!r} must be 1-{max_key} characters")
                stack.append(((*path, key), child, depth + 1))
        elif isinstance(item, list):
            if depth >= max_depth and item:
                raise JsonPathError(path, f"nested deeper than {max_depth} levels")
            for i, child in enumerate(item):
                stack.append(((*path, i), child, depth + 1))
    return value


def json_object_checker(
    *, max_depth: int, max_nodes: int
) -> Callable[[dict[str, JsonValue]], dict[str, JsonValue]]:
    def check(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        check_json(value, max_depth=max_depth, max_nodes=max_nodes)
        return value

    return check


def json_value_checker(*, max_depth: int, max_nodes: int) -> Callable[[JsonValue], JsonValue]:
    def check(value: JsonValue) -> JsonValue:
        return check_json(value, max_depth=max_depth, max_nodes=max_nodes)

    return check


Detail = Annotated[
    JsonValue,
    AfterValidator(json_value_checker(max_depth=4, max_nodes=256)),
    WithJsonSchema({"description": "Free-form JSON (usually a string), at most 4 levels deep"}),
]
"""A result's or status' ``detail``: any JSON (usually a string), small."""


def json_object_schema(description: str) -> dict[str, Any]:
    return {"type": "object", "description": description}
