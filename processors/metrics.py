"""Prometheus metrics of a processors worker (its own registry; ``GET /metrics`` when
``FLEETGATE_PROCESSORS__METRICS_PORT`` is set)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server


@dataclass
class ProcessorMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.telemetry = Counter(
            "fleetgate_telemetry_messages", "Telemetry messages processed", registry=r
        )
        self.telemetry_lost = Counter(
            "fleetgate_telemetry_lost", "Telemetry messages missing (sequence gaps)", registry=r
        )
        self.telemetry_duplicates = Counter(
            "fleetgate_telemetry_duplicates", "Telemetry messages seen twice", registry=r
        )
        self.telemetry_lag = Histogram(
            "fleetgate_telemetry_lag_seconds",
            "From the gateway receiving a telemetry message to the processors handling it",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.command_statuses = Counter(
            "fleetgate_command_statuses",
            "Command statuses sent to apps",
            ["status"],
            registry=r,
        )
        self.shadow_reported = Counter(
            "fleetgate_shadow_reported", "Reported-state updates merged into shadows", registry=r
        )
        self.shadow_telemetry = Counter(
            "fleetgate_shadow_telemetry",
            "Telemetry messages merged into shadows (reported.telemetry)",
            registry=r,
        )
        self.shadow_writes = Counter(
            "fleetgate_shadow_writes", "Shadow documents written to Cassandra", registry=r
        )


class MetricsServer:
    """``GET /metrics`` on ``host:port`` (0: any free port) in a daemon thread."""

    def __init__(self, *, metrics: ProcessorMetrics, host: str = "0.0.0.0", port: int) -> None:  # noqa: S104
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
        self._server: Any = server
        self._thread: threading.Thread = thread
        self.port = int(server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
