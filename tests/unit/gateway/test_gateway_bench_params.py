"""fleetgate bench ingest: its parameters (the run itself is measured, not unit-tested)."""

from __future__ import annotations

import json

import pytest

from fleetgate.errors import UserError
from gateway.bench import DEFAULTS, _ints
from gateway.bench_sink import Tally

pytestmark = pytest.mark.unit


def test_defaults_and_overrides() -> None:
    params = _ints({"vehicles": "10", "bootstrap": "k:9092"})
    assert params["vehicles"] == 10
    assert params["messages"] == int(DEFAULTS["messages"])
    assert params["bootstrap"] == "k:9092"


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"vehicles": "x"}, "not an integer"),
        ({"messages": "0"}, "must be positive"),
        ({"colour": "red"}, "unknown ingest parameter"),
    ],
)
def test_bad_parameters_are_one_line(params: dict[str, str], words: str) -> None:
    with pytest.raises(UserError, match=words):
        _ints(params)


def test_tally_counts_distinct_messages_per_phase_and_latency_of_phase_2() -> None:
    tally = Tally()
    body = {"ts": 1, "seq": 3, "signals": {"phase": 2, "t": 100.0}}
    for _ in range(2):  # a duplicate counts once
        tally.add(b"VIN", json.dumps(body).encode(), 100.25)
    tally.add(b"VIN", json.dumps(body | {"signals": {"phase": 1, "t": 1.0}}).encode(), 2.0)
    status = json.loads(tally.status(final=True))
    assert (status["p0"], status["p1"], status["p2"]) == (0, 1, 1)
    assert (status["p1_last"], status["latencies"]) == (2.0, [250.0])
