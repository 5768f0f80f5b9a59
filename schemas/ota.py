"""Over-the-air updates: job, manifest, status, chunk requests. Pure.

A job's ``signature`` is Ed25519 over :func:`canonical_manifest_bytes` of its manifest. Chunk
``i`` holds bytes ``[i * chunk_size, min((i + 1) * chunk_size, size))`` of the artifact and
is published raw on ``vehicles/<VIN>/ota/chunks/<job_id>/<i>``; ``chunks[i]`` is its SHA-256.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from typing import Annotated, Final, Self

from pydantic import AfterValidator, Field, StringConstraints, model_validator

from schemas.base import FleetModel, SafeId, Sha256Hex, ShortText
from schemas.topic_kinds import MAX_CHUNK_INDEX

MAX_CHUNK_COUNT: Final = MAX_CHUNK_INDEX + 1
MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024
MAX_ARTIFACT_SIZE: Final = MAX_CHUNK_COUNT * MAX_CHUNK_SIZE
MAX_CHUNKS_PER_REQUEST: Final = 256
ED25519_SIGNATURE_BYTES: Final = 64
VERSION_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}$"


class OtaState(enum.StrEnum):
    """What a vehicle reports about a job."""

    NOTIFIED = "notified"
    DOWNLOADING = "downloading"
    DOWNLOADED = "downloaded"
    INSTALLING = "installing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (OtaState.SUCCEEDED, OtaState.FAILED)


class OtaManifest(FleetModel):
    """What is installed and how to check it: the artifact, its size and digests."""

    artifact: SafeId
    """The artifact's name."""
    version: Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
    size: Annotated[int, Field(ge=1, le=MAX_ARTIFACT_SIZE)]
    """Bytes."""
    sha256: Sha256Hex
    """Of the whole artifact."""
    chunk_size: Annotated[int, Field(ge=1, le=MAX_CHUNK_SIZE)]
    chunk_count: Annotated[int, Field(ge=1, le=MAX_CHUNK_COUNT)]
    chunks: Annotated[list[Sha256Hex], Field(min_length=1, max_length=MAX_CHUNK_COUNT)]
    """SHA-256 of every chunk, in order."""

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        expected = -(-self.size // self.chunk_size)
        if self.chunk_count != expected:
            raise ValueError(
                f"chunk_count {self.chunk_count} != ceil(size {self.size} / chunk_size "
                f"{self.chunk_size}) = {expected}"
            )
        if len(self.chunks) != self.chunk_count:
            raise ValueError(
                f"chunks lists {len(self.chunks)} digests; chunk_count is {self.chunk_count}"
            )
        return self

    def chunk_range(self, index: int) -> tuple[int, int]:
        """``(start, end)`` byte offsets of chunk ``index`` in the artifact."""
        if not 0 <= index < self.chunk_count:
            raise IndexError(f"chunk index {index} not in 0..{self.chunk_count - 1}")
        start = index * self.chunk_size
        return start, min(start + self.chunk_size, self.size)


def canonical_manifest_bytes(manifest: OtaManifest) -> bytes:
    """The bytes the Ed25519 signature covers: JSON, keys sorted, no spaces, UTF-8."""
    return json.dumps(
        manifest.model_dump(mode="json"),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def _check_signature(value: str) -> str:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("signature is not valid base64") from None
    if len(raw) != ED25519_SIGNATURE_BYTES:
        raise ValueError(
            f"signature has {len(raw)} bytes; an Ed25519 signature has {ED25519_SIGNATURE_BYTES}"
        )
    return value


Signature = Annotated[
    str, AfterValidator(_check_signature), Field(json_schema_extra={"contentEncoding": "base64"})
]


class OtaJob(FleetModel):
    """``vehicles/<VIN>/ota/jobs`` (downlink): ``{"job_id", "campaign_id", "manifest",
    "signature"}``; ``signature`` is base64 Ed25519 over the canonical manifest."""

    job_id: SafeId
    campaign_id: SafeId
    manifest: OtaManifest
    signature: Signature

    @property
    def signature_bytes(self) -> bytes:
        return base64.b64decode(self.signature)

    @property
    def signed_bytes(self) -> bytes:
        """What the signature covers: :func:`canonical_manifest_bytes` of the manifest."""
        return canonical_manifest_bytes(self.manifest)


class OtaStatus(FleetModel):
    """``vehicles/<VIN>/ota/status``: ``{"job_id", "state", "progress": 0..1, "error"}``."""

    job_id: SafeId
    state: OtaState
    progress: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    error: ShortText | None = None


class OtaChunkRequest(FleetModel):
    """``vehicles/<VIN>/ota/chunks/request``: ``{"job_id", "from": <index>, "count": <n>}``.

    Asks for chunks ``from .. from + count - 1`` (clipped to the manifest's chunk count).
    In Python the field is ``from_``; in JSON it is ``from``.
    """

    job_id: SafeId
    from_: Annotated[int, Field(alias="from", ge=0, le=MAX_CHUNK_INDEX)]
    count: Annotated[int, Field(ge=1, le=MAX_CHUNKS_PER_REQUEST)] = 1
