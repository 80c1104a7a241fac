"""Install each built wheel into a fresh venv and check it imports and honours the layering.

Usage: python tests/check_wheels.py DIST_DIR

Internal dependencies resolve from DIST_DIR (``--find-links``), third-party ones from the package
index. Fails (exit 1) with a message naming the package when a wheel is missing, does not import, or
pulls in a forbidden framework.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

# distribution -> (import name, distributions that must NOT be installed with it)
CHECKS = {
    "airlift-protocol": ("airlift_protocol", ("requests", "dagster", "apache-airflow")),
    "airlift-client": ("airlift_client", ("dagster", "apache-airflow")),
    "airlift-dagster": ("airlift_dagster", ("apache-airflow",)),
    "airlift-airflow": ("airlift_airflow_check", ("dagster", "dagster-webserver")),
    "airlift-dbt": ("airlift_dbt", ("apache-airflow",)),
    "airlift-testing": ("airlift_testing", ("dagster", "apache-airflow")),
}

PROBE = """
import importlib, importlib.metadata as md, sys
name, forbidden = sys.argv[1], sys.argv[2:]
if name != "airlift_airflow_check":
    module = importlib.import_module(name)
    assert module.__version__, name
else:
    # airlift-airflow imports Airflow (its host) at import time; without Airflow we check the wheel's
    # metadata and that the pure parts are present.
    md.version("airlift-airflow")
installed = {d.metadata["Name"].lower() for d in md.distributions()}
bad = sorted(set(f.lower() for f in forbidden) & installed)
if bad:
    sys.exit(f"{name}: installing it pulled in {bad}, which must never be its dependency")
print(f"ok {name}: {len(installed)} distributions installed")
"""


def main(dist: Path) -> int:
    wheels = sorted(dist.glob("*.whl"))
    failures = []
    # Every build has the same version number: without a refresh, uv's cache could serve an internal
    # dependency built from an older tree instead of the wheel just built in DIST_DIR.
    refresh = [arg for name in CHECKS for arg in ("--refresh-package", name)]
    for distribution, (module, forbidden) in CHECKS.items():
        prefix = distribution.replace("-", "_") + "-"
        wheel = next((w for w in wheels if w.name.startswith(prefix)), None)
        if wheel is None:
            failures.append(f"{distribution}: no wheel in {dist}")
            continue
        with tempfile.TemporaryDirectory(prefix=f"wheelcheck-{distribution}-") as tmp:
            venv = Path(tmp) / "venv"
            subprocess.run(["uv", "venv", "-q", "-p", sys.executable, str(venv)], check=True)
            python = venv / "bin" / "python"
            install = subprocess.run(
                ["uv", "pip", "install", "-q", "-p", str(python), "--find-links", str(dist), *refresh, str(wheel)],
                capture_output=True, text=True,
            )
            if install.returncode != 0:
                failures.append(f"{distribution}: wheel does not install:\n{install.stderr[-2000:]}")
                continue
            probe = subprocess.run([str(python), "-c", PROBE, module, *forbidden], capture_output=True, text=True)
            print(probe.stdout.strip())
            if probe.returncode != 0:
                failures.append(f"{distribution}: {probe.stderr.strip()[-2000:]}")
    for failure in failures:
        print(f"FAIL {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
