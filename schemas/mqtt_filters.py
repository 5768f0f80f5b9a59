"""MQTT topic-filter rules (MQTT 3.1.1 §4.7, shared subscriptions of MQTT 5). Pure.

Import from :mod:`schemas.topics`.
"""

from __future__ import annotations

from typing import Final

from schemas.topic_kinds import TopicError

MAX_FILTER_LENGTH: Final = 65535

_SHARE: Final = "$share/"


def shared_subscription(filter: str, group: str) -> str:
    """``$share/<group>/<filter>`` (MQTT 5 shared subscription; Mosquitto has it for 3.1.1 too)."""
    if not group or any(c in group for c in "/+#\0"):
        raise TopicError(f"share group {group!r} must be non-empty without / + # or NUL")
    if filter.startswith(_SHARE):
        raise TopicError(f"filter {filter!r} is already a shared subscription")
    return f"{_SHARE}{group}/{validate_filter(filter)}"


def _split_share(filter: str) -> str:
    """The filter part of ``$share/<group>/<filter>`` (``filter`` itself if not shared)."""
    if not filter.startswith(_SHARE):
        return filter
    _, group, rest = ([*filter.split("/", 2), "", ""])[:3]
    if not group or "+" in group or "#" in group:
        raise TopicError(f"filter {filter!r}: share group {group!r} is not valid")
    if not rest:
        raise TopicError(f"filter {filter!r}: a shared subscription needs a filter after the group")
    return rest


def validate_filter(filter: str) -> str:
    """Return ``filter`` if it is a well-formed MQTT topic filter, else raise TopicError.

    ``#`` must be a whole level and the last; ``+`` a whole level; no NUL; 1..65535 bytes.
    ``$share/<group>/<filter>`` is accepted and its filter part checked.
    """
    if not isinstance(filter, str) or not filter:
        raise TopicError("a topic filter must be a non-empty string")
    if len(filter.encode("utf-8")) > MAX_FILTER_LENGTH:
        raise TopicError(f"filter is longer than {MAX_FILTER_LENGTH} bytes")
    if "\0" in filter:
        raise TopicError(f"filter {filter!r} contains NUL")
    levels = _split_share(filter).split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != last):
            raise TopicError(f"filter {filter!r}: '#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise TopicError(f"filter {filter!r}: '+' must be a whole level")
    return filter


def topic_matches(filter: str, topic: str) -> bool:
    """Whether MQTT ``topic`` matches ``filter`` (MQTT 3.1.1 §4.7).

    ``+`` matches one level (possibly empty), ``#`` the parent level and every level below;
    a topic starting with ``$`` is not matched by a filter starting with ``+`` or ``#``.
    A shared-subscription filter (``$share/<group>/…``) matches like its filter part.
    The filter is assumed valid (see :func:`validate_filter`); a topic with wildcards never
    matches.
    """
    filter = _split_share(filter)
    if "+" in topic or "#" in topic or not topic:
        return False
    if topic[0] == "$" and filter[:1] in ("+", "#"):
        return False
    if "+" not in filter and "#" not in filter:
        return filter == topic
    f_levels = filter.split("/")
    t_levels = topic.split("/")
    n_topic = len(t_levels)
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= n_topic:
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == n_topic
