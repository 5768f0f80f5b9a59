"""The client side of ``fleetgate bench connect``: one worker process opening idle vehicles.

Each worker is a ``multiprocessing`` (spawn) child holding a share of the vehicles. It opens
them at a bounded concurrency (TCP, the TLS handshake with the vehicle's own certificate,
CONNECT with client id = VIN, CONNACK), reports what it measured, holds the connections idle
until told to close them, and exits. Lean on purpose, so the client is not what is measured:

- one ``SSLContext`` per process; the vehicle's certificate is loaded into it just before
  its TLS object is created (``wrap_bio`` inside ``create_connection``, with no ``await`` in
  between), as OpenSSL copies it into each new session;
- asyncio's per-connection TLS read buffer shrunk from 256 KiB to 16 KiB;
- the connection's protocol keeps no buffers once the CONNACK is in.

Conversation with the parent over a ``Pipe``: the worker sends ``("ready", None)``; the
parent ``"go"``; the worker ``("report", WorkerReport)``; the parent ``"close"``; the worker
``("closed", None)`` and exits. A failure is ``("error", message)``. The worker also exits on
its own when its parent is gone or ``hold_s`` has passed.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import os
import resource
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection

from broker.bench_calc import (
    ConnackRefused,
    WorkerReport,
    connack_code,
    connect_packet,
    error_kind,
    vmrss_kib,
)

READ_BUFFER = 16 * 1024


@dataclass(frozen=True)
class WorkerSpec:
    host: str
    port: int
    server_hostname: str
    ca_chain: str
    vehicles: list[tuple[str, str, str]]
    """(VIN, certificate file, key file) of each vehicle this worker connects."""
    concurrency: int
    keepalive_s: int
    attempt_timeout_s: float
    timeout_s: float
    """Bound on connecting all of them; the rest counts as failed ("not attempted")."""
    hold_s: float
    """The worker closes everything and exits after holding this long without "close"."""


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class _Vehicle(asyncio.Protocol):
    """One idle MQTT connection: waits for the CONNACK, then ignores what comes."""

    __slots__ = ("_buffer", "connack", "lost", "transport")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.connack: asyncio.Future[int] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self._buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.connack.done():
            return
        self._buffer += data
        try:
            code = connack_code(self._buffer)
        except ValueError as exc:
            self.connack.set_exception(exc)
            return
        if code is not None:
            self._buffer = b""
            self.connack.set_result(code)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.connack.done():
            self.connack.set_exception(exc or ConnectionError("closed before CONNACK"))


class _Fleet:
    def __init__(self, spec: WorkerSpec, *, parent: int) -> None:
        self.spec = spec
        self.parent = parent
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cafile=spec.ca_chain)
        self.context = context
        self.open: list[_Vehicle] = []
        self.errors: dict[str, int] = {}
        self.handshake_ms: list[float] = []
        self.connack_ms: list[float] = []

    def _fail(self, kind: str, count: int = 1) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + count

    async def _attempt(self, vin: str, cert: str, key: str) -> None:
        loop = asyncio.get_running_loop()
        spec = self.spec
        vehicle = _Vehicle(loop)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        started = time.monotonic()
        try:
            async with asyncio.timeout(spec.attempt_timeout_s):
                await loop.sock_connect(sock, (spec.host, spec.port))
                self.context.load_cert_chain(cert, key)  # no await until wrap_bio
                await loop.create_connection(
                    lambda: vehicle,
                    sock=sock,
                    ssl=self.context,
                    server_hostname=spec.server_hostname,
                    ssl_handshake_timeout=spec.attempt_timeout_s,
                )
                secured = time.monotonic()
                assert vehicle.transport is not None
                vehicle.transport.write(connect_packet(vin, keepalive_s=spec.keepalive_s))
                code = await vehicle.connack
                if code != 0:
                    raise ConnackRefused(code)
        except Exception as exc:  # every failure is counted, none stops the others
            self._fail(error_kind(exc))
            if vehicle.transport is not None:
                vehicle.transport.abort()
            sock.close()
            return
        done = time.monotonic()
        self.handshake_ms.append((secured - started) * 1000)
        self.connack_ms.append((done - secured) * 1000)
        self.open.append(vehicle)

    async def connect_all(self) -> WorkerReport:
        spec = self.spec
        pending: Iterator[tuple[str, str, str]] = iter(spec.vehicles)
        started = time.monotonic()
        cpu_before = time.process_time()
        deadline = started + spec.timeout_s

        async def runner() -> None:
            for vin, cert, key in pending:
                if time.monotonic() >= deadline:
                    self._fail("not attempted (timeout_s)")
                    continue
                if os.getppid() != self.parent:
                    raise SystemExit("the bench process is gone")
                await self._attempt(vin, cert, key)

        runners = min(spec.concurrency, len(spec.vehicles)) or 1
        await asyncio.gather(*(runner() for _ in range(runners)))
        finished = time.monotonic()
        cpu = time.process_time() - cpu_before
        return self.report(started=started, finished=finished, cpu_s=cpu)

    def report(self, *, started: float, finished: float, cpu_s: float) -> WorkerReport:
        dropped = sum(1 for v in self.open if v.lost)
        if dropped:
            self._fail("dropped after CONNACK", dropped)
        self.open = [v for v in self.open if not v.lost]
        with open("/proc/self/status", encoding="ascii") as status:
            rss = vmrss_kib(status.read())
        return WorkerReport(
            connected=len(self.open),
            errors=dict(self.errors),
            handshake_ms=self.handshake_ms,
            connack_ms=self.connack_ms,
            started=started,
            finished=finished,
            rss_kib=rss,
            cpu_s=cpu_s,
        )

    def close(self) -> None:
        for vehicle in self.open:
            if vehicle.transport is not None:
                vehicle.transport.abort()
        self.open = []


async def _wait_for(conn: Connection, *, within: float, parent: int) -> object | None:
    """The parent's next message; None after ``within`` seconds or when the parent is gone."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and os.getppid() == parent:
        if conn.poll():
            message: object = conn.recv()
            return message
        await asyncio.sleep(0.05)
    return None


async def _work(spec: WorkerSpec, conn: Connection, parent: int) -> None:
    fleet = _Fleet(spec, parent=parent)
    conn.send(("ready", None))
    if await _wait_for(conn, within=120, parent=parent) != "go":
        return
    try:
        report = await fleet.connect_all()
        conn.send(("report", report))
        await _wait_for(conn, within=spec.hold_s, parent=parent)
    finally:
        fleet.close()
        await asyncio.sleep(0)  # let the aborts run
    conn.send(("closed", None))


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """The worker process's entry point (``multiprocessing`` target)."""
    parent = os.getppid()
    try:
        raise_nofile()
        asyncio.sslproto.SSLProtocol.max_size = READ_BUFFER
        asyncio.run(_work(spec, conn, parent))
    except BaseException as exc:  # tell the parent in one line, never a traceback
        with contextlib.suppress(OSError):
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        conn.close()
