"""Run the sessions of ``uvx nox`` (or of ``uvx nox -t TAG``) a few at a time, print each session's
wall time and the total.

Sessions are independent: each has its own nox venv, servers bind free 127.0.0.1 ports, and the
shared caches (uv's, and the cached Airflow/Dagster venvs of airlift-testing) are safe to use from
several processes at once. Logs go to ``.ci/logs/<session>.log``; a failed session's log tail is
printed. Standard library only (runs before anything is installed).

    python3 .ci/nox_parallel.py                 # the default sessions, AIRLIFT_CI_JOBS (2) at a time
    python3 .ci/nox_parallel.py -t compat -j 2  # the wider matrix
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MINUTES = 45
# sessions this long get their slowest tests printed
SLOW_SESSION_SECONDS = float(os.environ.get("AIRLIFT_SLOW_SESSION_SECONDS", "240"))


def _weight(session: str) -> int:
    """Start the long sessions first so the last minutes are not one long session alone."""
    for prefix, weight in (("tutorial", 0), ("chaos-ci", 0), ("integration-airlift-dagster", 1), ("integration-airlift-airflow", 2),
                           ("integration", 3), ("typecheck", 4), ("build", 5), ("unit-airlift-airflow", 6)):
        if session.startswith(prefix):
            return weight
    return 9


def _slowest_tests(log: Path, limit: int = 8) -> list[str]:
    """The first lines of pytest's ``--durations`` table in a session log (real-server sessions ask for it)."""
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    for i, line in enumerate(lines):
        if "slowest" in line and "durations" in line:
            return [f"  {row.strip()}" for row in lines[i + 1:i + 1 + limit] if row.strip() and not row.startswith("=")]
    return []


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot, from /proc/stat (None where there is none)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


class CpuSampler:
    """How busy the machine's CPUs were during the run: the whole run's share, and the share of
    10-second samples above 90% busy. A run whose CPUs are saturated gains nothing from more jobs;
    one with idle CPUs is waiting on sleeps and polls."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.samples: list[float] = []
        self._first = _cpu_times()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> CpuSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        last = self._first
        while not self._stop.wait(self.every):
            now = _cpu_times()
            if last and now and now[1] > last[1]:
                self.samples.append((now[0] - last[0]) / (now[1] - last[1]))
            last = now

    def summary(self) -> str:
        self._stop.set()
        now = _cpu_times()
        if not self._first or not now or now[1] <= self._first[1]:
            return "CPU use: not measured (no /proc/stat)"
        busy = (now[0] - self._first[0]) / (now[1] - self._first[1])
        high = sum(1 for s in self.samples if s > 0.9) / len(self.samples) if self.samples else 0.0
        return f"CPU busy {busy:.0%} of the run on {os.cpu_count()} CPUs; {high:.0%} of its 10-s samples above 90% busy"


def list_sessions(nox: list[str], tags: list[str]) -> list[str]:
    """The session names ``nox`` would run (with ``-t`` tags if given)."""
    args = [*nox, "--list", "--json", *(a for t in tags for a in ("-t", t))]
    out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"`{' '.join(args)}` failed:\n{out.stderr[-3000:]}")
    return [str(s["session"]) for s in json.loads(out.stdout)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-j", "--jobs", type=int, default=int(os.environ.get("AIRLIFT_CI_JOBS", "2")))
    parser.add_argument("-t", "--tag", action="append", default=[], help="nox tag (e.g. compat); default: the default sessions")
    parser.add_argument("--nox", default="uvx nox", help="how to call nox (default: %(default)s)")
    parser.add_argument("--logs", type=Path, default=ROOT / ".ci" / "logs", help="folder of the session logs")
    args = parser.parse_args(argv)
    nox = args.nox.split()
    sessions = sorted(list_sessions(nox, args.tag), key=_weight)
    logs = args.logs
    logs.mkdir(parents=True, exist_ok=True)
    print(f"running {len(sessions)} nox sessions, {args.jobs} at a time (logs in {logs})", flush=True)
    started = time.monotonic()
    cpu_use = CpuSampler().start()

    def run(session: str) -> tuple[str, int, float]:
        t0 = time.monotonic()
        with open(logs / f"{session}.log", "w") as log:
            code = subprocess.run([*nox, "-s", session], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
        took = time.monotonic() - t0
        print(f"[{time.monotonic() - started:7.0f}s] {'ok  ' if code == 0 else 'FAIL'} {session} ({took:.0f}s)", flush=True)
        return session, code, took

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(run, sessions))
    total = time.monotonic() - started
    cpu_summary = cpu_use.summary()
    failed = [r for r in results if r[1] != 0]
    for session, _, _ in failed:
        tail = (logs / f"{session}.log").read_text(errors="replace").splitlines()[-60:]
        print(f"\n===== {session} failed; last lines of {logs / session}.log =====\n" + "\n".join(tail), flush=True)
    print("\nsession wall times (s):")
    for session, code, took in sorted(results, key=lambda r: -r[2]):
        print(f"  {took:7.0f}  {session}{'' if code == 0 else '  FAILED'}")
    for session, _, took in sorted(results, key=lambda r: -r[2]):
        slowest = _slowest_tests(logs / f"{session}.log")
        if took >= SLOW_SESSION_SECONDS and slowest:
            print(f"\nslowest tests of {session}:\n" + "\n".join(slowest), flush=True)
    cpu = os.cpu_count() or 0
    verdict = "within" if total <= BUDGET_MINUTES * 60 else "OVER"
    print(f"\n{len(results) - len(failed)}/{len(results)} sessions passed; wall time {total / 60:.1f} min with "
          f"{args.jobs} jobs on {cpu} CPUs ({verdict} the {BUDGET_MINUTES}-minute budget)\n{cpu_summary}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
