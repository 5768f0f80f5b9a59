"""The PKI against a real Mosquitto 2: the chain, the CRL bundle and the bad certificates.

Mosquitto reads ``crlfile`` with OpenSSL's leaf CRL check; this proves ``crl.pem`` (two CRLs
in one file) works there and that every kind of bad certificate is refused at the handshake.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from certs import badcerts
from certs.layout import write_issued
from certs.pki import Lifetimes
from certs.store import PkiPaths, ensure_pki, issue_leaves, load_issuing_ca, revoke
from schemas.ids import Identity, Role, make_vin

MOSQUITTO = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(MOSQUITTO is None, reason="needs mosquitto (Debian: /usr/sbin)"),
]
GOOD, REVOKED, OTHER = make_vin(10), make_vin(11), make_vin(12)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PkiPaths, int]]:
    home = tmp_path_factory.mktemp("mosquitto-home")
    paths = ensure_pki(home)
    now = datetime.now(UTC)
    issue_leaves(paths, Role.VEHICLE, [GOOD, REVOKED, OTHER], now=now, lifetimes=Lifetimes())
    revoke(paths, REVOKED, now=now, lifetimes=Lifetimes())
    port = _free_port()
    server_cert, server_key = paths.server()
    conf = home / "mosquitto.conf"
    conf.write_text(
        "per_listener_settings false\n"
        "user root\n"
        f"listener {port} 127.0.0.1\n"
        f"cafile {paths.ca_chain}\ncertfile {server_cert}\nkeyfile {server_key}\n"
        f"crlfile {paths.crl}\n"
        "require_certificate true\nuse_identity_as_username true\nallow_anonymous true\n"
        f"log_dest file {home / 'mosquitto.log'}\n"
    )
    assert MOSQUITTO is not None
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (home / "mosquitto.log").read_text(errors="replace")
                    raise RuntimeError(f"mosquitto did not start: {log}") from None
                time.sleep(0.1)
        yield paths, port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _connack(paths: PkiPaths, port: int, cert: tuple[Path, Path] | None, client_id: str) -> bytes:
    """MQTT 3.1.1 CONNECT over TLS; the CONNACK bytes, or an SSL/OS error when refused."""
    ctx = ssl.create_default_context(cafile=str(paths.ca_chain))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        cid = client_id.encode()
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
        tls.sendall(bytes([0x10, len(body)]) + body)
        return tls.recv(4)


def test_a_current_vehicle_certificate_connects(broker: tuple[PkiPaths, int]) -> None:
    paths, port = broker
    assert _connack(paths, port, paths.vehicle(GOOD), GOOD) == b"\x20\x02\x00\x00"
    assert _connack(paths, port, paths.service("gateway"), "gw-1") == b"\x20\x02\x00\x00"


def test_no_certificate_is_refused(broker: tuple[PkiPaths, int]) -> None:
    paths, port = broker
    with pytest.raises((ssl.SSLError, OSError)):
        _connack(paths, port, None, "anon")


def test_a_revoked_certificate_is_refused(broker: tuple[PkiPaths, int]) -> None:
    paths, port = broker
    # the alert ("certificate revoked") may lose the race with the close under TLS 1.3
    with pytest.raises((ssl.SSLError, OSError)):
        _connack(paths, port, paths.vehicle(REVOKED), REVOKED)


@pytest.mark.parametrize("kind", ["foreign", "expired", "not yet valid"])
def test_bad_certificates_are_refused(
    broker: tuple[PkiPaths, int], tmp_path: Path, kind: str
) -> None:
    paths, port = broker
    now = datetime.now(UTC)
    identity = Identity.of(role=Role.VEHICLE, id=OTHER)
    ca = load_issuing_ca(paths)
    issued = {
        "foreign": lambda: badcerts.foreign_leaf(identity, now=now),
        "expired": lambda: badcerts.expired_leaf(ca, identity, now=now),
        "not yet valid": lambda: badcerts.not_yet_valid_leaf(ca, identity, now=now),
    }[kind]()
    cert, key = tmp_path / "bad.pem", tmp_path / "bad.key"
    write_issued(issued, cert_path=cert, key_path=key)
    with pytest.raises((ssl.SSLError, OSError)):
        _connack(paths, port, (cert, key), OTHER)
