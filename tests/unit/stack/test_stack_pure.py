from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetgate.errors import UserError
from fleetgate.stack import kafka, maven, prereq, runstate

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("output", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_381"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ("no java here", None),
    ],
)
def test_parse_java_major(output: str, major: int | None) -> None:
    assert prereq.parse_java_major(output) == major


def test_pom_lists_every_coordinate() -> None:
    pom = maven.pom_xml(name="kafka", coordinates=["a.b:c:1", "d:e_2.13:4.1.1"])
    assert "<groupId>a.b</groupId><artifactId>c</artifactId><version>1</version>" in pom
    assert "<artifactId>e_2.13</artifactId>" in pom


@given(st.text(alphabet="abc:", max_size=12).filter(lambda s: s.count(":") != 2 or "::" in s))
def test_pom_rejects_malformed_coordinates(coordinate: str) -> None:
    if coordinate.count(":") == 2 and all(coordinate.split(":")):
        return
    with pytest.raises(ValueError, match="group:artifact:version"):
        maven.pom_xml(name="x", coordinates=[coordinate])


def _entry(tmp_path: Path) -> Path:
    lib = tmp_path / "svc" / "lib"
    lib.mkdir(parents=True)
    (lib / "a.jar").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    maven.write_manifest(tmp_path / "svc", coordinates=["g:a:1"])
    return tmp_path / "svc"


def test_cache_verifies_and_detects_corruption(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    assert maven.verify(entry, coordinates=["g:a:1"], deep=True) is None
    assert maven.verify(entry, coordinates=["g:a:2"]) == "resolved for other versions"
    (entry / "lib" / "a.jar").write_bytes(b"garbage")
    assert maven.verify(entry, coordinates=["g:a:1"]) == "a.jar has the wrong size"
    with pytest.raises(UserError, match=r"corrupt: a\.jar has the wrong size"):
        maven.resolve(name="svc", coordinates=["g:a:1"], cache_dir=tmp_path)


def test_cache_entry_missing_jar(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    (entry / "lib" / "a.jar").unlink()
    assert maven.verify(entry, coordinates=["g:a:1"]) == "a.jar is missing"


def test_cache_entry_bad_manifest(tmp_path: Path) -> None:
    entry = _entry(tmp_path)
    (entry / maven.MANIFEST).write_text("{not json")
    assert (maven.verify(entry, coordinates=["g:a:1"]) or "").startswith("manifest unreadable")


def test_taken_port_is_refused_with_the_setting_name() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(UserError, match=f"port {port} .*FLEETGATE_KAFKA_PORT"):
            prereq.require_free_ports({"FLEETGATE_KAFKA_PORT": ("127.0.0.1", port)})


def test_server_properties_single_node_kraft(tmp_path: Path) -> None:
    text = kafka.server_properties(data_dir=tmp_path, host="127.0.0.1", port=1, controller_port=2)
    props = dict(line.split("=", 1) for line in text.splitlines() if line)
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:2"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:1"
    assert props["offsets.topic.replication.factor"] == "1"


def test_runstate_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "run" / "stack.json"
    state = runstate.RunState(pid=1, started_at=2.0, broker="amqtt")
    state.components["kafka"] = runstate.ComponentState(name="kafka", pid=3, endpoint="h:1")
    runstate.write(path, state)
    assert runstate.read(path) == state
    assert json.loads(path.read_text())["components"]["kafka"]["pid"] == 3
    runstate.remove(path)
    assert runstate.read(path) is None
