"""Counters, histograms, snapshot merging and the JSON summary."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetgate.bench.report import percentile
from simulator.stats import COUNTERS, Histogram, Stats, build_summary, merge
from simulator.supervisor import flood_figures

pytestmark = pytest.mark.unit

CONTRACT_KEYS = {
    "vehicles",
    "connected",
    "failed",
    "published",
    "acked",
    "commands_received",
    "commands_answered",
    "handshake_ms",
    "publish_ack_ms",
    "errors",
}


@settings(deadline=None)
@given(st.lists(st.floats(0.002, 100_000), min_size=1, max_size=300), st.sampled_from([50, 99]))
def test_histogram_percentiles_are_within_two_percent(values: list[float], q: int) -> None:
    hist = Histogram()
    for value in values:
        hist.add(value)
    exact = percentile(sorted(values), q)
    got = hist.percentile(q)
    assert got is not None
    assert math.isclose(got, exact, rel_tol=0.021)


def test_histogram_edges() -> None:
    hist = Histogram()
    assert hist.percentile(50) is None
    assert hist.summary() == {"p50": None, "p99": None}
    hist.add(0.0)
    hist.add(-1.0)
    assert hist.percentile(99) == 0.001


@settings(deadline=None)
@given(st.lists(st.lists(st.floats(0.01, 1000), max_size=50), min_size=1, max_size=4))
def test_merged_histograms_equal_one_histogram_of_everything(parts: list[list[float]]) -> None:
    whole = Histogram()
    merged = Histogram()
    for part in parts:
        piece = Histogram()
        for value in part:
            piece.add(value)
            whole.add(value)
        merged.merge(piece.buckets)
    assert merged.buckets == whole.buckets
    assert merged.count == whole.count


def _snapshot(
    worker: int, *, online: int, published: int, error: str | None = None
) -> dict[str, Any]:
    stats = Stats()
    stats.published("telemetry", published)
    stats.counts["acked"] = published
    stats.histograms["handshake"].add(10.0)
    stats.histograms["publish_ack"].add(2.0)
    if error:
        stats.error(error)
    stats.marks["flood_start"] = 100.0 + worker
    stats.marks["flood_end"] = 110.0 + worker
    stats.marks["flood_messages"] = float(published)
    return stats.snapshot(
        worker=worker,
        vehicles=online + 1,
        links={"online": online, "gave_up": 1},
        rss_kb=1000,
        peak_rss_kb=3000,
        base_rss_kb=1000,
        done=True,
    )


def test_merge_and_summary() -> None:
    merged = merge(
        [
            _snapshot(0, online=3, published=30, error="timeout"),
            _snapshot(1, online=2, published=20),
        ]
    )
    assert merged["workers"] == 2
    assert merged["counts"]["published"] == 50
    assert merged["links"] == {"online": 5, "gave_up": 2}
    summary = build_summary(merged, duration_s=10.0, peak_connected=5, extra={"profile": "city"})
    assert set(summary) >= CONTRACT_KEYS
    assert summary["vehicles"] == 7
    assert summary["connected"] == 5
    assert summary["failed"] == 2
    assert summary["offline"] == 0
    assert summary["published"] == summary["acked"] == 50
    assert summary["errors"] == {"timeout": 1}
    assert summary["published_by_kind"] == {"telemetry": 50}
    assert summary["handshake_ms"]["p50"] == pytest.approx(10.0, rel=0.02)
    assert summary["msgs_per_s"] == 5.0
    assert summary["memory"]["per_vehicle_kb"] == round(4000 / 5, 1)
    assert summary["profile"] == "city"
    assert set(merged["counts"]) == set(COUNTERS)


def test_summary_of_nothing_has_no_nan() -> None:
    summary = build_summary(merge([]), duration_s=0.0, peak_connected=0)
    assert summary["handshake_ms"] == {"p50": None, "p99": None}
    assert summary["memory"]["per_vehicle_kb"] is None
    assert summary["connected"] == summary["failed"] == 0


def test_flood_figures_span_all_workers() -> None:
    marks = merge([_snapshot(0, online=1, published=500), _snapshot(1, online=1, published=600)])
    figures = flood_figures(marks["marks"], window=8)
    assert figures == {"msgs_per_s": 100.0, "messages": 1100, "span_s": 11.0, "window": 8}
    assert flood_figures([{}], window=8)["msgs_per_s"] is None


def test_rates_average_over_a_window() -> None:
    from simulator.progress import Rates, status_fields

    rates = Rates(window=5)
    assert rates.update({"published": 0}, t=0.0) == {}
    for second in range(1, 11):
        values = rates.update({"published": 100 * second}, t=float(second))
        assert values["published"] == pytest.approx(100)
    assert rates.update({"published": 1000}, t=10.5)["published"] == pytest.approx(500 / 5.5)
    fields = dict(status_fields({"links": {"online": 3}, "counts": {}}, {}, total=10))
    assert fields["connected"] == "3 / 10"


def test_connect_rate_spans_all_workers() -> None:
    from simulator.supervisor import connect_rate

    marks = [
        {"first_connect": 10.0, "last_connect": 20.0},
        {"first_connect": 12.0, "last_connect": 30.0},
    ]
    assert connect_rate(marks, 400) == 20.0
    assert connect_rate([{}], 5) is None
    assert connect_rate(marks, 1) is None
