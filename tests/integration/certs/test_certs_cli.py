"""``fleetgate certs``: the real console script in a temporary FLEETGATE_HOME."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509

from certs import crl, pki, store
from certs.store import PkiPaths, ensure_pki, read_index
from schemas.ids import Role, make_vin

pytestmark = pytest.mark.integration

FLEETGATE = Path(sys.executable).with_name("fleetgate")
VIN = make_vin(1)
VIN2 = make_vin(2)


def run(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(FLEETGATE), "certs", *args],
        cwd=home,
        env={**os.environ, "FLEETGATE_HOME": str(home), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(home: Path, *args: str) -> str:
    proc = run(home, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def openssl(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One PKI with two vehicles, an app and a service, shared by the read-only tests."""
    home = tmp_path_factory.mktemp("fleetgate-home")
    ok(home, "init")
    ok(home, "issue", "vehicle", VIN, VIN2)
    ok(home, "issue", "app", "fleet-app")
    ok(home, "issue", "service", "gateway")
    return home


def test_init_writes_the_contract_layout_with_private_keys_0600(home: Path) -> None:
    pki_dir = home / "pki"
    for name in ("root-ca.pem", "ca.pem", "ca-chain.pem", "crl.pem", "server.pem"):
        assert (pki_dir / name).is_file(), name
    keys = [
        "root-ca.key",
        "ca.key",
        "server.key",
        "signing.key",
        f"vehicles/{VIN}.key",
        "apps/fleet-app.key",
        "services/gateway.key",
    ]
    for name in keys:
        assert stat.S_IMODE((pki_dir / name).stat().st_mode) == 0o600, name
    for directory in (pki_dir, pki_dir / "vehicles", pki_dir / "apps", pki_dir / "services"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    assert (pki_dir / "signing.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert not list(pki_dir.rglob(".*.tmp"))


def test_openssl_accepts_issued_certificates_against_the_chain(home: Path) -> None:
    pki_dir = home / "pki"
    for cert in (f"vehicles/{VIN}.pem", "apps/fleet-app.pem", "services/gateway.pem"):
        proc = openssl(
            "verify", "-purpose", "sslclient", "-CAfile", "ca-chain.pem", cert, cwd=pki_dir
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = openssl(
        "verify", "-purpose", "sslserver", "-CAfile", "ca-chain.pem", "server.pem", cwd=pki_dir
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    subject = openssl("x509", "-in", f"vehicles/{VIN}.pem", "-noout", "-subject", cwd=pki_dir)
    assert subject.stdout.strip() == f"subject=OU = vehicles, CN = {VIN}"


def test_list_shows_every_certificate(home: Path) -> None:
    listed = json.loads(ok(home, "list", "--json"))
    assert [(e["kind"], e["id"]) for e in listed] == [
        ("server", "broker"),
        ("vehicle", VIN),
        ("vehicle", VIN2),
        ("app", "fleet-app"),
        ("service", "gateway"),
    ]
    cert = x509.load_pem_x509_certificate((home / "pki/vehicles" / f"{VIN}.pem").read_bytes())
    assert listed[1]["serial"] == f"{cert.serial_number:x}"
    assert listed[1]["revoked_at"] is None
    table = ok(home, "list", "--kind", "vehicle")
    assert VIN in table
    assert VIN2 in table
    assert "fleet-app" not in table


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("issue", "vehicle", "FGTSMV0000000000I"), ("illegal character 'I'", "position 17")),
        (("issue", "vehicle", "SHORT"), ("5 characters",)),
        (("issue", "vehicle", VIN), ("already has a certificate",)),
        (("issue", "vehicle"), ("VINs or --count",)),
        (("issue", "vehicle", "--count", "2", "--wmi", "IOQ"), ("WMI",)),
        (("issue", "app", "../x"), ("app id '../x' is not valid",)),
        (("issue", "service", "gateway"), ("already has a certificate",)),
        (("revoke", "nobody"), ("no unrevoked certificate", "nobody")),
        (("init",), ("already exists", "--force")),
    ],
)
def test_bad_input_is_one_line_and_nonzero(
    home: Path, args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    _one_line_error(run(home, *args), *needles)


@pytest.mark.parametrize(
    "args", [("frobnicate",), ("revoke", VIN, "--kind", "bogus"), ("issue", "app")]
)
def test_usage_errors_exit_2_without_traceback(home: Path, args: tuple[str, ...]) -> None:
    """Click reports usage errors itself (fleetgate.cli.main), with a usage hint."""
    proc = run(home, *args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"FLEETGATE_PKI__LEAF_DAYS": "soon"}, "pki.leaf_days"),
        ({"FLEETGATE_PKI__CRL_DAYS": "0"}, "pki.crl_days"),
        ({"FLEETGATE_PKI": "{not json"}, "pki"),
    ],
)
def test_bad_setting_is_one_line(home: Path, env: dict[str, str], needle: str) -> None:
    _one_line_error(run(home, "list", env=env), "bad setting", needle)


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    env = {"FLEETGATE_PKI__SERVER_SANS": "mqtt.example, 10.9.8.7", "FLEETGATE_PKI__LEAF_DAYS": "9"}
    assert run(tmp_path, "init", env=env).returncode == 0
    assert run(tmp_path, "issue", "app", "a", env=env).returncode == 0
    paths = PkiPaths(tmp_path)
    server = x509.load_pem_x509_certificate(paths.server()[0].read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "mqtt.example"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1",
        "10.9.8.7",
    ]
    app = x509.load_pem_x509_certificate(paths.app("a")[0].read_bytes())
    assert app.not_valid_after_utc - app.not_valid_before_utc == timedelta(days=9, minutes=5)


def test_without_a_pki_every_command_says_run_init(tmp_path: Path) -> None:
    for args in (("list",), ("issue", "app", "a"), ("revoke", "a"), ("crl",)):
        _one_line_error(run(tmp_path, *args), "certs init")
    assert not (tmp_path / "pki").exists()


def test_revoke_updates_the_crl_and_openssl_refuses_the_certificate(tmp_path: Path) -> None:
    ok(tmp_path, "init")
    ok(tmp_path, "issue", "vehicle", VIN, VIN2)
    pki_dir = tmp_path / "pki"
    serial = x509.load_pem_x509_certificate((pki_dir / f"vehicles/{VIN}.pem").read_bytes())
    number_before = crl.crl_number(crl.load_crls((pki_dir / "crl.pem").read_bytes())[0])

    out = ok(tmp_path, "revoke", VIN)
    assert f"{serial.serial_number:x}" in out

    text = openssl("crl", "-in", "crl.pem", "-noout", "-text", cwd=pki_dir).stdout
    listed_serials = {int(h, 16) for h in re.findall(r"Serial Number: ([0-9A-F]+)", text)}
    assert listed_serials == {serial.serial_number}
    crls = crl.load_crls((pki_dir / "crl.pem").read_bytes())
    assert crl.crl_number(crls[0]) == number_before + 1
    assert PkiPaths(tmp_path).exists()
    for flag in ("-crl_check", "-crl_check_all"):
        args = ("verify", "-CAfile", "ca-chain.pem", flag, "-CRLfile", "crl.pem")
        refused = openssl(*args, f"vehicles/{VIN}.pem", cwd=pki_dir)
        assert refused.returncode != 0
        assert "certificate revoked" in refused.stdout + refused.stderr
        assert openssl(*args, f"vehicles/{VIN2}.pem", cwd=pki_dir).returncode == 0

    listed = {e["id"]: e for e in json.loads(ok(tmp_path, "list", "--json"))}
    assert listed[VIN]["revoked_at"] is not None
    _one_line_error(run(tmp_path, "revoke", VIN), "no unrevoked certificate")

    # a revoked VIN may be issued again; the CRL keeps the old serial
    ok(tmp_path, "issue", "vehicle", VIN)
    fresh = x509.load_pem_x509_certificate((pki_dir / f"vehicles/{VIN}.pem").read_bytes())
    assert fresh.serial_number != serial.serial_number
    revoked = crl.revoked_serials((pki_dir / "crl.pem").read_bytes())
    assert revoked == {serial.serial_number}


def test_revoke_an_id_of_two_kinds_needs_kind(tmp_path: Path) -> None:
    ok(tmp_path, "init")
    ok(tmp_path, "issue", "app", "ops")
    _one_line_error(run(tmp_path, "issue", "service", "ops"), "already an app id")
    # a PKI from before app and service names were exclusive: issue past the check
    paths = PkiPaths(tmp_path)
    store.issue_chunk(
        ca_cert_pem=paths.ca.read_bytes(),
        ca_key_pem=paths.ca_key.read_bytes(),
        role=Role.SERVICE,
        ids=["ops"],
        validity=pki.Validity.starting(datetime.now(UTC), pki.Lifetimes().leaf),
        home=tmp_path,
    )
    _one_line_error(run(tmp_path, "revoke", "ops"), "app, service", "--kind")
    assert "revoked service ops" in ok(tmp_path, "revoke", "ops", "--kind", "service")


@pytest.mark.slow
def test_issue_count_skips_existing_and_uses_the_worker_pool(tmp_path: Path) -> None:
    ok(tmp_path, "init")
    first = ok(tmp_path, "issue", "vehicle", "--count", "3", "--wmi", "ABC")
    assert "issued 3 vehicle certificates" in first
    out = ok(tmp_path, "issue", "vehicle", "--count", "1200", "--wmi", "ABC")
    assert "issued 1197 vehicle certificates" in out
    assert "skipped 3" in out
    vehicles = sorted(p.stem for p in (tmp_path / "pki/vehicles").glob("*.pem"))
    assert vehicles == sorted(make_vin(n, wmi="ABC") for n in range(1200))
    entries = read_index(PkiPaths(tmp_path))
    assert len({e.serial for e in entries}) == len(entries) == 1201  # + the server
    out = ok(tmp_path, "issue", "vehicle", "--count", "2", "--wmi", "ABC", "--start", "1199")
    assert "issued 1 vehicle certificate " in out


def test_init_force_replaces_the_pki(tmp_path: Path) -> None:
    ok(tmp_path, "init")
    ok(tmp_path, "issue", "app", "a")
    old_root = (tmp_path / "pki/root-ca.pem").read_bytes()
    ok(tmp_path, "init", "--force")
    assert (tmp_path / "pki/root-ca.pem").read_bytes() != old_root
    assert not (tmp_path / "pki/apps/a.pem").exists()
    assert [e["id"] for e in json.loads(ok(tmp_path, "list", "--json"))] == ["broker"]


def test_home_option_overrides_the_environment(tmp_path: Path) -> None:
    other = tmp_path / "other"
    proc = run(tmp_path, "--home", str(other), "init")
    assert proc.returncode == 0, proc.stderr
    assert PkiPaths(other).exists()
    assert not PkiPaths(tmp_path).exists()


def test_ensure_pki_creates_once_then_only_tops_up(tmp_path: Path) -> None:
    paths = ensure_pki(tmp_path)
    assert paths.exists()
    for name in ("gateway", "processors", "ops"):
        assert all(p.is_file() for p in paths.service(name))
    root = paths.root_ca.read_bytes()
    crl_pem = paths.crl.read_bytes()
    ensure_pki(tmp_path, services=("gateway", "extra"))
    assert paths.root_ca.read_bytes() == root
    assert paths.crl.read_bytes() == crl_pem  # still fresh: not rewritten
    assert paths.service("extra")[0].is_file()
    kinds = [(e.kind.value, e.id) for e in read_index(paths)]
    assert kinds.count(("service", "gateway")) == 1

    # a week later the CRL is stale and the server certificate near its end: both renewed
    later = datetime.now(UTC) + timedelta(days=340)
    ensure_pki(tmp_path, now=later)
    crls = crl.load_crls(paths.crl.read_bytes())
    assert all(c.next_update_utc is not None and c.next_update_utc > later for c in crls)
    server = x509.load_pem_x509_certificate(paths.server()[0].read_bytes())
    assert server.not_valid_after_utc > later + timedelta(days=300)

    # a new name for the broker: its certificate is re-issued to carry it
    ensure_pki(tmp_path, server_sans=["broker.internal"], now=later)
    server = x509.load_pem_x509_certificate(paths.server()[0].read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost", "broker.internal"]
    servers = [e for e in read_index(paths) if e.kind.value == "server"]
    assert len(servers) == 3
