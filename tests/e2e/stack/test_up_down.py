"""`fleetgate up` brings up Kafka, Cassandra and a broker; `status` reports each with its
version; `down` (or Ctrl-C) stops everything and leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetgate.stack import prereq

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FLEETGATE = str(Path(sys.executable).with_name("fleetgate"))


def _processes_mentioning(needle: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
        except (OSError, IndexError):
            continue
        if needle in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline[:120]}")
    return found


@pytest.fixture(scope="module", params=["amqtt", "mosquitto"])
def stack_env(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp(f"stack-{request.param}") / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")}
    env.update(
        FLEETGATE_HOME=str(home),
        FLEETGATE_BROKER_KIND=str(request.param),
        FLEETGATE_CASSANDRA_HEAP_MB="768",
        FLEETGATE_LOG_FORMAT="json",
    )
    for name in (
        "BROKER",
        "KAFKA",
        "KAFKA_CONTROLLER",
        "CASSANDRA",
        "CASSANDRA_STORAGE",
        "GATEWAY_METRICS",
        "PROCESSORS_METRICS",
        "PROCESSORS_STATE_METRICS",
    ):
        env[f"FLEETGATE_{name}_PORT"] = str(prereq.free_port())
    yield env
    subprocess.run([FLEETGATE, "down"], env=env, capture_output=True, timeout=120, check=False)


def _start(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [FLEETGATE, "up", "--vehicles", "0"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _wait_healthy(env: dict[str, str], up: subprocess.Popen[bytes], log: Path) -> dict[str, object]:
    deadline = time.monotonic() + 300
    last = ""
    while time.monotonic() < deadline:
        assert up.poll() is None, f"fleetgate up exited {up.returncode}: {log.read_text()[-2000:]}"
        proc = subprocess.run(
            [FLEETGATE, "status", "--json"], env=env, capture_output=True, text=True, timeout=60
        )
        last = proc.stdout + proc.stderr
        if proc.returncode == 0:
            report: dict[str, object] = json.loads(proc.stdout)
            return report
        time.sleep(2)
    raise AssertionError(f"stack not healthy in time: {last}\n{log.read_text()[-2000:]}")


def test_up_status_down_then_ctrl_c(stack_env: dict[str, str], tmp_path: Path) -> None:
    home = stack_env["FLEETGATE_HOME"]
    up = _start(stack_env, tmp_path / "up1.log")
    try:
        report = _wait_healthy(stack_env, up, tmp_path / "up1.log")
    except BaseException:
        up.send_signal(signal.SIGINT)
        up.wait(timeout=120)
        raise
    components = {c["name"]: c for c in report["components"]}  # type: ignore[attr-defined]
    broker = f"broker ({stack_env['FLEETGATE_BROKER_KIND']})"
    workers = {"processors-commands", "processors-state"}  # the recommended layout
    assert {"kafka", "cassandra", broker, "gateway", *workers} <= set(components)
    assert components["kafka"]["version"].startswith("4.")
    assert components["cassandra"]["detail"].startswith("release 5.0.")
    assert all(c["healthy"] for c in components.values())

    down = subprocess.run(
        [FLEETGATE, "down"], env=stack_env, capture_output=True, text=True, timeout=180
    )
    assert down.returncode == 0, down.stderr
    assert up.wait(timeout=120) == 0
    assert _processes_mentioning(home) == []
    status = subprocess.run([FLEETGATE, "status"], env=stack_env, capture_output=True, timeout=60)
    assert status.returncode == 1

    # warm start from the cache and the existing data, stopped with Ctrl-C this time
    started = time.monotonic()
    up = _start(stack_env, tmp_path / "up2.log")
    _wait_healthy(stack_env, up, tmp_path / "up2.log")
    warm_s = time.monotonic() - started
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=180) == 0
    assert _processes_mentioning(home) == []
    print(f"warm start to healthy: {warm_s:.1f}s")
