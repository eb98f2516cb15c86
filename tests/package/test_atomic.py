"""SIGKILL at random points while packing: the destination is always a whole package.

A driver process imports tiffin and scikit-learn once and trains a tiny model; each trial
forks a child that replaces a package with a new one and is killed with SIGKILL at a
random moment spread over the whole pack (forking keeps the 50+ trials to seconds, and
the child is a real process killed mid-write). Afterwards the destination must verify
and be either the old or the new package; the next pack removes the dead writer's
temporary folder.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import IO

import pytest

import tiffin
from tiffin.package.atomic import TMP_MARK, clean_stale
from tiffin.package.integrity import verify_tree

TRIALS = 60

DRIVER = textwrap.dedent(
    """
    import os, sys, time
    import numpy as np, tiffin
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5)); y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)

    def pack(dest, version):
        tiffin.pack(model, dest, name="crash", version=version, example=X[:3], force=True)

    pack(os.path.join(sys.argv[1], "warm"), "0")  # every lazy import done before forking
    print("READY", flush=True)
    for line in sys.stdin:
        mode, dest, version = line.split()
        began = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            try:
                pack(dest, version)
            except BaseException as exc:
                print("ERROR", repr(exc), file=sys.stderr, flush=True)
                os._exit(1)
            os._exit(0)
        print("PID", pid, flush=True)
        if mode == "kill":
            # not reaped until the test has sent its SIGKILL, so the PID cannot be reused
            sys.stdin.readline()
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
        code = -1 if killed else os.WEXITSTATUS(status)
        print("EXIT", code, time.perf_counter() - began, flush=True)
    """
)


class Driver:
    """The forking packer: ``start(dest, version)`` returns the child's PID."""

    def __init__(self, workdir: Path) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(workdir)],
            cwd=workdir, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._line() == ["READY"]

    def _line(self) -> list[str]:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        line = out.readline()
        assert line, "the driver died"
        return line.split()

    def _send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def start(self, dest: Path, version: str, mode: str = "kill") -> int:
        self._send(f"{mode} {dest} {version}")
        kind, pid = self._line()
        assert kind == "PID"
        return int(pid)

    def wait(self) -> tuple[int, float]:
        """(exit code, -1 when SIGKILLed; seconds until reaped)."""
        kind, code, seconds = self._line()
        assert kind == "EXIT"
        return int(code), float(seconds)

    def reap(self) -> tuple[int, float]:
        self._send("reap")
        return self.wait()

    def pack(self, dest: Path, version: str) -> float:
        self.start(dest, version, mode="wait")
        code, seconds = self.wait()
        assert code == 0, f"pack of {dest} failed"
        return seconds

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def driver(tmp_path: Path) -> object:
    d = Driver(tmp_path)
    yield d
    d.close()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TMP_MARK in p.name)


def test_sigkill_never_leaves_a_partial_package(
    tmp_path: Path, driver: Driver, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(1234)
    ref = tmp_path / "ref"
    ref.mkdir()
    driver.pack(ref / "old", "1")
    driver.pack(ref / "new", "2")
    old_digest = tiffin.inspect(ref / "old").digest
    new_digest = tiffin.inspect(ref / "new").digest
    # How long replacing a package takes: kills are spread over that whole window.
    timings = []
    for i in range(3):
        shutil.copytree(ref / "old", ref / f"timed-{i}")
        timings.append(driver.pack(ref / f"timed-{i}", "2"))
    window = min(timings) * 1.1  # the machine may be busy: aim inside the fastest pack
    outcomes = {"old": 0, "new": 0}
    killed = mid_write = 0
    for i in range(TRIALS):
        folder = tmp_path / f"trial-{i}"
        folder.mkdir()
        shutil.copytree(ref / "old", folder / "pkg")
        pid = driver.start(folder / "pkg", "2")
        time.sleep(rng.uniform(0, window))
        os.kill(pid, signal.SIGKILL)  # a finished child is a zombie until reaped: still ours
        code, _ = driver.reap()
        killed += code == -1
        manifest = verify_tree(folder / "pkg")  # a whole package, never part of one
        assert manifest.digest in (old_digest, new_digest), f"trial {i}"
        outcomes["old" if manifest.digest == old_digest else "new"] += 1
        if _leftovers(folder):
            mid_write += 1
            if mid_write <= 10:
                # the next pack removes what the dead writer left, and succeeds
                driver.pack(folder / "pkg", "2")
                assert tiffin.inspect(folder / "pkg").digest == new_digest
            else:
                clean_stale(folder, "pkg")  # what the next pack does first
            assert _leftovers(folder) == []
    assert sum(outcomes.values()) == TRIALS
    assert killed >= TRIALS // 3  # the kills landed while packing, not after it
    with capsys.disabled():
        print(
            f"\ncrash trials: {TRIALS} run, {killed} killed mid-pack ({mid_write} with a temp "
            f"folder left), 0 partial packages; outcomes {outcomes}; pack window "
            f"{statistics.median(timings) * 1000:.0f} ms"
        )


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
    print("READY", flush=True)
    sys.stdin.readline()  # both start packing at the same moment
    try:
        tiffin.pack(model, sys.argv[1], name="race", version=sys.argv[2], example=X[:3])
        print("DONE", flush=True)
    except tiffin.ConflictError as exc:
        print("CONFLICT", exc.message, flush=True)
    """
)


def test_concurrent_packs_one_wins(tmp_path: Path) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT, str(tmp_path / "pkg"), str(i)],
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "READY"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=120) for p in procs]
    outs = [out for out, _ in results]
    done = [o for o in outs if o.startswith("DONE")]
    conflict = [o for o in outs if o.startswith("CONFLICT")]
    assert len(done) == 1 and len(conflict) == 1, results
    assert "another process is writing" in conflict[0] or "already exists" in conflict[0]
    winner = "1" if outs[0].startswith("DONE") else "2"
    assert verify_tree(tmp_path / "pkg").version == winner  # the winner's package, whole
    assert _leftovers(tmp_path) == []


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


FALLBACK = textwrap.dedent(
    """
    import os, signal, sys, numpy as np, tiffin, tiffin.package.atomic as atomic
    from sklearn.linear_model import LogisticRegression
    X = np.random.default_rng(0).normal(size=(40, 5)); y = (X[:, 0] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    atomic._exchange = lambda a, b: False  # a filesystem without RENAME_EXCHANGE
    real_rename = os.rename

    def rename(src, dst):
        real_rename(src, dst)
        if "-old-" in str(dst):  # the old package is aside, the new one not yet in
            os.kill(os.getpid(), signal.SIGKILL)

    os.rename = rename
    tiffin.pack(model, sys.argv[1], name="crash", version="2", example=X[:3], force=True)
    """
)


def test_killed_inside_the_rename_fallback_the_old_package_comes_back(
    packed_iris: Path, tmp_path: Path
) -> None:
    """Without RENAME_EXCHANGE, publish moves the old package aside, then the new one in.
    Killed in between, the destination was missing and the next pack deleted the old
    package as a stale temp folder: neither old nor new. Now it is moved back."""
    old = tiffin.inspect(packed_iris).digest
    run = subprocess.run([sys.executable, "-c", FALLBACK, str(packed_iris)], capture_output=True)
    assert run.returncode == -signal.SIGKILL, run.stderr[-500:]
    assert not packed_iris.exists()  # the window the kill landed in
    clean_stale(packed_iris.parent, packed_iris.name)  # what the next pack does first
    assert verify_tree(packed_iris).digest == old
    assert _leftovers(packed_iris.parent) == []
