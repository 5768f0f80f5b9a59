"""The link cache: positive links and a vehicle's apps are read at most every ``ttl_s``."""

from __future__ import annotations

import pytest

from processors.links import LinkCache

from .fakes import FakeClock, MemoryDirectory

pytestmark = pytest.mark.unit


class CountingDirectory(MemoryDirectory):
    reads = 0

    async def apps_of(self, *, vin: str) -> frozenset[str] | None:
        self.reads += 1
        return await super().apps_of(vin=vin)


async def test_a_vehicles_apps_are_cached_for_ttl() -> None:
    directory, clock = CountingDirectory(), FakeClock()
    directory.add("V1", "app-a")
    links = LinkCache(directory=directory, clock=clock, ttl_s=5)
    assert await links.apps_of(vin="V1") == frozenset({"app-a"})
    directory.add("V1", "app-b")
    assert await links.apps_of(vin="V1") == frozenset({"app-a"})  # cached
    assert directory.reads == 1
    clock.advance(5.1)
    assert await links.apps_of(vin="V1") == frozenset({"app-a", "app-b"})
    assert await links.apps_of(vin="unknown") is None
    assert directory.reads == 3


async def test_no_ttl_reads_every_time() -> None:
    directory = CountingDirectory()
    links = LinkCache(directory=directory, clock=FakeClock(), ttl_s=0)
    for _ in range(3):
        assert await links.apps_of(vin="V1") is None
    assert directory.reads == 3
