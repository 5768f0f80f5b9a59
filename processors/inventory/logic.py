"""The vehicle inventory's pure parts: import rows (CSV, JSONL) and ECU versions from the shadow.

CSV: the header ``vin,model,year,region,tags`` (tags separated by ``;``). JSONL: one object a
line with the same fields (``tags`` a list or a ``;`` string) plus an optional
``"ecus": [{"name": …, "hw": …, "sw": …}]``. Only ``vin`` is required; an empty field is
unknown. Each bad row becomes a :class:`RowError` with its line number and the reason; the
other rows are kept. A VIN seen twice keeps its first row.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from pydantic import JsonValue

from processors.store.schema import Ecu
from schemas.ids import InvalidIdentifier, validate_vin

CSV_HEADER: Final = ("vin", "model", "year", "region", "tags")
JSON_FIELDS: Final = frozenset({*CSV_HEADER, "ecus"})
MIN_YEAR: Final = 1886
MAX_YEAR: Final = 2100
MAX_TEXT: Final = 64
MAX_TAGS: Final = 32
MAX_ECUS: Final = 256
Format = Literal["csv", "jsonl"]


class ImportFormatError(ValueError):
    """The file as a whole cannot be imported (unknown format, wrong CSV header)."""


@dataclass(frozen=True, slots=True)
class EcuInfo:
    name: str
    hw: str | None = None
    sw: str | None = None


@dataclass(frozen=True, slots=True)
class VehicleRecord:
    """One valid row: what the inventory stores for a vehicle."""

    vin: str
    model: str | None = None
    year: int | None = None
    region: str | None = None
    tags: tuple[str, ...] = ()
    ecus: tuple[EcuInfo, ...] | None = None
    """None: the row says nothing about ECUs (the stored ones stay)."""
    line: int = 0


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    reason: str


class _Invalid(ValueError):
    pass


def detect_format(name: str) -> Format:
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    raise ImportFormatError(f"{name}: unknown format (expected a .csv or .jsonl file)")


def parse(lines: Iterable[str], *, fmt: Format) -> Iterator[VehicleRecord | RowError]:
    """Every row of the file, valid or not, in file order; duplicates are errors."""
    rows = parse_csv(lines) if fmt == "csv" else parse_jsonl(lines)
    first_line: dict[str, int] = {}
    for row in rows:
        if isinstance(row, VehicleRecord):
            seen = first_line.setdefault(row.vin, row.line)
            if seen != row.line:
                yield RowError(row.line, f"duplicate VIN {row.vin} (first at line {seen})")
                continue
        yield row


def parse_csv(lines: Iterable[str]) -> Iterator[VehicleRecord | RowError]:
    reader = csv.reader(iter(lines))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFormatError("the CSV file is empty (expected a header line)") from None
    except csv.Error as exc:
        raise ImportFormatError(f"line 1: {exc}") from None
    names = tuple(h.strip().lstrip("\ufeff").lower() for h in header)
    if names != CSV_HEADER:
        raise ImportFormatError(
            f"CSV header is {','.join(names)!r}; expected {','.join(CSV_HEADER)!r}"
        )
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RowError(reader.line_num, f"unreadable CSV: {exc}")
            continue
        line = reader.line_num
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(CSV_HEADER):
            yield RowError(line, f"{len(fields)} fields; expected {len(CSV_HEADER)}")
            continue
        vin, model, year, region, tags = (f.strip() for f in fields)
        try:
            yield VehicleRecord(
                vin=_vin(vin),
                model=_text(model, "model"),
                year=_year(year or None),
                region=_text(region, "region"),
                tags=_tags(tags),
                line=line,
            )
        except _Invalid as exc:
            yield RowError(line, str(exc))


def parse_jsonl(lines: Iterable[str]) -> Iterator[VehicleRecord | RowError]:
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            yield _json_row(text, line)
        except _Invalid as exc:
            yield RowError(line, str(exc))


def _json_row(text: str, line: int) -> VehicleRecord:
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise _Invalid(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise _Invalid("expected a JSON object")
    unknown = sorted(set(obj) - JSON_FIELDS)
    if unknown:
        raise _Invalid(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(JSON_FIELDS))})")
    if "vin" not in obj:
        raise _Invalid("field vin is required")
    vin = obj["vin"]
    if not isinstance(vin, str):
        raise _Invalid("vin must be a string")
    tags = obj.get("tags")
    if isinstance(tags, list):
        if not all(isinstance(t, str) for t in tags):
            raise _Invalid("tags must be strings")
        tag_text = ";".join(tags)
    elif tags is None or isinstance(tags, str):
        tag_text = tags or ""
    else:
        raise _Invalid("tags must be a list of strings or a ';'-separated string")
    return VehicleRecord(
        vin=_vin(vin),
        model=_text(_optional_str(obj.get("model"), "model"), "model"),
        year=_year(obj.get("year")),
        region=_text(_optional_str(obj.get("region"), "region"), "region"),
        tags=_tags(tag_text),
        ecus=_ecus(obj["ecus"]) if "ecus" in obj else None,
        line=line,
    )


def _vin(value: str) -> str:
    try:
        return validate_vin(value.strip())
    except InvalidIdentifier as exc:
        raise _Invalid(str(exc)) from None


def _optional_str(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Invalid(f"{what} must be a string")
    return value


def _text(value: str, what: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_TEXT or not value.isprintable():
        raise _Invalid(f"{what} must be at most {MAX_TEXT} printable characters")
    return value


def _year(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not value.strip().isdigit():
            raise _Invalid(f"year {value!r} is not a number")
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"year {value!r} is not a whole number")
    if not MIN_YEAR <= value <= MAX_YEAR:
        raise _Invalid(f"year {value} is outside {MIN_YEAR}..{MAX_YEAR}")
    return value


def _tags(text: str) -> tuple[str, ...]:
    tags = tuple(dict.fromkeys(t.strip() for t in text.split(";") if t.strip()))
    if len(tags) > MAX_TAGS:
        raise _Invalid(f"{len(tags)} tags; at most {MAX_TAGS}")
    for tag in tags:
        if len(tag) > MAX_TEXT or not tag.isprintable():
            raise _Invalid(f"tag {tag[:20]!r} must be at most {MAX_TEXT} printable characters")
    return tags


def _ecus(value: Any) -> tuple[EcuInfo, ...]:
    if not isinstance(value, list):
        raise _Invalid("ecus must be a list of {name, hw, sw} objects")
    if len(value) > MAX_ECUS:
        raise _Invalid(f"{len(value)} ecus; at most {MAX_ECUS}")
    out: dict[str, EcuInfo] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not set(item) <= {"name", "hw", "sw"}:
            raise _Invalid(f"ecus[{i}] must be an object with name, hw, sw")
        name = _text(_optional_str(item.get("name"), f"ecus[{i}].name"), f"ecus[{i}].name")
        if name is None:
            raise _Invalid(f"ecus[{i}].name is required")
        if name in out:
            raise _Invalid(f"ecus[{i}]: ECU {name!r} listed twice")
        hw = _text(_optional_str(item.get("hw"), f"ecus[{i}].hw"), f"ecus[{i}].hw")
        sw = _text(_optional_str(item.get("sw"), f"ecus[{i}].sw"), f"ecus[{i}].sw")
        out[name] = EcuInfo(name, hw, sw)
    return tuple(out.values())


# --------------------------------------------------------------------------------------------
# ECU versions reported by the vehicle


def ecus_from_reported(reported: Mapping[str, JsonValue]) -> dict[str, Ecu] | None:
    """ECU versions in a reported state's ``ecus`` field, or None when it has none.

    Accepted shapes: ``{"ecus": {"<name>": {"hw": …, "sw": …}}}`` (merges per field, the
    natural shadow form) or the import form ``{"ecus": [{"name": …, "hw": …, "sw": …}]}``.
    Entries that are not of that shape are skipped.
    """
    raw = reported.get("ecus")
    if raw is None:
        return None
    items: list[tuple[object, object]] = []
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = [(e.get("name"), e) for e in raw if isinstance(e, dict)]
    out: dict[str, Ecu] = {}
    for name, info in items:
        if not isinstance(name, str) or not name or len(name) > MAX_TEXT:
            continue
        if not isinstance(info, dict):
            continue
        hw, sw = _version(info.get("hw")), _version(info.get("sw"))
        if hw is None and sw is None:
            continue
        out[name] = Ecu(hw=hw, sw=sw)
    return out


def _version(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        text = str(value).strip()
        return text[:MAX_TEXT] or None
    return None


def ecu_changes(known: Mapping[str, Ecu] | None, reported: Mapping[str, Ecu]) -> dict[str, Ecu]:
    """The reported ECUs whose versions differ from ``known`` (what to write)."""
    known = known or {}
    return {name: ecu for name, ecu in reported.items() if known.get(name) != ecu}
