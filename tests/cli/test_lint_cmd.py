"""``tiffin lint``: findings as text or JSON; errors (or, with --strict, any finding) exit 10."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli._run import tiffin
from tiffin._lint import has_errors, lint


def test_lint_agrees_with_the_library(packed_iris: Path, tmp_path: Path) -> None:
    assert lint(packed_iris) == []
    proc = tiffin("lint", str(packed_iris))
    assert (proc.returncode, proc.stdout) == (0, "no findings\n")
    assert tiffin("lint", str(packed_iris), "--strict").returncode == 0
    # a data file inside the package is a finding
    import shutil

    shutil.copytree(packed_iris, tmp_path / "copy")
    (tmp_path / "copy" / "artifacts" / "train.csv").write_text("a,b\n1,2\n")
    findings = lint(tmp_path / "copy")
    assert findings
    proc = tiffin("lint", str(tmp_path / "copy"))
    assert proc.returncode == (10 if has_errors(findings) else 0), proc.stderr
    assert proc.stdout == "\n".join(f.render() for f in findings) + "\n0 error(s), 1 warning(s)\n"
    proc = tiffin("lint", str(tmp_path / "copy"), "--json")
    assert [f["rule"] for f in json.loads(proc.stdout)] == [f.rule for f in findings]
    assert tiffin("lint", str(tmp_path / "copy"), "--strict").returncode == 10


def test_a_missing_package(tmp_path: Path) -> None:
    proc = tiffin("lint", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
