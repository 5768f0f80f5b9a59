"""Rejections: ``vehicles/<VIN>/errors`` (and ``apps/<id>/errors``) and Kafka dead letters. Pure.

(These are message models; :mod:`fleetgate.errors` holds the CLI's exception classes.)
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Final

from pydantic import AfterValidator, Field, StringConstraints

from schemas.base import EpochMs, FleetModel

MAX_REASON: Final = 1024
"""Longest reason text (a longer one is cut by :func:`short_reason`)."""

Reason = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REASON)]
TopicText = Annotated[str, StringConstraints(max_length=65535)]


def short_reason(reason: str) -> str:
    """One line of at most :data:`MAX_REASON` characters, for ErrorNotice and DeadLetter."""
    line = " ".join(reason.split()) or "rejected"
    return line if len(line) <= MAX_REASON else line[: MAX_REASON - 3] + "..."


class ErrorNotice(FleetModel):
    """``{"topic": …, "reason": …}``: the uplink message on ``topic`` was rejected."""

    topic: TopicText
    reason: Reason
    ts: EpochMs | None = None


def _check_base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    return value


Base64 = Annotated[
    str, AfterValidator(_check_base64), Field(json_schema_extra={"contentEncoding": "base64"})
]


class DeadLetter(FleetModel):
    """Kafka record on the ``deadletter`` topic (key = the sender's VIN, or app id): a rejected
    uplink message, kept whole for inspection and replay."""

    reason: Reason
    topic: TopicText
    """The MQTT topic it was published on."""
    sender: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    """``str(Identity)`` of the publisher, e.g. ``vehicle:<VIN>`` or ``app:<id>``."""
    payload: Base64
    """The original payload, base64."""
    received_at: EpochMs

    @classmethod
    def of(
        cls, *, reason: str, topic: str, sender: str, payload: bytes, received_at: int
    ) -> DeadLetter:
        """Build one from the raw payload (encodes it; shortens the reason to one line)."""
        return cls(
            reason=short_reason(reason),
            topic=topic,
            sender=sender,
            payload=base64.b64encode(payload).decode("ascii"),
            received_at=received_at,
        )

    def payload_bytes(self) -> bytes:
        """The original payload."""
        return base64.b64decode(self.payload)
