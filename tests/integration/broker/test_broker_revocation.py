"""Revocation while connected: the vehicle is cut within 30 s and cannot come back."""

from __future__ import annotations

import time

import pytest

from broker.runstate import RevocationNotice, notify_revocation, read_state

from .conftest import Healthy
from .support import VIN_REVOKE, BrokerProcess, connected, probe, revoke

pytestmark = pytest.mark.integration


def test_revoked_vehicle_is_disconnected_and_refused(
    broker: BrokerProcess, healthy: Healthy
) -> None:
    vehicle = connected(broker, broker.pki.vehicle(VIN_REVOKE))
    assert vehicle.subscribe(f"vehicles/{VIN_REVOKE}/commands/+") == [1]
    started = time.monotonic()
    revoke(broker.pki, VIN_REVOKE)
    notice = notify_revocation(home=broker.pki.home, identity_id=VIN_REVOKE, timeout_s=30)
    assert notice is RevocationNotice.APPLIED
    assert vehicle.disconnected.wait(timeout=max(0.1, 30 - (time.monotonic() - started)))
    elapsed = time.monotonic() - started
    print(f"{broker.kind}: revoked connection closed after {elapsed:.2f} s")
    assert elapsed < 30
    state = read_state(broker.pki.home)
    assert state is not None
    assert any(VIN_REVOKE in cut for cut in state.cut)
    again = probe(broker, broker.pki.vehicle(VIN_REVOKE))
    assert again.connect() != 0
    healthy.check()
