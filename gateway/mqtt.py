"""paho-mqtt 2.x driven by the asyncio loop: a thin adapter, no threads while connected.

paho is the one Python MQTT client that lets the application PUBACK a message itself
(``Client(manual_ack=True)`` + ``client.ack(mid, qos)``), which is how the gateway acknowledges
a message only after Kafka has it. paho's *external loop* API is wired to asyncio: its socket
is watched with ``loop.add_reader``; what it has is read in bulk into a
:class:`gateway.mqtt_read.ReadBuffer`, PUBLISH packets are decoded there and every other
packet goes to paho (``loop_read``) from that buffer. Writes are flushed right after the
callback that queued them (``loop_write``; ``add_writer`` only while the socket is full), and
``loop_misc`` runs every second for keep-alive. So every callback (messages, PUBACKs of our
publishes, connects) runs on the event loop thread, and reading can be paused for
back-pressure: the broker then keeps the messages (its in-flight window, then its queue).

Connecting (TCP + TLS handshake) blocks in paho: it runs in a worker thread, and the socket
is attached to the loop once it returned.

The session is persistent (MQTT 3.1.1 ``clean_session=False``, MQTT 5 ``clean_start=False``
with a session expiry), so messages the broker queued while we were away are delivered after
a reconnect or a restart with the same client id.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as paho

from fleetgate.logs import get_logger
from gateway.mqtt_options import LinkOptions, connect_options, make_client
from gateway.mqtt_read import PUBACK_COMMAND, InMessage, ReadBuffer, pubacks

log = get_logger(__name__)

OnMessage = Callable[[InMessage, int], None]
"""``(message, generation)``: ``generation`` identifies the connection it came on."""
OnDone = Callable[[], None]

READ_BUDGET = 4
"""Socket reads (of up to 256 KiB each) per readiness event before other tasks get a turn."""


class MqttLink:
    """One MQTT connection of the gateway, kept up until :meth:`close`.

    ``on_message`` is called on the loop thread for each PUBLISH received; with QoS 1 or 2
    the caller acknowledges it with :meth:`ack` (with the same generation). ``subscriptions``
    are (re)made on every connect.
    """

    def __init__(
        self,
        *,
        options: LinkOptions,
        context: ssl.SSLContext,
        on_message: OnMessage,
        subscriptions: Sequence[tuple[str, int]] = (),
        on_connection: Callable[[bool], None] | None = None,
    ) -> None:
        self._options = options
        self._on_message = on_message
        self._subscriptions = list(subscriptions)
        self._on_connection = on_connection
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._fd = -1
        self._buffer: ReadBuffer | None = None
        self._fast = options.protocol == "3.1.1"
        self._acks: list[int] = []
        self._reading = False
        self._paused = False
        self._writer = False
        self._flush_scheduled = False
        self._connecting = False
        self._closing = False
        self._done: dict[int, OnDone] = {}
        self._connected = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._lost = asyncio.Event()
        self._suback_mid = -1
        self._tasks: list[asyncio.Task[None]] = []
        self.generation = 0
        self.connects = 0
        self._client = self._make_client(context)

    # --- set-up ----------------------------------------------------------------------------
    def _make_client(self, context: ssl.SSLContext) -> paho.Client:
        client = make_client(self._options, context)
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        client.on_publish = self._handle_publish
        client.on_subscribe = self._handle_subscribe
        return client

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, *, wait_s: float | None = 30.0) -> None:
        """Connect (retrying) and keep connected; returns once subscribed, or raises
        TimeoutError after ``wait_s`` (the link keeps trying in the background)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._tasks = [
            asyncio.create_task(self._keep_connected(), name="mqtt-connect"),
            asyncio.create_task(self._misc(), name="mqtt-misc"),
        ]
        await asyncio.wait_for(self.wait_ready(), wait_s)

    async def wait_ready(self) -> None:
        await self._connected.wait()
        await self._subscribed.wait()

    async def _keep_connected(self) -> None:
        delay = self._options.reconnect_min_s
        first = True
        while not self._closing:
            self._lost.clear()
            try:
                await self._connect(first=first)
                first = False
            except (OSError, ssl.SSLError, ValueError) as exc:
                log.warning("MQTT connect failed", error=str(exc) or type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._options.reconnect_max_s)
                continue
            if not await self._connack_within(self._options.connect_timeout_s):
                log.warning("MQTT broker sent no CONNACK; reconnecting")
                self._client.disconnect()
                self._detach()
                continue
            await self._lost.wait()
            if self._connected.is_set() or self.connects:
                delay = self._options.reconnect_min_s
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._options.reconnect_max_s)

    async def _connack_within(self, timeout_s: float) -> bool:
        """Whether the broker answered the CONNECT (accepted or refused) in time."""
        waits = [asyncio.ensure_future(e.wait()) for e in (self._connected, self._lost)]
        done, pending = await asyncio.wait(
            waits, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        return bool(done)

    async def _connect(self, *, first: bool) -> None:
        assert self._loop is not None
        client = self._client
        self._detach()
        self._connecting = True
        try:
            if first:
                kwargs = connect_options(self._options)
                call: Callable[[], Any] = lambda: client.connect(  # noqa: E731
                    self._options.host, self._options.port, **kwargs
                )
            else:
                call = client.reconnect
            await self._loop.run_in_executor(None, call)
        finally:
            self._connecting = False
        sock = client.socket()
        if sock is None:
            raise OSError("connection closed during connect")
        # paho leaves Nagle's algorithm on: a PUBACK or a command would wait for the broker's
        # delayed ACK of the previous packet (up to ~40 ms)
        if isinstance(sock, socket.socket):  # an SSLSocket is one
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.generation += 1
        self._fd = sock.fileno()
        self._buffer = client._sock = ReadBuffer(sock)  # paho reads from it too
        self._reading = False
        self._set_reading(not self._paused)
        self._flush()

    def _detach(self) -> None:
        if self._fd >= 0 and self._loop is not None:
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = -1
        self._buffer = None
        self._reading = False
        self._writer = False

    async def _misc(self) -> None:
        while not self._closing:
            await asyncio.sleep(1.0)
            if self._fd >= 0 and not self._connecting:
                self._client.loop_misc()
                self._flush()

    # --- reading ---------------------------------------------------------------------------
    def _set_reading(self, on: bool) -> None:
        if self._loop is None or self._fd < 0 or on == self._reading:
            return
        self._reading = on
        if on:
            self._loop.add_reader(self._fd, self._readable)
            self._loop.call_soon(self._readable)  # TLS may hold decrypted bytes already
        else:
            self._loop.remove_reader(self._fd)

    def _readable(self) -> None:
        # handle what is buffered (reading may have been paused with packets left), then read
        # the socket in bulk until it has nothing more or the budget is spent
        buffer = self._buffer
        for _ in range(READ_BUDGET):
            if buffer is None or buffer is not self._buffer:
                return
            if not self._reading or self._connecting:
                break
            self._handle_buffered(buffer)
            if not self._reading or buffer is not self._buffer:
                break
            if not buffer.fill():
                if buffer.closed:  # paho sees the end (or the error) and handles the loss
                    buffer.give_rest_to_paho()
                    self._client.loop_read()
                break
            self._client._last_bytes_received = time.monotonic()  # keep-alive: bytes came
        else:
            if self._reading and self._loop is not None:
                self._loop.call_soon(self._readable)
        self._flush()

    def _handle_buffered(self, buffer: ReadBuffer) -> None:
        handler, generation = self._on_message, self.generation
        buffer.dispatch(
            paho_read=self._client.loop_read,
            on_message=lambda message: handler(message, generation),
            fast=self._fast,
            reading=lambda: self._reading and buffer is self._buffer,
        )

    def pause_reading(self) -> None:
        """Stop taking messages from the broker (it keeps them) until :meth:`resume_reading`."""
        self._paused = True
        self._set_reading(False)

    def resume_reading(self) -> None:
        self._paused = False
        self._set_reading(True)

    @property
    def paused(self) -> bool:
        return self._paused

    # --- writing ---------------------------------------------------------------------------
    def _on_register_write(self, client: paho.Client, userdata: object, sock: object) -> None:
        if self._connecting or threading.get_ident() != self._loop_thread:
            return  # attached (and flushed) once connect() is done
        if not self._flush_scheduled and self._loop is not None:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _on_unregister_write(self, client: paho.Client, userdata: object, sock: object) -> None:
        if self._writer and self._loop is not None and self._fd >= 0:
            self._loop.remove_writer(self._fd)
        self._writer = False

    def _flush(self) -> None:
        self._flush_scheduled = False
        client = self._client
        if self._fd < 0 or self._connecting or not client.want_write():
            return
        client.loop_write()
        if client.want_write() and not self._writer and self._loop is not None and self._fd >= 0:
            self._writer = True
            self._loop.add_writer(self._fd, self._writable)

    def _writable(self) -> None:
        self._client.loop_write()
        if not self._client.want_write() and self._writer and self._loop is not None:
            self._loop.remove_writer(self._fd)
            self._writer = False

    # --- socket callbacks ------------------------------------------------------------------
    def _on_socket_close(self, client: paho.Client, userdata: object, sock: object) -> None:
        if not self._connecting and threading.get_ident() == self._loop_thread:
            self._detach()

    # --- MQTT callbacks (loop thread) ------------------------------------------------------
    def _handle_connect(
        self, client: paho.Client, userdata: object, flags: Any, reason: Any, props: Any
    ) -> None:
        if reason.is_failure:  # paho closes the socket; _keep_connected retries
            log.warning("MQTT connection refused", reason=str(reason))
            return
        self.connects += 1
        session = bool(getattr(flags, "session_present", False))
        log.info("MQTT connected", session_present=session, generation=self.generation)
        self._connected.set()
        # the first connection subscribes (settings may have changed); later ones only when
        # the broker lost our session: re-subscribing would replay retained messages
        if self._subscriptions and (self.connects == 1 or not session):
            rc, mid = client.subscribe(self._subscriptions)
            if mid is None:
                log.error("MQTT subscribe not sent", rc=str(rc))
            self._suback_mid = -1 if mid is None else mid
        else:
            self._subscribed.set()
        if self._on_connection is not None:
            self._on_connection(True)

    def _handle_subscribe(
        self, client: paho.Client, userdata: object, mid: int, codes: Any, props: Any
    ) -> None:
        if mid != self._suback_mid:
            return
        failed = [str(code) for code in codes if code.is_failure]
        if failed:
            log.error("MQTT subscription refused", filters=self._subscriptions, codes=failed)
        self._subscribed.set()

    def _handle_disconnect(
        self, client: paho.Client, userdata: object, flags: Any, reason: Any, props: Any
    ) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._subscribed.clear()
        self._detach()
        self._lost.set()
        if not self._closing:
            log.warning("MQTT connection lost", reason=str(reason), generation=self.generation)
        if was and self._on_connection is not None:
            self._on_connection(False)

    def _handle_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        # MQTT 5 and QoS 2 messages, which paho decodes
        topic = bytes(msg._topic).decode("utf-8", "replace")
        message = InMessage(topic, bytes(msg.payload), msg.mid, msg.qos, msg.retain, msg.dup)
        self._on_message(message, self.generation)

    def _handle_publish(
        self, client: paho.Client, userdata: object, mid: int, reason: Any, props: Any
    ) -> None:
        if (done := self._done.pop(mid, None)) is not None:
            done()

    # --- API ---------------------------------------------------------------------------------
    def ack(self, mid: int, qos: int, generation: int) -> bool:
        """PUBACK (QoS 1) / PUBCOMP (QoS 2) a message received on connection ``generation``;
        False (nothing sent) if that connection is gone: the broker will redeliver it.

        QoS 1 acknowledgements made in one turn of the event loop leave in one TLS write."""
        if generation != self.generation or not self._connected.is_set():
            return False
        if qos == 1:
            if not self._acks and self._loop is not None:
                self._loop.call_soon(self._send_acks, generation)
            self._acks.append(mid)
        else:
            self._client.ack(mid, qos)
        return True

    def _send_acks(self, generation: int) -> None:
        mids, self._acks = self._acks, []
        if not mids or generation != self.generation or not self._connected.is_set():
            return
        # one PUBACK-typed write holding them all (paho writes queued packets one by one)
        self._client._packet_queue(PUBACK_COMMAND, pubacks(mids), 0, 0)
        self._on_register_write(self._client, None, None)

    def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        on_done: OnDone | None = None,
    ) -> None:
        """Publish; ``on_done`` runs when the broker acknowledged it (QoS 1, 2) or at once
        (QoS 0). While disconnected, QoS 1/2 messages wait in the session and are sent after
        the reconnect."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos == 0:
            if on_done is not None:
                on_done()
        elif on_done is not None:
            if info.is_published() or info.mid is None:
                on_done()
            else:
                self._done[info.mid] = on_done
        if threading.get_ident() == self._loop_thread:
            self._on_register_write(self._client, None, None)

    async def close(self) -> None:
        """Disconnect cleanly (the session stays at the broker) and stop reconnecting."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._fd >= 0 and self._connected.is_set():
            self._client.disconnect()
            self._flush()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), 2.0)
        self._detach()
        with contextlib.suppress(OSError):
            self._client._sock_close()
