"""PKI operations on disk: init, issue (in parallel for fleets), revoke, the CRL, ensure.

File locations and safe writes are in :mod:`certs.layout`; the crypto is pure, in
:mod:`certs.pki`, :mod:`certs.crl` and :mod:`certs.signing`. Every operation that changes
the PKI runs under :func:`certs.layout.locked` (the CLI and ``ensure_pki`` take it).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import shutil
import signal
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from certs import crl, index, names, pki, signing
from certs.index import IndexEntry, Kind
from certs.layout import PkiExists as PkiExists  # re-exported: callers use certs.store
from certs.layout import PkiMissing as PkiMissing
from certs.layout import PkiPaths as PkiPaths
from certs.layout import atomic_write, locked, make_dir, write_issued
from schemas.ids import Identity, Role

SERVER_ID = "broker"
"""The index id of the broker's server certificate."""
CHUNK = 500
"""Certificates per task handed to a worker process."""


# --- reading ---------------------------------------------------------------------------------


def _require(paths: PkiPaths) -> None:
    if not paths.exists():
        raise PkiMissing(f"no PKI under {paths.dir}; run 'fleetgate certs init' first")


def load_issuing_ca(paths: PkiPaths) -> pki.Issued:
    _require(paths)
    return pki.load_issued(paths.ca.read_bytes(), paths.ca_key.read_bytes())


def load_root_ca(paths: PkiPaths) -> pki.Issued:
    _require(paths)
    return pki.load_issued(paths.root_ca.read_bytes(), paths.root_key.read_bytes())


def read_index(paths: PkiPaths) -> list[IndexEntry]:
    """Every certificate issued under this PKI, in issuing order (revocations applied)."""
    try:
        return index.decode(paths.index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []


def append_index(paths: PkiPaths, entries: Sequence[IndexEntry]) -> None:
    if not entries:
        return
    fd = os.open(paths.index, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, index.encode(entries).encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def revoked_serials(paths: PkiPaths) -> frozenset[int]:
    """Serials the current ``crl.pem`` revokes (what a broker must refuse and disconnect)."""
    return crl.revoked_serials(paths.crl.read_bytes())


# --- operations ------------------------------------------------------------------------------


def _entry(issued: pki.Issued, kind: Kind, ident: str) -> IndexEntry:
    cert = issued.cert
    return IndexEntry(
        serial=cert.serial_number, kind=kind, id=ident, not_after=cert.not_valid_after_utc
    )


def write_crl(
    paths: PkiPaths, *, now: datetime, lifetimes: pki.Lifetimes, entries: Iterable[IndexEntry]
) -> None:
    """Regenerate ``crl.pem`` from ``entries`` with the next CRL number."""
    number = 1
    if paths.crl.exists():
        number += max((crl.crl_number(c) for c in crl.load_crls(paths.crl.read_bytes())), default=0)
    bundle = crl.crl_bundle(
        root=load_root_ca(paths),
        issuing=load_issuing_ca(paths),
        revoked=index.revocations(entries),
        now=now,
        next_update=lifetimes.crl,
        number=number,
    )
    atomic_write(paths.crl, bundle, mode=0o644)


def issue_server(
    paths: PkiPaths, *, now: datetime, lifetimes: pki.Lifetimes, extra_sans: Sequence[str] = ()
) -> IndexEntry:
    """(Re)issue the broker's server certificate."""
    issued = pki.issue_server(
        load_issuing_ca(paths),
        validity=pki.Validity.starting(now, lifetimes.server),
        extra_sans=extra_sans,
    )
    cert_path, key_path = paths.server()
    write_issued(issued, cert_path=cert_path, key_path=key_path)
    entry = _entry(issued, Kind.SERVER, SERVER_ID)
    append_index(paths, [entry])
    return entry


def init_pki(
    paths: PkiPaths,
    *,
    now: datetime,
    lifetimes: pki.Lifetimes,
    server_sans: Sequence[str] = (),
    force: bool = False,
) -> None:
    """Create root CA, issuing CA, chain, CRL, broker certificate and OTA signing key.

    With ``force`` an existing PKI is deleted first (every certificate it issued dies).
    """
    if paths.exists() and not force:
        raise PkiExists(
            f"a PKI already exists under {paths.dir}; "
            "--force replaces it and invalidates every certificate it issued"
        )
    if force and paths.dir.exists():
        for child in paths.dir.iterdir():
            if child.is_dir():
                shutil.rmtree(child)
            elif child != paths.lock:  # the caller holds it
                child.unlink()
    make_dir(paths.dir)
    for role in Role:
        make_dir(paths.role_dir(role))
    root = pki.create_root_ca(validity=pki.Validity.starting(now, lifetimes.root))
    issuing = pki.create_issuing_ca(root, validity=pki.Validity.starting(now, lifetimes.issuing))
    signing_key = signing.new_signing_key()
    write_issued(root, cert_path=paths.root_ca, key_path=paths.root_key)
    atomic_write(paths.ca_key, pki.key_pem(issuing.key), mode=0o600)
    atomic_write(paths.signing_key, signing.private_pem(signing_key), mode=0o600)
    atomic_write(paths.signing_pub, signing.public_pem(signing_key.public_key()), mode=0o644)
    chain = pki.cert_pem(issuing.cert) + pki.cert_pem(root.cert)
    atomic_write(paths.ca_chain, chain, mode=0o644)
    atomic_write(paths.ca, pki.cert_pem(issuing.cert), mode=0o644)  # last: marks it complete
    issue_server(paths, now=now, lifetimes=lifetimes, extra_sans=server_sans)
    write_crl(paths, now=now, lifetimes=lifetimes, entries=())


class AlreadyIssued(FileExistsError):
    """An id that already holds an unrevoked certificate."""


@dataclass(frozen=True)
class IssueResult:
    """What :func:`issue_leaves` did."""

    issued: list[IndexEntry]
    skipped: list[str]
    """Ids left alone because their certificate is already on disk (``skip_existing``)."""


def on_disk(paths: PkiPaths, role: Role) -> set[str]:
    """Ids of ``role`` whose certificate file exists (one directory listing)."""
    try:
        names = os.listdir(paths.role_dir(role))
    except FileNotFoundError:
        return set()
    return {name[:-4] for name in names if name.endswith(".pem")}


def plan_issue(
    requested: Sequence[str],
    *,
    kind: Kind,
    present: set[str],
    live: set[str],
    skip_existing: bool,
) -> tuple[list[str], list[str]]:
    """(ids to issue, ids skipped), duplicates dropped, order kept. Pure.

    An id whose certificate is ``present`` on disk is skipped with ``skip_existing``;
    otherwise it is an error if it is ``live`` (unrevoked) and re-issued if it is not.
    """
    to_issue: list[str] = []
    skipped: list[str] = []
    for ident in dict.fromkeys(requested):
        if ident not in present:
            to_issue.append(ident)
        elif skip_existing:
            skipped.append(ident)
        elif ident in live:
            raise AlreadyIssued(
                f"{kind.value} {ident} already has a certificate; revoke it to issue another"
            )
        else:
            to_issue.append(ident)
    return to_issue, skipped


def issue_chunk(
    *,
    ca_cert_pem: bytes,
    ca_key_pem: bytes,
    role: Role,
    ids: Sequence[str],
    validity: pki.Validity,
    home: Path,
) -> list[IndexEntry]:
    """Issue certificates for ``ids`` (already validated): index them, then write the files.

    Runs in a worker process (hence the CA as PEM). The index append comes first and is
    fsynced, so a crash at any point leaves no certificate on disk that the index (and so
    ``revoke``) does not know; leaf files are not fsynced one by one (a fleet is 200,000).
    """
    ca = pki.load_issued(ca_cert_pem, ca_key_pem)
    paths = PkiPaths(home)
    kind = Kind.of(role)
    identities = [Identity(role=role, id=ident) for ident in ids]
    issued = [pki.issue_leaf(ca, identity, validity=validity) for identity in identities]
    entries = [
        _entry(leaf, kind, identity.id) for leaf, identity in zip(issued, identities, strict=True)
    ]
    append_index(paths, entries)
    for leaf, identity in zip(issued, identities, strict=True):
        cert_path, key_path = paths.leaf(identity)
        write_issued(leaf, cert_path=cert_path, key_path=key_path, durable=False)
    return entries


def _ignore_sigint() -> None:
    """Workers finish their chunk on Ctrl-C; the parent cancels the chunks not started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def issue_leaves(
    paths: PkiPaths,
    role: Role,
    ids: Sequence[str],
    *,
    now: datetime,
    lifetimes: pki.Lifetimes,
    workers: int = 1,
    skip_existing: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> IssueResult:
    """Issue client certificates for ``ids``, over ``workers`` processes when there are many.

    Raises ``InvalidIdentifier`` (a bad id, or an app id / service name that is a VIN, before
    anything is written), :class:`PkiMissing`, :class:`AlreadyIssued` and
    :class:`certs.names.NameClash` (an app named like a service or the reverse). The index
    grows chunk by chunk, so an interrupted run keeps what it finished (and ``--count``
    again completes it).
    """
    requested = [Identity.of(role=role, id=ident).id for ident in ids]
    names.refuse_vins(role, requested)
    _require(paths)
    other = names.other_role(role)
    if other is not None:
        names.refuse_clashes(role, requested, taken=on_disk(paths, other))
    kind = Kind.of(role)
    live = {e.id for e in read_index(paths) if e.kind is kind and not e.revoked}
    to_issue, skipped = plan_issue(
        requested,
        kind=kind,
        present=on_disk(paths, role),
        live=live,
        skip_existing=skip_existing,
    )
    make_dir(paths.role_dir(role))
    chunks = [to_issue[i : i + CHUNK] for i in range(0, len(to_issue), CHUNK)]
    task = functools.partial(
        issue_chunk,
        ca_cert_pem=paths.ca.read_bytes(),
        ca_key_pem=paths.ca_key.read_bytes(),
        role=role,
        validity=pki.Validity.starting(now, lifetimes.leaf),
        home=paths.home,
    )
    issued: list[IndexEntry] = []

    def record(batch: list[IndexEntry]) -> None:
        issued.extend(batch)
        if on_progress is not None:
            on_progress(len(batch))

    if on_progress is not None and skipped:
        on_progress(len(skipped))
    if workers <= 1 or len(chunks) <= 1:
        for chunk in chunks:
            record(task(ids=chunk))
    else:
        context = multiprocessing.get_context("forkserver")
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_ignore_sigint
        ) as pool:
            pending = {pool.submit(task, ids=chunk) for chunk in chunks}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        record(future.result())
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
    return IssueResult(issued=issued, skipped=skipped)


def revoke(
    paths: PkiPaths,
    ident: str,
    *,
    now: datetime,
    lifetimes: pki.Lifetimes,
    kind: Kind | None = None,
) -> list[IndexEntry]:
    """Revoke every live certificate of ``ident`` and regenerate ``crl.pem``."""
    _require(paths)
    entries = read_index(paths)
    revoked = index.revoke(entries, ident, now=now, kind=kind)
    append_index(paths, revoked)
    write_crl(paths, now=now, lifetimes=lifetimes, entries=index.merge(entries, revoked))
    return revoked


def _server_stale(paths: PkiPaths, *, now: datetime, sans: Sequence[str]) -> bool:
    """The broker certificate is missing, within 30 days of its end, or lacks a wanted SAN."""
    try:
        cert = x509.load_pem_x509_certificate(paths.server()[0].read_bytes())
    except FileNotFoundError:
        return True
    has = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    expiring = cert.not_valid_after_utc - timedelta(days=30) <= now
    return expiring or any(name not in has for name in pki.server_sans(sans))


def _expires_within_crl(paths: PkiPaths, *, now: datetime, margin: timedelta) -> bool:
    try:
        crls = crl.load_crls(paths.crl.read_bytes())
    except FileNotFoundError:
        return True
    return any(c.next_update_utc is None or c.next_update_utc - margin <= now for c in crls)


def ensure_pki(
    home: Path,
    *,
    services: Sequence[str] = ("gateway", "processors", "ops"),
    lifetimes: pki.Lifetimes | None = None,
    server_sans: Sequence[str] = (),
    now: datetime | None = None,
) -> PkiPaths:
    """Make ``home``'s PKI ready to run the stack; idempotent (``fleetgate up`` calls it).

    Creates the PKI if there is none, issues missing service certificates, renews the broker
    certificate within 30 days of expiry or when it lacks one of ``server_sans``, and the CRL
    once half its lifetime has passed.
    """
    lifetimes = lifetimes or pki.Lifetimes()
    now = now or datetime.now(UTC)
    paths = PkiPaths(home)
    with locked(paths):
        if not paths.exists():
            init_pki(paths, now=now, lifetimes=lifetimes, server_sans=server_sans)
        present = on_disk(paths, Role.SERVICE)
        missing = [name for name in services if name not in present]
        if missing:
            issue_leaves(paths, Role.SERVICE, missing, now=now, lifetimes=lifetimes)
        if _server_stale(paths, now=now, sans=server_sans):
            issue_server(paths, now=now, lifetimes=lifetimes, extra_sans=server_sans)
        if _expires_within_crl(paths, now=now, margin=lifetimes.crl / 2):
            write_crl(paths, now=now, lifetimes=lifetimes, entries=read_index(paths))
    return paths
