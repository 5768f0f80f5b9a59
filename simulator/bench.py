"""Bench scenario ``publish``: QoS 1 telemetry over mutual TLS into Mosquitto alone, as fast as
flow control allows (``fleetgate bench publish [-p key=value …]``).

Set-up: a throw-away ``$FLEETGATE_HOME`` with its own PKI, Mosquitto started by
:class:`broker.mosquitto.MosquittoBroker` (fleetgate's own configuration: mutual TLS, CRL,
ACL, dynamic security) on a free port, ``vehicles`` vehicle certificates. Then the simulator's
flood load (:mod:`simulator.load`) runs twice against it:

- result: QoS 1, ``window`` messages in flight per connection;
- baseline (``baseline=qos0``, the default): the same connections publishing QoS 0, with a
  PINGREQ round trip at the end so that only what the broker has read counts. That is the
  most Mosquitto ingests from this client over TLS when nothing is acknowledged; the ratio
  says how much of it QoS 1 keeps. ``baseline=none`` skips it.

Parameters: ``vehicles`` (32), ``duration`` (10 s), ``window`` (64), ``workers`` (2: the
load keeps flowing while one process waits for a core), ``payload`` (bytes, 0: a realistic
~300-byte telemetry message), ``baseline`` (qos0 | none).

Figures: ``msgs_per_s`` (all acknowledged messages over the span from the first message to the
last PUBACK), ``p50_ms``/``p99_ms`` (PUBLISH to PUBACK), ``lost`` (sent, never acknowledged),
``broker_cpu_pct`` and ``sim_cpu_pct`` (CPU used over the run; 100 = one core).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import tempfile
import threading
from pathlib import Path
from typing import Any

from fleetgate.bench.report import Outcome
from fleetgate.errors import UserError

DEFAULTS: dict[str, str] = {
    "vehicles": "32",
    "duration": "10",
    "window": "64",
    "workers": "2",
    "payload": "0",
    "baseline": "qos0",
}


def parse_params(params: dict[str, str]) -> dict[str, Any]:
    """Validated parameters with defaults; UserError names the bad one. Pure."""
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise UserError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(DEFAULTS)}")
    merged = DEFAULTS | params
    out: dict[str, Any] = {}
    limits = {
        "vehicles": (1, 15_000),
        "duration": (1, 3600),
        "window": (1, 65_535),
        "workers": (1, 64),
        "payload": (0, 1_000_000),
    }
    for key, (low, high) in limits.items():
        try:
            value = int(merged[key])
        except ValueError:
            raise UserError(f"parameter {key}={merged[key]!r} is not an integer") from None
        if not low <= value <= high:
            raise UserError(f"parameter {key}={value} must be from {low} to {high}")
        out[key] = value
    if merged["baseline"] not in ("qos0", "none"):
        raise UserError(f"parameter baseline={merged['baseline']!r} must be qos0 or none")
    out["baseline"] = merged["baseline"]
    return out


def _cpu_ticks(pid: int | None) -> float:
    if pid is None:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _flood(
    home: Path,
    port: int,
    p: dict[str, Any],
    *,
    qos: int,
    broker_pid: int | None,
    stop: threading.Event,
) -> dict[str, Any]:
    from simulator.settings import SimOptions, SimSettings
    from simulator.supervisor import run_fleet

    options = SimOptions(
        vehicles=p["vehicles"],
        profile="flood",
        duration_s=p["duration"],
        window=p["window"],
        workers=p["workers"],
        qos=qos,
        payload_bytes=p["payload"],
        broker=f"127.0.0.1:{port}",
        ramp_per_s=2000,
        max_attempts=3,
    )
    settings = SimSettings(home=home, sim=options)
    broker0, sim0 = _cpu_ticks(broker_pid), _children_cpu()
    summary = run_fleet(settings, stop=stop)
    broker_cpu, sim_cpu = _cpu_ticks(broker_pid) - broker0, _children_cpu() - sim0
    flood = summary["flood"]
    span = flood["span_s"] or 0.0
    return {
        "msgs_per_s": flood["msgs_per_s"],
        "p50_ms": summary["publish_ack_ms"]["p50"],
        "p99_ms": summary["publish_ack_ms"]["p99"],
        "messages": flood["messages"],
        "lost": summary["unacked"] if qos else None,
        "qos": qos,
        "connected": summary["peak_connected"],
        "errors": summary["errors"],
        "span_s": flood["span_s"],
        "broker_cpu_pct": round(broker_cpu / span * 100, 1) if span else None,
        "sim_cpu_pct": round(sim_cpu / span * 100, 1) if span else None,
    }


async def run(params: dict[str, str]) -> Outcome:
    """The ``publish`` scenario (see the module doc)."""
    from broker.mosquitto import MosquittoBroker
    from broker.settings import BrokerOptions
    from certs import store
    from certs.layout import PkiPaths

    p = parse_params(params)
    stop = threading.Event()
    with tempfile.TemporaryDirectory(prefix="fleetgate-bench-") as tmp:
        home = Path(tmp)
        await asyncio.to_thread(store.ensure_pki, home, services=("broker-admin",))
        options = BrokerOptions(
            kind="mosquitto",
            port=0,
            max_connections=max(1000, p["vehicles"] * 2),
            max_pending=512,
            max_inflight=1000,
            max_queued=100_000,
        )
        broker = MosquittoBroker(options=options, paths=PkiPaths(home))
        await broker.start()
        try:
            result = await asyncio.to_thread(
                _flood, home, broker.port, p, qos=1, broker_pid=broker.child_pid, stop=stop
            )
            baseline = None
            if p["baseline"] == "qos0":
                baseline = await asyncio.to_thread(
                    _flood, home, broker.port, p, qos=0, broker_pid=broker.child_pid, stop=stop
                )
        except asyncio.CancelledError:
            stop.set()
            raise
        finally:
            with contextlib.suppress(Exception):
                await broker.stop()
    notes = [
        "QoS 1 over mutual TLS into Mosquitto 2.0 alone (fleetgate's configuration), "
        f"{p['vehicles']} vehicle connections in {p['workers']} process(es), "
        f"{p['window']} messages in flight each; msgs_per_s counts acknowledged messages",
        "baseline: the same connections publishing QoS 0 (no acknowledgements; a PINGREQ "
        "round trip at the end so only what Mosquitto has read counts)"
        if baseline is not None
        else "no baseline (baseline=none)",
        "Mosquitto is single-threaded: broker_cpu_pct near 100 means the broker, not the "
        "simulator, is the limit; other processes on the machine make the figures noisy",
    ]
    return Outcome(result=result, headline="msgs_per_s", baseline=baseline, params=p, notes=notes)
