"""Telemetry: ``vehicles/<VIN>/telemetry``. Pure."""

from __future__ import annotations

import math
from typing import Annotated, Final

from pydantic import AfterValidator, Field, SkipValidation, StringConstraints, WithJsonSchema

from schemas.base import MAX_INT64, MIN_INT64, EpochMs, FleetModel, JsonPathError, NonNegInt

MAX_SIGNALS: Final = 256
"""Most signals in one telemetry message."""
MAX_SIGNAL_STRING: Final = 256
"""Longest string value of a signal."""
SIGNAL_NAME_PATTERN: Final = r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$"
"""A signal name: a letter, then up to 63 of ``A-Za-z0-9_.-`` (e.g. ``speed``, ``hv.soc``)."""

SignalName = Annotated[str, StringConstraints(pattern=SIGNAL_NAME_PATTERN)]
SignalValue = Annotated[
    SkipValidation[bool | int | float | str],
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "boolean"},
                {"type": "integer", "minimum": MIN_INT64, "maximum": MAX_INT64},
                {"type": "number"},
                {"type": "string", "maxLength": MAX_SIGNAL_STRING},
            ],
            "description": "A finite number, a string or a boolean",
        }
    ),
]


def check_signals(
    signals: dict[str, bool | int | float | str],
) -> dict[str, bool | int | float | str]:
    """Every value a finite number, an int64, a short string or a boolean (one pass, no copy)."""
    for name, value in signals.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise JsonPathError((name,), "value is not finite")
        elif isinstance(value, int):
            if not MIN_INT64 <= value <= MAX_INT64:
                raise JsonPathError((name,), "integer out of 64-bit range")
        elif isinstance(value, str):
            if len(value) > MAX_SIGNAL_STRING:
                raise JsonPathError((name,), f"string longer than {MAX_SIGNAL_STRING} characters")
        else:
            raise JsonPathError((name,), "must be a number, a string or a boolean")
    return signals


class Telemetry(FleetModel):
    """``{"ts": <epoch ms>, "seq": <int>, "signals": {"<name>": number | string | bool}}``.

    ``seq`` counts the vehicle's telemetry messages (it may restart at 0 after a reboot).
    """

    ts: EpochMs
    seq: NonNegInt
    signals: Annotated[
        dict[SignalName, SignalValue],
        Field(max_length=MAX_SIGNALS, json_schema_extra={"additionalProperties": False}),
        AfterValidator(check_signals),
    ]
