"""Why a connection failed, as a short kind that the summary counts (``errors: {kind: n}``).

Pure. The kinds:

=====================  =============================================================
``connect_refused``    nothing listens on the broker's address (TCP RST)
``unreachable``        no route to the broker's host or network
``dns_error``          the broker's host name does not resolve
``timeout``            TCP, TLS or CONNACK did not complete within the connect timeout
``tls_verify_failed``  the broker's certificate did not verify against ``ca-chain.pem``
``tls_error``          the TLS handshake failed otherwise, typically the broker refusing the
                       vehicle's certificate (unknown CA, revoked, expired)
``closed_by_broker``   the broker closed the connection before its CONNACK
``not_authorized``     CONNACK 5 (and the other CONNACK codes by their names:
                       ``identifier_rejected``, ``server_unavailable``,
                       ``bad_username_or_password``, ``unacceptable_protocol_version``)
``subscribe_refused``  the broker refused one of the vehicle's subscriptions
``protocol_error``     the broker sent something that is not MQTT 3.1.1
``cert_missing``       the vehicle's certificate or key file is missing or unreadable
``fd_limit``           this process ran out of file descriptors
``connection_lost``    an established connection dropped (not a simulated disconnect)
``os_error``           any other operating-system error
=====================  =============================================================
"""

from __future__ import annotations

import errno
import socket
import ssl

from simulator.codec import ConnackCode, ProtocolError


class ConnectRefused(Exception):
    """The broker answered CONNECT with a non-zero return code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"CONNACK return code {code}")
        self.code = code


class ClosedBeforeConnack(ConnectionError):
    """The connection ended after TLS but before the broker's CONNACK."""


class SubscribeRefused(Exception):
    """A SUBACK return code 0x80 for one of the vehicle's filters."""


class CertificateMissing(Exception):
    """The vehicle's certificate or key could not be loaded."""


def connack_kind(code: int) -> str:
    try:
        return ConnackCode(code).name.lower()
    except ValueError:
        return f"connack_{code}"


def classify(exc: BaseException) -> str:
    """The error kind of an exception raised while connecting (see the module doc)."""
    if isinstance(exc, ConnectRefused):
        return connack_kind(exc.code)
    if isinstance(exc, SubscribeRefused):
        return "subscribe_refused"
    if isinstance(exc, CertificateMissing):
        return "cert_missing"
    if isinstance(exc, ProtocolError):
        return "protocol_error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "tls_verify_failed"
    if isinstance(exc, ssl.SSLError):
        return "tls_error"
    if isinstance(exc, ClosedBeforeConnack):
        return "closed_by_broker"
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused"
    if isinstance(exc, socket.gaierror):
        return "dns_error"
    if isinstance(exc, ConnectionError):  # reset, aborted, broken pipe during the handshake
        return "closed_by_broker"
    if isinstance(exc, OSError):
        if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return "unreachable"
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            return "fd_limit"
        return "os_error"
    return "internal_error"
