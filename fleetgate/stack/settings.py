"""``StackSettings``: the one settings object of ``fleetgate up|down|status``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from fleetgate.settings import CassandraConnection, CommonSettings, KafkaConnection, default_cache

BrokerKind = Literal["amqtt", "mosquitto"]


class StackSettings(CommonSettings):
    """Where the local stack listens and how big it is (env ``FLEETGATE_<FIELD>``)."""

    host: str = "127.0.0.1"
    broker_kind: BrokerKind = "amqtt"
    broker_port: int = Field(default=8883, ge=1, le=65535)
    kafka_port: int = Field(default=9092, ge=1, le=65535)
    kafka_controller_port: int = Field(default=9093, ge=1, le=65535)
    cassandra_port: int = Field(default=9042, ge=1, le=65535)
    cassandra_storage_port: int = Field(default=7000, ge=1, le=65535)
    gateway_metrics_port: int = Field(default=9464, ge=1, le=65535)
    processors_metrics_port: int = Field(
        default=9465, ge=1, le=65535, description="/metrics of the commands worker"
    )
    processors_state_metrics_port: int = Field(
        default=9466, ge=1, le=65535, description="/metrics of the state worker"
    )
    kafka_heap_mb: int = Field(default=512, ge=128, le=8192)
    cassandra_heap_mb: int = Field(default=1024, ge=256, le=8192)
    cassandra_full_jit: bool = Field(
        default=False,
        description="compile with C2 too (faster after minutes of warm-up; its compiler "
        "threads take most of a core meanwhile): for a long-lived node on a bigger machine",
    )
    kafka_full_jit: bool = Field(
        default=False,
        description="compile Kafka with C2 too (same trade as cassandra_full_jit)",
    )
    cache_dir: Path = Field(default_factory=default_cache)
    start_timeout_s: float = Field(default=240.0, gt=0)
    vehicles: int = Field(default=10, ge=0, le=1_000_000, description="demo fleet size")
    kafka: KafkaConnection = Field(default_factory=KafkaConnection)
    cassandra: CassandraConnection = Field(default_factory=CassandraConnection)

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def run_file(self) -> Path:
        return self.home / "run" / "stack.json"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"
