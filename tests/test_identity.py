"""A target's identity includes its hardware: ids, the checks of every artifact, migration.

Machines are built synthetically from ``/proc/cpuinfo`` texts (:func:`detect_cpu`'s test
hook), so the expectations hold on any machine that runs the tests; where the real ``cpu``
target runs, the foreign machine is a made-up CPU that no machine reports.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from analytic_fixtures import fitted

from prmodel.cli import main
from prmodel.estimate.calibration import calibration_path, load_calibration
from prmodel.estimate.estimator import Estimator
from prmodel.layers import LayerConfig, LayerKind
from prmodel.measure.plans import load_plans, save_plans
from prmodel.measure.runner import run_sweep
from prmodel.measure.store import Measurement, MeasurementStore
from prmodel.select.pr_file import representatives_for
from prmodel.select.representatives import ParameterSteps, RepresentativeSet
from prmodel.targets import get_target
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.base import fingerprint_hash
from prmodel.targets.cpu import detect_cpu, fingerprint_of
from prmodel.targets.identity import (
    IdentityError,
    MachineWarning,
    OldTargetIdError,
    OtherMachineError,
    check_recorded,
)
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget, ort_target_id
from prmodel.train.artifacts import CARD_NAME, load_model, load_models, save_model
from prmodel.train.card_checks import LibraryVersionWarning, installed_version
from prmodel.train.model import ModelError
from prmodel.workflows.migrate import migrate_workspace
from prmodel.workspace import Workspace

NO_CACHES = Path("/nonexistent")
INTEL_FLAGS = "fpu sse2 sse4_2 avx avx2 fma f16c avx512f avx512bw avx512vl avx512dq amx_tile"
AMD_FLAGS = "fpu sse2 sse4_2 avx avx2 fma f16c"


def cpu_fingerprint(model: str, flags: str, *, cores: int = 2) -> dict[str, Any]:
    """The CPU part of a fingerprint of a machine described by its cpuinfo lines."""
    cpu = detect_cpu(f"model name\t: {model}\nflags\t\t: {flags}\n", cache_dir=NO_CACHES)
    return fingerprint_of(cpu, machine="x86_64", logical_cores=cores)


def ort_fingerprint(
    model: str, flags: str, *, ort: str = "1.32.0", cores: int = 2, threads: int = 1
) -> dict[str, Any]:
    """A whole ONNX Runtime CPU fingerprint, as OnnxRuntimeTarget.fingerprint() makes it."""
    return {
        "target": "onnxruntime",
        "onnxruntime": ort,
        "provider": "CPUExecutionProvider",
        "threads": threads,
        "inter_threads": 1,
        "opt_level": "all",
        "execution_mode": "sequential",
        "opset": 17,
        **cpu_fingerprint(model, flags, cores=cores),
    }


INTEL = ort_fingerprint("Intel(R) Xeon(R) Platinum 8480+", INTEL_FLAGS)
AMD_AVX2 = ort_fingerprint("AMD EPYC 7B13", AMD_FLAGS)
AMD_AVX512 = ort_fingerprint("AMD EPYC 9B14", INTEL_FLAGS)
"""Another CPU model with the same ISA flags as INTEL."""
INTEL_NEXT_ORT = ort_fingerprint("Intel(R) Xeon(R) Platinum 8480+", INTEL_FLAGS, ort="1.33.0")
INTEL_4_CORES = ort_fingerprint("Intel(R) Xeon(R) Platinum 8480+", INTEL_FLAGS, cores=4)


@dataclass(frozen=True)
class MachineTarget(OnnxRuntimeTarget):
    """The ONNX Runtime CPU target as another machine would run it (its fingerprint given)."""

    machine: Mapping[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        return dict(self.machine)


# -- ids --------------------------------------------------------------------------------------
def test_the_id_names_the_isa_and_hashes_what_changes_kernels() -> None:
    intel, amd = ort_target_id(INTEL), ort_target_id(AMD_AVX2)
    assert re.fullmatch(r"ort-cpu-avx512-[0-9a-f]{4}-t1-all", intel)
    assert re.fullmatch(r"ort-cpu-avx2-[0-9a-f]{4}-t1-all", amd)
    assert ort_target_id(AMD_AVX512).startswith("ort-cpu-avx512-")
    assert ort_target_id(AMD_AVX512) != intel  # same ISA, another CPU model
    assert ort_target_id(INTEL_NEXT_ORT) != intel  # another ONNX Runtime
    assert ort_target_id(INTEL_4_CORES) == intel  # a bigger VM of the same CPU
    assert ort_target_id({**INTEL, "threads": 4, "inter_threads": 2}).endswith("-t4-all-i2")
    assert MachineTarget(machine=INTEL).target_id == intel
    assert get_target("cpu").target_id.startswith(f"ort-cpu-{detect_cpu().isa}-")


def test_gpu_and_arm_ids_name_their_hardware() -> None:
    gpu = {**INTEL, "provider": "CUDAExecutionProvider", "gpus": ["NVIDIA H100 80GB HBM3, 550.5"]}
    assert re.fullmatch(r"ort-cuda-h100-[0-9a-f]{4}-t1-all", ort_target_id(gpu))
    arm = {**INTEL, "machine": "aarch64", "cpu_model": "Neoverse-V1", "isa": ["asimd", "sve"]}
    assert ort_target_id(arm).startswith("ort-cpu-neon-")


# -- the check of a recorded fingerprint ---------------------------------------------------------
@pytest.mark.parametrize(
    ("recorded", "running", "named"),
    [
        (INTEL, AMD_AVX2, ("avx512", "avx2")),
        (INTEL, AMD_AVX512, ("Intel(R) Xeon(R) Platinum 8480+", "AMD EPYC 9B14")),
        (INTEL, INTEL_NEXT_ORT, ("onnxruntime 1.32.0", "onnxruntime 1.33.0")),
    ],
    ids=["other ISA", "other CPU model, same ISA", "other ONNX Runtime"],
)
def test_another_machine_is_refused_in_one_sentence_naming_both(
    recorded: dict[str, Any], running: dict[str, Any], named: tuple[str, str]
) -> None:
    with pytest.raises(OtherMachineError) as refused:
        check_recorded("representatives/x.yaml", recorded, running, verb="selected", remedy="fix")
    message = str(refused.value)
    assert message.startswith("representatives/x.yaml was selected on ")
    assert "; this machine is " in message and message.endswith(": fix")
    assert named[0] in message.split("; this machine is ")[0]
    assert named[1] in message.split("; this machine is ")[1]
    assert "\n" not in message


def test_same_machine_passes_and_what_only_warns_or_is_asked_for_says_so() -> None:
    assert check_recorded("a", INTEL, INTEL) == []
    (cores,) = check_recorded("a", INTEL_4_CORES, INTEL)  # tolerated: a VM of another size
    assert "logical_cores 4" in cores and "logical_cores 2" in cores
    (on_purpose,) = check_recorded("a", INTEL, AMD_AVX2, on_purpose=True)
    assert "--from-other-machine" in on_purpose and "AMD EPYC 7B13" in on_purpose
    (unknown,) = check_recorded("a", None, AMD_AVX2)
    assert "records no fingerprint" in unknown
    assert check_recorded("a", None, AMD_AVX2, recorded_hash=fingerprint_hash(AMD_AVX2)) == []
    with pytest.raises(IdentityError, match="edited by hand"):
        check_recorded("a", INTEL, INTEL, recorded_hash="0123456789ab")


# -- PR files -----------------------------------------------------------------------------------
def write_pr_file(workspace: Workspace, fingerprint: Mapping[str, Any]) -> Path:
    steps = (ParameterSteps(LayerKind.DENSE, "out_channels", True, period=16),)
    metadata = {"fingerprint_hash": fingerprint_hash(fingerprint), "fingerprint": fingerprint}
    target_id = ort_target_id(fingerprint)
    prs = RepresentativeSet(target_id, steps, metadata)
    return prs.save(workspace.representatives_path(target_id))


def test_a_pr_file_serves_its_own_machine_only(workspace: Workspace) -> None:
    path = write_pr_file(workspace, INTEL)
    used = representatives_for(MachineTarget(machine=INTEL), workspace)
    assert used.path == path and used.warnings == () and used.from_other_machine is None
    with pytest.raises(OtherMachineError) as refused:
        representatives_for(MachineTarget(machine=AMD_AVX2), workspace)
    message = str(refused.value)
    assert "there is no PR file of this machine, AMD EPYC 7B13 (avx2" in message
    assert f"{path.name} was selected on Intel(R) Xeon(R) Platinum 8480+ (avx512" in message
    assert f"--from-other-machine {ort_target_id(INTEL)}" in message
    on_purpose = representatives_for(
        MachineTarget(machine=AMD_AVX2), workspace, from_other_machine=ort_target_id(INTEL)
    )
    assert on_purpose.from_other_machine == ort_target_id(INTEL)
    assert "used on purpose from another machine" in on_purpose.warnings[0]


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """The real entry point, with its error handling (exit 2, one line, no traceback)."""
    monkeypatch.setattr(sys, "argv", ["prmodel", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


FOREIGN = ort_fingerprint("Test CPU 9000 (no machine has it)", INTEL_FLAGS)


def test_cli_refuses_a_foreign_pr_file_unless_asked_on_purpose(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_pr_file(workspace, FOREIGN)
    args = ["plan", "-s", "pr", "-n", "5", "-t", "cpu", "-k", "dense", "-w", str(workspace.root)]
    assert run_main(monkeypatch, *args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "Test CPU 9000" in err and detect_cpu().model in err
    assert "Traceback" not in err and err.count("error:") == 1
    foreign_id = ort_target_id(FOREIGN)
    code = run_main(monkeypatch, *args, "--from-other-machine", foreign_id, "--json")
    captured = capsys.readouterr()
    assert code == 0
    data = json.loads(captured.out)
    assert data["from_other_machine"] == foreign_id
    assert "Test CPU 9000" in data["warnings"][0]
    # the plan is this machine's: it records the running target and sweeps here
    (plan, *_) = load_plans(Path(data["file"]))
    assert plan.made_for is not None
    assert plan.made_for["target_id"] == get_target("cpu").target_id


def test_a_plan_drawn_for_another_machine_is_not_swept_here(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = workspace.sweeps_dir / "pr-foreign.yaml"
    save_plans(
        load_plans_from_layers(),
        path,
        made_for={"target_id": ort_target_id(FOREIGN), "fingerprint": FOREIGN},
    )
    assert run_main(monkeypatch, "sweep", str(path), "-t", "cpu", "-w", str(workspace.root)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "plan 'pr-dense' was drawn on Test CPU 9000" in err
    assert not workspace.store_path.exists()  # refused before anything was measured


def load_plans_from_layers() -> list[Any]:
    from prmodel.measure.plans import plan_from_layers

    layer = LayerConfig.create("dense", channels=8, out_channels=8)
    return [plan_from_layers("pr-dense", [layer])]


# -- model cards --------------------------------------------------------------------------------
def save_card(directory: Path, fingerprint: Mapping[str, Any], regressor: str = "xgboost") -> Path:
    save_model(
        fitted(regressor, n=60),
        directory,
        target_id=ort_target_id(fingerprint),
        fingerprint_hash=fingerprint_hash(fingerprint),
        fingerprint=fingerprint,
    )
    return directory


def edit_card(directory: Path, **changes: Any) -> None:
    card = json.loads((directory / CARD_NAME).read_text())
    card.update(changes)
    (directory / CARD_NAME).write_text(json.dumps(card))


def test_a_model_serves_its_own_machine_only(tmp_path: Path) -> None:
    directory = save_card(tmp_path / "dense", INTEL)
    card = json.loads((directory / CARD_NAME).read_text())
    assert card["library_versions"]["xgboost"] == installed_version("xgboost") != "unknown"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same machine: not even a warning
        load_model(directory, running=INTEL)
    for other in (AMD_AVX2, AMD_AVX512, INTEL_NEXT_ORT):
        with pytest.raises(OtherMachineError, match="was trained on Intel"):
            load_model(directory, running=other)
    with pytest.warns(MachineWarning, match="used on purpose from another machine"):
        load_model(directory, running=AMD_AVX2, on_purpose=True)
    edit_card(directory, fingerprint_hash="0123456789ab")
    with pytest.raises(IdentityError, match="records fingerprint_hash 0123456789ab"):
        load_model(directory, running=INTEL)
    edit_card(
        directory,
        fingerprint_hash=fingerprint_hash(INTEL),
        fingerprint={**INTEL, "cpu_model": "AMD EPYC 7B13"},
    )
    with pytest.raises(IdentityError, match="edited by hand"):
        load_model(directory, running=AMD_AVX2)


def test_a_calibration_serves_its_own_machine_only(workspace: Workspace) -> None:
    target_id = ort_target_id(INTEL)
    path = calibration_path(workspace, target_id)
    path.parent.mkdir(parents=True)
    fields = {"scale": 1.0, "us_per_weight_mb": 0.0, "offset_us": 0.0, "weight_cap_bytes": 1}
    data = {"target_id": target_id, **fields, "terms": [], "notes": {"fingerprint": INTEL}}
    path.write_text(json.dumps(data))
    assert load_calibration(workspace, target_id, running=INTEL) is not None
    with pytest.raises(OtherMachineError, match="was calibrated on Intel"):
        load_calibration(workspace, target_id, running=AMD_AVX2)
    with pytest.warns(MachineWarning, match="used on purpose"):
        load_calibration(workspace, target_id, running=AMD_AVX2, on_purpose=True)


@pytest.mark.parametrize("model_file", ["../x", "/etc/passwd", "sub/model.ubj", "model.bin"])
def test_a_card_cannot_name_a_file_outside_its_folder(tmp_path: Path, model_file: str) -> None:
    directory = save_card(tmp_path / "dense", INTEL)
    edit_card(directory, model_file=model_file)
    with pytest.raises(ModelError, match="not a model file of the card's own folder"):
        load_model(directory)


def test_a_link_out_of_the_folder_is_refused(tmp_path: Path) -> None:
    directory = save_card(tmp_path / "dense", INTEL)
    outside = tmp_path / "elsewhere.ubj"
    (directory / "model.ubj").rename(outside)
    (directory / "model.ubj").symlink_to(outside)
    with pytest.raises(ModelError, match="leads out of its folder"):
        load_model(directory)


def test_library_versions_warn_on_a_patch_and_refuse_another_scikit_learn(
    tmp_path: Path,
) -> None:
    xgb = save_card(tmp_path / "xgb", INTEL)
    here = str(installed_version("xgboost"))
    major, minor, *_ = here.split(".")
    edit_card(xgb, library_versions={"xgboost": f"{major}.{minor}.999"})
    with pytest.warns(LibraryVersionWarning, match=f"saved with xgboost {major}.{minor}.999"):
        load_model(xgb)
    ridge = save_card(tmp_path / "ridge", INTEL, regressor="ridge")
    sklearn = str(installed_version("scikit-learn"))
    major, minor, *_ = sklearn.split(".")
    edit_card(ridge, library_versions={"scikit-learn": f"{major}.{minor}.999"})
    with pytest.warns(LibraryVersionWarning, match="scikit-learn"):
        load_model(ridge)
    edit_card(ridge, library_versions={"scikit-learn": f"{int(major) + 1}.0.0"})
    with pytest.raises(ModelError, match="only read by the version that saved it"):
        load_model(ridge)


def test_the_estimator_loads_foreign_models_only_on_purpose(workspace: Workspace) -> None:
    save_card(workspace.model_dir(ort_target_id(INTEL), "dense"), INTEL)
    amd = MachineTarget(machine=AMD_AVX2)
    with pytest.raises(OtherMachineError, match="there is no trained model of this machine"):
        Estimator.load(workspace, amd)
    estimator = Estimator.load(workspace, amd, from_other_machine=ort_target_id(INTEL))
    assert set(estimator.models) == {LayerKind.DENSE}
    assert "used on purpose from another machine" in estimator.notes[0]
    assert set(Estimator.load(workspace, MachineTarget(machine=INTEL)).models) == {"dense"}


# -- migration of a workspace of old ids ----------------------------------------------------------
OLD_ID = "ort-cpu-t1-all"


def old_workspace(root: Path) -> tuple[Workspace, dict[str, Any]]:
    """A workspace as prmodel wrote it before ids named the hardware: this machine's rows,
    PR file, plots, models, calibration and plan under ``ort-cpu-t1-all``, and another
    machine's rows under the same old id."""
    ws = Workspace.at(root).create()
    here = get_target("cpu").fingerprint()
    layers = [LayerConfig.create("dense", channels=8, out_channels=n) for n in (8, 16, 24)]
    with MeasurementStore(ws.store_path) as store:
        for fingerprint in (here, FOREIGN):
            digest = store.register_target(OLD_ID, fingerprint)
            store.add_to_plan("pr-dense", OLD_ID, digest, [x.key for x in layers])
            for layer in layers:
                store.record(
                    Measurement(
                        layer=layer, target_id=OLD_ID, fingerprint_hash=digest, latency_us=5.0
                    )
                )
    steps = (ParameterSteps(LayerKind.DENSE, "out_channels", True, period=16),)
    old_metadata = {"fingerprint_hash": fingerprint_hash(here), "plan_file": "x"}
    RepresentativeSet(OLD_ID, steps, old_metadata).save(ws.representatives_path(OLD_ID))
    (ws.plots_dir(OLD_ID) / "dense.png").parent.mkdir(parents=True)
    (ws.plots_dir(OLD_ID) / "dense.png").write_bytes(b"png")
    model_dir = ws.model_dir(OLD_ID, "dense")
    save_model(
        fitted("ridge", n=60),
        model_dir,
        target_id=OLD_ID,
        fingerprint_hash=fingerprint_hash(here),
        fingerprint=here,
    )
    calibration = {"target_id": OLD_ID, "notes": {"models": {}}}
    (model_dir.parent / "calibration.json").write_text(json.dumps(calibration))
    save_plans(load_plans_from_layers(), ws.sweeps_dir / f"pr-{OLD_ID}.yaml")
    return ws, here


def test_an_old_workspace_is_recognised_and_migrated(tmp_path: Path) -> None:
    ws, here = old_workspace(tmp_path / "ws")
    cpu = get_target("cpu")
    new_id, foreign_id = cpu.target_id, ort_target_id(FOREIGN)
    with pytest.raises(OldTargetIdError, match="run `prmodel migrate -w "):
        representatives_for(cpu, ws)
    with pytest.raises(OldTargetIdError, match="old id of this machine's target"):
        Estimator.load(ws, cpu)
    with MeasurementStore(ws.store_path) as store, pytest.raises(OldTargetIdError, match="3 "):
        run_sweep([LayerConfig.create("dense", channels=8, out_channels=8)], cpu, store=store)

    report = migrate_workspace(ws, cpu)
    renamed = {(r.what, r.new, r.this_machine, r.rows) for r in report.renamed}
    assert ("store", new_id, True, 3) in renamed
    assert ("store", foreign_id, False, 3) in renamed  # another machine's rows: its own id
    assert ("PR file", f"representatives/{new_id}.yaml", True, 0) in renamed
    assert ("plots", f"representatives/{new_id}", True, 0) in renamed
    assert ("models", f"trained_models/{new_id}", True, 0) in renamed
    assert ("plan file", f"sweeps/pr-{new_id}.yaml", True, 0) in renamed

    with MeasurementStore(ws.store_path) as store:
        assert set(store.targets()["target_id"]) == {new_id, foreign_id}
        assert len(store.measured_keys(new_id, fingerprint_hash(here))) == 3
        assert store.plan_names(target_id=new_id) == ["pr-dense"]
    prs = representatives_for(cpu, ws)
    assert prs.representatives.target_id == new_id and prs.warnings == ()
    assert prs.representatives.metadata["fingerprint"] == here
    assert (ws.plots_dir(new_id) / "dense.png").is_file()
    assert set(load_models(ws, new_id, running=here)) == {LayerKind.DENSE}
    calibration = json.loads((ws.models_dir / new_id / "calibration.json").read_text())
    assert calibration["target_id"] == new_id and calibration["notes"]["fingerprint"] == here
    assert not any(p.name.startswith(OLD_ID) for p in ws.root.rglob("*"))
    assert migrate_workspace(ws, cpu).renamed == ()  # twice: nothing more to do


def test_cli_migrate_says_what_it_renamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws, _ = old_workspace(tmp_path / "ws")
    assert run_main(monkeypatch, "migrate", "-w", str(ws.root), "--dry-run") == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"would rename PR file representatives/{OLD_ID}.yaml" in out
    assert ws.representatives_path(OLD_ID).is_file()  # a dry run renames nothing
    assert run_main(monkeypatch, "migrate", "-w", str(ws.root)) == 0
    captured = capsys.readouterr()
    assert "renamed store ort-cpu-t1-all -> " in " ".join(captured.out.split())
    assert "made on another machine" in " ".join(captured.err.split())
    assert not ws.representatives_path(OLD_ID).exists()


def test_simulator_configurations_are_machines_too(tmp_path: Path) -> None:
    analytic, faster = AnalyticTarget(), AnalyticTarget(gmacs=50.0)
    assert analytic.target_id == faster.target_id  # same blocking, same id
    with pytest.raises(OtherMachineError, match=r"gmacs 100.0.*the running target is .*gmacs 50"):
        check_recorded("m", analytic.fingerprint(), faster.fingerprint(), verb="trained")
