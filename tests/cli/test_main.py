"""``tiffin.cli`` itself: the lazy verb table, the help, and how a TiffinError is shown."""

from __future__ import annotations

import click
import pytest

from tests.cli._run import tiffin, tiffin_process
from tiffin import errors
from tiffin.cli import COMMANDS, LazyGroup, cli, fail


def test_help_lists_verbs_and_exit_codes() -> None:
    """Through ``python -m tiffin.cli``, as the console script runs it."""
    proc = tiffin_process("--help")
    assert proc.returncode == 0
    for verb in ("pack", "inspect", "predict", "build"):
        assert verb in proc.stdout
    assert "4  IntegrityError" in proc.stdout
    for name, code in errors.EXIT_CODES.items():
        assert f"{code:>3}  {name}" in proc.stdout


def test_every_verb_resolves_to_a_command() -> None:
    group = cli
    assert isinstance(group, LazyGroup)
    with click.Context(group) as ctx:
        assert group.list_commands(ctx) == sorted(COMMANDS)
        for name in COMMANDS:
            command = group.get_command(ctx, name)
            assert isinstance(command, click.Command), name
        assert group.get_command(ctx, "nonesuch") is None


def test_an_unknown_verb_is_a_usage_error() -> None:
    proc = tiffin("nonesuch")
    assert proc.returncode == 2
    assert "No such command 'nonesuch'" in proc.stderr


@pytest.mark.parametrize("no_color", ["", "1"])
def test_fail_shows_what_where_and_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, no_color: str
) -> None:
    monkeypatch.setenv("NO_COLOR", no_color)
    with pytest.raises(SystemExit) as info:
        fail(errors.IntegrityError("a.bin was changed", where="pkg/a.bin", fix="pack again"))
    assert info.value.code == 4
    out, err = capsys.readouterr()
    # captured output is no terminal: no colour codes either way
    assert (out, err) == ("", "error: a.bin was changed\n  where: pkg/a.bin\n  fix: pack again\n")
    with pytest.raises(SystemExit) as info:
        fail(errors.UsageError("bad"))
    assert info.value.code == 2 and capsys.readouterr().err == "error: bad\n"
