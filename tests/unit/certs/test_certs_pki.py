"""certs.pki and certs.badcerts: what the pure issuing functions return."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import VerificationError
from hypothesis import given, settings
from hypothesis import strategies as st

from certs import badcerts, pki, signing
from schemas.ids import Identity, Role, make_vin

pytestmark = pytest.mark.unit

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LIFE = pki.Lifetimes()
VIN = make_vin(1)
KEY = pki.new_key()


@pytest.fixture(scope="module")
def root() -> pki.Issued:
    return pki.create_root_ca(validity=pki.Validity.starting(NOW, LIFE.root))


@pytest.fixture(scope="module")
def issuing(root: pki.Issued) -> pki.Issued:
    return pki.create_issuing_ca(root, validity=pki.Validity.starting(NOW, LIFE.issuing))


T = TypeVar("T", bound=x509.ExtensionType)


def _ext(cert: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return cert.extensions.get_extension_for_class(kind)


def _verify(leaf: pki.Issued, root: pki.Issued, issuing: pki.Issued) -> list[x509.Certificate]:
    return pki.verify_client(leaf.cert, intermediates=[issuing.cert], roots=[root.cert], now=NOW)


def test_root_ca_is_a_self_signed_p256_ca_for_one_level(root: pki.Issued) -> None:
    cert = root.cert
    assert cert.subject == cert.issuer
    assert isinstance(root.key.curve, ec.SECP256R1)
    basic = _ext(cert, x509.BasicConstraints)
    assert (basic.critical, basic.value.ca, basic.value.path_length) == (True, True, 1)
    usage = _ext(cert, x509.KeyUsage)
    assert (usage.critical, usage.value.key_cert_sign, usage.value.crl_sign) == (True, True, True)
    assert not usage.value.digital_signature
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= timedelta(days=20 * 365)
    ski = _ext(cert, x509.SubjectKeyIdentifier).value
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == ski.digest
    cert.verify_directly_issued_by(cert)


def test_issuing_ca_is_signed_by_root_with_pathlen_zero(
    root: pki.Issued, issuing: pki.Issued
) -> None:
    cert = issuing.cert
    cert.verify_directly_issued_by(root.cert)
    assert cert.issuer == root.cert.subject
    basic = _ext(cert, x509.BasicConstraints)
    assert (basic.critical, basic.value.ca, basic.value.path_length) == (True, True, 0)
    usage = _ext(cert, x509.KeyUsage).value
    assert (usage.key_cert_sign, usage.crl_sign, usage.digital_signature) == (True, True, False)
    root_ski = _ext(root.cert, x509.SubjectKeyIdentifier).value.digest
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == root_ski
    assert cert.not_valid_after_utc <= root.cert.not_valid_after_utc


@pytest.mark.parametrize(
    ("role", "ident", "usages"),
    [
        (Role.VEHICLE, VIN, [ExtendedKeyUsageOID.CLIENT_AUTH]),
        (Role.APP, "fleet-app", [ExtendedKeyUsageOID.CLIENT_AUTH]),
        (
            Role.SERVICE,
            "gateway",
            [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
        ),
    ],
)
def test_leaf_names_its_identity_and_verifies_as_a_client(
    root: pki.Issued,
    issuing: pki.Issued,
    role: Role,
    ident: str,
    usages: list[x509.ObjectIdentifier],
) -> None:
    identity = Identity.of(role=role, id=ident)
    leaf = pki.issue_leaf(issuing, identity, validity=pki.Validity.starting(NOW, LIFE.leaf))
    cert = leaf.cert
    assert cert.subject.rfc4514_string() == f"CN={ident},OU={role.value}"
    assert cert.issuer == issuing.cert.subject
    assert isinstance(leaf.key.curve, ec.SECP256R1)
    basic = _ext(cert, x509.BasicConstraints)
    assert (basic.critical, basic.value.ca) == (True, False)
    usage = _ext(cert, x509.KeyUsage)
    assert (usage.critical, usage.value.digital_signature, usage.value.key_cert_sign) == (
        True,
        True,
        False,
    )
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == usages
    issuing_ski = _ext(issuing.cert, x509.SubjectKeyIdentifier).value.digest
    assert _ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == issuing_ski
    assert cert.not_valid_before_utc == NOW - pki.CLOCK_SKEW
    assert cert.not_valid_after_utc == NOW + LIFE.leaf
    assert _verify(leaf, root, issuing) == [cert, issuing.cert, root.cert]
    assert pki.identity_of(cert) == identity


@settings(max_examples=25, deadline=None)
@given(number=st.integers(min_value=0, max_value=33**11 - 1))
def test_any_generated_vin_gets_a_leaf_naming_it(issuing: pki.Issued, number: int) -> None:
    identity = Identity.of(role=Role.VEHICLE, id=make_vin(number))
    leaf = pki.issue_leaf(
        issuing, identity, validity=pki.Validity.starting(NOW, LIFE.leaf), key=KEY
    )
    assert pki.identity_of(leaf.cert) == identity
    cns = leaf.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [a.value for a in cns] == [identity.id]


def test_leaf_never_outlives_its_ca(issuing: pki.Issued) -> None:
    far = pki.Validity(NOW, NOW + timedelta(days=365 * 50))
    leaf = pki.issue_leaf(issuing, Identity.of(role=Role.APP, id="a"), validity=far)
    assert leaf.cert.not_valid_after_utc == issuing.cert.not_valid_after_utc


def test_serial_and_key_can_be_given(issuing: pki.Issued) -> None:
    leaf = pki.issue_leaf(
        issuing,
        Identity.of(role=Role.APP, id="a"),
        validity=pki.Validity.starting(NOW, LIFE.leaf),
        key=KEY,
        serial=4242,
    )
    assert leaf.cert.serial_number == 4242
    assert leaf.key is KEY


def test_server_certificate_serves_localhost_and_extra_names(
    root: pki.Issued, issuing: pki.Issued
) -> None:
    server = pki.issue_server(
        issuing,
        validity=pki.Validity.starting(NOW, LIFE.server),
        extra_sans=["broker.example", "10.0.0.7", "localhost"],
    )
    cert = server.cert
    sans = _ext(cert, x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "broker.example"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("10.0.0.7"),
    ]
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc == NOW + LIFE.server
    assert not _ext(cert, x509.BasicConstraints).value.ca
    with pytest.raises(ValueError, match="broker"):
        pki.identity_of(cert)  # the server certificate names no speaker


def test_server_sans_keeps_order_and_drops_duplicates() -> None:
    assert pki.server_sans([" 127.0.0.1", "::1", "localhost", "h"]) == [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("h"),
    ]


def test_bad_certificates_each_fail_verification_for_their_reason(
    root: pki.Issued, issuing: pki.Issued
) -> None:
    identity = Identity.of(role=Role.VEHICLE, id=VIN)
    bad = {
        "foreign": badcerts.foreign_leaf(identity, now=NOW),
        "expired": badcerts.expired_leaf(issuing, identity, now=NOW),
        "not yet valid": badcerts.not_yet_valid_leaf(issuing, identity, now=NOW),
    }
    assert bad["foreign"].cert.issuer == issuing.cert.subject  # same names, other keys
    assert bad["expired"].cert.not_valid_after_utc < NOW
    assert bad["not yet valid"].cert.not_valid_before_utc > NOW
    for leaf in bad.values():
        assert pki.identity_of(leaf.cert) == identity
        with pytest.raises(VerificationError):
            _verify(leaf, root, issuing)


def test_foreign_pki_chain_verifies_only_against_itself(root: pki.Issued) -> None:
    foreign_root, foreign_issuing = badcerts.foreign_pki(now=NOW)
    leaf = pki.issue_leaf(
        foreign_issuing,
        Identity.of(role=Role.APP, id="x"),
        validity=pki.Validity.starting(NOW, LIFE.leaf),
    )
    assert _verify(leaf, foreign_root, foreign_issuing)[-1] == foreign_root.cert
    with pytest.raises(VerificationError):
        _verify(leaf, root, foreign_issuing)


def test_server_certificate_is_not_a_client_certificate(
    root: pki.Issued, issuing: pki.Issued
) -> None:
    server = pki.issue_server(issuing, validity=pki.Validity.starting(NOW, LIFE.server))
    with pytest.raises(VerificationError):
        _verify(server, root, issuing)


def test_pem_round_trip(issuing: pki.Issued) -> None:
    again = pki.load_issued(pki.cert_pem(issuing.cert), pki.key_pem(issuing.key))
    assert again.cert == issuing.cert
    assert again.key.private_numbers() == issuing.key.private_numbers()
    assert pki.key_pem(issuing.key).startswith(b"-----BEGIN PRIVATE KEY-----")


def test_load_issued_refuses_a_non_ec_key(issuing: pki.Issued) -> None:
    other = signing.private_pem(signing.new_signing_key())
    with pytest.raises(ValueError, match="EC private key"):
        pki.load_issued(pki.cert_pem(issuing.cert), other)
