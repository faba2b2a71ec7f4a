"""The target registry: spec strings to targets, plug-ins by dotted name, the listing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fake_targets import NoisyFakeTarget, SlowTarget

from prmodel.targets import TargetError, TargetInfo, get_target, list_targets, parse_target_spec
from prmodel.targets.analytic import AnalyticTarget
from prmodel.targets.onnxruntime.target import OnnxRuntimeTarget
from prmodel.targets.registry import BUILTIN_TARGETS, PROVIDER_TARGET, load_target_class
from prmodel.targets.scalesim import ScaleSimTarget


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("analytic", AnalyticTarget()),
        ("Analytic:block=8, lanes=4", AnalyticTarget(block=8, lanes=4)),
        ("scalesim:rows=8,cols=16", ScaleSimTarget(rows=8, cols=16)),
        ("cpu:threads=2", OnnxRuntimeTarget(threads=2)),
        ("fake_targets.SlowTarget:delay_ms=5", SlowTarget(delay_ms=5.0)),
    ],
)
def test_specs_name_a_class_and_its_options(spec: str, expected: object) -> None:
    assert get_target(spec) == expected


def test_a_plugin_class_gets_the_options_as_strings() -> None:
    target = get_target("fake_targets.NoisyFakeTarget:noise=0.5,delay-ms=2")
    assert isinstance(target, NoisyFakeTarget)
    assert (target.noise, target.delay_ms) == (0.5, 2.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module.Target", "cannot load target plugin 'no_such_module.Target'"),
        ("fake_targets.NoSuchClass", "cannot load target plugin 'fake_targets.NoSuchClass'"),
        ("fake_targets.WALL_OVERHEAD_US", "has no from_options(options) classmethod"),
        ("nosuchdevice", "unknown target 'nosuchdevice' (known: analytic, scalesim, "),
        ("analytic:block", "is not of the form key=value"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(TargetError) as raised:
        get_target(spec)
    assert message in str(raised.value)


def test_parse_target_spec_normalises_names_and_keys() -> None:
    assert parse_target_spec(" CPU : threads=2 , inter-threads=1 ,") == (
        "cpu",
        {"threads": "2", "inter_threads": "1"},
    )


def test_every_builtin_class_lists_itself() -> None:
    infos = list_targets()
    assert all(isinstance(info, TargetInfo) for info in infos)
    names = [info.name for info in infos]
    assert names[-len(BUILTIN_TARGETS) :] == list(BUILTIN_TARGETS)
    assert "cpu" in names and next(i for i in infos if i.name == "cpu").available
    for path in (PROVIDER_TARGET, *BUILTIN_TARGETS.values()):
        cls = load_target_class(path)
        assert callable(cls.from_options) and callable(cls.target_infos)
        assert callable(cls.hardware_profile)


def test_naming_the_analytic_target_does_not_load_onnx_runtime() -> None:
    code = (
        "import sys, prmodel; prmodel.get_target('analytic:block=8'); "
        "print(sorted(m for m in ('onnx', 'onnxruntime') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"
