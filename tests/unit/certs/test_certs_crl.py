"""certs.crl: CRL contents, the two-CRL bundle, and what OpenSSL's checks make of it."""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from certs import crl, pki
from schemas.ids import Identity, Role, make_vin

pytestmark = pytest.mark.unit

NOW = datetime.now(UTC).replace(microsecond=0)
LIFE = pki.Lifetimes()


@pytest.fixture(scope="module")
def root() -> pki.Issued:
    return pki.create_root_ca(validity=pki.Validity.starting(NOW, LIFE.root))


@pytest.fixture(scope="module")
def issuing(root: pki.Issued) -> pki.Issued:
    return pki.create_issuing_ca(root, validity=pki.Validity.starting(NOW, LIFE.issuing))


def _leaf(issuing: pki.Issued, n: int) -> pki.Issued:
    identity = Identity.of(role=Role.VEHICLE, id=make_vin(n))
    return pki.issue_leaf(issuing, identity, validity=pki.Validity.starting(NOW, LIFE.leaf))


def test_crl_lists_revoked_serials_with_their_dates(issuing: pki.Issued) -> None:
    when = NOW - timedelta(hours=1)
    revoked = [crl.Revocation(serial=7, revoked_at=when), crl.Revocation(serial=3, revoked_at=NOW)]
    result = crl.create_crl(issuing, revoked, now=NOW, next_update=timedelta(days=7), number=12)
    assert result.issuer == issuing.cert.subject
    assert result.is_signature_valid(issuing.key.public_key())
    assert [(r.serial_number, r.revocation_date_utc) for r in result] == [(3, NOW), (7, when)]
    assert result.next_update_utc == NOW + timedelta(days=7)
    assert result.last_update_utc == NOW - pki.CLOCK_SKEW
    assert crl.crl_number(result) == 12
    aki = result.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = issuing.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_bundle_holds_the_issuing_crl_then_the_root_crl(
    root: pki.Issued, issuing: pki.Issued
) -> None:
    bundle = crl.crl_bundle(
        root=root,
        issuing=issuing,
        revoked=[crl.Revocation(serial=99, revoked_at=NOW)],
        now=NOW,
        next_update=LIFE.crl,
        number=5,
    )
    leaves, cas = crl.load_crls(bundle)
    assert leaves.issuer == issuing.cert.subject
    assert cas.issuer == root.cert.subject
    assert cas.is_signature_valid(root.key.public_key())
    assert len(cas) == 0
    assert crl.revoked_serials(bundle) == {99}
    assert crl.revoked_serials(bundle, issuer=root.cert.subject) == frozenset()
    assert [crl.crl_number(c) for c in (leaves, cas)] == [5, 5]


def test_load_crls_of_nothing_is_empty() -> None:
    assert crl.load_crls(b"") == []
    assert crl.revoked_serials(b"") == frozenset()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_crl_checks_need_the_bundle(
    root: pki.Issued, issuing: pki.Issued, tmp_path: Path
) -> None:
    """-crl_check (Mosquitto's crlfile) needs the issuing CA's CRL; -crl_check_all needs the
    root's too: with the bundle both accept a good leaf and refuse a revoked one."""
    good, bad = _leaf(issuing, 1), _leaf(issuing, 2)
    revoked = [crl.Revocation(serial=bad.cert.serial_number, revoked_at=NOW)]
    bundle = crl.crl_bundle(
        root=root, issuing=issuing, revoked=revoked, now=NOW, next_update=LIFE.crl, number=1
    )
    leaves_only = crl.crl_pem(crl.load_crls(bundle)[0])
    files = {
        "chain.pem": pki.cert_pem(issuing.cert) + pki.cert_pem(root.cert),
        "bundle.pem": bundle,
        "leaves.pem": leaves_only,
        "good.pem": pki.cert_pem(good.cert),
        "bad.pem": pki.cert_pem(bad.cert),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)

    def verify(cert: str, crls: str, flag: str) -> str:
        proc = subprocess.run(
            ["openssl", "verify", "-CAfile", "chain.pem", flag, "-CRLfile", crls, cert],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )
        return "OK" if proc.returncode == 0 else proc.stdout + proc.stderr

    for flag in ("-crl_check", "-crl_check_all"):
        assert verify("good.pem", "bundle.pem", flag) == "OK"
        assert "certificate revoked" in verify("bad.pem", "bundle.pem", flag)
    assert verify("good.pem", "leaves.pem", "-crl_check") == "OK"
    assert "unable to get certificate CRL" in verify("good.pem", "leaves.pem", "-crl_check_all")
