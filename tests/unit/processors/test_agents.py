"""The Faust agents with ``agent.test_context()`` (Faust has no in-memory broker): records as
the gateway writes them go in, the services (on in-memory ports) see decoded inputs, bad
records are skipped and acknowledged."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from fleetgate.settings import KafkaConnection
from processors.app import ProcessorApp, build_app
from processors.commands.service import CommandService
from processors.links import LinkCache
from processors.runtime import Runtime
from processors.settings import ProcessorSettings
from processors.shadow.logic import materialize
from processors.shadow.service import ShadowService
from processors.telemetry.service import TelemetryService
from schemas.ids import make_vin
from schemas.topics import (
    HEADER_MESSAGE_ID,
    HEADER_RECEIVED_AT,
    HEADER_SENDER,
    HEADER_SOURCE_TOPIC,
    KafkaTopics,
    MqttTopics,
)
from tests.unit.processors.fakes import (
    FakeClock,
    MemoryCommandStore,
    MemoryDirectory,
    MemoryOutbound,
    MemoryShadowStore,
)

pytestmark = pytest.mark.unit

VIN = make_vin(31)
APP = "app1"
PREFIX = "unit."
NAMES = KafkaTopics(PREFIX)


@pytest.fixture
async def app(tmp_path: Path) -> ProcessorApp:
    settings = ProcessorSettings(home=tmp_path, kafka=KafkaConnection(topic_prefix=PREFIX))
    app = build_app(settings=settings)
    clock = FakeClock(wall_ms=int(time.time() * 1000))
    directory = MemoryDirectory()
    directory.add(VIN, APP)
    outbound = MemoryOutbound()
    links = LinkCache(directory=directory, clock=clock, ttl_s=5)
    shadows = MemoryShadowStore()
    app.runtime = Runtime(
        shadow=ShadowService(
            store=shadows,
            directory=directory,
            links=links,
            outbound=outbound,
            clock=clock,
            interval_s=0.0,
        ),
        commands=CommandService(
            store=MemoryCommandStore(),
            shadows=shadows,
            directory=directory,
            links=links,
            outbound=outbound,
            clock=clock,
            result_grace_s=1.0,
        ),
        telemetry=TelemetryService(),
    )
    app.outbound = outbound  # type: ignore[attr-defined]
    return app


def headers(sender: str, topic: str) -> dict[str, bytes]:
    return {
        HEADER_MESSAGE_ID: uuid.uuid4().hex.encode(),
        HEADER_RECEIVED_AT: str(int(time.time() * 1000)).encode(),
        HEADER_SENDER: sender.encode(),
        HEADER_SOURCE_TOPIC: topic.encode(),
    }


async def put(
    agent: Any, topic: str, value: bytes, hdrs: dict[str, bytes], key: bytes = VIN.encode()
) -> Any:
    """Like ``agent.put`` but naming the Kafka topic (the agents dispatch on it)."""
    message = agent.to_message(key, value, offset=agent.sent_offset, headers=hdrs)
    message.topic = topic
    channel = agent.stream().channel
    event = await channel.decode(message)
    await channel.put(event)
    agent.sent_offset += 1
    return event


async def settle(app: ProcessorApp) -> None:
    for _ in range(3):
        await asyncio.sleep(0.02)
        await app.runtime.shadow.queue.join()
        await app.runtime.commands.queue.join()


async def test_command_agent_decodes_and_dispatches(app: ProcessorApp) -> None:
    outbound: MemoryOutbound = app.outbound  # type: ignore[attr-defined]
    command_agent = next(a for a in app.agents.values() if a.name == "commands")
    async with command_agent.test_context() as agent:
        conn = {"vin": VIN, "online": True, "ts": int(time.time() * 1000), "cause": "birth"}
        await put(
            agent,
            NAMES.connectivity,
            json.dumps(conn).encode(),
            headers(f"vehicle:{VIN}", MqttTopics.connection(VIN)),
        )
        cid = str(uuid.uuid4())
        request = {"command_id": cid, "vin": VIN, "name": "doors.lock", "ttl_s": 30}
        event = await put(
            agent,
            NAMES.command_requests,
            json.dumps(request).encode(),
            headers(f"app:{APP}", MqttTopics.app_commands(APP)),
        )
        await settle(app)
        assert event.message.acked
        assert MqttTopics.command(VIN, cid) in outbound.targets()
        result = {"status": "succeeded", "detail": None}
        await put(
            agent,
            NAMES.command_results,
            json.dumps(result).encode(),
            headers(f"vehicle:{VIN}", MqttTopics.command_result(VIN, cid)),
        )
        await settle(app)
        statuses = [s["status"] for s in outbound.to(MqttTopics.app_command_status(APP, cid))]
        assert statuses == ["accepted", "delivered", "succeeded"]
        # garbage is skipped, and acknowledged so that it never blocks the partition
        bad = await put(
            agent,
            NAMES.command_requests,
            b"{not json",
            headers(f"app:{APP}", MqttTopics.app_commands(APP)),
        )
        nokey = await put(agent, NAMES.command_results, b"{}", {}, key=b"")
        await settle(app)
        assert bad.message.acked
        assert nokey.message.acked


async def test_shadow_agent_acks_only_after_the_write(app: ProcessorApp) -> None:
    outbound: MemoryOutbound = app.outbound  # type: ignore[attr-defined]
    shadow_agent = next(a for a in app.agents.values() if a.name == "shadow")
    async with shadow_agent.test_context() as agent:
        report = {"state": {"cabin": {"temp": 20}}}
        event = await put(
            agent,
            NAMES.shadow_reported,
            json.dumps(report).encode(),
            headers(f"vehicle:{VIN}", MqttTopics.shadow_reported(VIN)),
        )
        await settle(app)
        assert not event.message.acked
        app.runtime.shadow.flush_due()
        await settle(app)
        assert event.message.acked
        desired = {"state": {"cabin": {"temp": 22}}, "version": 1}
        await put(
            agent,
            NAMES.shadow_desired,
            json.dumps(desired).encode(),
            headers(f"app:{APP}", MqttTopics.app_shadow_desired(APP, VIN)),
        )
        await settle(app)
        doc = outbound.to(MqttTopics.app_shadow(APP, VIN))[-1]
        assert doc["state"]["delta"] == {"cabin": {"temp": 22}}
        assert outbound.to(MqttTopics.shadow_desired(VIN))[-1]["version"] == 2


async def test_telemetry_agent_counts_gaps_and_fills_the_shadow(app: ProcessorApp) -> None:
    telemetry_agent = next(a for a in app.agents.values() if a.name == "telemetry")
    async with telemetry_agent.test_context() as agent:
        events = []
        for seq in (0, 1, 2, 5, 5):
            body = {"ts": 1000 + seq, "seq": seq, "signals": {"speed": 10.5 + seq, "hv.soc": 80}}
            events.append(
                await put(
                    agent,
                    NAMES.telemetry,
                    json.dumps(body).encode(),
                    headers(f"vehicle:{VIN}", MqttTopics.telemetry(VIN)),
                )
            )
        await settle(app)
        totals = app.runtime.telemetry.totals()
        assert (totals.received, totals.lost, totals.duplicates) == (5, 2, 1)
        assert events[-1].message.acked  # the duplicate changed nothing
        assert not events[0].message.acked  # the others wait for the shadow write
        app.runtime.shadow.flush_due()
        await settle(app)
        assert all(e.message.acked for e in events)
        shadow = app.runtime.shadow.shadow_of(VIN)
        assert materialize(shadow.reported)["telemetry"] == {"speed": 15.5, "hv.soc": 80}
