"""A realistic drive profile: where a simulated car is, how fast it goes, what its signals say.

Pure: every function takes the current state, the elapsed time and a ``random.Random`` and
returns a new state; nothing here reads a clock or does I/O.

A car drives laps of its own closed route (a wobbly loop around a city centre, derived from
its number), alternating drive segments (a target speed from its profile, stops at lights) and
parked periods. Electric cars charge when parked with a low battery, combustion cars refuel.
The 12 V battery, the tyres (warming up, the occasional slow puncture) and diagnostic trouble
codes follow from that.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, replace
from typing import Final

EARTH_KM_PER_DEG: Final = 111.32
TYRES: Final = ("fl", "fr", "rl", "rr")
NOMINAL_TYRE_KPA: Final = 240.0
LOW_TYRE_KPA: Final = 200.0
TPMS_DTC: Final = "C0750"
DTCS: Final = ("P0420", "P0301", "P0128", "B1318", "U0100", "P0171", "C1201")
"""Diagnostic trouble codes a car reports now and then (besides the TPMS warning)."""

CITIES: Final = (
    ("Munich", 48.137, 11.575),
    ("Gothenburg", 57.709, 11.974),
    ("Turin", 45.070, 7.687),
    ("Lyon", 45.764, 4.835),
    ("Detroit", 42.331, -83.046),
    ("Nagoya", 35.181, 136.906),
)


class Phase(enum.StrEnum):
    PARKED = "parked"
    DRIVING = "driving"
    STOPPED = "stopped"
    """Briefly standing in traffic or at a light (ignition on)."""
    CHARGING = "charging"
    """Parked and charging (electric) or refuelling (combustion)."""


# plain module constants: reading an enum member through its class is slow in Python 3.11,
# and the drive step runs for every telemetry message
PARKED, DRIVING, STOPPED, CHARGING = Phase.PARKED, Phase.DRIVING, Phase.STOPPED, Phase.CHARGING


@dataclass(frozen=True, slots=True)
class Profile:
    """How a fleet drives: speeds, how often it stops, how long it parks."""

    name: str
    speeds_kmh: tuple[float, ...]
    """Target speeds of drive segments, picked at random."""
    segment_s: tuple[float, float]
    stop_s: tuple[float, float]
    stop_chance: float
    """Chance that a segment ends with a stop (else the next segment follows)."""
    park_s: tuple[float, float]
    drive_s: tuple[float, float]
    """How long a trip lasts before the car parks."""


PROFILES: Final[dict[str, Profile]] = {
    "city": Profile("city", (30, 40, 50, 50, 60), (20, 90), (10, 60), 0.6, (60, 900), (300, 1800)),
    "highway": Profile(
        "highway", (100, 110, 120, 130, 90), (120, 600), (5, 30), 0.1, (60, 600), (1800, 7200)
    ),
    "mixed": Profile(
        "mixed", (30, 50, 70, 100, 120), (30, 300), (10, 60), 0.35, (60, 1200), (600, 3600)
    ),
    "delivery": Profile(
        "delivery", (20, 30, 50, 60), (15, 120), (30, 240), 0.8, (30, 180), (3600, 14400)
    ),
    "idle": Profile("idle", (30, 50), (30, 120), (10, 30), 0.5, (3600, 14400), (300, 900)),
}
"""Drive profiles by name (``--profile``)."""


@dataclass(frozen=True, slots=True)
class Model:
    """A vehicle model: what it is and the numbers its signals depend on."""

    name: str
    powertrain: str  # "ev" | "ice"
    capacity: float
    """kWh of battery (ev) or litres of fuel (ice)."""
    per_km: float
    """kWh or litres per km at moderate speed."""
    max_kmh: float
    charge_rate: float
    """kW of charging, or litres per second at the pump."""


MODELS: Final = (
    Model("Volta E1", "ev", 58.0, 0.16, 160.0, 11.0),
    Model("Volta E3", "ev", 82.0, 0.19, 200.0, 22.0),
    Model("Terra T5", "ice", 55.0, 0.065, 190.0, 0.6),
    Model("Cargo V2", "ev", 75.0, 0.27, 120.0, 11.0),
    Model("Terra H4", "ice", 45.0, 0.048, 180.0, 0.6),
)


@dataclass(frozen=True, slots=True)
class Route:
    """A closed loop around a city centre: position is a function of distance driven."""

    lat: float
    lon: float
    radius_km: float
    wobble: float
    lobes: int
    phase: float

    @property
    def length_km(self) -> float:
        return 2 * math.pi * self.radius_km

    def position(self, distance_km: float) -> tuple[float, float, float]:
        """(lat, lon, heading in degrees) after ``distance_km`` along the loop."""
        theta = (distance_km / self.radius_km) % (2 * math.pi)
        r = self.radius_km * (1 + self.wobble * math.sin(self.lobes * theta + self.phase))
        north = r * math.cos(theta)
        east = r * math.sin(theta)
        lat = self.lat + north / EARTH_KM_PER_DEG
        lon = self.lon + east / (EARTH_KM_PER_DEG * math.cos(math.radians(self.lat)))
        # direction of travel: derivative of (north, east) with respect to theta
        dr = self.radius_km * self.wobble * self.lobes * math.cos(self.lobes * theta + self.phase)
        d_north = dr * math.cos(theta) - r * math.sin(theta)
        d_east = dr * math.sin(theta) + r * math.cos(theta)
        heading = math.degrees(math.atan2(d_east, d_north)) % 360.0
        return lat, lon, heading


def make_route(number: int) -> Route:
    """The route of vehicle ``number``: deterministic, so a restarted fleet drives the same."""
    rng = random.Random(number * 7919 + 17)
    _, lat, lon = CITIES[number % len(CITIES)]
    return Route(
        lat=lat + rng.uniform(-0.05, 0.05),
        lon=lon + rng.uniform(-0.05, 0.05),
        radius_km=rng.uniform(2.0, 15.0),
        wobble=rng.uniform(0.05, 0.3),
        lobes=rng.randint(2, 6),
        phase=rng.uniform(0, 2 * math.pi),
    )


def model_of(number: int) -> Model:
    return MODELS[number % len(MODELS)]


@dataclass(frozen=True, slots=True)
class DriveState:
    """Everything that changes while a car lives; see :func:`advance`."""

    phase: Phase
    phase_left_s: float
    """Seconds until the phase (or the drive segment) ends."""
    trip_left_s: float
    speed_kmh: float
    target_kmh: float
    distance_km: float
    """Along the route (position)."""
    odometer_km: float
    level_pct: float
    """State of charge (ev) or fuel level (ice), 0..100."""
    battery_v: float
    tyres_kpa: tuple[float, float, float, float]
    """Cold pressures; :attr:`tyre_heat_kpa` is added to every tyre while they are warm."""
    tyre_heat_kpa: float
    leak: int
    """Index of a tyre with a slow puncture, or -1."""
    dtc: str | None
    dtc_left_s: float


def initial_state(number: int, rng: random.Random) -> DriveState:
    return DriveState(
        phase=Phase.PARKED,
        phase_left_s=rng.uniform(0, 120),
        trip_left_s=0.0,
        speed_kmh=0.0,
        target_kmh=0.0,
        distance_km=rng.uniform(0, 50),
        odometer_km=round(rng.uniform(500, 120_000), 1),
        level_pct=rng.uniform(25, 95),
        battery_v=round(rng.uniform(12.4, 12.8), 2),
        tyres_kpa=(
            NOMINAL_TYRE_KPA + rng.uniform(-6, 6),
            NOMINAL_TYRE_KPA + rng.uniform(-6, 6),
            NOMINAL_TYRE_KPA + rng.uniform(-6, 6),
            NOMINAL_TYRE_KPA + rng.uniform(-6, 6),
        ),
        tyre_heat_kpa=0.0,
        leak=-1,
        dtc=None,
        dtc_left_s=0.0,
    )


def advance(
    state: DriveState, *, model: Model, profile: Profile, dt: float, rng: random.Random
) -> DriveState:
    """The state ``dt`` seconds later (``dt`` >= 0; long steps are split into 1 s steps)."""
    if dt < 0 or not math.isfinite(dt):
        raise ValueError(f"dt must be a finite number >= 0, got {dt}")
    while dt > 1.0:
        state = _step(state, model, profile, 1.0, rng)
        dt -= 1.0
    return _step(state, model, profile, dt, rng) if dt > 0 else state


def _step(
    s: DriveState, model: Model, profile: Profile, dt: float, rng: random.Random
) -> DriveState:
    phase, left, trip, target = s.phase, s.phase_left_s - dt, s.trip_left_s - dt, s.target_kmh
    # phase changes
    if phase is DRIVING and trip <= 0 and s.speed_kmh < 1:
        phase, left = _park(model, s.level_pct, profile, rng)
    elif phase is DRIVING and trip <= 0:
        target = 0.0  # slowing down to park
    elif phase is DRIVING and left <= 0:
        if rng.random() < profile.stop_chance:
            target, left = 0.0, 1e9  # stop when speed reaches 0, below
        else:
            target, left = _new_segment(model, profile, rng)
    elif phase is STOPPED and left <= 0:
        phase = DRIVING
        target, left = _new_segment(model, profile, rng)
    elif phase in (PARKED, CHARGING) and (left <= 0 or _full(phase, s.level_pct)):
        if s.level_pct > 5 or phase is CHARGING:
            phase, trip = DRIVING, rng.uniform(*profile.drive_s)
            target, left = _new_segment(model, profile, rng)
        else:
            phase, left = CHARGING, 3600.0
    if phase is DRIVING and target == 0.0 and s.speed_kmh < 1 and trip > 0:
        phase, left = STOPPED, rng.uniform(*profile.stop_s)
    if phase is DRIVING and s.level_pct <= 0.5:
        target = 0.0
        trip = min(trip, 0.0)
    # motion
    speed = _approach(s.speed_kmh, target if phase is DRIVING else 0.0, dt)
    km = (s.speed_kmh + speed) / 2 * dt / 3600
    level = _level(s.level_pct, phase, km, speed, model, dt)
    # 12 V battery, tyres, faults
    running = phase in (DRIVING, STOPPED)
    volts = _battery(s.battery_v, running, phase is CHARGING, dt, rng)
    leak = s.leak
    if leak < 0 and rng.random() < dt / (50 * 3600):  # a slow puncture every ~50 h
        leak = rng.randrange(4)
    tyres = _leaking(s.tyres_kpa, leak, dt)
    if leak >= 0 and phase is CHARGING:  # repaired while parked at the charger / pump
        tyres = _leaking(tyres, leak, 0.0, reset=True)
        leak = -1
    hot = min(speed / 130, 1.0) * 14.0  # up to +14 kPa when warm
    heat = s.tyre_heat_kpa + (hot - s.tyre_heat_kpa) * min(1.0, dt / 300)
    dtc, dtc_left = s.dtc, s.dtc_left_s - dt
    if dtc is not None and dtc_left <= 0:
        dtc = None
    if dtc is None and running and rng.random() < dt / (8 * 3600):  # one fault per ~8 h driving
        dtc, dtc_left = rng.choice(DTCS), rng.uniform(60, 1800)
    if min(tyres) + heat < LOW_TYRE_KPA:
        dtc, dtc_left = TPMS_DTC, max(dtc_left, 60.0)
    return DriveState(
        phase=phase,
        phase_left_s=left,
        trip_left_s=trip,
        speed_kmh=speed,
        target_kmh=target,
        distance_km=s.distance_km + km,
        odometer_km=s.odometer_km + km,
        level_pct=level,
        battery_v=volts,
        tyres_kpa=tyres,
        tyre_heat_kpa=heat,
        leak=leak,
        dtc=dtc,
        dtc_left_s=max(dtc_left, 0.0),
    )


def _full(phase: Phase, level: float) -> bool:
    return phase is CHARGING and level >= 95.0


def _park(model: Model, level: float, profile: Profile, rng: random.Random) -> tuple[Phase, float]:
    if level < 30:
        return Phase.CHARGING, 3600.0 * 4
    return Phase.PARKED, rng.uniform(*profile.park_s)


def _new_segment(model: Model, profile: Profile, rng: random.Random) -> tuple[float, float]:
    target = min(rng.choice(profile.speeds_kmh) * rng.uniform(0.85, 1.1), model.max_kmh)
    return target, rng.uniform(*profile.segment_s)


def _approach(speed: float, target: float, dt: float) -> float:
    """Accelerate at up to 2.5 m/s², brake at up to 4 m/s² (in km/h per second: 9, 14.4)."""
    if speed < target:
        return min(target, speed + 9.0 * dt)
    return max(target, speed - 14.4 * dt, 0.0)


def _level(level: float, phase: Phase, km: float, speed: float, model: Model, dt: float) -> float:
    if phase is CHARGING:
        gained = model.charge_rate * dt / (3600 if model.powertrain == "ev" else 1)
        return min(100.0, level + gained / model.capacity * 100)
    # consumption grows with speed (air drag), plus a little standing consumption
    per_km = model.per_km * (0.8 + (speed / 110) ** 2 * 0.5)
    idle = 0.0005 * dt / 3600 * model.capacity if phase is STOPPED else 0.0
    used = km * per_km + idle
    return max(0.0, level - used / model.capacity * 100)


def _battery(volts: float, running: bool, charging: bool, dt: float, rng: random.Random) -> float:
    if running or charging:
        target = 14.1 + rng.uniform(-0.1, 0.1)
        volts += (target - volts) * min(1.0, dt / 10)
    else:
        volts -= 0.02 * dt / 3600  # slow self-discharge while parked
        volts += (12.6 - volts) * min(1.0, dt / 600) if volts > 12.6 else 0.0
    return min(14.6, max(11.0, volts))


def _leaking(
    tyres: tuple[float, float, float, float], leak: int, dt: float, *, reset: bool = False
) -> tuple[float, float, float, float]:
    """Tyre ``leak`` loses half a kPa per minute (down to 80), or is refilled with ``reset``."""
    if leak < 0:
        return tyres
    pressures = list(tyres)
    pressures[leak] = NOMINAL_TYRE_KPA if reset else max(80.0, pressures[leak] - 0.5 * dt / 60)
    return pressures[0], pressures[1], pressures[2], pressures[3]


def signals(
    state: DriveState, *, model: Model, route: Route
) -> dict[str, bool | int | float | str]:
    """The telemetry signals of a state (names match the schemas' signal-name pattern)."""
    lat, lon, heading = route.position(state.distance_km)
    running = state.phase in (DRIVING, STOPPED)
    level_key = "soc_pct" if model.powertrain == "ev" else "fuel_pct"
    range_km = state.level_pct / 100 * model.capacity / model.per_km
    heat = state.tyre_heat_kpa
    out: dict[str, bool | int | float | str] = {
        "speed_kmh": round(state.speed_kmh, 1),
        "lat": round(lat, 6),
        "lon": round(lon, 6),
        "heading_deg": round(heading, 1),
        "odometer_km": round(state.odometer_km, 2),
        level_key: round(state.level_pct, 2),
        "range_km": round(range_km, 1),
        "battery_v": round(state.battery_v, 2),
        "ignition": running,
        "charging": state.phase is CHARGING,
        "tyre.fl_kpa": round(state.tyres_kpa[0] + heat, 1),
        "tyre.fr_kpa": round(state.tyres_kpa[1] + heat, 1),
        "tyre.rl_kpa": round(state.tyres_kpa[2] + heat, 1),
        "tyre.rr_kpa": round(state.tyres_kpa[3] + heat, 1),
    }
    if state.dtc is not None:
        out["dtc"] = state.dtc
    return out


def with_charge(state: DriveState, *, level_pct: float) -> DriveState:
    """The same state with another charge/fuel level (e.g. a command set it)."""
    return replace(state, level_pct=min(100.0, max(0.0, level_pct)))
