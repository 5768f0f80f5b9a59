from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from fleetgate.errors import UserError
from fleetgate.stack import cassandra

pytestmark = pytest.mark.unit

TEMPLATE = resources.files("fleetgate.stack.cassandra_conf").joinpath("cassandra.yaml").read_text()
OPTIONS = resources.files("fleetgate.stack.cassandra_conf").joinpath("jvm17-server.options")


def _render(**overrides: object) -> dict[str, object]:
    kwargs: dict[str, object] = {
        "data_dir": Path("/var/fg/cassandra/data"),
        "host": "127.0.0.1",
        "cql_port": 9042,
        "storage_port": 7000,
        "cluster_name": "fleetgate",
    }
    kwargs.update(overrides)
    text = cassandra.render_config(TEMPLATE, **kwargs)  # type: ignore[arg-type]
    assert "$" not in text
    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


def test_config_puts_ports_addresses_and_directories_where_asked() -> None:
    conf = _render(cql_port=19042, storage_port=17000, cluster_name="tests")
    assert conf["cluster_name"] == "tests"
    assert conf["native_transport_port"] == 19042
    assert conf["storage_port"] == 17000
    assert conf["listen_address"] == conf["rpc_address"] == "127.0.0.1"
    assert "broadcast_rpc_address" not in conf
    seeds = conf["seed_provider"][0]["parameters"][0]["seeds"]  # type: ignore[index]
    assert seeds == "127.0.0.1:17000"
    assert conf["data_file_directories"] == ["/var/fg/cassandra/data/data"]
    for key in ("commitlog_directory", "hints_directory", "saved_caches_directory"):
        assert str(conf[key]).startswith("/var/fg/cassandra/data/")


def test_config_is_tuned_for_a_small_single_node() -> None:
    conf = _render()
    assert conf["num_tokens"] == 1
    assert conf["auto_snapshot"] is False
    assert conf["commitlog_sync"] == "periodic"
    assert conf["hinted_handoff_enabled"] is False
    assert conf["endpoint_snitch"] == "SimpleSnitch"


def test_wildcard_host_keeps_gossip_on_loopback() -> None:
    conf = _render(host="0.0.0.0")
    assert conf["rpc_address"] == "0.0.0.0"
    assert conf["listen_address"] == "127.0.0.1"
    assert conf["broadcast_rpc_address"] == "127.0.0.1"


def test_host_names_are_accepted() -> None:
    assert _render(host="localhost")["listen_address"] == "localhost"


@pytest.mark.parametrize("host", ["", "::1", "a b", "x'y", "-", "a..b", "é.example"])
def test_bad_hosts_are_user_errors(host: str) -> None:
    with pytest.raises(UserError, match="invalid Cassandra host"):
        _render(host=host)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cql_port": 0}, "invalid Cassandra CQL port"),
        ({"storage_port": 70000}, "invalid Cassandra storage port"),
        ({"cql_port": 7000, "storage_port": 7000}, "must differ"),
        ({"cluster_name": "a'b"}, "invalid Cassandra cluster name"),
        ({"data_dir": Path("/tmp/$HOME")}, "unsupported characters"),
    ],
)
def test_bad_values_are_user_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        _render(**overrides)


@given(st.integers(1, 65535), st.integers(1, 65535))
def test_any_distinct_ports_render(cql: int, storage: int) -> None:
    if cql == storage:
        return
    conf = _render(cql_port=cql, storage_port=storage)
    assert (conf["native_transport_port"], conf["storage_port"]) == (cql, storage)


def test_parse_jvm_options() -> None:
    text = "# comment\n\n-Xss256k\n  --add-opens=java.base/java.io=ALL-UNNAMED  \n#-XX:+Off\n"
    assert cassandra.parse_jvm_options(text) == [
        "-Xss256k",
        "--add-opens=java.base/java.io=ALL-UNNAMED",
    ]


def test_shipped_jvm_options_have_the_java17_module_flags_and_fast_start() -> None:
    flags = cassandra.parse_jvm_options(OPTIONS.read_text())
    assert "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED" in flags
    assert "--add-opens=java.base/java.nio=ALL-UNNAMED" in flags
    assert "-Dcassandra-foreground=yes" in flags
    assert "-Dcassandra.skip_wait_for_gossip_to_settle=0" in flags
    assert not any(f.startswith(("-Xmx", "-Xms", "-XX:+AlwaysPreTouch")) for f in flags)


def _jars() -> list[Path]:
    lib = Path("/opt/lib")
    return [lib / "cassandra-all-5.0.6.jar", lib / "guava-32.0.1-jre.jar", lib / "jamm-0.4.0.jar"]


def _argv(**overrides: object) -> list[str]:
    kwargs: dict[str, object] = {
        "java": "/usr/bin/java",
        "jars": _jars(),
        "jvm_options": ["-Xss256k"],
        "conf_dir": Path("/fg/conf"),
        "data_dir": Path("/fg/data"),
        "heap_mb": 512,
    }
    kwargs.update(overrides)
    return cassandra.build_command(**kwargs)  # type: ignore[arg-type]


def test_command_line() -> None:
    argv = _argv()
    assert argv[:4] == ["/usr/bin/java", "-Xms512m", "-Xmx512m", "-Xss256k"]
    assert argv[-1] == "org.apache.cassandra.service.CassandraDaemon"
    assert "-javaagent:/opt/lib/jamm-0.4.0.jar" in argv
    assert "-Dcassandra.config=file:///fg/conf/cassandra.yaml" in argv
    assert "-Dlogback.configurationFile=/fg/conf/logback.xml" in argv
    classpath = argv[argv.index("-cp") + 1].split(":")
    assert classpath[0] == "/fg/conf"
    assert "/opt/lib/cassandra-all-5.0.6.jar" in classpath
    assert not any("jmx" in a for a in argv)


def test_c1_only_unless_full_jit_is_asked_for() -> None:
    assert "-XX:TieredStopAtLevel=1" in _argv()
    assert not any(a.startswith("-XX:TieredStopAtLevel") for a in _argv(quick_jit=False))


def test_command_line_with_jmx_and_a_prefix() -> None:
    argv = _argv(jmx_port=17199, prefix=("setpriv", "--bounding-set=-ipc_lock", "--"))
    assert argv[:4] == ["setpriv", "--bounding-set=-ipc_lock", "--", "/usr/bin/java"]
    assert "-Dcassandra.jmx.local.port=17199" in argv


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"heap_mb": 128}, "heap too small"),
        ({"jars": [Path("/opt/lib/guava.jar")]}, "no cassandra-all jar"),
        ({"jmx_port": 0}, "invalid Cassandra JMX port"),
    ],
)
def test_bad_command_input_is_a_user_error(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        _argv(**overrides)


def test_command_without_lib_dir_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="lib directory not found"):
        cassandra.command(
            java="java", lib_dir=tmp_path / "nope", conf_dir=tmp_path, data_dir=tmp_path
        )


def test_write_config_writes_the_files(tmp_path: Path) -> None:
    conf, data = tmp_path / "conf", tmp_path / "data"
    cassandra.write_config(
        conf_dir=conf, data_dir=data, host="127.0.0.1", cql_port=1, storage_port=2
    )
    assert yaml.safe_load((conf / "cassandra.yaml").read_text())["native_transport_port"] == 1
    assert "<configuration" in (conf / "logback.xml").read_text()
    assert (data / "logs").is_dir()
