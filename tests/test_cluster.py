"""Cluster sweeps on a local Ray cluster of simulated nodes (deterministic targets only).

One cluster serves the whole module: a head without CPUs and three one-CPU nodes, each
declaring one ``prmodel:board-analytic`` device; the third says it is board ``b`` (another
machine). :class:`cluster_targets.BoardTarget` is the analytic model with a delay per layer.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from prmodel.layers import LayerConfig
from prmodel.measure.cluster import (
    ClusterError,
    ClusterSettings,
    open_cluster,
    run_cluster_sweep,
)
from prmodel.measure.runner import run_sweep
from prmodel.measure.store import Measurement, MeasurementStore, WorkerStamp
from prmodel.targets.analytic import AnalyticTarget

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")

TESTS = Path(__file__).parent
ROOT = TESTS.parent
BOARD = "cluster_targets.BoardTarget"
DEVICE = "prmodel:board-analytic"


def conv_layers(count: int, *, channels: int = 8) -> list[LayerConfig]:
    return [
        LayerConfig.create(
            "conv", channels=channels, height=8, width=8, out_channels=n, kernel=3, padding=1
        )
        for n in range(1, count + 1)
    ]


def stamps(path: Path) -> dict[str, str]:
    """layer_key -> worker, from the store's measured_by table."""
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT layer_key, worker FROM measured_by").fetchall())


def stored_keys(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [key for (key,) in conn.execute("SELECT layer_key FROM measurements")]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[cluster_utils.Cluster]:
    """Head (no CPU) + nodes a, a, b: one CPU and one board-analytic device each."""
    env = {"PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    cluster = cluster_utils.Cluster(
        initialize_head=True, head_node_args={"num_cpus": 0, "env_vars": env}
    )
    for board in ("a", "a", "b"):
        cluster.add_node(
            num_cpus=1, resources={DEVICE: 1}, env_vars={**env, "PRMODEL_TEST_BOARD": board}
        )
    ray.init(address=cluster.address, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "measurements.sqlite"


def test_a_deterministic_target_gets_one_worker_per_cpu_and_every_point_once(
    ray_cluster: cluster_utils.Cluster, store_path: Path
) -> None:
    layers = conv_layers(60)
    with MeasurementStore(store_path) as store:
        report = run_cluster_sweep(
            layers + layers[:5],  # duplicates are measured once
            "analytic",
            store=store,
            cluster=ClusterSettings(address=ray_cluster.address),
            progress=False,
            plan_name="p",
        )
        frame = store.frame()
    assert (report.sweep.requested, report.sweep.measured, report.sweep.failed) == (60, 60, 0)
    workers = {w.worker for w in report.workers}
    assert len(workers) == 3  # no prmodel:analytic-... resource declared: one per CPU
    # a worker may still be starting when the others have finished 60 quick points
    assert {w.state for w in report.workers} <= {"measuring", "starting"}
    assert sum(w.points for w in report.workers) == 60
    keys = stored_keys(store_path)
    assert len(keys) == len(set(keys)) == 60
    assert set(stamps(store_path).values()) <= workers
    # the same numbers as a local sweep
    with MeasurementStore(store_path.with_name("local.sqlite")) as local:
        run_sweep(layers, AnalyticTarget(), store=local, progress=False)
        expected = local.frame().set_index("layer_key")["latency_us"]
    assert frame.set_index("layer_key")["latency_us"].sort_index().equals(expected.sort_index())

    with MeasurementStore(store_path) as store:  # a rerun resumes: nothing left to measure
        again = run_cluster_sweep(
            layers,
            "analytic",
            store=store,
            cluster=ClusterSettings(address=ray_cluster.address),
            progress=False,
        )
    assert (again.sweep.measured, again.sweep.skipped) == (0, 60)


def test_device_workers_are_pinned_and_a_foreign_board_is_refused_by_name(
    ray_cluster: cluster_utils.Cluster, store_path: Path
) -> None:
    nodes = {n["NodeID"]: n for n in ray.nodes() if n["Alive"]}
    with (
        MeasurementStore(store_path) as store,
        open_cluster(f"{BOARD}:delay_ms=5", ClusterSettings(address=ray_cluster.address)) as pool,
    ):
        report = pool.sweep(conv_layers(30), store=store, progress=False)
    by_state = {w.worker: w for w in report.workers}
    assert len(by_state) == 3  # one worker per declared device, none on the head
    refused = [w for w in report.workers if w.state.startswith("refused")]
    assert len(refused) == 1
    assert "board 'b' there, 'a' on the target" in refused[0].state
    assert refused[0].points == 0
    accepted = {w.worker for w in report.workers if w.state == "measuring"}
    assert set(stamps(store_path).values()) == accepted
    # each worker name starts with its node id: both on device nodes, on different ones
    prefixes = {name.split(":")[0] for name in accepted}
    assert len(prefixes) == 2
    device_nodes = {i[:8] for i, n in nodes.items() if n["Resources"].get(DEVICE)}
    assert prefixes <= device_nodes
    assert report.sweep.measured == 30


def test_no_fit_worker_is_an_error_naming_every_refused_one(
    ray_cluster: cluster_utils.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRMODEL_TEST_BOARD", "c")  # the driver's (reference) board
    with pytest.raises(ClusterError, match="no worker of the cluster may measure") as info:
        open_cluster(BOARD, ClusterSettings(address=ray_cluster.address, start_timeout_s=60))
    message = str(info.value)
    assert message.count("board 'a' there, 'c' on the target") == 2
    assert "board 'b' there, 'c' on the target" in message


def test_reference_cluster_takes_what_most_devices_report(
    ray_cluster: cluster_utils.Cluster, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRMODEL_TEST_BOARD", "c")  # the driver runs on another machine
    settings = ClusterSettings(address=ray_cluster.address, reference="cluster")
    with MeasurementStore(store_path) as store:
        report = run_cluster_sweep(
            conv_layers(10), BOARD, store=store, cluster=settings, progress=False
        )
        (fingerprint,) = store.targets()["fingerprint"]
    assert report.reference == "what 2 of the cluster's 3 devices report"
    assert json.loads(fingerprint)["board"] == "a"
    states = sorted(w.state.split(":")[0] for w in report.workers)
    assert states == ["measuring", "measuring", "refused"]
    assert report.sweep.measured == 10


def test_a_killed_worker_s_points_are_measured_once_elsewhere(
    ray_cluster: cluster_utils.Cluster, store_path: Path
) -> None:
    layers = conv_layers(80)
    killed: list[str] = []

    def kill_a_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if store_path.exists():
                found = stamps(store_path)
                if len(found) >= 6:
                    victim = sorted(set(found.values()))[0]
                    os.kill(int(victim.split(":")[1]), signal.SIGKILL)
                    killed.append(victim)
                    return
            time.sleep(0.02)

    killer = threading.Thread(target=kill_a_worker)
    with MeasurementStore(store_path) as store:
        killer.start()
        report = run_cluster_sweep(
            layers,
            f"{BOARD}:delay_ms=40",
            store=store,
            cluster=ClusterSettings(address=ray_cluster.address),
            progress=False,
        )
        killer.join()
    assert killed, "the sweep ended before a worker could be killed"
    assert report.lost_workers == 1
    assert report.requeued >= 1  # it held a batch when it died
    (lost,) = [w for w in report.workers if w.state.startswith("lost")]
    assert lost.worker == killed[0]
    assert (report.sweep.measured, report.sweep.failed) == (80, 0)
    keys = stored_keys(store_path)
    assert len(keys) == len(set(keys)) == 80
    after = [w for w in report.workers if w.state == "measuring"]
    assert sum(w.points for w in after) + lost.points == 80


def test_a_layer_that_kills_every_worker_is_stored_as_an_error(
    ray_cluster: cluster_utils.Cluster, store_path: Path
) -> None:
    with MeasurementStore(store_path) as store:
        report = run_cluster_sweep(
            conv_layers(12),
            f"{BOARD}:crash_out=7",
            store=store,
            cluster=ClusterSettings(address=ray_cluster.address, max_losses=2),
            progress=False,
        )
        errors = store.frame(include_errors=True).query("status == 'error'")
    assert (report.sweep.measured, report.sweep.failed, report.lost_workers) == (11, 1, 2)
    (message,) = errors["error"]
    assert message.startswith("the worker measuring it died 2 times")
    assert errors["out_channels"].tolist() == [7]


PLAN = """
name: farm
kind: conv
fixed: {channels: 8, height: 8, width: 8, kernel: 3, padding: 1}
sweep: {out_channels: {start: 1, stop: 60}}
"""


def run_cli(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    command = [sys.executable, "-c", "from prmodel.cli import main; main()", *args]
    return subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_killed_driver_loses_only_points_in_flight_and_the_rerun_resumes(
    ray_cluster: cluster_utils.Cluster, tmp_path: Path
) -> None:
    (tmp_path / "plan.yaml").write_text(textwrap.dedent(PLAN))
    store = tmp_path / "ws" / "sweeps" / "measurements.sqlite"
    args = ["sweep", "plan.yaml", "-t", f"{BOARD}:delay_ms=60", "-w", "ws", "--json"]
    args += ["--cluster", ray_cluster.address]
    driver = run_cli(*args, cwd=tmp_path)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and driver.poll() is None:
        if store.exists() and len(stamps(store)) >= 8:
            break
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=30)
    assert driver.returncode == -signal.SIGKILL
    kept = stored_keys(store)
    assert 8 <= len(kept) < 60
    assert sorted(stamps(store)) == sorted(kept)  # every committed point has its worker

    rerun = run_cli(*args, cwd=tmp_path)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    data = json.loads(out)
    (plan,) = data["plans"]
    assert (plan["skipped"], plan["measured"]) == (len(kept), 60 - len(kept))
    final = stored_keys(store)
    assert len(final) == len(set(final)) == 60 and set(kept) <= set(final)
    states = [w["state"] for w in data["workers"]]
    assert states.count("measuring") == 2
    assert all(s == "measuring" or s.startswith("refused") for s in states)


def test_a_local_sweep_never_imports_ray(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(textwrap.dedent(PLAN))
    code = (
        "import sys\n"
        "from prmodel.cli import main\n"
        "sys.argv = ['prmodel', 'sweep', 'plan.yaml', '-t', 'analytic', '-w', 'ws', '--json']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "print('no ray')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("no ray")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "--workers needs --cluster"),
        (["--cluster", "nowhere"], "is not a cluster address"),
        (["--cluster", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
        (["--cluster", "local", "--workers", "0"], "--workers must be at least 1"),
        (
            ["-t", "fake_targets.NoisyFakeTarget", "--cluster", "local", "--workers", "2"],
            "would run 2 benchmarks of a measured target at once",
        ),
    ],
)
def test_bad_cluster_options_are_one_clear_error(
    tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "plan.yaml").write_text(textwrap.dedent(PLAN))
    base = ["sweep", "plan.yaml", "-w", "ws"]
    if "-t" not in args:
        base += ["-t", "analytic"]
    done = run_cli(*base, *args, cwd=tmp_path)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 2, (out, err)
    assert message in err and "Traceback" not in err


def test_a_local_sweep_and_a_cluster_sweep_on_one_store_share_the_points(
    ray_cluster: cluster_utils.Cluster, tmp_path: Path
) -> None:
    (tmp_path / "plan.yaml").write_text(textwrap.dedent(PLAN))
    store_file = tmp_path / "ws" / "sweeps" / "measurements.sqlite"
    spec = f"{BOARD}:delay_ms=60"
    with open_cluster(spec, ClusterSettings(address=ray_cluster.address)) as pool:
        local = run_cli("sweep", "plan.yaml", "-t", spec, "-w", "ws", "--json", cwd=tmp_path)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (store_file.exists() and stored_keys(store_file)):
            time.sleep(0.02)
        with MeasurementStore(store_file) as store:
            report = pool.sweep(conv_layers(60), store=store, progress=False)
    out, err = local.communicate(timeout=120)
    assert local.returncode == 0, err
    (here,) = json.loads(out)["plans"]
    assert here["measured"] >= 1 and report.sweep.measured >= 1
    assert here["measured"] + report.sweep.measured == 60
    keys = stored_keys(store_file)
    assert len(keys) == len(set(keys)) == 60
    assert len(stamps(store_file)) == report.sweep.measured


def test_the_store_lists_which_worker_measured_what(tmp_path: Path) -> None:
    target = AnalyticTarget()
    first, second = conv_layers(2)
    with MeasurementStore(tmp_path / "s.sqlite") as store:
        digest = store.register_target(target.target_id, target.fingerprint())
        for layer, worker in ((first, "n1:10"), (second, "n2:20")):
            measurement = Measurement(
                layer=layer,
                target_id=target.target_id,
                fingerprint_hash=digest,
                latency_us=1.0,
                extra={"canary_us": 100.0 if worker == "n1:10" else 110.0},
            )
            store.record(measurement, worker=WorkerStamp(worker, f"host-{worker[1]}"))
        table = store.workers()
        assert table[["host", "worker", "ok", "error"]].values.tolist() == [
            ["host-1", "n1:10", 1, 0],
            ["host-2", "n2:20", 1, 0],
        ]
        assert table["canary_us"].tolist() == [100.0, 110.0]
        # measured again by a local sweep: the point no longer carries a worker
        store.record(Measurement(layer=second, target_id=target.target_id, fingerprint_hash=digest))
        assert store.workers()["worker"].tolist() == ["n1:10"]


def test_cluster_local_starts_ray_here_and_show_lists_the_workers(tmp_path: Path) -> None:
    (tmp_path / "plan.yaml").write_text(textwrap.dedent(PLAN))
    args = ["sweep", "plan.yaml", "-t", "analytic", "-w", "ws", "--json"]
    sweep = run_cli(*args, "--cluster", "local", "--workers", "2", cwd=tmp_path)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 0, err
    data = json.loads(out)
    assert [p["measured"] for p in data["plans"]] == [60]
    assert len(data["workers"]) == 2
    show = run_cli("show", "-w", "ws", "--json", cwd=tmp_path)
    out, err = show.communicate(timeout=60)
    assert show.returncode == 0, err
    measured_by = json.loads(out)["measured_by"]
    assert sum(row["ok"] for row in measured_by) == 60
    assert {row["worker"] for row in measured_by} <= {w["worker"] for w in data["workers"]}
