"""schemas.ids: identities as text (the Kafka sender header)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.ids import NAME_RE, Identity, InvalidIdentifier, Role, make_vin, parse_identity

pytestmark = pytest.mark.unit


@given(
    number=st.integers(min_value=0, max_value=33**11 - 1),
    name=st.from_regex(NAME_RE, fullmatch=True),
)
def test_parse_identity_round_trip(number: int, name: str) -> None:
    for identity in (
        Identity.of(role=Role.VEHICLE, id=make_vin(number)),
        Identity.of(role=Role.APP, id=name),
        Identity.of(role=Role.SERVICE, id=name),
    ):
        assert parse_identity(str(identity)) == identity


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("car:FGTSMV00000000001", "must be vehicle:<VIN>"),
        ("FGTSMV00000000001", "must be vehicle:<VIN>"),
        ("vehicle:FGTSMV0000000000I", "illegal character 'I'"),
        ("app:", "app id '' is not valid"),
        ("vehicles:FGTSMV00000000001", "must be vehicle:<VIN>"),
    ],
)
def test_parse_identity_rejects(text: str, reason: str) -> None:
    with pytest.raises(InvalidIdentifier, match=reason):
        parse_identity(text)
