"""The real `fleetgate` command on a broken machine: one line, non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fleetgate.stack import kafka, prereq

pytestmark = pytest.mark.integration

FLEETGATE = str(Path(sys.executable).with_name("fleetgate"))


def _free_ports_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")}
    env["FLEETGATE_HOME"] = str(tmp_path / "home")
    for name in (
        "BROKER_PORT",
        "KAFKA_PORT",
        "KAFKA_CONTROLLER_PORT",
        "CASSANDRA_PORT",
        "CASSANDRA_STORAGE_PORT",
        "GATEWAY_METRICS_PORT",
        "PROCESSORS_METRICS_PORT",
        "PROCESSORS_STATE_METRICS_PORT",
    ):
        env[f"FLEETGATE_{name}"] = str(prereq.free_port())
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FLEETGATE, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]


def test_port_already_taken(tmp_path: Path) -> None:
    env = _free_ports_env(tmp_path)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        env["FLEETGATE_KAFKA_PORT"] = str(sock.getsockname()[1])
        proc = _run(["up", "--vehicles", "0"], env)
    _one_line_error(proc, "already in use")
    assert "FLEETGATE_KAFKA_PORT" in proc.stderr


def test_missing_java(tmp_path: Path) -> None:
    env = _free_ports_env(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("mvn", "mosquitto", "openssl"):
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    env["PATH"] = str(bin_dir)
    proc = _run(["up", "--vehicles", "0"], env)
    _one_line_error(proc, "Java is not installed")
    assert "apt-get install openjdk-17-jre-headless" in proc.stderr


def test_corrupt_cache(tmp_path: Path) -> None:
    env = _free_ports_env(tmp_path)
    cache = tmp_path / "cache"
    lib = cache / f"kafka-{kafka.KAFKA_VERSION}" / "lib"
    lib.mkdir(parents=True)
    (lib / "kafka-clients.jar").write_bytes(b"not a jar")
    manifest = {
        "coordinates": list(kafka.MAVEN_COORDINATES),
        "jars": {"kafka-clients.jar": {"size": 12345, "sha256": "0"}},
    }
    (lib.parent / "manifest.json").write_text(json.dumps(manifest))
    env["FLEETGATE_CACHE_DIR"] = str(cache)
    proc = _run(["up", "--vehicles", "0"], env)
    _one_line_error(proc, "is corrupt: kafka-clients.jar has the wrong size")


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    env = _free_ports_env(tmp_path)
    env["FLEETGATE_KAFKA_PORT"] = "not-a-port"
    proc = _run(["status"], env)
    _one_line_error(proc, "FLEETGATE_KAFKA_PORT")


def test_status_without_a_stack_exits_non_zero(tmp_path: Path) -> None:
    proc = _run(["status"], _free_ports_env(tmp_path))
    assert proc.returncode == 1
    assert "no stack is running" in proc.stdout
