"""``tiffin verify``: the report as text or JSON, exit 10 when a step failed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli._run import tiffin


def test_verify_in_the_current_interpreter(packed_iris: Path) -> None:
    proc = tiffin("verify", str(packed_iris), "--env", "current")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verified" in proc.stdout
    proc = tiffin("verify", str(packed_iris), "--env", "current", "--json", "--atol", "0.5")
    data = json.loads(proc.stdout)
    assert data["ok"] is True and data["replay"]["atol"] == 0.5
    assert [s["name"] for s in data["steps"]] == ["integrity", "environment", "replay"]


def test_a_failed_step_exits_10(packed_iris: Path) -> None:
    (packed_iris / "examples" / "output.json").write_text("[]")
    proc = tiffin("verify", str(packed_iris), "--env", "current", "--json")
    assert proc.returncode == 10
    data = json.loads(proc.stdout)
    assert data["failed"] == "integrity" and "examples/output.json" in data["error"]
    proc = tiffin("verify", str(packed_iris), "--env", "docker")
    assert proc.returncode == 2 and "'docker' is not one of" in proc.stderr
