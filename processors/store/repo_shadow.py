"""The ``shadows`` table: one document per vehicle. Writer: processors/shadow.

Optimistic concurrency with lightweight transactions, as the schema says: a new shadow is
``INSERT ... IF NOT EXISTS``; a change is ``UPDATE ... IF version = <the version read>``. A
write that is not applied means another writer got there first (a worker that lost the
vehicle's partition): the caller reloads and applies its inputs again.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetgate.logs import get_logger
from processors.shadow.logic import Shadow
from processors.shadow.stored import ShadowRow, StoredShadowError, from_row
from processors.store.repo_common import Queries, to_ms
from processors.store.session import CassandraSession, applied

_log = get_logger(__name__)
_SELECT = (
    "SELECT vin, reported, desired, metadata, version, updated_at FROM ks.shadows WHERE vin = ?"
)
_INSERT = (
    "INSERT INTO ks.shadows (vin, reported, desired, metadata, version, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS"
)
_UPDATE = (
    "UPDATE ks.shadows SET reported = ?, desired = ?, metadata = ?, version = ?, updated_at = ? "
    "WHERE vin = ? IF version = ?"
)


@dataclass(frozen=True, slots=True)
class LoadedShadow:
    shadow: Shadow
    stored_version: int | None
    """The version column as read (the LWT guard of the next write); None: no row yet."""


class ShadowRepository:
    def __init__(self, *, session: CassandraSession, keyspace: str) -> None:
        self._session = session
        self._q = Queries(keyspace)

    async def load(self, *, vin: str) -> LoadedShadow:
        """The stored shadow of ``vin`` (an empty one if there is none)."""
        rows = await self._session.execute(query=self._q(_SELECT), params=(vin,))
        if not rows:
            return LoadedShadow(Shadow(vin=vin), None)
        row = rows[0]
        version = row["version"] if row["version"] is not None else 0
        try:
            shadow = from_row(
                vin=vin,
                reported=row["reported"],
                desired=row["desired"],
                metadata=row["metadata"],
                version=version,
                updated_at=to_ms(row["updated_at"]),
            )
        except StoredShadowError as exc:
            # start over from an empty state; the next write replaces the unreadable row
            _log.error("unreadable shadow row; starting from an empty one", vin=vin, error=str(exc))
            shadow = Shadow(vin=vin, version=version)
        return LoadedShadow(shadow, version)

    async def save(self, *, row: ShadowRow, stored_version: int | None) -> bool:
        """Write ``row`` if the stored version is still ``stored_version``; False otherwise."""
        if stored_version is None:
            result = await self._session.execute(
                query=self._q(_INSERT),
                params=(
                    row.vin,
                    row.reported,
                    row.desired,
                    row.metadata,
                    row.version,
                    row.updated_at,
                ),
            )
        else:
            result = await self._session.execute(
                query=self._q(_UPDATE),
                params=(
                    row.reported,
                    row.desired,
                    row.metadata,
                    row.version,
                    row.updated_at,
                    row.vin,
                    stored_version,
                ),
            )
        return applied(result)
