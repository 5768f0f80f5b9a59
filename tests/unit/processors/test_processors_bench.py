"""fleetgate bench commands | telemetry: parameters and the figures' arithmetic (the runs
themselves are measured, not unit-tested)."""

from __future__ import annotations

import pytest

from fleetgate.bench.nodes import busiest, cpu_pct, jit_busy_pct, process_kind
from fleetgate.errors import UserError
from processors import bench_commands, bench_figures, bench_telemetry
from processors import bench_env as env

pytestmark = pytest.mark.unit


def test_defaults_and_overrides() -> None:
    p = bench_commands.parse_params({"rate": "50", "telemetry_hz": "2.5", "bootstrap": "k:9092"})
    assert (p["rate"], p["telemetry_hz"], p["bootstrap"]) == (50, 2.5, "k:9092")
    assert p["vehicles"] == 1000
    assert bench_telemetry.parse_params({"warmup": "0"})["warmup"] == 0


@pytest.mark.parametrize(
    ("parse", "params", "words"),
    [
        (bench_commands.parse_params, {"rate": "x"}, "commands parameter rate='x' is not a whole"),
        (bench_commands.parse_params, {"commands": "0"}, "commands must be at least 1"),
        (bench_commands.parse_params, {"telemetry_hz": "0"}, "telemetry_hz must be above 0"),
        (bench_commands.parse_params, {"telemetry_hz": "fast"}, "is not a number"),
        (bench_commands.parse_params, {"profile": "2"}, "profile must be 0 or 1"),
        (bench_commands.parse_params, {"colour": "red"}, "unknown commands parameter"),
        (bench_commands.parse_params, {"workers": "3"}, "workers='3' must be split or single"),
        (bench_commands.parse_params, {"jit": "c2"}, "jit='c2' must be full or quick"),
        (bench_commands.parse_params, {"bootstrap": "nohost"}, "bootstrap='nohost' is not host"),
        (bench_telemetry.parse_params, {"window": "-1"}, "window must be at least 1"),
        (bench_telemetry.parse_params, {"messages": "5"}, "messages must be at least vehicles"),
        (bench_telemetry.parse_params, {"cassandra": "h:p"}, "is not host:port"),
        (bench_telemetry.parse_params, {"topic": "x"}, "topic='x' must be reported or telemetry"),
    ],
)
def test_bad_parameters_are_one_line(parse: object, params: dict[str, str], words: str) -> None:
    with pytest.raises(UserError, match=words) as caught:
        parse(params)  # type: ignore[operator]
    assert "\n" not in str(caught.value)


def test_trip_figures_count_lost_and_duplicated_statuses_and_split_the_hops() -> None:
    sent = {"a": 1000.0, "b": 2000.0}
    events = [
        ("a", "accepted", 1003.0, 1001),
        ("a", "delivered", 1010.0, 1008),
        ("a", "succeeded", 1020.0, 1015),
        ("a", "succeeded", 1030.0, 1015),  # a duplicate
        ("b", "accepted", 2002.0, 2001),
        ("warm-up", "succeeded", 5.0, 1),  # not measured
    ]
    out = bench_figures.trip_figures(sent, events, expected=bench_figures.APP_STATUSES)
    assert (out["p50_ms"], out["count"], out["delivered_p50_ms"]) == (20.0, 1, 10.0)
    assert (out["lost"], out["duplicates"]) == (2, 1)  # b: delivered and succeeded missing
    assert out["hops_p50_ms"] == {"app_to_gateway": 1.0, "gateway_to_delivered": 7.0,
                                  "delivered_to_result": 7.0, "result_to_app": 5.0}  # fmt: skip


def test_warm_up_trips_are_timed_apart_from_the_measured_ones() -> None:
    events = [
        ("w1", "succeeded", 130.0, None),
        ("w1", "succeeded", 190.0, None),  # a duplicate: the first one counts
        ("w2", "accepted", 205.0, None),  # not the status asked for
        ("m1", "succeeded", 340.0, None),
    ]
    assert bench_figures.since_sent({"w1": 100.0, "w2": 200.0}, events, "succeeded") == [30.0]
    assert bench_figures.since_sent({"m1": 300.0}, events, "succeeded") == [40.0]


def test_broker_alone_trips_expect_one_result_each() -> None:
    out = bench_figures.trip_figures(
        {"a": 0.0}, [("a", "succeeded", 4.0, None)], expected=("succeeded",)
    )
    assert (out["p99_ms"], out["lost"], out["duplicates"]) == (4.0, 0, 0)
    assert "hops_p50_ms" not in out


def test_shadow_gaps_compare_the_stored_sequence_with_the_last_one_sent() -> None:
    stored = {
        "V1": {"phase": 1, "seq": 10},
        "V2": {"phase": 1, "seq": 7},
        "V3": {"phase": 0, "seq": 10},  # only the warm-up arrived
        "V4": None,  # no shadow at all
    }
    assert bench_telemetry.shadow_gaps(stored, phase=1, first=1, last=10) == (3 + 10 + 10, 3)
    assert bench_telemetry.shadow_gaps(stored, phase=1, first=6, last=10) == (3 + 5 + 5, 3)


def test_the_bench_leaf_is_read_from_telemetry_or_from_the_reported_state() -> None:
    signals = {"telemetry": {"bench.phase": 1, "bench.seq": 7, "speed_kmh": 3.5}}
    assert bench_telemetry.bench_leaf(signals, "telemetry") == {"phase": 1, "seq": 7}
    assert bench_telemetry.bench_leaf({"speed": 1}, "telemetry") is None
    reported = {"bench": {"phase": 1, "seq": 7}}
    assert bench_telemetry.bench_leaf(reported, "reported") == {"phase": 1, "seq": 7}
    assert bench_telemetry.parse_params({})["topic"] == "telemetry"


def test_child_processes_are_named_by_kind_and_cpu_is_a_share_of_one_core() -> None:
    assert process_kind("/v/bin/python -m processors") == "processors"
    profiled = "/v/bin/python -m fleetgate.bench.nodes profile /t/processors.prof processors"
    assert process_kind(profiled) == "processors"
    assert process_kind("/v/bin/python -m processors --role commands") == "processors-commands"
    assert process_kind("/v/bin/python -m processors --role all") == "processors"
    assert process_kind("/v/bin/python -m gateway") == "gateway"
    assert process_kind("/v/python -m processors.bench_telemetry sink /t/home 1883") == "subscriber"
    assert process_kind("/usr/bin/java -cp x org.apache.cassandra.service.CassandraDaemon") == (
        "cassandra"
    )
    assert process_kind("/usr/sbin/mosquitto -c /t/m.conf") == "mosquitto"
    assert cpu_pct({"kafka": 1.0}, {"kafka": 1.5, "gateway": 0.25}, 2.0) == {
        "gateway": 12.5,
        "kafka": 25.0,
    }


def _lag(messages: float, seconds: float, count: float, quick: float) -> dict[str, float]:
    name = "fleetgate_telemetry_lag_seconds"
    return {"fleetgate_telemetry_messages_total": messages, f"{name}_sum": seconds,
            f"{name}_count": count, f'{name}_bucket{{le="0.05"}}': quick}  # fmt: skip


def test_background_telemetry_figures_come_from_metric_deltas() -> None:
    before, after = _lag(100, 1.0, 100, 90), _lag(300, 5.0, 300, 240)
    assert bench_figures.telemetry_figures(before, after, 2.0) == {
        "telemetry_msgs_per_s": 100.0,
        "telemetry_lag_mean_ms": 20.0,
        "telemetry_lag_within_50ms_pct": 75.0,
    }
    assert bench_figures.telemetry_figures({}, {}, 1.0)["telemetry_lag_mean_ms"] is None


def test_the_busiest_process_is_named() -> None:
    line = busiest({"cassandra": 90.6, "processors": 53.2, "kafka": 22.5})
    assert line.startswith("busiest process: cassandra at 91% of a core")
    assert "together 166% of" in line


def test_cassandra_rates_are_per_second_busiest_first_and_only_what_moved() -> None:
    before = {"write shadows": 10.0, "write paxos": 5.0, "read vehicles": 7.0}
    after = {"write shadows": 30.0, "write paxos": 65.0, "read vehicles": 7.0, "write batches": 4}
    assert env.rates(before, after, 2.0) == {
        "write paxos": 30.0,
        "write shadows": 10.0,
        "write batches": 2.0,
    }
    assert list(env.rates(before, after, 2.0)) == ["write paxos", "write shadows", "write batches"]


def test_jit_busy_pct_over_the_last_window_only() -> None:
    assert jit_busy_pct([], window_s=10) is None
    assert jit_busy_pct([(0.0, 0.0), (5.0, 1.0)], window_s=10) is None  # not a window yet
    samples = [(0.0, 0.0), (5.0, 4.0), (10.0, 4.5), (15.0, 5.0)]
    assert jit_busy_pct(samples, window_s=10) == 10.0  # 1 s of CPU in the last 10 s
    assert jit_busy_pct([(0.0, 3.0), (5.0, 1.0), (10.0, 1.5)], window_s=10) == 5.0  # a drop


def test_jit_settle_waits_for_quiet_compilers_up_to_a_limit() -> None:
    now = [0.0]
    cpu = [0.0]
    settle = bench_commands.JitSettle(read=lambda: cpu[0], clock=lambda: now[0])
    while now[0] < 30:  # compiling: half a core
        assert settle.busy()
        now[0] += 1
        cpu[0] += 0.5
    while settle.busy():  # quiet from here on
        now[0] += 1
    assert settle.seconds is not None
    assert 30 < settle.seconds <= 30 + bench_commands.JIT_WINDOW_S
    begun = now[0]
    stuck = bench_commands.JitSettle(read=lambda: now[0], clock=lambda: now[0])  # a full core
    while stuck.busy():
        now[0] += 1
    assert stuck.seconds is None
    assert now[0] - begun == bench_commands.JIT_MAX_S  # it gives up
