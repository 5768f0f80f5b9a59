"""The embedded broker's TLS listener: accepts, limits, identifies and can cut connections.

amqtt's own TCP listener hard-codes ``ssl.CERT_OPTIONAL`` and cannot change its CRL while
running, so the broker uses amqtt's *external* listener type and this module feeds it
connections that have already passed mutual TLS:

- the current :class:`ssl.SSLContext` is taken per connection, so a reloaded CRL applies to
  every handshake after it (:meth:`TlsListener.set_context`);
- beyond ``max_connections`` open or ``max_pending`` mid-handshake connections, a new one is
  closed at once, before any TLS work (a connect flood costs a socket, not memory);
- each connection carries the identity of its OWN certificate (:class:`Peer`), read once
  here and never from a session object;
- :meth:`TlsListener.close_serials` aborts live connections whose certificate was revoked.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from broker import policy
from broker.tls import CompactTLSProtocol, RefuseProtocol, peer_certificate
from fleetgate.logs import get_logger
from schemas.ids import Identity

log = get_logger(__name__)

READ_LIMIT = 64 * 1024
"""StreamReader high-water mark; reading pauses above twice this."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Who is at the other end of one TLS connection, from its own client certificate."""

    serial: int
    identity: Identity | None
    refusal: str | None = None
    """Why the certificate names no identity (then ``identity`` is None)."""


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, Peer], Coroutine[Any, Any, None]]
Established = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]


def peer_of(writer: asyncio.StreamWriter) -> Peer | None:
    """The :class:`Peer` of a connection that completed the TLS handshake."""
    cert = peer_certificate(writer.get_extra_info("ssl_object"))
    if cert is None:  # CERT_REQUIRED makes this unreachable; refuse anyway
        return None
    try:
        return Peer(serial=cert.serial_number, identity=policy.identity_from_certificate(cert))
    except policy.IdentityError as exc:
        return Peer(serial=cert.serial_number, identity=None, refusal=str(exc))


class TlsListener:
    """One listening socket; see the module doc."""

    def __init__(
        self,
        *,
        handler: Handler,
        context: ssl.SSLContext,
        max_connections: int,
        max_pending: int,
        handshake_timeout: float,
    ) -> None:
        self._handler = handler
        self._context = context
        self._max_connections = max_connections
        self._max_pending = max_pending
        self._handshake_timeout = handshake_timeout
        self._server: asyncio.Server | None = None
        self._revoked: frozenset[int] = frozenset()
        self._by_serial: dict[int, set[asyncio.StreamWriter]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.open = 0
        self.pending = 0
        self.refused = 0

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: a free port); return the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, host, port, reuse_address=True, backlog=1024
        )
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1]) if sockets else port

    def set_context(self, context: ssl.SSLContext, *, revoked: frozenset[int]) -> None:
        """Use ``context`` for every later handshake; ``revoked`` serials are cut on arrival."""
        self._context = context
        self._revoked = revoked

    def close_serials(self, serials: frozenset[int]) -> list[Peer | None]:
        """Abort every live connection whose certificate serial is in ``serials``."""
        cut: list[Peer | None] = []
        for serial in serials & self._by_serial.keys():
            for writer in list(self._by_serial.get(serial, ())):
                cut.append(peer_of(writer))
                writer.transport.abort()
        return cut

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writers in list(self._by_serial.values()):
            for writer in list(writers):
                writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)

    # --- per connection ----------------------------------------------------------------------

    def _protocol(self) -> asyncio.BaseProtocol:
        if self.open >= self._max_connections or self.pending >= self._max_pending:
            self.refused += 1
            if self.refused % 1000 == 1:
                log.warning(
                    "listener full, refusing connections",
                    open=self.open,
                    pending=self.pending,
                    refused=self.refused,
                )
            return RefuseProtocol()
        self.open += 1
        self.pending += 1
        state = {"handshaken": False}

        def lost() -> None:
            self.open -= 1
            if not state["handshaken"]:
                self.pending -= 1

        async def established(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state["handshaken"] = True
            self.pending -= 1
            await self._serve(reader, writer)

        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=READ_LIMIT, loop=loop)
        app = asyncio.StreamReaderProtocol(reader, self._spawn(established), loop=loop)
        return CompactTLSProtocol(
            loop,
            app,
            self._context,
            handshake_timeout=self._handshake_timeout,
            on_lost=lost,
        )

    def _spawn(
        self, established: Established
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]:
        """A non-coroutine callback, so the task is ours to track and to log failures of."""

        def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.get_running_loop().create_task(established(reader, writer))
            self._tasks.add(task)
            task.add_done_callback(self._done)

        return start

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("connection handler failed", error=repr(task.exception()))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_of(writer)
        if peer is None or peer.serial in self._revoked:
            writer.transport.abort()
            return
        self._by_serial.setdefault(peer.serial, set()).add(writer)
        try:
            await self._handler(reader, writer, peer)
        finally:
            writers = self._by_serial.get(peer.serial)
            if writers is not None:
                writers.discard(writer)
                if not writers:
                    del self._by_serial[peer.serial]
            if not writer.is_closing():
                writer.transport.abort()
