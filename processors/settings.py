"""Settings of the stream processors (``fleetgate processors``, ``fleetgate vehicles``).

Environment variables, e.g. ``FLEETGATE_KAFKA__BOOTSTRAP=10.0.0.5:9092``,
``FLEETGATE_KAFKA__TOPIC_PREFIX=fleetgate.``, ``FLEETGATE_CASSANDRA__HOSTS=10.0.0.7``,
``FLEETGATE_CASSANDRA__KEYSPACE=fleetgate``, and the tuning below under ``FLEETGATE_PROCESSORS__``
(e.g. ``FLEETGATE_PROCESSORS__SHADOW_WRITE_INTERVAL_S=0.5``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from fleetgate.settings import CassandraConnection, CommonSettings, KafkaConnection

Role = Literal["all", "commands", "state"]
ROLE_AGENTS: dict[str, tuple[str, ...]] = {
    "all": ("shadow", "commands", "telemetry"),
    "commands": ("commands",),
    "state": ("shadow", "telemetry"),
}
"""The agents each role runs."""
STATE_NICE = 10
"""The default niceness of a state worker: throughput work yields the CPU to commands."""


class ProcessorTuning(BaseModel):
    """How the processors trade latency, load and memory."""

    role: Role = Field(
        default="all",
        description="which agents this worker runs: all; commands (remote commands only: a "
        "telemetry surge cannot delay them); state (shadow and telemetry). Each role is its own "
        "Kafka consumer group, so run either 'all' workers or 'commands' + 'state' workers on "
        "one topic prefix, never both",
    )

    nice: int | None = Field(
        default=None,
        ge=0,
        le=19,
        description="CPU niceness of the worker, 0..19 (default: 10 for the state role, 0 "
        "otherwise). Where a state worker shares cores with the command path (gateway, "
        "Kafka, Cassandra, command workers), telemetry work then waits for idle CPU instead of "
        "queueing commands behind it; on cores of its own it changes nothing",
    )

    def niceness(self) -> int:
        """The niceness this worker runs at (pure)."""
        if self.nice is not None:
            return self.nice
        return STATE_NICE if self.role == "state" else 0

    shadow_write_interval_s: float = Field(
        default=5.0,
        ge=0.0,
        le=300.0,
        description="at most one shadow write per vehicle per this many seconds (each write is a "
        "lightweight transaction, ~2 ms of Cassandra CPU: with telemetry in the shadow, 1 s "
        "meant a write per message for 1,000 vehicles at 0.5 Hz); the inputs it holds are "
        "acknowledged to Kafka only once written",
    )
    telemetry_write_interval_s: float = Field(
        default=30.0,
        ge=0.0,
        le=3600.0,
        description="the same for a vehicle whose unsaved changes are all telemetry signals "
        "(any other change makes it due after shadow_write_interval_s): telemetry changes every "
        "few seconds, so this sets most of Cassandra's load (1,000 vehicles at 0.1 Hz: 100 "
        "writes/s at 5 s, ~33 at 30 s); the last value still reaches Cassandra when the worker "
        "stops or gives up the vehicle",
    )
    command_result_grace_s: float = Field(
        default=5.0,
        ge=0.0,
        le=3600.0,
        description="a delivered command times out this long after its TTL without a result",
    )
    fetch_max_wait_ms: int = Field(
        default=200,
        ge=1,
        le=5000,
        description="how long the broker may hold a fetch with no data: a new record ends it "
        "at once (fleetgate.kafka_fetch), so this bounds idle polling, not latency",
    )
    max_in_flight: int = Field(
        default=4096, ge=1, le=1_000_000, description="events being processed at once per agent"
    )
    cache_idle_s: float = Field(
        default=900.0, ge=1.0, description="a vehicle's cached state is dropped after this idle"
    )
    link_cache_s: float = Field(
        default=5.0, ge=0.0, le=3600.0, description="how long an app-vehicle link is cached"
    )
    connect_timeout_s: float = Field(default=30.0, gt=0, le=600)
    create_topics: bool = Field(
        default=True, description="create missing Kafka topics at start (idempotent)"
    )
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="serve Prometheus metrics on this port"
    )
    worker_id: str | None = Field(default=None, description="names this worker in logs")


class ProcessorSettings(CommonSettings):
    """Everything a processors worker needs: Kafka, Cassandra and the tuning."""

    kafka: KafkaConnection = Field(default_factory=KafkaConnection)
    cassandra: CassandraConnection = Field(default_factory=CassandraConnection)
    processors: ProcessorTuning = Field(default_factory=ProcessorTuning)
