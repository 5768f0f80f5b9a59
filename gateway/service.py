"""One gateway instance: settings -> MQTT link + Kafka clients -> uplink and downlink loops.

Start order: Kafka producer (waits for Kafka), topics, the MQTT link (persistent session,
uplink subscriptions), the outbound consumer. Stop (``stop`` set, e.g. by Ctrl-C/SIGTERM):
stop reading MQTT, let Kafka acknowledge what was taken and PUBACK it, stop consuming and
wait for the broker's acknowledgements of what was published, commit, disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable
from functools import partial
from typing import Any, TypeVar

from aiokafka.errors import KafkaError

from certs.layout import PkiPaths
from fleetgate.errors import UserError
from fleetgate.logs import get_logger, quiet_drivers
from fleetgate.stack.kafka import create_topics
from gateway import kafka as kafka_io
from gateway.downlink import DownlinkBridge
from gateway.metrics import GatewayMetrics, MetricsServer
from gateway.mqtt import MqttLink
from gateway.mqtt_options import LinkOptions, tls_context
from gateway.producer import ReliableProducer
from gateway.settings import GatewaySettings
from gateway.uplink import UplinkBridge
from schemas.topics import KafkaTopics, TopicError, shared_subscription, uplink_filters

log = get_logger(__name__)

T = TypeVar("T")
DRAIN_S = 15.0


class Stopped(Exception):
    """``stop`` was set while the gateway was still starting."""


def subscriptions(settings: GatewaySettings) -> list[tuple[str, int]]:
    """The uplink filters, as shared subscriptions when a share group is set."""
    group = settings.gateway.shared_group
    filters = uplink_filters()
    if group:
        filters = tuple(shared_subscription(f, group) for f in filters)
    return [(f, 1) for f in filters]


class Gateway:
    """Run with :meth:`run`; :attr:`ready` is set once both loops are going."""

    def __init__(self, *, settings: GatewaySettings, metrics: GatewayMetrics | None = None):
        self.settings = settings
        self.metrics = metrics or GatewayMetrics()
        self.ready = asyncio.Event()
        self.uplink: UplinkBridge | None = None
        self.downlink: DownlinkBridge | None = None
        self.link: MqttLink | None = None
        self.metrics_port: int | None = None
        try:
            self.topics = KafkaTopics(settings.kafka.topic_prefix)
        except TopicError as exc:
            raise UserError(f"invalid setting kafka.topic_prefix: {exc}") from None

    def _credentials(self) -> tuple[str, str, str]:
        paths = PkiPaths(self.settings.home)
        name = self.settings.certificate_name
        cert, key = paths.service(name)
        for path in (paths.ca_chain, cert, key):
            if not path.is_file():
                raise UserError(
                    f"{path} is missing: the gateway needs the service certificate {name!r} "
                    f"(fleetgate certs issue service {name})"
                )
        try:  # fail now, in one line, rather than at the first connection
            tls_context(ca_chain=str(paths.ca_chain), certfile=str(cert), keyfile=str(key))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise UserError(f"cannot use the service certificate {name!r}: {exc}") from None
        return str(paths.ca_chain), str(cert), str(key)

    async def run(self, *, stop: asyncio.Event) -> None:
        """Bridge until ``stop`` is set, then drain and return."""
        ca, cert, key = self._credentials()
        s, opts = self.settings, self.settings.gateway
        async with contextlib.AsyncExitStack() as stack:
            if opts.metrics:
                try:
                    server = MetricsServer(
                        metrics=self.metrics, host=opts.metrics_host, port=opts.metrics_port
                    )
                except OSError as exc:
                    raise UserError(
                        f"cannot serve metrics on {opts.metrics_host}:{opts.metrics_port}: "
                        f"{exc.strerror or exc}"
                    ) from None
                stack.callback(server.close)
                self.metrics_port = server.port
            try:
                await self._start(stack, stop=stop, ca=ca, cert=cert, key=key)
            except Stopped:
                return
            log.info("gateway running", client_id=s.client_id, uplink=opts.uplink,
                     downlink=opts.downlink, shared_group=opts.shared_group,
                     slice=f"{opts.slice}/{opts.slices}")  # fmt: skip
            self.ready.set()
            await stop.wait()
            log.info("gateway stopping: draining")
            await self._drain()

    async def _until(self, stop: asyncio.Event, work: Awaitable[T]) -> T:
        task: asyncio.Future[T] = asyncio.ensure_future(work)
        stopper: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
        both: list[asyncio.Future[Any]] = [task, stopper]
        try:
            await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise Stopped
        return task.result()

    async def _start(
        self, stack: contextlib.AsyncExitStack, *, stop: asyncio.Event, ca: str, cert: str, key: str
    ) -> None:
        s, opts = self.settings, self.settings.gateway
        bootstrap = s.kafka.bootstrap
        producer = ReliableProducer(
            factory=partial(
                kafka_io.make_producer,
                bootstrap=bootstrap,
                client_id=f"{s.client_id}-producer",
                linger_ms=opts.linger_ms,
                request_timeout_ms=opts.request_timeout_ms,
            ),
            bootstrap=bootstrap,
            metrics=self.metrics,
        )
        stack.push_async_callback(producer.stop)
        if opts.ensure_topics:
            await self._until(stop, self._ensure_topics())
        await self._until(stop, producer.start(topics=self.topics.all()))

        uplink = UplinkBridge(
            producer=producer,
            kafka=self.topics,
            metrics=self.metrics,
            max_inflight=opts.max_inflight,
            slice_index=opts.slice,
            slices=opts.slices,
        )
        self.uplink = uplink

        def on_connection(up: bool) -> None:
            self.metrics.mqtt_connected.set(1 if up else 0)
            uplink.on_connection(up)

        link = MqttLink(
            options=LinkOptions(
                host=s.mqtt.host,
                port=s.mqtt.port,
                client_id=s.client_id,
                keepalive_s=opts.keepalive_s,
                protocol=opts.protocol,
                session_expiry_s=opts.session_expiry_s,
                max_outgoing_inflight=opts.downlink_max_inflight,
            ),
            context=tls_context(ca_chain=ca, certfile=cert, keyfile=key),
            on_message=uplink.on_message,
            subscriptions=subscriptions(s) if opts.uplink else (),
            on_connection=on_connection,
        )
        uplink.bind(link)
        self.link = link
        stack.push_async_callback(link.close)
        gauges = asyncio.create_task(self._gauges(), name="gauges")
        stack.push_async_callback(_cancel, gauges)
        await self._until(stop, link.start(wait_s=None))
        if not opts.downlink:
            return
        consumer = kafka_io.make_consumer(
            bootstrap=bootstrap,
            client_id=f"{s.client_id}-consumer",
            group_id=opts.consumer_group,
            fetch_max_wait_ms=opts.fetch_max_wait_ms,
            max_poll_records=min(opts.downlink_max_inflight, 2000),
        )
        downlink = DownlinkBridge(
            consumer=consumer,
            producer=producer,
            link=link,
            kafka=self.topics,
            metrics=self.metrics,
            max_inflight=opts.downlink_max_inflight,
            commit_interval_ms=opts.commit_interval_ms,
        )
        self.downlink = downlink
        kafka_io.subscribe(consumer=consumer, topic=self.topics.outbound, listener=downlink)
        stack.push_async_callback(_stop_client, consumer)
        await self._until(stop, kafka_io.start_when_ready(
            client=consumer, what="consumer", bootstrap=bootstrap))  # fmt: skip
        loop_task = asyncio.create_task(downlink.run(), name="downlink")
        stack.push_async_callback(_cancel, loop_task)
        await self._until(stop, downlink.wait_assigned())

    async def _ensure_topics(self) -> None:
        """Create the project's Kafka topics if missing, waiting for Kafka to answer."""
        kafka = self.settings.kafka
        attempt = 0
        while True:
            try:
                with quiet_drivers():
                    await create_topics(
                        bootstrap=kafka.bootstrap,
                        names=self.topics.all(),
                        partitions=kafka.partitions,
                        replication_factor=kafka.replication_factor,
                        attempts=3,
                    )
                return
            except (KafkaError, OSError) as exc:
                if attempt % 15 == 0:
                    log.warning("Kafka not reachable yet", bootstrap=kafka.bootstrap,
                                error=str(exc) or type(exc).__name__)  # fmt: skip
                attempt += 1
                await asyncio.sleep(2.0)

    async def _gauges(self) -> None:
        while True:
            if self.uplink is not None:
                self.metrics.uplink_inflight.set(self.uplink.pending)
            if self.downlink is not None:
                self.metrics.downlink_inflight.set(self.downlink.inflight)
            await asyncio.sleep(1.0)

    async def _drain(self) -> None:
        # keep reading (the broker's PUBACKs of our publishes) but take no new uplink message:
        # those not taken stay in our session at the broker and come back on the next connect
        if self.uplink is not None:
            self.uplink.stop_taking()
        if self.link is not None:
            self.link.resume_reading()
        waits: list[Awaitable[Any]] = []
        if self.downlink is not None:
            waits.append(self.downlink.drain(DRAIN_S / 3))
        if self.uplink is not None:
            waits.append(self.uplink.drain(DRAIN_S))
        results = await asyncio.gather(*waits)
        if self.uplink is not None and results and results[-1] is False:
            log.warning("stopping with uplink messages not in Kafka; the broker redelivers them",
                        pending=self.uplink.pending)  # fmt: skip


async def _stop_client(client: Any) -> None:
    try:
        await asyncio.wait_for(client.stop(), 10)
    except Exception as exc:
        log.debug("ignored at shutdown", error=repr(exc))


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
