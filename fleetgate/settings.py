"""Settings shared by the services: connection blocks and the common base.

Each service defines exactly one ``BaseSettings`` subclass (prefix ``FLEETGATE_``, nested
fields with ``__``, e.g. ``FLEETGATE_KAFKA__BOOTSTRAP``) built from these blocks, and
validates it once at start.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


def default_home() -> Path:
    return Path(".fleetgate")


def default_cache() -> Path:
    return Path.home() / ".cache" / "fleetgate"


class KafkaConnection(BaseModel):
    """How to reach Kafka and how the project's topics are named and sized."""

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = Field(
        default="fleetgate.", description="prefix of every Kafka topic (isolates tests, tenants)"
    )
    partitions: int = Field(default=12, ge=1, le=10_000)
    replication_factor: int = Field(default=1, ge=1, le=7)


class CassandraConnection(BaseModel):
    """How to reach Cassandra, and how the keyspace is replicated."""

    hosts: Annotated[list[str], NoDecode] = ["127.0.0.1"]
    port: int = Field(default=9042, ge=1, le=65535)
    keyspace: str = Field(default="fleetgate", pattern=r"^[a-z][a-z0-9_]{0,47}$")
    replication: Literal["simple", "network"] = "simple"
    replication_factor: int = Field(default=1, ge=1, le=7)
    datacenters: dict[str, int] = Field(
        default_factory=dict, description="NetworkTopologyStrategy: datacenter -> replicas"
    )
    local_dc: str | None = None

    @field_validator("hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):  # a JSON list, as pydantic-settings writes lists
                return json.loads(text)
            return [h.strip() for h in text.split(",") if h.strip()]
        return value


class MqttConnection(BaseModel):
    """How a service connects to the MQTT broker (mutual TLS with a service certificate)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8883, ge=1, le=65535)
    client_name: str = Field(default="gateway", description="service certificate name under pki/")


class CommonSettings(BaseSettings):
    """Fields every service has: where its files are and how it logs."""

    model_config = SettingsConfigDict(
        env_prefix="FLEETGATE_", env_nested_delimiter="__", extra="ignore"
    )

    home: Path = Field(default_factory=default_home)
    log_level: str = "INFO"
    log_format: Literal["console", "json", "auto"] = "auto"

    @property
    def pki_dir(self) -> Path:
        return self.home / "pki"


def load_settings(cls: type[S], **overrides: Any) -> S:
    """Build and validate a service's settings once at start; a bad value is one line."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from fleetgate.errors import UserError

    try:
        return cls(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        env = "FLEETGATE_" + "__".join(str(p).upper() for p in first["loc"])
        raise UserError(f"invalid setting {where} ({env}): {first['msg']}") from None
    except SettingsError as exc:  # e.g. a list or map variable that is not valid JSON
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise UserError(f"{exc}{cause}") from None
