"""``tiffin archive`` and ``tiffin unpack``."""

from __future__ import annotations

from pathlib import Path

import tiffin
from tests.cli._run import tiffin as run


def test_archive_and_unpack(packed_iris: Path, tmp_path: Path) -> None:
    file = tmp_path / "iris.tiffin"
    proc = run("archive", str(packed_iris), "-o", str(file))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"wrote {file} ({file.stat().st_size:,} bytes)\n"
    plain = tmp_path / "iris.tar"
    assert run("archive", str(packed_iris), "-o", str(plain), "--no-compress").returncode == 0
    assert plain.stat().st_size > file.stat().st_size  # zstd unless told otherwise
    proc = run("archive", str(packed_iris), "-o", str(file))
    assert proc.returncode == 12 and "already exists" in proc.stderr
    assert run("archive", str(packed_iris), "-o", str(file), "--force").returncode == 0
    out = tmp_path / "out"
    proc = run("unpack", str(file), str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"unpacked {file} -> ")
    assert tiffin.inspect(out).digest == tiffin.inspect(packed_iris).digest


def test_unpack_stops_at_max_bytes(packed_iris: Path, tmp_path: Path) -> None:
    file = tmp_path / "iris.tiffin"
    run("archive", str(packed_iris), "-o", str(file))
    proc = run("unpack", str(file), str(tmp_path / "out"), "--max-bytes", "100")
    assert proc.returncode == 13, proc.stderr
    assert proc.stderr.startswith("error: ") and not (tmp_path / "out").exists()
