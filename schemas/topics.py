"""Every MQTT topic parsed and built, every Kafka topic named: the one place that knows them.

Pure: no I/O, no project imports except :mod:`schemas.ids`.

MQTT topics (CONTRACT §3)::

    vehicles/<VIN>/connection                      uplink    Connectivity
    vehicles/<VIN>/telemetry                       uplink    Telemetry
    vehicles/<VIN>/shadow/reported                 uplink    ShadowReported
    vehicles/<VIN>/commands/<command_id>/result    uplink    CommandResult
    vehicles/<VIN>/ota/status                      uplink    OtaStatus
    vehicles/<VIN>/ota/chunks/request              uplink    OtaChunkRequest
    vehicles/<VIN>/commands/<command_id>           downlink  CommandDownlink
    vehicles/<VIN>/shadow/desired                  downlink  ShadowDesired
    vehicles/<VIN>/ota/jobs                        downlink  OtaJob
    vehicles/<VIN>/ota/chunks/<job_id>/<index>     downlink  raw bytes
    vehicles/<VIN>/errors                          downlink  ErrorNotice
    apps/<app id>/commands                         uplink    CommandRequest
    apps/<app id>/vehicles/<VIN>/shadow/desired    uplink    AppShadowDesired
    apps/<app id>/commands/<command_id>/status     downlink  CommandStatus
    apps/<app id>/vehicles/<VIN>/shadow            downlink  ShadowDocument
    apps/<app id>/errors                           downlink  ErrorNotice (extension)

``apps/<app id>/errors`` is not in the contract: it tells an app why a message that could not
even be attributed to a command (bad JSON, no ``command_id``) was rejected. It lies under
``apps/<own id>/#``, which an app may subscribe anyway.

``command_id`` is a UUID in canonical lowercase form; ``job_id`` 1-64 of ``A-Za-z0-9_.-``;
a chunk ``index`` a decimal without sign or leading zeros, below :data:`MAX_CHUNK_INDEX`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from schemas.ids import (
    Identity,
    Role,
)
from schemas.kafka import (
    HEADER_MESSAGE_ID,
    HEADER_QOS,
    HEADER_RECEIVED_AT,
    HEADER_REJECT_REASON,
    HEADER_RETAIN,
    HEADER_SENDER,
    HEADER_SOURCE_TOPIC,
    HEADER_TARGET_TOPIC,
    KafkaTopics,
)
from schemas.mqtt_filters import shared_subscription, topic_matches, validate_filter
from schemas.topic_kinds import (
    APP_KINDS,
    FIELDS,
    MAX_CHUNK_INDEX,
    TEMPLATES,
    UPLINK_KINDS,
    Direction,
    TopicError,
    TopicKind,
    check_app_id,
    check_index,
    check_vin,
    parse_index,
    validate_command_id,
    validate_job_id,
)

__all__ = [
    "HEADER_MESSAGE_ID",
    "HEADER_QOS",
    "HEADER_RECEIVED_AT",
    "HEADER_REJECT_REASON",
    "HEADER_RETAIN",
    "HEADER_SENDER",
    "HEADER_SOURCE_TOPIC",
    "HEADER_TARGET_TOPIC",
    "MAX_CHUNK_INDEX",
    "MAX_TOPIC_LENGTH",
    "Direction",
    "KafkaTopics",
    "MqttTopics",
    "Topic",
    "TopicError",
    "TopicKind",
    "downlink_filters",
    "parse_topic",
    "shared_subscription",
    "topic_matches",
    "uplink_filters",
    "validate_command_id",
    "validate_filter",
    "validate_job_id",
]

MAX_TOPIC_LENGTH: Final = 256
"""Longest topic :func:`parse_topic` looks at; every fleetgate topic is far shorter."""
VEHICLES: Final = "vehicles"
APPS: Final = "apps"

# --------------------------------------------------------------------------------------------
# Topic


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed fleetgate MQTT topic. Build one with :class:`MqttTopics`; ``str()`` gives the
    MQTT topic string. Constructing it directly validates every field."""

    kind: TopicKind
    vin: str | None = None
    app_id: str | None = None
    command_id: str | None = None
    job_id: str | None = None
    index: int | None = None

    def __post_init__(self) -> None:
        wanted = FIELDS[self.kind]
        for name in ("vin", "app_id", "command_id", "job_id", "index"):
            value = getattr(self, name)
            if (value is None) == (name in wanted):
                state = "needs" if value is None else "has no"
                raise TopicError(f"a {self.kind.value} topic {state} {name.replace('_', ' ')}")
        if self.vin is not None:
            check_vin(self.vin)
        if self.app_id is not None:
            check_app_id(self.app_id)
        if self.command_id is not None:
            validate_command_id(self.command_id)
        if self.job_id is not None:
            validate_job_id(self.job_id)
        if self.index is not None:
            check_index(self.index)

    def __str__(self) -> str:
        return TEMPLATES[self.kind].format(
            vin=self.vin,
            app_id=self.app_id,
            command_id=self.command_id,
            job_id=self.job_id,
            index=self.index,
        )

    @property
    def direction(self) -> Direction:
        return self.kind.direction

    @property
    def owner(self) -> Identity:
        """The vehicle or app whose id is in the topic (the only device that may use it)."""
        if self.kind in APP_KINDS:
            return Identity(role=Role.APP, id=self.app_id or "")
        return Identity(role=Role.VEHICLE, id=self.vin or "")

    @property
    def owner_id(self) -> str:
        """The owner's id without building an :class:`Identity` (VIN or app id)."""
        owner = self.app_id if self.kind in APP_KINDS else self.vin
        assert owner is not None
        return owner

    @property
    def target_vin(self) -> str | None:
        """The vehicle the topic is about, i.e. the Kafka key; None for ``apps/<id>/commands``
        and app status/error topics (there the VIN is in the payload, if anywhere)."""
        return self.vin


# slot setters that bypass the frozen __setattr__ and __post_init__: parse_topic has validated
# every level already, and this is ~3x faster than the checked constructor
_SET_KIND = Topic.__dict__["kind"].__set__
_SET_VIN = Topic.__dict__["vin"].__set__
_SET_APP_ID = Topic.__dict__["app_id"].__set__
_SET_COMMAND_ID = Topic.__dict__["command_id"].__set__
_SET_JOB_ID = Topic.__dict__["job_id"].__set__
_SET_INDEX = Topic.__dict__["index"].__set__


def _make(
    kind: TopicKind,
    vin: str | None = None,
    app_id: str | None = None,
    command_id: str | None = None,
    job_id: str | None = None,
    index: int | None = None,
) -> Topic:
    topic = object.__new__(Topic)
    _SET_KIND(topic, kind)
    _SET_VIN(topic, vin)
    _SET_APP_ID(topic, app_id)
    _SET_COMMAND_ID(topic, command_id)
    _SET_JOB_ID(topic, job_id)
    _SET_INDEX(topic, index)
    return topic


def parse_topic(topic: str) -> Topic:
    """Parse an MQTT topic name into a :class:`Topic`, or raise :class:`TopicError` saying why.

    Runs per message: a length check, one ``split`` and a few comparisons.
    """
    try:
        return _parse(topic)
    except TopicError as exc:
        raise TopicError(f"topic {_shorten(topic)!r}: {exc}") from None


def _shorten(topic: str) -> str:
    return topic if len(topic) <= 120 else topic[:117] + "..."


def _parse(topic: str) -> Topic:
    if not isinstance(topic, str):
        raise TopicError(f"must be a string, got {type(topic).__name__}")
    if not topic:
        raise TopicError("is empty")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise TopicError(f"is too long ({len(topic)} > {MAX_TOPIC_LENGTH} characters)")
    if "+" in topic or "#" in topic:
        raise TopicError("wildcard characters (+ or #) are not allowed in a topic name")
    levels = topic.split("/")
    n = len(levels)
    root = levels[0]
    if root == VEHICLES and n >= 3:
        kind, fields = _vehicle_shape(levels, n)
        vin = check_vin(levels[1])
        if "command_id" in fields:
            return _make(kind, vin=vin, command_id=validate_command_id(levels[3]))
        if "job_id" in fields:
            return _make(
                kind, vin=vin, job_id=validate_job_id(levels[4]), index=parse_index(levels[5])
            )
        return _make(kind, vin=vin)
    if root == APPS and n >= 3:
        kind, fields = _app_shape(levels, n)
        app_id = check_app_id(levels[1])
        if "command_id" in fields:
            return _make(kind, app_id=app_id, command_id=validate_command_id(levels[3]))
        if "vin" in fields:
            return _make(kind, app_id=app_id, vin=check_vin(levels[3]))
        return _make(kind, app_id=app_id)
    raise TopicError(_unknown_reason(root, n))


def _unknown_reason(root: str, n: int) -> str:
    if root in (VEHICLES, APPS):
        return f"unknown topic: too few levels after {root}/<id>"
    if root.startswith("$"):
        return "unknown topic: $-topics are reserved for the broker"
    if root == "":
        return "unknown topic: it must not start with '/'"
    return "unknown topic: it must start with vehicles/ or apps/"


_NONE: Final[frozenset[str]] = frozenset()
_CMD: Final = frozenset({"command_id"})
_CHUNK: Final = frozenset({"job_id", "index"})
_VIN: Final = frozenset({"vin"})


def _vehicle_shape(levels: list[str], n: int) -> tuple[TopicKind, frozenset[str]]:
    a = levels[2]
    if n == 3:
        if a == "telemetry":
            return TopicKind.TELEMETRY, _NONE
        if a == "connection":
            return TopicKind.CONNECTION, _NONE
        if a == "errors":
            return TopicKind.ERRORS, _NONE
    elif n == 4:
        b = levels[3]
        if a == "shadow":
            if b == "reported":
                return TopicKind.SHADOW_REPORTED, _NONE
            if b == "desired":
                return TopicKind.SHADOW_DESIRED, _NONE
        elif a == "ota":
            if b == "status":
                return TopicKind.OTA_STATUS, _NONE
            if b == "jobs":
                return TopicKind.OTA_JOB, _NONE
        elif a == "commands":
            return TopicKind.COMMAND, _CMD
    elif n == 5:
        if a == "commands" and levels[4] == "result":
            return TopicKind.COMMAND_RESULT, _CMD
        if a == "ota" and levels[3] == "chunks" and levels[4] == "request":
            return TopicKind.OTA_CHUNK_REQUEST, _NONE
    elif n == 6 and a == "ota" and levels[3] == "chunks":
        return TopicKind.OTA_CHUNK, _CHUNK
    raise TopicError(f"unknown topic: no vehicle topic vehicles/<VIN>/{'/'.join(levels[2:])}")


def _app_shape(levels: list[str], n: int) -> tuple[TopicKind, frozenset[str]]:
    a = levels[2]
    if n == 3:
        if a == "commands":
            return TopicKind.APP_COMMAND, _NONE
        if a == "errors":
            return TopicKind.APP_ERRORS, _NONE
    elif n == 5:
        if a == "commands" and levels[4] == "status":
            return TopicKind.APP_COMMAND_STATUS, _CMD
        if a == "vehicles" and levels[4] == "shadow":
            return TopicKind.APP_SHADOW, _VIN
    elif n == 6 and a == "vehicles" and levels[4] == "shadow" and levels[5] == "desired":
        return TopicKind.APP_SHADOW_DESIRED, _VIN
    raise TopicError(f"unknown topic: no app topic apps/<app id>/{'/'.join(levels[2:])}")


# --------------------------------------------------------------------------------------------
# builders


class MqttTopics:
    """Builders for every topic string; each validates its arguments (raises TopicError)."""

    @staticmethod
    def topic(kind: TopicKind, **fields: str | int) -> str:
        """Any topic by kind, e.g. ``MqttTopics.topic(TopicKind.TELEMETRY, vin=vin)``."""
        return str(Topic(kind, **fields))  # type: ignore[arg-type]

    # vehicle uplink
    @staticmethod
    def connection(vin: str) -> str:
        return f"vehicles/{check_vin(vin)}/connection"

    @staticmethod
    def telemetry(vin: str) -> str:
        return f"vehicles/{check_vin(vin)}/telemetry"

    @staticmethod
    def shadow_reported(vin: str) -> str:
        return f"vehicles/{check_vin(vin)}/shadow/reported"

    @staticmethod
    def command_result(vin: str, command_id: str) -> str:
        return f"vehicles/{check_vin(vin)}/commands/{validate_command_id(command_id)}/result"

    @staticmethod
    def ota_status(vin: str) -> str:
        return f"vehicles/{check_vin(vin)}/ota/status"

    @staticmethod
    def ota_chunk_request(vin: str) -> str:
        return f"vehicles/{check_vin(vin)}/ota/chunks/request"

    # vehicle downlink
    @staticmethod
    def command(vin: str, command_id: str) -> str:
        return f"vehicles/{check_vin(vin)}/commands/{validate_command_id(command_id)}"

    @staticmethod
    def shadow_desired(vin: str) -> str:
        return f"vehicles/{check_vin(vin)}/shadow/desired"

    @staticmethod
    def ota_jobs(vin: str) -> str:
        return f"vehicles/{check_vin(vin)}/ota/jobs"

    @staticmethod
    def ota_chunk(vin: str, job_id: str, index: int) -> str:
        return (
            f"vehicles/{check_vin(vin)}/ota/chunks/{validate_job_id(job_id)}/{check_index(index)}"
        )

    @staticmethod
    def errors(vin: str) -> str:
        return f"vehicles/{check_vin(vin)}/errors"

    # apps
    @staticmethod
    def app_commands(app_id: str) -> str:
        return f"apps/{check_app_id(app_id)}/commands"

    @staticmethod
    def app_command_status(app_id: str, command_id: str) -> str:
        return f"apps/{check_app_id(app_id)}/commands/{validate_command_id(command_id)}/status"

    @staticmethod
    def app_shadow_desired(app_id: str, vin: str) -> str:
        return f"apps/{check_app_id(app_id)}/vehicles/{check_vin(vin)}/shadow/desired"

    @staticmethod
    def app_shadow(app_id: str, vin: str) -> str:
        return f"apps/{check_app_id(app_id)}/vehicles/{check_vin(vin)}/shadow"

    @staticmethod
    def app_errors(app_id: str) -> str:
        return f"apps/{check_app_id(app_id)}/errors"

    # subscriptions of devices
    @staticmethod
    def vehicle_subscriptions(vin: str) -> tuple[str, ...]:
        """The filters a vehicle subscribes: all of its downlink topics."""
        check_vin(vin)
        return tuple(
            kind.filter.replace("+", vin, 1)
            for kind in TopicKind
            if kind.role is Role.VEHICLE and not kind.is_uplink
        )

    @staticmethod
    def app_subscription(app_id: str) -> str:
        """The filter an app subscribes: ``apps/<id>/#``."""
        return f"apps/{check_app_id(app_id)}/#"


# --------------------------------------------------------------------------------------------
# filters


def uplink_filters() -> tuple[str, ...]:
    """Filters for every vehicle and app uplink topic (what the gateway subscribes)."""
    return tuple(kind.filter for kind in UPLINK_KINDS)


def downlink_filters() -> tuple[str, ...]:
    """Filters for every vehicle and app downlink topic (e.g. for a monitoring tool)."""
    return tuple(kind.filter for kind in TopicKind if not kind.is_uplink)
