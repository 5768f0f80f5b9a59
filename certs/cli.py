"""``fleetgate certs``: init the PKI, issue, revoke and list certificates (CONTRACT §1, §2, §4)."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from certs import index, store
from certs.index import Kind
from certs.layout import PkiPaths, locked
from certs.names import NameClash
from certs.settings import CertsSettings
from fleetgate.errors import UserError
from schemas.ids import InvalidIdentifier, Role, make_vin

app = typer.Typer(
    no_args_is_help=True,
    help="The PKI: root and issuing CA, client certificates, revocation (CRL).",
)
issue_app = typer.Typer(no_args_is_help=True, help="Issue client certificates.")
app.add_typer(issue_app, name="issue")

_USER_MISTAKES = (
    InvalidIdentifier,
    store.PkiMissing,
    store.PkiExists,
    store.AlreadyIssued,
    NameClash,
    index.UnknownIdentity,
    index.AmbiguousIdentity,
)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Turn the PKI's expected failures into one-line :class:`UserError` messages."""
    try:
        yield
    except _USER_MISTAKES as exc:
        raise UserError(str(exc)) from None
    except OSError as exc:
        raise UserError(f"cannot write the PKI: {exc}") from None


def _settings(ctx: typer.Context) -> CertsSettings:
    settings = ctx.obj
    if not isinstance(settings, CertsSettings):  # pragma: no cover - the callback sets it
        raise TypeError("fleetgate certs: settings missing")
    return settings


def _paths(ctx: typer.Context, *, must_exist: bool = True) -> PkiPaths:
    paths = PkiPaths(_settings(ctx).home)
    if must_exist and not paths.exists():
        raise UserError(f"no PKI under {paths.dir}; run 'fleetgate certs init' first")
    return paths


def _now() -> datetime:
    return datetime.now(UTC)


@app.callback()
def _main(
    ctx: typer.Context,
    home: Annotated[
        Path | None,
        typer.Option("--home", help="fleetgate's home (env FLEETGATE_HOME, default ./.fleetgate)"),
    ] = None,
) -> None:
    try:
        settings = CertsSettings(home=home) if home is not None else CertsSettings()
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UserError(f"bad setting {where}: {first['msg']}") from None
    except SettingsError as exc:  # an environment value that does not even parse
        raise UserError(f"bad setting: {exc}") from None
    ctx.obj = settings


@app.command()
def init(
    ctx: typer.Context,
    force: Annotated[
        bool, typer.Option("--force", help="replace an existing PKI and all it issued")
    ] = False,
) -> None:
    """Create the root CA, issuing CA, CRL, broker certificate and OTA signing key."""
    settings = _settings(ctx)
    paths = _paths(ctx, must_exist=False)
    with _user_errors(), locked(paths):
        store.init_pki(
            paths,
            now=_now(),
            lifetimes=settings.pki.lifetimes(),
            server_sans=settings.pki.server_sans,
            force=force,
        )
    typer.echo(f"created the PKI under {paths.dir}")


def _issue(
    ctx: typer.Context, role: Role, ids: Sequence[str], *, skip_existing: bool = False
) -> None:
    settings = _settings(ctx)
    paths = _paths(ctx)
    workers = settings.pki.workers or os.cpu_count() or 1
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("issuing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal or len(ids) < store.CHUNK,
        transient=True,
    )
    task = progress.add_task("issue", total=len(ids))

    def advance(done: int) -> None:
        progress.advance(task, done)

    started = time.perf_counter()
    with _user_errors(), locked(paths), progress:
        result = store.issue_leaves(
            paths,
            role,
            ids,
            now=_now(),
            lifetimes=settings.pki.lifetimes(),
            workers=workers,
            skip_existing=skip_existing,
            on_progress=advance,
        )
    seconds = time.perf_counter() - started
    count = len(result.issued)
    rate = f" ({count / seconds:,.0f}/s)" if count >= store.CHUNK else ""
    what = f"{Kind.of(role).value} certificate{'s' if count != 1 else ''}"
    line = f"issued {count} {what} in {seconds:.1f} s{rate} under {paths.role_dir(role)}"
    if result.skipped:
        line += f"; skipped {len(result.skipped)} that already exist"
    typer.echo(line)


@issue_app.command("vehicle")
def issue_vehicle(
    ctx: typer.Context,
    vins: Annotated[
        list[str] | None, typer.Argument(help="VINs (17 characters, ISO 3779)", metavar="VIN...")
    ] = None,
    count: Annotated[
        int | None, typer.Option("--count", min=1, max=10_000_000, help="N generated VINs")
    ] = None,
    wmi: Annotated[str, typer.Option("--wmi", help="manufacturer code of generated VINs")] = "FGT",
    start: Annotated[int, typer.Option("--start", min=0, help="first generated number")] = 0,
) -> None:
    """Issue vehicle certificates: the VINs given, or --count generated ones (skipping any
    that exist)."""
    if bool(vins) == (count is not None):
        raise UserError("give VINs or --count N, not both and not neither")
    if count is None:
        _issue(ctx, Role.VEHICLE, vins or [])
        return
    try:
        generated = [make_vin(n, wmi=wmi) for n in range(start, start + count)]
    except ValueError as exc:  # InvalidIdentifier is a ValueError too
        raise UserError(str(exc)) from None
    _issue(ctx, Role.VEHICLE, generated, skip_existing=True)


@issue_app.command("app")
def issue_app_cert(
    ctx: typer.Context,
    app_ids: Annotated[list[str], typer.Argument(help="app ids", metavar="ID...")],
) -> None:
    """Issue app certificates (CN=<id>, OU=apps)."""
    _issue(ctx, Role.APP, app_ids)


@issue_app.command("service")
def issue_service(
    ctx: typer.Context,
    names: Annotated[list[str], typer.Argument(help="service names", metavar="NAME...")],
) -> None:
    """Issue service certificates (CN=<name>, OU=services; may do everything)."""
    _issue(ctx, Role.SERVICE, names)


@app.command()
def revoke(
    ctx: typer.Context,
    ident: Annotated[str, typer.Argument(help="a VIN, app id or service name", metavar="ID")],
    kind: Annotated[
        Kind | None, typer.Option("--kind", help="when the id names several kinds")
    ] = None,
) -> None:
    """Revoke every live certificate of ID and regenerate crl.pem."""
    settings = _settings(ctx)
    paths = _paths(ctx)
    with _user_errors(), locked(paths):
        revoked = store.revoke(
            paths, ident, now=_now(), lifetimes=settings.pki.lifetimes(), kind=kind
        )
    serials = ", ".join(f"{e.serial:x}" for e in revoked)
    typer.echo(f"revoked {revoked[0].kind.value} {ident} (serial {serials}); updated {paths.crl}")
    # The running broker (either kind) polls crl.pem, refuses the certificate from now on and
    # closes its open connections; wait until it confirms.
    from broker.runstate import RevocationNotice, notify_revocation

    notice = notify_revocation(home=paths.home, identity_id=ident)
    if notice is RevocationNotice.APPLIED:
        typer.echo("the running broker has applied it and closed the open connections")
    elif notice is RevocationNotice.TIMEOUT:
        typer.echo("the running broker has not confirmed yet; it applies crl.pem within seconds")


@app.command()
def crl(ctx: typer.Context) -> None:
    """Regenerate crl.pem now (it is valid for FLEETGATE_PKI__CRL_DAYS, default 7)."""
    settings = _settings(ctx)
    paths = _paths(ctx)
    with _user_errors(), locked(paths):
        store.write_crl(
            paths,
            now=_now(),
            lifetimes=settings.pki.lifetimes(),
            entries=store.read_index(paths),
        )
    typer.echo(f"updated {paths.crl}")


@app.command("list")
def list_certs(
    ctx: typer.Context,
    kind: Annotated[Kind | None, typer.Option("--kind", help="only this kind")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON array on stdout")] = False,
) -> None:
    """Every certificate issued: kind, id, serial, expiry, revocation."""
    paths = _paths(ctx)
    entries = [e for e in store.read_index(paths) if kind is None or e.kind is kind]
    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in entries], indent=1))
        return
    table = Table(box=box.SIMPLE)
    for column in ("kind", "id", "serial", "expires", "revoked"):
        table.add_column(column, no_wrap=True)
    for e in entries:
        table.add_row(
            e.kind.value,
            e.id,
            f"{e.serial:x}",
            f"{e.not_after:%Y-%m-%d}",
            f"{e.revoked_at:%Y-%m-%d %H:%M}" if e.revoked_at else "",
        )
    console = Console()
    if not console.is_terminal:  # a pipe or a file: never cut a serial short
        console = Console(width=200)
    console.print(table)
