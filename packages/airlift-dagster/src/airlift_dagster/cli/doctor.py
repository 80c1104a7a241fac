"""``airlift doctor``: can this machine, with these credentials, do what Airlift needs?"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

import click
import requests
from rich.markup import escape
from rich.table import Table

from airlift_client import (
    AirflowAuthError,
    AirflowInstance,
    AirflowUnreachableError,
    AirliftClientError,
)
from airlift_dagster.cli._connect import DAGSTER_TOKEN_HINT, Connection, connection_options
from airlift_dagster.cli._errors import EXIT_OK, EXIT_PROBLEMS, CliError
from airlift_dagster.cli._output import Output, first_line, json_option
from airlift_dagster.state import with_unlisted_dags
from airlift_protocol import RUN_EVENTS, ApiVersion, DagInfo
from airlift_protocol.push_status import (
    COUNTERS,
    DELIVERED,
    SETTLE_TOO_SHORT,
    UNRESOLVED_INSTANCE_NAME,
    PushStatusError,
    load_push_status,
)
from airlift_protocol.tags import PUSH_SETTLE_MARGIN

__all__ = ["Check", "doctor", "push_status_checks", "run_checks"]

#: Clock skew above which the sensor's time windows can miss or repeat runs.
MAX_SKEW_SECONDS = 30.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's report: ``status`` is OK, WARN or FAIL; ``hint`` says what to do."""

    name: str
    status: str
    detail: str
    hint: str = ""


def _health(url: str, timeout: float) -> requests.Response:
    last: requests.Response | None = None
    for path in ("/api/v2/monitor/health", "/api/v1/health"):
        last = requests.get(url + path, timeout=timeout)
        if last.status_code == 200:
            return last
    assert last is not None
    return last


def _skew(response: requests.Response, sent: float, received: float) -> float | None:
    header = response.headers.get("Date")
    if not header:
        return None
    # The Date header is truncated to the second: the server's time was in [Date, Date + 1), so take
    # its middle, and compare with the middle of the request.
    server = parsedate_to_datetime(header).timestamp() + 0.5
    return server - (sent + received) / 2


def _airflow_version(instance: AirflowInstance, timeout: float) -> str:
    session = requests.Session()
    api = instance.api_version
    instance.auth_backend.authenticate(session, api_version=api, timeout=timeout)
    base = "/api/v2" if api is ApiVersion.V2 else "/api/v1"
    response = session.get(instance.webserver_url + base + "/version", timeout=timeout)
    response.raise_for_status()
    return str(response.json().get("version", "unknown"))


def _dagster_checks(conn: Connection) -> list[Check]:
    if not conn.dagster_url:
        return [Check("Dagster", "WARN", "not checked", "give --dagster-url (or AIRLIFT_DAGSTER_URL) to check it")]
    url = conn.dagster_url.rstrip("/")
    hint = (
        f"Airflow reaches Dagster through the connection AIRFLOW_CONN_DAGSTER_DEFAULT='{url}' "
        "(the URL must resolve from the Airflow workers too)"
    )
    try:
        response = conn.post_dagster_graphql("{ version }")
        version = response.json()["data"]["version"] if response.status_code == 200 else None
    except (requests.RequestException, ValueError, KeyError, TypeError) as e:
        return [Check("Dagster", "FAIL", f"{url}: {first_line(e)}", "start dagster-webserver or fix --dagster-url")]
    if response.status_code in (401, 403):
        return [Check("Dagster", "FAIL", f"{url}/graphql answered {response.status_code}", DAGSTER_TOKEN_HINT)]
    if not version:
        return [Check("Dagster", "FAIL", f"{url}/graphql answered {response.status_code}", "is this a Dagster webserver?")]
    return [Check("Dagster", "OK", f"{url} (Dagster {version})", hint)]


def run_checks(conn: Connection, out: Output) -> list[Check]:
    """Run every check in order; a failed prerequisite skips the checks that need it."""
    checks: list[Check] = []
    timeout = conn.timeout
    try:
        instance = conn.instance()
    except (CliError, AirliftClientError) as e:
        checks.append(Check("Configuration", "FAIL", first_line(e), "see `airlift doctor --help` for the connection options"))
        return checks + _dagster_checks(conn)
    code = conn.user_code() if conn.has_user_code else None
    if code is not None:
        checks.append(Check("Dagster definitions", "OK", f"{code.source}: {len(code.assets_by_task)} task(s) mapped to assets"))

    try:
        url = instance.webserver_url  # MWAA: asks the MWAA API
    except AirliftClientError as e:
        checks.append(Check("Airflow location", "FAIL", first_line(e), "check the MWAA environment name, region and AWS credentials"))
        return checks + _dagster_checks(conn)
    if url:
        try:
            sent = time.time()
            health = _health(url, timeout)
            received = time.time()
        except requests.RequestException as e:
            checks.append(Check("Reachable", "FAIL", f"{url}: {type(e).__name__}", "is the webserver running, and is --url right?"))
            return checks + _dagster_checks(conn)
        elapsed = (received - sent) * 1000
        checks.append(Check("Reachable", "OK", f"{url} answered HTTP {health.status_code} in {elapsed:.0f} ms"))
    else:
        health, sent, received = None, 0.0, 0.0

    def step(name: str, action: Callable[[], str], hint: str) -> bool:
        try:
            checks.append(Check(name, "OK", action()))
            return True
        except AirflowAuthError as e:
            checks.append(Check(name, "FAIL", first_line(e), "check the user, password or token"))
        except AirflowUnreachableError as e:
            checks.append(Check(name, "FAIL", first_line(e), "is the webserver running, and is --url right?"))
        except (AirliftClientError, requests.RequestException, ValueError) as e:
            checks.append(Check(name, "FAIL", first_line(e), hint))
        return False

    def generation() -> str:
        api = instance.api_version
        return f"Airflow {'3' if api is ApiVersion.V2 else '2'} REST API ({'/api/v2' if api is ApiVersion.V2 else '/api/v1'})"

    try:
        # The generation is confirmed with an authenticated request: refused credentials show up here.
        checks.append(Check("REST API", "OK", generation()))
    except AirflowAuthError as e:
        checks.append(Check("Authentication", "FAIL", first_line(e), "check the user, password or token"))
        return checks + _dagster_checks(conn)
    except AirflowUnreachableError as e:
        checks.append(Check("REST API", "FAIL", first_line(e), "is the webserver running, and is --url right?"))
        return checks + _dagster_checks(conn)
    except (AirliftClientError, requests.RequestException, ValueError) as e:
        checks.append(Check("REST API", "FAIL", first_line(e), "pass the Airflow webserver's base URL"))
        return checks + _dagster_checks(conn)
    first: list[DagInfo] = []

    def auth() -> str:
        first.extend(d for _, d in zip(range(1), instance.iter_dags(), strict=False))
        return f"{instance.auth_backend.describe()}: accepted"

    if not step("Authentication", auth, "check the credentials"):
        return checks + _dagster_checks(conn)
    step("Airflow version", lambda: _airflow_version(instance, timeout), "the user needs read access to /version")

    permissions: list[tuple[str, Callable[[], Any]]] = [("list DAGs", lambda: None)]
    if first:
        dag = first[0]
        permissions += [
            ("read tasks", lambda: instance.list_tasks(dag.dag_id)),
            ("read DAG source", lambda: instance.get_dag_source(dag)),
            ("list DAG runs (batch)", lambda: next(iter(instance.iter_dag_runs(dag_ids=[dag.dag_id])), None)),
            ("list task instances (batch)", lambda: next(iter(instance.iter_task_instances(dag_ids=[dag.dag_id])), None)),
        ]
        refused = []
        for what, action in permissions:
            try:
                action()
            except AirliftClientError as e:
                refused.append(f"{what} ({first_line(e)})")
        if refused:
            checks.append(Check("API permissions", "FAIL", "refused: " + "; ".join(refused),
                                "give the user read access to DAGs, DAG runs, task instances and DAG code (Viewer role)"))
        else:
            checks.append(Check("API permissions", "OK", ", ".join(w for w, _ in permissions)))
    else:
        checks.append(Check("API permissions", "WARN", "the user sees no DAGs, so runs and tasks could not be checked",
                            "check the DAG folder is parsed and the user may read DAGs"))

    checks.append(_import_errors_check(instance, sorted({d for d, _ in code.assets_by_task}) if code is not None else None))
    checks.append(_run_events_check(instance))
    skew = _skew(health, sent, received) if health is not None else None
    if skew is None:
        checks.append(Check("Clock skew", "WARN", "Airflow sent no Date header", ""))
    else:
        status = "OK" if abs(skew) <= MAX_SKEW_SECONDS else "FAIL"
        detail = (
            "Airflow's clock agrees with this machine's (to the second its Date header gives)"
            if abs(skew) < 1.5 else f"Airflow's clock is {round(skew):+d} s from this machine's"
        )
        checks.append(Check("Clock skew", status, detail,
                            "" if status == "OK" else "sync both clocks (NTP)"))
    return checks + _dagster_checks(conn)


def _import_errors_check(instance: AirflowInstance, mapped_dag_ids: list[str] | None) -> Check:
    """Airflow's import errors; with the Dagster definitions (--defs), the mapped DAGs they take out."""
    try:
        errors = list(instance.iter_import_errors())
        found = with_unlisted_dags(instance, list(instance.iter_dags()), mapped_dag_ids) if errors and mapped_dag_ids else {}
        broken = {dag_id: err for dag_id, err in found.items() if mapped_dag_ids and dag_id in mapped_dag_ids}
    except AirliftClientError as e:
        return Check("DAG imports", "WARN", f"could not read Airflow's import errors: {first_line(e)}", "the user needs read access to import errors")
    if not errors:
        return Check("DAG imports", "OK", "Airflow imports every DAG file")
    hint = "fix the file(s) (`airflow dags list-import-errors` shows the whole error)"
    if broken:
        hit = [f"DAG {dag_id!r} ({err.filename}: {err.summary})" for dag_id, err in sorted(broken.items())]
        return Check("DAG imports", "FAIL", "; ".join(hit[:5]) + (f" and {len(hit) - 5} more" if len(hit) > 5 else ""),
                     hint + ": their DAGs keep their Dagster assets, but Airflow runs nothing new from them")
    files = "; ".join(f"{e.filename}: {e.summary}" for e in errors[:5]) + (f" and {len(errors) - 5} more" if len(errors) > 5 else "")
    mapped = " (none holds a mapped DAG)" if mapped_dag_ids is not None else ""
    return Check("DAG imports", "WARN", f"{len(errors)} file(s) fail to import{mapped}: {files}", hint)


#: How far back ``airlift doctor`` looks for run-event rows.
RUN_EVENTS_LOOKBACK = timedelta(days=1)


def _run_events_check(instance: AirflowInstance) -> Check:
    """Whether airlift-airflow's run-event listener writes its rows (:mod:`airlift_protocol.run_events`):
    without them each sensor tick finds ended runs by a scan of ``dag_run``."""
    now = datetime.now(timezone.utc)
    try:
        row = next(iter(instance.iter_event_logs(after=now - RUN_EVENTS_LOOKBACK, before=now, events=list(RUN_EVENTS))), None)
    except AirliftClientError as e:
        return Check("Run events", "WARN", f"could not read Airflow's audit log: {first_line(e)}",
                     "the sensor needs to read the audit log (Airflow 2: the permission \"can read on Audit Logs\")")
    if row is None:
        return Check("Run events", "WARN", "no run-event row in Airflow's audit log in the last 24 hours: each sensor tick finds "
                     "the runs that ended by a scan of dag_run, which Airflow does not index",
                     "install airlift-airflow where Airflow's scheduler runs (its plugin writes a row per run start and end), "
                     "unless no run started or ended in that time")
    return Check("Run events", "OK", f"airlift-airflow's listener writes them (one at {row.when.isoformat(timespec='seconds')}): "
                 "the sensor reads runs from them, not by a scan of dag_run")


#: Actionable push problems shown, at most (the newest).
MAX_PUSH_PROBLEMS_SHOWN = 5


def push_status_checks(path: str) -> list[Check]:
    """What push delivery did on the Airflow machine whose status file is ``path``: the counters
    (WARN when push dropped or failed anything: the sensor delivered those) and each problem the user
    must act on (FAIL), newest last."""
    try:
        status = load_push_status(path)
    except PushStatusError as e:
        return [Check("Push delivery", "FAIL", first_line(e), "give --push-status the push-status.json of an Airflow machine")]
    counts = ", ".join(f"{name.replace('_', ' ')} {status.counters.get(name, 0)}" for name in COUNTERS)
    missed = sum(n for name, n in status.counters.items() if name != DELIVERED)
    detail = f"{path}: since {status.since or '-'}: {counts} (updated {status.updated or '-'})"
    hint = "dropped and failed reports are left to the Airlift sensor, which delivers them on its next ticks"
    checks = [Check("Push delivery", "WARN" if missed else "OK", detail, hint if missed else "")]
    return checks + [
        Check("Push problem", "FAIL", f"{p.at} {p.what}: {p.reason}", _push_hint(p.counter))
        for p in [p for p in status.problems if p.actionable][-MAX_PUSH_PROBLEMS_SHOWN:]
    ]


def _push_hint(counter: str) -> str:
    if counter == SETTLE_TOO_SHORT:
        return (f"the Airlift sensor's settle must exceed push's {PUSH_SETTLE_MARGIN:g}s margin, or push could report a "
                "run after the sensor did: raise SensorSettings(settle=...) (component: sensor.settle_seconds; default 10) "
                "and reload the code location")
    if counter == UNRESOLVED_INSTANCE_NAME:
        return ("Dagster must hold exactly one DAG asset [<instance name>, 'dag', <dag_id>] for the DAG: map the DAG in "
                "Dagster, or set [airlift] instance_name (AIRLIFT_AIRFLOW_INSTANCE_NAME) to the AirflowInstance's name")
    return "fix the Airflow connection to Dagster (default dagster_default: URL, Dagster+ API token) on the Airflow machines"


_STYLE = {"OK": "[green]OK[/]", "WARN": "[yellow]WARN[/]", "FAIL": "[bold red]FAIL[/]"}


@click.command()
@connection_options
@click.option("--push-status", "push_status", metavar="PATH", envvar="AIRLIFT_PUSH_STATUS", default=None,
              help="push-status.json of an Airflow machine (in <tmp>/airlift-push-<uid>/ there): show push delivery's "
                   "counters and the problems to act on [env AIRLIFT_PUSH_STATUS]")
@json_option
def doctor(conn: Connection, push_status: str | None, as_json: bool) -> None:
    """Check that Airlift can talk to Airflow (and Dagster) from here.

    Checks reachability, the REST generation, the Airflow version, the credentials, the API
    permissions the sensor needs, clock skew, and Dagster's webserver; with --push-status, what push
    mode delivered, dropped and failed on that Airflow machine. Exit code 1 when a check fails.

    \b
    Example:
        AIRLIFT_AIRFLOW_URL=http://localhost:8080 AIRLIFT_AIRFLOW_USERNAME=admin \\
        AIRLIFT_AIRFLOW_PASSWORD=admin airlift doctor --dagster-url http://localhost:3000
    """
    out = Output(as_json=as_json)
    checks = run_checks(conn, out)
    if push_status:
        checks += push_status_checks(push_status)
    if as_json:
        out.emit_json({"checked_at": datetime.now(timezone.utc).isoformat(), "checks": [asdict(c) for c in checks]})
    else:
        table = Table(show_header=False, box=None, pad_edge=False)
        for column in ("status", "check", "detail"):
            table.add_column(column, overflow="fold")
        for check in checks:
            detail = escape(check.detail) + (f"\n[dim]→ {escape(check.hint)}[/]" if check.hint and check.status != "OK" else "")
            if check.status == "OK" and check.hint:
                detail += f"\n[dim]{escape(check.hint)}[/]"
            table.add_row(_STYLE[check.status], check.name, detail)
        out.print(table)
    raise SystemExit(EXIT_PROBLEMS if any(c.status == "FAIL" for c in checks) else EXIT_OK)
