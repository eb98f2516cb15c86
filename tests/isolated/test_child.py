"""The child entry point: the replay report, the predict exchange, errors as one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tiffin import errors
from tiffin.isolated import child
from tiffin.isolated.run import reported_error
from tiffin.schema import typed_json


def test_replay_examples_matches_the_recorded_output(packed_iris: Path) -> None:
    result = child.replay_examples(str(packed_iris), 0.0, 0.0)
    assert result["match"] is True and result["difference"] is None
    assert (result["rtol"], result["atol"]) == (0.0, 0.0)
    assert isinstance(result["load_seconds"], float) and isinstance(result["predicted_at"], float)
    assert result["predict_seconds"] >= 0  # type: ignore[operator]


def test_main_replays_and_prints_one_line(
    packed_iris: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert child.main(["examples", str(packed_iris), "1e-3", "1e-3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("TIFFIN-REPLAY ")
    report = json.loads(lines[0][len("TIFFIN-REPLAY ") :])
    assert report["match"] is True and report["rtol"] == 1e-3


def test_main_predicts_through_the_example_codec(
    tmp_path: Path, packed_iris: Path, iris_pipeline: tuple[Any, np.ndarray]
) -> None:
    model, X = iris_pipeline
    (tmp_path / "in.json").write_bytes(typed_json.dumps(X[:7]))
    argv = ["predict", str(packed_iris), str(tmp_path / "in.json"), str(tmp_path / "out.json")]
    assert child.main(argv) == 0
    got = typed_json.loads((tmp_path / "out.json").read_bytes())
    assert np.asarray(got).tolist() == model.predict(X[:7]).tolist()


def test_a_tiffin_error_is_one_line_the_parent_reads_back(
    tmp_path: Path, packed_iris: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.json").write_bytes(typed_json.dumps(np.zeros((1, 2))))
    argv = ["predict", str(packed_iris), str(tmp_path / "in.json"), str(tmp_path / "out.json")]
    assert child.main(argv) == 3
    err = capsys.readouterr().err
    assert err.startswith(child.ERROR_PREFIX) and err.count("\n") == 1
    exc = reported_error(err)
    assert isinstance(exc, errors.SignatureError) and "expects shape" in exc.message
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize(
    "argv", [[], ["examples"], ["examples", "p", "1e-6"], ["predict", "p", "in"], ["serve", "p"]]
)
def test_other_command_lines_get_the_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert child.main(argv) == 2
    assert capsys.readouterr().err.startswith("usage: python -m tiffin.isolated.child examples")
