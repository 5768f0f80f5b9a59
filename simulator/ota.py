"""The vehicle side of over-the-air updates: the hook a simulated vehicle calls, and a stub.

A full client (the campaign work fills it in) implements :class:`OtaClient`: on
``vehicles/<VIN>/ota/jobs`` it verifies the job's Ed25519 signature over the canonical manifest
(``schemas.ota.OtaJob.signed_bytes``), reports ``notified``, requests chunks
(``ota/chunks/request``), checks every chunk's SHA-256 against the manifest as it arrives,
resumes from the first missing index after a reconnect, reports ``downloading`` /
``downloaded`` / ``installing`` / ``succeeded`` or ``failed``. It returns what to publish;
the vehicle publishes it (QoS 1) on the topic of its kind.

:class:`RecordingOtaClient` only records the jobs it receives (valid or not) and publishes
nothing: a vehicle with it never starts a download.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

from schemas.codec import PayloadError, decode
from schemas.ota import OtaJob
from schemas.topic_kinds import TopicKind

OtaTopic = Literal[TopicKind.OTA_STATUS, TopicKind.OTA_CHUNK_REQUEST]


@dataclass(frozen=True, slots=True)
class OtaMessage:
    """Something the OTA client wants published on the vehicle's ``kind`` topic."""

    kind: OtaTopic
    payload: bytes


class OtaClient(Protocol):
    """What a simulated vehicle calls for its OTA downlink (one instance per vehicle)."""

    def on_job(self, payload: bytes, *, now_ms: int) -> list[OtaMessage]:
        """A message on ``ota/jobs`` (raw payload; the client validates it)."""
        ...

    def on_chunk(self, job_id: str, index: int, data: bytes, *, now_ms: int) -> list[OtaMessage]:
        """Chunk ``index`` of ``job_id`` (raw bytes, from ``ota/chunks/<job_id>/<index>``)."""
        ...

    def on_reconnect(self, *, now_ms: int) -> list[OtaMessage]:
        """The vehicle is online again: resume what was interrupted."""
        ...


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_id: str | None
    """None if the payload was not a valid job."""
    received_ms: int
    error: str | None = None


class RecordingOtaClient:
    """The stub: remembers the last ``keep`` jobs and chunks it saw, publishes nothing."""

    __slots__ = ("chunks", "jobs")

    def __init__(self, *, keep: int = 16) -> None:
        self.jobs: deque[JobRecord] = deque(maxlen=keep)
        self.chunks: deque[tuple[str, int, int]] = deque(maxlen=keep)

    def on_job(self, payload: bytes, *, now_ms: int) -> list[OtaMessage]:
        try:
            job = decode(TopicKind.OTA_JOB, payload)
        except PayloadError as exc:
            self.jobs.append(JobRecord(None, now_ms, str(exc)))
            return []
        assert isinstance(job, OtaJob)
        self.jobs.append(JobRecord(job.job_id, now_ms))
        return []

    def on_chunk(self, job_id: str, index: int, data: bytes, *, now_ms: int) -> list[OtaMessage]:
        self.chunks.append((job_id, index, len(data)))
        return []

    def on_reconnect(self, *, now_ms: int) -> list[OtaMessage]:
        return []
