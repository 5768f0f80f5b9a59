"""The command agent: app requests, vehicle results and connectivity, keyed by VIN."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from processors.agents_common import ack_of, meta_of, skip
from schemas.codec import PayloadError, decode_uplink
from schemas.commands import CommandRequest, CommandResult
from schemas.connectivity import ConnectivityEvent
from schemas.topics import KafkaTopics, TopicKind


async def handle(app: Any, topics: KafkaTopics, event: Any) -> None:
    """Hand one record to the command service (which acknowledges it when done)."""
    service = app.runtime.commands
    ack = ack_of(app, event)
    meta = meta_of(event)
    if meta is None:
        ack()
        return
    message = event.message
    partition = message.partition
    try:
        if message.topic == topics.command_requests:
            request = decode_uplink(TopicKind.APP_COMMAND, event.value)
            assert isinstance(request, CommandRequest)
            if request.vin != meta.vin:
                skip(event, ack, "the record key is not the request's VIN", vin=meta.vin)
                return
            await service.on_request(meta=meta, partition=partition, request=request, ack=ack)
        elif message.topic == topics.command_results:
            result = decode_uplink(TopicKind.COMMAND_RESULT, event.value)
            assert isinstance(result, CommandResult)
            source = meta.source
            if source is None or source.command_id is None or source.vin != meta.vin:
                skip(event, ack, "result without its command topic header", vin=meta.vin)
                return
            await service.on_result(
                meta=meta,
                partition=partition,
                command_id=source.command_id,
                result=result,
                ack=ack,
            )
        else:
            change = ConnectivityEvent.model_validate_json(event.value)
            await service.on_connectivity(meta=meta, partition=partition, event=change, ack=ack)
    except (PayloadError, ValueError) as exc:
        skip(event, ack, str(exc), vin=meta.vin)


if TYPE_CHECKING:
    from processors.app import ProcessorApp


def register(app: ProcessorApp, channel: Any, topics: KafkaTopics) -> Any:
    @app.agent(channel, name="commands")
    async def command_agent(stream: Any) -> None:
        async for event in stream.noack().events():
            await handle(app, topics, event)

    return command_agent
