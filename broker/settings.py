"""Settings of ``fleetgate broker`` (env ``FLEETGATE_BROKER__...``), validated once at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from fleetgate.settings import CommonSettings

BrokerKind = Literal["amqtt", "mosquitto"]


class BrokerOptions(BaseModel):
    """One MQTT broker: where it listens and the limits that keep its memory bounded."""

    kind: BrokerKind = Field(default="amqtt", description="embedded amqtt or Debian's Mosquitto")
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8883, ge=0, le=65535, description="0: any free port")
    max_connections: int = Field(
        default=15_000, ge=1, le=1_000_000, description="open TLS connections (more are refused)"
    )
    max_pending: int = Field(
        default=512, ge=1, le=100_000, description="connections still in the TLS handshake"
    )
    max_packet_size: int = Field(
        default=1_048_576, ge=1024, le=268_435_455, description="largest MQTT packet, bytes"
    )
    max_inflight: int = Field(
        default=100, ge=1, le=65_535, description="QoS 1/2 messages in flight to one client"
    )
    max_queued: int = Field(
        default=10_000, ge=1, le=10_000_000, description="messages queued for one client"
    )
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=365 * 24 * 3600,
        description="a disconnected persistent session (and its queue) is dropped after this",
    )
    handshake_timeout_s: float = Field(default=10.0, gt=0, le=300)
    connect_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="from TLS up to the CONNECT packet"
    )
    crl_poll_s: float = Field(
        default=2.0, gt=0, le=60, description="how often pki/crl.pem is checked for changes"
    )
    mosquitto_bin: Path = Path("/usr/sbin/mosquitto")
    dynsec_plugin: Path = Path("/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so")
    admin_service: str = Field(
        default="broker-admin",
        description="service certificate the Mosquitto supervisor uses for dynamic security",
    )

    @model_validator(mode="after")
    def _pending_within_connections(self) -> BrokerOptions:
        if self.max_pending > self.max_connections:
            self.max_pending = self.max_connections
        return self


class BrokerSettings(CommonSettings):
    """``$FLEETGATE_HOME`` (PKI under ``pki/``, Mosquitto files under ``mosquitto/``) + broker."""

    broker: BrokerOptions = Field(default_factory=BrokerOptions)
