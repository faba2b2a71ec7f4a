from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from prmodel.cli import app
from prmodel.measure.plans import shipped_plans_dir

TESTS = Path(__file__).parent
ROOT = TESTS.parent
PLAN = """
name: small_conv
kind: conv
fixed: {channels: 8, height: 8, width: 8, kernel: 3, padding: 1}
sweep: {out_channels: {start: 1, stop: 12}}
"""

runner = CliRunner()


def write_plan(tmp_path: Path, text: str = PLAN, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def prmodel(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run the real entry point, as a user would (its error handling included)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
        "COLUMNS": "400",  # a non-terminal console would otherwise wrap at 80 columns
    }
    return subprocess.run(
        [sys.executable, "-c", "from prmodel.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
    )


def test_sweep_json_and_resume(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    ws = tmp_path / "ws"
    first = json.loads(invoke("sweep", str(plan), "-t", "analytic", "-w", str(ws), "--json"))
    assert first["target_id"] == "analytic-b16-l8"
    assert first["store"] == str(ws.resolve() / "sweeps" / "measurements.sqlite")
    (report,) = first["plans"]
    assert (report["plan_name"], report["measured"], report["skipped"]) == ("small_conv", 12, 0)
    second = json.loads(invoke("sweep", str(plan), "-t", "analytic", "-w", str(ws), "--json"))
    assert (second["plans"][0]["measured"], second["plans"][0]["skipped"]) == (0, 12)


def test_max_rounds_bounds_the_rounds_of_a_noisy_point(tmp_path: Path) -> None:
    plan, ws = write_plan(tmp_path), tmp_path / "ws"
    target = "fake_targets.NoisyFakeTarget:noise=5"
    invoke("sweep", str(plan), "-t", target, "-w", str(ws), "--max-rounds", "4", "--json")
    with sqlite3.connect(ws / "sweeps" / "measurements.sqlite") as conn:
        rounds = [r for (r,) in conn.execute("SELECT rounds FROM measurements")]
    assert len(rounds) == 12 and max(rounds) <= 4
    # the canary's wall time per point shows how fast the machine was, hour by hour
    speed = json.loads(invoke("show", "-w", str(ws), "--json"))["machine_speed"]
    assert sum(hour["points"] for hour in speed) == 12  # one row per hour the sweep spanned
    assert all(hour["canary_us"] > 0 for hour in speed)
    assert min(hour["relative"] for hour in speed) == 1.0
    assert "machine speed by hour" in invoke("show", "-w", str(ws))


def test_sweep_table(tmp_path: Path) -> None:
    plan = write_plan(tmp_path)
    output = invoke("sweep", str(plan), "-t", "analytic", "-w", str(tmp_path / "ws"))
    assert "small_conv" in output and "measured" in output and "store:" in output


def test_init_copies_shipped_plans_and_sweep_finds_them(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    invoke("init", str(ws))
    shipped = sorted(p.name for p in shipped_plans_dir().glob("*.yaml"))
    assert sorted(p.name for p in (ws / "sweeps").glob("*.yaml")) == shipped
    assert (ws / "trained_models").is_dir() and (ws / "representatives").is_dir()
    (ws / "sweeps" / "conv_kernel.yaml").write_text(PLAN)  # kept on a second init
    invoke("init", str(ws))
    assert (ws / "sweeps" / "conv_kernel.yaml").read_text() == PLAN
    # a bare plan name is looked up in the workspace's sweeps/ folder
    out = json.loads(invoke("sweep", "conv_kernel", "-t", "analytic", "-w", str(ws), "--json"))
    assert out["plans"][0]["measured"] == 12


def test_a_bare_name_finds_a_shipped_plan_in_any_workspace(tmp_path: Path) -> None:
    ws = tmp_path / "empty"
    plan = shipped_plans_dir() / "conv_kernel.yaml"
    assert plan.is_file() and plan.parent.parent.parent.name == "prmodel"  # package data
    out = json.loads(invoke("sweep", "conv_kernel", "-t", "analytic", "-w", str(ws), "--json"))
    assert out["plans"][0]["plan_name"] == "conv_kernel" and out["plans"][0]["measured"] > 0
    assert not (ws / "sweeps" / "conv_kernel.yaml").exists()  # used in place, not copied


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_and_show(tmp_path: Path, suffix: str) -> None:
    ws = tmp_path / "ws"
    invoke("sweep", str(write_plan(tmp_path)), "-t", "analytic", "-w", str(ws), "--json")
    invoke("sweep", str(write_plan(tmp_path)), "-t", "analytic:block=8", "-w", str(ws))
    out = tmp_path / f"rows{suffix}"
    invoke("export", str(out), "-t", "analytic:block=8", "--kind", "conv", "-w", str(ws))
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert len(frame) == 12 and set(frame["target_id"]) == {"analytic-b8-l8"}
    invoke("export", str(out), "-t", "analytic-b16-l8", "--plan", "small_conv", "-w", str(ws))
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    assert set(frame["target_id"]) == {"analytic-b16-l8"}
    shown = json.loads(invoke("show", "-w", str(ws), "--json"))
    assert shown["machine_speed"] == []  # the analytic target has no canary
    assert {(r["target_id"], r["ok"]) for r in shown["layers"]} == {
        ("analytic-b16-l8", 12),
        ("analytic-b8-l8", 12),
    }
    assert shown["plans"] == ["small_conv"]


def test_targets_json() -> None:
    rows = json.loads(invoke("targets", "--json"))
    names = {row["name"] for row in rows}
    assert {"cpu", "analytic"} <= names
    assert all(set(row) == {"name", "description", "available", "note"} for row in rows)


@pytest.mark.parametrize(
    ("plan_text", "args", "message"),
    [
        ("name: p\nkind: conv\nsweep: {channels: [1]\n", [], "is not valid YAML at line"),
        ("name: p\nkind: softmax\nsweep: {channels: [1]}", [], "names unknown layer kind"),
        ("kind: conv\nsweep: {channels: [1]}", [], "field 'name' is missing"),
        ("name: p\nkind: conv\nsweep: {channels: [one]}", [], "must be an integer, got 'one'"),
        (
            "name: p\nkind: conv\nfixed: {height: 4, width: 4}\nsweep: {kernel: [3, 7]}",
            [],
            "point kernel=7 is not a valid layer",
        ),
        (PLAN, ["-t", "analytic:colour=red"], "analytic target has no option 'colour'"),
        (PLAN, ["-t", "no_such_module.Target"], "cannot load target plugin"),
        (PLAN, ["-t", "analytic", "--max-rounds", "2"], "--max-rounds must be between 3 and 15"),
    ],
)
def test_sweep_errors_are_one_line(
    tmp_path: Path, plan_text: str, args: list[str], message: str
) -> None:
    plan = write_plan(tmp_path, plan_text)
    target = [] if args else ["-t", "analytic"]
    result = prmodel("sweep", str(plan), *target, *args, "-w", str(tmp_path / "ws"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert message in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sweep", "missing.yaml", "-t", "analytic"], "missing.yaml: cannot read the plan file"),
        (["export", "out.csv"], "no measurement store at"),
        (["show"], "no measurement store at"),
        (["recheck", "-t", "analytic"], "no measurement store at"),
    ],
)
def test_other_errors_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = prmodel(*args, "-w", str(tmp_path / "ws"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_export_bad_suffix(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    invoke("sweep", str(write_plan(tmp_path)), "-t", "analytic", "-w", str(ws))
    result = prmodel("export", str(tmp_path / "out.xlsx"), "-w", str(ws))
    assert result.returncode == 2 and "must end in .parquet or .csv" in result.stderr


def _stored(store: Path) -> list[str]:
    if not store.exists():
        return []
    with sqlite3.connect(store, timeout=30) as conn:
        try:
            return [key for (key,) in conn.execute("SELECT layer_key FROM measurements")]
        except sqlite3.OperationalError:  # tables not created yet
            return []


@pytest.mark.parametrize(
    "target",
    ["fake_targets.SlowTarget:delay_ms=40", "fake_targets.NoisyFakeTarget:delay_ms=4"],
)
def test_sigkill_mid_sweep_then_resume(tmp_path: Path, target: str) -> None:
    plan = write_plan(
        tmp_path,
        PLAN.replace("name: small_conv", "name: killed").replace("stop: 12", "stop: 40"),
    )
    ws = tmp_path / "ws"
    store = ws / "sweeps" / "measurements.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    command = [sys.executable, "-c", "from prmodel.cli import main; main()"]
    args = ["sweep", str(plan), "-t", target, "-w", str(ws), "--json"]
    process = subprocess.Popen([*command, *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(_stored(store)) < 10 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    kept = _stored(store)
    assert 10 <= len(kept) < 40

    result = prmodel(*args)
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)["plans"]
    assert (report["skipped"], report["measured"]) == (len(kept), 40 - len(kept))
    final = _stored(store)
    assert len(final) == len(set(final)) == 40 and set(kept) <= set(final)
    with sqlite3.connect(store) as conn:
        members = conn.execute("SELECT COUNT(*) FROM plan_members WHERE plan = 'killed'")
        assert members.fetchone()[0] == 40
