"""Settings of ``fleetgate sim`` (env ``FLEETGATE_SIM__...``; the command line overrides)."""

from __future__ import annotations

import math
import os
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from fleetgate.settings import CommonSettings
from simulator.drive import PROFILES
from simulator.tls import parse_broker

FLOOD = "flood"
"""The profile that publishes pre-encoded telemetry as fast as QoS 1 flow control allows."""


class SimOptions(BaseModel):
    """A simulated fleet: how many vehicles, how they behave, where they connect."""

    vehicles: int = Field(default=100, ge=1, le=1_000_000)
    first: int = Field(default=0, ge=0, description="number of the first vehicle (its VIN)")
    rate_hz: float = Field(default=1.0, gt=0, le=1000, description="telemetry per vehicle")
    duration_s: float | None = Field(
        default=None, gt=0, description="stop after this long (from the start); None: Ctrl-C"
    )
    ramp_per_s: float = Field(default=200.0, gt=0, le=100_000, description="new connections/s")
    broker: str = Field(default="127.0.0.1:8883", description="HOST:PORT of the MQTT broker")
    profile: str = Field(default="mixed", description=f"{', '.join(PROFILES)} or {FLOOD}")
    qos: Literal[0, 1] = Field(default=1, description="QoS of telemetry")
    workers: int = Field(default=0, ge=0, le=256, description="processes; 0: automatic")
    max_per_worker: int = Field(default=15_000, ge=1, le=100_000)
    max_connecting: int = Field(
        default=32,
        ge=1,
        le=100_000,
        description="handshakes in progress per process (more only queue up at the broker)",
    )
    connect_timeout_s: float = Field(default=15.0, gt=0, le=600)
    max_attempts: int = Field(
        default=5, ge=0, le=1_000_000, description="failed attempts in a row before giving up"
    )
    backoff_base_s: float = Field(default=0.5, gt=0, le=600)
    backoff_cap_s: float = Field(default=30.0, gt=0, le=3600)
    keepalive_s: int = Field(default=60, ge=5, le=65_535)
    command_latency_ms: tuple[float, float] = (50.0, 500.0)
    command_failure_rate: float = Field(default=0.02, ge=0, le=1)
    expired_commands: Literal["reject", "ignore"] = "reject"
    disconnects_per_hour: float = Field(
        default=0.0, ge=0, le=3600, description="random disconnects per vehicle per hour"
    )
    offline_s: tuple[float, float] = Field(
        default=(2.0, 30.0), description="how long a randomly disconnected vehicle stays away"
    )
    time_scale: float = Field(default=1.0, gt=0, le=3600, description="drive time per second")
    window: int = Field(
        default=64, ge=1, le=65_535, description="flood: QoS 1 messages in flight per connection"
    )
    payload_bytes: int = Field(
        default=0, ge=0, le=1_000_000, description="flood: pad telemetry to this size (0: as is)"
    )
    ssl_read_buffer: int = Field(
        default=16 * 1024, ge=4096, le=1024 * 1024, description="TLS read buffer per connection"
    )
    drain_s: float = Field(default=5.0, ge=0, le=600, description="wait for acks at the end")
    max_packet: int = Field(default=16 * 1024 * 1024 + 1024, ge=1024)
    seed: int | None = None

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, value: str) -> str:
        parse_broker(value)
        return value

    @field_validator("profile")
    @classmethod
    def _check_profile(cls, value: str) -> str:
        if value != FLOOD and value not in PROFILES:
            raise ValueError(f"unknown profile {value!r}; known: {', '.join([*PROFILES, FLOOD])}")
        return value

    @model_validator(mode="after")
    def _ranges(self) -> SimOptions:
        for name in ("command_latency_ms", "offline_s"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high")
        return self

    @property
    def flood(self) -> bool:
        return self.profile == FLOOD

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_broker(self.broker)


class SimSettings(CommonSettings):
    """``$FLEETGATE_HOME`` (vehicle certificates under ``pki/vehicles``) + the fleet."""

    sim: SimOptions = Field(default_factory=SimOptions)


def worker_count(vehicles: int, *, requested: int, max_per_worker: int, cpus: int | None) -> int:
    """Processes for ``vehicles``: every core used, none above ``max_per_worker`` connections,
    never more processes than vehicles. ``requested`` > 0 is honoured within those limits."""
    needed = math.ceil(vehicles / max_per_worker)
    wanted = requested if requested > 0 else max(1, cpus or 1)
    return max(needed, min(wanted, vehicles))


def split(numbers: range, workers: int) -> list[list[int]]:
    """Vehicle numbers dealt round-robin to ``workers`` (so a ramp starts them in order)."""
    return [list(numbers[w::workers]) for w in range(workers)]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
