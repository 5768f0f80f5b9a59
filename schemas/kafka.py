"""Kafka topic names and record header names. Pure. Import from :mod:`schemas.topics`.

Every record's key is the VIN (for app messages: the VIN the message is about).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from schemas.topic_kinds import TopicError, TopicKind

_KAFKA_NAME_RE: Final = re.compile(r"[A-Za-z0-9._-]*")

# Kafka header names (aiokafka/faust take str keys and bytes values). Key = VIN everywhere.
HEADER_MESSAGE_ID: Final = "fg-message-id"
"""A unique id of the record (UUID text), for idempotence and tracing."""
HEADER_RECEIVED_AT: Final = "fg-received-at"
"""When the gateway received the MQTT message: epoch milliseconds as ASCII decimal."""
HEADER_SENDER: Final = "fg-sender"
"""Who published it: ``str(Identity)``, e.g. ``vehicle:<VIN>`` or ``app:<id>``."""
HEADER_SOURCE_TOPIC: Final = "fg-mqtt-topic"
"""The MQTT topic the uplink message came from."""
HEADER_TARGET_TOPIC: Final = "fg-target-topic"
"""Outbound records: the MQTT topic the gateway publishes the value to."""
HEADER_QOS: Final = "fg-qos"
"""Outbound records: MQTT QoS ``0``, ``1`` or ``2`` as ASCII (default 1)."""
HEADER_RETAIN: Final = "fg-retain"
"""Outbound records: ``1`` to publish retained (absent or ``0``: not retained)."""
HEADER_REJECT_REASON: Final = "fg-reject-reason"
"""Dead letters: why the message was rejected (UTF-8, one line)."""


@dataclass(frozen=True, slots=True)
class KafkaTopics:
    """Names of every Kafka topic, all under one ``prefix`` (tests use a unique prefix)."""

    prefix: str = "fleetgate."

    def __post_init__(self) -> None:
        if not _KAFKA_NAME_RE.fullmatch(self.prefix) or len(self.prefix) > 200:
            raise TopicError(
                f"Kafka topic prefix {self.prefix!r} must be at most 200 of A-Z a-z 0-9 . _ -"
            )

    # uplink, produced by the gateway
    @property
    def telemetry(self) -> str:
        return f"{self.prefix}telemetry"

    @property
    def shadow_reported(self) -> str:
        return f"{self.prefix}shadow.reported"

    @property
    def command_results(self) -> str:
        return f"{self.prefix}command.results"

    @property
    def ota_status(self) -> str:
        return f"{self.prefix}ota.status"

    @property
    def ota_chunk_requests(self) -> str:
        return f"{self.prefix}ota.chunk.requests"

    @property
    def connectivity(self) -> str:
        return f"{self.prefix}connectivity"

    @property
    def command_requests(self) -> str:
        return f"{self.prefix}command.requests"

    @property
    def shadow_desired(self) -> str:
        return f"{self.prefix}shadow.desired"

    # downlink, produced by the processors, consumed by the gateway
    @property
    def outbound(self) -> str:
        return f"{self.prefix}outbound"

    # rejects, produced by the gateway
    @property
    def deadletter(self) -> str:
        return f"{self.prefix}deadletter"

    def for_uplink(self, kind: TopicKind) -> str:
        """The Kafka topic an uplink MQTT message of ``kind`` goes to."""
        name = _UPLINK_KAFKA.get(kind)
        if name is None:
            raise TopicError(f"{kind.value} is a downlink topic; it has no uplink Kafka topic")
        return f"{self.prefix}{name}"

    def all(self) -> tuple[str, ...]:
        """Every Kafka topic name (e.g. to create them)."""
        return (
            self.telemetry,
            self.shadow_reported,
            self.command_results,
            self.ota_status,
            self.ota_chunk_requests,
            self.connectivity,
            self.command_requests,
            self.shadow_desired,
            self.outbound,
            self.deadletter,
        )


_UPLINK_KAFKA: Final = {
    TopicKind.CONNECTION: "connectivity",
    TopicKind.TELEMETRY: "telemetry",
    TopicKind.SHADOW_REPORTED: "shadow.reported",
    TopicKind.COMMAND_RESULT: "command.results",
    TopicKind.OTA_STATUS: "ota.status",
    TopicKind.OTA_CHUNK_REQUEST: "ota.chunk.requests",
    TopicKind.APP_COMMAND: "command.requests",
    TopicKind.APP_SHADOW_DESIRED: "shadow.desired",
}
