"""A local Apache Cassandra node without Docker: configuration, command line, readiness.

The jars of ``cassandra-all`` and its runtime dependencies come from Maven (a ``lib_dir``);
the configuration the jar does not ship (``cassandra.yaml``, ``logback.xml``, the Java 17
flags) is rendered from the templates in :mod:`fleetgate.stack.cassandra_conf`. The node runs
in the foreground; a supervisor spawns :func:`command`, captures its output and stops it with
SIGTERM (Cassandra drains on SIGTERM), then SIGKILL.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from fleetgate.errors import ServiceUnavailable, UserError

CASSANDRA_VERSION = "5.0.6"
MAVEN_COORDINATES = ("org.apache.cassandra:cassandra-all:5.0.6",)
MAIN_CLASS = "org.apache.cassandra.service.CassandraDaemon"

_TEMPLATES = "fleetgate.stack.cassandra_conf"
_JVM_OPTIONS = "jvm17-server.options"
_WILDCARD = "0.0.0.0"  # noqa: S104 - only when the user asks for it
_MIN_HEAP_MB = 256


@dataclass(frozen=True, slots=True)
class Addresses:
    """Where the node listens: gossip (``listen``), CQL (``rpc``), and what it tells clients."""

    listen: str
    rpc: str
    broadcast_rpc: str | None


def addresses(host: str) -> Addresses:
    """Map the host the user wants CQL on to Cassandra's three address settings.

    Cassandra cannot gossip on a wildcard address: with ``0.0.0.0`` CQL listens everywhere,
    gossip stays on the loopback and the node advertises the loopback to drivers.
    """
    if host == _WILDCARD:
        return Addresses(listen="127.0.0.1", rpc=host, broadcast_rpc="127.0.0.1")
    return Addresses(listen=host, rpc=host, broadcast_rpc=None)


def _check_host(host: str) -> str:
    """An IPv4 address or a host name (the node runs with ``java.net.preferIPv4Stack``)."""
    host = host.strip()
    try:
        if ipaddress.ip_address(host).version == 4:
            return host
    except ValueError:
        labels = host.split(".")
        if 0 < len(host) <= 253 and all(
            0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
            for label in labels
        ):
            return host
    raise UserError(f"invalid Cassandra host: {host!r} (an IPv4 address or a host name)")


def _check_port(name: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise UserError(f"invalid Cassandra {name}: {port} (expected 1..65535)")


def render_config(
    template: str,
    *,
    data_dir: Path,
    host: str,
    cql_port: int,
    storage_port: int,
    cluster_name: str,
) -> str:
    """The text of ``cassandra.yaml`` for one node (pure)."""
    host = _check_host(host)
    _check_port("CQL port", cql_port)
    _check_port("storage port", storage_port)
    if cql_port == storage_port:
        raise UserError(f"Cassandra CQL and storage ports must differ (both {cql_port})")
    if not cluster_name or not all(c.isalnum() or c in "-_ ." for c in cluster_name):
        raise UserError(f"invalid Cassandra cluster name: {cluster_name!r}")
    if any(c in str(data_dir) for c in "'\"\n$#"):
        raise UserError(f"unsupported characters in the Cassandra data directory: {data_dir}")
    addr = addresses(host)
    broadcast = (
        f"broadcast_rpc_address: {addr.broadcast_rpc}" if addr.broadcast_rpc is not None else ""
    )
    return Template(template).substitute(
        cluster_name=cluster_name,
        listen_address=addr.listen,
        rpc_address=addr.rpc,
        broadcast_rpc_line=broadcast,
        storage_port=storage_port,
        cql_port=cql_port,
        data_dir=str(data_dir),
    )


def parse_jvm_options(text: str) -> list[str]:
    """The flags of a ``jvm*.options`` file: one per line, ``#`` comments and blanks skipped."""
    flags: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            flags.append(line)
    return flags


def build_command(
    *,
    java: str,
    jars: list[Path],
    jvm_options: list[str],
    conf_dir: Path,
    data_dir: Path,
    heap_mb: int,
    jmx_port: int | None = None,
    prefix: tuple[str, ...] = (),
    quick_jit: bool = True,
) -> list[str]:
    """The full argv of the node from its already-listed jars and JVM flags (pure).

    ``prefix`` goes before ``java`` (a wrapper that ``exec``s it, keeping the process id).
    ``quick_jit`` compiles with C1 only (``-XX:TieredStopAtLevel=1``): a fresh node's C2
    compiler threads otherwise take most of a core for minutes (measured on 2 cores: 5.7 of
    9.8 CPU-seconds during 6,000 inserts; 1.0-1.6 ms of CPU per insert with C2 at work, 0.46-0.5
    ms with C1 only), which a small machine shared with Kafka and the services cannot spare.
    """
    if heap_mb < _MIN_HEAP_MB:
        raise UserError(f"Cassandra heap too small: {heap_mb} MiB (at least {_MIN_HEAP_MB})")
    cassandra_jars = [j for j in jars if j.name.startswith("cassandra-all-")]
    if not cassandra_jars:
        raise UserError("no cassandra-all jar in the Cassandra lib directory")
    jamm = [j for j in jars if j.name.startswith("jamm-") and j.suffix == ".jar"]
    argv = [*prefix, java, f"-Xms{heap_mb}m", f"-Xmx{heap_mb}m", *jvm_options]
    if quick_jit:
        argv.append("-XX:TieredStopAtLevel=1")
    if jamm:
        argv.append(f"-javaagent:{jamm[0]}")
    if jmx_port is not None:
        _check_port("JMX port", jmx_port)
        argv.append(f"-Dcassandra.jmx.local.port={jmx_port}")  # loopback only, no auth needed
    logs = data_dir / "logs"
    argv += [
        f"-Dcassandra.config={(conf_dir / 'cassandra.yaml').resolve().as_uri()}",
        f"-Dlogback.configurationFile={(conf_dir / 'logback.xml').resolve()}",
        f"-Dcassandra.logdir={logs}",
        f"-Dcassandra.storagedir={data_dir}",
        f"-Dcassandra.triggers_dir={conf_dir / 'triggers'}",
        f"-XX:HeapDumpPath={logs}",
        "-cp",
        ":".join([str(conf_dir), *(str(j) for j in jars)]),
        MAIN_CLASS,
    ]
    return argv


def _no_mlock_prefix() -> tuple[str, ...]:
    """Cassandra ``mlockall``s its whole address space at start when it may: as root that
    pins the committed heap (~1.5 GiB resident) and costs ~5 s of start. Drop CAP_IPC_LOCK so
    the call fails with a warning, as it does for any user under the default memlock limit."""
    if os.geteuid() == 0 and (setpriv := shutil.which("setpriv")):
        return (setpriv, "--bounding-set=-ipc_lock", "--")
    return ()


def _template(name: str) -> str:
    return resources.files(_TEMPLATES).joinpath(name).read_text(encoding="utf-8")


def write_config(
    *,
    conf_dir: Path,
    data_dir: Path,
    host: str,
    cql_port: int,
    storage_port: int,
    cluster_name: str = "fleetgate",
) -> None:
    """Write ``cassandra.yaml`` and ``logback.xml`` into ``conf_dir``; create ``data_dir``.

    Safe to call before every start: the files are rewritten, the data is left alone.
    """
    data_dir = data_dir.resolve()
    text = render_config(
        _template("cassandra.yaml"),
        data_dir=data_dir,
        host=host,
        cql_port=cql_port,
        storage_port=storage_port,
        cluster_name=cluster_name,
    )
    (conf_dir / "triggers").mkdir(parents=True, exist_ok=True)  # else a warning per DDL
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    (conf_dir / "cassandra.yaml").write_text(text, encoding="utf-8")
    (conf_dir / "logback.xml").write_text(_template("logback.xml"), encoding="utf-8")


def command(
    *,
    java: str,
    lib_dir: Path,
    conf_dir: Path,
    data_dir: Path,
    heap_mb: int = 1024,
    jmx_port: int | None = None,
    quick_jit: bool = True,
) -> list[str]:
    """The argv that runs the node in the foreground (JMX off unless ``jmx_port`` is given;
    ``quick_jit``: see :func:`build_command`)."""
    if not lib_dir.is_dir():
        raise UserError(f"Cassandra lib directory not found: {lib_dir}")
    jars = sorted(p.resolve() for p in lib_dir.glob("*.jar"))
    return build_command(
        java=java,
        jars=jars,
        jvm_options=parse_jvm_options(_template(_JVM_OPTIONS)),
        conf_dir=conf_dir.resolve(),
        data_dir=data_dir.resolve(),
        heap_mb=heap_mb,
        jmx_port=jmx_port,
        prefix=_no_mlock_prefix(),
        quick_jit=quick_jit,
    )


def _query_version(host: str, port: int, timeout_s: float) -> str:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=timeout_s)
    cluster = Cluster(
        contact_points=[host],
        port=port,
        protocol_version=5,
        connect_timeout=timeout_s,
        control_connection_timeout=timeout_s,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
    )
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        return str(row.release_version)
    finally:
        cluster.shutdown()


async def wait_ready(*, host: str, port: int, timeout_s: float) -> str:
    """Wait until the node answers CQL; return its ``release_version``.

    Raises :class:`ServiceUnavailable` with the last failure when ``timeout_s`` passes.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServiceUnavailable(
                f"Cassandra at {host}:{port} not ready after {timeout_s:.0f}s: {last}"
            )
        try:
            return await asyncio.to_thread(_query_version, host, port, min(5.0, max(left, 0.5)))
        except Exception as exc:  # the driver raises many kinds while the node starts
            last = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        await asyncio.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
