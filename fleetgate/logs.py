"""structlog set-up: a console renderer for people, JSON lines for machines."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Literal

import structlog

LogFormat = Literal["console", "json", "auto"]


def configure_logging(*, level: str = "INFO", fmt: LogFormat = "auto") -> None:
    """Configure structlog and the standard library logging once per process."""
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)


_DRIVERS = ("aiokafka", "cassandra", "kafka")


@contextlib.contextmanager
def quiet_drivers() -> Iterator[None]:
    """Silence the client drivers' connection-retry noise while a service is starting."""
    loggers = [logging.getLogger(name) for name in _DRIVERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger with the module name bound; bind ``vin``/``command_id``/``topic`` per call."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
