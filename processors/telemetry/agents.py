"""The telemetry agent: sequence bookkeeping and metrics per vehicle, then the signals into
the vehicle's shadow (``reported.telemetry``); the record is acknowledged by the shadow
service once the shadow holding it is stored."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from processors.agents_common import ack_of, meta_of, skip
from schemas.codec import PayloadError, decode_uplink
from schemas.telemetry import Telemetry
from schemas.topics import TopicKind


async def handle(app: Any, event: Any) -> None:
    ack = ack_of(app, event)
    meta = meta_of(event, identify=False)
    if meta is None:
        ack()
        return
    try:
        message = decode_uplink(TopicKind.TELEMETRY, event.value)
    except PayloadError as exc:
        skip(event, ack, str(exc), vin=meta.vin)
        return
    assert isinstance(message, Telemetry)
    runtime = app.runtime
    lag_s = time.time() - meta.received_at / 1000
    runtime.telemetry.on_telemetry(vin=meta.vin, message=message, lag_s=lag_s)
    await runtime.shadow.on_telemetry(
        meta=meta, partition=event.message.partition, message=message, ack=ack
    )


if TYPE_CHECKING:
    from processors.app import ProcessorApp


def register(app: ProcessorApp, channel: Any) -> Any:
    @app.agent(channel, name="telemetry")
    async def telemetry_agent(stream: Any) -> None:
        async for event in stream.noack().events():
            await handle(app, event)

    return telemetry_agent
