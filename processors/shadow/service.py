"""The shadow processor's inputs: reported and desired state, connectivity and telemetry.

Each input runs on the vehicle's lane (:class:`processors.keyed.KeyedQueue`), merges into the
in-memory shadow with a pure function of :mod:`processors.shadow.logic`, and is handed with
its acknowledgement to the coalesced writes of :class:`processors.shadow.cache.ShadowCache`:
a record that changed the shadow is acknowledged only once a write holding it succeeded.
"""

from __future__ import annotations

import functools

from fleetgate.logs import get_logger
from processors.ports import Ack
from processors.records import Incoming, app_error, app_shadow, shadow_delta, vehicle_error
from processors.shadow.cache import ShadowCache
from processors.shadow.logic import (
    Applied,
    Refused,
    Shadow,
    apply_connectivity,
    apply_desired,
    apply_reported,
    delta,
    document,
)
from processors.telemetry.logic import reported_update
from schemas.connectivity import ConnectivityEvent
from schemas.shadow import AppShadowDesired, ShadowReported
from schemas.telemetry import Telemetry
from schemas.topics import MqttTopics

_log = get_logger(__name__)


class ShadowService(ShadowCache):
    """The shadow inputs: reported and desired state, connectivity, telemetry."""

    # -- inputs (called by the agent; each runs on the vehicle's lane) ------------------------

    async def on_reported(
        self, *, meta: Incoming, partition: int, update: ShadowReported, ack: Ack
    ) -> None:
        job = functools.partial(self._reported, meta, partition, update, ack)
        await self.queue.submit(meta.vin, job, on_error=ack)

    async def on_desired(
        self, *, meta: Incoming, partition: int, update: AppShadowDesired, ack: Ack
    ) -> None:
        job = functools.partial(self._desired, meta, partition, update, ack)
        await self.queue.submit(meta.vin, job, on_error=ack)

    async def on_connectivity(
        self, *, meta: Incoming, partition: int, event: ConnectivityEvent, ack: Ack
    ) -> None:
        job = functools.partial(self._connectivity, meta, partition, event, ack)
        await self.queue.submit(meta.vin, job, on_error=ack)

    async def on_telemetry(
        self, *, meta: Incoming, partition: int, message: Telemetry, ack: Ack
    ) -> None:
        job = functools.partial(self._telemetry, meta, partition, message, ack)
        await self.queue.submit(meta.vin, job, on_error=ack)

    async def _reported(
        self, meta: Incoming, partition: int, update: ShadowReported, ack: Ack
    ) -> None:
        entry = await self._entry(meta.vin, partition)
        if entry is None:
            return
        self._metrics.shadow_reported.inc()
        state, ts = update.state, meta.received_at
        result = apply_reported(entry.shadow, state, ts)
        if isinstance(result, Refused):
            topic = str(meta.source) if meta.source else MqttTopics.shadow_reported(meta.vin)
            await self._send(vehicle_error(vin=meta.vin, topic=topic, reason=result.reason, ts=ts))
            ack()
            return
        self._keep(entry, result, ack, lambda s: _shadow_of(apply_reported(s, state, ts), s))

    async def _telemetry(
        self, meta: Incoming, partition: int, message: Telemetry, ack: Ack
    ) -> None:
        """Signals into ``reported.telemetry``, each stamped with the message's own ``ts``."""
        entry = await self._entry(meta.vin, partition)
        if entry is None:
            return
        self._metrics.shadow_telemetry.inc()
        update, ts = reported_update(message), message.ts
        result = apply_reported(entry.shadow, update, ts)
        if isinstance(result, Refused):
            reason = f"telemetry not kept in the shadow: {result.reason}"
            topic = MqttTopics.telemetry(meta.vin)
            notice = vehicle_error(vin=meta.vin, topic=topic, reason=reason, ts=meta.received_at)
            await self._send(notice)
            ack()
            return

        def reapply(shadow: Shadow) -> Shadow:
            return _shadow_of(apply_reported(shadow, update, ts), shadow)

        self._keep(entry, result, ack, reapply, telemetry=True)

    async def _desired(
        self, meta: Incoming, partition: int, update: AppShadowDesired, ack: Ack
    ) -> None:
        vin, app_id, ts = meta.vin, meta.app_id, meta.received_at
        if app_id is None:
            _log.warning("desired state without an app sender; skipped", vin=vin)
            ack()
            return
        topic = str(meta.source) if meta.source else MqttTopics.app_shadow_desired(app_id, vin)
        linked = await self._retry.value(
            "link check", lambda: self._links.is_linked(app_id=app_id, vin=vin), vin
        )
        if linked is None:
            return
        if not linked:
            reason = f"app {app_id} is not linked to vehicle {vin}"
            await self._send(app_error(app_id=app_id, vin=vin, topic=topic, reason=reason, ts=ts))
            ack()
            return
        entry = await self._entry(vin, partition)
        if entry is None:
            return
        state, expected = update.state, update.version
        result = apply_desired(entry.shadow, state, ts, expected_version=expected)
        if isinstance(result, Refused):
            await self._send(
                app_error(app_id=app_id, vin=vin, topic=topic, reason=result.reason, ts=ts)
            )
            await self._send(app_shadow(app_id=app_id, document=document(entry.shadow)))
            ack()
            return
        self._keep(
            entry,
            result,
            ack,
            lambda s: _shadow_of(apply_desired(s, state, ts, expected_version=None), s),
        )
        if result.changed and entry.shadow.online is not False:
            await self._send_delta(entry.shadow)
        await self._send(app_shadow(app_id=app_id, document=document(entry.shadow)))

    async def _connectivity(
        self, meta: Incoming, partition: int, event: ConnectivityEvent, ack: Ack
    ) -> None:
        entry = await self._entry(meta.vin, partition)
        if entry is None:
            return
        online, ts = event.online, event.ts
        result = apply_connectivity(entry.shadow, online=online, ts=ts)
        self._keep(entry, result, ack, lambda s: apply_connectivity(s, online=online, ts=ts).shadow)
        if online:
            await self._send_delta(entry.shadow)

    async def _send_delta(self, shadow: Shadow) -> None:
        d = delta(shadow)
        if d:
            await self._send(shadow_delta(vin=shadow.vin, state=d, version=shadow.version))


def _shadow_of(result: Applied | Refused, fallback: Shadow) -> Shadow:
    return result.shadow if isinstance(result, Applied) else fallback
