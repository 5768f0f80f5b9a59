"""aiokafka's consumer without its fetch hold-back (pinned: aiokafka 0.14).

aiokafka keeps one fetch in flight per broker. When a fetch brings records of partition P,
it sends the next fetch at once *without* P (its records are not consumed yet), and that
fetch long-polls for up to ``fetch_max_wait_ms``. A record that reaches P meanwhile waits for
that poll to end, even though the application drained P a moment later: on a command path
with four Kafka hops that is up to four waits of ``fetch_max_wait_ms``, which is why the
wait had to be short (10 ms: ~100 empty fetches per second per consumer, CPU in Kafka and in
the client).

:func:`eager_fetches` holds the next fetch to a broker back until the records it brought
are consumed (milliseconds later), then fetches every partition: a new record on any of them
ends the poll at once, so a long ``fetch_max_wait_ms`` costs no latency. Paused partitions
(back-pressure) never hold the others back.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer


def eager_fetches(fetcher: Any) -> None:
    """Patch a started consumer's ``Fetcher`` (its routine reads the method on every turn)."""
    for name in ("_get_actions_per_node", "_records", "_select_read_replica"):
        if not hasattr(fetcher, name):
            raise RuntimeError(f"aiokafka Fetcher has no {name}: unsupported version")
    plan = fetcher._get_actions_per_node

    def actions(assignment: Any) -> Any:
        requests, resets, timeout, invalid, resumes = plan(assignment)
        if requests and fetcher._records:
            busy = {
                fetcher._select_read_replica(tp)
                for tp in list(fetcher._records)
                if tp in assignment.tps and not assignment.state_value(tp).paused
            }
            requests = [(node, request) for node, request in requests if node not in busy]
        return requests, resets, timeout, invalid, resumes

    fetcher._get_actions_per_node = actions


class EagerConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """:class:`aiokafka.AIOKafkaConsumer` with :func:`eager_fetches`."""

    async def start(self) -> None:
        await super().start()
        eager_fetches(self._fetcher)
