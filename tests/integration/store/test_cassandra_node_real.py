"""A real local Cassandra node from fleetgate.stack.cassandra: cold start, clean SIGTERM,
warm restart on the same data, no process left behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from fleetgate.errors import ServiceUnavailable
from fleetgate.settings import default_cache
from fleetgate.stack import cassandra, maven
from fleetgate.stack.prereq import free_port
from fleetgate.stack.process import ChildProcess, pid_alive

pytestmark = pytest.mark.integration


async def test_wait_ready_times_out_with_one_line() -> None:
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match=r"not ready after 2s: .*") as info:
        await cassandra.wait_ready(host="127.0.0.1", port=free_port(), timeout_s=2)
    assert "\n" not in str(info.value)
    assert time.monotonic() - started < 8


@pytest.mark.slow
async def test_node_cold_start_sigterm_and_warm_restart(tmp_path: Path) -> None:
    java = shutil.which("java")
    if java is None:
        pytest.skip("no java on PATH")
    lib = maven.resolve(
        name=f"cassandra-{cassandra.CASSANDRA_VERSION}",
        coordinates=cassandra.MAVEN_COORDINATES,
        cache_dir=default_cache(),
    )
    conf, data = tmp_path / "conf", tmp_path / "data"
    port, storage = free_port(), free_port()
    cassandra.write_config(
        conf_dir=conf, data_dir=data, host="127.0.0.1", cql_port=port, storage_port=storage
    )
    argv = cassandra.command(java=java, lib_dir=lib, conf_dir=conf, data_dir=data, heap_mb=512)

    timings: dict[str, float] = {}
    for run in ("cold", "warm"):
        child = ChildProcess(name="cassandra", argv=argv, log_path=tmp_path / f"{run}.log")
        started = time.monotonic()
        child.start()
        try:
            version = await cassandra.wait_ready(host="127.0.0.1", port=port, timeout_s=240)
            timings[run] = time.monotonic() - started
            assert version == cassandra.CASSANDRA_VERSION
        finally:
            pid = child.pid
            code = await asyncio.to_thread(child.stop, timeout_s=60)
        assert pid is not None
        assert not pid_alive(pid)
        # SIGTERM (143) after Cassandra's own drain; never the SIGKILL fallback (-9)
        assert code in (0, 143, -15), code
        log = (tmp_path / f"{run}.log").read_text(errors="replace")
        assert "Cassandra shutdown complete" in log or "Shutting down" in log, log[-2000:]
    assert (data / "data" / "system").is_dir()
    print(f"cassandra cold start {timings['cold']:.1f}s, warm start {timings['warm']:.1f}s")
    assert os.listdir(data / "commitlog")
