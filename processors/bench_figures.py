"""The figures of ``fleetgate bench commands`` from what it recorded: round trips, hops,
losses and duplicates of commands, and the background telemetry's freshness. Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleetgate.bench.report import latency_summary

APP_STATUSES = ("accepted", "delivered", "succeeded")
Event = tuple[str, str, float, int | None]
"""(command id, status, wall-clock ms received, the status's own ``ts``)."""


def trip_figures(
    sent: Mapping[str, float], events: Sequence[Event], *, expected: Sequence[str]
) -> dict[str, Any]:
    """Latencies, losses and duplicates of the commands ``sent`` (id -> wall ms) from the
    statuses received (others' are ignored). Pure."""
    first: dict[tuple[str, str], Event] = {}
    duplicates = 0
    other: dict[str, int] = {}
    for event in events:
        cid, status = event[0], event[1]
        if cid not in sent:
            continue
        if (cid, status) in first:
            duplicates += 1
            continue
        first[(cid, status)] = event
        if status not in expected:
            other[status] = other.get(status, 0) + 1

    final = latency_summary(since_sent(sent, events, expected[-1]))
    out: dict[str, Any] = {"commands": len(sent), **final}
    if "delivered" in expected:
        delivered = latency_summary(since_sent(sent, events, "delivered"))
        out.update({f"delivered_{k}": v for k, v in delivered.items() if k != "count"})
        out.update(hop_figures(sent, first))
    out["lost"] = sum((c, s) not in first for c in sent for s in expected)
    out["duplicates"] = duplicates
    out["other_statuses"] = other
    return out


def since_sent(sent: Mapping[str, float], events: Sequence[Event], status: str) -> list[float]:
    """Milliseconds from each command ``sent`` to its first ``status`` received. Pure."""
    first: dict[str, float] = {}
    for event in events:
        if event[1] == status and event[0] in sent:
            first.setdefault(event[0], event[2])
    return [first[c] - t for c, t in sent.items() if c in first]


def hop_figures(
    sent: Mapping[str, float], first: Mapping[tuple[str, str], Event]
) -> dict[str, Any]:
    names = ("app_to_gateway", "gateway_to_delivered", "delivered_to_result", "result_to_app")
    spans: dict[str, list[float]] = {n: [] for n in names}
    for cid, t0 in sent.items():
        got = [first.get((cid, s)) for s in APP_STATUSES]
        acc, dlv, suc = got
        if acc is None or dlv is None or suc is None or None in (acc[3], dlv[3], suc[3]):
            continue
        marks = [t0, acc[3], dlv[3], suc[3], suc[2]]
        for name, a, b in zip(names, marks, marks[1:], strict=False):
            spans[name].append(float(b or 0) - float(a or 0))
    out: dict[str, Any] = {}
    for q in ("p50_ms", "p99_ms"):
        out[f"hops_{q}"] = {n: latency_summary(v)[q] for n, v in spans.items()}
    return out


def telemetry_figures(
    before: Mapping[str, float], after: Mapping[str, float], seconds: float
) -> dict[str, Any]:
    """The background telemetry the worker handled between two readings of its metrics:
    msgs/s and the lag from the gateway's receipt (mean, share within 50 ms). Pure."""

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    count = delta("fleetgate_telemetry_lag_seconds_count")
    quick = delta('fleetgate_telemetry_lag_seconds_bucket{le="0.05"}')
    return {
        "telemetry_msgs_per_s": round(delta("fleetgate_telemetry_messages_total") / seconds, 1),
        "telemetry_lag_mean_ms": round(
            1000 * delta("fleetgate_telemetry_lag_seconds_sum") / count, 1
        )
        if count
        else None,
        "telemetry_lag_within_50ms_pct": round(100 * quick / count, 1) if count else None,
    }
