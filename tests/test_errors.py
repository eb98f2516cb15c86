"""The error tree: one stable exit code per class, documented where users read them."""

from __future__ import annotations

import re
from pathlib import Path

import tiffin
from tiffin import errors
from tiffin.errors import EXIT_CODES, TiffinError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_error_class_has_its_own_exit_code() -> None:
    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
    assert EXIT_CODES["TiffinError"] == 1 and min(EXIT_CODES.values()) == 1


def test_every_public_error_is_in_the_table_and_exported() -> None:
    classes = {
        name for name, obj in vars(errors).items()
        if isinstance(obj, type) and issubclass(obj, TiffinError)
    }  # fmt: skip
    assert classes == set(EXIT_CODES)
    assert classes <= set(tiffin.__all__)


def test_the_readme_table_says_what_the_classes_say() -> None:
    documented = {
        name: int(code)
        for code, name in re.findall(r"\| (\d+) \| (\w+Error)", README.read_text(encoding="utf-8"))
    }
    assert documented == EXIT_CODES


def test_an_error_says_what_where_and_how_to_fix() -> None:
    exc = errors.IntegrityError("x changed", where="pkg/x", fix="pack it again")
    assert str(exc) == "x changed (in pkg/x)\n  fix: pack it again"
    assert exc.exit_code == 4
