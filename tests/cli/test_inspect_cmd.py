"""``tiffin inspect``: the verified contents of a package, as text or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tests.cli._run import tiffin


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    proc = tiffin("inspect", str(tmp_path / "nope"))
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("error: ") and "no package folder" in proc.stderr


def test_tampered_package_exit_code(packed_iris: Path) -> None:
    (packed_iris / "schema.json").write_text("{}")
    proc = tiffin("inspect", str(packed_iris))
    assert proc.returncode == 4
    assert "schema.json was changed" in proc.stderr
    assert proc.stdout == ""


def test_files_and_json_agree_with_the_manifest(packed_iris: Path) -> None:
    manifest = json.loads((packed_iris / "tiffin.json").read_text())
    proc = tiffin("inspect", str(packed_iris), "--files")
    assert proc.returncode == 0, proc.stderr
    listed = proc.stdout.split("files:\n", 1)[1].splitlines()
    assert [line.split()[-1] for line in listed] == [f["path"] for f in manifest["files"]]
    assert [line.split()[0] for line in listed] == [f["sha256"][:12] for f in manifest["files"]]
    assert f"  files     {len(manifest['files'])} (" in proc.stdout
    data = json.loads(tiffin("inspect", str(packed_iris), "--json").stdout)
    assert data["manifest"]["digest"] == manifest["digest"]
    assert data["signature"]["inputs"][0]["shape"] == [-1, 4]
    # a dynamic axis is shown as *, a fixed one as its size
    assert "float64    [*, 4]" in proc.stdout


def test_inspect_why_shows_your_changes_and_the_lock(
    tmp_path: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    """--why once showed the requirements alone: not what the packer added or the lock."""
    from importlib.metadata import version

    model, X = iris_pipeline
    import tiffin as api

    extra = [f"+packaging=={version('packaging')}"]
    pkg = api.pack(model, tmp_path / "p", name="iris", version="1", example=X[:3], requirements=extra)  # fmt: skip
    proc = tiffin("inspect", str(pkg.path), "--why")
    assert proc.returncode == 0, proc.stderr
    assert "added by you: packaging" in proc.stdout
    assert "lock: none (packed with TIFFIN_ENV_CAPTURE=off" in proc.stdout  # as the tests pack
