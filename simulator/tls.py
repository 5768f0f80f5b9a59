"""Mutual TLS for thousands of vehicles in one process, with little memory per vehicle.

One ``SSLContext`` per process holds the CA chain. Just before a vehicle's TLS session is
created, its certificate and key are loaded into that context: OpenSSL copies the context's
certificate into each new ``SSL`` object (``SSL_new``), so the session keeps the vehicle's
identity while the context moves on to the next vehicle. The load and the ``wrap_bio`` inside
``loop.create_connection`` happen without an ``await`` between them, so no other vehicle can
slip in. This saves a context per vehicle (~30 KiB each with OpenSSL 3).

asyncio's TLS transport allocates a read buffer of ``SSLProtocol.max_size`` (256 KiB) per
connection; :func:`set_read_buffer` lowers it for the process.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from certs import pki, store
from certs.layout import PkiPaths, locked
from schemas.ids import Role
from simulator.errors import CertificateMissing


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A resolved broker address and the name its certificate must carry."""

    family: int
    address: tuple[str, int]
    server_hostname: str


def parse_broker(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[IPv6]:PORT``; port 8883 if omitted) -> (host, port)."""
    host, port = text.strip(), 8883
    if host.startswith("["):
        inner, _, rest = host[1:].partition("]")
        host = inner
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif host.count(":") == 1:
        host, _, tail = host.partition(":")
        port = _port(tail, text)
    if not host:
        raise ValueError(f"broker {text!r}: the host is missing (HOST:PORT)")
    return host, port


def _port(value: str, text: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError(f"broker {text!r}: the port must be a number from 1 to 65535")
    return int(value)


async def resolve(host: str, port: int) -> Endpoint:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, address = infos[0]
    return Endpoint(family=family, address=(str(address[0]), int(address[1])), server_hostname=host)


def set_read_buffer(size: int) -> None:
    """Size of the per-connection TLS read buffer of this process (default 256 KiB)."""
    asyncio.sslproto.SSLProtocol.max_size = size


class VehicleTls:
    """The process's client context and where the vehicles' certificates are."""

    __slots__ = ("context", "paths")

    def __init__(self, paths: PkiPaths) -> None:
        self.paths = paths
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_verify_locations(cafile=str(paths.ca_chain))
        self.context = context

    def arm(self, vin: str) -> ssl.SSLContext:
        """The context, loaded with ``vin``'s certificate for the next session created."""
        cert, key = self.paths.vehicle(vin)
        try:
            self.context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise CertificateMissing(f"{vin}: {exc}") from None
        return self.context


async def open_tls(
    *,
    endpoint: Endpoint,
    tls: VehicleTls,
    vin: str,
    protocol: asyncio.Protocol,
    handshake_timeout: float,
) -> asyncio.Transport:
    """TCP connect, then the TLS handshake with ``vin``'s certificate; the transport.
    (The caller bounds the whole with ``asyncio.timeout``, shorter than
    ``handshake_timeout``, so that a slow handshake is a ``TimeoutError``.)"""
    loop = asyncio.get_running_loop()
    sock = socket.socket(endpoint.family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, endpoint.address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        context = tls.arm(vin)  # no await between this and wrap_bio in create_connection
        transport, _ = await loop.create_connection(
            lambda: protocol,
            sock=sock,
            ssl=context,
            server_hostname=endpoint.server_hostname,
            ssl_handshake_timeout=handshake_timeout,
        )
    except BaseException:
        sock.close()
        raise
    assert isinstance(transport, asyncio.Transport)
    return transport


def missing_vehicle_certs(paths: PkiPaths, vins: list[str]) -> list[str]:
    present = store.on_disk(paths, Role.VEHICLE)
    return [vin for vin in vins if vin not in present]


def issue_vehicle_certs(
    paths: PkiPaths,
    vins: list[str],
    *,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Issue certificates for ``vins`` that have none (bulk, over ``workers`` processes)."""
    if not vins:
        return 0
    with locked(paths):
        result = store.issue_leaves(
            paths,
            Role.VEHICLE,
            vins,
            now=datetime.now(UTC),
            lifetimes=pki.Lifetimes(),
            workers=workers,
            skip_existing=True,
            on_progress=on_progress,
        )
    return len(result.issued)
