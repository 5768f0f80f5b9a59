"""Settings, the CRL check, Mosquitto's generated files and the run-state protocol."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker import mosquitto_conf, runstate, tls
from broker.cli import load_settings
from broker.settings import BrokerOptions
from certs import crl, pki
from certs.layout import PkiPaths
from fleetgate.errors import UserError

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def cas() -> tuple[pki.Issued, pki.Issued]:
    root = pki.create_root_ca(validity=pki.Validity.starting(NOW, pki.Lifetimes().root))
    issuing = pki.create_issuing_ca(
        root, validity=pki.Validity.starting(NOW, pki.Lifetimes().issuing)
    )
    return root, issuing


def _bundle(root: pki.Issued, issuing: pki.Issued, serials: list[int]) -> bytes:
    return crl.crl_bundle(
        root=root,
        issuing=issuing,
        revoked=[crl.Revocation(serial=s, revoked_at=NOW) for s in serials],
        now=NOW,
        next_update=timedelta(days=7),
        number=1,
    )


def test_revoked_serials_checks_issuer_and_signature(cas: tuple[pki.Issued, pki.Issued]) -> None:
    root, issuing = cas
    assert tls.revoked_serials(_bundle(root, issuing, [5, 9]), issuer=issuing.cert) == {5, 9}
    # another CA with the very same name signs a CRL: refused
    other_root = pki.create_root_ca(validity=pki.Validity.starting(NOW, timedelta(days=9)))
    forged_ca = pki.create_issuing_ca(
        other_root, validity=pki.Validity.starting(NOW, timedelta(days=9))
    )
    forged = crl.crl_pem(
        crl.create_crl(forged_ca, [], now=NOW, next_update=timedelta(days=1), number=2)
    )
    with pytest.raises(tls.CrlError, match="not signed"):
        tls.revoked_serials(forged, issuer=issuing.cert)
    roots_only = crl.crl_pem(
        crl.create_crl(root, [], now=NOW, next_update=timedelta(days=1), number=1)
    )
    with pytest.raises(tls.CrlError, match="no CRL of the issuing CA"):
        tls.revoked_serials(roots_only, issuer=issuing.cert)
    with pytest.raises(tls.CrlError):
        tls.revoked_serials(
            b"-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n", issuer=issuing.cert
        )


def test_settings_from_env_and_command_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("FLEETGATE_BROKER__MAX_INFLIGHT", "7")
    monkeypatch.setenv("FLEETGATE_BROKER__KIND", "mosquitto")
    settings = load_settings(port=1234, home=tmp_path)
    assert settings.broker.kind == "mosquitto"
    assert settings.broker.port == 1234
    assert settings.broker.max_inflight == 7
    assert settings.home == tmp_path
    assert load_settings(kind="amqtt").broker.kind == "amqtt"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "hivemq"}, "broker.kind"),
        ({"port": 70000}, "broker.port"),
        ({"host": ""}, "broker.host"),
    ],
)
def test_bad_settings_are_one_line(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_settings(**kwargs)  # type: ignore[arg-type]


def test_mosquitto_conf(tmp_path: Path) -> None:
    paths = PkiPaths(tmp_path)
    files = mosquitto_conf.MosquittoFiles(tmp_path)
    options = BrokerOptions(kind="mosquitto", max_inflight=50, max_queued=500, max_packet_size=4096)
    text = mosquitto_conf.render_conf(
        options=options, port=18883, pki=paths, files=files, user="fleet"
    )
    lines = text.splitlines()
    for expected in (
        "allow_anonymous false",
        "listener 18883 127.0.0.1",
        f"cafile {paths.ca_chain}",
        f"crlfile {paths.crl}",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        f"acl_file {files.acl}",
        "max_inflight_messages 50",
        "max_queued_messages 500",
        "max_packet_size 4096",
        "set_tcp_nodelay true",
        f"persistence_location {files.data}/",
        "user fleet",
    ):
        assert expected in lines
    # listener options come after the listener line (Mosquitto 2.0 is order-sensitive)
    assert lines.index("require_certificate true") > lines.index("listener 18883 127.0.0.1")


def test_dynsec_messages() -> None:
    initial = json.loads(mosquitto_conf.dynsec_initial())
    assert set(initial["defaultACLAccess"].values()) == {False}
    request = json.loads(mosquitto_conf.disable_commands(["V1"]))
    assert [c["command"] for c in request["commands"]] == ["createClient", "disableClient"]
    response = json.dumps(
        {
            "responses": [
                {
                    "command": "createClient",
                    "error": "Client already exists",
                    "correlationData": "V1",
                },
                {"command": "disableClient", "correlationData": "V1"},
                {"command": "disableClient", "error": "Client not found", "correlationData": "V2"},
            ]
        }
    ).encode()
    assert mosquitto_conf.disabled_in(response) == {"V1"}
    assert mosquitto_conf.disable_failures(response) == {"V2": "Client not found"}
    assert "?" in mosquitto_conf.disable_failures(b"not json")


def _state(pid: int, digest: str) -> runstate.RunState:
    return runstate.RunState(
        broker="amqtt",
        pid=pid,
        host="127.0.0.1",
        port=8883,
        started_at=NOW,
        crl_sha256=digest,
        crl_applied_at=NOW,
    )


def test_notify_revocation(tmp_path: Path) -> None:
    crl_path = PkiPaths(tmp_path).crl
    crl_path.parent.mkdir(parents=True)
    assert (
        runstate.notify_revocation(home=tmp_path, identity_id="x")
        is runstate.RevocationNotice.NO_BROKER
    )
    crl_path.write_bytes(b"new crl")
    assert (
        runstate.notify_revocation(home=tmp_path, identity_id="x")
        is runstate.RevocationNotice.NO_BROKER
    )
    # a live process that looks like a broker supervisor (its command line names it)
    supervisor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "broker"])
    try:
        pid = supervisor.pid
        runstate.write_state(tmp_path, _state(pid, runstate.crl_digest(b"old crl")))
        notice = runstate.notify_revocation(
            home=tmp_path, identity_id="x", timeout_s=0.3, poll_s=0.05
        )
        assert notice is runstate.RevocationNotice.TIMEOUT
        runstate.write_state(tmp_path, _state(pid, runstate.crl_digest(b"new crl")))
        assert (
            runstate.notify_revocation(home=tmp_path, identity_id="x")
            is runstate.RevocationNotice.APPLIED
        )
        runstate.clear_state(tmp_path, pid=pid + 1)
        assert runstate.read_state(tmp_path) is not None
        runstate.clear_state(tmp_path, pid=pid)
        assert runstate.read_state(tmp_path) is None
    finally:
        supervisor.kill()
        supervisor.wait()


def test_run_state_of_a_dead_process_is_ignored(tmp_path: Path) -> None:
    runstate.write_state(tmp_path, _state(2**22 + 12345, "x"))
    assert runstate.read_state(tmp_path) is None
