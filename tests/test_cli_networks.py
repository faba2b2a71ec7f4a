"""Tests of the networks commands (prmodel/cli/_networks.py)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

import onnx
import pytest

from prmodel.cli import main
from prmodel.zoo import HELD_OUT_SETS, REFERENCE_NETWORKS, all_held_out_networks


def _run(
    args: Sequence[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["prmodel", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def test_list_shows_every_set(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(["networks", "list", "--json"], monkeypatch, capsys)
    assert code == 0
    facts = json.loads(out)
    names = [f["name"] for f in facts]
    assert names == list(REFERENCE_NETWORKS) + [s.name for s in all_held_out_networks()]
    assert {f["set"] for f in facts} == {"reference", *HELD_OUT_SETS}
    assert set(HELD_OUT_SETS) == {f"held-out{s}" for s in ("", "-b", "-c", "-d", "-e", "-f")}
    code, out, _ = _run(["networks", "list", "held-out"], monkeypatch, capsys)
    assert code == 0 and "held-out networks (15)" in out and "resnet34_160" in out
    assert max(len(line.rstrip()) for line in out.splitlines()) <= 80


def test_build_writes_then_keeps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["networks", "build", "shufflenet_v2_x0_5", "--out", str(tmp_path), "--json"]
    code, out, _ = _run(args, monkeypatch, capsys)
    assert code == 0
    (row,) = json.loads(out)
    assert row["built"] and Path(row["path"]) == tmp_path / "shufflenet_v2_x0_5.onnx"
    onnx.checker.check_model(str(row["path"]))
    code, out, _ = _run(args[:-1], monkeypatch, capsys)
    assert code == 0 and "kept" in out and "0 built, 1 already current" in out


def test_build_unknown_network_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["networks", "build", "resnet99", "-o", str(tmp_path)], monkeypatch, capsys)
    assert code == 2
    assert "no network set has a network named 'resnet99'" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
