"""``fleetgate bench connect`` end to end on both real brokers, with a few vehicles."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from broker.bench import run
from fleetgate.bench.report import build
from fleetgate.errors import UserError

pytestmark = pytest.mark.integration

FIGURES = {
    "broker",
    "connections",
    "connected",
    "failed",
    "errors",
    "elapsed_s",
    "handshakes_per_s",
    "p50_ms",
    "p99_ms",
    "connack_ms",
    "handshake_ms",
    "rss_before_kib",
    "rss_after_kib",
    "kib_per_connection",
    "cpu_ms_per_handshake",
    "cpu_s",
    "broker_open_fds",
    "client_rss_kib",
    "projection_1m",
    "load_avg_1m",
}


def _children() -> dict[str, str]:
    """This process's children (pid: command line), except multiprocessing's own helpers."""
    me = str(os.getpid())
    found: dict[str, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ppid = stat[stat.rindex(")") + 2 :].split()[1]
        if ppid == me and "resource_tracker" not in cmdline and "forkserver" not in cmdline:
            found[entry] = cmdline
    return found


@pytest.mark.timeout(120)
async def test_connect_scenario_measures_both_brokers(tmp_path: Path) -> None:
    params = {"connections": "50", "cache": str(tmp_path / "cache"), "settle_s": "0.2"}
    before = _children()  # e.g. the conformance suite's brokers
    outcome = await run(params)
    report = build(scenario="connect", outcome=outcome)
    text = json.dumps(report, allow_nan=False)  # valid JSON: no NaN anywhere
    assert json.loads(text)["scenario"] == "connect"
    assert report["params"]["connections"] == 50
    assert report["headline"] == "kib_per_connection"
    result, baseline = report["result"], report["baseline"]
    assert (result["broker"], baseline["broker"]) == ("amqtt", "mosquitto")
    for figures in (result, baseline):
        assert set(figures) >= FIGURES
        assert figures["connected"] == 50, figures["errors"]
        assert figures["failed"] == 0
        assert figures["rss_after_kib"] > figures["rss_before_kib"] > 0
        assert figures["kib_per_connection"] > 0
        assert figures["handshakes_per_s"] > 0
        assert figures["broker_open_fds"] >= 50
        assert figures["projection_1m"]["file_descriptors"] > 1_000_000
    assert isinstance(report["ratio"], float)
    assert set(result["vs_baseline"]) == {
        "kib_per_connection",
        "handshakes_per_s",
        "cpu_ms_per_handshake",
    }
    assert report["versions"]["mosquitto"]
    left = {pid: cmd for pid, cmd in _children().items() if pid not in before}
    assert left == {}  # the bench's brokers and client workers are gone
    # the second run reuses the cached certificates
    assert len(list((tmp_path / "cache" / "pki" / "vehicles").glob("*.pem"))) == 50


async def test_one_broker_has_no_baseline(tmp_path: Path) -> None:
    params = {
        "connections": "4",
        "workers": "1",
        "brokers": "mosquitto",
        "cache": str(tmp_path / "cache"),
        "settle_s": "0",
    }
    report = build(scenario="connect", outcome=await run(params))
    assert report["result"]["broker"] == "mosquitto"
    assert report["result"]["connected"] == 4
    assert report["baseline"] is None
    assert report["ratio"] is None


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"connections": "lots"}, "is not an integer"),
        ({"speed": "9"}, "unknown parameter 'speed'"),
        ({"connections": "1000000"}, "ulimit -Hn"),
    ],
)
async def test_bad_parameters_are_one_line_user_errors(params: dict[str, str], needle: str) -> None:
    with pytest.raises(UserError) as caught:
        await run(params)
    assert needle in str(caught.value)
    assert "\n" not in str(caught.value)
