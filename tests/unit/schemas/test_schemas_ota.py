"""schemas.ota: manifest consistency, canonical bytes, signatures."""

from __future__ import annotations

import base64
import hashlib
import json
import math
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.codec import encode
from schemas.ota import (
    OtaChunkRequest,
    OtaJob,
    OtaManifest,
    OtaState,
    canonical_manifest_bytes,
)

pytestmark = pytest.mark.unit


def manifest_for(data: bytes, size_of_chunk: int, **overrides: Any) -> dict[str, Any]:
    chunks = [
        hashlib.sha256(data[i : i + size_of_chunk]).hexdigest()
        for i in range(0, len(data), size_of_chunk)
    ]
    fields: dict[str, Any] = {
        "artifact": "ecu-fw",
        "version": "2.0.0+build.7",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "chunk_size": size_of_chunk,
        "chunk_count": len(chunks),
        "chunks": chunks,
    }
    return {**fields, **overrides}


@given(data=st.binary(min_size=1, max_size=2000), chunk_size=st.integers(1, 300))
def test_consistent_manifest_accepted(data: bytes, chunk_size: int) -> None:
    manifest = OtaManifest.model_validate(manifest_for(data, chunk_size))
    assert manifest.chunk_count == math.ceil(len(data) / chunk_size)
    # chunk ranges tile the artifact and match the digests
    rebuilt = b""
    for i in range(manifest.chunk_count):
        start, end = manifest.chunk_range(i)
        piece = data[start:end]
        assert hashlib.sha256(piece).hexdigest() == manifest.chunks[i]
        rebuilt += piece
    assert rebuilt == data


def test_chunk_range_bounds() -> None:
    manifest = OtaManifest.model_validate(manifest_for(b"0123456789", 4))
    assert manifest.chunk_range(2) == (8, 10)
    with pytest.raises(IndexError):
        manifest.chunk_range(3)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"chunk_count": 4}, r"chunk_count 4 != ceil\(size 10 / chunk_size 4\) = 3"),
        ({"chunk_size": 5}, "chunk_count 3 != ceil"),
        ({"size": 13}, "chunk_count 3 != ceil"),
        ({"chunks": ["a" * 64] * 2}, "chunks lists 2 digests; chunk_count is 3"),
        ({"sha256": "A" * 64}, "pattern"),
        ({"chunks": ["a" * 63] * 3}, "pattern"),
        ({"size": 0}, "greater than or equal to 1"),
        ({"chunk_size": 0}, "greater than or equal to 1"),
        ({"artifact": "../etc"}, "pattern"),
        ({"version": ""}, "pattern"),
    ],
)
def test_inconsistent_manifest_rejected(overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        OtaManifest.model_validate(manifest_for(b"0123456789", 4, **overrides))


def test_canonical_bytes_are_stable() -> None:
    manifest = OtaManifest.model_validate(manifest_for(b"0123456789", 4))
    canonical = canonical_manifest_bytes(manifest)
    # fixed expectation: sorted keys, no spaces, UTF-8
    expected = (
        '{"artifact":"ecu-fw","chunk_count":3,"chunk_size":4,"chunks":['
        + ",".join(f'"{c}"' for c in manifest.chunks)
        + f'],"sha256":"{manifest.sha256}","size":10,"version":"2.0.0+build.7"}}'
    ).encode()
    assert canonical == expected
    # independent of the input's key order and whitespace
    shuffled = json.dumps(dict(reversed(list(manifest.model_dump().items()))), indent=3)
    assert canonical_manifest_bytes(OtaManifest.model_validate_json(shuffled)) == canonical
    assert canonical_manifest_bytes(manifest) == canonical


def test_signature_over_canonical_manifest_verifies() -> None:
    key = Ed25519PrivateKey.generate()
    manifest = OtaManifest.model_validate(manifest_for(b"firmware" * 100, 64))
    signature = base64.b64encode(key.sign(canonical_manifest_bytes(manifest))).decode()
    job = OtaJob(job_id="job-1", campaign_id="c1", manifest=manifest, signature=signature)
    received = OtaJob.model_validate_json(encode(job))
    key.public_key().verify(received.signature_bytes, received.signed_bytes)  # raises if bad
    assert received == job


def test_chunk_request_alias() -> None:
    request = OtaChunkRequest(job_id="job-1", from_=5, count=2)
    assert json.loads(encode(request)) == {"job_id": "job-1", "from": 5, "count": 2}
    assert OtaChunkRequest.model_validate_json(b'{"job_id": "j", "from": 0}').count == 1


def test_ota_state_final() -> None:
    assert [s.value for s in OtaState] == [
        "notified",
        "downloading",
        "downloaded",
        "installing",
        "succeeded",
        "failed",
    ]
    assert OtaState.FAILED.is_final
    assert not OtaState.INSTALLING.is_final
