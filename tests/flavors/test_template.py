"""The flavor template (docs/flavor_template.py) and the checklist of docs/contributing.md.

The checklist says a new framework is one module, one test file and one line in the
registry. This test does exactly that to a copy of the source tree (the template copied
in as ``flavors/tinylinear.py``, one line added to ``FLAVORS``, nothing else touched)
and runs the round trip a new flavor's own test file would: pack from the object and
from a file, load in a fresh process, predict, and a damaged file refused before the
framework's reader sees it. Copy ``ROUND_TRIP`` for a new flavor's tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FRAMEWORK = textwrap.dedent(
    """
    import numpy as np


    class LinearModel:
        def __init__(self, coef, intercept):
            self.coef, self.intercept = list(coef), float(intercept)

        def predict(self, X):
            return np.asarray(X, dtype=np.float64) @ np.asarray(self.coef) + self.intercept
    """
)

ROUND_TRIP = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tiffin
    from tiffin import flavors
    from tiffin.security.sniff import sniff
    from tinylinear import LinearModel

    work = sys.argv[1]
    model = LinearModel([1.0, 2.0], 3.0)
    x = np.array([[1.0, 1.0], [2.0, 0.5]])
    pkg = tiffin.pack(model, f"{work}/obj", name="lin", version="1", example=x)
    assert pkg.manifest.flavor == "tinylinear", pkg.manifest.flavor
    assert tiffin.load(pkg.path).predict(x).tolist() == [6.0, 6.0]

    artifact = pkg.path / "artifacts" / "model.tinylin"
    again = tiffin.pack(str(artifact), f"{work}/file", name="lin", version="1", example=x)
    assert again.digest == pkg.digest  # the file packs to the very same package

    broken = f"{work}/broken.tinylin"
    open(broken, "wb").write(artifact.read_bytes()[:-8])
    verdict = sniff(broken, formats=flavors.byte_formats())
    assert verdict.carries_code and "header says 2 weights" in verdict.detail, verdict
    try:
        tiffin.pack(broken, f"{work}/bad", name="lin", version="1", example=x)
    except tiffin.FlavorError as exc:
        assert "not a tinylinear model" in str(exc)
    else:
        raise AssertionError("a damaged file was packed")
    print("ROUND-TRIP-OK", pkg.path)
    """
)


@pytest.fixture()
def tree_with_template(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "src" / "tiffin", src / "tiffin", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "docs" / "flavor_template.py", src / "tiffin" / "flavors" / "tinylinear.py")
    registry = src / "tiffin" / "flavors" / "__init__.py"
    before = registry.read_text(encoding="utf-8")
    after = before.replace('    "custom",\n', '    "tinylinear",\n    "custom",\n', 1)
    assert len(after.splitlines()) == len(before.splitlines()) + 1  # one line, as promised
    registry.write_text(after, encoding="utf-8")
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "tinylinear.py").write_text(FRAMEWORK, encoding="utf-8")
    return tmp_path


def _run(tmp: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp / 'src'}{os.pathsep}{tmp / 'fw'}",
        "TIFFIN_ENV_CAPTURE": "off",  # the made-up framework is no installed distribution
    }
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=tmp,
        timeout=300,
    )  # fmt: skip


def test_the_template_is_a_working_flavor_after_the_checklist(tree_with_template: Path) -> None:
    packed = _run(tree_with_template, ROUND_TRIP, str(tree_with_template))
    assert packed.returncode == 0, packed.stderr
    pkg = packed.stdout.split("ROUND-TRIP-OK ", 1)[1].strip()
    fresh = _run(
        tree_with_template,
        "import sys, tiffin; print(tiffin.load(sys.argv[1]).predict([[0.0, 1.0]]).tolist())",
        pkg,
    )
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.strip() == "[5.0]"


def test_without_its_registry_line_the_template_is_not_used(tmp_path: Path) -> None:
    """The registry line is what makes a flavor known: the checklist's third step is real."""
    src = tmp_path / "src"
    shutil.copytree(
        REPO / "src" / "tiffin", src / "tiffin", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "docs" / "flavor_template.py", src / "tiffin" / "flavors" / "tinylinear.py")
    (tmp_path / "fw").mkdir()
    (tmp_path / "fw" / "tinylinear.py").write_text(FRAMEWORK, encoding="utf-8")
    code = (
        "import tiffin; from tinylinear import LinearModel\n"
        "tiffin.pack(LinearModel([1.0], 0.0), 'out', name='l', version='1', example=[[1.0]])\n"
    )
    run = _run(tmp_path, code)
    # unknown to every registered flavor, it falls to the pickle flavor, refused by default
    assert run.returncode != 0 and "UnsafeArtifactError" in run.stderr, run.stderr
