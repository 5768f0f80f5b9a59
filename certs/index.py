"""The index of issued certificates (``pki/index.jsonl``): pure parsing and bookkeeping.

The file is append-only JSON Lines, one record per certificate state; a later line for the
same serial replaces an earlier one (that is how a revocation is recorded). Serials are
written in hex: they are up to 159 bits, more than a JSON number safely holds.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, ConfigDict, field_serializer, field_validator

from certs.crl import Revocation
from schemas.ids import Role


class Kind(enum.StrEnum):
    """What a certificate is for: a client role, or the broker's server certificate."""

    VEHICLE = "vehicle"
    APP = "app"
    SERVICE = "service"
    SERVER = "server"

    @classmethod
    def of(cls, role: Role) -> Kind:
        return {Role.VEHICLE: cls.VEHICLE, Role.APP: cls.APP, Role.SERVICE: cls.SERVICE}[role]


class IndexEntry(BaseModel):
    """One issued certificate."""

    model_config = ConfigDict(frozen=True)

    serial: int
    kind: Kind
    id: str
    not_after: datetime
    revoked_at: datetime | None = None

    @field_serializer("serial")
    def _serial_hex(self, serial: int) -> str:
        return f"{serial:x}"

    @field_validator("serial", mode="before")
    @classmethod
    def _parse_serial(cls, value: object) -> object:
        return int(value, 16) if isinstance(value, str) else value

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


class UnknownIdentity(LookupError):
    """No current certificate for that id."""


class AmbiguousIdentity(LookupError):
    """The id names certificates of more than one kind; say which."""


def encode(entries: Iterable[IndexEntry]) -> str:
    """JSON Lines for ``entries`` (each line ends with a newline)."""
    return "".join(entry.model_dump_json() + "\n" for entry in entries)


def merge(*batches: Iterable[IndexEntry]) -> list[IndexEntry]:
    """The current state of every certificate: the last record per serial wins, order kept."""
    latest: dict[int, IndexEntry] = {}
    for batch in batches:
        for entry in batch:
            latest[entry.serial] = entry
    return list(latest.values())


def decode(text: str) -> list[IndexEntry]:
    """Parse the index file; a last line cut short by a crash (no newline) is ignored."""
    lines = text.split("\n")[:-1]
    return merge(IndexEntry.model_validate_json(line) for line in lines if line.strip())


def find(
    entries: Sequence[IndexEntry], ident: str, *, kind: Kind | None = None
) -> list[IndexEntry]:
    """Every certificate (revoked or not) issued to ``ident`` (of ``kind`` if given)."""
    return [e for e in entries if e.id == ident and (kind is None or e.kind is kind)]


def revoke(
    entries: Sequence[IndexEntry], ident: str, *, now: datetime, kind: Kind | None = None
) -> list[IndexEntry]:
    """The records to append so that every live certificate of ``ident`` is revoked at ``now``.

    Raises :class:`UnknownIdentity` when ``ident`` has no live certificate, and
    :class:`AmbiguousIdentity` when it has live ones of several kinds and ``kind`` is None.
    """
    live = [e for e in find(entries, ident, kind=kind) if not e.revoked]
    if not live:
        what = f"{kind.value} " if kind else ""
        raise UnknownIdentity(f"no unrevoked certificate for {what}{ident!r}")
    kinds = sorted({e.kind.value for e in live})
    if len(kinds) > 1:
        raise AmbiguousIdentity(
            f"{ident!r} names certificates of several kinds ({', '.join(kinds)}); "
            "say which with --kind"
        )
    return [e.model_copy(update={"revoked_at": now}) for e in live]


def revocations(entries: Iterable[IndexEntry]) -> list[Revocation]:
    """What the CRL lists: every revoked serial with its revocation time."""
    return [
        Revocation(serial=e.serial, revoked_at=e.revoked_at)
        for e in entries
        if e.revoked_at is not None
    ]


def revoked_serials(entries: Iterable[IndexEntry]) -> frozenset[int]:
    """The serials a broker must refuse (and disconnect if they are connected)."""
    return frozenset(e.serial for e in entries if e.revoked)
