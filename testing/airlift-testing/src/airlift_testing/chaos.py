"""Operations for chaos tests: a proxy that answers late, and a Dagster whose webserver and daemon
stop and start one at a time.

``DelayProxy(upstream)`` is a :class:`~airlift_testing.fault_proxy.FaultProxy` that injects no fault
and forwards every request after :attr:`DelayProxy.delay` seconds (0 until set), so a test can make
a real Dagster slow for the clients behind it and fast again without restarting anything.

``ChaosDagster`` is a :class:`~airlift_testing.dagster.DagsterServer` with ``stop_daemon`` /
``start_daemon`` (a backlog builds up while the daemon is down: no sensor ticks, no queued run
starts) and ``restart_webserver`` (same port; the GraphQL API is gone meanwhile); its run queue
launches up to four runs at once, and its requests to the code server wait up to 300 s.

>>> with DelayProxy("http://127.0.0.1:3000") as proxy:  # doctest: +SKIP
...     proxy.delay = 5.0  # every request now waits 5 s before it is forwarded
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from airlift_testing.dagster import DagsterServer
from airlift_testing.fault_proxy import FaultProxy
from airlift_testing.procs import ServerProcess, wait_until

__all__ = ["ChaosDagster", "DelayProxy"]


class DelayProxy(FaultProxy):
    """Forwards everything to ``upstream``, each request :attr:`delay` seconds late (``sleep`` waits);
    :attr:`delayed` counts the requests that waited."""

    def __init__(self, upstream: str, *, delay: float = 0.0, upstream_timeout: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(upstream, seed=0, rate=0.0, kinds=(), upstream_timeout=upstream_timeout)
        self.delay = delay
        self.delayed = 0
        self._sleep = sleep

    def decide(self, method: str, target: str, body: bytes) -> str | None:
        delay = self.delay
        if delay > 0:
            with self._lock:
                self.delayed += 1
            self._sleep(delay)
        return super().decide(method, target, body)


class ChaosDagster(DagsterServer):
    """A :class:`DagsterServer` whose daemon and webserver can be stopped and started separately."""

    def instance_config(self) -> str:
        """The base instance's, with the run queue launching up to four runs at once: a daemon started
        on a backlog of queued runs starts them together instead of one at a time (each launch waits
        until its run's process has loaded the code location)."""
        return super().instance_config() + "    dequeue_use_threads: true\n    dequeue_num_workers: 4\n"

    def env(self) -> dict[str, str]:
        """The base environment, with Dagster's code-server request timeout at 300 s (default 60): the daemon
        launches a run by asking the code server, which answers once the run's process has loaded the code
        location (the Airlift definitions read Airflow's REST API); on a busy 2-core machine, during a
        webserver restart, that took longer than 60 s and Dagster failed the run."""
        return {"DAGSTER_GRPC_TIMEOUT_SECONDS": "300", **super().env()}

    def _process(self, name: str) -> ServerProcess | None:
        return next((p for p in self._processes if p.log_path.name == f"{name}.log"), None)

    def _spawn(self, name: str, args: Sequence[str]) -> ServerProcess:
        assert self.venv is not None, "start() the server first"
        process = ServerProcess([str(self.venv / "bin" / args[0]), *args[1:], *self.target],
                                log_path=self.home / f"{name}.log", env=self.env(), cwd=self.home)
        self._processes.append(process)
        return process

    def _stop(self, name: str) -> None:
        process = self._process(name)
        if process is not None:
            process.stop()
            self._processes.remove(process)

    @property
    def daemon_running(self) -> bool:
        """Whether the daemon process runs."""
        process = self._process("daemon")
        return process is not None and process.running()

    def stop_daemon(self) -> None:
        """Stop the daemon (sensor ticks and run starts stop; the webserver keeps answering)."""
        self._stop("daemon")

    def start_daemon(self) -> None:
        """Start the daemon again and wait until its run queue is healthy."""
        if self.daemon_running:
            return
        process = self._spawn("daemon", ["dagster-daemon", "run"])
        wait_until(self._daemon_fresh(time.time()), timeout=self.startup_timeout,
                   what=f"the restarted Dagster daemon ({process.log_path})", process=process, interval=1.0)

    def restart_webserver(self, *, down_seconds: float = 0.0) -> None:
        """Stop the webserver, wait ``down_seconds``, start it on the same port and wait until the code
        location is loaded again."""
        self._stop("webserver")
        time.sleep(down_seconds)
        process = self._spawn("webserver", ["dagster-webserver", "-h", self.host, "-p", str(self.port)])
        wait_until(self._loaded, timeout=self.startup_timeout, what=f"the restarted Dagster webserver at {self.url}",
                   process=process, interval=1.0)

    def reload_location(self, name: str) -> None:
        """Reload one code location in the webserver (the daemon keeps its own copy: restart it too)."""
        data = self.graphql(
            "mutation($name: String!) { reloadRepositoryLocation(repositoryLocationName: $name) { __typename "
            "... on WorkspaceLocationEntry { locationOrLoadError { __typename ... on PythonError { message } } } "
            "... on PythonError { message } } }", {"name": name})["reloadRepositoryLocation"]
        loaded = (data.get("locationOrLoadError") or {}) if data["__typename"] == "WorkspaceLocationEntry" else data
        if loaded.get("__typename") == "PythonError":
            raise RuntimeError(f"reloading code location {name!r} at {self.url} failed: {loaded.get('message')}")

    def _daemon_fresh(self, since: float) -> Any:
        """A predicate: the daemon reported a heartbeat after ``since``."""
        query = '{ instance { daemonHealth { allDaemonStatuses { daemonType healthy lastHeartbeatTime } } } }'

        def fresh() -> bool:
            statuses = self.graphql(query)["instance"]["daemonHealth"]["allDaemonStatuses"]
            sensors = [s for s in statuses if s["daemonType"] == "SENSOR"]
            return bool(sensors) and all(s["healthy"] and (s["lastHeartbeatTime"] or 0) > since for s in sensors)

        return fresh

    def set_sensor_cursor(self, selector: Mapping[str, str], cursor: str | None) -> None:
        """Set the sensor's stored cursor (as ``dagster sensor cursor --set`` does)."""
        data = self.graphql(
            "mutation($s: SensorSelector!, $c: String) { setSensorCursor(sensorSelector: $s, cursor: $c) { __typename "
            "... on PythonError { message } } }", {"s": dict(selector), "c": cursor})["setSensorCursor"]
        if data["__typename"] == "PythonError":
            raise RuntimeError(f"setting the cursor of sensor {dict(selector)} at {self.url}: {data.get('message')}")
