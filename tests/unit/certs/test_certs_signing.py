"""certs.signing: the Ed25519 OTA key signs, verifies, and survives PEM."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certs import pki, signing

pytestmark = pytest.mark.unit

KEY = signing.new_signing_key()


@given(data=st.binary(max_size=4096))
def test_signature_round_trip(data: bytes) -> None:
    signature = signing.sign(KEY, data)
    assert len(signature) == 64
    assert signing.verify_signature(KEY.public_key(), data, signature)
    assert not signing.verify_signature(KEY.public_key(), data + b"x", signature)


def test_another_key_does_not_verify() -> None:
    signature = signing.sign(KEY, b"manifest")
    other = signing.new_signing_key().public_key()
    assert not signing.verify_signature(other, b"manifest", signature)


def test_pem_round_trip() -> None:
    private = signing.load_signing_key(signing.private_pem(KEY))
    public = signing.load_signing_public(signing.public_pem(KEY.public_key()))
    signature = signing.sign(private, b"manifest")
    assert signing.verify_signature(public, b"manifest", signature)
    assert signing.verify_signature(KEY.public_key(), b"manifest", signature)


def test_loading_an_ec_key_as_signing_key_is_refused() -> None:
    with pytest.raises(ValueError, match="Ed25519"):
        signing.load_signing_key(pki.key_pem(pki.new_key()))
