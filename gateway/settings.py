"""Settings of ``fleetgate gateway``: env ``FLEETGATE_KAFKA__…``, ``FLEETGATE_MQTT__…`` and
``FLEETGATE_GATEWAY__…`` (e.g. ``FLEETGATE_GATEWAY__SHARED_GROUP=gateway``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from fleetgate.settings import CommonSettings, KafkaConnection, MqttConnection
from schemas.topics import TopicError, shared_subscription


class GatewayOptions(BaseModel):
    """How one gateway instance bridges MQTT and Kafka."""

    slices: int = Field(
        default=1,
        ge=1,
        le=1024,
        description=(
            "uplink instances that split the fleet by sender (VIN or app id): each subscribes "
            "to every uplink topic and keeps the senders of its slice, so one instance owns a "
            "vehicle and per-VIN order holds with any broker; run one instance per slice"
        ),
    )
    slice: int = Field(default=0, ge=0, description="this instance's slice, 0 … slices-1")
    shared_group: str | None = Field(
        default=None,
        description=(
            "subscribe to uplink topics as $share/<group>/… so that instances split the load; "
            "only for brokers that hand a topic's messages to one member (EMQX "
            "shared_subscription_strategy=hash_topic or sticky): Mosquitto deals them round "
            "robin, which breaks per-VIN order (use slices there)"
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
        default=200,
        ge=1,
        le=5000,
        description="Kafka consumer fetch wait. Long polling returns as soon as a record "
        "arrives on any partition (fleetgate.kafka_fetch: no partition is left out of a poll "
        "while its records are handed out), so this bounds idle polling, not command latency",
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

    @model_validator(mode="after")
    def _check_slices(self) -> GatewayOptions:
        if self.slice >= self.slices:
            raise ValueError(
                f"slice {self.slice} does not exist (FLEETGATE_GATEWAY__SLICE, --slice K/N): "
                f"with {self.slices} slices they are 0 … {self.slices - 1}"
            )
        if self.slices > 1 and self.shared_group:
            raise ValueError(
                "slices and shared_group do not combine: a shared subscription already splits "
                "the load (with a per-topic strategy) and would deal a slice's vehicles to "
                "other instances"
            )
        return self


class GatewaySettings(CommonSettings):
    """The gateway's one settings object (validated once at start)."""

    kafka: KafkaConnection = Field(default_factory=KafkaConnection)
    mqtt: MqttConnection = Field(default_factory=MqttConnection)
    gateway: GatewayOptions = Field(default_factory=GatewayOptions)

    @property
    def certificate_name(self) -> str:
        """The service certificate (under pki/services/) this instance connects with: slice k
        of several uses ``<client_name>-<k>`` unless a name is set, as each slice needs a
        session (client id) of its own at the broker."""
        if self.gateway.slices > 1 and "client_name" not in self.mqtt.model_fields_set:
            return f"{self.mqtt.client_name}-{self.gateway.slice}"
        return self.mqtt.client_name

    @property
    def client_id(self) -> str:
        return self.gateway.client_id or self.certificate_name
