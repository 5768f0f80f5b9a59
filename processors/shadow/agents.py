"""The shadow agent: reported and desired state and connectivity, keyed by VIN."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from processors.agents_common import ack_of, meta_of, skip
from schemas.codec import PayloadError, decode_uplink
from schemas.connectivity import ConnectivityEvent
from schemas.shadow import AppShadowDesired, ShadowReported
from schemas.topics import KafkaTopics, TopicKind


async def handle(app: Any, topics: KafkaTopics, event: Any) -> None:
    """Hand one record to the shadow service (which acknowledges it once stored)."""
    service = app.runtime.shadow
    ack = ack_of(app, event)
    meta = meta_of(event)
    if meta is None:
        ack()
        return
    message = event.message
    try:
        if message.topic == topics.shadow_reported:
            update = decode_uplink(TopicKind.SHADOW_REPORTED, event.value)
            assert isinstance(update, ShadowReported)
            await service.on_reported(
                meta=meta, partition=message.partition, update=update, ack=ack
            )
        elif message.topic == topics.shadow_desired:
            desired = decode_uplink(TopicKind.APP_SHADOW_DESIRED, event.value)
            assert isinstance(desired, AppShadowDesired)
            await service.on_desired(
                meta=meta, partition=message.partition, update=desired, ack=ack
            )
        else:
            change = ConnectivityEvent.model_validate_json(event.value)
            await service.on_connectivity(
                meta=meta, partition=message.partition, event=change, ack=ack
            )
    except (PayloadError, ValueError) as exc:
        skip(event, ack, str(exc), vin=meta.vin)


if TYPE_CHECKING:
    from processors.app import ProcessorApp


def register(app: ProcessorApp, channel: Any, topics: KafkaTopics) -> Any:
    @app.agent(channel, name="shadow")
    async def shadow_agent(stream: Any) -> None:
        async for event in stream.noack().events():
            await handle(app, topics, event)

    return shadow_agent
