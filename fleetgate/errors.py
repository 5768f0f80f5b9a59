"""Errors that reach a person as one line, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix: printed as one line, exit code ``exit_code``."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ServiceUnavailable(UserError):
    """A service (Kafka, Cassandra, a broker) did not answer in time."""

    exit_code = 3
