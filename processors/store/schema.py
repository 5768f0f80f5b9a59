"""Pure parts of the schema: replication clauses, migration files, statements, buckets.

Nothing here does I/O; :mod:`processors.store.migrate` reads the files and talks to Cassandra.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from fleetgate.errors import UserError
from fleetgate.settings import CassandraConnection

KEYSPACE_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
DATACENTER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MIGRATION_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9][a-z0-9_]*)\.cql$")
KEYSPACE_PLACEHOLDER = "${keyspace}"
CAMPAIGN_BUCKETS = 16
"""Fixed by schema 0001: changing it needs a data migration of campaign_vehicles."""


class Ecu(NamedTuple):
    """A value of the ``ecu`` user type (``vehicles.ecus``: ECU name -> Ecu).

    Bind it as is; the driver serialises a user type from a tuple or attributes, not a dict.
    """

    hw: str | None
    sw: str | None


class MigrationError(UserError):
    """The migration files or the recorded history are inconsistent: fix them, then retry."""


def check_keyspace(keyspace: str) -> str:
    if not KEYSPACE_RE.fullmatch(keyspace):
        raise UserError(
            f"invalid keyspace {keyspace!r}: lowercase letters, digits and '_', "
            "starting with a letter, at most 48 characters"
        )
    return keyspace


@dataclass(frozen=True, slots=True)
class Replication:
    """How a keyspace is replicated: SimpleStrategy locally, NetworkTopologyStrategy in
    production (datacenter name -> replicas)."""

    strategy: Literal["simple", "network"] = "simple"
    factor: int = 1
    datacenters: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_connection(cls, conn: CassandraConnection) -> Replication:
        return cls(
            strategy=conn.replication,
            factor=conn.replication_factor,
            datacenters=dict(conn.datacenters),
        )

    def options(self) -> dict[str, str]:
        """The replication map as Cassandra reports it in ``system_schema.keyspaces``."""
        if self.strategy == "simple":
            _check_factor("replication_factor", self.factor)
            return {
                "class": "org.apache.cassandra.locator.SimpleStrategy",
                "replication_factor": str(self.factor),
            }
        if not self.datacenters:
            raise UserError(
                "NetworkTopologyStrategy needs at least one datacenter "
                "(e.g. FLEETGATE_CASSANDRA__DATACENTERS='{\"dc1\": 3}')"
            )
        options = {"class": "org.apache.cassandra.locator.NetworkTopologyStrategy"}
        for dc, replicas in sorted(self.datacenters.items()):
            if not DATACENTER_RE.fullmatch(dc):
                raise UserError(f"invalid datacenter name {dc!r}")
            _check_factor(f"replicas of datacenter {dc}", replicas)
            options[dc] = str(replicas)
        return options

    def clause(self) -> str:
        """The CQL map literal after ``WITH replication =``."""
        options = self.options()
        short = options["class"].rsplit(".", 1)[-1]
        parts = [f"'class': '{short}'"]
        parts += [f"'{k}': {v}" for k, v in options.items() if k != "class"]
        return "{" + ", ".join(parts) + "}"


def _check_factor(what: str, value: int) -> None:
    if not 1 <= value <= 7:
        raise UserError(f"invalid {what}: {value} (expected 1..7)")


def create_keyspace_cql(keyspace: str, replication: Replication) -> str:
    return (
        f"CREATE KEYSPACE IF NOT EXISTS {check_keyspace(keyspace)} "
        f"WITH replication = {replication.clause()} AND durable_writes = true"
    )


def same_replication(current: Mapping[str, str], wanted: Replication) -> bool:
    """Whether the replication map Cassandra reports is the one the settings ask for."""
    return dict(current) == wanted.options()


@dataclass(frozen=True, slots=True)
class Migration:
    version: str  # "0001"
    name: str  # "initial"
    text: str  # the file's content, ${keyspace} not yet replaced

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version}_{self.name}"


def parse_migration_name(filename: str) -> tuple[str, str]:
    """``"0001_initial.cql"`` -> ``("0001", "initial")``; anything else is an error."""
    match = MIGRATION_RE.fullmatch(filename)
    if match is None:
        raise MigrationError(f"bad migration file name {filename!r} (expected NNNN_name.cql)")
    return match["version"], match["name"]


def order_migrations(files: Iterable[tuple[str, str]]) -> list[Migration]:
    """Migrations from ``(filename, text)`` pairs, ordered by version; duplicates are errors.

    Files that do not end in ``.cql`` are ignored (``__init__.py`` and the like).
    """
    by_version: dict[str, Migration] = {}
    for filename, text in files:
        if not filename.endswith(".cql"):
            continue
        version, name = parse_migration_name(filename)
        if version in by_version:
            other = by_version[version].label
            raise MigrationError(f"two migrations with version {version}: {other}, {filename}")
        by_version[version] = Migration(version=version, name=name, text=text)
    return [by_version[v] for v in sorted(by_version, key=int)]


def pending_migrations(available: list[Migration], applied: Mapping[str, str]) -> list[Migration]:
    """The migrations still to apply, given the applied ``version -> checksum``.

    An applied migration whose file changed, or that this code does not know, is an error:
    the database and the code disagree and guessing would be worse than stopping.
    """
    known = {m.version: m for m in available}
    unknown = sorted(set(applied) - set(known), key=int)
    if unknown:
        raise MigrationError(
            f"the keyspace has migrations this fleetgate does not know: {', '.join(unknown)} "
            "(is it older than the one that migrated?)"
        )
    for version, checksum in applied.items():
        if known[version].checksum != checksum:
            raise MigrationError(
                f"migration {known[version].label} changed after it was applied; "
                "add a new migration instead of editing an applied one"
            )
    return [m for m in available if m.version not in applied]


def split_statements(text: str) -> list[str]:
    """Split CQL text into statements at ``;`` outside strings, identifiers and comments.

    Comments (``--``, ``//``, ``/* */``) are dropped; string literals (``'...'`` with ``''``),
    quoted identifiers (``"..."``) and ``$$...$$`` bodies are kept intact.
    """
    statements: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch, two = text[i], text[i : i + 2]
        if two in ("--", "//"):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif two == "/*":
            end = text.find("*/", i + 2)
            if end < 0:
                raise MigrationError("unterminated /* comment in CQL")
            i = end + 2
            buf.append(" ")
        elif two == "$$":
            end = text.find("$$", i + 2)
            if end < 0:
                raise MigrationError("unterminated $$ block in CQL")
            buf.append(text[i : end + 2])
            i = end + 2
        elif ch in "'\"":
            j = i + 1
            while True:
                j = text.find(ch, j)
                if j < 0:
                    raise MigrationError(f"unterminated {ch} quote in CQL")
                if text[j + 1 : j + 2] == ch:  # doubled quote: an escaped one
                    j += 2
                    continue
                break
            buf.append(text[i : j + 1])
            i = j + 1
        elif ch == ";":
            _flush(buf, statements)
            i += 1
        else:
            buf.append(ch)
            i += 1
    _flush(buf, statements)
    return statements


def _flush(buf: list[str], statements: list[str]) -> None:
    statement = " ".join("".join(buf).split())
    if statement:
        statements.append(statement)
    buf.clear()


def render_statements(migration: Migration, *, keyspace: str) -> list[str]:
    """The migration's statements for ``keyspace`` (``${keyspace}`` replaced)."""
    check_keyspace(keyspace)
    text = migration.text.replace(KEYSPACE_PLACEHOLDER, keyspace)
    if "${" in text:
        raise MigrationError(f"{migration.label}: unknown placeholder (only ${{keyspace}})")
    return split_statements(text)


def campaign_bucket(vin: str, *, buckets: int = CAMPAIGN_BUCKETS) -> int:
    """The ``campaign_vehicles`` bucket of a vehicle: stable across processes and versions."""
    return zlib.crc32(vin.encode("utf-8")) % buckets
