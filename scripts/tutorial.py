# /// script
# requires-python = ">=3.10"
# dependencies = ["requests>=2.28", "filelock>=3.12"]
# ///
"""Start the Airlift tutorial: a real Airflow with the tutorial DAG and Dagster for one guide step.

    uv run scripts/tutorial.py                      # Airflow 3, step "peer"
    uv run scripts/tutorial.py --airflow 2 --step observe
    uv run scripts/tutorial.py --check              # start, print the URLs, stop (used by tests)

Airflow: http://localhost:8080 (admin/admin). Dagster: http://localhost:3000. Ctrl-C stops both.
Each side runs from its own virtual environment (built once with uv, cached in .airlift-cache/).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "testing" / "airlift-testing" / "src"))
os.environ.setdefault("AIRLIFT_REPO_ROOT", str(ROOT))

from airlift_testing.airflow import AirflowServer  # noqa: E402
from airlift_testing.dagster import DagsterServer, dagster_venv  # noqa: E402

EXAMPLE = ROOT / "examples" / "tutorial-example"
PACKAGES = ROOT / "packages"
STEPS = ("peer", "observe", "observe_with_factory", "migrate")
AIRFLOW_SIDE = [PACKAGES / "airlift-protocol", PACKAGES / "airlift-airflow", EXAMPLE]
AIRFLOW_REQUIREMENTS = ["dbt-core>=1.8,<1.12", "dbt-duckdb>=1.8", "duckdb>=1.0"]
DAGSTER_SIDE = [PACKAGES / p for p in ("airlift-protocol", "airlift-client", "airlift-dagster", "airlift-dbt")] + [EXAMPLE]


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def tutorial_env(state_dir: Path, airflow_port: int, dagster_port: int) -> dict[str, str]:
    """Environment both sides share: where the warehouse is and how they reach each other."""
    return {
        "TUTORIAL_DUCKDB_PATH": str(state_dir / "jaffle_shop.duckdb"),
        "TUTORIAL_EXPORT_DIR": str(state_dir),
        "TUTORIAL_AIRFLOW_URL": f"http://127.0.0.1:{airflow_port}",
        "AIRFLOW_CONN_DAGSTER_DEFAULT": f"http://127.0.0.1:{dagster_port}",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }


def dbt_parse(env: dict[str, str]) -> None:
    """Write the dbt manifest the Dagster definitions read (``dbt parse``)."""
    venv = dagster_venv(DAGSTER_SIDE)
    project = EXAMPLE / "dbt_project"
    subprocess.run([str(venv / "bin" / "dbt"), "parse", "--project-dir", str(project), "--profiles-dir", str(project)],
                   check=True, env={**os.environ, **env}, stdout=subprocess.DEVNULL)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--airflow", choices=["2", "3"], default="3", help="Airflow major version (default 3)")
    parser.add_argument("--step", choices=STEPS, default="peer", help="which guide step Dagster shows (default peer)")
    parser.add_argument("--airflow-port", type=int, default=8080)
    parser.add_argument("--dagster-port", type=int, default=3000)
    parser.add_argument("--check", action="store_true", help="start everything, print the URLs, then stop")
    args = parser.parse_args(argv)
    for port, what in ((args.airflow_port, "Airflow"), (args.dagster_port, "Dagster")):
        if not _port_free(port):
            print(f"error: port {port} for {what} is in use; stop what runs there or pass --{what.lower()}-port", file=sys.stderr)
            return 2
    state_dir = EXAMPLE / ".tutorial" / f"airflow{args.airflow}"
    state_dir.mkdir(parents=True, exist_ok=True)
    env = tutorial_env(state_dir, args.airflow_port, args.dagster_port)
    print("Preparing environments (first run builds them with uv; later runs reuse them)...", flush=True)
    dbt_parse(env)
    airflow = AirflowServer(
        version=args.airflow, dags_folder=EXAMPLE / "airflow_dags", home=state_dir / "airflow-home",
        extra_packages=AIRFLOW_SIDE, extra_requirements=AIRFLOW_REQUIREMENTS, extra_env=env, port=args.airflow_port,
    )
    dagster = DagsterServer(
        defs_file=EXAMPLE / "tutorial_example" / "dagster_defs" / f"{args.step}.py", home=state_dir / "dagster-home",
        extra_packages=DAGSTER_SIDE, extra_env=env, port=args.dagster_port,
    )
    try:
        print(f"Starting Airflow {airflow.version} on http://localhost:{args.airflow_port} ...", flush=True)
        airflow.start()
        airflow.wait_for_dags(["rebuild_customers_list"])
        print(f"Starting Dagster ({args.step}) on http://localhost:{args.dagster_port} ...", flush=True)
        dagster.start()
        print(
            "\nAirlift tutorial is running:\n"
            f"  Airflow  http://localhost:{args.airflow_port}   (user admin, password admin)\n"
            f"  Dagster  http://localhost:{args.dagster_port}/asset-groups   (global asset lineage)\n"
            f"  step     {args.step}: examples/tutorial-example/tutorial_example/dagster_defs/{args.step}.py\n"
            f"  logs     {airflow.log_path} and {dagster.home}\n"
            "Trigger rebuild_customers_list in Airflow and watch the assets in Dagster. Press Ctrl-C to stop.",
            flush=True,
        )
        if args.check:
            return 0
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nStopping Dagster and Airflow...", flush=True)
        return 0
    finally:
        dagster.stop()
        airflow.stop()


if __name__ == "__main__":
    sys.exit(main())
