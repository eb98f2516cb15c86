"""Which of the user's files go into code/, and how they are copied."""

from __future__ import annotations

from pathlib import Path

import pytest

import tiffin
from tiffin.logic.sources import copy_code, local_modules, resolve_source


def test_siblings_the_class_file_imports_come_along_transitively(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text("import helpers\nfrom pkg import sub\nimport numpy\n")
    (tmp_path / "helpers.py").write_text("from . import deeper\n")
    (tmp_path / "deeper.py").write_text("X = 1\n")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "sub.py").write_text("import unrelated_installed_name\n")
    (tmp_path / "unused.py").write_text("Y = 2\n")
    found = local_modules(tmp_path / "model.py")
    assert [p.name for p in found] == ["deeper.py", "helpers.py", "pkg"]


def test_copy_code_copies_files_and_folders_without_bytecode(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "pkg" / "__pycache__").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    (src / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (src / "one.py").write_text("A = 1\n")
    dest = tmp_path / "code"
    dest.mkdir()
    names = copy_code([src / "one.py", src / "pkg"], dest)
    assert sorted(names) == ["one.py", "pkg"]
    assert (dest / "one.py").read_text() == "A = 1\n"
    assert not any(p.suffix == ".pyc" for p in dest.rglob("*"))


@pytest.mark.parametrize("spec", ["nowhere.py:Model", "{file}:not-a-name", "{file}"])
def test_a_class_source_that_cannot_be_found_is_a_usage_error(tmp_path: Path, spec: str) -> None:
    file = tmp_path / "m.py"
    file.write_text("class Model: ...\n")
    with pytest.raises(tiffin.UsageError, match="cannot find class source"):
        resolve_source(spec.format(file=file))
