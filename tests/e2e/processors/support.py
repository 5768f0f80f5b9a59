"""The stack for the processors' end-to-end tests: a PKI, the embedded broker
(``python -m broker``), a gateway, processor workers (``python -m processors``), and vehicles
and apps as real MQTT clients with their own certificates."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt

from certs import pki, store
from certs.layout import PkiPaths
from schemas.ids import Identity, Role, make_vin

ROOT = Path(__file__).resolve().parents[3]
HOST = "127.0.0.1"
APP = "companion"
INTRUDER = "intruder"
VINS = [make_vin(7000 + i, wmi="E2E") for i in range(6)]


def make_pki(home: Path) -> PkiPaths:
    paths = PkiPaths(home)
    now, lifetimes = datetime.now(UTC), pki.Lifetimes()
    store.init_pki(paths, now=now, lifetimes=lifetimes, server_sans=("localhost", HOST))
    store.issue_leaves(paths, Role.VEHICLE, VINS, now=now, lifetimes=lifetimes)
    store.issue_leaves(paths, Role.APP, [APP, INTRUDER], now=now, lifetimes=lifetimes)
    store.issue_leaves(paths, Role.SERVICE, ["gateway"], now=now, lifetimes=lifetimes)
    return paths


class Worker:
    """``python -m processors`` with the given environment."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "processors"],
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def wait_assigned(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "partitions assigned" in self.log.read_text(errors="replace"):
                return
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            await asyncio.sleep(0.2)
        raise AssertionError(f"worker got no partitions: {self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def tls_for(paths: PkiPaths, identity: Identity) -> ssl.SSLContext:
    cert, key = paths.leaf(identity)
    ctx = ssl.create_default_context(cafile=str(paths.ca_chain))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


class Device:
    """A vehicle or an app on MQTT (mutual TLS, client id = its certificate's CN); every
    message it receives is kept by topic."""

    def __init__(self, paths: PkiPaths, port: int, identity: Identity) -> None:
        self.paths, self.port, self.identity = paths, port, identity
        self.received: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._arrived = asyncio.Event()
        self.client: aiomqtt.Client | None = None

    @asynccontextmanager
    async def online(
        self, *, subscribe: list[str], will: tuple[str, bytes] | None = None
    ) -> AsyncIterator[Device]:
        client = aiomqtt.Client(
            HOST,
            self.port,
            identifier=self.identity.id,
            tls_context=tls_for(self.paths, self.identity),
            tls_insecure=False,
            will=aiomqtt.Will(will[0], will[1], qos=1) if will else None,
            clean_session=True,
            keepalive=10,
        )
        async with client:
            self.client = client
            for topic in subscribe:
                await client.subscribe(topic, qos=1)
            reader = asyncio.ensure_future(self._read(client))
            try:
                yield self
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                self.client = None

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload
            assert isinstance(payload, bytes | bytearray)
            self.received[str(message.topic)].append(json.loads(payload))
            self._arrived.set()

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        assert self.client is not None
        await self.client.publish(topic, json.dumps(payload).encode(), qos=1)

    async def wait_for(
        self, check: Callable[[], bool], *, timeout_s: float = 30.0, what: str = ""
    ) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"{self.identity}: timed out waiting for {what}; got {dict(self.received)}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.5))
