"""JSON Schemas of every payload, for non-Python clients. Pure: returns dicts and text.

The committed files live in ``schemas/json/<name>.schema.json``; ``fleetgate schemas export``
writes them and ``fleetgate schemas check`` verifies they are current.
"""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import BaseModel

from schemas.codec import MODELS
from schemas.connectivity import ConnectivityEvent
from schemas.errors import DeadLetter
from schemas.ota import OtaManifest
from schemas.topic_kinds import TopicKind

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_SUFFIX: Final = ".schema.json"

_RECORDS: Final[dict[str, tuple[type[BaseModel], str]]] = {
    "ota_manifest": (OtaManifest, "The manifest inside an OTA job; signed in canonical form."),
    "connectivity_event": (ConnectivityEvent, "Kafka record on the connectivity topic."),
    "dead_letter": (DeadLetter, "Kafka record on the deadletter topic."),
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """``{name: JSON Schema}``: one per MQTT topic kind with a JSON payload (named by the
    kind, e.g. ``telemetry``, ``app_command``) and one per Kafka-side record."""
    out: dict[str, dict[str, Any]] = {}
    for kind, model in MODELS.items():
        out[kind.value] = _schema(
            model,
            name=kind.value,
            extra={
                "x-mqtt-topic": kind.template,
                "x-direction": kind.direction.value,
                "x-owner": _owner(kind),
            },
        )
    for name, (model, comment) in _RECORDS.items():
        out[name] = _schema(model, name=name, extra={"$comment": comment})
    return dict(sorted(out.items()))


def render_json_schemas() -> dict[str, str]:
    """``{file name: file text}`` for every schema: stable, sorted keys, newline at the end."""
    return {
        f"{name}{SCHEMA_SUFFIX}": json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False)
        + "\n"
        for name, schema in json_schemas().items()
    }


def stale_files(existing: dict[str, str], generated: dict[str, str]) -> list[str]:
    """File names that are missing, different or no longer generated (sorted)."""
    names = set(existing) | set(generated)
    return sorted(n for n in names if existing.get(n) != generated.get(n))


def _owner(kind: TopicKind) -> str:
    return kind.role.name.lower()


def _schema(model: type[BaseModel], *, name: str, extra: dict[str, str]) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": f"urn:fleetgate:schema:{name}",
        **extra,
        **schema,
    }
