"""The Ed25519 key that signs OTA manifests. Pure: keys in, bytes out."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def new_signing_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def sign(key: ed25519.Ed25519PrivateKey, data: bytes) -> bytes:
    return key.sign(data)


def verify_signature(public: ed25519.Ed25519PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def private_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM (the file is protected by mode 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_pem(key: ed25519.Ed25519PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_signing_key(pem: bytes) -> ed25519.Ed25519PrivateKey:
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise ValueError("expected an Ed25519 private key")
    return private


def load_signing_public(pem: bytes) -> ed25519.Ed25519PublicKey:
    public = serialization.load_pem_public_key(pem)
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise ValueError("expected an Ed25519 public key")
    return public
