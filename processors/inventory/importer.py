"""Reading an inventory file and storing its valid rows (the I/O around
:mod:`processors.inventory.logic`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fleetgate.errors import UserError
from processors.inventory.logic import (
    ImportFormatError,
    RowError,
    VehicleRecord,
    detect_format,
    parse,
)
from processors.store.repo_inventory import InventoryRepository


@dataclass
class ImportReport:
    imported: int = 0
    errors: list[RowError] = field(default_factory=list)


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def read_lines(path: Path) -> Iterator[str]:
    """The file's lines as text; a line that is not UTF-8 stops the import (one line)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{path}: line {number} is not valid UTF-8") from None
            yield text


async def import_file(
    *,
    path: Path,
    repo: InventoryRepository,
    now_ms: int,
    concurrency: int = 64,
    progress: Callable[[int], None] = lambda n: None,
) -> ImportReport:
    """Store every valid row of ``path``; collect the invalid ones with their reasons.

    ``progress(n)`` is called with the number of lines done so far (for a progress bar).
    """
    try:
        fmt = detect_format(path.name)
        rows = parse(read_lines(path), fmt=fmt)
        report = ImportReport()
        slots = asyncio.Semaphore(concurrency)
        pending: set[asyncio.Task[None]] = set()

        failures: list[Exception] = []

        async def store(record: VehicleRecord) -> None:
            try:
                await repo.upsert(record=record, now_ms=now_ms)
                report.imported += 1
                progress(record.line)
            except Exception as exc:  # the first failure stops the import
                failures.append(exc)
            finally:
                slots.release()

        for row in rows:
            if failures:
                break
            if isinstance(row, RowError):
                report.errors.append(row)
                progress(row.line)
                continue
            await slots.acquire()
            task = asyncio.ensure_future(store(row))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)
        if failures:
            raise failures[0]
    except ImportFormatError as exc:
        raise UserError(f"{path}: {exc}") from None
    return report
