"""Mosquitto as fleetgate's broker: write its files, run it as a child, keep it current.

:class:`MosquittoBroker` writes ``$FLEETGATE_HOME/mosquitto/`` (``mosquitto.conf``, the ACL,
the dynamic-security file, ``data/``), starts ``/usr/sbin/mosquitto -c mosquitto.conf``,
forwards its log, and while it runs:

- :meth:`MosquittoBroker.refresh`: regenerates the ACL when an app or a service certificate
  appears or goes (the ACL names them; vehicles are ``%u`` patterns) and SIGHUPs Mosquitto;
- :meth:`MosquittoBroker.apply_crl`: after ``crl.pem`` changed, SIGHUP (Mosquitto re-reads
  the CRL for new handshakes only), then, once it logged the reload, ``disableClient`` of
  every newly revoked CN through the dynamic-security plugin, which closes their live
  connections. The request is published by the ``admin_service`` identity, the only one
  the ACL lets use ``$CONTROL/dynamic-security/#``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import getpass
import os
import signal
import socket
import ssl
from collections import deque
from pathlib import Path

import aiomqtt
from cryptography import x509

from broker import policy
from broker.mosquitto_conf import (
    CONTROL_TOPIC,
    RESPONSE_TOPIC,
    MosquittoFiles,
    disable_commands,
    disable_failures,
    disabled_in,
    dynsec_initial,
    render_conf,
)
from broker.settings import BrokerOptions
from broker.tls import revoked_serials
from certs import store
from certs.index import Kind
from certs.layout import PkiPaths, atomic_write, make_dir
from fleetgate.errors import ServiceUnavailable, UserError
from fleetgate.logs import get_logger
from schemas.ids import Role

log = get_logger(__name__)

READY_LINE = " running"
"""Mosquitto logs "mosquitto version 2.0.11 running" once its listeners are open."""
RELOAD_LINE = "Reloading config."


_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:  # runs in the child between fork and exec
    """Own session (Ctrl-C reaches the supervisor, which stops Mosquitto cleanly) and death
    with the supervisor, should it be killed."""
    os.setsid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str) -> int:
    """A port that was free a moment ago (Mosquitto cannot listen on port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def role_names(paths: PkiPaths, role: Role) -> list[str]:
    return sorted(store.on_disk(paths, role))


class MosquittoBroker:
    """A Mosquitto child process under fleetgate's policy (see the module doc)."""

    kind = "mosquitto"

    def __init__(self, *, options: BrokerOptions, paths: PkiPaths) -> None:
        self._options = options
        self._paths = paths
        self._files = MosquittoFiles(paths.home)
        self._process: asyncio.subprocess.Process | None = None
        self._log_task: asyncio.Task[None] | None = None
        self._lines: deque[str] = deque(maxlen=30)
        self._ready = asyncio.Event()
        self._reloaded = asyncio.Event()
        self._acl_names: tuple[list[str], list[str]] = ([], [])
        self._applied: frozenset[int] = frozenset()
        self._issuer = x509.load_pem_x509_certificate(paths.ca.read_bytes())
        self.port = options.port

    @property
    def child_pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        binary = self._options.mosquitto_bin
        if not os.access(binary, os.X_OK):
            raise UserError(f"{binary} is not an executable; install Debian's mosquitto package")
        if not self._options.dynsec_plugin.is_file():
            raise UserError(f"{self._options.dynsec_plugin} is missing (Mosquitto's dynsec plugin)")
        if self.port == 0:
            self.port = free_port(self._options.host)
        self._write_files()
        self._applied = revoked_serials(self._paths.crl.read_bytes(), issuer=self._issuer)
        self._process = await asyncio.create_subprocess_exec(
            str(binary),
            "-c",
            str(self._files.conf),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_child_setup,
        )
        self._log_task = asyncio.create_task(self._forward_log())
        waiter = asyncio.create_task(self._ready.wait())
        exited = asyncio.create_task(self._process.wait())
        await asyncio.wait({waiter, exited}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        exited.cancel()
        if not self._ready.is_set():
            await self.stop()
            last = " | ".join(self._lines) or "no output"
            raise ServiceUnavailable(
                f"mosquitto did not start on {self._options.host}:{self.port}: {last}"
            )
        log.info("mosquitto running", port=self.port, pid=self.child_pid)

    def _write_files(self) -> None:
        make_dir(self._files.dir)
        make_dir(self._files.data)
        if not self._files.dynsec.exists():
            atomic_write(self._files.dynsec, dynsec_initial().encode(), mode=0o600)
        self._write_acl()
        conf = render_conf(
            options=self._options,
            port=self.port,
            pki=self._paths,
            files=self._files,
            user=getpass.getuser(),
        )
        atomic_write(self._files.conf, conf.encode(), mode=0o600)

    def _write_acl(self) -> bool:
        """(Re)write the ACL from the PKI's apps and services; True if it changed."""
        names = (role_names(self._paths, Role.APP), role_names(self._paths, Role.SERVICE))
        if names == self._acl_names and self._files.acl.exists():
            return False
        apps, services = names
        try:
            text = policy.mosquitto_acl(
                apps=apps, services=services, control_user=self._options.admin_service
            )
        except ValueError as exc:  # IdentityError too
            raise UserError(f"cannot write Mosquitto's ACL: {exc}") from None
        atomic_write(self._files.acl, text.encode(), mode=0o600)
        self._acl_names = names
        return True

    async def _forward_log(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        async for raw in self._process.stderr:
            line = raw.decode(errors="replace").rstrip()
            self._lines.append(line)
            if READY_LINE in line and "mosquitto version" in line:
                self._ready.set()
            if RELOAD_LINE in line:
                self._reloaded.set()
            if "Error" in line or ("Warning" in line and "root" not in line):
                log.warning("mosquitto", line=line)
            elif "onnect" in line or line.startswith("Client "):
                log.debug("mosquitto", line=line)
            else:
                log.info("mosquitto", line=line)

    async def refresh(self) -> None:
        """Regenerate the ACL if the PKI's apps or services changed (then reload)."""
        try:
            changed = self._write_acl()
        except UserError as exc:
            log.error("ACL not updated", error=str(exc))
            return
        if changed:
            log.info(
                "ACL regenerated", apps=len(self._acl_names[0]), services=len(self._acl_names[1])
            )
            await self._reload()

    async def apply_crl(self, pem: bytes) -> list[str]:
        """Reload the CRL and cut the live connections of newly revoked CNs; return them."""
        revoked = revoked_serials(pem, issuer=self._issuer)
        await self._reload()
        new = revoked - self._applied
        names = sorted(
            {
                e.id
                for e in store.read_index(self._paths)
                if e.serial in new and e.kind is not Kind.SERVER
            }
        )
        if names:
            await self._disable(names)
        self._applied = revoked
        return names

    async def _reload(self) -> None:
        if not self.alive() or self._process is None:
            raise ServiceUnavailable("mosquitto is not running")
        self._reloaded.clear()
        self._process.send_signal(signal.SIGHUP)
        try:
            await asyncio.wait_for(self._reloaded.wait(), timeout=5)
        except TimeoutError:
            log.warning("mosquitto did not log its reload within 5 s")

    async def _disable(self, usernames: list[str]) -> None:
        admin = self._options.admin_service
        certfile, keyfile = self._paths.service(admin)
        context = ssl.create_default_context(cafile=str(self._paths.ca_chain))
        context.load_cert_chain(certfile, keyfile)
        host = "127.0.0.1" if self._options.host in ("0.0.0.0", "") else self._options.host  # noqa: S104
        pending = set(usernames)
        async with aiomqtt.Client(
            host, self.port, identifier=admin, tls_context=context, timeout=10
        ) as client:
            await client.subscribe(RESPONSE_TOPIC, qos=1)
            await client.publish(CONTROL_TOPIC, disable_commands(usernames), qos=1)
            async with asyncio.timeout(10):
                async for message in client.messages:
                    payload = message.payload if isinstance(message.payload, bytes) else b""
                    for name, error in disable_failures(payload).items():
                        log.error("disableClient failed", username=name, error=error)
                        pending.discard(name)
                    pending -= disabled_in(payload)
                    if not pending:
                        break
        log.info("revoked clients disconnected", usernames=usernames)

    async def stop(self) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._log_task is not None:
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(self._log_task, timeout=2)


def conf_path(home: Path) -> Path:
    """Where ``mosquitto.conf`` is written (for people who want to read it)."""
    return MosquittoFiles(home).conf
