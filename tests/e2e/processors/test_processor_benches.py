"""fleetgate bench commands | telemetry run end to end with tiny parameters: the whole path
comes up, figures come out, nothing is lost, everything started is stopped. No timing is
asserted (speed is what the benches report)."""

from __future__ import annotations

import os

import pytest

from fleetgate.bench.nodes import children_cpu
from processors import bench_commands, bench_telemetry

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _left(before: set[str]) -> set[str]:
    """Kinds of child processes that were not there before (multiprocessing's resource
    tracker stays for the life of this process: it is no bench's)."""
    return set(children_cpu()) - before - {"resource_tracker"}


def _services(kafka_bootstrap: str, cassandra_contact: tuple[str, int]) -> dict[str, str]:
    host, port = cassandra_contact
    return {"bootstrap": kafka_bootstrap, "cassandra": f"{host}:{port}", "partitions": "2"}


async def test_bench_commands_tiny(
    kafka_bootstrap: str, cassandra_contact: tuple[str, int]
) -> None:
    before = set(children_cpu())
    params = {"vehicles": "10", "commands": "6", "rate": "10", "warmup": "1"}
    outcome = await bench_commands.run(params | _services(kafka_bootstrap, cassandra_contact))
    result, baseline = outcome.result, outcome.baseline
    assert baseline is not None
    assert (result["count"], result["lost"], result["duplicates"]) == (6, 0, 0)
    assert (baseline["count"], baseline["lost"], baseline["duplicates"]) == (6, 0, 0)
    assert result["vehicles_online"] == 10
    assert set(result["worker_cpu_pct"]) == {"state", "commands"}  # the split layout
    assert {"processors-state", "processors-commands"} <= set(result["cpu_pct"])
    assert "write commands" in result["cassandra_ops_per_s"]  # read from system_views
    assert {"app_to_gateway", "result_to_app"} <= set(result["hops_p99_ms"])
    assert result["warmup_p99_ms"] > 0  # the warm-up command's round trip, timed apart
    assert result["jit_settle_s"] is None  # Kafka and Cassandra are not the bench's own
    assert result["jit_cpu_pct"] is None  # not measured on JVMs it did not start
    assert (result["kafka_hop_count"], result["kafka_hop_lost"]) == (6, 0)
    ours = os.getpriority(os.PRIO_PROCESS, 0)  # the workers inherit it; never raised
    assert result["worker_nice"] == {"state": max(10, ours), "commands": ours}
    assert not _left(before)  # no gateway, broker, worker or fleet left behind


async def test_bench_telemetry_tiny(
    kafka_bootstrap: str, cassandra_contact: tuple[str, int]
) -> None:
    before = set(children_cpu())
    params = {"vehicles": "4", "messages": "40", "warmup": "4", "profile": "1"}
    outcome = await bench_telemetry.run(params | _services(kafka_bootstrap, cassandra_contact))
    result, baseline = outcome.result, outcome.baseline
    assert baseline is not None
    assert (result["messages"], result["lost"], result["vehicles_behind"]) == (40, 0, 0)
    assert result["handled"] >= 40
    assert 1 <= result["shadow_writes"] <= 40
    assert (baseline["messages"], baseline["lost"]) == (40, 0)
    assert any(note.startswith("processors profile") for note in outcome.notes)
    assert not _left(before)
