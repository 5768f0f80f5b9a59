"""TLS for the embedded broker: a mutual-TLS server context with CRL checking, and a
TLS protocol with a small read buffer.

asyncio's ``SSLProtocol`` allocates (and zero-fills, so it is resident) a 256 KiB buffer per
connection for ciphertext read from the socket; with the StreamReader and OpenSSL's own
buffers that makes ~340 KiB per idle vehicle. A TLS record carries at most 16 KiB of
plaintext, so :class:`CompactTLSProtocol` reads in record-sized steps instead: same bytes,
a few more iterations for a large message, ~17 KiB per connection.
"""

from __future__ import annotations

import asyncio
import ssl
import sys
from asyncio import sslproto
from collections.abc import Callable
from pathlib import Path

from cryptography import x509

from certs import crl as certs_crl

TLS_RECORD = 16 * 1024 + 1024
"""Largest TLS record (16 KiB of plaintext) plus room for its header, MAC and padding."""


class CrlError(ValueError):
    """``crl.pem`` holds no valid CRL of the issuing CA."""


def server_context(
    *, ca_chain: Path, certfile: Path, keyfile: Path, crlfile: Path
) -> ssl.SSLContext:
    """A server context that requires a client certificate of the CA chain, not revoked.

    ``ssl.CERT_REQUIRED`` makes OpenSSL refuse a handshake without a certificate, with one
    of another CA, expired or not yet valid; ``VERIFY_CRL_CHECK_LEAF`` with ``crlfile``
    refuses a revoked one (and, fail-closed, every one if the issuing CA's CRL is missing or
    expired). A changed CRL needs a new context: OpenSSL keeps the first CRL it loaded.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(certfile, keyfile)
    context.load_verify_locations(cafile=str(ca_chain))
    context.load_verify_locations(cafile=str(crlfile))  # PEM CRLs load like certificates
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF | ssl.VERIFY_X509_STRICT
    return context


def revoked_serials(crl_pem: bytes, *, issuer: x509.Certificate) -> frozenset[int]:
    """Serials revoked by ``issuer``'s CRL in ``crl_pem``, after checking its signature. Pure."""
    try:
        crls = certs_crl.load_crls(crl_pem)
    except ValueError as exc:
        raise CrlError(f"crl.pem does not parse: {exc}") from None
    mine = [c for c in crls if c.issuer == issuer.subject]
    if not mine:
        raise CrlError("crl.pem holds no CRL of the issuing CA")
    public_key = issuer.public_key()
    for c in mine:
        if not c.is_signature_valid(public_key):  # type: ignore[arg-type]
            raise CrlError("a CRL in crl.pem is not signed by the issuing CA")
    return frozenset(r.serial_number for c in mine for r in c)


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> x509.Certificate | None:
    """The verified client certificate of THIS connection (None if there is none)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return x509.load_der_x509_certificate(der) if der else None


def check_python() -> None:
    """CompactTLSProtocol subclasses asyncio's SSLProtocol as found in CPython 3.11 and 3.12."""
    if sys.version_info[:2] not in ((3, 11), (3, 12)):
        raise RuntimeError(f"broker.tls is written for CPython 3.11/3.12, not {sys.version}")


class CompactTLSProtocol(sslproto.SSLProtocol):
    """asyncio's server-side TLS protocol, reading one TLS record at a time.

    ``on_lost`` is called once when the connection ends, whether or not the handshake
    completed (the wrapped app protocol only hears of connections that completed it).
    """

    max_size = TLS_RECORD

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app_protocol: asyncio.BaseProtocol,
        sslcontext: ssl.SSLContext,
        *,
        handshake_timeout: float,
        on_lost: Callable[[], None],
    ) -> None:
        super().__init__(
            loop,
            app_protocol,
            sslcontext,
            None,  # type: ignore[arg-type]  # typeshed: a waiter is optional in CPython
            server_side=True,
            ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]  # float is fine
            ssl_shutdown_timeout=5.0,
        )
        self._on_lost: Callable[[], None] | None = on_lost

    def connection_lost(self, exc: BaseException | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            callback, self._on_lost = self._on_lost, None
            if callback is not None:
                callback()


class RefuseProtocol(asyncio.Protocol):
    """Closes a connection at once: the listener is full (back-pressure, not memory)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()
