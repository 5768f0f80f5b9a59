"""schemas.topics: MQTT filter rules (topic_matches, validate_filter, shared_subscription)."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from schemas.topics import (
    TopicError,
    shared_subscription,
    topic_matches,
    uplink_filters,
    validate_filter,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("filter_", "topic", "expected"),
    [
        ("sport/tennis/player1/#", "sport/tennis/player1", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
        ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
        ("sport/#", "sport", True),
        ("#", "sport/tennis", True),
        ("#", "/", True),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/+", "sport", False),
        ("sport/+", "sport/", True),
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("+", "finance", True),
        ("a/b", "a/b", True),
        ("a/b", "a/B", False),
        ("a/b", "a/b/", False),
        ("#", "$SYS/uptime", False),
        ("+/monitor/Clients", "$SYS/monitor/Clients", False),
        ("$SYS/#", "$SYS/monitor/Clients", True),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
        ("vehicles/+/telemetry", "vehicles/V/telemetry", True),
        ("vehicles/+/telemetry", "vehicles/V/telemetry/x", False),
        ("$share/gw/vehicles/+/telemetry", "vehicles/V/telemetry", True),
        ("$share/gw/#", "$SYS/x", False),
        ("a/+", "a/+", False),
        ("a/#", "a/#", False),
    ],
)
def test_topic_matches(filter_: str, topic: str, expected: bool) -> None:
    assert topic_matches(filter_, topic) is expected


def _reference(filter_: str, topic: str) -> bool:
    """A slow regex model of MQTT matching."""
    if topic.startswith("$") and filter_[:1] in "+#":
        return False
    parts: list[str] = []
    levels = filter_.split("/")
    for level in levels:
        if level == "#":
            return re.fullmatch("/".join(parts) + ("(/.*)?" if parts else ".*"), topic) is not None
        parts.append("[^/]*" if level == "+" else re.escape(level))
    return re.fullmatch("/".join(parts), topic) is not None


filter_levels = st.lists(st.sampled_from(["a", "b", "", "+", "$x"]), min_size=1, max_size=4)
topic_levels = st.lists(st.sampled_from(["a", "b", "", "$x"]), min_size=1, max_size=5)


@given(levels=filter_levels, hash_end=st.booleans(), topic=topic_levels)
def test_topic_matches_agrees_with_reference(
    levels: list[str], hash_end: bool, topic: list[str]
) -> None:
    filter_ = "/".join([*levels, "#"] if hash_end else levels)
    text = "/".join(topic)
    assume(filter_ != "" and text != "")  # neither is valid MQTT
    assert topic_matches(validate_filter(filter_), text) is _reference(filter_, text)


@pytest.mark.parametrize(
    "filter_",
    [
        "a/#/b",
        "a#",
        "a/b#",
        "a+",
        "a/+b",
        "+a/b",
        "",
        "a/\0",
        "$share/g",
        "$share//a",
        "$share/g+/a",
    ],
)
def test_validate_filter_rejects(filter_: str) -> None:
    with pytest.raises(TopicError):
        validate_filter(filter_)


@pytest.mark.parametrize(
    "filter_", ["#", "+", "a/+/b", "a/#", "/", "+/+/#", "$share/g/a/#", *uplink_filters()]
)
def test_validate_filter_accepts(filter_: str) -> None:
    assert validate_filter(filter_) == filter_


def test_shared_subscription() -> None:
    assert shared_subscription("vehicles/+/telemetry", "gw") == "$share/gw/vehicles/+/telemetry"
    with pytest.raises(TopicError, match="share group"):
        shared_subscription("a/b", "g/h")
    with pytest.raises(TopicError, match="share group"):
        shared_subscription("a/b", "")
    with pytest.raises(TopicError):
        shared_subscription("a/#/b", "g")
    with pytest.raises(TopicError, match="already"):
        shared_subscription("$share/g/a", "g")
