"""The shadow as stored in Cassandra (``shadows`` row), to and from :class:`Shadow`. Pure.

Columns: ``reported`` and ``desired`` hold the live JSON objects (readable with cqlsh as they
are); ``metadata`` holds what the merge needs besides::

    {"format": 1,
     "reported": {<same shape as reported, each leaf its write time in epoch ms>},
     "desired":  {<same for desired>},
     "tombstones": {"reported": [[["a", "b"], 1700000000000], ...], "desired": [...]},
     "online": true, "online_ts": 1700000000000}

A row written by another tool without metadata still loads: its leaves get timestamp 0, so
any report overwrites them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import JsonValue

from processors.shadow.logic import Fields, Leaf, Path, Shadow, materialize, timestamps

FORMAT: Final = 1


class StoredShadowError(ValueError):
    """A ``shadows`` row that cannot be read back (corrupt JSON)."""


@dataclass(frozen=True, slots=True)
class ShadowRow:
    """The columns of one ``shadows`` row (``updated_at`` as epoch ms)."""

    vin: str
    reported: str
    desired: str
    metadata: str
    version: int
    updated_at: int


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _tombstones(fields: Fields) -> list[list[Any]]:
    return [[list(p), leaf.ts] for p, leaf in sorted(fields.items()) if leaf.deleted]


def to_row(shadow: Shadow) -> ShadowRow:
    metadata = {
        "format": FORMAT,
        "reported": timestamps(shadow.reported),
        "desired": timestamps(shadow.desired),
        "tombstones": {
            "reported": _tombstones(shadow.reported),
            "desired": _tombstones(shadow.desired),
        },
        "online": shadow.online,
        "online_ts": shadow.online_ts,
    }
    return ShadowRow(
        vin=shadow.vin,
        reported=_dumps(materialize(shadow.reported)),
        desired=_dumps(materialize(shadow.desired)),
        metadata=_dumps(metadata),
        version=shadow.version,
        updated_at=shadow.ts,
    )


def _object(text: str | None, what: str) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise StoredShadowError(f"{what}: invalid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise StoredShadowError(f"{what}: not a JSON object")
    return value


def _leaves(
    state: Mapping[str, JsonValue], meta: Mapping[str, Any], prefix: Path = ()
) -> dict[Path, Leaf]:
    out: dict[Path, Leaf] = {}
    for key, value in state.items():
        path = (*prefix, key)
        stamp = meta.get(key)
        if isinstance(stamp, int) and not isinstance(stamp, bool):
            out[path] = Leaf(ts=stamp, value=value)
        elif isinstance(value, dict):
            out.update(_leaves(value, stamp if isinstance(stamp, dict) else {}, path))
        elif value is not None:
            out[path] = Leaf(ts=0, value=value)
    return out


def _with_tombstones(fields: dict[Path, Leaf], raw: object) -> dict[Path, Leaf]:
    if not isinstance(raw, list):
        return fields
    for item in raw:
        if (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], list)
            and item[0]
            and all(isinstance(k, str) for k in item[0])
            and isinstance(item[1], int)
        ):
            path = tuple(item[0])
            if path not in fields:
                fields[path] = Leaf(ts=item[1], deleted=True)
    return fields


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def from_row(
    *,
    vin: str,
    reported: str | None,
    desired: str | None,
    metadata: str | None,
    version: int | None,
    updated_at: int | None,
) -> Shadow:
    """The shadow of a stored row; raises :class:`StoredShadowError` when it is corrupt."""
    meta = _object(metadata, "shadow metadata")
    stones = meta.get("tombstones")
    stones = stones if isinstance(stones, dict) else {}
    meta_reported = meta.get("reported")
    meta_desired = meta.get("desired")
    rep = _leaves(
        _object(reported, "reported state"),
        meta_reported if isinstance(meta_reported, dict) else {},
    )
    des = _leaves(
        _object(desired, "desired state"), meta_desired if isinstance(meta_desired, dict) else {}
    )
    online = meta.get("online")
    online_ts = meta.get("online_ts")
    return Shadow(
        vin=vin,
        version=version or 0,
        ts=updated_at or 0,
        reported=_with_tombstones(rep, stones.get("reported")),
        desired=_with_tombstones(des, stones.get("desired")),
        online=online if isinstance(online, bool) else None,
        online_ts=online_ts if _is_int(online_ts) else None,
    )
