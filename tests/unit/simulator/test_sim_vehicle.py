"""A vehicle's decisions: connection life cycle, backoff, commands, desired state, payloads."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.commands import CommandResult, CommandResultStatus
from schemas.connectivity import Connectivity
from schemas.shadow import ShadowReported
from simulator.drive import MODELS, Phase
from simulator.vehicle import (
    TRANSITIONS,
    CommandPolicy,
    IllegalTransition,
    Link,
    LinkEvent,
    RetryPolicy,
    after_failure,
    apply_desired,
    backoff_delay,
    birth_payload,
    changed_part,
    decide_command,
    drive_state,
    goodbye_payload,
    initial_reported,
    merge_state,
    reported_payload,
    result_payload,
    tick_plan,
    transition,
    will_payload,
)

pytestmark = pytest.mark.unit

NOW = 1_700_000_000_000
REPORTED = initial_reported(3, MODELS[0], Phase.PARKED)
NEVER_FAIL = CommandPolicy(latency_ms=(10, 20), failure_rate=0.0)


def command(name: str = "doors.unlock", *, expires_in: int = 60_000, **params: Any) -> bytes:
    return json.dumps({"name": name, "params": params, "expires_at": NOW + expires_in}).encode()


# --- life cycle ------------------------------------------------------------------------------


def test_a_normal_life() -> None:
    state = Link.IDLE
    for event, expected in [
        (LinkEvent.CONNECT, Link.CONNECTING),
        (LinkEvent.FAIL, Link.BACKOFF),
        (LinkEvent.CONNECT, Link.CONNECTING),
        (LinkEvent.ONLINE, Link.ONLINE),
        (LinkEvent.DROP, Link.OFFLINE),
        (LinkEvent.CONNECT, Link.CONNECTING),
        (LinkEvent.ONLINE, Link.ONLINE),
        (LinkEvent.LOST, Link.BACKOFF),
        (LinkEvent.STOP, Link.STOPPED),
    ]:
        state = transition(state, event)
        assert state is expected


@pytest.mark.parametrize("state", list(Link))
@pytest.mark.parametrize("event", list(LinkEvent))
def test_every_pair_is_either_in_the_table_or_illegal(state: Link, event: LinkEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert transition(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition, match=event.value):
            transition(state, event)


def test_terminal_states_have_no_way_out() -> None:
    for terminal in (Link.GAVE_UP, Link.STOPPED):
        assert not [key for key in TRANSITIONS if key[0] is terminal]


@settings(deadline=None)
@given(attempt=st.integers(1, 100), roll=st.floats(0, 1))
def test_backoff_is_exponential_capped_and_jittered(attempt: int, roll: float) -> None:
    policy = RetryPolicy(max_attempts=0, base_s=0.5, cap_s=30)
    ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
    delay = backoff_delay(attempt, policy=policy, roll=roll)
    assert ceiling / 2 <= delay <= ceiling
    assert backoff_delay(attempt, policy=policy, roll=0) <= backoff_delay(
        attempt + 1, policy=policy, roll=0
    )


def test_giving_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert after_failure(2, policy=policy, roll=0.5)[0] is LinkEvent.FAIL
    assert after_failure(3, policy=policy, roll=0.5) == (LinkEvent.GIVE_UP, 0.0)
    assert after_failure(10**6, policy=RetryPolicy(max_attempts=0), roll=0)[0] is LinkEvent.FAIL
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(0, policy=policy, roll=0)


@settings(deadline=None)
@given(rate=st.floats(0.001, 1000))
def test_tick_plan_gives_each_vehicle_the_rate(rate: float) -> None:
    tick, buckets = tick_plan(rate)
    assert 0 < tick <= 0.1
    assert buckets >= 1
    period = tick * buckets
    assert abs(period - 1 / rate) <= max(tick / 2, 1e-9) + 1e-12


# --- payloads --------------------------------------------------------------------------------


def test_connection_payloads_match_the_contract() -> None:
    assert Connectivity.model_validate_json(birth_payload(NOW)) == Connectivity(online=True, ts=NOW)
    assert will_payload() == b'{"online":false}'
    assert Connectivity.model_validate_json(goodbye_payload(NOW)).online is False


def test_reported_and_result_payloads_validate() -> None:
    report = ShadowReported.model_validate_json(reported_payload(REPORTED, 4))
    assert report.version == 4
    assert report.state["doors"] == {"locked": True}
    result = CommandResult.model_validate_json(result_payload(CommandResultStatus.FAILED, "x"))
    assert result.status is CommandResultStatus.FAILED


def test_drive_state_reports_a_stop_as_driving() -> None:
    assert drive_state(Phase.STOPPED) == "driving"
    assert drive_state(Phase.CHARGING) == "charging"


# --- shadow ----------------------------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=3))
json_tree = st.recursive(
    json_leaf, lambda children: st.dictionaries(st.sampled_from("abcd"), children, max_size=3)
)
objects = st.dictionaries(st.sampled_from("abcde"), json_tree, max_size=4)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


@settings(deadline=None)
@given(base=objects, patch=objects)
def test_reporting_only_the_changes_gives_the_same_state(
    base: dict[str, Any], patch: dict[str, Any]
) -> None:
    base = _without_nulls(base)
    merged = merge_state(base, patch)
    assert merge_state(base, changed_part(base, patch)) == merged
    assert changed_part(merged, patch) == {}
    assert None not in merged.values()


def test_merge_rules() -> None:
    base: dict[str, Any] = {"a": {"x": 1, "y": 2}, "b": 1, "c": [1]}
    assert merge_state(base, {"a": {"x": None, "z": 3}, "b": None, "c": [2]}) == {
        "a": {"y": 2, "z": 3},
        "c": [2],
    }
    assert base == {"a": {"x": 1, "y": 2}, "b": 1, "c": [1]}


def test_desired_state_applies_newer_versions_only() -> None:
    payload = json.dumps({"state": {"climate": {"on": True}}, "version": 7}).encode()
    outcome = apply_desired(REPORTED, payload, last_version=None)
    assert outcome.applied
    assert outcome.version == 7
    assert outcome.changes == {"climate": {"on": True}}
    assert outcome.reported["climate"] == {"on": True, "target_c": 21.0}
    again = apply_desired(outcome.reported, payload, last_version=7)
    assert not again.applied
    assert again.reason == "stale"
    assert again.changes == {}
    bad = apply_desired(REPORTED, b'{"state": {}}', last_version=None)
    assert not bad.applied
    assert bad.reason.startswith("invalid")


# --- commands --------------------------------------------------------------------------------


def decide(payload: bytes, policy: CommandPolicy = NEVER_FAIL, seed: int = 1) -> Any:
    return decide_command(
        payload, now_ms=NOW, reported=REPORTED, policy=policy, rng=random.Random(seed)
    )


def test_a_command_succeeds_after_its_latency_and_reports_its_effect() -> None:
    decision = decide(command("doors.unlock"))
    assert decision.status is CommandResultStatus.SUCCEEDED
    assert 0.010 <= decision.delay_s <= 0.020
    assert decision.changes == {"doors": {"locked": False}}
    assert decide(command("doors.lock")).changes == {}  # already locked: nothing to report
    assert decide(command("horn")).status is CommandResultStatus.SUCCEEDED


def test_expired_commands_are_rejected_or_ignored() -> None:
    decision = decide(command(expires_in=0))
    assert decision.status is CommandResultStatus.REJECTED
    assert decision.detail == "expired"
    assert decision.expired
    assert decision.delay_s == 0
    ignored = decide(command(expires_in=-5), CommandPolicy(expired="ignore"))
    assert ignored.status is None
    assert ignored.expired


def test_invalid_commands_and_params_are_rejected() -> None:
    assert decide(b"{").status is CommandResultStatus.REJECTED
    assert decide(b'{"name": "x"}').detail.startswith("invalid command")
    bad = decide(command("charging.set_limit", limit_pct=10))
    assert bad.status is CommandResultStatus.REJECTED
    assert "limit_pct" in bad.detail
    good = decide(command("charging.set_limit", limit_pct=90))
    assert good.changes == {"charging": {"limit_pct": 90}}
    assert decide(command("climate.start", target_c=40)).status is CommandResultStatus.REJECTED
    assert decide(command("climate.start", target_c=22)).changes == {
        "climate": {"on": True, "target_c": 22.0}
    }


def test_params_force_an_outcome() -> None:
    assert decide(command(simulate="fail")).status is CommandResultStatus.FAILED
    assert decide(command(simulate="reject")).status is CommandResultStatus.REJECTED
    assert decide(command(simulate="ignore")).status is None
    assert decide(command(latency_ms=1234)).delay_s == 1.234


@settings(deadline=None)
@given(seed=st.integers(0, 2**32))
def test_failure_rate_one_always_fails(seed: int) -> None:
    policy = CommandPolicy(failure_rate=1.0)
    assert decide(command(), policy, seed).status is CommandResultStatus.FAILED
    assert decide(command(), NEVER_FAIL, seed).status is CommandResultStatus.SUCCEEDED
