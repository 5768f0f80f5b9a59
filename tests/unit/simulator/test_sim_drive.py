"""The drive profile: invariants over long random drives, and signals that match the schema."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.telemetry import Telemetry
from simulator.drive import (
    MODELS,
    PROFILES,
    TPMS_DTC,
    DriveState,
    Phase,
    advance,
    initial_state,
    make_route,
    model_of,
    signals,
    with_charge,
)
from simulator.vehicle import telemetry_payload

pytestmark = pytest.mark.unit


def _drive(number: int, seed: int, profile: str, steps: int, dt: float) -> list[DriveState]:
    rng = random.Random(seed)
    state = initial_state(number, rng)
    states = [state]
    for _ in range(steps):
        state = advance(state, model=model_of(number), profile=PROFILES[profile], dt=dt, rng=rng)
        states.append(state)
    return states


@settings(max_examples=30, deadline=None)
@given(
    number=st.integers(0, 10_000),
    seed=st.integers(0, 2**32),
    profile=st.sampled_from(sorted(PROFILES)),
    dt=st.sampled_from([0.1, 1.0, 4.0]),
)
def test_a_long_drive_stays_physical(number: int, seed: int, profile: str, dt: float) -> None:
    model = model_of(number)
    states = _drive(number, seed, profile, 300, dt)
    for before, after in itertools.pairwise(states):
        assert 0 <= after.speed_kmh <= model.max_kmh * 1.0001
        assert 0 <= after.level_pct <= 100
        assert after.odometer_km >= before.odometer_km
        assert after.odometer_km - before.odometer_km <= model.max_kmh * dt / 3600 + 1e-9
        assert 11.0 <= after.battery_v <= 14.6
        assert all(80 <= p <= 260 for p in after.tyres_kpa)
        assert abs(after.speed_kmh - before.speed_kmh) <= 14.4 * dt + 1e-9
        if after.phase in (Phase.PARKED, Phase.CHARGING):
            assert after.speed_kmh <= before.speed_kmh
        if after.phase is Phase.CHARGING and before.phase is Phase.CHARGING:
            assert after.level_pct >= before.level_pct
        if after.phase is Phase.DRIVING and before.phase is Phase.DRIVING:
            assert after.level_pct <= before.level_pct


@settings(max_examples=25, deadline=None)
@given(number=st.integers(0, 10_000), seed=st.integers(0, 2**32))
def test_signals_are_valid_telemetry(number: int, seed: int) -> None:
    route, model = make_route(number), model_of(number)
    for state in _drive(number, seed, "mixed", 200, 5.0)[::20]:
        values = signals(state, model=model, route=route)
        message = Telemetry.model_validate_json(telemetry_payload(1_700_000_000_000, 3, values))
        assert message.seq == 3
        assert ("soc_pct" in values) == (model.powertrain == "ev")
        assert ("fuel_pct" in values) == (model.powertrain == "ice")
        assert ("dtc" in values) == (state.dtc is not None)


def test_cars_actually_drive_and_park() -> None:
    phases = {s.phase for s in _drive(7, 1, "city", 3 * 360, 10.0)}
    assert {Phase.PARKED, Phase.DRIVING} <= phases
    odometer = _drive(7, 1, "highway", 2 * 360, 10.0)
    assert odometer[-1].odometer_km - odometer[0].odometer_km > 20


@settings(deadline=None)
@given(number=st.integers(0, 100_000), distance=st.floats(0, 10_000))
def test_route_positions_stay_near_the_city_and_move_smoothly(number: int, distance: float) -> None:
    route = make_route(number)
    lat, lon, heading = route.position(distance)
    assert abs(lat - route.lat) <= route.radius_km * 1.31 / 111.32 + 1e-9
    assert -90 < lat < 90
    assert -180 <= lon <= 180
    assert 0 <= heading < 360
    lat2, lon2, _ = route.position(distance + 0.01)  # 10 m further
    km = math.hypot((lat2 - lat) * 111.32, (lon2 - lon) * 111.32 * math.cos(math.radians(lat)))
    assert km < 0.2


def test_routes_and_models_are_deterministic_per_vehicle() -> None:
    assert make_route(42) == make_route(42)
    assert make_route(42) != make_route(43)
    assert model_of(5) is MODELS[0]


def test_a_slow_puncture_raises_the_tpms_code() -> None:
    rng = random.Random(3)
    state = initial_state(1, rng)
    leaking = DriveState(
        **{
            **{f: getattr(state, f) for f in DriveState.__slots__},
            "leak": 2,
            "phase": Phase.PARKED,
            "phase_left_s": 1e9,
        }
    )
    later = advance(leaking, model=model_of(1), profile=PROFILES["idle"], dt=120 * 60, rng=rng)
    assert later.tyres_kpa[2] < 200
    assert later.dtc == TPMS_DTC


def test_advance_rejects_negative_or_infinite_steps() -> None:
    state = initial_state(1, random.Random(1))
    for dt in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="dt"):
            advance(state, model=model_of(1), profile=PROFILES["city"], dt=dt, rng=random.Random())
    assert (
        advance(state, model=model_of(1), profile=PROFILES["city"], dt=0, rng=random.Random())
        is state
    )


def test_with_charge_clamps() -> None:
    state = initial_state(1, random.Random(1))
    assert with_charge(state, level_pct=150).level_pct == 100
    assert with_charge(state, level_pct=-1).level_pct == 0
