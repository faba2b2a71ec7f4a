"""Tests of prmodel._compat: scripts written against the flat 0.1 module paths keep working."""

from __future__ import annotations

import importlib
import sys

import pytest

import prmodel
from prmodel._compat import OLD_MODULES


def test_the_readme_script_of_0_1_still_imports_the_estimator() -> None:
    sys.modules.pop("prmodel.estimator", None)
    with pytest.warns(DeprecationWarning, match=r"prmodel\.estimator moved to"):
        from prmodel.estimator import Estimator  # type: ignore[import-not-found]
    assert Estimator is prmodel.Estimator


@pytest.mark.parametrize("old", sorted(OLD_MODULES))
def test_every_old_module_serves_a_name_from_its_new_home(old: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning):
        alias = importlib.import_module(old)
    names = dir(alias)
    assert names, old
    home = importlib.import_module(OLD_MODULES[old][0])
    public = next(n for n in sorted(vars(home)) if not n.startswith("_"))
    assert getattr(alias, public) is getattr(home, public)


def test_a_name_that_never_existed_is_an_attribute_error_naming_the_new_homes() -> None:
    alias = importlib.import_module("prmodel.store")
    with pytest.raises(AttributeError, match=r"prmodel\.measure\.store"):
        _ = alias.no_such_name
