"""The PKI as pure functions: root and issuing CA, client and server certificates.

No file I/O. Time is always passed in (``now`` or an explicit :class:`Validity`), so tests
can build expired and not-yet-valid certificates. Keys are EC P-256. Chain: root CA ->
issuing CA (pathlen 0) -> leaf. CRLs are in :mod:`certs.crl`, the OTA key in
:mod:`certs.signing`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

from schemas.ids import Identity, Role

SERVER_OU = "broker"
"""OU of the broker's server certificate: not a client role, so it never names a speaker."""
DEFAULT_SERVER_SANS: tuple[str, ...] = ("localhost", "127.0.0.1")
CLOCK_SKEW = timedelta(minutes=5)
"""Certificates start this long before ``now`` so a peer whose clock is behind accepts them."""


@dataclass(frozen=True)
class Lifetimes:
    """How long each kind of certificate (and a CRL) stays valid."""

    root: timedelta = timedelta(days=20 * 365 + 5)
    issuing: timedelta = timedelta(days=10 * 365 + 2)
    leaf: timedelta = timedelta(days=2 * 365)
    server: timedelta = timedelta(days=365)
    crl: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Validity:
    """A certificate's validity window (timezone-aware UTC)."""

    not_before: datetime
    not_after: datetime

    @classmethod
    def starting(cls, now: datetime, lifetime: timedelta) -> Validity:
        """Valid from a little before ``now`` (clock skew) for ``lifetime``."""
        return cls(not_before=now - CLOCK_SKEW, not_after=now + lifetime)


@dataclass(frozen=True)
class Issued:
    """A certificate and its EC private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def _ca_name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetgate"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def leaf_name(identity: Identity) -> x509.Name:
    """``CN=<id>, OU=<role>`` (RFC 4514 order; DER order is OU then CN)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, identity.role.value),
            x509.NameAttribute(NameOID.COMMON_NAME, identity.id),
        ]
    )


def subject_key_identifier(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


def _builder(
    *,
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_ski: x509.SubjectKeyIdentifier | None,
    validity: Validity,
    serial: int | None,
) -> x509.CertificateBuilder:
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski or ski)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(validity.not_before)
        .not_valid_after(validity.not_after)
        .add_extension(ski, critical=False)
        .add_extension(aki, critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """CAs sign certificates and CRLs; leaves only sign (the TLS handshake, ECDSA)."""
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def create_root_ca(
    *,
    validity: Validity,
    common_name: str = "fleetgate root CA",
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Issued:
    """A self-signed root CA that may sign one level of CAs below it (pathlen 1)."""
    key = key if key is not None else new_key()
    name = _ca_name(common_name)
    cert = (
        _builder(
            subject=name, issuer=name, key=key, issuer_ski=None, validity=validity, serial=None
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert=cert, key=key)


def create_issuing_ca(
    root: Issued,
    *,
    validity: Validity,
    common_name: str = "fleetgate issuing CA",
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Issued:
    """The CA that signs every leaf and the leaf CRL; signed by ``root``, pathlen 0."""
    key = key if key is not None else new_key()
    cert = (
        _builder(
            subject=_ca_name(common_name),
            issuer=root.cert.subject,
            key=key,
            issuer_ski=subject_key_identifier(root.cert),
            validity=_clamp(validity, root.cert),
            serial=None,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(root.key, hashes.SHA256())
    )
    return Issued(cert=cert, key=key)


def _clamp(validity: Validity, issuer: x509.Certificate) -> Validity:
    """A certificate never outlives the CA that signed it."""
    return Validity(validity.not_before, min(validity.not_after, issuer.not_valid_after_utc))


def extended_key_usage(role: Role) -> x509.ExtendedKeyUsage:
    """clientAuth for vehicles and apps; services are clients and may serve too."""
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role is Role.SERVICE:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    return x509.ExtendedKeyUsage(usages)


def issue_leaf(
    ca: Issued,
    identity: Identity,
    *,
    validity: Validity,
    key: ec.EllipticCurvePrivateKey | None = None,
    serial: int | None = None,
) -> Issued:
    """A client certificate ``CN=<id>, OU=<role>`` signed by the issuing CA ``ca``."""
    key = key if key is not None else new_key()
    cert = (
        _builder(
            subject=leaf_name(identity),
            issuer=ca.cert.subject,
            key=key,
            issuer_ski=subject_key_identifier(ca.cert),
            validity=_clamp(validity, ca.cert),
            serial=serial,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(extended_key_usage(identity.role), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert=cert, key=key)


def general_name(value: str) -> x509.GeneralName:
    """An IP address SAN if ``value`` parses as one, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def server_sans(extra: Sequence[str] = ()) -> list[x509.GeneralName]:
    """localhost and 127.0.0.1, then ``extra`` (duplicates dropped, order kept)."""
    seen: list[x509.GeneralName] = []
    for value in (*DEFAULT_SERVER_SANS, *extra):
        name = general_name(value.strip())
        if name not in seen:
            seen.append(name)
    return seen


def issue_server(
    ca: Issued,
    *,
    validity: Validity,
    extra_sans: Sequence[str] = (),
    common_name: str = "fleetgate broker",
    key: ec.EllipticCurvePrivateKey | None = None,
) -> Issued:
    """The broker's TLS server certificate (serverAuth; SANs localhost, 127.0.0.1, extras)."""
    key = key if key is not None else new_key()
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, SERVER_OU),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    cert = (
        _builder(
            subject=subject,
            issuer=ca.cert.subject,
            key=key,
            issuer_ski=subject_key_identifier(ca.cert),
            validity=_clamp(validity, ca.cert),
            serial=None,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(server_sans(extra_sans)), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert=cert, key=key)


def verify_client(
    leaf: x509.Certificate,
    *,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    now: datetime,
) -> list[x509.Certificate]:
    """Validate ``leaf`` as a TLS client certificate (RFC 5280); return the chain.

    Raises ``cryptography.x509.verification.VerificationError`` when the chain does not hold
    (another CA, expired, not yet valid, wrong key usage). Revocation is not checked here.
    """
    # The WebPKI profile wants a SAN on every leaf; an MQTT client is named by its subject.
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(list(roots)))
        .time(now)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee_policy)
        .build_client_verifier()
    )
    return verifier.verify(leaf, list(intermediates)).chain


def identity_of(cert: x509.Certificate) -> Identity:
    """The identity a leaf certificate names (raises ``ValueError`` if it names none)."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ous = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)
    if len(cns) != 1 or len(ous) != 1:
        raise ValueError("a leaf certificate names exactly one CN and one OU")
    return Identity.of(role=Role(str(ous[0].value)), id=str(cns[0].value))


# --- PEM encoding ----------------------------------------------------------------------------


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (the file is protected by mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_issued(cert: bytes, key: bytes) -> Issued:
    """Parse a PEM certificate and its PEM EC private key."""
    private = serialization.load_pem_private_key(key, password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an EC private key")
    return Issued(cert=x509.load_pem_x509_certificate(cert), key=private)
