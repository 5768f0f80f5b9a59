"""certs.index (the issued-certificate ledger), store.plan_issue and PkiPaths: pure logic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certs import index
from certs.crl import Revocation
from certs.index import IndexEntry, Kind
from certs.store import AlreadyIssued, PkiPaths, plan_issue
from schemas.ids import InvalidIdentifier, Role, make_vin

pytestmark = pytest.mark.unit

NOW = datetime(2030, 1, 1, tzinfo=UTC)
LATER = NOW + timedelta(days=730)


def _e(serial: int, kind: Kind, ident: str, revoked_at: datetime | None = None) -> IndexEntry:
    return IndexEntry(serial=serial, kind=kind, id=ident, not_after=LATER, revoked_at=revoked_at)


entries_st = st.lists(
    st.builds(
        IndexEntry,
        serial=st.integers(min_value=1, max_value=2**159),
        kind=st.sampled_from(Kind),
        id=st.sampled_from(["a", "gateway", make_vin(3)]),
        not_after=st.datetimes(timezones=st.just(UTC)),
        revoked_at=st.none() | st.datetimes(timezones=st.just(UTC)),
    ),
    unique_by=lambda e: e.serial,
    max_size=20,
)


@given(entries=entries_st)
def test_encode_decode_round_trip(entries: list[IndexEntry]) -> None:
    assert index.decode(index.encode(entries)) == entries


def test_serials_are_written_in_hex() -> None:
    assert '"serial":"ff"' in index.encode([_e(255, Kind.APP, "a")])


def test_a_later_line_for_a_serial_wins_and_a_torn_last_line_is_ignored() -> None:
    issued = _e(1, Kind.VEHICLE, "V")
    revoked = issued.model_copy(update={"revoked_at": NOW})
    text = index.encode([issued, _e(2, Kind.APP, "a"), revoked]) + '{"serial":"3","ki'
    assert index.decode(text) == [revoked, _e(2, Kind.APP, "a")]


def test_revoke_marks_every_live_certificate_of_the_id() -> None:
    entries = [
        _e(1, Kind.APP, "a", revoked_at=NOW - timedelta(days=1)),
        _e(2, Kind.APP, "a"),
        _e(3, Kind.APP, "b"),
    ]
    assert index.revoke(entries, "a", now=NOW) == [_e(2, Kind.APP, "a", revoked_at=NOW)]
    after = index.merge(entries, index.revoke(entries, "a", now=NOW))
    assert index.revoked_serials(after) == {1, 2}
    assert index.revocations(after) == [
        Revocation(serial=1, revoked_at=NOW - timedelta(days=1)),
        Revocation(serial=2, revoked_at=NOW),
    ]


def test_revoke_unknown_or_already_revoked_is_an_error() -> None:
    entries = [_e(1, Kind.APP, "a", revoked_at=NOW)]
    with pytest.raises(index.UnknownIdentity, match="'a'"):
        index.revoke(entries, "a", now=NOW)
    with pytest.raises(index.UnknownIdentity, match="vehicle 'zz'"):
        index.revoke(entries, "zz", now=NOW, kind=Kind.VEHICLE)


def test_an_id_of_two_kinds_needs_the_kind() -> None:
    entries = [_e(1, Kind.APP, "ops"), _e(2, Kind.SERVICE, "ops")]
    with pytest.raises(index.AmbiguousIdentity, match="app, service"):
        index.revoke(entries, "ops", now=NOW)
    assert index.revoke(entries, "ops", now=NOW, kind=Kind.SERVICE) == [
        _e(2, Kind.SERVICE, "ops", revoked_at=NOW)
    ]


def test_kind_of_role() -> None:
    assert [Kind.of(r) for r in Role] == [Kind.VEHICLE, Kind.APP, Kind.SERVICE]


def test_plan_issue_new_ids_in_order_without_duplicates() -> None:
    planned = plan_issue(
        ["b", "a", "b"], kind=Kind.APP, present=set(), live=set(), skip_existing=False
    )
    assert planned == (["b", "a"], [])


def test_plan_issue_refuses_a_live_id_and_reissues_a_revoked_one() -> None:
    with pytest.raises(AlreadyIssued, match="app a already has a certificate"):
        plan_issue(["a"], kind=Kind.APP, present={"a"}, live={"a"}, skip_existing=False)
    assert plan_issue(["a"], kind=Kind.APP, present={"a"}, live=set(), skip_existing=False) == (
        ["a"],
        [],
    )


def test_plan_issue_skips_whatever_exists_when_asked() -> None:
    planned = plan_issue(
        ["a", "b", "c"], kind=Kind.VEHICLE, present={"a", "c"}, live={"a"}, skip_existing=True
    )
    assert planned == (["b"], ["a", "c"])


def test_pki_paths_follow_the_contract() -> None:
    paths = PkiPaths(Path("/h"))
    vin = make_vin(5)
    assert paths.vehicle(vin) == (
        Path(f"/h/pki/vehicles/{vin}.pem"),
        Path(f"/h/pki/vehicles/{vin}.key"),
    )
    assert paths.app("my.app") == (Path("/h/pki/apps/my.app.pem"), Path("/h/pki/apps/my.app.key"))
    assert paths.service("ops") == (
        Path("/h/pki/services/ops.pem"),
        Path("/h/pki/services/ops.key"),
    )
    assert paths.server() == (Path("/h/pki/server.pem"), Path("/h/pki/server.key"))
    assert (paths.root_ca, paths.ca, paths.ca_chain, paths.ca_key, paths.crl) == tuple(
        Path("/h/pki") / n for n in ("root-ca.pem", "ca.pem", "ca-chain.pem", "ca.key", "crl.pem")
    )
    assert (paths.signing_key, paths.signing_pub) == (
        Path("/h/pki/signing.key"),
        Path("/h/pki/signing.pub"),
    )


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a/b", ".hidden", ""])
def test_pki_paths_refuse_names_that_leave_the_directory(bad: str) -> None:
    with pytest.raises(InvalidIdentifier):
        PkiPaths(Path("/h")).app(bad)
    with pytest.raises(InvalidIdentifier):
        PkiPaths(Path("/h")).vehicle(bad)
