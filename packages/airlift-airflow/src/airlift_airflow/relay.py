"""The push relay: one small process per machine (and Dagster target) that delivers what task processes hand it.

A task's process ends right after the task (Airflow calls ``os._exit``), so it cannot wait for
Dagster, and starting an interpreter per task costs CPU exactly when a burst of tasks ends. Instead,
the listener in a task's process sends the item (a few hundred bytes of JSON, no secret) as one
datagram to the relay's Unix socket, which takes microseconds and never blocks:

- **No relay yet** (no socket, or nobody bound to it): the listener spawns one (a fresh interpreter
  that imports neither Airflow nor anything of the task, the Dagster+ token in its environment,
  never its command line) with the item in its environment. The relay takes an exclusive lock, binds
  the socket and serves; when another relay already holds the lock (many tasks ended at once), the
  spawned process delivers its own item and exits. Nothing is lost either way.
- **Relay busy** (its receive buffer is full): the item goes to a one-shot process of the same kind.
- **Serving**: items go on a :class:`~airlift_airflow.push.PushSender` (bounded queue, a few
  threads, the shared retry policy, ``max_age``) with one keep-alive HTTP session to Dagster and one
  task -> asset index cache for all tasks (prefetch items fill it while tasks run).
- **Idle** for ``idle_seconds``: the relay removes its socket first (new items then start a new
  relay), reads what is still in its buffer, delivers it and exits.

The socket lives in ``<tmp>/airlift-push-<uid>/`` (mode 0700: only the same user can send), named by
a digest of the Dagster URL, instance name and Airflow URL, so a changed configuration gets its own
relay and the old one idles out. The same folder holds what the relays did, for people:

- ``push-relay.log``: every relay's and one-shot process's log (rotated at 1 MB, one old file kept);
- ``push-status.json``: counters of outcomes (delivered, dropped as too old, dropped queue full,
  failed, unresolved instance name) and the last problems, merged in by every process that delivers
  on this machine (:class:`StatusFile`; format: :mod:`airlift_protocol.push_status`). ``airlift
  doctor --push-status PATH`` shows it; the listener warns in a task's log when the last report of
  its DAG was dropped for a reason the user must act on.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from airlift_airflow.push import PushItem, PushSender, build_reporter
from airlift_protocol import ApiVersion
from airlift_protocol.push_status import (
    DELIVERED,
    LOG_FILE_NAME,
    STATUS_FILE_NAME,
    PushProblem,
    PushStatus,
    PushStatusError,
    load_push_status,
    merge_push_status,
)

__all__ = ["JOB_ENV", "TOKEN_ENV", "RelayTarget", "StatusFile", "actionable_problem", "main", "relay_dir", "send_or_spawn",
           "status_file"]

log = logging.getLogger("airlift_airflow.push")

#: Environment of a spawned relay: the job (JSON, no secret) and the Dagster+ token.
JOB_ENV = "AIRLIFT_PUSH_JOB"
TOKEN_ENV = "AIRLIFT_PUSH_DAGSTER_TOKEN"
#: Seconds without an item after which a relay exits.
DEFAULT_IDLE_SECONDS = 300.0
#: Threads of a relay delivering to Dagster.
RELAY_WORKERS = 4
_MAX_DATAGRAM = 65_536
#: The relay log's size before it is rotated (one old file is kept).
LOG_MAX_BYTES = 1_000_000
#: How long an actionable problem of a DAG is shown in its tasks' logs (unless push delivered for the DAG since).
PROBLEM_SHOWN_FOR = timedelta(hours=1)
# Runs in a fresh interpreter: registers the airlift_airflow package WITHOUT executing its __init__
# (which imports Airflow), so only relay.py, push.py, dagster_api.py, errors.py and airlift_protocol load.
_BOOT = (
    "import sys, types; pkg = types.ModuleType('airlift_airflow'); pkg.__path__ = [sys.argv[1]]; "
    "sys.modules['airlift_airflow'] = pkg; from airlift_airflow.relay import main; main()"
)


class RelayTarget:
    """Where a relay delivers: Dagster's URL and token, the configured instance name (``None``: learned
    per DAG from Dagster), the Airflow UI URL (for
    links) and the delivery limits. The token is never part of the repr, the job or the socket name.

    >>> RelayTarget("http://dagster:3000", "secret", "prod", ApiVersion.V2, "http://af:8080", max_age=8.0)
    RelayTarget(url='http://dagster:3000', instance_name='prod')
    """

    def __init__(self, url: str, api_token: str | None, instance_name: str | None, api: ApiVersion, airflow_url: str, *,
                 max_age: float, idle_seconds: float = DEFAULT_IDLE_SECONDS) -> None:
        self.url = url
        self.api_token = api_token
        self.instance_name = instance_name
        self.api = api
        self.airflow_url = airflow_url
        self.max_age = max_age
        self.idle_seconds = idle_seconds

    def __repr__(self) -> str:
        return f"RelayTarget(url={self.url!r}, instance_name={self.instance_name!r})"

    def job(self) -> dict[str, Any]:
        return {"url": self.url, "instance_name": self.instance_name, "api": self.api.value, "airflow_url": self.airflow_url,
                "max_age": self.max_age, "idle_seconds": self.idle_seconds}

    @classmethod
    def from_job(cls, job: Mapping[str, Any], api_token: str | None) -> RelayTarget:
        name = job.get("instance_name")
        return cls(str(job["url"]), api_token, None if name is None else str(name), ApiVersion(job["api"]), str(job["airflow_url"]),
                   max_age=float(job["max_age"]), idle_seconds=float(job.get("idle_seconds", DEFAULT_IDLE_SECONDS)))

    def name(self) -> str:
        digest = hashlib.sha256(f"{self.url}\0{self.instance_name or ''}\0{self.airflow_url}\0{self.api.value}".encode()).hexdigest()
        return f"relay-{digest[:16]}"


def relay_dir() -> Path | None:
    """The user's private folder of relay sockets (created 0700), or ``None`` when it is not safe to
    use (owned by someone else, or group/world accessible)."""
    path = Path(tempfile.gettempdir()) / f"airlift-push-{os.getuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = path.lstat()
    except OSError:
        return None
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or not path.is_dir() or path.is_symlink():
        return None
    return path


class StatusFile:
    """Counts a process's push outcomes and merges them into ``path`` (the push status file shared
    by every process that delivers on this machine) at most ``interval`` seconds after they happen,
    and on :meth:`flush`. A merge holds an exclusive lock on ``<path>.lock`` while it reads and
    rewrites the file (a few small reads and writes).

    >>> StatusFile(Path("/tmp/x/push-status.json"))
    StatusFile(path='/tmp/x/push-status.json')
    """

    def __init__(self, path: Path, *, interval: float = 1.0) -> None:
        self.path = path
        self.interval = interval
        self._counts: dict[str, int] = {}
        self._problems: list[PushProblem] = []
        self._delivered_dags: set[str] = set()
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def __repr__(self) -> str:
        return f"StatusFile(path={str(self.path)!r})"

    def record(self, counter: str, item: PushItem, reason: str | None = None, *, actionable: bool = False) -> None:
        """Count one outcome of ``item`` (with its reason unless delivered); written within ``interval``."""
        with self._lock:
            self._counts[counter] = self._counts.get(counter, 0) + 1
            if counter == DELIVERED:
                self._delivered_dags.add(item.dag_id)
                self._problems = [p for p in self._problems if not (p.actionable and p.dag_id == item.dag_id)]
            elif reason is not None:
                self._delivered_dags.discard(item.dag_id)
                self._problems.append(PushProblem(at=_now(), counter=counter, dag_id=item.dag_id, what=item.describe(),
                                                  reason=reason, actionable=actionable))
            if self._timer is None:
                self._timer = threading.Timer(self.interval, self.flush)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Merge what was counted since the last merge into the file."""
        with self._lock:
            counts, problems, delivered = self._counts, self._problems, self._delivered_dags
            self._counts, self._problems, self._delivered_dags = {}, [], set()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        if not counts:
            return
        try:
            fd = os.open(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            log.info("Airlift push: cannot write %s (%s)", self.path, e)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = load_push_status(self.path)
            except PushStatusError:  # none yet, or unreadable: start again
                current = PushStatus()
            merged = merge_push_status(current, counts, problems, now=_now(), delivered_dags=delivered)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(merged.to_json(), indent=1))
            os.replace(tmp, self.path)
        except OSError as e:
            log.info("Airlift push: cannot write %s (%s)", self.path, e)
        finally:
            os.close(fd)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def status_file() -> StatusFile | None:
    """The push status file of this machine and user (``None`` when the relay folder is not usable)."""
    folder = relay_dir()
    return StatusFile(folder / STATUS_FILE_NAME) if folder is not None else None


def actionable_problem(dag_id: str, *, now: datetime | None = None) -> PushProblem | None:
    """The newest problem the user must act on that push recorded for ``dag_id`` on this machine in
    the last hour and has not delivered past since (``None``: none, or no readable status file)."""
    folder = relay_dir()
    if folder is None:
        return None
    try:
        problem = load_push_status(folder / STATUS_FILE_NAME).problem_of(dag_id)
    except PushStatusError:
        return None
    if problem is None:
        return None
    try:
        recent = datetime.fromisoformat(problem.at) >= (now or datetime.now(timezone.utc)) - PROBLEM_SHOWN_FOR
    except (TypeError, ValueError):
        return None
    return problem if recent else None


def _log_to_file(folder: Path) -> None:
    """Send airlift_airflow's log records of this process to ``push-relay.log`` (rotated, bounded)."""
    handler = RotatingFileHandler(folder / LOG_FILE_NAME, maxBytes=LOG_MAX_BYTES, backupCount=1)
    handler.setFormatter(logging.Formatter("%(asctime)s pid=%(process)d %(levelname)s %(message)s"))
    logger = logging.getLogger("airlift_airflow")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def encode_item(item: PushItem) -> dict[str, Any]:
    """A :class:`~airlift_airflow.push.PushItem` as JSON-ready data (``created`` as a wall-clock age)."""
    return {"dag_id": item.dag_id, "run_id": item.run_id, "task_id": item.task_id, "map_index": item.map_index,
            "try_number": item.try_number, "run_type": item.run_type, "prefetch": item.prefetch,
            "start_date": item.start_date.isoformat() if item.start_date else None,
            "end_date": item.end_date.isoformat() if item.end_date else None,
            "at": time.time() - (time.monotonic() - item.created)}


def decode_item(raw: Mapping[str, Any]) -> PushItem:
    age = max(0.0, time.time() - float(raw["at"]))
    return PushItem(
        dag_id=raw["dag_id"], run_id=raw["run_id"], task_id=raw["task_id"], map_index=int(raw["map_index"]),
        try_number=int(raw["try_number"]), run_type=raw["run_type"], prefetch=bool(raw.get("prefetch")),
        start_date=datetime.fromisoformat(raw["start_date"]) if raw["start_date"] else None,
        end_date=datetime.fromisoformat(raw["end_date"]) if raw["end_date"] else None,
        created=time.monotonic() - age,
    )


def send_or_spawn(item: PushItem, target: RelayTarget) -> str:
    """Hand ``item`` to the running relay, else spawn one with it. Returns how (``"relay"``,
    ``"spawned"``) or ``"failed"`` (logged; the Airlift sensor reports the item). Never blocks on
    Dagster."""
    payload = encode_item(item)
    folder = relay_dir()
    if folder is not None:
        data = json.dumps(payload, separators=(",", ":")).encode()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.sendto(data, str(folder / f"{target.name()}.sock"))
            return "relay"
        except (FileNotFoundError, ConnectionRefusedError):
            pass  # no relay: start one with this item
        except BlockingIOError:
            folder = None  # the relay is behind: a one-shot process delivers this item
        except OSError as e:
            log.info("Airlift push: relay socket not usable (%s); starting a sender", e)
            folder = None
        finally:
            sock.close()
    job = {**target.job(), "item": payload, "relay": folder is not None}
    env = {**os.environ, JOB_ENV: json.dumps(job)}
    env.pop(TOKEN_ENV, None)
    if target.api_token:
        env[TOKEN_ENV] = target.api_token
    for running in list(_spawned):  # reap the ones that ended (a task's process exits soon anyway)
        if running.poll() is not None:
            _spawned.remove(running)
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _BOOT, os.path.dirname(os.path.abspath(__file__))],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=True, start_new_session=True,
        )
    except OSError as e:
        log.warning("Airlift push: cannot start the push relay (%s); %s left to the Airlift sensor", e, item.describe())
        return "failed"
    _spawned.append(process)
    return "spawned"


_spawned: list[subprocess.Popen[bytes]] = []


def main() -> None:
    """Entry of a spawned process (see :func:`send_or_spawn`): serve as the relay when none runs,
    else deliver the one item it was given."""
    job = json.loads(os.environ[JOB_ENV])
    target = RelayTarget.from_job(job, os.environ.get(TOKEN_ENV))
    item = decode_item(job["item"])
    home = relay_dir()
    folder = home if job.get("relay") else None
    lock = _lock(folder / f"{target.name()}.lock") if folder is not None else None
    if lock is None and item.prefetch:
        return  # a relay is running (or none may): only a relay keeps an index cache
    if home is not None:
        _log_to_file(home)
    status = StatusFile(home / STATUS_FILE_NAME) if home is not None else None
    reporter = build_reporter(target.url, api_token=target.api_token, instance_name=target.instance_name, api=target.api,
                              airflow_url=target.airflow_url, max_age=target.max_age)
    if lock is None:  # a relay is running (or none may): deliver this one item, then exit
        PushSender(deliver=reporter, max_age=target.max_age, status=status).deliver_now(item)
        if status is not None:
            status.flush()
        return
    log.info("Airlift push relay started for %r (pid %d)", target, os.getpid())
    sender = PushSender(deliver=reporter, max_age=target.max_age, workers=RELAY_WORKERS, status=status)
    sender.submit(item)
    path = folder / f"{target.name()}.sock"  # type: ignore[operator]
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a socket left by a relay that died: we hold the lock, nobody serves it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    serve(sock, path, sender, idle_seconds=target.idle_seconds)
    os.close(lock)  # a new relay may start now, while this one finishes its deliveries
    sender.flush(target.max_age + 1.0)
    if status is not None:
        status.flush()
    log.info("Airlift push relay for %r exits after %.0fs idle: %s", target, target.idle_seconds, sender.stats)


def serve(sock: socket.socket, path: Path, sender: PushSender, *, idle_seconds: float) -> None:
    """Take items from ``sock`` until idle for ``idle_seconds``; then remove ``path`` (new items start
    a new relay) and take what is still buffered."""
    sock.settimeout(1.0)
    last = time.monotonic()
    while True:
        try:
            data = sock.recv(_MAX_DATAGRAM)
        except TimeoutError:
            if time.monotonic() - last >= idle_seconds and sender.flush(0):
                break
            continue
        last = time.monotonic()
        _take(data, sender)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    sock.setblocking(False)
    while True:
        try:
            _take(sock.recv(_MAX_DATAGRAM), sender)
        except (BlockingIOError, InterruptedError):
            break
    sock.close()


def _take(data: bytes, sender: PushSender) -> None:
    try:
        item = decode_item(json.loads(data))
    except (ValueError, KeyError, TypeError) as e:
        log.warning("Airlift push relay: ignored a malformed item (%s)", e)
        return
    sender.submit(item)


def _lock(path: Path) -> int | None:
    """An exclusive lock on ``path`` held until the process exits, or ``None`` if another holds it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
            log.info("Airlift push relay: cannot lock %s (%s)", path, e)
        return None
    return fd
