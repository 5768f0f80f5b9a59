"""fleetgate.kafka_fetch: a fetch to a broker waits until the records it brought are consumed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from fleetgate.kafka_fetch import eager_fetches

pytestmark = pytest.mark.unit

A, B, C = (TopicPartition("t", n) for n in range(3))


@dataclass
class _State:
    paused: bool = False


@dataclass
class _Assignment:
    tps: set[TopicPartition]
    paused: set[TopicPartition] = field(default_factory=set)

    def state_value(self, tp: TopicPartition) -> _State:
        return _State(paused=tp in self.paused)


class _Fetcher:
    """What aiokafka's Fetcher routine uses: a plan per node and the records not consumed."""

    def __init__(self, records: dict[TopicPartition, object]) -> None:
        self._records = records

    def _select_read_replica(self, tp: TopicPartition) -> int:
        return 2 if tp is C else 1

    def _get_actions_per_node(self, assignment: Any) -> Any:
        return [(1, "fetch@1"), (2, "fetch@2")], {}, None, False, []


def test_a_broker_with_unconsumed_records_is_not_polled_without_them() -> None:
    fetcher = _Fetcher({A: object()})
    eager_fetches(fetcher)
    requests, *_ = fetcher._get_actions_per_node(_Assignment({A, B, C}))
    assert requests == [(2, "fetch@2")]  # broker 1 waits until A is consumed


def test_paused_or_foreign_partitions_hold_nothing_back() -> None:
    fetcher = _Fetcher({A: object(), TopicPartition("other", 0): object()})
    eager_fetches(fetcher)
    requests, *_ = fetcher._get_actions_per_node(_Assignment({A, B, C}, paused={A}))
    assert requests == [(1, "fetch@1"), (2, "fetch@2")]


def test_nothing_pending_changes_nothing() -> None:
    fetcher = _Fetcher({})
    eager_fetches(fetcher)
    assert fetcher._get_actions_per_node(_Assignment({A}))[0] == [(1, "fetch@1"), (2, "fetch@2")]


def test_an_unknown_aiokafka_is_refused() -> None:
    with pytest.raises(RuntimeError, match="unsupported version"):
        eager_fetches(object())
