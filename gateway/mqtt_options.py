"""How the gateway's MQTT link connects: options and the client TLS context."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Literal

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
