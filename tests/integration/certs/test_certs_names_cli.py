"""``fleetgate certs issue`` refuses app ids / service names that are VINs, and an app and a
service with the same name (the real console script, a temporary FLEETGATE_HOME)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs import pki, store
from certs.names import NameClash
from certs.store import PkiPaths, read_index
from schemas.ids import InvalidIdentifier, Role, make_vin

pytestmark = pytest.mark.integration

FLEETGATE = Path(sys.executable).with_name("fleetgate")
VIN = make_vin(7)


def certs(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLEETGATE), "certs", *args],
        cwd=home,
        env={**os.environ, "FLEETGATE_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def refused(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("names-home")
    for args in (("init",), ("issue", "app", "fleet-app"), ("issue", "service", "gateway")):
        proc = certs(home, *args)
        assert proc.returncode == 0, proc.stderr
    return home


def _files(home: Path) -> set[str]:
    return {p.name for p in (home / "pki").rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["app", "service"])
def test_a_vin_as_app_id_or_service_name_is_refused_and_nothing_is_written(
    home: Path, kind: str
) -> None:
    before, index_before = _files(home), (home / "pki" / "index.jsonl").read_bytes()
    line = refused(certs(home, "issue", kind, "ok-name", VIN), VIN, "is a valid VIN")
    assert line.startswith("fleetgate: error:")
    assert _files(home) == before
    assert (home / "pki" / "index.jsonl").read_bytes() == index_before


def test_an_app_named_like_a_service_is_refused(home: Path) -> None:
    refused(certs(home, "issue", "app", "gateway"), "app id 'gateway' is already a service name")
    assert not (home / "pki" / "apps" / "gateway.pem").exists()


def test_a_service_named_like_an_app_is_refused(home: Path) -> None:
    refused(
        certs(home, "issue", "service", "new-svc", "fleet-app"),
        "service name 'fleet-app' is already an app id",
    )
    assert not (home / "pki" / "services" / "new-svc.pem").exists()


def test_distinct_names_still_issue(home: Path) -> None:
    proc = certs(home, "issue", "app", "other-app")
    assert proc.returncode == 0, proc.stderr
    proc = certs(home, "issue", "service", "ops-2")
    assert proc.returncode == 0, proc.stderr


def test_store_refuses_before_writing_and_ensure_pki_reports_the_clash(tmp_path: Path) -> None:
    now, life = datetime.now(UTC), pki.Lifetimes()
    paths = PkiPaths(tmp_path)
    store.init_pki(paths, now=now, lifetimes=life)
    with pytest.raises(InvalidIdentifier):
        store.issue_leaves(paths, Role.SERVICE, [VIN], now=now, lifetimes=life)
    store.issue_leaves(paths, Role.APP, ["processors"], now=now, lifetimes=life)
    entries = len(read_index(paths))
    # the stack's services include "processors": the PKI says why instead of a broker failing
    with pytest.raises(NameClash, match="'processors' is already an app id"):
        store.ensure_pki(tmp_path)
    assert len(read_index(paths)) == entries
    assert not (tmp_path / "pki" / "services" / "processors.pem").exists()
