"""Settings of ``fleetgate gateway``: env ``FLEETGATE_KAFKA__…``, ``FLEETGATE_MQTT__…`` and
``FLEETGATE_GATEWAY__…`` (e.g. ``FLEETGATE_GATEWAY__SHARED_GROUP=gateway``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator

from fleetgate.settings import CommonSettings, KafkaConnection, MqttConnection
from schemas.topics import TopicError, shared_subscription


class GatewayOptions(BaseModel):
    """How one gateway instance bridges MQTT and Kafka."""

    shared_group: str | None = Field(
        default=None,
        description=(
            "subscribe to uplink topics as $share/<group>/… so that instances split the load "
            "(Mosquitto, clustered brokers); unset: plain subscriptions (the embedded broker "
            "has no shared subscriptions: run one uplink instance)"
        ),
    )
    client_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="MQTT client id, stable across restarts (default: the certificate name)",
    )
    uplink: bool = Field(default=True, description="bridge MQTT uplink topics to Kafka")
    downlink: bool = Field(default=True, description="bridge the Kafka outbound topic to MQTT")
    max_inflight: int = Field(
        default=2000,
        ge=1,
        le=1_000_000,
        description="uplink messages received and not yet acknowledged by Kafka; at the bound "
        "the gateway stops reading from the broker until Kafka catches up",
    )
    downlink_max_inflight: int = Field(
        default=2000,
        ge=1,
        le=1_000_000,
        description="outbound records published and not yet acknowledged by the broker",
    )
    consumer_group: str = Field(
        default="fleetgate-gateway", min_length=1, description="Kafka group of the outbound loop"
    )
    linger_ms: int = Field(
        default=0,
        ge=0,
        le=1000,
        description="Kafka producer linger (records are batched per partition anyway)",
    )
    request_timeout_ms: int = Field(
        default=30_000,
        ge=1000,
        le=600_000,
        description="Kafka request timeout; also how long a batch waits for a partition leader "
        "before the producer is replaced and the batch re-sent",
    )
    fetch_max_wait_ms: int = Field(
        default=50,
        ge=1,
        le=5000,
        description="Kafka consumer fetch wait. Long polling returns as soon as a record "
        "arrives, so this bounds idle polling, not command latency (measured: 10 ms costs "
        "~8% of a core idle, 100 ms ~1.4%, same outbound->vehicle latency)",
    )
    commit_interval_ms: int = Field(default=100, ge=1, le=60_000)
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    keepalive_s: int = Field(default=60, ge=5, le=3600)
    session_expiry_s: int = Field(
        default=7 * 24 * 3600, ge=60, description="MQTT 5: how long the broker keeps our session"
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(
        default=9464, ge=0, le=65535, description="Prometheus /metrics (0: any free port)"
    )
    metrics: bool = Field(default=True, description="serve /metrics")
    ensure_topics: bool = Field(
        default=True, description="create the Kafka topics at start if they do not exist"
    )

    @field_validator("shared_group")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            shared_subscription("a", value)
        except TopicError as exc:
            raise ValueError(str(exc)) from None
        return value


class GatewaySettings(CommonSettings):
    """The gateway's one settings object (validated once at start)."""

    kafka: KafkaConnection = Field(default_factory=KafkaConnection)
    mqtt: MqttConnection = Field(default_factory=MqttConnection)
    gateway: GatewayOptions = Field(default_factory=GatewayOptions)

    @property
    def client_id(self) -> str:
        return self.gateway.client_id or self.mqtt.client_name
