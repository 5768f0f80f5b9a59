"""compose.yaml serves users with a Docker engine: checked by `docker compose config` where the
docker CLI has the compose plugin, and structurally everywhere."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]


def _compose_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    proc = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    return proc.returncode == 0


@pytest.mark.skipif(not _compose_available(), reason="no docker CLI with the compose plugin")
def test_docker_compose_config_accepts_it() -> None:
    proc = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "compose.yaml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_compose_has_the_stack() -> None:
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = doc["services"]
    assert {"kafka", "cassandra", "init", "broker", "gateway", "fleet"} <= set(services)
    roles = {s["command"][-1] for n, s in services.items() if n.startswith("processors")}
    assert roles == {"commands", "state"}  # the recommended worker layout
    assert "broker" in services["init"]["environment"]["FLEETGATE_PKI__SERVER_SANS"]
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["cassandra"]["image"].startswith("cassandra:5.0")
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
