"""``fleetgate bench`` results: one JSON object per run, the measured figures side by side with
a baseline measured in the same invocation (CONTRACT §5)."""

from __future__ import annotations

import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    """What a scenario returns: its figures, the baseline's, and which figure is the headline."""

    result: dict[str, Any]
    headline: str
    baseline: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (``q`` in 0..100); NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values_ms)
    return {
        "p50_ms": round(percentile(ordered, 50), 3),
        "p99_ms": round(percentile(ordered, 99), 3),
        "max_ms": round(ordered[-1], 3) if ordered else math.nan,
        "count": len(ordered),
    }


def ratio(result: Mapping[str, Any], baseline: Mapping[str, Any] | None, key: str) -> float | None:
    if baseline is None:
        return None
    a, b = result.get(key), baseline.get(key)
    if not isinstance(a, int | float) or not isinstance(b, int | float) or b == 0:
        return None
    return round(a / b, 4)


def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    from fleetgate.stack.cassandra import CASSANDRA_VERSION
    from fleetgate.stack.kafka import KAFKA_VERSION
    from fleetgate.stack.prereq import mosquitto_version

    amqtt: str | None
    try:
        amqtt = version("amqtt")
    except PackageNotFoundError:
        amqtt = None
    return {
        "amqtt": amqtt,
        "mosquitto": mosquitto_version(),
        "kafka": KAFKA_VERSION,
        "cassandra": CASSANDRA_VERSION,
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def build(*, scenario: str, outcome: Outcome) -> dict[str, Any]:
    """The JSON object of CONTRACT §5."""
    return {
        "scenario": scenario,
        "params": outcome.params,
        "result": outcome.result,
        "baseline": outcome.baseline,
        "headline": outcome.headline,
        "ratio": ratio(outcome.result, outcome.baseline, outcome.headline),
        "notes": outcome.notes,
        "machine": machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions(),
    }
