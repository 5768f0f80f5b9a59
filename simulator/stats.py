"""Counting what a fleet did: counters, latency histograms, snapshots that worker processes
send, their merge, and the JSON summary of CONTRACT §5. Pure, except :func:`rss_kb`.

A :class:`Histogram` keeps counts in logarithmic buckets 2 % wide, so any number of samples
costs a few hundred integers, and histograms of several processes merge by adding counts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

_MIN_MS: Final = 0.001
_SCALE: Final = 1 / math.log(1.02)

COUNTERS: Final = (
    "published",
    "acked",
    "retransmitted",
    "received",
    "commands_received",
    "commands_answered",
    "commands_expired",
    "commands_duplicate",
    "desired_received",
    "desired_applied",
    "ota_jobs",
    "ota_chunks",
    "connects",
    "reconnects",
    "disconnects",
    "lost",
    "unacked",
)
"""Every counter a worker keeps (each starts at 0)."""
HISTOGRAMS: Final = ("handshake", "tls", "publish_ack")


class Histogram:
    """Latencies in milliseconds, in 2 % logarithmic buckets."""

    __slots__ = ("buckets", "count")

    def __init__(self, buckets: Mapping[int, int] | None = None) -> None:
        self.buckets: dict[int, int] = dict(buckets or {})
        self.count = sum(self.buckets.values())

    def add(self, value_ms: float) -> None:
        index = int(math.log(value_ms / _MIN_MS) * _SCALE) if value_ms > _MIN_MS else 0
        buckets = self.buckets
        buckets[index] = buckets.get(index, 0) + 1
        self.count += 1

    def merge(self, other: Mapping[int, int]) -> None:
        for index, count in other.items():
            self.buckets[index] = self.buckets.get(index, 0) + count
            self.count += count

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile (``q`` in 0..100), within 2 %; None when empty."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return bucket_value(index)
        return bucket_value(max(self.buckets))  # pragma: no cover - rank <= count

    def summary(self) -> dict[str, float | None]:
        """``{"p50", "p99"}`` in ms, rounded to 3 decimals (None when there are no samples)."""
        return {"p50": _round(self.percentile(50)), "p99": _round(self.percentile(99))}


def bucket_value(index: int) -> float:
    """The value a bucket stands for (its geometric middle; the first bucket: its bound)."""
    if index <= 0:
        return _MIN_MS
    return _MIN_MS * math.exp((index + 0.5) / _SCALE)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass
class Stats:
    """One worker's counters; :meth:`snapshot` is what it sends to the supervisor."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    errors: dict[str, int] = field(default_factory=dict)
    by_kind: dict[str, int] = field(default_factory=dict)
    """Published messages by topic kind (telemetry, connection, ...)."""
    histograms: dict[str, Histogram] = field(
        default_factory=lambda: {name: Histogram() for name in HISTOGRAMS}
    )
    marks: dict[str, float] = field(default_factory=dict)
    """Per-worker figures that do not add up (e.g. when the flood started and ended)."""

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def published(self, kind: str, n: int = 1) -> None:
        self.counts["published"] += n
        self.by_kind[kind] = self.by_kind.get(kind, 0) + n

    def snapshot(
        self,
        *,
        worker: int,
        vehicles: int,
        links: Mapping[str, int],
        rss_kb: int,
        peak_rss_kb: int,
        base_rss_kb: int,
        done: bool,
    ) -> dict[str, Any]:
        return {
            "worker": worker,
            "vehicles": vehicles,
            "counts": dict(self.counts),
            "errors": dict(self.errors),
            "by_kind": dict(self.by_kind),
            "hist": {name: dict(h.buckets) for name, h in self.histograms.items()},
            "links": dict(links),
            "marks": dict(self.marks),
            "rss_kb": rss_kb,
            "peak_rss_kb": peak_rss_kb,
            "base_rss_kb": base_rss_kb,
            "done": done,
        }


def _add(into: dict[str, int], other: Mapping[str, int]) -> None:
    for key, value in other.items():
        into[key] = into.get(key, 0) + value


def merge(snapshots: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up worker snapshots (the latest of each worker) into one of the same shape."""
    out: dict[str, Any] = {
        "workers": 0,
        "vehicles": 0,
        "counts": dict.fromkeys(COUNTERS, 0),
        "errors": {},
        "by_kind": {},
        "hist": {name: {} for name in HISTOGRAMS},
        "links": {},
        "marks": [],
        "rss_kb": 0,
        "peak_rss_kb": 0,
        "base_rss_kb": 0,
        "done": True,
    }
    for snap in snapshots:
        out["workers"] += 1
        out["vehicles"] += snap["vehicles"]
        _add(out["counts"], snap["counts"])
        _add(out["errors"], snap["errors"])
        _add(out["by_kind"], snap["by_kind"])
        _add(out["links"], snap["links"])
        out["marks"].append(snap["marks"])
        for name, buckets in snap["hist"].items():
            hist = out["hist"].setdefault(name, {})
            for index, count in buckets.items():
                hist[index] = hist.get(index, 0) + count
        out["rss_kb"] += snap["rss_kb"]
        out["peak_rss_kb"] += snap["peak_rss_kb"]
        out["base_rss_kb"] += snap["base_rss_kb"]
        out["done"] = out["done"] and snap["done"]
    return out


FAILED_LINKS: Final = ("gave_up", "backoff")


def build_summary(
    merged: Mapping[str, Any],
    *,
    duration_s: float,
    peak_connected: int,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``fleetgate sim --json`` object (CONTRACT §5 plus documented extras).

    ``connected``: vehicles online when the run ended; ``failed``: vehicles whose connection
    attempts were failing then (given up, or waiting to retry); ``offline``: the rest (a
    simulated outage, or not started yet when the run ended).
    """
    counts = merged["counts"]
    links: Mapping[str, int] = merged["links"]
    connected = links.get("online", 0)
    failed = sum(links.get(name, 0) for name in FAILED_LINKS)
    hists = {name: Histogram(buckets) for name, buckets in merged["hist"].items()}
    growth_kb = max(0, merged["peak_rss_kb"] - merged["base_rss_kb"])
    duration = max(duration_s, 1e-9)
    summary: dict[str, Any] = {
        "vehicles": merged["vehicles"],
        "connected": connected,
        "failed": failed,
        "offline": max(0, merged["vehicles"] - connected - failed),
        "published": counts["published"],
        "acked": counts["acked"],
        "commands_received": counts["commands_received"],
        "commands_answered": counts["commands_answered"],
        "handshake_ms": hists["handshake"].summary(),
        "publish_ack_ms": hists["publish_ack"].summary(),
        "errors": dict(sorted(merged["errors"].items())),
        # extras
        "tls_handshake_ms": hists["tls"].summary(),
        "published_by_kind": dict(sorted(merged["by_kind"].items())),
        "unacked": counts["unacked"],
        "retransmitted": counts["retransmitted"],
        "received": counts["received"],
        "commands_expired": counts["commands_expired"],
        "commands_duplicate": counts["commands_duplicate"],
        "desired_received": counts["desired_received"],
        "desired_applied": counts["desired_applied"],
        "ota_jobs": counts["ota_jobs"],
        "connects": counts["connects"],
        "reconnects": counts["reconnects"],
        "disconnects": counts["disconnects"],
        "connections_lost": counts["lost"],
        "peak_connected": peak_connected,
        "links": dict(sorted(links.items())),
        "duration_s": round(duration_s, 3),
        "msgs_per_s": round(counts["published"] / duration, 1),
        "acks_per_s": round(counts["acked"] / duration, 1),
        "workers": merged["workers"],
        "memory": {
            "rss_mb": round(merged["rss_kb"] / 1024, 1),
            "peak_rss_mb": round(merged["peak_rss_kb"] / 1024, 1),
            "growth_mb": round(growth_kb / 1024, 1),
            "per_vehicle_kb": round(growth_kb / peak_connected, 1) if peak_connected else None,
        },
    }
    if extra:
        summary.update(extra)
    return summary


def rss_kb() -> int:
    """This process's resident set size in KiB (Linux ``/proc/self/statm``; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            resident = int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return resident * (os.sysconf("SC_PAGE_SIZE") // 1024)
