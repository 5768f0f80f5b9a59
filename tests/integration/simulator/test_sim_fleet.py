"""``fleetgate sim`` against real brokers (Mosquitto and the embedded amqtt broker): what the
summary counts is what a service-identity subscriber receives; commands, desired state,
Ctrl-C and the per-kind error counts of bad brokers and bad certificates."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import socket
import ssl
import time
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import aiomqtt
import pytest

from certs import badcerts, pki, store
from certs.layout import PkiPaths, make_dir, write_issued
from schemas.ids import Identity, Role, make_vin
from schemas.topics import MqttTopics, parse_topic

from .conftest import OBSERVER, SimBroker, finish, run_sim, sim_command

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST_FAIL = {"FLEETGATE_SIM__MAX_ATTEMPTS": "3", "FLEETGATE_SIM__BACKOFF_BASE_S": "0.05"}


class Observer:
    """A service certificate subscribed to what vehicles publish; counts it by topic kind."""

    def __init__(self, broker: SimBroker) -> None:
        cert, key = broker.paths.service(OBSERVER)
        context = ssl.create_default_context(cafile=str(broker.paths.ca_chain))
        context.load_cert_chain(cert, key)
        self.client = aiomqtt.Client(
            "127.0.0.1", broker.port, identifier=OBSERVER, tls_context=context, timeout=20
        )
        self.counts: Counter[str] = Counter()
        self.births: set[str] = set()
        self.results: dict[str, dict[str, Any]] = {}
        self.reported: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.last_seq: dict[str, int] = {}
        self.out_of_order = 0
        self.last_message = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Observer:
        await self.client.__aenter__()
        filters = ("telemetry", "connection", "commands/+/result", "shadow/reported")
        await self.client.subscribe([(f"vehicles/+/{f}", 1) for f in filters])
        self._task = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.client.__aexit__(t, e, tb)

    async def _read(self) -> None:
        async for message in self.client.messages:
            self.last_message = time.monotonic()
            topic = parse_topic(message.topic.value)
            assert isinstance(message.payload, bytes)
            body = json.loads(message.payload)
            vin = topic.vin or ""
            self.counts[topic.kind.value] += 1
            if topic.kind.value == "telemetry":
                if body["seq"] <= self.last_seq.get(vin, -1):
                    self.out_of_order += 1
                self.last_seq[vin] = body["seq"]
            elif topic.kind.value == "connection" and body["online"]:
                self.births.add(vin)
            elif topic.kind.value == "command_result":
                self.results[topic.command_id or ""] = body
            elif topic.kind.value == "shadow_reported":
                self.reported[vin].append(body["state"])

    async def wait(self, what: Any, *, within: float = 60) -> None:
        async with asyncio.timeout(within):
            while True:
                if what():
                    return
                await asyncio.sleep(0.1)

    async def settle(self, *, quiet: float = 1.5) -> None:
        """Until nothing arrived for ``quiet`` seconds."""
        await self.wait(lambda: time.monotonic() - self.last_message > quiet)


def _command(name: str, *, expires_in_ms: int = 60_000, **params: Any) -> bytes:
    expires = int(time.time() * 1000) + expires_in_ms
    return json.dumps({"name": name, "params": params, "expires_at": expires}).encode()


async def test_summary_counts_match_what_a_service_receives(
    sim_broker: SimBroker, tmp_path: Path
) -> None:
    out = tmp_path / "summary.json"
    async with Observer(sim_broker) as observer:
        started = time.monotonic()
        process = sim_command(
            sim_broker.home,
            *("--vehicles", "200", "--rate", "1", "--duration", "20", "--ramp", "400"),
            *("--broker", sim_broker.address, "--json", str(out)),
        )
        await observer.wait(lambda: len(observer.births) >= 200)
        vins = sorted(observer.births)
        ids = [str(uuid.uuid4()) for _ in range(3)]
        commands = [
            (vins[0], ids[0], _command("doors.unlock")),
            (vins[1], ids[1], _command("doors.unlock", expires_in_ms=-1000)),
            (vins[2], ids[2], _command("horn", simulate="fail")),
            (vins[0], ids[0], _command("doors.unlock")),  # the same command again
        ]
        for vin, command_id, payload in commands:
            await observer.client.publish(MqttTopics.command(vin, command_id), payload, qos=1)
        desired = json.dumps({"state": {"climate": {"on": True}}, "version": 1}).encode()
        await observer.client.publish(MqttTopics.shadow_desired(vins[3]), desired, qos=1)
        await observer.wait(lambda: len(observer.results) >= 3, within=60)
        run = await asyncio.to_thread(finish, process, started=started)
        await observer.settle()
    assert run.returncode == 0, run.stderr
    summary = run.summary
    assert json.loads(out.read_text()) == summary
    assert (summary["vehicles"], summary["connected"], summary["failed"]) == (200, 200, 0)
    assert summary["errors"] == {}, summary
    assert summary["published"] == summary["acked"] > 0, summary
    assert summary["unacked"] == 0
    by_kind = summary["published_by_kind"]
    assert observer.counts["telemetry"] == by_kind["telemetry"] >= 200 * 8
    assert observer.counts["connection"] == by_kind["connection"] == 400  # birth, goodbye
    assert observer.counts["shadow_reported"] == by_kind["shadow_reported"]
    assert observer.counts["command_result"] == by_kind["command_result"] == 3
    assert observer.out_of_order == 0
    assert summary["commands_received"] == 3
    assert summary["commands_duplicate"] == 1
    assert summary["commands_answered"] == 3
    assert summary["commands_expired"] == 1
    assert summary["desired_applied"] == 1
    assert observer.results[ids[0]]["status"] == "succeeded"
    assert observer.results[ids[1]] == {"status": "rejected", "detail": "expired"}
    assert observer.results[ids[2]]["status"] == "failed"
    assert {"doors": {"locked": False}} in observer.reported[vins[0]]
    assert {"climate": {"on": True}} in observer.reported[vins[3]]
    assert summary["handshake_ms"]["p50"] is not None
    assert summary["publish_ack_ms"]["p99"] is not None


async def test_random_disconnects_resume_persistent_sessions(
    sim_broker: SimBroker, tmp_path: Path
) -> None:
    async with Observer(sim_broker) as observer:
        run = await asyncio.to_thread(
            run_sim,
            sim_broker.home,
            *("--vehicles", "40", "--first", "2000", "--rate", "4", "--duration", "12"),
            *("--broker", sim_broker.address),
            env={
                "FLEETGATE_SIM__DISCONNECTS_PER_HOUR": "1800",  # every 2 s on average
                "FLEETGATE_SIM__OFFLINE_S": "[0.2, 1.0]",
            },
        )
        await observer.settle()
    summary = run.summary
    assert run.returncode == 0, run.stderr
    assert summary["disconnects"] > 20, summary
    assert summary["reconnects"] > 10, summary
    assert summary["failed"] == 0, summary
    # every message is acknowledged, or still in a session when the run ended (a vehicle away,
    # or an ack slower than the drain time); a retransmission after an abrupt drop may reach
    # the subscriber twice
    assert summary["published"] == summary["acked"] + summary["unacked"], summary
    assert set(summary["errors"]) <= {"not_connected"}, summary
    telemetry = summary["published_by_kind"]["telemetry"]
    assert observer.counts["telemetry"] >= telemetry - summary["unacked"]


async def test_ctrl_c_stops_cleanly_and_still_writes_the_summary(
    sim_broker: SimBroker, tmp_path: Path
) -> None:
    out = tmp_path / "summary.json"
    async with Observer(sim_broker) as observer:
        started = time.monotonic()
        process = sim_command(
            sim_broker.home,
            *("--vehicles", "50", "--first", "1000", "--broker", sim_broker.address),
            *("--json", str(out)),
        )
        await observer.wait(lambda: len(observer.births) >= 50)
        process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        run = await asyncio.to_thread(finish, process, started=started, timeout=60)
    assert time.monotonic() - interrupted < 20
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert json.loads(out.read_text()) == run.summary
    assert run.summary["connected"] == 50
    assert run.summary["unacked"] == 0


# --- bad brokers, bad certificates -----------------------------------------------------------


@pytest.fixture(scope="module")
def plain_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("sim-plain")
    store.ensure_pki(home, services=())
    return home


def _assert_one_line_failure(run: Any, *, code: int) -> None:
    assert run.returncode == code, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith("fleetgate: error: ")


def test_an_unreachable_broker_is_counted_not_a_crash(plain_home: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    run = run_sim(plain_home, "-n", "4", "--broker", f"127.0.0.1:{port}", env=FAST_FAIL)
    _assert_one_line_failure(run, code=3)
    assert run.summary["errors"] == {"connect_refused": 12}
    assert (run.summary["failed"], run.summary["connected"]) == (4, 0)
    assert run.seconds < 30


def test_a_silent_broker_is_a_timeout(plain_home: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes TCP handshakes; nobody ever speaks TLS
        port = silent.getsockname()[1]
        run = run_sim(
            plain_home,
            *("-n", "3", "--broker", f"127.0.0.1:{port}"),
            env={
                **FAST_FAIL,
                "FLEETGATE_SIM__MAX_ATTEMPTS": "2",
                "FLEETGATE_SIM__CONNECT_TIMEOUT_S": "1",
            },
        )
    _assert_one_line_failure(run, code=3)
    assert run.summary["errors"] == {"timeout": 6}


def test_an_unresolvable_broker_name(plain_home: Path) -> None:
    run = run_sim(plain_home, "-n", "2", "--broker", "no-such-host.invalid:8883", env=FAST_FAIL)
    _assert_one_line_failure(run, code=3)
    assert run.summary["errors"] == {"dns_error": 2}


def test_no_pki_is_a_one_line_error(tmp_path: Path) -> None:
    run = run_sim(tmp_path, "-n", "2", "--broker", "127.0.0.1:1")
    _assert_one_line_failure(run, code=2)
    assert "fleetgate certs init" in run.stderr


def test_bad_options_are_one_line_errors(plain_home: Path) -> None:
    for args in (["--vehicles", "0"], ["--profile", "rally"], ["--broker", "x:0"]):
        run = run_sim(plain_home, *args)
        _assert_one_line_failure(run, code=2)
    usage = run_sim(plain_home, "--vehicles", "many")
    assert usage.returncode == 2
    assert "Traceback" not in usage.stderr
    assert "--vehicles" in usage.stderr


def _foreign_vehicle_home(broker: SimBroker, home: Path, vins: list[str], *, trust: bool) -> None:
    """Vehicle certificates from another CA; the broker's CA chain trusted, or another one."""
    now = datetime.now(UTC)
    root, issuing = badcerts.foreign_pki(now=now)
    paths = PkiPaths(home)
    make_dir(paths.role_dir(Role.VEHICLE))
    if trust:
        shutil.copy(broker.paths.ca_chain, paths.ca_chain)
    else:
        paths.ca_chain.write_bytes(pki.cert_pem(issuing.cert) + pki.cert_pem(root.cert))
    for vin in vins:
        leaf = pki.issue_leaf(
            issuing,
            Identity(role=Role.VEHICLE, id=vin),
            validity=pki.Validity.starting(now, pki.Lifetimes().leaf),
        )
        cert, key = paths.vehicle(vin)
        write_issued(leaf, cert_path=cert, key_path=key, durable=False)


def test_certificates_from_another_ca_are_refused(sim_broker: SimBroker, tmp_path: Path) -> None:
    _foreign_vehicle_home(
        sim_broker, tmp_path, [make_vin(n) for n in range(3000, 3003)], trust=True
    )
    run = run_sim(
        tmp_path, "-n", "3", "--first", "3000", "--broker", sim_broker.address, env=FAST_FAIL
    )
    _assert_one_line_failure(run, code=3)
    assert run.summary["failed"] == 3
    assert sum(run.summary["errors"].values()) == 9
    assert set(run.summary["errors"]) <= {"tls_error", "closed_by_broker"}


def test_a_broker_certificate_we_do_not_trust(sim_broker: SimBroker, tmp_path: Path) -> None:
    _foreign_vehicle_home(sim_broker, tmp_path, [make_vin(3100)], trust=False)
    run = run_sim(
        tmp_path, "-n", "1", "--first", "3100", "--broker", sim_broker.address, env=FAST_FAIL
    )
    _assert_one_line_failure(run, code=3)
    assert run.summary["errors"] == {"tls_verify_failed": 3}


def test_a_revoked_vehicle_fails_alone(sim_broker: SimBroker) -> None:
    paths = sim_broker.paths
    vins = [make_vin(n) for n in range(4000, 4003)]
    now = datetime.now(UTC)
    store.issue_leaves(
        paths, Role.VEHICLE, vins, now=now, lifetimes=pki.Lifetimes(), skip_existing=True
    )
    store.revoke(paths, vins[0], now=now, lifetimes=pki.Lifetimes())
    time.sleep(3)  # the broker polls crl.pem every 0.5 s
    run = run_sim(
        sim_broker.home,
        "-n",
        "3",
        "--first",
        "4000",
        "--duration",
        "10",
        "--broker",
        sim_broker.address,
        env=FAST_FAIL,
    )
    _assert_one_line_failure(run, code=1)
    assert (run.summary["connected"], run.summary["failed"]) == (2, 1), run.summary
    assert sum(run.summary["errors"].values()) == 3, run.summary
    assert set(run.summary["errors"]) <= {"tls_error", "closed_by_broker"}


def test_amqtt_refuses_a_client_id_that_is_not_the_certificate(
    sim_broker: SimBroker, tmp_path: Path
) -> None:
    if sim_broker.kind != "amqtt":
        pytest.skip("Mosquitto replaces the client id with the CN instead of refusing it")
    paths = PkiPaths(tmp_path)
    make_dir(paths.role_dir(Role.VEHICLE))
    shutil.copy(sim_broker.paths.ca_chain, paths.ca_chain)
    impostor, victim = make_vin(3200), make_vin(3201)
    store.issue_leaves(
        sim_broker.paths,
        Role.VEHICLE,
        [victim],
        now=datetime.now(UTC),
        lifetimes=pki.Lifetimes(),
        skip_existing=True,
    )
    for source, target in zip(
        sim_broker.paths.vehicle(victim), paths.vehicle(impostor), strict=True
    ):
        shutil.copy(source, target)
    run = run_sim(
        tmp_path, "-n", "1", "--first", "3200", "--broker", sim_broker.address, env=FAST_FAIL
    )
    _assert_one_line_failure(run, code=3)
    assert run.summary["errors"] == {"identifier_rejected": 3}
