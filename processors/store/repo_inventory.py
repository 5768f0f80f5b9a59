"""The ``vehicles`` and ``app_vehicles`` tables. Writer: the inventory (``processors.inventory``:
the ``fleetgate vehicles`` commands and the ECU versions the shadow processor reports)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from processors.inventory.logic import VehicleRecord
from processors.store.repo_common import Queries, to_ms
from processors.store.schema import Ecu
from processors.store.session import CassandraSession

_UPSERT = (
    "UPDATE ks.vehicles SET model = ?, year = ?, region = ?, tags = ?, imported_at = ?, "
    "updated_at = ? WHERE vin = ?"
)
_UPSERT_WITH_ECUS = (
    "UPDATE ks.vehicles SET model = ?, year = ?, region = ?, tags = ?, ecus = ?, imported_at = ?, "
    "updated_at = ? WHERE vin = ?"
)
_GET = (
    "SELECT vin, model, year, region, tags, ecus, apps, imported_at, updated_at "
    "FROM ks.vehicles WHERE vin = ?"
)
_EXISTS = "SELECT vin, apps FROM ks.vehicles WHERE vin = ?"
_LINK_VEHICLE = "UPDATE ks.vehicles SET apps = apps + ?, updated_at = ? WHERE vin = ?"
_LINK_APP = "INSERT INTO ks.app_vehicles (app_id, vin, linked_at) VALUES (?, ?, ?)"
_IS_LINKED = "SELECT vin FROM ks.app_vehicles WHERE app_id = ? AND vin = ?"
_ECUS = "UPDATE ks.vehicles USING TIMESTAMP ? SET ecus = ecus + ?, updated_at = ? WHERE vin = ?"


@dataclass(frozen=True, slots=True)
class Vehicle:
    vin: str
    model: str | None = None
    year: int | None = None
    region: str | None = None
    tags: frozenset[str] = frozenset()
    ecus: Mapping[str, Ecu] = field(default_factory=dict)
    apps: frozenset[str] = frozenset()
    imported_at: int | None = None
    updated_at: int | None = None


class InventoryRepository:
    def __init__(self, *, session: CassandraSession, keyspace: str) -> None:
        self._session = session
        self._q = Queries(keyspace)

    async def upsert(self, *, record: VehicleRecord, now_ms: int) -> None:
        """Store an imported vehicle (its linked apps stay; ECUs only if the row has some)."""
        tags = set(record.tags) or None
        if record.ecus is None:
            await self._session.execute(
                query=self._q(_UPSERT),
                params=(
                    record.model,
                    record.year,
                    record.region,
                    tags,
                    now_ms,
                    now_ms,
                    record.vin,
                ),
            )
            return
        ecus = {e.name: Ecu(hw=e.hw, sw=e.sw) for e in record.ecus} or None
        await self._session.execute(
            query=self._q(_UPSERT_WITH_ECUS),
            params=(
                record.model,
                record.year,
                record.region,
                tags,
                ecus,
                now_ms,
                now_ms,
                record.vin,
            ),
        )

    async def get(self, *, vin: str) -> Vehicle | None:
        rows = await self._session.execute(query=self._q(_GET), params=(vin,))
        if not rows:
            return None
        row = rows[0]
        ecus = {
            str(name): Ecu(hw=getattr(value, "hw", None), sw=getattr(value, "sw", None))
            for name, value in (row["ecus"] or {}).items()
        }
        return Vehicle(
            vin=row["vin"],
            model=row["model"],
            year=row["year"],
            region=row["region"],
            tags=frozenset(row["tags"] or ()),
            ecus=ecus,
            apps=frozenset(row["apps"] or ()),
            imported_at=to_ms(row["imported_at"]),
            updated_at=to_ms(row["updated_at"]),
        )

    async def apps_of(self, *, vin: str) -> frozenset[str] | None:
        """The apps linked to ``vin``; None when the vehicle is unknown."""
        rows = await self._session.execute(query=self._q(_EXISTS), params=(vin,))
        if not rows:
            return None
        return frozenset(rows[0]["apps"] or ())

    async def is_linked(self, *, app_id: str, vin: str) -> bool:
        rows = await self._session.execute(query=self._q(_IS_LINKED), params=(app_id, vin))
        return bool(rows)

    async def link(self, *, vin: str, app_id: str, now_ms: int) -> None:
        """Let ``app_id`` act on ``vin`` (both tables in one logged batch)."""
        await self._session.execute_batch(
            statements=[
                (self._q(_LINK_VEHICLE), ({app_id}, now_ms, vin)),
                (self._q(_LINK_APP), (app_id, vin, now_ms)),
            ]
        )

    async def update_ecus(self, *, vin: str, ecus: Mapping[str, Ecu], ts_ms: int) -> None:
        """Merge reported ECU versions; written with the report's time, so an older report
        never overwrites a newer one. Only call it for a vehicle that exists."""
        if not ecus:
            return
        await self._session.execute(
            query=self._q(_ECUS), params=(ts_ms * 1000, dict(ecus), ts_ms, vin)
        )
