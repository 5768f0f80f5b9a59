"""The device shadow as pure functions: per-leaf merge with timestamps, delta, document.

A section (``reported`` or ``desired``) is kept flat: ``path -> Leaf`` where a path is the
tuple of object keys down to a leaf (a scalar or an array; arrays replace whole). Every leaf
remembers when it was written (``ts``, epoch ms); a ``null`` in an update leaves a tombstone,
so an older write arriving later cannot bring a deleted key back.

Merge rule for one leaf of an update written at ``ts``: it conflicts with existing leaves on
the same path, above it (an ancestor that is a leaf) or below it (descendants). It applies
when ``ts`` is not older than every conflicting leaf, replacing them all; otherwise it is
dropped. Equal timestamps apply in arrival (Kafka) order, so a replayed suffix of the log
reproduces the same state and duplicates are harmless.

The document ``version`` grows by one with every change of a live value of ``reported`` or
``desired``; a write that only refreshes timestamps is persisted but changes no version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Final

from pydantic import JsonValue

from schemas.base import JsonPathError, check_json
from schemas.shadow import (
    MAX_STATE_DEPTH,
    MAX_STATE_VALUES,
    ShadowDocument,
    ShadowMetadata,
    ShadowSections,
)

Path = tuple[str, ...]
DAY_MS: Final = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Leaf:
    """One value of a section and when it was written; ``deleted`` marks a tombstone."""

    ts: int
    value: JsonValue = None
    deleted: bool = False


Fields = Mapping[Path, Leaf]


@dataclass(frozen=True, slots=True)
class Shadow:
    """The whole shadow of one vehicle (immutable; every operation returns a new one)."""

    vin: str
    version: int = 0
    ts: int = 0
    """When a live value last changed (epoch ms); 0 for a shadow never written."""
    reported: Fields = field(default_factory=dict)
    desired: Fields = field(default_factory=dict)
    online: bool | None = None
    online_ts: int | None = None


@dataclass(frozen=True, slots=True)
class Applied:
    """An update was applied; ``changed``: a live value changed (the version grew);
    ``touched``: anything changed, timestamps included (the shadow must be written)."""

    shadow: Shadow
    changed: bool
    touched: bool


@dataclass(frozen=True, slots=True)
class Refused:
    """An update that cannot apply (version conflict, state too large); one-line reason."""

    reason: str


# --------------------------------------------------------------------------------------------
# flat sections


def flatten(update: Mapping[str, JsonValue], prefix: Path = ()) -> Iterator[tuple[Path, Leaf]]:
    """The leaves of a partial update (ts 0): objects recurse, ``null`` is a tombstone, an
    empty object writes nothing, anything else (arrays included) is one leaf."""
    for key, value in update.items():
        path = (*prefix, key)
        if isinstance(value, dict):
            yield from flatten(value, path)
        elif value is None:
            yield path, Leaf(ts=0, deleted=True)
        else:
            yield path, Leaf(ts=0, value=value)


def _conflicts(fields: Fields, path: Path) -> list[Path]:
    found = [path[:i] for i in range(1, len(path) + 1) if path[:i] in fields]
    depth = len(path)
    found += [p for p in fields if len(p) > depth and p[:depth] == path]
    return found


def merge(fields: Fields, update: Mapping[str, JsonValue], ts: int) -> tuple[Fields, bool, bool]:
    """Merge ``update`` written at ``ts`` into ``fields``.

    Returns ``(fields, changed, touched)``: ``changed`` when a live value changed,
    ``touched`` when anything did (a newer timestamp, a tombstone).
    """
    out = dict(fields)
    changed = touched = False
    for path, leaf in flatten(update):
        conflicts = _conflicts(out, path)
        if any(out[p].ts > ts for p in conflicts):
            continue  # an older write never overwrites a newer one
        old = out.get(path)
        if old is not None and len(conflicts) == 1 and _same(old, leaf, ts):
            continue  # an exact duplicate
        live_before = [p for p in conflicts if not out[p].deleted]
        for p in conflicts:
            del out[p]
        out[path] = Leaf(ts=ts, value=leaf.value, deleted=leaf.deleted)
        touched = True
        if leaf.deleted:
            changed = changed or bool(live_before)
        elif live_before != [path] or old is None or not json_equal(old.value, leaf.value):
            changed = True
    return out, changed, touched


def _same(old: Leaf, leaf: Leaf, ts: int) -> bool:
    if old.ts != ts or old.deleted != leaf.deleted:
        return False
    return old.deleted or json_equal(old.value, leaf.value)


def prune_tombstones(fields: Fields, *, before: int) -> Fields:
    """Drop tombstones written before ``before`` (epoch ms); live leaves stay."""
    return {p: leaf for p, leaf in fields.items() if not (leaf.deleted and leaf.ts < before)}


def materialize(fields: Fields) -> dict[str, JsonValue]:
    """The nested JSON object of the live leaves."""
    return _tree(fields, lambda leaf: leaf.value)


def timestamps(fields: Fields) -> dict[str, JsonValue]:
    """The same shape as :func:`materialize`, each leaf replaced by its write time."""
    return _tree(fields, lambda leaf: leaf.ts)


def _tree(fields: Fields, pick: Callable[[Leaf], JsonValue]) -> dict[str, JsonValue]:
    root: dict[str, JsonValue] = {}
    for path in sorted(p for p, leaf in fields.items() if not leaf.deleted):
        node = root
        for key in path[:-1]:
            child = node.setdefault(key, {})
            assert isinstance(child, dict)
            node = child
        node[path[-1]] = pick(fields[path])
    return root


def json_equal(a: JsonValue, b: JsonValue) -> bool:
    """JSON equality: numbers by value (1 == 1.0), but a boolean is never a number."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def value_at(fields: Fields, path: Path) -> tuple[bool, JsonValue]:
    """``(True, value)`` when a live leaf sits exactly at ``path``; else ``(False, None)``."""
    leaf = fields.get(path)
    if leaf is None or leaf.deleted:
        return False, None
    return True, leaf.value


def _check_size(fields: Fields, section: str) -> str | None:
    try:
        check_json(materialize(fields), max_depth=MAX_STATE_DEPTH, max_nodes=MAX_STATE_VALUES)
    except JsonPathError as exc:
        return f"the merged {section} state would break the limits: {exc.message}"
    return None


# --------------------------------------------------------------------------------------------
# the shadow


def apply_reported(shadow: Shadow, state: Mapping[str, JsonValue], ts: int) -> Applied | Refused:
    """Merge a vehicle's reported (partial) state, written at ``ts``."""
    fields, changed, touched = merge(shadow.reported, state, ts)
    if not touched:
        return Applied(shadow, False, False)
    if changed and (reason := _check_size(fields, "reported")):
        return Refused(reason)
    return Applied(_bump(replace(shadow, reported=fields), changed, ts), changed, True)


def apply_desired(
    shadow: Shadow, state: Mapping[str, JsonValue], ts: int, *, expected_version: int | None
) -> Applied | Refused:
    """Merge an app's desired (partial) state, written at ``ts``.

    With ``expected_version`` the update applies only to that document version (optimistic
    concurrency). A replayed update that would change nothing is a harmless duplicate, even
    if the version moved on since.
    """
    fields, changed, touched = merge(shadow.desired, state, ts)
    if not touched:
        return Applied(shadow, False, False)
    if expected_version is not None and expected_version != shadow.version:
        return Refused(
            f"version conflict: the update is for version {expected_version}, "
            f"the shadow is at version {shadow.version}"
        )
    if changed and (reason := _check_size(fields, "desired")):
        return Refused(reason)
    return Applied(_bump(replace(shadow, desired=fields), changed, ts), changed, True)


def apply_connectivity(shadow: Shadow, *, online: bool, ts: int) -> Applied:
    """The vehicle's last known connectivity (events apply in log order; no version change)."""
    if shadow.online is online and shadow.online_ts == ts:
        return Applied(shadow, False, False)
    return Applied(replace(shadow, online=online, online_ts=ts), False, True)


def _bump(shadow: Shadow, changed: bool, ts: int) -> Shadow:
    if not changed:
        return shadow
    return replace(shadow, version=shadow.version + 1, ts=max(shadow.ts, ts))


def delta(shadow: Shadow) -> dict[str, JsonValue]:
    """Desired values that differ from the reported ones, leaf by leaf (nested object)."""
    differing: dict[Path, Leaf] = {}
    for path, leaf in shadow.desired.items():
        if leaf.deleted:
            continue
        found, value = value_at(shadow.reported, path)
        if not found or not json_equal(value, leaf.value):
            differing[path] = leaf
    return materialize(differing)


def document(shadow: Shadow) -> ShadowDocument:
    """What apps receive on ``apps/<id>/vehicles/<VIN>/shadow``."""
    return ShadowDocument(
        vin=shadow.vin,
        version=shadow.version,
        ts=shadow.ts,
        online=shadow.online,
        state=ShadowSections(
            reported=materialize(shadow.reported),
            desired=materialize(shadow.desired),
            delta=delta(shadow),
        ),
        metadata=ShadowMetadata(
            reported=timestamps(shadow.reported), desired=timestamps(shadow.desired)
        ),
    )


def compact(shadow: Shadow, *, now: int, keep_tombstones_ms: int = DAY_MS) -> Shadow:
    """The shadow without tombstones older than ``keep_tombstones_ms`` (before storing)."""
    before = now - keep_tombstones_ms
    return replace(
        shadow,
        reported=prune_tombstones(shadow.reported, before=before),
        desired=prune_tombstones(shadow.desired, before=before),
    )
