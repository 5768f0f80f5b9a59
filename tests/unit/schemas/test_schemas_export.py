"""JSON Schema export: committed files are current; the CLI writes and checks them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fleetgate.cli.schemas_cmd import check_schemas, default_dir, export_schemas, register
from fleetgate.errors import UserError
from schemas.codec import MODELS
from schemas.export import json_schemas, render_json_schemas, stale_files

pytestmark = pytest.mark.unit


def test_committed_files_equal_generated_output() -> None:
    directory = default_dir()
    committed = {p.name: p.read_text(encoding="utf-8") for p in directory.glob("*.schema.json")}
    assert stale_files(committed, render_json_schemas()) == [], (
        "run 'fleetgate schemas export' and commit schemas/json"
    )


def test_schemas_cover_every_payload() -> None:
    schemas = json_schemas()
    for kind in MODELS:
        schema = schemas[kind.value]
        assert schema["x-mqtt-topic"] == kind.template
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
    assert {"connectivity_event", "dead_letter", "ota_manifest"} <= set(schemas)
    assert "from" in schemas["ota_chunk_request"]["properties"]


def test_render_is_deterministic() -> None:
    first = render_json_schemas()
    assert first == render_json_schemas()
    for text in first.values():
        assert text.endswith("\n")
        json.loads(text)


def test_stale_files() -> None:
    assert stale_files({"a": "1", "b": "2"}, {"a": "1", "c": "3"}) == ["b", "c"]
    assert stale_files({"a": "1"}, {"a": "2"}) == ["a"]
    assert stale_files({}, {}) == []


def test_export_and_check(tmp_path: Path) -> None:
    assert check_schemas(directory=tmp_path)  # empty: everything missing
    (tmp_path / "old.schema.json").write_text("{}")
    (tmp_path / "README").write_text("keep me")
    changed = export_schemas(directory=tmp_path)
    assert "old.schema.json" in changed
    assert not (tmp_path / "old.schema.json").exists()
    assert (tmp_path / "README").exists()
    assert check_schemas(directory=tmp_path) == []
    assert export_schemas(directory=tmp_path) == []
    (tmp_path / "telemetry.schema.json").write_text("{}")
    assert check_schemas(directory=tmp_path) == ["telemetry.schema.json"]


def test_export_to_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write schemas"):
        export_schemas(directory=blocker / "sub")


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """root"""

    register(app)
    return app


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    app = _app()
    result = runner.invoke(app, ["schemas", "check", "--dir", str(tmp_path)])
    assert isinstance(result.exception, UserError)
    assert result.exception.exit_code == 1
    assert "stale schema file(s)" in str(result.exception)
    result = runner.invoke(app, ["schemas", "export", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["schemas", "check", "--dir", str(tmp_path)])
    assert result.exit_code == 0
    assert "up to date" in result.output
