"""Which apps may act on which vehicles, with a short-lived cache of positive answers.

A link (``fleetgate vehicles link``) takes effect at once for a pair not seen yet and within
``ttl_s`` for a pair asked about recently; a denial is never cached, so a freshly linked
app is not turned away. The apps linked to a vehicle (whom its shadow documents go to) are
cached for ``ttl_s`` too: a new link gets documents within that time.
"""

from __future__ import annotations

from processors.ports import Clock, VehicleDirectory


class LinkCache:
    def __init__(self, *, directory: VehicleDirectory, clock: Clock, ttl_s: float) -> None:
        self._directory = directory
        self._clock = clock
        self._ttl_s = ttl_s
        self._linked: dict[tuple[str, str], float] = {}
        self._apps: dict[str, tuple[float, frozenset[str] | None]] = {}

    async def is_linked(self, *, app_id: str, vin: str) -> bool:
        key = (app_id, vin)
        now = self._clock.monotonic()
        until = self._linked.get(key)
        if until is not None and now < until:
            return True
        linked = await self._directory.is_linked(app_id=app_id, vin=vin)
        if linked and self._ttl_s > 0:
            if len(self._linked) > 100_000:
                self._linked = {k: t for k, t in self._linked.items() if t > now}
            self._linked[key] = now + self._ttl_s
        else:
            self._linked.pop(key, None)
        return linked

    async def apps_of(self, *, vin: str) -> frozenset[str] | None:
        """The apps linked to ``vin`` (None: an unknown vehicle), read at most every ``ttl_s``."""
        now = self._clock.monotonic()
        cached = self._apps.get(vin)
        if cached is not None and now < cached[0]:
            return cached[1]
        apps = await self._directory.apps_of(vin=vin)
        if self._ttl_s > 0:
            if len(self._apps) > 100_000:
                self._apps = {k: v for k, v in self._apps.items() if v[0] > now}
            self._apps[vin] = (now + self._ttl_s, apps)
        return apps
