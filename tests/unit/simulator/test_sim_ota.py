"""The OTA stub records jobs and chunks and publishes nothing."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from simulator.ota import OtaClient, RecordingOtaClient

pytestmark = pytest.mark.unit


def test_the_stub_records_jobs() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    job = {
        "job_id": "job-1",
        "campaign_id": "c1",
        "manifest": {
            "artifact": "fw",
            "version": "1.0",
            "size": 1,
            "sha256": digest,
            "chunk_size": 1,
            "chunk_count": 1,
            "chunks": [digest],
        },
        "signature": base64.b64encode(b"\x00" * 64).decode(),
    }
    client: OtaClient = RecordingOtaClient(keep=2)
    assert client.on_job(json.dumps(job).encode(), now_ms=5) == []
    assert client.on_job(b"{}", now_ms=6) == []
    assert client.on_chunk("job-1", 0, b"x", now_ms=7) == []
    assert client.on_reconnect(now_ms=8) == []
    assert isinstance(client, RecordingOtaClient)
    assert [j.job_id for j in client.jobs] == ["job-1", None]
    assert client.jobs[1].error
    assert list(client.chunks) == [("job-1", 0, 1)]
