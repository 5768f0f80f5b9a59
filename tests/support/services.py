"""Real Kafka and Cassandra for the test session: named by environment variables, else
testcontainers when a Docker engine answers, else local child processes from Maven jars.

Started once per test run; tests isolate themselves by topic prefix and keyspace.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from fleetgate.settings import default_cache
from fleetgate.stack import kafka, maven, prereq
from fleetgate.stack.process import ChildProcess


def docker_engine_answers() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        proc = subprocess.run([docker, "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


class Services:
    """Lazily started, shared by the whole session; ``close`` stops what it started."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fleetgate-test-"))
        self.children: list[ChildProcess] = []
        self.containers: list[Any] = []
        self._futures: dict[str, Future[str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.docker = docker_engine_answers()

    def _start(self, name: str, fn: Callable[[], str]) -> Future[str]:
        with self._lock:
            if name not in self._futures:
                future: Future[str] = Future()

                def run() -> None:
                    # The children die with the thread that spawned them (PR_SET_PDEATHSIG),
                    # so this thread lives until the session ends.
                    try:
                        future.set_result(fn())
                    except BaseException as exc:
                        future.set_exception(exc)
                    self._stop.wait()

                thread = threading.Thread(target=run, name=f"own-{name}", daemon=True)
                thread.start()
                self._threads.append(thread)
                self._futures[name] = future
            return self._futures[name]

    def start_kafka(self) -> None:
        self._start("kafka", self._kafka)

    def start_cassandra(self) -> None:
        self._start("cassandra", self._cassandra)

    def kafka_bootstrap(self) -> str:
        return self._start("kafka", self._kafka).result(timeout=600)

    def cassandra_contact(self) -> tuple[str, int]:
        host, port = self._start("cassandra", self._cassandra).result(timeout=600).rsplit(":", 1)
        return host, int(port)

    # -- Kafka -----------------------------------------------------------------------
    def _kafka(self) -> str:
        if env := os.environ.get("FLEETGATE_TEST_KAFKA"):
            return env
        if self.docker:
            from testcontainers.kafka import KafkaContainer

            container = KafkaContainer("apache/kafka:4.1.1").with_kraft()
            container.start()
            self.containers.append(container)
            return str(container.get_bootstrap_server())
        java = prereq.require_java()
        lib = maven.resolve(
            name=f"kafka-{kafka.KAFKA_VERSION}",
            coordinates=kafka.MAVEN_COORDINATES,
            cache_dir=default_cache(),
        )
        port, controller = prereq.free_port(), prereq.free_port()
        conf, data = self.root / "kafka" / "conf", self.root / "kafka" / "data"
        kafka.write_config(
            conf_dir=conf, data_dir=data, host="127.0.0.1", port=port, controller_port=controller
        )
        kafka.format_storage(java=java, lib_dir=lib, conf_dir=conf, data_dir=data)
        child = ChildProcess(
            name="kafka",
            argv=kafka.command(java=java, lib_dir=lib, conf_dir=conf, heap_mb=512),
            log_path=self.root / "kafka.log",
        )
        child.start()
        self.children.append(child)
        bootstrap = f"127.0.0.1:{port}"
        asyncio.run(kafka.wait_ready(bootstrap=bootstrap, timeout_s=120))
        return bootstrap

    # -- Cassandra -------------------------------------------------------------------
    def _cassandra(self) -> str:
        if env := os.environ.get("FLEETGATE_TEST_CASSANDRA"):
            return env
        if self.docker:
            from testcontainers.cassandra import CassandraContainer

            container = CassandraContainer("cassandra:5.0.6")
            container.start()
            self.containers.append(container)
            host, port = container.get_contact_points()[0]
            return f"{host}:{port}"
        from fleetgate.stack import cassandra

        java = prereq.require_java()
        lib = maven.resolve(
            name=f"cassandra-{cassandra.CASSANDRA_VERSION}",
            coordinates=cassandra.MAVEN_COORDINATES,
            cache_dir=default_cache(),
        )
        port, storage = prereq.free_port(), prereq.free_port()
        conf, data = self.root / "cassandra" / "conf", self.root / "cassandra" / "data"
        cassandra.write_config(
            conf_dir=conf, data_dir=data, host="127.0.0.1", cql_port=port, storage_port=storage
        )
        child = ChildProcess(
            name="cassandra",
            argv=cassandra.command(
                java=java, lib_dir=lib, conf_dir=conf, data_dir=data, heap_mb=1024
            ),
            log_path=self.root / "cassandra.log",
        )
        child.start()
        self.children.append(child)
        asyncio.run(cassandra.wait_ready(host="127.0.0.1", port=port, timeout_s=240))
        return f"127.0.0.1:{port}"

    def close(self) -> None:
        for child in reversed(self.children):
            child.stop(timeout_s=30)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for child in reversed(self.children):
            child.stop(timeout_s=30)
        for container in self.containers:
            container.stop()
        shutil.rmtree(self.root, ignore_errors=True)
