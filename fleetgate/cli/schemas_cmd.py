"""``fleetgate schemas export | check``: the JSON Schemas of every payload, as files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fleetgate.errors import UserError


def default_dir() -> Path:
    """``schemas/json`` next to the installed ``schemas`` package."""
    import schemas

    return Path(schemas.__file__).resolve().parent / "json"


def _read_existing(directory: Path) -> dict[str, str]:
    from schemas.export import SCHEMA_SUFFIX

    if not directory.is_dir():
        return {}
    return {
        path.name: path.read_text(encoding="utf-8")
        for path in sorted(directory.glob(f"*{SCHEMA_SUFFIX}"))
    }


def export_schemas(*, directory: Path) -> list[str]:
    """Write every schema file into ``directory``, delete stale ones; return what changed."""
    from schemas.export import render_json_schemas, stale_files

    generated = render_json_schemas()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        changed = stale_files(_read_existing(directory), generated)
        for name in changed:
            target = directory / name
            if name in generated:
                target.write_text(generated[name], encoding="utf-8")
            else:
                target.unlink()
    except OSError as exc:
        raise UserError(f"cannot write schemas to {directory}: {exc.strerror or exc}") from None
    return changed


def check_schemas(*, directory: Path) -> list[str]:
    """Names of the schema files in ``directory`` that differ from the generated ones."""
    from schemas.export import render_json_schemas, stale_files

    try:
        existing = _read_existing(directory)
    except OSError as exc:
        raise UserError(f"cannot read schemas in {directory}: {exc.strerror or exc}") from None
    return stale_files(existing, render_json_schemas())


DirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        help="Directory of the *.schema.json files (default: schemas/json of the package).",
        file_okay=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add ``fleetgate schemas export`` and ``fleetgate schemas check`` to ``app``."""
    sub = typer.Typer(
        no_args_is_help=True,
        help="JSON Schemas of every MQTT payload and Kafka record, for non-Python clients.",
    )

    @sub.command("export")
    def export(directory: DirOption = None) -> None:
        """Write (or refresh) one <name>.schema.json per payload."""
        target = directory or default_dir()
        changed = export_schemas(directory=target)
        typer.echo(f"{len(changed)} schema file(s) updated in {target}")

    @sub.command("check")
    def check(directory: DirOption = None) -> None:
        """Exit 1 if the schema files are missing or stale."""
        target = directory or default_dir()
        stale = check_schemas(directory=target)
        if stale:
            names = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
            raise UserError(
                f"{len(stale)} stale schema file(s) in {target}: {names}; "
                "run 'fleetgate schemas export'",
                exit_code=1,
            )
        typer.echo(f"schemas in {target} are up to date")

    app.add_typer(sub, name="schemas", help="JSON Schemas of the payloads: export | check.")
