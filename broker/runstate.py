"""``$FLEETGATE_HOME/run/broker.json``: which broker runs, and which CRL it has applied.

Revocation reaches a running broker through the PKI itself: both brokers' supervisors poll
``pki/crl.pem`` (every ``crl_poll_s``), reload it for new handshakes and cut the live
connections of newly revoked certificates (amqtt: closes them; Mosquitto: SIGHUP, then the
dynamic-security plugin's ``disableClient`` for the CN). After applying a CRL the supervisor
records its SHA-256 here, so :func:`notify_revocation` (what ``fleetgate certs revoke`` calls
after writing the CRL) can wait until the running broker has acted on it.
"""

from __future__ import annotations

import enum
import hashlib
import os
import time
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ValidationError

from broker.settings import BrokerKind
from certs.layout import PkiPaths

STATE_FILE = Path("run") / "broker.json"


class RunState(BaseModel):
    """What a running ``fleetgate broker`` tells other processes about itself."""

    broker: BrokerKind
    pid: int
    """The supervisor (the ``fleetgate broker`` process)."""
    child_pid: int | None = None
    """Mosquitto's pid, when it is the broker."""
    host: str
    port: int
    started_at: datetime
    crl_sha256: str
    """SHA-256 of the ``crl.pem`` whose revocations are in force, live connections included."""
    crl_applied_at: datetime
    cut: list[str] = []
    """Identities whose live connections the last CRL change closed (``role:id``)."""


def state_path(home: Path) -> Path:
    return home / STATE_FILE


def crl_digest(pem: bytes) -> str:
    return hashlib.sha256(pem).hexdigest()


def write_state(home: Path, state: RunState) -> None:
    """Atomically replace the run-state file."""
    path = state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(state.model_dump_json(indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_state(home: Path) -> RunState | None:
    """The run state of a LIVE broker supervisor under ``home``, else None."""
    try:
        state = RunState.model_validate_json(state_path(home).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValidationError):
        return None
    return state if _alive(state.pid) else None


def clear_state(home: Path, *, pid: int) -> None:
    """Remove the run-state file if it is ``pid``'s."""
    path = state_path(home)
    try:
        state = RunState.model_validate_json(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValidationError):
        return
    if state.pid == pid:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a recycled pid is some other program
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"fleetgate" in cmdline or b"broker" in cmdline


class RevocationNotice(enum.StrEnum):
    APPLIED = "applied"
    """The running broker refuses the certificate and has closed its live connections."""
    NO_BROKER = "no-broker"
    """No broker runs under this home; the next one starts with the new CRL."""
    TIMEOUT = "timeout"
    """A broker runs but did not confirm in time (it polls ``crl.pem``; it will act)."""


def notify_revocation(
    *, home: Path, identity_id: str, timeout_s: float = 30.0, poll_s: float = 0.2
) -> RevocationNotice:
    """After ``pki/crl.pem`` was rewritten: wait until the running broker has applied it.

    ``identity_id`` (VIN, app id or service name) is only reported; the broker finds the
    revoked certificates in the CRL itself. Blocking; safe to call from any process.
    """
    del identity_id
    try:
        wanted = crl_digest(PkiPaths(home).crl.read_bytes())
    except FileNotFoundError:
        return RevocationNotice.NO_BROKER
    deadline = time.monotonic() + timeout_s
    while True:
        state = read_state(home)
        if state is None:
            return RevocationNotice.NO_BROKER
        if state.crl_sha256 == wanted:
            return RevocationNotice.APPLIED
        if time.monotonic() >= deadline:
            return RevocationNotice.TIMEOUT
        time.sleep(poll_s)
