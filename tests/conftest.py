"""Session-wide real services. Integration and e2e tests share one Kafka and one Cassandra
per run and isolate themselves with a unique topic prefix and keyspace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.support.services import Services

_services: Services | None = None


def _get() -> Services:
    global _services
    if _services is None:
        _services = Services()
    return _services


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Start Kafka and Cassandra in the background as soon as a collected test needs them."""
    used: set[str] = set()
    for item in items:
        used.update(getattr(item, "fixturenames", ()))
    if "kafka_bootstrap" in used:
        _get().start_kafka()
    if used & {"cassandra_contact", "keyspace"}:
        _get().start_cassandra()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _services is not None:
        _services.close()


@pytest.fixture(scope="session")
def run_id() -> str:
    """Unique per test run: the suffix of every topic prefix and keyspace of this run."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _get().kafka_bootstrap()


@pytest.fixture(scope="session")
def cassandra_contact() -> tuple[str, int]:
    return _get().cassandra_contact()


@pytest.fixture
def topic_prefix(run_id: str, request: pytest.FixtureRequest) -> str:
    """A Kafka topic prefix unique to this test."""
    return f"t{run_id}.{abs(hash(request.node.nodeid)) % 10**8}."


@pytest.fixture(scope="session")
def keyspace(run_id: str) -> Iterator[str]:
    """A keyspace unique to this test run."""
    return f"fg_test_{run_id}"
