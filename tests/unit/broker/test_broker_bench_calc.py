"""broker.bench_calc: the connect bench's parameters, MQTT packets and arithmetic."""

from __future__ import annotations

import math
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker import bench_calc as calc
from broker.bench_calc import ConnackRefused, ConnectParams, WorkerReport
from broker.mqtt_frames import CONNECT, decode_remaining_length, frame_problem
from schemas.ids import make_vin

pytestmark = pytest.mark.unit


# --- parameters --------------------------------------------------------------------------------


def test_defaults_are_5000_connections_over_two_workers_amqtt_then_mosquitto() -> None:
    p = calc.parse_params({})
    assert p == ConnectParams()
    assert (p.connections, p.workers, p.brokers) == (5000, 2, ("amqtt", "mosquitto"))
    assert p.as_json()["brokers"] == ["amqtt", "mosquitto"]


def test_parameters_parse_and_workers_never_exceed_connections() -> None:
    p = calc.parse_params(
        {"connections": "1", "concurrency": "8", "brokers": "mosquitto", "settle_s": "0.5"}
    )
    assert (p.connections, p.workers, p.concurrency) == (1, 1, 8)
    assert p.brokers == ("mosquitto",)
    assert p.settle_s == 0.5
    assert calc.parse_params({"brokers": " mosquitto , amqtt,amqtt"}).brokers == (
        "mosquitto",
        "amqtt",
    )


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"connection": "5"}, "unknown parameter 'connection'"),
        ({"connections": "many"}, "is not an integer"),
        ({"connections": "0"}, "between 1 and"),
        ({"settle_s": "nan"}, "between 0 and"),
        ({"timeout_s": "x"}, "is not a number"),
        ({"brokers": "hivemq"}, "comma-separated list of amqtt, mosquitto"),
        ({"brokers": ","}, "comma-separated"),
        ({"concurrency": "1", "workers": "2"}, "must be at least workers"),
        ({"host": ""}, "host must not be empty"),
    ],
)
def test_bad_parameters_are_refused_in_one_line(raw: dict[str, str], needle: str) -> None:
    with pytest.raises(calc.BenchParamError) as caught:
        calc.parse_params(raw)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)


@given(n=st.integers(min_value=0, max_value=500), parts=st.integers(min_value=1, max_value=9))
def test_split_evenly_keeps_order_and_balances(n: int, parts: int) -> None:
    items = [str(i) for i in range(n)]
    slices = calc.split_evenly(items, parts)
    assert len(slices) == parts
    assert [x for s in slices for x in s] == items
    sizes = [len(s) for s in slices]
    assert max(sizes) - min(sizes) <= 1


# --- MQTT --------------------------------------------------------------------------------------


@given(number=st.integers(min_value=0, max_value=10**6), keepalive=st.integers(0, 65535))
def test_connect_packet_is_a_well_formed_mqtt_311_connect(number: int, keepalive: int) -> None:
    vin = make_vin(number)
    packet = calc.connect_packet(vin, keepalive_s=keepalive)
    assert packet[0] >> 4 == CONNECT
    body = packet[2:]
    assert decode_remaining_length(packet[1:2]) == len(body)
    assert frame_problem(packet[0], body, first_packet=True) is None  # the broker's own check
    assert body[6] == 4  # protocol level 3.1.1
    assert body[7] == 0x02  # clean session only
    assert int.from_bytes(body[8:10], "big") == keepalive
    assert body[12:].decode() == vin


def test_connect_packet_with_a_long_client_id_uses_two_length_bytes() -> None:
    packet = calc.connect_packet("x" * 200, keepalive_s=60)
    assert decode_remaining_length(packet[1:3]) == len(packet) - 3


def test_connack_code_needs_four_bytes_and_refuses_other_packets() -> None:
    assert calc.connack_code(b"") is None
    assert calc.connack_code(b"\x20\x02\x00") is None
    assert calc.connack_code(b"\x20\x02\x00\x00") == 0
    assert calc.connack_code(b"\x20\x02\x00\x05extra") == 5
    with pytest.raises(ValueError, match="expected a CONNACK"):
        calc.connack_code(b"\x30\x02\x00\x00")
    with pytest.raises(ValueError, match="expected a CONNACK"):
        calc.connack_code(b"\x20\x03")


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TimeoutError(), "timeout"),
        (ConnackRefused(5), "connack 5"),
        (ConnectionRefusedError(111, "refused"), "tcp refused"),
        (ConnectionResetError(104, "reset"), "reset"),
        (ConnectionError("closed before CONNACK"), "closed before CONNACK"),
        (OSError(24, "Too many open files"), "os: EMFILE"),
        (ValueError("x"), "ValueError"),
    ],
)
def test_error_kinds(exc: BaseException, kind: str) -> None:
    assert calc.error_kind(exc) == kind


def test_tls_errors_are_named_by_their_reason() -> None:
    error = ssl.SSLError(1, "[SSL: TLSV1_ALERT_UNKNOWN_CA] tlsv1 alert unknown ca")
    error.reason = "TLSV1_ALERT_UNKNOWN_CA"
    assert calc.error_kind(error) == "tls: TLSV1_ALERT_UNKNOWN_CA"


# --- /proc -------------------------------------------------------------------------------------


def test_proc_readers() -> None:
    status = "Name:\tmosquitto\nVmPeak:\t  99 kB\nVmRSS:\t   12720 kB\nThreads:\t1\n"
    assert calc.vmrss_kib(status) == 12720
    with pytest.raises(ValueError, match="VmRSS"):
        calc.vmrss_kib("Name:\tzombie\n")
    stat = "4242 (python3 -m (x)) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 20 0 1 0"
    assert calc.cpu_ticks(stat) == 175
    proc_stat = "cpu  100 5 50 1000 20 3 2 0 7 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
    assert calc.machine_busy_ticks(proc_stat) == 100 + 5 + 50 + 3 + 2 + 0


# --- figures -----------------------------------------------------------------------------------


def _report(
    connected: int, *, started: float, finished: float, errors: dict[str, int]
) -> WorkerReport:
    return WorkerReport(
        connected=connected,
        errors=errors,
        handshake_ms=[10.0] * connected,
        connack_ms=[float(i + 1) for i in range(connected)],
        started=started,
        finished=finished,
        rss_kib=30_000,
        cpu_s=1.5,
    )


def test_broker_figures_from_two_workers() -> None:
    reports = [
        _report(2500, started=100.0, finished=110.0, errors={}),
        _report(2490, started=100.5, finished=112.5, errors={"timeout": 7, "reset": 3}),
    ]
    figures = calc.broker_figures(
        kind="amqtt",
        requested=5000,
        reports=reports,
        rss_before_kib=60_000,
        rss_after_kib=60_000 + 4990 * 100,
        cpu_seconds=24.95,
        machine_busy_s=30.0,
        open_fds=5010,
    )
    assert figures["connected"] == 4990
    assert figures["failed"] == 10
    assert figures["errors"] == {"timeout": 7, "reset": 3}
    assert figures["elapsed_s"] == 12.5
    assert figures["handshakes_per_s"] == round(4990 / 12.5, 1)
    assert figures["kib_per_connection"] == 100.0
    assert figures["cpu_ms_per_handshake"] == 5.0
    assert figures["cpu_s"] == {
        "broker": 24.95,
        "clients": 3.0,
        "others": 2.05,
        "machine_busy": 30.0,
    }
    assert figures["p50_ms"] == figures["connack_ms"]["p50_ms"]
    assert figures["handshake_ms"]["count"] == 4990
    assert figures["client_rss_kib"] == [30_000, 30_000]
    projection = figures["projection_1m"]
    assert projection["memory_gib"] == round(100 * 1e6 / 1024**2, 1)
    assert projection["file_descriptors"] == 1_000_000 + calc.FD_OVERHEAD
    assert projection["reconnect_all_s"] == round(1e6 / (4990 / 12.5))
    assert projection["handshake_cpu_core_s"] == 5000


def test_nothing_connected_gives_no_numbers_but_valid_json() -> None:
    figures = calc.broker_figures(
        kind="mosquitto",
        requested=10,
        reports=[_report(0, started=1.0, finished=2.0, errors={"tls: X": 10})],
        rss_before_kib=1,
        rss_after_kib=1,
        cpu_seconds=0.0,
        machine_busy_s=0.0,
        open_fds=None,
    )
    safe = calc.json_safe(figures)
    assert safe["kib_per_connection"] is None
    assert safe["projection_1m"]["memory_gib"] is None
    assert safe["p50_ms"] is None
    assert "no memory projection" in calc.projection_note("mosquitto", safe, fd_hard_limit=20_000)


@given(
    kib=st.floats(min_value=1, max_value=1000),
    rate=st.floats(min_value=1, max_value=1e5),
    cpu_ms=st.floats(min_value=0.01, max_value=100),
)
def test_projection_scales_linearly(kib: float, rate: float, cpu_ms: float) -> None:
    one = calc.projection(
        kib_per_connection=kib, handshakes_per_s=rate, cpu_ms_per_handshake=cpu_ms
    )
    assert one["memory_gib"] == round(kib * 1e6 / 1024**2, 1)
    assert one["reconnect_all_s"] == round(1e6 / rate)
    assert one["handshake_cpu_core_s"] == round(cpu_ms * 1000)
    note = calc.projection_note("amqtt", {"projection_1m": one}, fd_hard_limit=20_000)
    assert note.startswith(f"amqtt: 1M idle vehicles need ~{one['memory_gib']} GiB")
    assert "20,000" in note


def test_ratio_or_none() -> None:
    assert calc.ratio_or_none(116.0, 58.0) == 2.0
    assert calc.ratio_or_none(1, 0) is None
    assert calc.ratio_or_none(None, 1.0) is None
    assert calc.ratio_or_none(math.nan, 1.0) is None
    assert calc.ratio_or_none(True, 1.0) is None


def test_json_safe_replaces_non_finite_floats_everywhere() -> None:
    value = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (2, "x")}
    assert calc.json_safe(value) == {"a": None, "b": [1.0, None, {"c": None}], "d": [2, "x"]}
