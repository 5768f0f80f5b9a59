"""Certificate revocation lists. Pure: no file I/O, time passed in."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from certs.pki import CLOCK_SKEW, Issued, subject_key_identifier


@dataclass(frozen=True)
class Revocation:
    """One revoked serial and when it was revoked."""

    serial: int
    revoked_at: datetime


def create_crl(
    ca: Issued,
    revoked: Iterable[Revocation],
    *,
    now: datetime,
    next_update: timedelta,
    number: int,
) -> x509.CertificateRevocationList:
    """A CRL signed by ``ca`` listing ``revoked`` (CRL number ``number``, valid until now+next)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(now + next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                subject_key_identifier(ca.cert)
            ),
            critical=False,
        )
    )
    for entry in sorted(revoked, key=lambda r: r.serial):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256())


def crl_bundle(
    *,
    root: Issued,
    issuing: Issued,
    revoked: Iterable[Revocation],
    now: datetime,
    next_update: timedelta,
    number: int,
) -> bytes:
    """``crl.pem``: the issuing CA's CRL (leaves) then the root's (CAs), PEM-concatenated.

    OpenSSL's ``-crl_check`` (Mosquitto's ``crlfile``) needs the first; ``-crl_check_all``
    needs a CRL from every CA of the chain, so the root's (empty) CRL is included too.
    """
    leaves = create_crl(issuing, revoked, now=now, next_update=next_update, number=number)
    cas = create_crl(root, (), now=now, next_update=next_update, number=number)
    return crl_pem(leaves) + crl_pem(cas)


def crl_number(crl: x509.CertificateRevocationList) -> int:
    """The CRL's number (0 when it has none)."""
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return 0


def load_crls(pem: bytes) -> list[x509.CertificateRevocationList]:
    """Every CRL in a PEM bundle such as ``crl.pem``."""
    marker = b"-----BEGIN X509 CRL-----"
    return [x509.load_pem_x509_crl(marker + part) for part in pem.split(marker)[1:] if part.strip()]


def revoked_serials(crl_bundle_pem: bytes, *, issuer: x509.Name | None = None) -> frozenset[int]:
    """Serials revoked by the CRLs in ``crl_bundle_pem`` (only ``issuer``'s CRLs if given)."""
    return frozenset(
        revoked.serial_number
        for crl in load_crls(crl_bundle_pem)
        if issuer is None or crl.issuer == issuer
        for revoked in crl
    )


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)
