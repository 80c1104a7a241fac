"""Errors raised by airlift-dagster."""

from __future__ import annotations

__all__ = ["AirliftDagsterError"]


class AirliftDagsterError(Exception):
    """Base class of every airlift-dagster error; the message names the instance, DAG or task."""
