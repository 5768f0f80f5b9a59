"""The command state machine (a table) and the pure decisions around it."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.commands.logic import (
    TRANSITIONS,
    Command,
    CommandEvent,
    Delivery,
    Duplicate,
    Ignored,
    IllegalTransition,
    Rejection,
    Staged,
    admit,
    apply_result,
    deadline,
    on_connect,
    on_deadline,
    on_duplicate,
    plan_delivery,
    transition,
)
from schemas.commands import CommandRequest, CommandResultStatus, CommandState
from schemas.ids import make_vin

pytestmark = pytest.mark.unit

VIN = make_vin(3)
S = CommandState
E = CommandEvent
states = st.sampled_from([None, *CommandState])
events = st.sampled_from(list(CommandEvent))


def request(ttl_s: int = 60, vin: str = VIN) -> CommandRequest:
    return CommandRequest(command_id=str(uuid.uuid4()), vin=vin, name="doors.lock", ttl_s=ttl_s)


def accepted(now: int = 1_000, ttl_s: int = 60) -> Command:
    result = admit(request(ttl_s), app_id="app1", vehicle_known=True, linked=True, now=now)
    assert isinstance(result, Command)
    return result


@given(states, events)
def test_the_table_is_the_only_way(state: CommandState | None, event: CommandEvent) -> None:
    if (state, event) in TRANSITIONS:
        assert transition(state, event) is TRANSITIONS[(state, event)]
    else:
        with pytest.raises(IllegalTransition, match="illegal command transition"):
            transition(state, event)


@given(st.lists(events, max_size=12))
def test_final_states_never_change(sequence: list[CommandEvent]) -> None:
    state: CommandState | None = None
    for event in sequence:
        try:
            after = transition(state, event)
        except IllegalTransition:
            continue
        assert state is None or not state.is_final
        state = after
    if state is not None and state.is_final:
        assert all((state, e) not in TRANSITIONS for e in CommandEvent)


def test_the_documented_lifecycle() -> None:
    assert transition(None, E.ACCEPT) is S.ACCEPTED
    assert transition(S.ACCEPTED, E.DELIVER) is S.DELIVERED
    assert transition(S.DELIVERED, E.SUCCEED) is S.SUCCEEDED
    assert transition(S.DELIVERED, E.FAIL) is S.FAILED
    assert transition(S.ACCEPTED, E.EXPIRE) is S.EXPIRED
    assert transition(S.DELIVERED, E.TIME_OUT) is S.TIMED_OUT
    assert transition(None, E.REJECT) is S.REJECTED
    with pytest.raises(IllegalTransition):
        transition(S.DELIVERED, E.EXPIRE)  # delivered commands time out, never expire
    with pytest.raises(IllegalTransition):
        transition(S.SUCCEEDED, E.DELIVER)


def test_admit_rejects_unknown_and_unlinked() -> None:
    req = request()
    unknown = admit(req, app_id="a", vehicle_known=False, linked=False, now=5)
    assert isinstance(unknown, Rejection)
    assert "unknown vehicle" in unknown.reason
    unlinked = admit(req, app_id="a", vehicle_known=True, linked=False, now=5)
    assert isinstance(unlinked, Rejection)
    assert "not linked" in unlinked.reason
    ok = admit(req, app_id="a", vehicle_known=True, linked=True, now=5)
    assert isinstance(ok, Command)
    assert ok.status is S.ACCEPTED
    assert ok.expires_at == 5 + req.ttl_s * 1000
    assert ok.downlink().expires_at == ok.expires_at


def test_duplicates() -> None:
    cmd = accepted()
    same = on_duplicate(cmd, app_id="app1", vin=VIN, now=7)
    assert same == Duplicate(cmd.status_message(now=7), resume=True)
    done = cmd.apply(E.DELIVER, now=2).apply(E.SUCCEED, now=3, detail="ok")
    again = on_duplicate(done, app_id="app1", vin=VIN, now=9)
    assert again.status.status is S.SUCCEEDED
    assert not again.resume
    thief = on_duplicate(done, app_id="other", vin=VIN, now=9)
    assert thief.status.status is S.REJECTED
    assert not thief.resume


@given(st.integers(0, 10**6), st.booleans())
def test_plan_delivery(now: int, online: bool) -> None:
    cmd = accepted(now=1_000, ttl_s=60)
    plan = plan_delivery(cmd, online=online, now=now)
    if now >= cmd.expires_at:
        assert plan is Delivery.EXPIRE
    else:
        assert plan is (Delivery.DELIVER if online else Delivery.STAGE)


@given(
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 200)), max_size=20),
    st.integers(0, 200),
)
def test_on_connect_delivers_in_order_and_never_expired(
    rows: list[tuple[int, int]], now: int
) -> None:
    staged = [Staged(f"c{i:03}", at, exp) for i, (at, exp) in enumerate(rows)]
    deliver, expire = on_connect(staged, now=now)
    assert sorted(deliver + expire, key=lambda s: s.command_id) == staged
    assert all(now < s.expires_at for s in deliver)
    assert all(now >= s.expires_at for s in expire)
    assert [s.staged_at for s in deliver] == sorted(s.staged_at for s in deliver)


def test_results() -> None:
    cmd = accepted().apply(E.DELIVER, now=2)
    steps = apply_result(cmd, vin=VIN, status=CommandResultStatus.SUCCEEDED, detail="ok", now=3)
    assert isinstance(steps, list)
    assert [s.status for s in steps] == [S.SUCCEEDED]
    assert steps[0].detail == "ok"
    # a result for a command not yet marked delivered proves the delivery
    early = apply_result(accepted(), vin=VIN, status=CommandResultStatus.FAILED, detail=None, now=3)
    assert isinstance(early, list)
    assert [s.status for s in early] == [S.DELIVERED, S.FAILED]
    refused = apply_result(cmd, vin=VIN, status=CommandResultStatus.REJECTED, detail="no", now=3)
    assert isinstance(refused, list)
    assert refused[-1].status is S.REJECTED
    late = cmd.apply(E.TIME_OUT, now=9)
    ignored = apply_result(late, vin=VIN, status=CommandResultStatus.SUCCEEDED, detail=None, now=9)
    assert isinstance(ignored, Ignored)
    foreign = apply_result(
        cmd, vin=make_vin(4), status=CommandResultStatus.SUCCEEDED, detail=None, now=3
    )
    assert isinstance(foreign, Ignored)


def test_deadlines() -> None:
    cmd = accepted(now=0, ttl_s=10)
    assert deadline(cmd, result_grace_ms=500) == 10_000
    assert on_deadline(cmd, now=9_999, result_grace_ms=500) is None
    expired = on_deadline(cmd, now=10_000, result_grace_ms=500)
    assert expired is not None
    assert expired.status is S.EXPIRED
    sent = cmd.apply(E.DELIVER, now=1)
    assert deadline(sent, result_grace_ms=500) == 10_500
    assert on_deadline(sent, now=10_499, result_grace_ms=500) is None
    timed_out = on_deadline(sent, now=10_500, result_grace_ms=500)
    assert timed_out is not None
    assert timed_out.status is S.TIMED_OUT
    assert deadline(timed_out, result_grace_ms=500) is None
    assert on_deadline(timed_out, now=10**9, result_grace_ms=500) is None
