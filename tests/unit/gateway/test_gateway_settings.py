"""Gateway settings: environment, command line, one-line errors; uplink subscriptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetgate.errors import UserError
from gateway.cli import load_settings
from gateway.service import subscriptions
from gateway.settings import GatewaySettings
from schemas.topics import uplink_filters

pytestmark = pytest.mark.unit


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLEETGATE_HOME", "FLEETGATE_GATEWAY__SHARED_GROUP"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.mqtt.client_name == "gateway"
    assert settings.client_id == "gateway"
    assert settings.gateway.shared_group is None
    assert subscriptions(settings) == [(f, 1) for f in uplink_filters()]


def test_environment_then_command_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FLEETGATE_GATEWAY__SHARED_GROUP", "from-env")
    monkeypatch.setenv("FLEETGATE_GATEWAY__MAX_INFLIGHT", "64")
    monkeypatch.setenv("FLEETGATE_KAFKA__BOOTSTRAP", "kafka:9093")
    monkeypatch.setenv("FLEETGATE_LOG_LEVEL", "DEBUG")
    settings = load_settings(home=tmp_path, client_id="gw-7", metrics_port=0)
    assert settings.gateway.shared_group == "from-env"
    assert settings.gateway.max_inflight == 64
    assert settings.kafka.bootstrap == "kafka:9093"
    assert settings.log_level == "DEBUG"
    assert (settings.home, settings.client_id, settings.gateway.metrics_port) == (
        tmp_path,
        "gw-7",
        0,
    )
    assert load_settings(shared_group="cli").gateway.shared_group == "cli"


def test_shared_subscriptions() -> None:
    settings = GatewaySettings(gateway={"shared_group": "gw"})
    assert subscriptions(settings) == [(f"$share/gw/{f}", 1) for f in uplink_filters()]
    assert GatewaySettings(gateway={"shared_group": ""}).gateway.shared_group is None


@pytest.mark.parametrize(
    ("env", "value", "words"),
    [
        ("FLEETGATE_GATEWAY__SHARED_GROUP", "a/b", "shared_group"),
        ("FLEETGATE_GATEWAY__MAX_INFLIGHT", "0", "max_inflight"),
        ("FLEETGATE_GATEWAY__METRICS_PORT", "70000", "metrics_port"),
        ("FLEETGATE_GATEWAY__PROTOCOL", "4", "protocol"),
    ],
)
def test_bad_settings_are_one_line(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, words: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(UserError) as info:
        load_settings()
    message = str(info.value)
    assert words in message
    assert env in message
    assert "\n" not in message
