"""Small pure helpers shared by the processors' repositories (``repo_*.py``)."""

from __future__ import annotations

import calendar
from datetime import datetime

from processors.store.schema import check_keyspace


def to_ms(value: datetime | None) -> int | None:
    """A driver ``timestamp`` (naive UTC datetime) as epoch milliseconds."""
    if value is None:
        return None
    return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000


def ttl_until(*, until_ms: int, now_ms: int, minimum_s: int = 60) -> int:
    """A CQL TTL (seconds) that keeps a row until ``until_ms`` (at least ``minimum_s``)."""
    return max(minimum_s, -(-(until_ms - now_ms) // 1000))


class Queries:
    """Statement templates with ``ks.`` before each table, qualified with one keyspace.

    Fully qualified names (rather than a session bound to a keyspace, which Cassandra 5 warns
    about for prepared statements) let one session serve several keyspaces.
    """

    def __init__(self, keyspace: str) -> None:
        self.keyspace = check_keyspace(keyspace)
        self._done: dict[str, str] = {}

    def __call__(self, template: str) -> str:
        query = self._done.get(template)
        if query is None:
            query = self._done[template] = template.replace("ks.", self.keyspace + ".")
        return query
