"""The async session against a real Cassandra: rows written and read back in every table
of schema 0001, lightweight transactions, paging, errors, and a loop that never blocks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from fleetgate.errors import ServiceUnavailable
from fleetgate.stack.prereq import free_port
from processors.store.schema import Ecu, campaign_bucket
from processors.store.session import CassandraSession, StoreError, applied
from schemas.ids import make_vin

pytestmark = pytest.mark.integration


def _now() -> datetime:
    # Cassandra keeps milliseconds: compare like with like
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000, tzinfo=None)


async def test_vehicle_inventory_and_app_links(store: CassandraSession) -> None:
    vin, app = make_vin(1, wmi="STA"), f"app-{uuid.uuid4().hex[:8]}"
    ecus = {"bcm": Ecu(hw="H1", sw="1.2.3"), "tcu": Ecu(hw="T9", sw=None)}
    # the inventory keeps vehicles.apps and app_vehicles in step: one logged batch
    await store.execute_batch(
        statements=[
            (
                "INSERT INTO vehicles (vin, model, year, region, tags, ecus, apps, imported_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (vin, "Model F", 2025, "eu", {"fleet", "beta"}, ecus, {app}, _now()),
            ),
            (
                "INSERT INTO app_vehicles (app_id, vin, linked_at) VALUES (?, ?, ?)",
                (app, vin, _now()),
            ),
        ]
    )
    [row] = await store.execute(query="SELECT * FROM vehicles WHERE vin = ?", params=(vin,))
    assert (row["model"], row["year"], row["region"]) == ("Model F", 2025, "eu")
    assert set(row["tags"]) == {"fleet", "beta"}
    assert set(row["apps"]) == {app}
    assert {name: (e.hw, e.sw) for name, e in row["ecus"].items()} == {
        "bcm": ("H1", "1.2.3"),
        "tcu": ("T9", None),
    }
    linked = await store.execute(
        query="SELECT vin FROM app_vehicles WHERE app_id = ? AND vin = ?", params=(app, vin)
    )
    assert linked == [{"vin": vin}]
    other = await store.execute(
        query="SELECT vin FROM app_vehicles WHERE app_id = ? AND vin = ?",
        params=(app, make_vin(2, wmi="STA")),
    )
    assert other == []


async def test_shadow_optimistic_concurrency(store: CassandraSession) -> None:
    vin = make_vin(3, wmi="STA")
    create = (
        "INSERT INTO shadows (vin, reported, desired, metadata, version, updated_at) "
        "VALUES (?, ?, '{}', '{}', 1, ?) IF NOT EXISTS"
    )
    assert applied(await store.execute(query=create, params=(vin, '{"a": 1}', _now())))
    again = await store.execute(query=create, params=(vin, '{"a": 2}', _now()))
    assert not applied(again)
    assert again[0]["version"] == 1

    update = (
        "UPDATE shadows SET reported = ?, version = ?, updated_at = ? WHERE vin = ? IF version = ?"
    )
    racers = [
        store.execute(query=update, params=(json.dumps({"w": i}), 2, _now(), vin, 1))
        for i in range(5)
    ]
    results = await asyncio.gather(*racers)
    assert sum(applied(r) for r in results) == 1  # exactly one writer wins version 2
    losers = [r for r in results if not applied(r)]
    assert all(r[0]["version"] == 2 for r in losers)
    [row] = await store.execute(
        query="SELECT reported, version FROM shadows WHERE vin = ?", params=(vin,)
    )
    assert row["version"] == 2
    assert json.loads(row["reported"])["w"] in range(5)


async def test_staged_actions_are_one_partition_in_delivery_order(
    store: CassandraSession,
) -> None:
    vin, t0 = make_vin(4, wmi="STA"), _now()
    insert = (
        "INSERT INTO staged_actions (vin, kind, staged_at, action_id, campaign_id, payload, "
        "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
    )
    for offset, kind, action in [
        (3, "COMMAND", "c3"),
        (1, "COMMAND", "c1"),
        (2, "UPDATE", "job-1"),
        (2, "COMMAND", "c2"),
    ]:
        await store.execute(
            query=insert,
            params=(
                vin,
                kind,
                t0 + timedelta(seconds=offset),
                action,
                "camp-1" if kind == "UPDATE" else None,
                "{}",
                t0 + timedelta(hours=1),
                3600,
            ),
        )
    rows = await store.execute(
        query="SELECT kind, action_id FROM staged_actions WHERE vin = ?", params=(vin,)
    )
    assert [(r["kind"], r["action_id"]) for r in rows] == [
        ("COMMAND", "c1"),
        ("COMMAND", "c2"),
        ("COMMAND", "c3"),
        ("UPDATE", "job-1"),
    ]


async def test_command_log_is_idempotent_by_command_id(store: CassandraSession) -> None:
    vin, command_id, created = make_vin(5, wmi="STA"), str(uuid.uuid4()), _now()
    insert = (
        "INSERT INTO commands (command_id, vin, app_id, name, params, status, created_at, "
        "expires_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"
    )
    params = (command_id, vin, "app1", "lock", "{}", "ACCEPTED", created, created, created)
    assert applied(await store.execute(query=insert, params=params))
    duplicate = await store.execute(query=insert, params=params)
    assert not applied(duplicate)
    assert duplicate[0]["status"] == "ACCEPTED"

    by_vin = (
        "INSERT INTO commands_by_vin (vin, created_at, command_id, app_id, name, status) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
    for i in range(3):
        await store.execute(
            query=by_vin,
            params=(vin, created + timedelta(seconds=i), f"cmd-{i}", "app1", "lock", "ACCEPTED"),
        )
    newest = await store.execute(
        query="SELECT command_id FROM commands_by_vin WHERE vin = ? LIMIT 2", params=(vin,)
    )
    assert [r["command_id"] for r in newest] == ["cmd-2", "cmd-1"]


async def test_campaign_and_vehicle_update_state(store: CassandraSession) -> None:
    campaign, vin = f"camp-{uuid.uuid4().hex[:8]}", make_vin(6, wmi="STA")
    await store.execute(
        query="INSERT INTO campaigns (campaign_id, name, state, artifact_name, "
        "artifact_version, target, waves, current_wave, version) "
        "VALUES (?, ?, 'DRAFT', 'fw', '1.0', '{}', '[]', 0, 1)",
        params=(campaign, "spring update"),
    )
    moved = await store.execute(
        query="UPDATE campaigns SET state = 'RUNNING', version = 2 WHERE campaign_id = ? "
        "IF version = 1",
        params=(campaign,),
    )
    assert applied(moved)
    bucket = campaign_bucket(vin)
    await store.execute(
        query="INSERT INTO campaign_vehicles (campaign_id, bucket, vin, wave, job_id, state) "
        "VALUES (?, ?, ?, 0, 'job-9', 'STAGED')",
        params=(campaign, bucket, vin),
    )
    await store.execute(
        query="INSERT INTO vehicle_updates (vin, campaign_id, job_id, state) "
        "VALUES (?, ?, 'job-9', 'STAGED')",
        params=(vin, campaign),
    )
    [one] = await store.execute(
        query="SELECT state FROM campaign_vehicles "
        "WHERE campaign_id = ? AND bucket = ? AND vin = ?",
        params=(campaign, bucket, vin),
    )
    assert one["state"] == "STAGED"
    [mine] = await store.execute(
        query="SELECT campaign_id, job_id FROM vehicle_updates WHERE vin = ?", params=(vin,)
    )
    assert mine == {"campaign_id": campaign, "job_id": "job-9"}


async def test_artifact_manifest_and_chunks(store: CassandraSession) -> None:
    name, version = f"fw-{uuid.uuid4().hex[:6]}", "2.0.0"
    chunks = [b"\x00\x01" * 100, b"\xff" * 50]
    for i, data in enumerate(chunks):
        await store.execute(
            query="INSERT INTO artifact_chunks (name, version, chunk_index, data) "
            "VALUES (?, ?, ?, ?)",
            params=(name, version, i, data),
        )
        await store.execute(
            query="INSERT INTO artifacts (name, version, chunk_index, size, sha256, chunk_size, "
            "chunk_count, chunk_sha256, chunk_length) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params=(name, version, i, 250, "abc", 200, 2, f"sha-{i}", len(data)),
        )
    rows = await store.execute(
        query="SELECT chunk_index, size, chunk_count, chunk_length FROM artifacts "
        "WHERE name = ? AND version = ?",
        params=(name, version),
    )
    assert [(r["chunk_index"], r["size"], r["chunk_count"]) for r in rows] == [
        (0, 250, 2),
        (1, 250, 2),
    ]
    [chunk] = await store.execute(
        query="SELECT data FROM artifact_chunks WHERE name = ? AND version = ? AND chunk_index = ?",
        params=(name, version, 1),
    )
    assert chunk["data"] == chunks[1]


async def test_every_page_comes_back(store: CassandraSession) -> None:
    vin, t0 = make_vin(7, wmi="STA"), _now()
    insert = "INSERT INTO commands_by_vin (vin, created_at, command_id, status) VALUES (?, ?, ?, ?)"
    await asyncio.gather(
        *(
            store.execute(query=insert, params=(vin, t0 + timedelta(milliseconds=i), f"c{i}", "X"))
            for i in range(230)
        )
    )
    rows = await store.execute(
        query="SELECT command_id FROM commands_by_vin WHERE vin = ?", params=(vin,), fetch_size=25
    )
    assert len(rows) == 230
    assert rows[0]["command_id"] == "c229"


async def test_queries_do_not_block_the_event_loop(store: CassandraSession) -> None:
    vin = make_vin(8, wmi="STA")
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    query = "SELECT vin, version FROM shadows WHERE vin = ?"
    for _ in range(3):
        await asyncio.gather(*(store.execute(query=query, params=(vin,)) for _ in range(100)))
    elapsed = time.monotonic() - started
    stop.set()
    await tick
    # The loop ticked all along: a blocking driver call would freeze it for whole round trips.
    assert len(gaps) >= elapsed / 0.05, (len(gaps), elapsed)
    assert max(gaps) < 0.5, max(gaps)


async def test_prepared_statements_are_cached(store: CassandraSession) -> None:
    query = "SELECT vin FROM vehicles WHERE vin = ?"
    first, second = await asyncio.gather(store.prepare(query=query), store.prepare(query=query))
    assert first is second
    assert await store.prepare(query=query) is first


async def test_errors_are_one_line_store_errors(store: CassandraSession) -> None:
    with pytest.raises(StoreError, match="SELECT nope FROM vehicles") as bad_column:
        await store.execute(query="SELECT nope FROM vehicles WHERE vin = ?", params=("x",))
    assert "\n" not in str(bad_column.value)
    with pytest.raises(StoreError, match="no_such_table"):
        await store.execute(query="SELECT * FROM no_such_table")
    with pytest.raises(StoreError):
        await store.execute(query="SELECT * FROM vehicles WHERE vin = ?", params=(1, 2))
    with pytest.raises(StoreError, match="batch of 1"):
        await store.execute_batch(
            statements=[("INSERT INTO app_vehicles (app_id, vin) VALUES (?, ?)", ("a",))]
        )
    # the session still serves after errors
    assert await store.execute(query="SELECT vin FROM vehicles WHERE vin = ?", params=("x",)) == []


async def test_unreachable_cassandra_is_service_unavailable() -> None:
    session = CassandraSession()
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await session.connect(hosts=["127.0.0.1"], port=free_port(), keyspace=None, timeout_s=2)
    assert time.monotonic() - started < 10
    with pytest.raises(StoreError, match="not connected"):
        await session.execute(query="SELECT now() FROM system.local")
    await session.close()
    await session.close()
