"""SIGKILL at random points while packing: the destination is always a whole package.

Each trial replaces a package with a new one in a child process and kills the child at
a random moment. Afterwards the destination must verify and be either the old or the
new package; the next pack removes the dead writer's temporary folder.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import tiffin
from tiffin.atomic import clean_stale
from tiffin.integrity import verify_tree

TRIALS = 50

PACKER = textwrap.dedent(
    """
    import sys, numpy as np, tiffin
    from sklearn.linear_model import LogisticRegression
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)); y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    version = sys.argv[2]
    print("START", flush=True)
    tiffin.pack(model, sys.argv[1], name="crash", version=version, example=X[:3], force=True)
    print("DONE", flush=True)
    """
)


def _pack(dest: Path, version: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PACKER, str(dest), version], cwd=cwd, capture_output=True, text=True
    )


def test_sigkill_never_leaves_a_partial_package(tmp_path: Path) -> None:
    rng = random.Random(1234)
    ref = tmp_path / "ref"
    ref.mkdir()
    assert _pack(ref / "old", "1", tmp_path).returncode == 0
    assert _pack(ref / "new", "2", tmp_path).returncode == 0
    # How long a pack takes after START: kills are spread over that whole window.
    timer = subprocess.Popen([sys.executable, "-c", PACKER, str(ref / "timed"), "2"], cwd=tmp_path,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert timer.stdout is not None and timer.stdout.readline().strip() == "START"
    started = time.monotonic()
    assert timer.stdout.readline().strip() == "DONE"
    window = (time.monotonic() - started) * 1.3
    timer.wait()
    timer.stdout.close()
    old_digest = tiffin.inspect(ref / "old").digest
    new_digest = tiffin.inspect(ref / "new").digest
    outcomes = {"old": 0, "new": 0}
    parallel = 4
    trials = []
    for i in range(TRIALS):
        folder = tmp_path / f"trial-{i}"
        folder.mkdir()
        shutil.copytree(ref / "old", folder / "pkg")
        trials.append(folder)
    for start in range(0, TRIALS, parallel):
        batch = trials[start : start + parallel]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", PACKER, str(f / "pkg"), "2"],
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            for f in batch
        ]
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "START"
        began = time.monotonic()
        for proc, delay in sorted(
            zip(procs, [rng.uniform(0, window) for _ in procs]), key=lambda t: t[1]
        ):
            time.sleep(max(0.0, delay - (time.monotonic() - began)))
            proc.send_signal(signal.SIGKILL)
        for proc in procs:
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
    for folder in trials:
        manifest = verify_tree(folder / "pkg")  # a whole package, never part of one
        assert manifest.digest in (old_digest, new_digest)
        outcomes["old" if manifest.digest == old_digest else "new"] += 1
        clean_stale(folder, "pkg")  # what the next pack does first
        leftovers = [p.name for p in folder.iterdir() if ".tiffin-tmp-" in p.name]
        assert leftovers == []
    assert sum(outcomes.values()) == TRIALS
    print(f"crash trials: {TRIALS} run, 0 partial packages, outcomes {outcomes}")


def test_next_pack_cleans_dead_writers_temp_folders(tmp_path: Path, iris_pipeline: tuple) -> None:  # type: ignore[type-arg]
    model, X = iris_pipeline
    stale = tmp_path / ".out.tiffin-tmp-999999999-deadbeef"
    stale.mkdir()
    (stale / "half.bin").write_bytes(b"x")
    live = tmp_path / f".out.tiffin-tmp-{os.getpid()}-cafecafe"
    live.mkdir()
    tiffin.pack(model, tmp_path / "out", name="iris", version="1", example=X[:2])
    assert not stale.exists()
    assert live.exists()  # a running writer's folder is left alone


CONCURRENT = textwrap.dedent(
    """
    import sys, numpy as np, tiffin
    from sklearn.linear_model import LogisticRegression
    X = np.random.default_rng(0).normal(size=(40, 5)); y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    try:
        tiffin.pack(model, sys.argv[1], name="race", version="1", example=X[:3])
        print("DONE")
    except tiffin.ConflictError as exc:
        print("CONFLICT", exc.message)
    """
)


def test_concurrent_packs_one_wins(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(tmp_path / "pkg")],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    outs = [out for out, _ in results]
    done = [o for o in outs if o.startswith("DONE")]
    conflict = [o for o in outs if o.startswith("CONFLICT")]
    assert len(done) == 1 and len(conflict) == 1, results
    assert "another process is writing" in conflict[0] or "already exists" in conflict[0]
    verify_tree(tmp_path / "pkg")


def test_full_disk_gives_clean_error_and_no_package(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(small)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        src = tmp_path / "m.py"
        src.write_text(
            "class M:\n    def load(self, c):\n        pass\n    def predict(self, x):\n        return x\n"
        )
        big = tmp_path / "weights.json"
        big.write_text("[" + ",".join(["0.5"] * 200_000) + "]")
        with pytest.raises(tiffin.TiffinError, match="disk is full"):
            import numpy as np

            tiffin.pack(f"{src}:M", small / "pkg", name="m", version="1", example=np.ones((1, 2)),
                        artifacts={"weights": big})  # fmt: skip
        assert [p.name for p in small.iterdir() if not p.name.endswith(".tiffin-lock")] == []
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)
