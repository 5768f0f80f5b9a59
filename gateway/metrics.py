"""Prometheus metrics of one gateway (its own registry, so several can live in one process)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from gateway.routing import RejectCause
from schemas.topics import TopicKind

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


@dataclass
class GatewayMetrics:
    """Counters, gauges and histograms; children per label value are made once."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.uplink = Counter(
            "fleetgate_gateway_uplink_messages",
            "MQTT messages accepted and produced to Kafka, by topic kind",
            ["kind"],
            registry=r,
        )
        self.uplink_rejects = Counter(
            "fleetgate_gateway_uplink_rejects",
            "MQTT messages rejected (sent to the dead-letter topic), by cause",
            ["cause"],
            registry=r,
        )
        self.uplink_elsewhere = Counter(
            "fleetgate_gateway_uplink_other_slice_messages",
            "MQTT messages of another instance's slice: acknowledged here, forwarded there",
            registry=r,
        )
        self.downlink = Counter(
            "fleetgate_gateway_downlink_messages",
            "outbound records published to MQTT and acknowledged by the broker, by topic kind",
            ["kind"],
            registry=r,
        )
        self.downlink_rejects = Counter(
            "fleetgate_gateway_downlink_rejects",
            "outbound records that name no downlink topic (sent to the dead-letter topic)",
            ["cause"],
            registry=r,
        )
        self.produce_seconds = Histogram(
            "fleetgate_gateway_kafka_produce_seconds",
            "from handing a record to the Kafka producer to its acknowledgement (acks=all)",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.publish_seconds = Histogram(
            "fleetgate_gateway_mqtt_publish_seconds",
            "from publishing an outbound record to the broker's acknowledgement",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.produce_retries = Counter(
            "fleetgate_gateway_kafka_produce_retries",
            "records handed to the Kafka producer again after a failure",
            registry=r,
        )
        self.uplink_inflight = Gauge(
            "fleetgate_gateway_uplink_inflight",
            "MQTT messages received and not yet acknowledged by Kafka",
            registry=r,
        )
        self.uplink_paused = Gauge(
            "fleetgate_gateway_uplink_paused",
            "1 while the gateway takes no new MQTT messages (in-flight bound reached)",
            registry=r,
        )
        self.downlink_inflight = Gauge(
            "fleetgate_gateway_downlink_inflight",
            "outbound records consumed and not yet acknowledged by the broker",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "fleetgate_gateway_downlink_consumer_lag",
            "records of the outbound topic not yet consumed, summed over assigned partitions",
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "fleetgate_gateway_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.uplink_by_kind = {kind: self.uplink.labels(kind.value) for kind in TopicKind}
        self.downlink_by_kind = {kind: self.downlink.labels(kind.value) for kind in TopicKind}
        self.uplink_reject_by_cause = {c: self.uplink_rejects.labels(c.value) for c in RejectCause}
        self.downlink_reject_by_cause = {
            c: self.downlink_rejects.labels(c.value) for c in RejectCause
        }

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value (0 when absent), e.g. for tests and the bench."""
        found = self.registry.get_sample_value(name, labels)
        return float(found) if found is not None else 0.0


class MetricsServer:
    """``GET /metrics`` on ``host:port`` (port 0: any free port) in a daemon thread."""

    def __init__(self, *, metrics: GatewayMetrics, host: str, port: int) -> None:
        server, thread = start_http_server(port, addr=host, registry=metrics.registry)
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.port: int = int(server.server_port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
