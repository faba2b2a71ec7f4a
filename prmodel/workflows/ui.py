"""The MLflow UI of a workspace's tracking store, run so that it stops with its parent.

``mlflow ui`` is a tree of processes: the mlflow command starts uvicorn, which may start
workers and job consumers. Killing only the first one leaves the rest running under PID 1,
still bound to the port. :func:`serve_ui` therefore starts the UI in a process group of its
own, forwards SIGTERM, SIGINT and SIGHUP to that group, and whatever ends the wait stops the
whole group (SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`). It serves one local user: one
uvicorn worker, no job executor (prmodel has no MLflow jobs), bound to 127.0.0.1 only. A
port already in use is refused before anything starts. Only a ``kill -KILL`` of the parent,
which no process can catch, leaves the UI running: stop its group by hand then
(``kill -- -PGID``, with the group id that ``prmodel ui`` prints).

MLflow 3.17's UI opens an experiment in the view of the "GenAI | Model training" switch at
its top left, remembered per browser and GenAI at first; a ``workflowType`` in the link
overrides it. Once the UI answers, :func:`serve_ui` reports a link per prmodel experiment
that opens its runs in the model-training view (:func:`experiment_links`).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType

from prmodel.errors import PrmodelError
from prmodel.train.tracking import QUIET_ENV, tracking_uri_for
from prmodel.workspace import Workspace

UI_HOST = "127.0.0.1"
STOP_GRACE_S = 10.0
"""Seconds the UI's processes get to exit after SIGTERM before they are killed."""
READY_TIMEOUT_S = 180.0
"""How long to wait for the UI's first answer before giving up on reporting its links."""
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
"""Settings of the UI server (the user's environment wins): no job-executor processes."""
MODEL_TRAINING_VIEW = "workflowType=machine_learning"
"""The link parameter that opens MLflow 3.17's "Model training" view."""
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class UIError(PrmodelError, RuntimeError):
    """The MLflow UI cannot start or did not run (one sentence says why)."""


def ui_command(workspace: Workspace, port: int) -> list[str]:
    """The ``mlflow ui`` command line for ``workspace`` on ``127.0.0.1:port``."""
    return [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracking_uri_for(workspace),
        "--default-artifact-root",
        workspace.mlflow_artifacts_dir.as_uri(),
        "--host",
        UI_HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]


def port_in_use(port: int, host: str = UI_HOST) -> bool:
    """Whether something already listens on ``host:port`` (a bind as the server makes fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As uvicorn binds: a port whose last connections linger in TIME_WAIT is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return True
            raise
    return False


def experiment_links(url: str) -> dict[str, str]:
    """Each prmodel experiment the UI at ``url`` shows, with a link to its runs in the
    model-training view.

    Raises:
        OSError: the UI does not answer (yet).
    """
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search",
        data=json.dumps({"max_results": 1000, "filter": "name LIKE 'prmodel/%'"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        found = json.loads(answer.read() or b"{}").get("experiments", [])
    return {
        str(e["name"]): f"{url}/#/experiments/{e['experiment_id']}/runs?{MODEL_TRAINING_VIEW}"
        for e in sorted(found, key=lambda e: str(e["name"]))
    }


def serve_ui(
    workspace: Workspace,
    *,
    port: int,
    on_start: Callable[[str, int], None] | None = None,
    on_ready: Callable[[dict[str, str]], None] | None = None,
) -> int:
    """Run the MLflow UI on ``127.0.0.1:port`` until it exits or this process is told to stop.

    Args:
        workspace: Whose tracking store to show (``MLFLOW_TRACKING_URI`` wins if set).
        port: The port on 127.0.0.1.
        on_start: Called with the UI's URL and the process group id once it is started.
        on_ready: Called (from another thread) with :func:`experiment_links` once the UI
            answers.

    Returns:
        0 when stopped by SIGTERM, SIGINT or SIGHUP, else the UI's own exit status.

    Raises:
        UIError: the port is in use, or the UI exited with an error by itself.
    """
    if port_in_use(port):
        raise UIError(
            f"port {port} on {UI_HOST} is already in use (another 'prmodel ui' or server?); "
            "stop it or choose another port with --port"
        )
    env = {**QUIET_ENV, **UI_ENV, **os.environ}
    # A session of its own: the UI's whole process tree is one group to stop, and a Ctrl-C
    # in the terminal reaches only prmodel, which stops the group in order.
    process = subprocess.Popen(ui_command(workspace, port), env=env, start_new_session=True)
    stopped: list[int] = []
    url = f"http://{UI_HOST}:{port}"
    try:
        with _forwarding(process.pid, stopped):
            if on_start is not None:
                on_start(url, process.pid)
            if on_ready is not None:
                watch = threading.Thread(target=_report_ready, args=(url, process, on_ready))
                watch.daemon = True
                watch.start()
            status = process.wait()
    finally:
        stop_group(process.pid)
        if process.poll() is None:
            process.kill()
            process.wait()
    if stopped:
        return 0
    if status != 0:
        raise UIError(f"mlflow ui exited with status {status} (its messages are above)")
    return 0


def _report_ready(
    url: str, process: subprocess.Popen[bytes], on_ready: Callable[[dict[str, str]], None]
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        try:
            links = experiment_links(url)
        except (OSError, ValueError):  # not listening yet, or a half-started answer
            time.sleep(0.5)
            continue
        on_ready(links)
        return


@contextmanager
def _forwarding(pgid: int, stopped: list[int]) -> Iterator[None]:
    """Turn SIGTERM, SIGINT and SIGHUP into a SIGTERM of the group (noting which came)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set in the main thread
        return

    def forward(signum: int, frame: FrameType | None) -> None:
        stopped.append(signum)
        _signal_group(pgid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_group(pgid: int, *, grace_s: float = STOP_GRACE_S) -> bool:
    """SIGTERM every process of group ``pgid``, SIGKILL what is left after ``grace_s``.

    Returns:
        Whether the group is gone (False only if even SIGKILL left a process running).
    """
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if not group_alive(pgid):
            return True
        _signal_group(pgid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if not group_alive(pgid):
                return True
            time.sleep(0.05)
    return not group_alive(pgid)


def group_alive(pgid: int) -> bool:
    """Whether a running (not zombie) process of group ``pgid`` is left."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: any member, zombies included, counts
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return bool(group_members(pgid))


def group_members(pgid: int) -> list[int]:
    """The running (not zombie) processes of group ``pgid`` (Linux, from ``/proc``)."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process exited meanwhile
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


__all__ = [
    "STOP_GRACE_S",
    "UI_HOST",
    "UIError",
    "experiment_links",
    "group_alive",
    "group_members",
    "port_in_use",
    "serve_ui",
    "stop_group",
    "ui_command",
]
