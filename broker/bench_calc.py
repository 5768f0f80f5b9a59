"""``fleetgate bench connect``: parameters, MQTT packets and the arithmetic. Pure.

The I/O is in :mod:`broker.bench` (brokers, PKI, measurements) and
:mod:`broker.bench_client` (the client worker processes).
"""

from __future__ import annotations

import errno
import math
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fleetgate.bench.report import latency_summary

BROKERS = ("amqtt", "mosquitto")
ONE_MILLION = 1_000_000
KIB = 1024
FD_OVERHEAD = 100
"""File descriptors a broker process holds besides its connections (listener, logs, files)."""


class BenchParamError(ValueError):
    """A bad ``-p key=value``; the message names the key and what it accepts."""


@dataclass(frozen=True)
class ConnectParams:
    """What ``fleetgate bench connect -p key=value`` accepts (the defaults are the brief's)."""

    connections: int = 5000
    """Idle mutual-TLS connections per broker."""
    concurrency: int = 100
    """Handshakes in progress at once, over all workers."""
    workers: int = 2
    """Client processes the connections are spread over."""
    brokers: tuple[str, ...] = BROKERS
    """Measured in this order; the first is the result, the second the baseline."""
    keepalive_s: int = 1200
    settle_s: float = 3.0
    """Wait after the last CONNACK before reading the broker's RSS."""
    timeout_s: float = 300.0
    """Bound on connecting everything, per broker."""
    attempt_timeout_s: float = 60.0
    """Bound on one connection (TCP + TLS + CONNECT/CONNACK)."""
    cache: str = ""
    """Directory of the cached bench PKI ('' = ~/.cache/fleetgate/bench-pki)."""
    host: str = "127.0.0.1"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["brokers"] = list(self.brokers)
        return out


_INT_RANGES = {
    "connections": (1, ONE_MILLION),
    "concurrency": (1, 10_000),
    "workers": (1, 64),
    "keepalive_s": (0, 65_535),
}
_FLOAT_RANGES = {
    "settle_s": (0.0, 600.0),
    "timeout_s": (1.0, 24 * 3600.0),
    "attempt_timeout_s": (0.1, 3600.0),
}


def _number(key: str, text: str, *, integer: bool) -> float:
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "an integer" if integer else "a number"
        raise BenchParamError(f"parameter {key}={text!r} is not {kind}") from None
    low, high = _INT_RANGES[key] if integer else _FLOAT_RANGES[key]
    if not math.isfinite(value) or not low <= value <= high:
        raise BenchParamError(f"parameter {key}={text!r} must be between {low:g} and {high:g}")
    return value


def parse_params(raw: Mapping[str, str]) -> ConnectParams:
    """The scenario's parameters from ``-p key=value`` pairs; unknown keys are refused."""
    fields: dict[str, Any] = {}
    known = set(ConnectParams.__dataclass_fields__)
    for key, text in raw.items():
        if key not in known:
            raise BenchParamError(
                f"unknown parameter {key!r} for connect; known: {', '.join(sorted(known))}"
            )
        if key in _INT_RANGES:
            fields[key] = int(_number(key, text, integer=True))
        elif key in _FLOAT_RANGES:
            fields[key] = _number(key, text, integer=False)
        elif key == "brokers":
            fields[key] = parse_brokers(text)
        elif not text and key == "host":
            raise BenchParamError("parameter host must not be empty")
        else:
            fields[key] = text
    params = ConnectParams(**fields)
    if params.workers > params.connections:
        params = ConnectParams(**{**fields, "workers": params.connections})
    if params.concurrency < params.workers:
        raise BenchParamError(
            f"concurrency={params.concurrency} must be at least workers={params.workers}"
        )
    return params


def parse_brokers(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    bad = [name for name in names if name not in BROKERS]
    if not names or bad:
        raise BenchParamError(
            f"parameter brokers={text!r}: a comma-separated list of {', '.join(BROKERS)}"
        )
    return names


def split_evenly(items: Sequence[str], parts: int) -> list[list[str]]:
    """``items`` dealt into ``parts`` contiguous slices whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    slices: list[list[str]] = []
    start = 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        slices.append(list(items[start:end]))
        start = end
    return slices


# --- MQTT 3.1.1 --------------------------------------------------------------------------------


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connect_packet(client_id: str, *, keepalive_s: int) -> bytes:
    """A CONNECT: protocol level 4 (3.1.1), clean session, no will, user name or password."""
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02" + keepalive_s.to_bytes(2, "big")
    body += len(cid).to_bytes(2, "big") + cid
    return b"\x10" + _remaining_length(len(body)) + body


def connack_code(data: bytes) -> int | None:
    """The return code of a CONNACK at the start of ``data``; None if more bytes are needed.

    Raises ``ValueError`` if ``data`` does not start with a CONNACK.
    """
    if not data:
        return None
    if data[0] != 0x20 or (len(data) >= 2 and data[1] != 0x02):
        raise ValueError(f"expected a CONNACK, got {data[:8].hex()}")
    return data[3] if len(data) >= 4 else None


class ConnackRefused(Exception):
    """The broker answered the CONNECT with a non-zero return code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"CONNACK return code {code}")
        self.code = code


def error_kind(exc: BaseException) -> str:
    """A short, countable name for why one connection failed."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnackRefused):
        return f"connack {exc.code}"
    if isinstance(exc, ssl.SSLError):
        return f"tls: {exc.reason or type(exc).__name__}"
    if isinstance(exc, ConnectionRefusedError):
        return "tcp refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"os: {errno.errorcode.get(exc.errno, exc.errno)}"
    if isinstance(exc, ConnectionError):
        return "closed before CONNACK"
    return type(exc).__name__


# --- figures -----------------------------------------------------------------------------------


def vmrss_kib(status: str) -> int:
    """``VmRSS`` of a ``/proc/<pid>/status`` text, in KiB."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError("no VmRSS line (a zombie process?)")


def cpu_ticks(stat: str) -> int:
    """utime + stime of a ``/proc/<pid>/stat`` line, in clock ticks."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def machine_busy_ticks(stat: str) -> int:
    """Non-idle CPU time of the whole machine from ``/proc/stat`` (its ``cpu`` line), in ticks."""
    for line in stat.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
            return sum(values[:8]) - idle  # guest time is already in user/nice
    raise ValueError("no cpu line in /proc/stat")


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class WorkerReport:
    """What one client process measured."""

    connected: int
    errors: dict[str, int]
    handshake_ms: list[float]
    connack_ms: list[float]
    started: float
    """``time.monotonic()`` (system-wide) when it began connecting."""
    finished: float
    rss_kib: int
    cpu_s: float
    """CPU time the worker process used while connecting."""


def merge_errors(reports: Sequence[WorkerReport]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for report in reports:
        for kind, count in report.errors.items():
            merged[kind] = merged.get(kind, 0) + count
    return dict(sorted(merged.items(), key=lambda item: (-item[1], item[0])))


def broker_figures(
    *,
    kind: str,
    requested: int,
    reports: Sequence[WorkerReport],
    rss_before_kib: int,
    rss_after_kib: int,
    cpu_seconds: float,
    machine_busy_s: float,
    open_fds: int | None,
) -> dict[str, Any]:
    """One broker's figures from the workers' reports and the broker process's readings."""
    connected = sum(r.connected for r in reports)
    elapsed = max((r.finished for r in reports), default=0.0) - min(
        (r.started for r in reports), default=0.0
    )
    connack = latency_summary([v for r in reports for v in r.connack_ms])
    delta = rss_after_kib - rss_before_kib
    per_conn = delta / connected if connected else math.nan
    rate = connected / elapsed if elapsed > 0 else math.nan
    cpu_ms = cpu_seconds * 1000 / connected if connected else math.nan
    return {
        "broker": kind,
        "connections": requested,
        "connected": connected,
        "failed": requested - connected,
        "errors": merge_errors(reports),
        "elapsed_s": round(elapsed, 3),
        "handshakes_per_s": round(rate, 1),
        "p50_ms": connack["p50_ms"],
        "p99_ms": connack["p99_ms"],
        "connack_ms": connack,
        "handshake_ms": latency_summary([v for r in reports for v in r.handshake_ms]),
        "rss_before_kib": rss_before_kib,
        "rss_after_kib": rss_after_kib,
        "kib_per_connection": round(per_conn, 2),
        "cpu_ms_per_handshake": round(cpu_ms, 3),
        "cpu_s": cpu_split(
            broker=cpu_seconds,
            clients=sum(r.cpu_s for r in reports),
            machine_busy=machine_busy_s,
        ),
        "broker_open_fds": open_fds,
        "client_rss_kib": [r.rss_kib for r in reports],
        "projection_1m": projection(
            kib_per_connection=per_conn, handshakes_per_s=rate, cpu_ms_per_handshake=cpu_ms
        ),
    }


def cpu_split(*, broker: float, clients: float, machine_busy: float) -> dict[str, float]:
    """Where the machine's CPU time went while connecting: the broker, the clients, the rest
    (other programs on a shared machine), in CPU-seconds."""
    return {
        "broker": round(broker, 2),
        "clients": round(clients, 2),
        "others": round(max(0.0, machine_busy - broker - clients), 2),
        "machine_busy": round(machine_busy, 2),
    }


def projection(
    *,
    kib_per_connection: float,
    handshakes_per_s: float,
    cpu_ms_per_handshake: float,
    vehicles: int = ONE_MILLION,
) -> dict[str, Any]:
    """What ``vehicles`` idle connections on one broker node need, from the measured figures."""

    def finite(value: float, digits: int) -> float | None:
        return round(value, digits) if math.isfinite(value) else None

    return {
        "vehicles": vehicles,
        "memory_gib": finite(kib_per_connection * vehicles / KIB**2, 1),
        "file_descriptors": vehicles + FD_OVERHEAD,
        "reconnect_all_s": finite(vehicles / handshakes_per_s, 0) if handshakes_per_s > 0 else None,
        "handshake_cpu_core_s": finite(cpu_ms_per_handshake * vehicles / 1000, 0),
    }


def projection_note(kind: str, figures: Mapping[str, Any], *, fd_hard_limit: int) -> str:
    """One sentence: what the 1M projection means for ``kind`` on one node."""
    p = figures["projection_1m"]
    memory = p["memory_gib"]
    reconnect = p["reconnect_all_s"]
    core_s = p["handshake_cpu_core_s"]
    parts = [
        f"{kind}: 1M idle vehicles need ~{memory} GiB of broker RSS"
        if memory is not None
        else f"{kind}: no memory projection (nothing connected)",
        f"{p['file_descriptors']:,} file descriptors in one process "
        f"(RLIMIT_NOFILE here: {fd_hard_limit:,}; Linux fs.nr_open defaults to 1,048,576)",
    ]
    if reconnect is not None:
        parts.append(
            f"a full reconnect takes ~{reconnect:,.0f} s at the measured rate "
            f"({core_s:,.0f} CPU-core-seconds of broker TLS+CONNECT work, single-threaded)"
        )
    return "; ".join(parts)


def ratio_or_none(a: object, b: object) -> float | None:
    """``a / b`` rounded, or None unless both are finite numbers and ``b`` is not 0."""
    numbers = [v for v in (a, b) if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != 2 or not all(math.isfinite(v) for v in numbers) or numbers[1] == 0:
        return None
    return round(numbers[0] / numbers[1], 3)
