"""Telemetry intake: per-vehicle sequence tracking and Prometheus counters (in memory)."""

from __future__ import annotations

from dataclasses import dataclass

from processors.metrics import ProcessorMetrics
from processors.telemetry.logic import SeqState, track
from schemas.telemetry import Telemetry


@dataclass(frozen=True, slots=True)
class TelemetryTotals:
    vehicles: int
    received: int
    lost: int
    duplicates: int
    restarts: int


class TelemetryService:
    def __init__(self, *, metrics: ProcessorMetrics | None = None) -> None:
        self._seq: dict[str, SeqState] = {}
        self._metrics = metrics or ProcessorMetrics()
        self.received = 0

    def on_telemetry(self, *, vin: str, message: Telemetry, lag_s: float | None) -> None:
        outcome = track(self._seq.get(vin), seq=message.seq, ts=message.ts)
        self._seq[vin] = outcome.state
        self.received += 1
        metrics = self._metrics
        metrics.telemetry.inc()
        if outcome.gap:
            metrics.telemetry_lost.inc(outcome.gap)
        if outcome.duplicate:
            metrics.telemetry_duplicates.inc()
        if lag_s is not None and lag_s >= 0:
            metrics.telemetry_lag.observe(lag_s)

    def totals(self) -> TelemetryTotals:
        states = self._seq.values()
        return TelemetryTotals(
            vehicles=len(self._seq),
            received=sum(s.received for s in states),
            lost=sum(s.lost for s in states),
            duplicates=sum(s.duplicates for s in states),
            restarts=sum(s.restarts for s in states),
        )

    def forget(self, vins: set[str] | None = None) -> None:
        if vins is None:
            self._seq.clear()
        else:
            for vin in vins:
                self._seq.pop(vin, None)
