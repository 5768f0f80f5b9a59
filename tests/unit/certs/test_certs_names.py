"""certs.names: app ids and service names that are VINs, or that name both an app and a service."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certs.names import NameClash, other_role, refuse_clashes, refuse_vins
from schemas.ids import VIN_ALPHABET, InvalidIdentifier, Role, make_vin

pytestmark = pytest.mark.unit

vins = st.text(alphabet=VIN_ALPHABET, min_size=17, max_size=17)
names = st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True)


@given(vin=vins, role=st.sampled_from([Role.APP, Role.SERVICE]))
def test_an_app_id_or_service_name_that_is_a_vin_is_refused_in_one_line(
    vin: str, role: Role
) -> None:
    with pytest.raises(InvalidIdentifier) as caught:
        refuse_vins(role, ["fine-name", vin])
    message = str(caught.value)
    assert "\n" not in message
    assert repr(vin) in message
    assert "is a valid VIN" in message


@given(ids=st.lists(names, max_size=5), role=st.sampled_from([Role.APP, Role.SERVICE]))
def test_lowercase_names_are_never_vins(ids: list[str], role: Role) -> None:
    refuse_vins(role, ids)  # a VIN has no lowercase letters


def test_vehicles_are_not_checked_for_being_vins() -> None:
    refuse_vins(Role.VEHICLE, [make_vin(1)])


def test_other_role_pairs_apps_and_services() -> None:
    assert other_role(Role.APP) is Role.SERVICE
    assert other_role(Role.SERVICE) is Role.APP
    assert other_role(Role.VEHICLE) is None


@given(
    ids=st.lists(names, min_size=1, max_size=5),
    taken=st.lists(names, max_size=5),
    role=st.sampled_from([Role.APP, Role.SERVICE]),
)
def test_a_clash_is_refused_exactly_when_a_name_is_taken(
    ids: list[str], taken: list[str], role: Role
) -> None:
    clash = set(ids) & set(taken)
    if not clash:
        refuse_clashes(role, ids, taken=taken)
        return
    with pytest.raises(NameClash) as caught:
        refuse_clashes(role, ids, taken=taken)
    message = str(caught.value)
    assert "\n" not in message
    assert all(repr(name) in message for name in clash)


def test_clash_messages_name_both_roles() -> None:
    with pytest.raises(NameClash, match=r"^app id 'gateway' is already a service name; "):
        refuse_clashes(Role.APP, ["gateway"], taken={"gateway", "ops"})
    with pytest.raises(NameClash, match=r"^service names 'a', 'b' are already app ids; "):
        refuse_clashes(Role.SERVICE, ["b", "a", "c"], taken=["a", "b"])
    with pytest.raises(NameClash, match=r"^service name 'a' is already an app id; "):
        refuse_clashes(Role.SERVICE, ["a"], taken=["a"])


def test_vehicles_never_clash() -> None:
    refuse_clashes(Role.VEHICLE, [make_vin(1)], taken=[make_vin(1)])
