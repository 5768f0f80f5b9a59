"""Parsing inventory files (CSV, JSONL) and ECU versions from a reported shadow."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import JsonValue

from processors.inventory.logic import (
    EcuInfo,
    ImportFormatError,
    RowError,
    VehicleRecord,
    detect_format,
    ecu_changes,
    ecus_from_reported,
    parse,
)
from processors.store.schema import Ecu
from schemas.ids import make_vin

pytestmark = pytest.mark.unit

V1, V2 = make_vin(1), make_vin(2)
HEADER = "vin,model,year,region,tags\n"


def rows(text: str, fmt: str = "csv") -> list[VehicleRecord | RowError]:
    return list(parse(text.splitlines(keepends=True), fmt=fmt))  # type: ignore[arg-type]


def test_csv_rows_valid_and_invalid_with_line_numbers() -> None:
    text = (
        HEADER
        + f"{V1},Model A,2023,eu,fleet-a; beta ;;\n"
        + "\n"
        + "TOO-SHORT,Model B,2020,us,\n"
        + f"{V2},,,,\n"
        + f"{V2},again,2020,us,\n"
        + f"{make_vin(3)},x,1700,us,\n"
        + f"{make_vin(4)},x,2020\n"
    )
    out = rows(text)
    assert out[0] == VehicleRecord(V1, "Model A", 2023, "eu", ("fleet-a", "beta"), None, 2)
    assert isinstance(out[1], RowError)
    assert out[1].line == 4
    assert "has 9 characters" in out[1].reason
    assert out[2] == VehicleRecord(V2, line=5)
    assert out[3] == RowError(6, f"duplicate VIN {V2} (first at line 5)")
    assert out[4] == RowError(7, "year 1700 is outside 1886..2100")
    assert out[5] == RowError(8, "3 fields; expected 5")


def test_csv_header_must_match() -> None:
    with pytest.raises(ImportFormatError, match="expected 'vin,model,year,region,tags'"):
        rows("vin,model,region\n")
    with pytest.raises(ImportFormatError, match="empty"):
        rows("")
    assert rows("\ufeffVIN, Model ,year,region,TAGS\n") == []


def test_jsonl_rows() -> None:
    good = {"vin": V1, "model": "M", "year": 2024, "tags": ["a", "b"],
            "ecus": [{"name": "bcm", "hw": "H1", "sw": "1.0"}]}  # fmt: skip
    text = "\n".join(
        [
            json.dumps(good),
            json.dumps({"vin": V2, "tags": "x;y", "year": True}),
            "[1, 2]",
            json.dumps({"model": "no vin"}),
            json.dumps({"vin": V2, "ecus": [{"name": "a"}, {"name": "a"}]}),
            json.dumps({"vin": V2, "extra": 1}),
            "{oops",
        ]
    )
    out = rows(text, "jsonl")
    assert out[0] == VehicleRecord(
        V1, "M", 2024, None, ("a", "b"), (EcuInfo("bcm", "H1", "1.0"),), 1
    )
    reasons = [r.reason for r in out[1:] if isinstance(r, RowError)]
    assert reasons == [
        "year True is not a whole number",
        "expected a JSON object",
        "field vin is required",
        "ecus[1]: ECU 'a' listed twice",
        "unknown field 'extra' (known: ecus, model, region, tags, vin, year)",
        reasons[-1],
    ]
    assert reasons[-1].startswith("invalid JSON")


@given(st.lists(st.tuples(st.integers(0, 50), st.booleans()), max_size=30))
def test_every_line_is_accounted_for_once(spec: list[tuple[int, bool]]) -> None:
    lines = [HEADER]
    for n, broken in spec:
        vin = make_vin(n)
        lines.append(f"{vin[:-1] + 'I' if broken else vin},m,2020,eu,t\n")
    out = rows("".join(lines))
    assert [r.line for r in out] == list(range(2, len(spec) + 2))
    valid = [r for r in out if isinstance(r, VehicleRecord)]
    assert len({r.vin for r in valid}) == len(valid)


def test_detect_format() -> None:
    assert detect_format("a.CSV") == "csv"
    assert detect_format("a.jsonl") == "jsonl"
    assert detect_format("a.ndjson") == "jsonl"
    with pytest.raises(ImportFormatError, match="unknown format"):
        detect_format("a.json")


def test_ecus_from_reported_state() -> None:
    assert ecus_from_reported({"speed": 1}) is None
    by_name: dict[str, JsonValue] = {"ecus": {"bcm": {"hw": "H1", "sw": 2.1}, "x": 5, "empty": {}}}
    assert ecus_from_reported(by_name) == {"bcm": Ecu("H1", "2.1")}
    as_list: dict[str, JsonValue] = {
        "ecus": [{"name": "tcu", "sw": "7"}, {"sw": "no name"}, "junk"]
    }
    assert ecus_from_reported(as_list) == {"tcu": Ecu(None, "7")}
    known = {"bcm": Ecu("H1", "2.1")}
    assert ecu_changes(known, {"bcm": Ecu("H1", "2.1"), "tcu": Ecu(None, "7")}) == {
        "tcu": Ecu(None, "7")
    }
    assert ecu_changes(None, known) == known
