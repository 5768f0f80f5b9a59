"""A simulated vehicle inside a worker: its state (:class:`SimVehicle`) and what it does with
messages, independent of how it connects (:class:`Onboard`): publish now or keep for later,
report shadow changes, answer commands and desired state, hand OTA messages to its client.
"""

from __future__ import annotations

import asyncio
import random
import time

from pydantic import JsonValue

from schemas.topic_kinds import TopicError, TopicKind
from schemas.topics import MqttTopics, parse_topic
from simulator import drive
from simulator.client import MqttConnection, Session
from simulator.codec import Publish, encode_topic, publish_header
from simulator.ota import OtaClient, OtaMessage, RecordingOtaClient
from simulator.stats import Stats
from simulator.vehicle import (
    CommandDecision,
    CommandPolicy,
    Link,
    apply_desired,
    changed_part,
    decide_command,
    initial_reported,
    merge_state,
    reported_payload,
    result_payload,
)

OUTBOX = 32
"""Messages (command results, reports) a vehicle keeps while offline."""
RECENT_COMMANDS = 8
QOS1 = publish_header("-", qos=1)[0]


def ms() -> int:
    return int(time.time() * 1000)


class SimVehicle:
    """One vehicle's state in a worker (slots: a vehicle costs little)."""

    __slots__ = (
        "attempts",
        "conn",
        "desired_version",
        "drive",
        "dropping",
        "ever_online",
        "last_t",
        "link",
        "model",
        "number",
        "ota",
        "outbox",
        "recent",
        "report_version",
        "reported",
        "route",
        "seq",
        "session",
        "telemetry_field",
        "vin",
    )

    def __init__(self, number: int, vin: str, state: drive.DriveState) -> None:
        self.number = number
        self.vin = vin
        self.model = drive.model_of(number)
        self.route = drive.make_route(number)
        self.drive = state
        self.seq = 0
        self.reported: dict[str, JsonValue] = initial_reported(number, self.model, state.phase)
        self.report_version = 0
        self.desired_version: int | None = None
        self.link = Link.IDLE
        self.attempts = 0
        self.conn: MqttConnection | None = None
        self.session = Session()
        self.last_t = 0.0
        self.recent: tuple[str, ...] = ()
        self.ota: OtaClient | None = None
        self.outbox: list[tuple[str, bytes, str]] = []
        self.dropping = False
        self.ever_online = False
        self.telemetry_field = encode_topic(MqttTopics.telemetry(vin))


class Onboard:
    """Message handling of a worker's vehicles (one instance per worker)."""

    def __init__(self, *, stats: Stats, rng: random.Random, commands: CommandPolicy) -> None:
        self.stats = stats
        self.rng = rng
        self.commands = commands
        self.pending_answers = 0
        """Command results scheduled but not yet published."""

    def report(self, v: SimVehicle, patch: dict[str, JsonValue]) -> None:
        changes = changed_part(v.reported, patch)
        if not changes:
            return
        v.reported = merge_state(v.reported, changes)
        v.report_version += 1
        payload = reported_payload(changes, v.report_version)
        self.publish(v, MqttTopics.shadow_reported(v.vin), payload, "shadow_reported")

    def publish(self, v: SimVehicle, topic: str, payload: bytes, kind: str) -> None:
        """QoS 1 now, or from the outbox after the next connect."""
        if v.conn is None or v.link is not Link.ONLINE:
            if len(v.outbox) >= OUTBOX:
                v.outbox.pop(0)
                self.stats.error("outbox_full")
            v.outbox.append((topic, payload, kind))
            return
        if v.conn.publish(QOS1, encode_topic(topic), payload, kind=kind) and (
            kind == "command_result"
        ):
            self.stats.counts["commands_answered"] += 1

    def on_publish(self, v: SimVehicle, packet: Publish) -> None:
        try:
            topic = parse_topic(packet.topic)
        except TopicError:
            self.stats.error("unknown_downlink")
            return
        if topic.vin != v.vin:
            self.stats.error("foreign_downlink")
            return
        kind = topic.kind
        if kind is TopicKind.COMMAND and topic.command_id is not None:
            self._on_command(v, topic.command_id, packet.payload)
        elif kind is TopicKind.SHADOW_DESIRED:
            self._on_desired(v, packet.payload)
        elif kind is TopicKind.OTA_JOB:
            self.stats.counts["ota_jobs"] += 1
            v.ota = v.ota or RecordingOtaClient()
            self.ota_out(v, v.ota.on_job(packet.payload, now_ms=ms()))
        elif kind is TopicKind.OTA_CHUNK and topic.job_id is not None and topic.index is not None:
            self.stats.counts["ota_chunks"] += 1
            v.ota = v.ota or RecordingOtaClient()
            self.ota_out(v, v.ota.on_chunk(topic.job_id, topic.index, packet.payload, now_ms=ms()))
        elif kind is TopicKind.ERRORS:
            self.stats.error("uplink_rejected")
        else:
            self.stats.error("unexpected_downlink")

    def _on_command(self, v: SimVehicle, command_id: str, payload: bytes) -> None:
        if command_id in v.recent:
            self.stats.counts["commands_duplicate"] += 1
            return
        v.recent = (*v.recent[-(RECENT_COMMANDS - 1) :], command_id)
        self.stats.counts["commands_received"] += 1
        decision = decide_command(
            payload, now_ms=ms(), reported=v.reported, policy=self.commands, rng=self.rng
        )
        if decision.expired:
            self.stats.counts["commands_expired"] += 1
        if decision.status is None:
            return
        self.pending_answers += 1
        asyncio.get_running_loop().call_later(
            decision.delay_s, self._answer, v, command_id, decision
        )

    def _answer(self, v: SimVehicle, command_id: str, decision: CommandDecision) -> None:
        self.pending_answers -= 1
        assert decision.status is not None
        payload = result_payload(decision.status, decision.detail)
        self.publish(v, MqttTopics.command_result(v.vin, command_id), payload, "command_result")
        if decision.changes:
            self.report(v, decision.changes)

    def _on_desired(self, v: SimVehicle, payload: bytes) -> None:
        self.stats.counts["desired_received"] += 1
        outcome = apply_desired(v.reported, payload, last_version=v.desired_version)
        if not outcome.applied:
            if outcome.reason != "stale":
                self.stats.error("invalid_desired")
            return
        self.stats.counts["desired_applied"] += 1
        v.desired_version = outcome.version
        v.reported = outcome.reported
        v.report_version += 1
        payload = reported_payload(outcome.changes, v.report_version)
        self.publish(v, MqttTopics.shadow_reported(v.vin), payload, "shadow_reported")

    def ota_out(self, v: SimVehicle, messages: list[OtaMessage]) -> None:
        for message in messages:
            if message.kind is TopicKind.OTA_STATUS:
                topic = MqttTopics.ota_status(v.vin)
            else:
                topic = MqttTopics.ota_chunk_request(v.vin)
            self.publish(v, topic, message.payload, message.kind.value)
