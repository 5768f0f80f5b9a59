"""``python -m gateway`` (what ``fleetgate gateway`` runs): help, bad input as one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .support import ROOT

pytestmark = pytest.mark.integration


def run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_help() -> None:
    proc = run(["--help"], {})
    assert proc.returncode == 0
    assert "--shared-group" in proc.stdout
    assert "--slice" in proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        ([], {"FLEETGATE_GATEWAY__MAX_INFLIGHT": "-1"}, "max_inflight"),
        (["--shared-group", "a/b"], {}, "shared_group"),
        ([], {"FLEETGATE_KAFKA__TOPIC_PREFIX": "bad prefix!"}, "topic_prefix"),
        ([], {}, "fleetgate certs issue service gateway"),  # no PKI under the home
        (["--metrics-port", "nope"], {}, "--metrics-port"),
        (["--slice", "2/2"], {}, "slice 2 does not exist"),
        (["--slice", "half"], {}, "K/N"),
        (["--slice", "1/2"], {}, "fleetgate certs issue service gateway-1"),  # its own cert
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str], words: str, tmp_path: Path
) -> None:
    proc = run(args, {"FLEETGATE_HOME": str(tmp_path / "empty"), **env})
    assert proc.returncode == 2, proc.stderr
    assert words in proc.stderr
    assert "Traceback" not in proc.stderr
