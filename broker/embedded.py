"""The embedded broker: amqtt 0.12.1, hardened.

What stock amqtt 0.12.1 gets wrong, and what this module does about it:

1. TLS: its listener hard-codes ``ssl.CERT_OPTIONAL`` and has no CRL. Connections come
   through :class:`broker.listener.TlsListener` instead (``CERT_REQUIRED``, the CA chain, the
   CRL with ``VERIFY_CRL_CHECK_LEAF``, reloaded when ``crl.pem`` changes), into amqtt's
   *external* listener.
2. Bypass (a): ``_initialize_client_session`` deletes the session of the CONNECT's client id
   (clean session) or adopts it (persistent session) BEFORE authenticating, and
   ``_handle_client_session`` registers even a refused client's session under that id. So a
   refused impostor wiped a live vehicle's subscriptions. Here the CONNECT is authenticated
   first and a refused one is answered and closed before any session is looked at.
3. Bypass (b): a resumed session kept the PREVIOUS connection's ``ssl_object``, and
   authentication read the certificate from the session: a client without a certificate
   resumed a vehicle's session and was authenticated as the vehicle. Here authentication
   reads the identity of THIS connection (taken from its own certificate by the listener),
   and the resumed session gets this connection's ``ssl_object`` and identity.
4. Client id: must be the CN for vehicles and apps, never another identity's session
   (:func:`broker.policy.may_connect`).
5. Routing: stock amqtt matches every message against every subscription; here only against
   the filters of the topic's own first two levels (:mod:`broker.amqtt_routing`).
6. Limits: packet size, in-flight and queued messages per client, offline queue, connection
   count (see :mod:`broker.amqtt_parts` and :mod:`broker.listener`).

The overridden methods are copies of amqtt 0.12.1's, changed where the comments say ``[fg]``;
:func:`broker.amqtt_parts.check_amqtt` refuses to run on any other amqtt version.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from amqtt.adapters import ReaderAdapter, WriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action, ListenerConfig
from amqtt.errors import AMQTTError, MQTTError, NoDataError
from amqtt.mqtt.connack import IDENTIFIER_REJECTED, NOT_AUTHORIZED, ConnackPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.session import Session
from amqtt.utils import gen_client_id
from cryptography import x509

from broker import policy
from broker.amqtt_parts import (
    AUTHENTICATED,
    IDENTITY,
    FleetHandler,
    Limits,
    PeerReader,
    PeerWriter,
    PolicyPlugin,
    check_amqtt,
    listener_config,
    session_identity,
)
from broker.amqtt_routing import IndexedBroadcastMixin, SubscriptionIndex
from broker.listener import Peer, TlsListener
from broker.settings import BrokerOptions
from broker.tls import check_python, revoked_serials, server_context
from certs.layout import PkiPaths
from fleetgate.logs import get_logger
from schemas.ids import Role

log = get_logger(__name__)

LISTENER = "default"
SHARE_PREFIX = "$share/"


class HardenedBroker(IndexedBroadcastMixin, Broker):  # type: ignore[misc]  # amqtt is untyped
    """amqtt's Broker with authentication first, per-connection identity and limits."""

    def __init__(
        self, *, limits: Limits, connect_timeout: float, broadcast_queue: int, session_expiry_s: int
    ) -> None:
        check_amqtt()
        super().__init__(listener_config(session_expiry_s=session_expiry_s))
        self._limits = limits
        self._connect_timeout = connect_timeout
        # [fg] bounded: a publisher waits (and, through PeerReader, its socket) instead of
        # the broker queueing without limit
        self._broadcast_queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(
            maxsize=broadcast_queue
        )
        # [fg] filters indexed by their first two levels (see broker.amqtt_routing)
        self._subscriptions = SubscriptionIndex()
        acl = self.plugins_manager.get_plugin(PolicyPlugin.__name__)
        if not isinstance(acl, PolicyPlugin):
            raise RuntimeError("the policy plugin did not load")
        self._acl = acl

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Peer
    ) -> None:
        """One TLS connection from :class:`broker.listener.TlsListener`."""
        peer_writer = PeerWriter(writer, peer)
        peer_reader = PeerReader(reader, peer_writer, self._limits)
        await self.external_connected(peer_reader, peer_writer, LISTENER)

    # --- connect: authenticate first ---------------------------------------------------------

    async def _initialize_client_session(
        self,
        reader: ReaderAdapter,
        writer: WriterAdapter,
        remote_address: str,
        remote_port: int,
    ) -> tuple[BrokerProtocolHandler, Session]:
        if not isinstance(writer, PeerWriter) or not isinstance(reader, PeerReader):
            raise AMQTTError("fleetgate: connections come only through the TLS listener")
        where = f"{remote_address}:{remote_port}"
        try:
            handler, client_session = await asyncio.wait_for(
                FleetHandler.init_from_connect(reader, writer, self.plugins_manager),
                timeout=self._connect_timeout,
            )
        except (AMQTTError, MQTTError, NoDataError):
            await writer.close()
            raise
        except Exception as exc:  # timeout, oversized or garbled CONNECT
            writer.abort()
            raise AMQTTError(f"no valid CONNECT from {where}: {exc!r}") from exc
        assert isinstance(handler, FleetHandler)

        # [fg] (a)+(b): decide on THIS connection's certificate before any session is touched
        client_id = client_session.client_id or ""
        decision, code = self._admit(writer.peer, client_id)
        if not decision:
            log.warning(
                "connection refused", client_id=client_id, peer=where, reason=decision.reason
            )
            await ConnackPacket.build(0, code).to_stream(writer)
            await writer.close()
            raise AMQTTError(f"refused {client_id!r} from {where}: {decision.reason}")
        identity = writer.peer.identity

        if client_session.clean_session:
            if client_session.client_id:
                # [fg] a live connection of this (same, authenticated) identity is taken over;
                # stock amqtt left it running with its session deleted under it
                await self._take_over(client_session.client_id)
                await self._delete_session(client_session.client_id)
            else:
                client_session.client_id = gen_client_id()
            client_session.parent = 0
        elif client_session.client_id in self._sessions:
            existing, _ = self._sessions[client_session.client_id]
            for name in (
                "will_flag",
                "will_message",
                "will_topic",
                "will_qos",
                "will_retain",  # [fg] stock amqtt kept the old one
                "keep_alive",
                "username",
                "password",
                "remote_address",
                "remote_port",
                "ssl_object",  # [fg] (b): never the previous connection's certificate
            ):
                setattr(existing, name, getattr(client_session, name))
            client_session = existing
            client_session.parent = 1
        else:
            client_session.parent = 0

        client_session.attributes[IDENTITY] = identity
        client_session.attributes[AUTHENTICATED] = True
        # [fg] MQTT 3.1.1 §3.1.2.10: close after one and a half keep-alive periods
        client_session.keep_alive += client_session.keep_alive // 2
        handler.configure(self._limits)
        reader.session = client_session
        return handler, client_session

    def _admit(self, peer: Peer, client_id: str) -> tuple[policy.Decision, int]:
        if peer.identity is None:
            return policy.Decision(False, peer.refusal or "no identity"), NOT_AUTHORIZED
        held = self._sessions.get(client_id)
        holder = session_identity(held[0]) if held is not None else None
        if held is not None and holder is None:  # a session no identity owns: refuse it
            return policy.Decision(False, f"client id {client_id!r} is in use"), IDENTIFIER_REJECTED
        decision = policy.may_connect(peer.identity, client_id, holder=holder)
        if decision:
            return decision, 0
        code = IDENTIFIER_REJECTED if peer.identity.role is not Role.SERVICE else NOT_AUTHORIZED
        return decision, code

    async def _take_over(self, client_id: str) -> None:
        session, handler = self._sessions.get(client_id, (None, None))
        if session is not None and handler is not None and session.transitions.is_connected():
            await handler.handle_connection_closed()
            await handler.stop()

    async def _authenticate(self, session: Session, _: ListenerConfig) -> bool:
        # [fg] the decision was taken in _initialize_client_session for this connection;
        # nothing here may look at session.ssl_object again
        return session.attributes.pop(AUTHENTICATED, False) is True

    # --- ACL -----------------------------------------------------------------------------------

    async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool:
        # [fg] one synchronous policy call instead of a task per plugin, message and subscriber
        return self._acl.check(session, topic, action)

    async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
        if subscription[0].startswith(SHARE_PREFIX):
            # [fg] amqtt has no shared subscriptions: say so instead of never delivering
            log.info(
                "shared subscriptions need Mosquitto",
                topic=subscription[0],
                client=session.client_id,
            )
            return 0x80
        code: int = await super().add_subscription(subscription, session)
        return code

    async def retain_message(
        self,
        source_session: Session | None,
        topic_name: str | None,
        data: bytes | bytearray | None,
        qos: int | None = None,
    ) -> None:
        # [fg] only services (and the broker) keep retained messages: a device could otherwise
        # fill memory with one retained message per command id it invents
        identity = session_identity(source_session)
        if source_session is not None and (identity is None or identity.role is not Role.SERVICE):
            return
        await super().retain_message(source_session, topic_name, data, qos)

    async def _retain_broadcast_message(
        self, broadcast: dict[str, Any], qos: int, target_session: Session
    ) -> None:
        # [fg] the queue of an offline persistent session is bounded like an online one
        if target_session.retained_messages.qsize() >= self._limits.max_queued:
            return
        await super()._retain_broadcast_message(broadcast, qos, target_session)


class EmbeddedBroker:
    """The hardened amqtt broker behind its TLS listener, with live CRL reloads."""

    kind = "amqtt"
    child_pid: int | None = None

    def __init__(self, *, options: BrokerOptions, paths: PkiPaths) -> None:
        self._options = options
        self._paths = paths
        self._issuer = x509.load_pem_x509_certificate(paths.ca.read_bytes())
        self._broker: HardenedBroker | None = None
        self._listener: TlsListener | None = None
        self.port = options.port

    def alive(self) -> bool:
        return self._broker is not None

    def _context(self) -> ssl.SSLContext:
        certfile, keyfile = self._paths.server()
        return server_context(
            ca_chain=self._paths.ca_chain,
            certfile=certfile,
            keyfile=keyfile,
            crlfile=self._paths.crl,
        )

    async def start(self) -> None:
        check_python()
        options = self._options
        revoked = revoked_serials(self._paths.crl.read_bytes(), issuer=self._issuer)
        context = self._context()
        broker = HardenedBroker(
            limits=Limits(
                max_packet_size=options.max_packet_size,
                max_inflight=options.max_inflight,
                max_queued=options.max_queued,
            ),
            connect_timeout=options.connect_timeout_s,
            broadcast_queue=options.max_queued,
            session_expiry_s=options.session_expiry_s,
        )
        await broker.start()
        self._broker = broker
        self._listener = TlsListener(
            handler=broker.serve,
            context=context,
            max_connections=options.max_connections,
            max_pending=options.max_pending,
            handshake_timeout=options.handshake_timeout_s,
        )
        self._listener.set_context(context, revoked=revoked)
        self.port = await self._listener.start(options.host, options.port)
        log.info("amqtt broker running", host=options.host, port=self.port)

    async def refresh(self) -> None:
        """Nothing to do: the embedded broker reads roles from certificates (OU)."""

    async def apply_crl(self, pem: bytes) -> list[str]:
        """New handshakes use the new CRL; live connections of revoked serials are closed."""
        if self._listener is None:
            return []
        revoked = revoked_serials(pem, issuer=self._issuer)
        self._listener.set_context(self._context(), revoked=revoked)
        cut = self._listener.close_serials(revoked)
        return sorted({str(p.identity) for p in cut if p is not None and p.identity is not None})

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.close()
            self._listener = None
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()
