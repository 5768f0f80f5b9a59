"""Connectivity: ``vehicles/<VIN>/connection`` (birth and Last Will) and its Kafka event. Pure."""

from __future__ import annotations

import enum

from schemas.base import EpochMs, FleetModel, VinStr


class Connectivity(FleetModel):
    """The MQTT payload: birth ``{"online": true, "ts": …}`` published on connect, Last Will
    ``{"online": false}`` (a will is written before the connection, so ``ts`` is optional)."""

    online: bool
    ts: EpochMs | None = None


class ConnectivityCause(enum.StrEnum):
    """Why a vehicle's connectivity changed."""

    BIRTH = "birth"
    """The vehicle published ``online: true`` after connecting."""
    WILL = "will"
    """``online: false``: the broker published the Last Will (or the vehicle said goodbye)."""
    DISCONNECT = "disconnect"
    """The broker saw the connection close (clean disconnect)."""
    TIMEOUT = "timeout"
    """The broker dropped the connection: keep-alive expired."""


class ConnectivityEvent(FleetModel):
    """Kafka record on the ``connectivity`` topic (key = VIN): one change of one vehicle.

    ``ts`` is when the change happened: the birth's own ``ts`` if it has one, otherwise when
    the gateway received the message.
    """

    vin: VinStr
    online: bool
    ts: EpochMs
    cause: ConnectivityCause
