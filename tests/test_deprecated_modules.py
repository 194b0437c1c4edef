"""The old module paths (renamed in the "kernel means three things" clean-up) still
import, warn once with DeprecationWarning, and give the new modules' objects."""

import importlib
import subprocess
import sys

import pytest

RENAMED = [
    ("structmat.ssm.kernels", "structmat.ssm.structured"),
    ("structmat.ssm.cauchy_kernel", "structmat.ssm.nplr_kernel"),
    ("structmat.rope.kernel", "structmat.rope.rotation"),
]


@pytest.mark.parametrize(("old", "new"), RENAMED)
def test_old_path_warns_and_gives_the_same_objects(old: str, new: str) -> None:
    sys.modules.pop(old, None)  # a cached import would not warn again
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated: import from {new}"):
        alias = importlib.import_module(old)
    target = importlib.import_module(new)
    assert alias.__all__ == target.__all__
    for name in target.__all__:
        assert getattr(alias, name) is getattr(target, name)


def test_package_never_imports_the_old_paths() -> None:
    code = "import structmat, structmat.ssm, structmat.rope, structmat.attention, structmat.models"
    subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code], check=True)
