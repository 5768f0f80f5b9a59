"""What every agent does with a Faust event before the service sees it. Thin."""

from __future__ import annotations

from typing import Any

from fleetgate.logs import get_logger
from processors.ports import Ack
from processors.records import Incoming, RecordError, incoming

_log = get_logger(__name__)


def ack_of(app: Any, event: Any) -> Ack:
    """Acknowledge ``event`` later (its offset can then be committed)."""
    message = event.message

    def ack() -> None:
        if event.ack():
            app.sensors.on_message_out(message.tp, message.offset, message)

    return ack


def meta_of(event: Any, *, identify: bool = True) -> Incoming | None:
    """The record's VIN and gateway headers; None (logged) for a record without a VIN key."""
    message = event.message
    try:
        return incoming(
            key=message.key,
            headers=message.headers,
            timestamp_ms=int((message.timestamp or 0) * 1000),
            identify=identify,
        )
    except RecordError as exc:
        _log.warning("record skipped", topic=message.topic, offset=message.offset, reason=str(exc))
        return None


def skip(event: Any, ack: Ack, reason: str, **context: object) -> None:
    """Log and acknowledge a record that cannot be processed (it would fail every time)."""
    message = event.message
    _log.warning(
        "record skipped",
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        reason=reason,
        **context,
    )
    ack()
