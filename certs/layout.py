"""Where the PKI's files live (``$FLEETGATE_HOME/pki``, CONTRACT §2) and how they are written.

Private keys are written 0600 and directories 0700, always via a temporary file and a rename,
so a reader never sees half a key.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from certs import pki
from schemas.ids import Identity, Role

_ROLE_DIRS = {Role.VEHICLE: "vehicles", Role.APP: "apps", Role.SERVICE: "services"}


class PkiMissing(FileNotFoundError):
    """There is no PKI under this home yet."""


class PkiExists(FileExistsError):
    """``init`` would replace an existing PKI."""


@dataclass(frozen=True)
class PkiPaths:
    """Where every PKI file lives under ``home`` (CONTRACT §2); no I/O except :meth:`exists`."""

    home: Path

    @property
    def dir(self) -> Path:
        return self.home / "pki"

    @property
    def root_ca(self) -> Path:
        return self.dir / "root-ca.pem"

    @property
    def root_key(self) -> Path:
        return self.dir / "root-ca.key"

    @property
    def ca(self) -> Path:
        """The issuing CA's certificate."""
        return self.dir / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def ca_chain(self) -> Path:
        """Issuing CA then root CA: what a broker or a client trusts."""
        return self.dir / "ca-chain.pem"

    @property
    def crl(self) -> Path:
        return self.dir / "crl.pem"

    @property
    def signing_key(self) -> Path:
        return self.dir / "signing.key"

    @property
    def signing_pub(self) -> Path:
        return self.dir / "signing.pub"

    @property
    def index(self) -> Path:
        return self.dir / "index.jsonl"

    @property
    def lock(self) -> Path:
        return self.dir / ".lock"

    def server(self) -> tuple[Path, Path]:
        """The broker's (certificate, key)."""
        return self.dir / "server.pem", self.dir / "server.key"

    def role_dir(self, role: Role) -> Path:
        return self.dir / _ROLE_DIRS[role]

    def leaf(self, identity: Identity) -> tuple[Path, Path]:
        """(certificate, key) of a client identity."""
        base = self.role_dir(identity.role) / identity.id
        return base.with_name(f"{identity.id}.pem"), base.with_name(f"{identity.id}.key")

    def vehicle(self, vin: str) -> tuple[Path, Path]:
        """(certificate, key) of a vehicle; raises ``InvalidIdentifier`` for a bad VIN."""
        return self.leaf(Identity.of(role=Role.VEHICLE, id=vin))

    def app(self, app_id: str) -> tuple[Path, Path]:
        return self.leaf(Identity.of(role=Role.APP, id=app_id))

    def service(self, name: str) -> tuple[Path, Path]:
        return self.leaf(Identity.of(role=Role.SERVICE, id=name))

    def exists(self) -> bool:
        return all(p.is_file() for p in (self.ca, self.ca_key, self.root_ca, self.ca_chain))


def make_dir(path: Path) -> None:
    """Create ``path`` and missing parents with mode 0700 (existing ones are left alone)."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):
        directory.mkdir(mode=0o700, exist_ok=True)


def atomic_write(path: Path, data: bytes, *, mode: int, durable: bool = True) -> None:
    """Write ``data`` to a temporary file of ``mode`` next to ``path``, then rename it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_issued(
    issued: pki.Issued, *, cert_path: Path, key_path: Path, durable: bool = True
) -> None:
    """The key (0600) first, then the certificate (0644) that makes the pair visible."""
    atomic_write(key_path, pki.key_pem(issued.key), mode=0o600, durable=durable)
    atomic_write(cert_path, pki.cert_pem(issued.cert), mode=0o644, durable=durable)


@contextlib.contextmanager
def locked(paths: PkiPaths) -> Iterator[None]:
    """Hold the PKI's exclusive lock (one writer at a time, across processes)."""
    make_dir(paths.dir)
    fd = os.open(paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
