"""Async access to Cassandra: the driver's futures bridged to asyncio, prepared statements cached.

The DataStax driver runs its I/O on its own event thread and completes a ``ResponseFuture``
there; :func:`_await_response` hands each page back to the asyncio loop with
``loop.call_soon_threadsafe``, so a coroutine awaiting a query never blocks the loop. Only
``connect``, ``prepare`` and ``close`` (rare, and blocking in the driver) run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from cassandra import ConsistencyLevel, DriverException
from cassandra.cluster import (
    EXEC_PROFILE_DEFAULT,
    Cluster,
    ExecutionProfile,
    NoHostAvailable,
    ResponseFuture,
    Session,
)
from cassandra.policies import DCAwareRoundRobinPolicy, TokenAwarePolicy
from cassandra.query import (
    BatchStatement,
    BatchType,
    PreparedStatement,
    SimpleStatement,
    dict_factory,
)

from fleetgate.errors import ServiceUnavailable
from fleetgate.logs import get_logger

Row = dict[str, Any]
Params = Sequence[object] | Mapping[str, object]

_log = get_logger(__name__)


class StoreError(Exception):
    """A query failed (timeout, unavailable replicas, invalid statement): one line, with cause."""


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def _statement_head(query: str) -> str:
    """The first words of a statement, to say which one failed without dumping it all."""
    return " ".join(query.split()[:4])


def describe_connect_error(exc: BaseException) -> str:
    """One short line for a failed connect: the per-host reasons of ``NoHostAvailable``."""
    errors = getattr(exc, "errors", None)
    if isinstance(errors, dict) and errors:
        reasons = []
        for host, error in errors.items():
            text = str(error)
            if "Last error: " in text:
                text = text.rsplit("Last error: ", 1)[1]
            reasons.append(f"{host}: {' '.join(text.split())}")
        return "; ".join(reasons)[:500]
    return _one_line(exc)


def applied(rows: Sequence[Row]) -> bool:
    """Whether a lightweight transaction (``... IF ...``) was applied (pure)."""
    return bool(rows) and bool(rows[0].get("[applied]", False))


async def _await_response(future: ResponseFuture) -> list[Row]:
    """Every row of ``future`` (all pages), awaited without blocking the event loop."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[list[Row]] = loop.create_future()
    rows: list[Row] = []

    def settle(result: list[Row] | None, error: BaseException | None) -> None:
        if done.done():  # cancelled by the awaiting side
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result if result is not None else [])

    def hand_over(result: list[Row] | None, error: BaseException | None) -> None:
        # RuntimeError: the loop closed while the query ran, so nobody is waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, result, error)

    def on_page(page: Sequence[Row] | None) -> None:  # runs on the driver's event thread
        if page:
            rows.extend(page)
        if future.has_more_pages:
            future.start_fetching_next_page()
        else:
            hand_over(rows, None)

    def on_error(exc: BaseException) -> None:  # runs on the driver's event thread
        hand_over(None, exc)

    future.add_callbacks(callback=on_page, errback=on_error)
    return await done


class CassandraSession:
    """One driver ``Cluster``/``Session`` per process, with an asyncio surface.

    Rows come back as ``dict``s. Reads and writes default to ``LOCAL_QUORUM`` (one replica on
    a single node), lightweight transactions to ``LOCAL_SERIAL``.
    """

    def __init__(self) -> None:
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._prepared: dict[str, asyncio.Future[PreparedStatement]] = {}
        self.keyspace: str | None = None

    @property
    def connected(self) -> bool:
        return self._session is not None

    def _require(self) -> Session:
        if self._session is None:
            raise StoreError("CassandraSession is not connected")
        return self._session

    async def connect(
        self,
        *,
        hosts: Sequence[str],
        port: int,
        keyspace: str | None,
        local_dc: str | None = None,
        timeout_s: float = 10.0,
        request_timeout_s: float = 10.0,
        protocol_version: int = 5,
    ) -> None:
        """Connect (in a worker thread); raise :class:`ServiceUnavailable` if no host answers.

        ``keyspace=None`` connects without one (to create it); queries then qualify names.
        """
        if self._session is not None:
            raise StoreError("CassandraSession is already connected")
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy(local_dc=local_dc)),
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
            serial_consistency_level=ConsistencyLevel.LOCAL_SERIAL,
            request_timeout=request_timeout_s,
            row_factory=dict_factory,
        )
        cluster = Cluster(
            contact_points=list(hosts),
            port=port,
            protocol_version=protocol_version,
            connect_timeout=timeout_s,
            control_connection_timeout=timeout_s,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        )
        try:
            session = await asyncio.to_thread(cluster.connect, keyspace)
        except (NoHostAvailable, DriverException, OSError) as exc:
            await asyncio.to_thread(cluster.shutdown)
            where = ",".join(hosts)
            raise ServiceUnavailable(
                f"Cassandra at {where}:{port} unavailable: {describe_connect_error(exc)}"
            ) from exc
        self._cluster, self._session, self.keyspace = cluster, session, keyspace
        _log.debug("cassandra connected", hosts=list(hosts), port=port, keyspace=keyspace)

    async def prepare(self, *, query: str) -> PreparedStatement:
        """The prepared statement for ``query``, prepared once per session (cached)."""
        session = self._require()
        cached = self._prepared.get(query)
        if cached is None:
            cached = asyncio.ensure_future(asyncio.to_thread(session.prepare, query))
            self._prepared[query] = cached
        try:
            return await asyncio.shield(cached)
        except Exception as exc:
            if self._prepared.get(query) is cached:
                del self._prepared[query]  # let the next call try again
            raise StoreError(f"cannot prepare {_statement_head(query)}: {_one_line(exc)}") from exc

    async def execute(
        self,
        *,
        query: str,
        params: Params | None = None,
        prepared: bool = True,
        timeout_s: float | None = None,
        fetch_size: int = 5000,
    ) -> list[Row]:
        """Run one statement and return all its rows (every page).

        ``prepared=True`` (the default) prepares and caches ``query``; use ``prepared=False``
        for DDL and other one-off statements (then ``params`` binds ``%s`` placeholders).
        """
        session = self._require()
        target: PreparedStatement | SimpleStatement | Any
        values: Params | None = None
        if prepared:
            ps = await self.prepare(query=query)
        try:
            if prepared:
                target = ps.bind(params if params is not None else ())
                target.fetch_size = fetch_size
            else:
                target, values = SimpleStatement(query, fetch_size=fetch_size), params
            if timeout_s is None:
                future = session.execute_async(target, values)
            else:
                future = session.execute_async(target, values, timeout=timeout_s)
            return await _await_response(future)
        except Exception as exc:  # driver and server errors alike become one line
            raise StoreError(f"{_statement_head(query)}: {_one_line(exc)}") from exc

    async def execute_batch(
        self,
        *,
        statements: Sequence[tuple[str, Params]],
        logged: bool = True,
        timeout_s: float | None = None,
    ) -> list[Row]:
        """Run prepared ``(query, params)`` pairs as one batch: all or nothing (``logged``).

        For keeping a table and its lookup table in step (vehicles + app_vehicles,
        commands + commands_by_vin); not a bulk-load tool. A conditional batch returns the
        ``[applied]`` row.
        """
        session = self._require()
        if not statements:
            return []
        prepared = [await self.prepare(query=q) for q, _ in statements]
        head = _statement_head(statements[0][0])
        try:
            batch = BatchStatement(batch_type=BatchType.LOGGED if logged else BatchType.UNLOGGED)
            for ps, (_, params) in zip(prepared, statements, strict=True):
                batch.add(ps, params)
            if timeout_s is None:
                future = session.execute_async(batch)
            else:
                future = session.execute_async(batch, timeout=timeout_s)
            return await _await_response(future)
        except Exception as exc:
            raise StoreError(f"batch of {len(statements)} ({head} ...): {_one_line(exc)}") from exc

    async def close(self) -> None:
        """Shut the driver down (in a worker thread); safe to call twice."""
        cluster, self._cluster, self._session = self._cluster, None, None
        self._prepared.clear()
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)
