"""pytest plugin: the ``integration`` marker, ``--airflow-version`` and real-server factories."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from airlift_testing.airflow import SHAPES, AirflowServer
from airlift_testing.dagster import DagsterServer
from airlift_testing.versions import (
    AIRFLOW_VERSIONS,
    all_airflow_versions,
    default_shape,
    resolve_airflow_version,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--airflow-version",
        default=os.environ.get("AIRLIFT_AIRFLOW_VERSION", "3"),
        choices=sorted({*AIRFLOW_VERSIONS, *all_airflow_versions(), *all_airflow_versions().values()}),
        help="Airflow generation (2|3), tested minor (e.g. 2.9) or exact version the integration tests run against.",
    )


    parser.addoption(
        "--airflow-shape",
        default=os.environ.get("AIRLIFT_AIRFLOW_SHAPE") or None,
        choices=SHAPES,
        help="standalone: SQLite (and the simple auth manager on Airflow 3); production: PostgreSQL, "
        "LocalExecutor (and the FAB auth manager on Airflow 3). Default: production on Airflow 2, standalone on "
        "Airflow 3 (airlift_testing.versions.DEFAULT_SHAPES).",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: starts real Airflow and/or Dagster servers on 127.0.0.1")


@pytest.fixture(scope="session")
def airflow_version(request: pytest.FixtureRequest) -> str:
    """The exact Airflow version under test (e.g. "3.3.2")."""
    return resolve_airflow_version(str(request.config.getoption("--airflow-version")))


@pytest.fixture(scope="session")
def airflow_shape(request: pytest.FixtureRequest, airflow_version: str) -> str:
    """The deployment shape of the servers under test ("standalone" or "production"): ``--airflow-shape``, else
    the default of the Airflow generation under test (:func:`airlift_testing.versions.default_shape`)."""
    return str(request.config.getoption("--airflow-shape") or default_shape(airflow_version))


@pytest.fixture(scope="module")
def airflow_server_factory(airflow_version: str, airflow_shape: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., AirflowServer]]:
    """``factory(dags_folder, **kwargs)`` starts an AirflowServer of the version and shape under test;
    every server (and its database) is stopped at the end of the test module that started it (even
    when tests fail): a 2-core machine cannot afford one module's idle servers during the next."""
    servers: list[AirflowServer] = []

    def factory(dags_folder: Path, **kwargs: Any) -> AirflowServer:
        kwargs.setdefault("version", airflow_version)
        kwargs.setdefault("shape", airflow_shape)
        kwargs.setdefault("home", tmp_path_factory.mktemp(f"airflow-{kwargs['version']}"))
        server = AirflowServer(dags_folder=dags_folder, **kwargs)
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def dagster_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., DagsterServer]]:
    """``factory(defs_file=... | workspace_file=..., **kwargs)`` starts a DagsterServer (or the
    subclass ``server_class``, e.g. :class:`airlift_testing.chaos.ChaosDagster`); all are stopped at the
    end of the test module that started them."""
    servers: list[DagsterServer] = []

    def factory(server_class: type[DagsterServer] = DagsterServer, **kwargs: Any) -> DagsterServer:
        kwargs.setdefault("home", tmp_path_factory.mktemp("dagster-home"))
        server = server_class(**kwargs)
        servers.append(server)
        return server.start()

    yield factory
    for server in servers:
        server.stop()
