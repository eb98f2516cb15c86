"""Real `tiffin serve` processes on 127.0.0.1 for the server tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import tiffin

MULTI_SRC = textwrap.dedent(
    """
    import time
    import numpy as np


    class Multi:
        \"\"\"Takes FP32, INT64 and BYTES inputs; sleeps when asked to (for timeout tests).\"\"\"

        def load(self, context):
            self.calls = []

        def predict(self, inputs):
            s = inputs["s"]
            if any(v == "slow" for v in s):
                time.sleep(2.0)
            self.calls.append(len(s))
            return {
                "sum": inputs["x"].sum(axis=1).astype(np.float32),
                "n2": inputs["n"] * 2,
                "upper": np.array([v.upper() for v in s], dtype=object),
            }
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    root = tmp_path_factory.mktemp("serve-pkgs")
    X, y = load_iris(return_X_y=True)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    iris = tiffin.pack(clf, root / "iris-1", name="iris", version="1", example=X[:3]).path
    iris2 = tiffin.pack(
        clf, root / "iris-2", name="iris", version="2", example=X[:3], method="predict_proba"
    ).path
    src = root / "multi.py"
    src.write_text(MULTI_SRC)
    example = {
        "x": np.ones((2, 3), np.float32),
        "n": np.array([1, 2], np.int64),
        "s": np.array(["a", "b"], dtype=object),
    }
    multi = tiffin.pack(
        f"{src}:Multi", root / "multi-1", name="multi", version="1.0", example=example
    ).path
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    frame = pd.DataFrame(
        {"city": ["paris", "lyon", "nice", "paris"], "age": [20.0, 30.0, 40.0, 50.0]}
    )
    pipe = make_pipeline(
        ColumnTransformer(
            [("c", OneHotEncoder(handle_unknown="ignore"), ["city"])], remainder="passthrough"
        ),
        LogisticRegression(),
    ).fit(frame, [0, 1, 0, 1])
    table = tiffin.pack(
        pipe, root / "table-1", name="table", version="1", example=frame.head(2)
    ).path
    return {"iris": iris, "iris2": iris2, "multi": multi, "table": table, "root": root}


class Served:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)


def start(args: list[str]) -> Served:
    """A real ``tiffin serve`` process (one worker unless ``args`` say otherwise), ready."""
    port = free_port()
    workers = [] if "--workers" in args else ["--workers", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiffin.cli", "serve", *args, *workers, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return Served(proc, port)
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("server did not become ready")


def stop(served: Served) -> None:
    if served.proc.poll() is None:
        served.proc.terminate()
        try:
            served.proc.wait(15)
        except subprocess.TimeoutExpired:
            served.proc.kill()
    for stream in (served.proc.stdout, served.proc.stderr):
        if stream:
            stream.close()


@pytest.fixture(scope="session")
def server(packages: dict[str, Path]) -> Iterator[Served]:
    served = start([str(packages["iris"]), str(packages["iris2"]), str(packages["multi"])])
    yield served
    stop(served)


@pytest.fixture(scope="session")
def strict_server(packages: dict[str, Path]) -> Iterator[Served]:
    served = start(
        [str(packages["multi"]), "--timeout", "0.5", "--queue-size", "2", "--max-body", "100000",
         "--token", "s3cret", "--no-batching"]
    )  # fmt: skip
    yield served
    stop(served)
