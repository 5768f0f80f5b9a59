"""How the gateway's MQTT link connects: options, the paho client, the client TLS context."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

Protocol = Literal["3.1.1", "5"]


@dataclass(frozen=True)
class LinkOptions:
    host: str
    port: int
    client_id: str
    keepalive_s: int = 60
    protocol: Protocol = "3.1.1"
    session_expiry_s: int = 7 * 24 * 3600
    max_outgoing_inflight: int = 1000
    connect_timeout_s: float = 10.0
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 5.0


def tls_context(*, ca_chain: str, certfile: str, keyfile: str) -> ssl.SSLContext:
    """Mutual TLS as a client: trust the fleet's CA chain, present the service certificate."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_chain)
    context.load_cert_chain(certfile, keyfile)
    return context


def make_client(options: LinkOptions, context: ssl.SSLContext) -> paho.Client:
    """A paho client with a persistent session that leaves acknowledging to the caller."""
    v5 = options.protocol == "5"
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=options.client_id,
        clean_session=None if v5 else False,
        protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
        manual_ack=True,
        reconnect_on_failure=False,
    )
    client.tls_set_context(context)
    client.connect_timeout = options.connect_timeout_s
    client.max_inflight_messages_set(options.max_outgoing_inflight)
    client.max_queued_messages_set(0)
    return client


def connect_options(options: LinkOptions) -> dict[str, Any]:
    """Keyword arguments of the first ``client.connect`` (MQTT 5: keep the session)."""
    kwargs: dict[str, Any] = {"keepalive": options.keepalive_s}
    if options.protocol == "5":
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = options.session_expiry_s
        kwargs |= {"clean_start": False, "properties": props}
    return kwargs
