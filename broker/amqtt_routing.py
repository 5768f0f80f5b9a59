"""Routing for the embedded broker that does not look at every subscription per message.

Stock amqtt 0.12.1 matches each published message against every topic filter of every
client: with 10,000 vehicles subscribed to their own five downlink filters, one message costs
50,000 matches (~50 ms), so the broker would manage ~20 messages per second. Vehicles and
apps may only subscribe filters that start with two literal levels (``vehicles/<VIN>/...``,
``apps/<id>/...``), so :class:`SubscriptionIndex` keeps filters by those two levels and a
message is matched against its own two levels' filters plus the few that start with a
wildcard (services' ``vehicles/+/telemetry``, ``#``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from amqtt.contexts import Action
from amqtt.mqtt.constants import QOS_1, QOS_2
from amqtt.session import OutgoingApplicationMessage, Session

Subscribers = list[tuple[Session, int]]


def literal_head(text: str) -> str | None:
    """The first two levels of a filter or topic if both are literal, else None."""
    first, sep, rest = text.partition("/")
    if not sep:
        return None
    second = rest.partition("/")[0]
    if first in ("+", "#") or second in ("+", "#"):
        return None
    return f"{first}/{second}"


class SubscriptionIndex(dict[str, Subscribers]):
    """amqtt's ``{topic filter: [(session, qos)]}`` that also indexes its keys by head."""

    def __init__(self) -> None:
        super().__init__()
        self._by_head: dict[str, set[str]] = {}
        self._wild: set[str] = set()

    def _index(self, key: str) -> None:
        head = literal_head(key)
        if head is None:
            self._wild.add(key)
        else:
            self._by_head.setdefault(head, set()).add(key)

    def _unindex(self, key: str) -> None:
        head = literal_head(key)
        if head is None:
            self._wild.discard(key)
            return
        keys = self._by_head.get(head)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_head[head]

    def __setitem__(self, key: str, value: Subscribers) -> None:
        if key not in self:
            self._index(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self._unindex(key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self:
            self._unindex(key)
        return super().pop(key, *default)

    def setdefault(self, key: str, default: Subscribers | None = None) -> Subscribers:
        if key not in self:
            self[key] = default if default is not None else []
        return self[key]

    def clear(self) -> None:
        super().clear()
        self._by_head.clear()
        self._wild.clear()

    def candidates(self, topic: str) -> list[str]:
        """The filters that may match ``topic`` (a snapshot: routing awaits meanwhile)."""
        head = literal_head(topic)
        own: Iterable[str] = self._by_head.get(head, ()) if head is not None else ()
        return [*own, *self._wild]


class IndexedBroadcastMixin:
    """``Broker._run_broadcast`` of amqtt 0.12.1, iterating :meth:`candidates` only.

    Copied from amqtt; the changes are marked ``[fg]``.
    """

    _broadcast_queue: asyncio.Queue[dict[str, Any]]
    _subscriptions: SubscriptionIndex

    if TYPE_CHECKING:  # provided by amqtt's Broker, which follows this mixin in the MRO

        def _matches(self, topic: str, a_filter: str) -> bool: ...

        async def _topic_filtering(self, session: Session, topic: str, action: Action) -> bool: ...

        async def _retain_broadcast_message(
            self, broadcast: dict[str, Any], qos: int, target_session: Session
        ) -> None: ...

        def _get_handler(self, session: Session) -> Any: ...

    async def _run_broadcast(
        self, running_tasks: deque[asyncio.Task[OutgoingApplicationMessage]]
    ) -> None:
        broadcast = await self._broadcast_queue.get()
        topic = broadcast["topic"]
        for k_filter in self._subscriptions.candidates(topic):  # [fg] was: every filter
            subscriptions = self._subscriptions.get(k_filter)
            if not subscriptions or not self._matches(topic, k_filter):
                continue
            for target_session, sub_qos in list(subscriptions):  # [fg] a copy: we await
                qos = broadcast.get("qos", sub_qos)
                if not await self._topic_filtering(
                    target_session, topic=topic, action=Action.RECEIVE
                ):
                    continue
                connected = target_session.transitions.state == "connected"
                if (
                    not connected
                    and not target_session.clean_session
                    and qos in (QOS_1, QOS_2)
                    and not target_session.is_anonymous
                ):
                    await self._retain_broadcast_message(broadcast, qos, target_session)
                    continue
                if not connected:
                    continue
                handler = self._get_handler(target_session)
                if handler:
                    task = asyncio.ensure_future(
                        handler.mqtt_publish(topic, broadcast["data"], qos, retain=False)
                    )
                    running_tasks.append(task)
