"""Errors raised by airlift-protocol. Every error derives from :class:`AirliftProtocolError`."""

from __future__ import annotations

__all__ = ["AirliftProtocolError", "MigrationStateError", "RestPayloadError"]


class AirliftProtocolError(Exception):
    """Base class of every airlift-protocol error."""


class RestPayloadError(AirliftProtocolError, ValueError):
    """An Airflow REST response did not have the shape Airflow documents (names the object and field)."""


class MigrationStateError(AirliftProtocolError, ValueError):
    """A migration-state file or folder is invalid. The message names the file, the key path and,
    where YAML reports it, the line, and shows what a valid file looks like."""
