"""broker.amqtt_routing: the subscription index never misses a matching filter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.amqtt_routing import SubscriptionIndex, literal_head
from schemas.topics import topic_matches

pytestmark = pytest.mark.unit

LEVEL = st.sampled_from(["vehicles", "apps", "V1", "V2", "a", "", "$SYS"])
TOPIC = st.lists(LEVEL, min_size=1, max_size=5).map("/".join)
FILTER = st.builds(
    lambda levels, tail: "/".join([*levels, tail] if tail else levels) or "#",
    st.lists(st.one_of(LEVEL, st.just("+")), max_size=4),
    st.sampled_from([None, "#", "+"]),
)


@pytest.mark.parametrize(
    ("text", "head"),
    [
        ("vehicles/V1/commands/+", "vehicles/V1"),
        ("vehicles/V1", "vehicles/V1"),
        ("vehicles/+/telemetry", None),
        ("vehicles/#", None),
        ("#", None),
        ("a", None),
        ("/x", "/x"),
    ],
)
def test_literal_head(text: str, head: str | None) -> None:
    assert literal_head(text) == head


@given(st.lists(FILTER, max_size=30), st.lists(FILTER, max_size=10), TOPIC)
def test_candidates_hold_every_matching_filter(
    added: list[str], removed: list[str], topic: str
) -> None:
    index = SubscriptionIndex()
    for topic_filter in added:
        index.setdefault(topic_filter, [])
    for topic_filter in removed:
        if topic_filter in index:
            del index[topic_filter]
        index.pop(topic_filter, None)
    candidates = set(index.candidates(topic))
    assert candidates <= set(index)
    assert {f for f in index if topic_matches(f, topic)} <= candidates


def test_clear_empties_the_index() -> None:
    index = SubscriptionIndex()
    index["vehicles/V1/commands/+"] = []
    index["#"] = []
    index.clear()
    assert index.candidates("vehicles/V1/commands/x") == []
