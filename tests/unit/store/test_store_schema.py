from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetgate.errors import UserError
from fleetgate.settings import CassandraConnection
from processors.store.migrate import load_migrations
from processors.store.schema import (
    CAMPAIGN_BUCKETS,
    Migration,
    MigrationError,
    Replication,
    campaign_bucket,
    check_keyspace,
    create_keyspace_cql,
    order_migrations,
    parse_migration_name,
    pending_migrations,
    render_statements,
    same_replication,
    split_statements,
)
from processors.store.session import applied, describe_connect_error
from schemas.ids import VIN_ALPHABET

pytestmark = pytest.mark.unit


# -- replication -------------------------------------------------------------------------


def test_simple_replication_clause() -> None:
    assert Replication().clause() == "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    assert Replication(factor=3).options() == {
        "class": "org.apache.cassandra.locator.SimpleStrategy",
        "replication_factor": "3",
    }


def test_network_replication_clause_is_sorted_by_datacenter() -> None:
    rep = Replication(strategy="network", datacenters={"eu-west": 3, "dc1": 2})
    assert rep.clause() == "{'class': 'NetworkTopologyStrategy', 'dc1': 2, 'eu-west': 3}"


def test_replication_from_settings() -> None:
    conn = CassandraConnection(replication="network", datacenters={"dc1": 3}, local_dc="dc1")
    assert Replication.from_connection(conn) == Replication("network", 1, {"dc1": 3})
    assert Replication.from_connection(CassandraConnection()) == Replication("simple", 1, {})


@pytest.mark.parametrize(
    ("rep", "message"),
    [
        (Replication(strategy="network"), "at least one datacenter"),
        (Replication(strategy="network", datacenters={"dc1'": 1}), "invalid datacenter"),
        (Replication(strategy="network", datacenters={"dc1": 0}), "replicas of datacenter dc1"),
        (Replication(factor=9), "replication_factor"),
    ],
)
def test_bad_replication_is_a_user_error(rep: Replication, message: str) -> None:
    with pytest.raises(UserError, match=message):
        rep.clause()


def test_same_replication_compares_what_cassandra_reports() -> None:
    reported = {"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "1"}
    assert same_replication(reported, Replication())
    assert not same_replication(reported, Replication(factor=3))


def test_create_keyspace_cql() -> None:
    assert create_keyspace_cql("fg", Replication()) == (
        "CREATE KEYSPACE IF NOT EXISTS fg WITH replication = "
        "{'class': 'SimpleStrategy', 'replication_factor': 1} AND durable_writes = true"
    )


@pytest.mark.parametrize("bad", ["", "Fleet", "1abc", "a-b", "a;drop", "a" * 49, "a b"])
def test_bad_keyspace_is_a_user_error(bad: str) -> None:
    with pytest.raises(UserError, match="invalid keyspace"):
        check_keyspace(bad)


# -- migration files ---------------------------------------------------------------------


def test_parse_migration_name() -> None:
    assert parse_migration_name("0001_initial.cql") == ("0001", "initial")
    assert parse_migration_name("0042_add_index_2.cql") == ("0042", "add_index_2")


@pytest.mark.parametrize("bad", ["1_initial.cql", "0001-initial.cql", "0001_.cql", "0001_Up.cql"])
def test_bad_migration_name(bad: str) -> None:
    with pytest.raises(MigrationError, match="bad migration file name"):
        parse_migration_name(bad)


@given(st.sets(st.integers(min_value=0, max_value=9999), min_size=1, max_size=30), st.randoms())
def test_migrations_are_ordered_by_version(versions: set[int], rnd: random.Random) -> None:
    files = [(f"{v:04d}_m{v}.cql", f"-- {v}") for v in versions]
    rnd.shuffle(files)
    ordered = order_migrations([*files, ("__init__.py", "")])
    assert [int(m.version) for m in ordered] == sorted(versions)


def test_duplicate_versions_are_an_error() -> None:
    with pytest.raises(MigrationError, match="two migrations with version 0002"):
        order_migrations([("0002_a.cql", ""), ("0002_b.cql", "")])


def _m(version: str, text: str = "x") -> Migration:
    return Migration(version=version, name=f"m{version}", text=text)


def test_pending_migrations() -> None:
    available = [_m("0001"), _m("0002"), _m("0003")]
    assert pending_migrations(available, {}) == available
    applied_now = {"0001": _m("0001").checksum, "0002": _m("0002").checksum}
    assert pending_migrations(available, applied_now) == [available[2]]
    everything = {m.version: m.checksum for m in available}
    assert pending_migrations(available, everything) == []


def test_an_edited_applied_migration_is_an_error() -> None:
    with pytest.raises(MigrationError, match="0001_m0001 changed after it was applied"):
        pending_migrations([_m("0001", "new text")], {"0001": _m("0001", "old").checksum})


def test_an_unknown_applied_migration_is_an_error() -> None:
    with pytest.raises(MigrationError, match="does not know: 0007"):
        pending_migrations([_m("0001")], {"0001": _m("0001").checksum, "0007": "abc"})


# -- statements --------------------------------------------------------------------------


def test_split_statements_skips_comments_and_keeps_literals() -> None:
    text = """
    -- a comment; with a semicolon
    CREATE TABLE t (a int PRIMARY KEY, b text); // trailing; comment
    /* block; comment */ INSERT INTO t (a, b) VALUES (1, 'it''s; fine');
    INSERT INTO "Odd;Name" (a) VALUES (2) ;
    CREATE FUNCTION f() RETURNS text LANGUAGE java AS $$ return "a;b"; $$;
    ;;
    """
    assert split_statements(text) == [
        "CREATE TABLE t (a int PRIMARY KEY, b text)",
        "INSERT INTO t (a, b) VALUES (1, 'it''s; fine')",
        'INSERT INTO "Odd;Name" (a) VALUES (2)',
        'CREATE FUNCTION f() RETURNS text LANGUAGE java AS $$ return "a;b"; $$',
    ]


@pytest.mark.parametrize("bad", ["SELECT 'open", 'SELECT "open', "/* open", "AS $$ open"])
def test_unterminated_tokens_are_errors(bad: str) -> None:
    with pytest.raises(MigrationError, match="unterminated"):
        split_statements(bad)


_words = st.text(alphabet="abcdefghij_ (),=0123456789", min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
)


@given(st.lists(_words, min_size=1, max_size=10))
def test_split_statements_round_trip(statements: list[str]) -> None:
    expected = [" ".join(s.split()) for s in statements]
    assert split_statements(";\n".join(statements)) == expected


def test_render_statements_replaces_the_keyspace_only() -> None:
    m = _m("0001", "CREATE TABLE ${keyspace}.t (a int PRIMARY KEY); -- note\n")
    assert render_statements(m, keyspace="fg_x") == ["CREATE TABLE fg_x.t (a int PRIMARY KEY)"]
    with pytest.raises(MigrationError, match="unknown placeholder"):
        render_statements(_m("0002", "CREATE TABLE ${other}.t (a int PRIMARY KEY)"), keyspace="k")
    with pytest.raises(UserError, match="invalid keyspace"):
        render_statements(m, keyspace="Bad")


def test_shipped_migrations_are_well_formed_and_idempotent() -> None:
    migrations = load_migrations()
    assert [m.label for m in migrations][:1] == ["0001_initial"]
    for m in migrations:
        statements = render_statements(m, keyspace="ks")
        assert statements
        for statement in statements:
            assert "IF NOT EXISTS" in statement, statement
            assert " ks." in f" {statement}", statement


def test_initial_schema_has_the_tables_of_every_access_path() -> None:
    text = " ".join(render_statements(load_migrations()[0], keyspace="ks"))
    for table in (
        "vehicles",
        "app_vehicles",
        "shadows",
        "staged_actions",
        "campaigns",
        "campaign_vehicles",
        "vehicle_updates",
        "commands",
        "commands_by_vin",
        "artifacts",
        "artifact_chunks",
    ):
        assert f"CREATE TABLE IF NOT EXISTS ks.{table} (" in text


# -- small helpers -----------------------------------------------------------------------


@given(st.text(alphabet=VIN_ALPHABET, min_size=17, max_size=17))
def test_campaign_bucket_is_in_range_and_stable(vin: str) -> None:
    bucket = campaign_bucket(vin)
    assert 0 <= bucket < CAMPAIGN_BUCKETS
    assert campaign_bucket(vin) == bucket


def test_campaign_bucket_is_fixed_across_versions() -> None:
    # crc32 is part of the stored layout: these values must never change.
    assert campaign_bucket("1HGCM82633A004352") == 10
    assert campaign_bucket("WVWZZZ1JZXW000001") == 15


def test_applied_reads_the_lwt_flag() -> None:
    assert applied([{"[applied]": True}])
    assert not applied([{"[applied]": False, "version": 3}])
    assert not applied([])


def test_describe_connect_error_is_one_short_line() -> None:
    class NoHost(Exception):
        errors = {
            "127.0.0.1:9": ConnectionRefusedError(111, "Tried x. Last error: Connection refused")
        }

    assert describe_connect_error(NoHost("x")) == "127.0.0.1:9: Connection refused"
    assert describe_connect_error(ValueError("bad\nthing")) == "ValueError: bad thing"
