"""code/ imported as a namespace of its own: same-named modules of two packages never mix."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import tiffin
from tiffin.logic.namespace import PREFIX, forgetting_imports_from, import_from_package


def _code(folder: Path, value: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "utils.py").write_text(f"VALUE = {value}\n")
    (folder / "model.py").write_text("import utils\n\ndef value():\n    return utils.VALUE\n")
    return folder


def test_two_code_folders_with_the_same_module_names_stay_apart(tmp_path: Path) -> None:
    a = import_from_package(_code(tmp_path / "a" / "code", 1), "model")
    b = import_from_package(_code(tmp_path / "b" / "code", 2), "model")
    assert (a.value(), b.value()) == (1, 2)
    assert a.__name__.startswith(PREFIX) and a.__name__ != b.__name__
    assert (
        "utils" not in sys.modules
        or sys.modules["utils"].__file__ is None
        or ("code" not in str(sys.modules["utils"].__file__))
    )


@pytest.mark.parametrize("module", ["../evil", "a/b", "", "x.-y"])
def test_a_module_name_that_leaves_code_is_refused(tmp_path: Path, module: str) -> None:
    with pytest.raises(tiffin.IntegrityError, match="not a module name inside code/"):
        import_from_package(_code(tmp_path / "code", 1), module)


def test_a_missing_module_is_a_flavor_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(tiffin.FlavorError, match="code/absent.py is missing"):
        import_from_package(_code(tmp_path / "code", 1), "absent")


def test_modules_imported_from_a_folder_are_forgotten_on_leaving(tmp_path: Path) -> None:
    folder = tmp_path / "pkg"
    folder.mkdir()
    (folder / "tiffin_probe_module.py").write_text("X = 1\n")
    with forgetting_imports_from(folder):
        sys.path.insert(0, str(folder))
        import tiffin_probe_module  # type: ignore[import-not-found]  # noqa: F401

        assert "tiffin_probe_module" in sys.modules
    assert "tiffin_probe_module" not in sys.modules
    assert str(folder) not in sys.path
