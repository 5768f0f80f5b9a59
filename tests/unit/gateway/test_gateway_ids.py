"""gateway.ids: message ids are UUID text, unique, cheap."""

from __future__ import annotations

import uuid

import pytest

from gateway.ids import MessageIds

pytestmark = pytest.mark.unit


def test_ids_are_distinct_version_4_uuid_text() -> None:
    ids = MessageIds()
    made = [ids.next() for _ in range(5000)]
    assert len(set(made)) == len(made)
    for text in made[:50] + made[-50:]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4


def test_two_instances_do_not_collide() -> None:
    a, b = MessageIds(), MessageIds()
    assert {a.next() for _ in range(100)}.isdisjoint({b.next() for _ in range(100)})


def test_prefix_renews_when_the_counter_runs_out() -> None:
    ids = MessageIds()
    first = ids.next()
    ids._count = 1 << 48
    renewed = ids.next()
    assert renewed[:24] != first[:24]
    assert renewed.endswith("000000000000")
