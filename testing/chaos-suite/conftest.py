"""The chaos suite's harness: one real Airflow (push on, nothing about Dagster's instance name
configured) and one real Dagster webserver + daemon for the whole session, a proxy between them, and
the ledger that compares Airflow's tries with Dagster's event log.

The ledger: one row per Airflow try of a task mapped to assets (DAG, run, task, map index, try, the
states seen) and one per DAG run, each with what Dagster must hold (one materialization per mapped
asset for a successful try, one DAG-asset materialization each time a run became successful) and
what it holds, by source: ``push`` (identity in metadata only), ``sensor`` (identity in tags) or
``run`` (a migrated task's own Dagster run, matched to the try it stands for with
:func:`airlift_protocol.run_counts_for_try`). Materializations that match no expected row are rows of
their own. A scenario passes only when every row's seen equals its expected.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from airlift_protocol import AirflowTaskRef, parse_dagster_run_tags, run_counts_for_try
from airlift_protocol.tags import AIRFLOW_EVENT_TAG
from airlift_testing import AirflowServer, repo_root, wait_until
from airlift_testing.chaos import ChaosDagster, DelayProxy
from airlift_testing.deploy import CeleryAirflow, DeployedDagster, wait_no_processes_using
from airlift_testing.procs import free_port

HERE = Path(__file__).parent
INSTANCE = "chaos_prod"  # the AirflowInstance's name in Dagster; the Airflow side is never told
LOCATION = "chaos_defs"
SENSOR = {"repositoryLocationName": LOCATION, "repositoryName": "__repository__", "sensorName": f"{INSTANCE}__airflow_sensor"}
REST_TIMEOUT = 120.0  # Airflow's API answers slowly while its tasks keep a 2-core machine busy
MAIN, LATE, NAMED = "chaos_main", "chaos_late", "chaos_named"
#: (DAG, task) -> its asset (one each); the order is the DAG's.
TASK_ASSETS: dict[tuple[str, str], tuple[str, ...]] = {
    (MAIN, "extract"): ("chaos", "raw"),
    (MAIN, "fan"): ("chaos", "fanned"),
    (MAIN, "migrated"): ("chaos", "built"),
    (MAIN, "flaky"): ("chaos", "flaky"),
    (MAIN, "load"): ("chaos", "report"),
    (LATE, "late_task"): ("chaos", "late"),
    (NAMED, "named_task"): ("chaos", "named"),
}
DAG_ASSETS = {dag_id: (INSTANCE, "dag", dag_id) for dag_id in (MAIN, LATE, NAMED)}
TASK_ORDER = [task for _, task in TASK_ASSETS]

MATERIALIZATIONS = """
query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename ... on Asset {
  assetMaterializations(limit: 2000) { runId timestamp tags { key value }
    metadataEntries { label ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } } } } } }
"""
DAGSTER_RUNS = """query($v: String!) { runsOrError(filter: {tags: [{key: "airlift/airflow_run_id", value: $v}]}) {
  ... on Runs { results { runId status tags { key value } } } } }"""
RUN_TAGS = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { tags { key value } } } }"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos_ci: the chaos suite's quick subset (`uvx nox -t chaos-ci`)")
    config.addinivalue_line("markers", "deploy: the story on the production-shaped deployment (`uvx nox -t production`)")


# ------------------------------------------------------------------------------------------- ledger
TryKey = tuple[str, str, str, int, int]  # DAG, run, task, map index, try number


@dataclass(frozen=True)
class Seen:
    """One materialization in Dagster, as the ledger reads it."""

    asset: tuple[str, ...]
    airflow_run_id: str
    map_index: int
    try_number: int
    source: str  # push | sensor | run | ?
    ref: AirflowTaskRef | None = None  # the run tags of a migrated task's Dagster run


def parse_materialization(asset: tuple[str, ...], raw: dict[str, Any], run_tags: Callable[[str], dict[str, str]]) -> Seen:
    """What one GraphQL materialization says about its Airflow identity and where it came from."""
    tags = {t["key"]: t["value"] for t in raw.get("tags") or []}
    meta = {e["label"]: e.get("text", e.get("intValue")) for e in raw.get("metadataEntries") or []}
    run_id = str(meta.get("Airflow run id") or "")
    map_index = int(meta["Map index"]) if meta.get("Map index") is not None else -1
    try_number = int(meta.get("Try number") or 0)
    if AIRFLOW_EVENT_TAG in tags:
        return Seen(asset, run_id, map_index, try_number, "sensor")
    if AIRFLOW_EVENT_TAG in meta:
        return Seen(asset, run_id, map_index, try_number, "push")
    if raw.get("runId"):
        ref = parse_dagster_run_tags(run_tags(str(raw["runId"])))
        if ref is not None:
            return Seen(asset, ref.run_id, ref.map_index, ref.try_number or 0, "run", ref)
    return Seen(asset, run_id, map_index, try_number, "?")


@dataclass
class Ledger:
    """What Airflow did (accumulated over snapshots) against what Dagster holds."""

    states: dict[TryKey, list[str]] = field(default_factory=dict)
    max_tries: dict[TryKey, int | None] = field(default_factory=dict)
    run_states: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    run_successes: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    #: DAG -> (run, task, map index) -> the try current when the DAG became mapped (earlier tries
    #: are history the sensor does not report, see the guide's "map a DAG ... after its runs finished").
    mapped_from: dict[str, dict[tuple[str, str, int], int]] = field(default_factory=dict)
    #: DAGs whose tasks Dagster does not map yet: their tries need nothing in Dagster (their DAG runs do).
    unmapped: set[str] = field(default_factory=lambda: {LATE})

    def record_try(self, key: TryKey, state: str | None, max_tries: int | None) -> None:
        seen = self.states.setdefault(key, [])
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        self.max_tries[key] = max_tries

    def record_run(self, dag_id: str, run_id: str, state: str, end_date: str | None) -> None:
        seen = self.run_states.setdefault((dag_id, run_id), [])
        if not seen or seen[-1] != state:
            seen.append(state)
        if state == "success":
            self.run_successes[(dag_id, run_id)].add(str(end_date))

    def expected_try(self, key: TryKey) -> int:
        dag_id, run_id, task_id, map_index, try_number = key
        if "success" not in self.states.get(key, []) or dag_id in self.unmapped:
            return 0
        first = self.mapped_from.get(dag_id)
        if first is not None and try_number < first.get((run_id, task_id, map_index), 0):
            return 0
        return 1

    def attribute(self, seen: Seen) -> tuple[str, Any]:
        """The ledger row a materialization belongs to: ("try", TryKey), ("run", (dag, run)) or ("extra", text)."""
        for dag_id, path in DAG_ASSETS.items():
            if seen.asset == path:
                return ("run", (dag_id, seen.airflow_run_id)) if seen.source in ("push", "sensor") else ("extra", f"{path} from {seen.source}")
        dag_id, task_id = next(k for k, p in TASK_ASSETS.items() if p == seen.asset)
        if seen.ref is None:
            return "try", (dag_id, seen.airflow_run_id, task_id, seen.map_index, seen.try_number)
        ref = seen.ref
        candidates = sorted(k for k in self.states if k[:4] == (dag_id, ref.run_id, task_id, ref.map_index)
                            and "success" in self.states[k]
                            and run_counts_for_try(ref, try_number=k[4], max_tries=self.max_tries.get(k)))
        return "try", candidates[0] if candidates else (dag_id, ref.run_id, task_id, ref.map_index, ref.try_number or 0)

    def table(self, runs: Iterable[tuple[str, str]], seen: Iterable[Seen]) -> tuple[str, list[str], bool]:
        """The printed ledger of ``runs``, the rows that are wrong, and whether nothing is missing."""
        scope = set(runs)
        by_row: dict[Any, Counter[str]] = defaultdict(Counter)
        for s in seen:
            kind, row = self.attribute(s)
            if kind == "extra" or (kind == "run" and row in scope) or (kind == "try" and row[:2] in scope):
                by_row[(kind, row)][s.source] += 1
        lines = [f"{'DAG':10} {'run':42} {'task':9} {'map':>3} {'try':>3} {'Airflow states':24} {'expected':>8}  seen"]
        wrong = []
        missing = False
        tries = sorted((k for k in self.states if k[:2] in scope and (k[0], k[2]) in TASK_ASSETS),
                       key=lambda k: (k[0], k[1], TASK_ORDER.index(k[2]), k[3], k[4]))
        rows: list[tuple[Any, str, int]] = []
        for key in tries:
            rows.append((("try", key), f"{key[0]:10} {key[1]:42} {key[2]:9} {key[3]:>3} {key[4]:>3} {'>'.join(self.states[key]):24}",
                         self.expected_try(key)))
        for dag_run in sorted(scope):
            ends = len(self.run_successes.get(dag_run, ()))
            rows.append((("run", dag_run), f"{dag_run[0]:10} {dag_run[1]:42} {'(DAG)':9} {'':>3} {'':>3} {'>'.join(self.run_states.get(dag_run, [])):24}", ends))
        known = {r[0] for r in rows}
        for kind, row in sorted(by_row, key=str):
            if (kind, row) not in known:
                label = f"not an expected row: {row}"
                rows.append(((kind, row), f"{label:96}", 0))
        for ident, label, expected in rows:
            counts = by_row.get(ident, Counter())
            got = sum(counts.values())
            detail = ", ".join(f"{n} {src}" for src, n in sorted(counts.items())) or "-"
            flag = "" if got == expected else "   <-- WRONG"
            lines.append(f"{label} {expected:>8}  {got} ({detail}){flag}")
            missing = missing or got < expected
            if got != expected:
                wrong.append(f"{label.strip()}: expected {expected}, seen {got} ({detail})")
        return "\n".join(lines), wrong, not missing


# ------------------------------------------------------------------------------------------ servers
@dataclass
class Chaos:
    """The servers of one Airflow major and the ledger of everything they did."""

    MAIN = MAIN
    LATE = LATE
    NAMED = NAMED
    INSTANCE = INSTANCE
    SENSOR = SENSOR
    airflow: AirflowServer
    dagster: ChaosDagster
    proxy: DelayProxy
    state: Path
    ledger: Ledger = field(default_factory=Ledger)
    #: The proxy in front of Airflow that Dagster's requests go through (the production-shaped deployment only).
    airflow_proxy: DelayProxy | None = None
    _run_tags: dict[str, dict[str, str]] = field(default_factory=dict)

    # -- Airflow ------------------------------------------------------------------------------------
    def trigger(self, dag_id: str = MAIN, **conf: Any) -> str:
        """Trigger a run under a run id of our own, so a POST whose answer was lost is not sent twice."""
        run_id = f"chaos__{uuid.uuid4().hex[:12]}"
        body: dict[str, Any] = {"dag_run_id": run_id, "conf": conf}
        if self.airflow.generation == 3:
            body["logical_date"] = None
        try:
            self.airflow.post(f"/dags/{dag_id}/dagRuns", json=body, timeout=REST_TIMEOUT)
        except requests.RequestException:
            self.wait_for(lambda: self.get_run(dag_id, run_id), what=f"run {run_id} of {dag_id} after a lost answer", timeout=120)
        return run_id

    def get_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.airflow.get(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", timeout=REST_TIMEOUT))

    def wait(self, dag_id: str, run_id: str, *, timeout: float = 600) -> dict[str, Any]:
        run = self.airflow.wait_for_run(dag_id, run_id, timeout=timeout)
        self.snapshot([(dag_id, run_id)])
        return run

    def run(self, dag_id: str = MAIN, **conf: Any) -> str:
        """Trigger a run and wait for it to finish."""
        run_id = self.trigger(dag_id, **conf)
        self.wait(dag_id, run_id)
        return run_id

    def wait_for(self, predicate: Callable[[], Any], *, what: str, timeout: float = 600) -> Any:
        return wait_until(predicate, timeout=timeout, what=what, interval=1.0)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances"
        return list(self.airflow.get(path, params={"limit": 100}, timeout=REST_TIMEOUT)["task_instances"])

    def clear(self, dag_id: str, run_id: str, task_ids: list[str], *, downstream: bool) -> None:
        """Clear tasks (Airflow's "Clear", optionally with downstream) and wait for the run to finish again."""
        self.airflow.post(f"/dags/{dag_id}/clearTaskInstances", json={
            "dry_run": False, "task_ids": task_ids, "dag_run_id": run_id, "include_downstream": downstream,
            "include_upstream": False, "only_failed": False, "reset_dag_runs": True,
        })
        self.wait(dag_id, run_id)

    def mark(self, dag_id: str, run_id: str, task_id: str, state: str) -> None:
        """Mark one task instance success or failed (Airflow's "Mark success" / "Mark failed")."""
        body: dict[str, Any] = {"new_state": state}
        if self.airflow.generation == 2:
            body["dry_run"] = False
        self.airflow.patch(f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}", json=body)
        self.snapshot([(dag_id, run_id)])

    def task_log(self, run_id: str, task_id: str) -> str:
        """The Airflow log files of one task of one run (every try)."""
        plain = run_id.replace(":", "")
        logs = [p for p in (self.airflow.home / "logs").rglob("*.log")
                if f"task_id={task_id}" in str(p) and plain in str(p).replace(":", "").replace("%3A", "")]
        return "\n".join(p.read_text(errors="replace") for p in sorted(logs))

    def airflow_older_than(self, major: int, minor: int) -> bool:
        return tuple(int(p) for p in self.airflow.version.split(".")[:2]) < (major, minor)

    def tries(self, dag_id: str, run_id: str, task_id: str, map_index: int) -> list[dict[str, Any]]:
        """Every earlier try of a task instance; Airflow before 2.10 has no tries endpoint, and there the
        ledger holds the current try only (earlier tries failed: Dagster must hold nothing for them, and
        anything it does hold for them still shows as a row nobody expected)."""
        if self.airflow_older_than(2, 10):
            return []
        path = f"/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}"
        path += f"/{map_index}/tries" if map_index >= 0 else "/tries"
        return list(self.airflow.get(path, params={"limit": 100}, timeout=REST_TIMEOUT).get("task_instances", []))

    def snapshot(self, runs: Iterable[tuple[str, str]]) -> None:
        """Record the runs' states and every try of their mapped tasks (Airflow's REST)."""
        for dag_id, run_id in runs:
            run = self.get_run(dag_id, run_id)
            self.ledger.record_run(dag_id, run_id, run["state"], run.get("end_date"))
            for ti in self.task_instances(dag_id, run_id):
                if (dag_id, ti["task_id"]) not in TASK_ASSETS:
                    continue
                map_index = int(ti.get("map_index", -1))
                current = int(ti.get("try_number") or 0)
                by_try = {int(t["try_number"]): t for t in self.tries(dag_id, run_id, ti["task_id"], map_index)}
                by_try[current] = ti
                for number, row in sorted(by_try.items()):
                    if number == 0 and row.get("state") != "success":
                        continue
                    key = (dag_id, run_id, ti["task_id"], map_index, number)
                    self.ledger.record_try(key, row.get("state"), row.get("max_tries"))

    # -- Dagster ------------------------------------------------------------------------------------
    def run_tags(self, run_id: str) -> dict[str, str]:
        if run_id not in self._run_tags:
            data = self.dagster.graphql(RUN_TAGS, {"id": run_id})["runOrError"]
            self._run_tags[run_id] = {t["key"]: t["value"] for t in data.get("tags") or []}
        return self._run_tags[run_id]

    def seen(self) -> list[Seen]:
        out = []
        for path in [*TASK_ASSETS.values(), *DAG_ASSETS.values()]:
            data = self.dagster.graphql(MATERIALIZATIONS, {"key": {"path": list(path)}})["assetOrError"]
            for raw in data.get("assetMaterializations") or []:
                out.append(parse_materialization(path, raw, self.run_tags))
        return out

    def dagster_runs(self, airflow_run_id: str, task_id: str | None = None) -> list[dict[str, Any]]:
        """The Dagster runs launched for an Airflow run (optionally one task), oldest first, tags as a dict."""
        results = self.dagster.graphql(DAGSTER_RUNS, {"v": airflow_run_id})["runsOrError"]["results"]
        runs = [{**r, "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in reversed(results)]
        return [r for r in runs if task_id is None or r["tags"].get("airlift/airflow_task_id") == task_id]

    def map_late_dag(self, runs: Iterable[tuple[str, str]]) -> None:
        """Map chaos_late's task in Dagster (reload the code location, restart the daemon); the tries of
        ``runs`` current now are where the sensor's report of their history starts."""
        (self.state / "map_late").write_text("1")
        self.dagster.reload_location(LOCATION)
        self.dagster.stop_daemon()
        first: dict[tuple[str, str, int], int] = {}
        for dag_id, run_id in runs:
            for ti in self.task_instances(dag_id, run_id):
                first[(run_id, ti["task_id"], int(ti.get("map_index", -1)))] = int(ti.get("try_number") or 0)
        self.ledger.mapped_from[LATE] = first
        self.ledger.unmapped.discard(LATE)
        self.dagster.start_daemon()

    def sensor_high_water(self) -> tuple[float, datetime | None]:
        """(timestamp, high water) of the sensor's latest successful or skipped tick."""
        ticks = [t for t in self.dagster.sensor_state(SENSOR)["ticks"] if t["status"] in ("SUCCESS", "SKIPPED")]
        if not ticks:
            return 0.0, None
        latest = max(ticks, key=lambda t: t["timestamp"])
        try:
            hw = json.loads(latest.get("cursor") or "{}").get("hw")
        except ValueError:
            hw = None
        return float(latest["timestamp"]), datetime.fromisoformat(hw) if hw else None

    def sensor_errors(self) -> list[str]:
        return [f"{t['status']}: {(t.get('error') or {}).get('message', '')[:300]}"
                for t in self.dagster.sensor_state(SENSOR)["ticks"] if t["status"] == "FAILURE"]

    # -- the check ----------------------------------------------------------------------------------
    def check(self, runs: list[tuple[str, str]], *, title: str, timeout: float = 300, unchanged_since: datetime | None = None) -> None:
        """Wait until Dagster holds what the runs need and the sensor has read past them, then print the
        ledger and fail with it unless every row holds exactly what it should. ``unchanged_since``: the
        runs ended and nothing changed them after that time (default: they may have changed until now);
        the sensor must have read past it and ticked once more."""
        self.snapshot(runs)
        done = unchanged_since or datetime.now(timezone.utc)
        deadline = time.monotonic() + timeout

        def complete() -> bool:
            return self.ledger.table(runs, self.seen())[2]

        while time.monotonic() < deadline and not complete():
            time.sleep(3)
        # the sensor has read every row changed before `done`, and ticked once more after that
        read_at = None
        while time.monotonic() < deadline:
            at, hw = self.sensor_high_water()
            if read_at is None and hw is not None and hw >= done:
                read_at = at
            elif read_at is not None and at > read_at:
                break
            time.sleep(2)
        self.snapshot(runs)
        text, wrong, _ = self.ledger.table(runs, self.seen())
        report = f"\n=== {title} (Airflow {self.airflow.version}) ===\n{text}"
        if read_at is None:
            report += "\n(the sensor did not read past the runs' last change in time)"
        errors = self.sensor_errors()
        if errors:
            report += "\nfailed sensor ticks:\n  " + "\n  ".join(errors[:5])
        print(report)
        assert not wrong, report + "\n\nnot exactly once:\n  " + "\n  ".join(wrong)


@pytest.fixture
def chaos_ledger_cls() -> Callable[[], tuple[Ledger, type[Seen]]]:
    """An empty ledger and the Seen class, for the ledger's own test (no servers)."""
    return lambda: (Ledger(), Seen)


def _workdir(root: Path) -> tuple[Path, Path, Path, int, DelayProxy]:
    """The suite's DAGs and definitions copied under ``root``, a state folder, Dagster's port and the
    delaying proxy Airflow reaches Dagster through."""
    dags = root / "dags"
    shutil.copytree(HERE / "dags", dags)
    definitions = root / "definitions"
    shutil.copytree(HERE / "dagster", definitions)
    state = root / "state"
    state.mkdir()
    dagster_port = free_port()
    return dags, definitions, state, dagster_port, DelayProxy(f"http://127.0.0.1:{dagster_port}").start()


@pytest.fixture(scope="module")
def chaos(airflow_server_factory: Callable[..., AirflowServer], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    root = tmp_path_factory.mktemp("chaos")
    dags, definitions, state, dagster_port, proxy = _workdir(root)
    packages = repo_root() / "packages"
    # Airflow first (the code location reads it when it loads); it reaches Dagster through the proxy.
    airflow = airflow_server_factory(
        dags,
        startup_timeout=600.0,  # a cold start on a machine busy with other servers
        extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow"],
        extra_env={
            "AIRFLOW_CONN_DAGSTER_DEFAULT": proxy.url,
            "AIRFLOW__AIRLIFT__PUSH_ENABLED": "True",
            "AIRFLOW__AIRLIFT__RELAY_IDLE_SECONDS": "20",  # the push relay exits soon after the servers
        },
    )
    airflow.wait_for_dags([MAIN, LATE, NAMED])
    dagster = ChaosDagster(workspace_file=definitions / "workspace.yaml", home=root / "dagster", port=dagster_port, startup_timeout=600.0,
                           extra_env={"CHAOS_AIRFLOW_URL": airflow.url, "CHAOS_STATE": str(state)})
    try:
        dagster.start()
        for dag_id in (MAIN, LATE, NAMED):
            airflow.unpause(dag_id)
        yield Chaos(airflow=airflow, dagster=dagster, proxy=proxy, state=state)
    finally:
        dagster.stop()
        proxy.stop()


@pytest.fixture(scope="module")
def deployed(airflow_version: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    """The suite's DAGs and definitions on the production-shaped deployment (airlift_testing.deploy):
    Airflow with the CeleryExecutor (Redis, two workers, PostgreSQL; push on through its airflow.cfg) and
    Dagster on PostgreSQL with a code server and a run queue of one. At the end, nothing started under
    the deployment's folder runs any more (the workers' push relays exit after their idle time)."""
    root = tmp_path_factory.mktemp("deployed")
    dags, definitions, state, dagster_port, proxy = _workdir(root)
    airflow_port = free_port()
    # Dagster reaches Airflow through a proxy too: it counts Dagster's requests to Airflow
    airflow_proxy = DelayProxy(f"http://127.0.0.1:{airflow_port}").start()
    packages = repo_root() / "packages"
    airflow = CeleryAirflow(port=airflow_port, version=airflow_version, dags_folder=dags, home=root / "airflow", startup_timeout=600.0,
                            extra_packages=[packages / "airlift-protocol", packages / "airlift-airflow"],
                            extra_env={"AIRFLOW_CONN_DAGSTER_DEFAULT": proxy.url})
    dagster = DeployedDagster(defs_file=definitions / "chaos_defs.py", location_name=LOCATION, home=root / "dagster",
                              port=dagster_port, startup_timeout=600.0,
                              extra_env={"CHAOS_AIRFLOW_URL": airflow_proxy.url, "CHAOS_STATE": str(state), "CHAOS_STORED_STATE": "1"})
    try:
        airflow.start()
        airflow.wait_for_dags([MAIN, LATE, NAMED])
        dagster.start()
        for dag_id in (MAIN, LATE, NAMED):
            airflow.unpause(dag_id)
        yield Chaos(airflow=airflow, dagster=dagster, proxy=proxy, state=state, airflow_proxy=airflow_proxy)
    finally:
        (state / "release").write_text("1")
        dagster.stop()
        airflow.stop()
        proxy.stop()
        airflow_proxy.stop()
        wait_no_processes_using(root)
