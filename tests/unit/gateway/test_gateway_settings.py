"""Gateway settings: environment, command line, one-line errors; uplink subscriptions."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetgate.errors import UserError
from gateway.cli import load_settings, parse_slice
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


def test_slices_name_their_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLEETGATE_MQTT__CLIENT_NAME", "FLEETGATE_GATEWAY__SHARED_GROUP"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLEETGATE_GATEWAY__SLICES", "3")
    monkeypatch.setenv("FLEETGATE_GATEWAY__SLICE", "2")
    settings = load_settings()
    assert (settings.gateway.slice, settings.gateway.slices) == (2, 3)
    assert settings.certificate_name == settings.client_id == "gateway-2"
    # the command line wins over the environment, and still names the certificate
    settings = load_settings(slice_=(1, 2))
    assert (settings.gateway.slice, settings.gateway.slices) == (1, 2)
    assert settings.client_id == "gateway-1"
    monkeypatch.setenv("FLEETGATE_MQTT__CLIENT_NAME", "uplink-east")
    assert load_settings().client_id == "uplink-east"
    # a plain subscription: every instance sees every message and keeps its slice
    assert subscriptions(settings) == [(f, 1) for f in uplink_filters()]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"slice": 2, "slices": 2}, "slice 2 does not exist"),
        ({"slice": -1}, "slice"),
        ({"slices": 0}, "slices"),
        ({"slices": 2, "shared_group": "gw"}, "do not combine"),
    ],
)
def test_bad_slices_are_one_line(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, object], words: str
) -> None:
    monkeypatch.delenv("FLEETGATE_GATEWAY__SHARED_GROUP", raising=False)
    for key, value in values.items():
        monkeypatch.setenv(f"FLEETGATE_GATEWAY__{key.upper()}", str(value))
    with pytest.raises(UserError) as info:
        load_settings()
    assert words in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["1", "a/2", "1/", "/2", "1/2/3", "-1/2"])
def test_bad_slice_option_is_one_line(text: str) -> None:
    with pytest.raises(UserError) as info:
        parse_slice(text)
    assert "K/N" in str(info.value)


def test_slice_option() -> None:
    assert parse_slice("0/2") == (0, 2)
    assert parse_slice(" 3 / 4 ") == (3, 4)
