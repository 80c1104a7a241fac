"""Where the command line finds Airflow: flags, environment variables, or the user's Dagster code.

The ``AirflowInstance`` comes either from connection options (``--url`` and credentials, or
``--mwaa-env``) or from the user's definitions (``--defs path.py`` / ``-m module``), which also give
the task → asset mapping the ``state status`` and ``state validate`` commands check.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
import requests
from dagster import AssetKey, Definitions

from airlift_client import (
    AirflowInstance,
    AuthBackend,
    BasicAuthBackend,
    RetryPolicy,
    TokenAuthBackend,
)
from airlift_dagster.cli._errors import CliError
from airlift_dagster.mapping import task_handles_of

__all__ = ["DAGSTER_TOKEN_HEADER", "DAGSTER_TOKEN_HINT", "Connection", "UserCode", "connection_options", "load_user_code"]

F = TypeVar("F", bound=Callable[..., Any])

AUTH_KINDS = ("basic", "token", "mwaa")
#: The header Dagster+ reads its API token from (the Airflow side sends the same one).
DAGSTER_TOKEN_HEADER = "Dagster-Cloud-Api-Token"
#: What to do when Dagster refuses a request (401/403): its API token is missing or wrong.
#: The name of an ``AirflowInstance`` built from ``--url``/``--mwaa-env`` alone, for commands whose
#: output does not depend on it.
UNNAMED_INSTANCE = "airflow"
DAGSTER_TOKEN_HINT = "Dagster refused the request: give a valid Dagster+ API token in AIRLIFT_DAGSTER_API_TOKEN (or --dagster-token)"


@dataclass(frozen=True)
class UserCode:
    """What ``--defs``/``-m`` gave: the Airflow instance and the task → asset mapping."""

    source: str
    instance: AirflowInstance | None
    definitions: Definitions | None
    assets_by_task: dict[tuple[str, str], list[AssetKey]] = field(default_factory=dict)


def _mapping(defs: Definitions) -> dict[tuple[str, str], list[AssetKey]]:
    mapping: dict[tuple[str, str], list[AssetKey]] = {}
    for spec in defs.resolve_all_asset_specs():
        for handle in task_handles_of(spec):
            mapping.setdefault(handle, []).append(spec.key)
    return mapping


def _import(defs_path: str | None, module: str | None) -> tuple[str, Any]:
    if defs_path:
        path = Path(defs_path).resolve()
        if not path.is_file():
            raise CliError(f"--defs {defs_path}: no such file; give the Python file that builds your Dagster Definitions.")
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(f"_airlift_user_defs_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise CliError(f"--defs {defs_path}: not a Python file.")
        mod = importlib.util.module_from_spec(spec)
        source = str(path)
        loader: Callable[[], None] = lambda: spec.loader.exec_module(mod)  # type: ignore[union-attr]  # noqa: E731
    else:
        assert module is not None
        source = module
        sys.path.insert(0, str(Path.cwd()))
        holder: dict[str, Any] = {}

        def loader() -> None:
            holder["mod"] = importlib.import_module(module)

    try:
        loader()
    except CliError:
        raise
    except Exception as e:  # the user's code: report it in one line, naming the file
        raise CliError(f"{source}: loading your definitions failed: {type(e).__name__}: {e}") from e
    return source, (mod if defs_path else holder["mod"])


def load_user_code(defs_path: str | None, module: str | None, *, instance_name: str | None = None) -> UserCode:
    """Import the user's definitions and pick the ``AirflowInstance`` and ``Definitions`` in it.

    The module's top-level ``AirflowInstance`` objects (also those imported into it) and its
    ``Definitions`` (``defs`` preferred) are used; ``instance_name`` picks one of several instances.

    >>> code = load_user_code("my_project/defs.py", None)  # doctest: +SKIP
    >>> code.instance.name  # doctest: +SKIP
    'airflow_instance_one'
    """
    source, mod = _import(defs_path, module)
    values = list(vars(mod).values())
    instances = {v.name: v for v in values if isinstance(v, AirflowInstance)}
    if instance_name is not None:
        if instance_name not in instances:
            known = ", ".join(sorted(instances)) or "none"
            raise CliError(f"{source}: no AirflowInstance named {instance_name!r} (found: {known}).")
        instance: AirflowInstance | None = instances[instance_name]
    elif len(instances) > 1:
        raise CliError(f"{source}: several AirflowInstances ({', '.join(sorted(instances))}); pick one with --instance NAME.")
    else:
        instance = next(iter(instances.values()), None)
    definitions = getattr(mod, "defs", None)
    if not isinstance(definitions, Definitions):
        definitions = next((v for v in values if isinstance(v, Definitions)), None)
    return UserCode(
        source=source,
        instance=instance,
        definitions=definitions,
        assets_by_task=_mapping(definitions) if definitions is not None else {},
    )


@dataclass
class Connection:
    """Connection options as given on the command line (or by environment variables)."""

    url: str | None = None
    auth: str = "basic"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    mwaa_env: str | None = None
    mwaa_region: str | None = None
    defs_path: str | None = None
    module: str | None = None
    instance_name: str | None = None
    timeout: float = 10.0
    dagster_url: str | None = None
    dagster_token: str | None = field(default=None, repr=False)
    _user_code: UserCode | None = field(default=None, repr=False)
    _instance: AirflowInstance | None = field(default=None, repr=False)
    _unnamed: bool = field(default=False, repr=False)

    @property
    def has_user_code(self) -> bool:
        """Whether ``--defs`` or ``-m`` was given."""
        return bool(self.defs_path or self.module)

    def user_code(self) -> UserCode | None:
        """The user's definitions (imported once), or ``None`` without ``--defs``/``-m``."""
        if not self.has_user_code:
            return None
        if self._user_code is None:
            self._user_code = load_user_code(self.defs_path, self.module, instance_name=self.instance_name)
        return self._user_code

    def post_dagster_graphql(self, query: str, variables: dict[str, Any] | None = None) -> requests.Response:
        """Send one GraphQL request to ``--dagster-url`` (with the Dagster+ API token, when given, as
        the ``Dagster-Cloud-Api-Token`` header); network errors are the caller's to report."""
        if not self.dagster_url:
            raise CliError("no Dagster to talk to: give --dagster-url (or AIRLIFT_DAGSTER_URL).")
        body: dict[str, Any] = {"query": query}
        if variables is not None:
            body["variables"] = variables
        headers = {DAGSTER_TOKEN_HEADER: self.dagster_token} if self.dagster_token else {}
        return requests.post(self.dagster_url.rstrip("/") + "/graphql", json=body, headers=headers, timeout=self.timeout)

    def _backend(self) -> AuthBackend:
        if self.auth == "mwaa" or (self.mwaa_env and not self.url):
            if not self.mwaa_env:
                raise CliError("--auth mwaa needs --mwaa-env NAME (or AIRLIFT_MWAA_ENV).")
            from airlift_client.mwaa import MwaaSessionAuthBackend

            return MwaaSessionAuthBackend(environment_name=self.mwaa_env, region_name=self.mwaa_region)
        if not self.url:
            raise CliError(
                "no Airflow to talk to: give --url (or AIRLIFT_AIRFLOW_URL) with credentials, --mwaa-env, "
                "or --defs/-m pointing at your Dagster definitions."
            )
        url = self.url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise CliError(f"--url {self.url!r}: expected an http:// or https:// URL of the Airflow webserver.")
        if self.auth == "token":
            if not self.token:
                raise CliError("--auth token needs --token (or AIRLIFT_AIRFLOW_TOKEN).")
            return TokenAuthBackend(url, token=self.token)
        if not self.username or self.password is None:
            raise CliError(
                "--auth basic needs --username and --password (or AIRLIFT_AIRFLOW_USERNAME / AIRLIFT_AIRFLOW_PASSWORD)."
            )
        return BasicAuthBackend(url, self.username, self.password)

    def _known_instance_name(self) -> str | None:
        """The ``AirflowInstance``'s name: ``--instance``, else the one in the user's definitions."""
        if self.instance_name:
            return self.instance_name
        code = self.user_code()
        return code.instance.name if code is not None and code.instance is not None else None

    def instance(self, *, named: bool = False) -> AirflowInstance:
        """The ``AirflowInstance`` to talk to: from the options, else from the user's definitions.

        Built from the options, it takes its name from ``--instance``, else from the user's
        definitions. ``named=True`` is for a command whose output depends on that name (it is part of
        the DAG assets' keys): without either it refuses rather than make up a name.
        """
        if self._instance is None:
            code = self.user_code()
            if not self.url and not self.mwaa_env and code is not None:
                if code.instance is None:
                    raise CliError(f"{code.source}: no AirflowInstance found at module level; give --url instead.")
                self._instance = code.instance
            else:
                name = self._known_instance_name()
                self._instance = AirflowInstance(
                    auth_backend=self._backend(),
                    name=name or UNNAMED_INSTANCE,
                    timeout=self.timeout,
                    retry_policy=RetryPolicy(max_attempts=2, deadline=self.timeout * 3),
                )
                self._unnamed = name is None
        if named and self._unnamed:
            code = self.user_code()
            how = (f"{code.source} has no AirflowInstance; pass --instance NAME" if code is not None
                   else "pass --instance NAME (or --defs/-m with your Dagster definitions)")
            raise CliError(f"cannot tell the AirflowInstance's name, part of the DAG assets' keys: {how}, NAME being "
                           "the name of the AirflowInstance in your Dagster definitions; nothing changed.")
        return self._instance


_OPTIONS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--url",), {"envvar": "AIRLIFT_AIRFLOW_URL", "help": "Airflow webserver URL."}),
    (("--auth",), {"envvar": "AIRLIFT_AIRFLOW_AUTH", "type": click.Choice(AUTH_KINDS), "default": "basic",
                   "show_default": True, "help": "How to log in to Airflow."}),
    (("--username", "-u"), {"envvar": "AIRLIFT_AIRFLOW_USERNAME", "help": "Airflow user (basic auth)."}),
    (("--password",), {"envvar": "AIRLIFT_AIRFLOW_PASSWORD", "help": "Airflow password (prefer the env var)."}),
    (("--token",), {"envvar": "AIRLIFT_AIRFLOW_TOKEN", "help": "Bearer token (token auth; prefer the env var)."}),
    (("--mwaa-env",), {"envvar": "AIRLIFT_MWAA_ENV", "help": "Amazon MWAA environment name."}),
    (("--mwaa-region",), {"envvar": "AIRLIFT_MWAA_REGION", "help": "AWS region of the MWAA environment."}),
    (("--defs", "defs_path"), {"envvar": "AIRLIFT_DEFS", "help": "Python file of your Dagster definitions."}),
    (("-m", "--module"), {"envvar": "AIRLIFT_DEFS_MODULE", "help": "Module of your Dagster definitions."}),
    (("--instance", "instance_name"), {"envvar": "AIRLIFT_INSTANCE",
                                      "help": "AirflowInstance name: picks one of several in --defs; names the DAG assets without --defs."}),
    (("--timeout",), {"envvar": "AIRLIFT_TIMEOUT", "type": float, "default": 10.0, "show_default": True,
                      "help": "Seconds per HTTP request."}),
    (("--dagster-url",), {"envvar": "AIRLIFT_DAGSTER_URL", "help": "Dagster webserver URL (doctor, last Dagster runs)."}),
    (("--dagster-token",), {"envvar": "AIRLIFT_DAGSTER_API_TOKEN",
                            "help": "Dagster+ API token for --dagster-url (prefer the env var)."}),
]
_NAMES = ("url", "auth", "username", "password", "token", "mwaa_env", "mwaa_region", "defs_path", "module",
          "instance_name", "timeout", "dagster_url", "dagster_token")


def connection_options(func: F) -> F:
    """Add the connection options to a command; it receives them as ``conn: Connection``."""

    def wrapper(**kwargs: Any) -> Any:
        conn = Connection(**{name: kwargs.pop(name) for name in _NAMES})
        return func(conn=conn, **kwargs)

    # keeps the options already declared on ``func`` (click stores them in its __dict__)
    decorated: Any = functools.wraps(func)(wrapper)
    for decls, attrs in reversed(_OPTIONS):
        decorated = click.option(*decls, **attrs)(decorated)
    return decorated  # type: ignore[no-any-return]
