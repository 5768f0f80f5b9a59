"""Run one broker (embedded amqtt or Mosquitto) until asked to stop: the ``fleetgate broker``
service, also what ``fleetgate up`` can start.

At start: the PKI is created if missing (:func:`certs.store.ensure_pki`), the broker starts,
``$FLEETGATE_HOME/run/broker.json`` tells other processes about it. While it runs, every
``crl_poll_s`` seconds: ``pki/crl.pem`` changed? then the broker applies it (new handshakes
and live connections, see :mod:`broker.runstate`); Mosquitto's ACL follows the PKI's apps
and services. At stop the run-state file is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from broker.embedded import EmbeddedBroker
from broker.mosquitto import MosquittoBroker
from broker.runstate import RunState, clear_state, crl_digest, write_state
from broker.settings import BrokerSettings
from broker.tls import CrlError
from certs import store
from certs.layout import PkiPaths
from fleetgate.errors import ServiceUnavailable, UserError
from fleetgate.logs import get_logger

log = get_logger(__name__)

PKI_UPKEEP_S = 3600.0
"""How often a broker on the PKI's own host renews the CRL (it expires after a week)."""


class RunningBroker(Protocol):
    kind: str
    port: int

    @property
    def child_pid(self) -> int | None: ...

    def alive(self) -> bool: ...

    async def start(self) -> None: ...

    async def refresh(self) -> None: ...

    async def apply_crl(self, pem: bytes) -> list[str]: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True)
class FileStamp:
    """Enough of a ``stat`` to notice that a file was replaced or rewritten."""

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return cls(st.st_mtime_ns, st.st_size, st.st_ino)


def prepare_pki(settings: BrokerSettings) -> PkiPaths:
    """The PKI under ``home``, created if missing, with the admin service for Mosquitto."""
    try:
        paths = store.ensure_pki(settings.home)
        if settings.broker.kind == "mosquitto":
            store.ensure_pki(settings.home, services=(settings.broker.admin_service,))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot prepare the PKI under {settings.home / 'pki'}: {exc}") from None
    return paths


def make_broker(settings: BrokerSettings, paths: PkiPaths) -> RunningBroker:
    if settings.broker.kind == "mosquitto":
        return MosquittoBroker(options=settings.broker, paths=paths)
    return EmbeddedBroker(options=settings.broker, paths=paths)


async def run_broker(
    *,
    settings: BrokerSettings,
    stop: asyncio.Event,
    on_ready: Callable[[RunState], None] | None = None,
) -> None:
    """Prepare the PKI, start the broker, watch the CRL until ``stop`` is set, then stop."""
    paths = prepare_pki(settings)
    broker = make_broker(settings, paths)
    home = settings.home
    pid = os.getpid()
    try:
        # read before the broker does: a CRL written meanwhile is applied at the first poll
        stamp = FileStamp.of(paths.crl)
        pem = paths.crl.read_bytes()
        await broker.start()
        state = RunState(
            broker=settings.broker.kind,
            pid=pid,
            child_pid=broker.child_pid,
            host=settings.broker.host,
            port=broker.port,
            started_at=datetime.now(UTC),
            crl_sha256=crl_digest(pem),
            crl_applied_at=datetime.now(UTC),
        )
        write_state(home, state)
        if on_ready is not None:
            on_ready(state)
        upkeep_at = time.monotonic() + PKI_UPKEEP_S
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.broker.crl_poll_s)
            if stop.is_set():
                break
            if not broker.alive():
                raise ServiceUnavailable(f"the {broker.kind} broker exited")
            await broker.refresh()
            if time.monotonic() >= upkeep_at:
                upkeep_at = time.monotonic() + PKI_UPKEEP_S
                await _upkeep(settings, paths)
            current = FileStamp.of(paths.crl)
            if current == stamp or current is None:
                continue
            applied = await _apply(broker, paths, state)
            if applied is not None:  # else: retried at the next poll
                stamp, state = current, applied
                write_state(home, state)
    finally:
        clear_state(home, pid=pid)
        await broker.stop()


async def _upkeep(settings: BrokerSettings, paths: PkiPaths) -> None:
    """Where the CA key is at hand (one host), renew the CRL before it expires: OpenSSL
    refuses every client once the CRL is past its next update. The new CRL is applied by
    the poll like any other."""
    if not paths.ca_key.exists():
        return
    try:
        await asyncio.to_thread(store.ensure_pki, settings.home)
    except Exception as exc:
        log.error("PKI upkeep failed", error=repr(exc))


async def _apply(broker: RunningBroker, paths: PkiPaths, state: RunState) -> RunState | None:
    """The state after applying ``crl.pem``; the same state if the file is not a valid CRL
    (kept as it was until it changes again); None if applying failed (retry)."""
    try:
        pem = paths.crl.read_bytes()
        cut = await broker.apply_crl(pem)
    except CrlError as exc:
        log.error("crl.pem not applied", error=str(exc))
        return state
    except Exception as exc:  # the broker must keep serving; the next poll retries
        log.error("revocation not applied to live connections", error=repr(exc))
        return None
    log.info("CRL applied", cut=cut)
    return state.model_copy(
        update={"crl_sha256": crl_digest(pem), "crl_applied_at": datetime.now(UTC), "cut": cut}
    )
