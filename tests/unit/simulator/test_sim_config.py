"""Error kinds, settings, worker split, broker addresses, the load primitive's pure parts."""

from __future__ import annotations

import errno
import json
import socket
import ssl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetgate.errors import UserError
from schemas.telemetry import Telemetry
from simulator.bench import parse_params
from simulator.cli import load_settings
from simulator.codec import PUBACK, Ack, ProtocolError, Publish
from simulator.errors import (
    CertificateMissing,
    ClosedBeforeConnack,
    ConnectRefused,
    SubscribeRefused,
    classify,
)
from simulator.load import flood_packets, flood_payload, scan_pubacks
from simulator.parser import PacketReader
from simulator.settings import SimOptions, split, worker_count
from simulator.tls import parse_broker

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ConnectionRefusedError(), "connect_refused"),
        (TimeoutError(), "timeout"),
        (ssl.SSLCertVerificationError(1, "verify failed"), "tls_verify_failed"),
        (ssl.SSLError(1, "tlsv13 alert certificate required"), "tls_error"),
        (ConnectRefused(5), "not_authorized"),
        (ConnectRefused(2), "identifier_rejected"),
        (ConnectRefused(3), "server_unavailable"),
        (ConnectRefused(42), "connack_42"),
        (ClosedBeforeConnack("x"), "closed_by_broker"),
        (ConnectionResetError(), "closed_by_broker"),
        (socket.gaierror(-2, "Name or service not known"), "dns_error"),
        (OSError(errno.EHOSTUNREACH, "no route"), "unreachable"),
        (OSError(errno.EMFILE, "too many"), "fd_limit"),
        (OSError(errno.EACCES, "denied"), "os_error"),
        (ProtocolError("bad"), "protocol_error"),
        (SubscribeRefused(), "subscribe_refused"),
        (CertificateMissing(), "cert_missing"),
        (RuntimeError(), "internal_error"),
    ],
)
def test_error_kinds(exc: BaseException, kind: str) -> None:
    assert classify(exc) == kind


@settings(deadline=None)
@given(vehicles=st.integers(1, 200_000), requested=st.integers(0, 8), cpus=st.integers(1, 16))
def test_workers_cover_the_fleet_within_the_per_process_limit(
    vehicles: int, requested: int, cpus: int
) -> None:
    workers = worker_count(vehicles, requested=requested, max_per_worker=15_000, cpus=cpus)
    shares = split(range(5, 5 + vehicles), workers)
    assert sorted(n for share in shares for n in share) == list(range(5, 5 + vehicles))
    assert max(len(share) for share in shares) <= 15_000
    assert min(len(share) for share in shares) >= 1
    if requested == 0 and vehicles >= cpus:
        assert workers >= cpus


def test_broker_addresses() -> None:
    assert parse_broker("127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert parse_broker("broker.example") == ("broker.example", 8883)
    assert parse_broker("[::1]:9") == ("::1", 9)
    for bad in ("host:x", "host:0", ":1", "h:70000"):
        with pytest.raises(ValueError, match="broker"):
            parse_broker(bad)


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        SimOptions(profile="racing")
    with pytest.raises(ValueError, match="low <= high"):
        SimOptions(command_latency_ms=(5, 1))
    assert SimOptions(profile="flood").flood


def test_cli_settings_give_one_line_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETGATE_SIM__RATE_HZ", "5")
    settings = load_settings(vehicles=3)
    assert settings.sim.vehicles == 3
    assert settings.sim.rate_hz == 5
    with pytest.raises(UserError, match="vehicles"):
        load_settings(vehicles=0)
    with pytest.raises(UserError, match="broker"):
        load_settings(broker="nowhere:99999")


def test_scan_pubacks_stops_at_anything_else() -> None:
    data = b"\x40\x02\x00\x01\x40\x02\x01\x00\xd0\x00\x40\x02\x00\x03"
    assert scan_pubacks(data) == ([1, 256], 8)
    assert scan_pubacks(b"\x40\x02\x00") == ([], 0)


def test_flood_packets_are_ordinary_publishes() -> None:
    payload = flood_payload(3, size=0, ts_ms=1)
    qos1 = flood_packets("vehicles/V/telemetry", payload, qos=1, window=4)
    assert len(qos1) == 5
    assert qos1[0] == b""
    packets = PacketReader().feed(b"".join(qos1[1:]))
    assert [p.packet_id for p in packets if isinstance(p, Publish)] == [1, 2, 3, 4]
    qos0 = flood_packets("vehicles/V/telemetry", payload, qos=0, window=4)
    assert len(PacketReader().feed(qos0[0])) == 4
    assert not isinstance(packets[0], Ack) or packets[0].kind != PUBACK


@settings(deadline=None)
@given(size=st.integers(0, 5000))
def test_flood_payload_is_valid_telemetry_of_about_the_size(size: int) -> None:
    payload = flood_payload(7, size=size, ts_ms=1_700_000_000_000)
    Telemetry.model_validate_json(payload)
    assert len(payload) >= min(size, len(payload))
    assert len(payload) <= max(size, 600)
    assert json.loads(payload)["seq"] == 0


def test_bench_params() -> None:
    assert parse_params({})["window"] == 64
    assert parse_params({"vehicles": "8", "baseline": "none"})["vehicles"] == 8
    with pytest.raises(UserError, match="unknown parameter"):
        parse_params({"speed": "1"})
    with pytest.raises(UserError, match="not an integer"):
        parse_params({"window": "x"})
    with pytest.raises(UserError, match="from 1 to"):
        parse_params({"duration": "0"})
    with pytest.raises(UserError, match="qos0 or none"):
        parse_params({"baseline": "mqtt5"})
