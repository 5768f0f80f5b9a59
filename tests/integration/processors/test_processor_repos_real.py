"""The processors' repositories against the real Cassandra: shadows with lightweight
transactions, the command log and its idempotency, staging, deadlines, the inventory."""

from __future__ import annotations

import pytest

from processors.commands.logic import Command, CommandEvent
from processors.inventory.logic import EcuInfo, VehicleRecord
from processors.shadow.logic import Applied, Shadow, apply_connectivity, apply_reported
from processors.shadow.stored import to_row
from processors.store.repo_commands import CommandRepository
from processors.store.repo_inventory import InventoryRepository
from processors.store.repo_shadow import ShadowRepository
from processors.store.schema import Ecu
from processors.store.session import CassandraSession
from schemas.commands import CommandState
from schemas.ids import make_vin
from tests.integration.processors.conftest import new_id, now_ms

pytestmark = pytest.mark.integration


def _vin(n: int) -> str:
    return make_vin(900_000 + n, wmi="RPX")


async def test_shadow_round_trip_and_optimistic_concurrency(
    proc_session: CassandraSession, proc_keyspace: str
) -> None:
    repo = ShadowRepository(session=proc_session, keyspace=proc_keyspace)
    vin = _vin(1)
    empty = await repo.load(vin=vin)
    assert empty.stored_version is None
    result = apply_reported(Shadow(vin=vin), {"cabin": {"temp": 21.5}, "tags": ["a"]}, now_ms())
    assert isinstance(result, Applied)
    shadow = apply_connectivity(result.shadow, online=True, ts=now_ms()).shadow
    assert await repo.save(row=to_row(shadow), stored_version=None)
    assert not await repo.save(row=to_row(shadow), stored_version=None)  # exists already
    loaded = await repo.load(vin=vin)
    assert loaded.shadow == shadow
    assert loaded.stored_version == 1
    newer = apply_reported(shadow, {"cabin": {"temp": 22}}, now_ms() + 1)
    assert isinstance(newer, Applied)
    assert await repo.save(row=to_row(newer.shadow), stored_version=1)
    assert not await repo.save(row=to_row(newer.shadow), stored_version=1)  # stale guard
    assert (await repo.load(vin=vin)).shadow.version == 2


async def test_command_log_is_idempotent_by_id(
    proc_session: CassandraSession, proc_keyspace: str
) -> None:
    repo = CommandRepository(session=proc_session, keyspace=proc_keyspace)
    vin, t = _vin(2), now_ms()
    command = Command(
        command_id=new_id(),
        vin=vin,
        app_id="app1",
        name="doors.lock",
        params={"force": True, "n": [1, 2]},
        created_at=t,
        expires_at=t + 60_000,
        status=CommandState.ACCEPTED,
        updated_at=t,
    )
    assert await repo.get(command_id=command.command_id) is None
    await repo.record_new(command=command, partition=3, now_ms=t)
    await repo.record_new(command=command, partition=3, now_ms=t)  # a replay: same rows
    assert await repo.get(command_id=command.command_id) == command
    assert [r["status"] for r in await repo.recent(vin=vin)] == ["ACCEPTED"]
    deadlines = await repo.deadlines(partition=3, now_ms=t)
    assert [d.command_id for d in deadlines if d.vin == vin] == [command.command_id]
    delivered = command.apply(CommandEvent.DELIVER, now=t + 5)
    done = delivered.apply(CommandEvent.SUCCEED, now=t + 9, detail={"took_ms": 4})
    await repo.save_status(command=done, partition=3, now_ms=t + 9)
    assert await repo.get(command_id=command.command_id) == done
    assert all(
        d.command_id != command.command_id for d in await repo.deadlines(partition=3, now_ms=t)
    )
    recent = await repo.recent(vin=vin)
    assert [r["status"] for r in recent] == ["SUCCEEDED"]


async def test_staged_commands_come_back_in_order(
    proc_session: CassandraSession, proc_keyspace: str
) -> None:
    repo = CommandRepository(session=proc_session, keyspace=proc_keyspace)
    vin, t = _vin(3), now_ms()
    ids = []
    for i in range(3):
        cid = new_id()
        ids.append(cid)
        command = Command(cid, vin, "app1", "x", {}, t + i, t + 600_000, CommandState.ACCEPTED)
        await repo.stage(command=command, now_ms=t)
    staged = await repo.staged(vin=vin)
    assert [s.command_id for s in staged] == ids
    await repo.unstage(vin=vin, staged_at=staged[1].staged_at, command_id=ids[1])
    assert [s.command_id for s in await repo.staged(vin=vin)] == [ids[0], ids[2]]


async def test_inventory_import_link_and_reported_ecus(
    proc_session: CassandraSession, proc_keyspace: str
) -> None:
    repo = InventoryRepository(session=proc_session, keyspace=proc_keyspace)
    vin, t = _vin(4), now_ms()
    assert await repo.get(vin=vin) is None
    assert await repo.apps_of(vin=vin) is None
    record = VehicleRecord(
        vin=vin,
        model="Model X",
        year=2024,
        region="eu",
        tags=("fleet-a", "beta"),
        ecus=(EcuInfo("bcm", "H1", "1.0"),),
    )
    await repo.upsert(record=record, now_ms=t)
    await repo.link(vin=vin, app_id="app1", now_ms=t)
    assert await repo.is_linked(app_id="app1", vin=vin)
    assert not await repo.is_linked(app_id="app2", vin=vin)
    # a re-import keeps the links and, without ECUs in the row, the ECUs
    await repo.upsert(record=VehicleRecord(vin=vin, model="Model Y"), now_ms=t + 1)
    vehicle = await repo.get(vin=vin)
    assert vehicle is not None
    assert vehicle.model == "Model Y"
    assert vehicle.apps == {"app1"}
    assert vehicle.ecus == {"bcm": Ecu("H1", "1.0")}
    # reported ECU versions merge in; an older report never overwrites a newer one (the
    # reports are timed well after the import: its write carries the wall clock)
    await repo.update_ecus(vin=vin, ecus={"bcm": Ecu("H1", "2.0")}, ts_ms=t + 60_000)
    await repo.update_ecus(
        vin=vin, ecus={"bcm": Ecu("H1", "1.5"), "tcu": Ecu(None, "9")}, ts_ms=t + 30_000
    )
    vehicle = await repo.get(vin=vin)
    assert vehicle is not None
    assert vehicle.ecus == {"bcm": Ecu("H1", "2.0"), "tcu": Ecu(None, "9")}
