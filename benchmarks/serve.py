"""Serving throughput and latency: tiffin against MLflow and against the model itself.

A bounded load generator (wrk, from Debian; an asyncio client when wrk is missing)
sends one-row requests from 1, 8 and 64 concurrent connections, for a 20-feature
scikit-learn pipeline and a PyTorch MLP. Side by side, in the same run:

- ceiling: the model's own predict on one row, in-process, one thread;
- tiffin serve, adaptive batching on (1 and 2 worker processes);
- tiffin serve --no-batching;
- mlflow models serve --env-manager local, on the same model (side venv; skipped if
  MLflow cannot be installed).

Prints a table (requests/s, p50, p99, errors, server RSS) and writes
bench-results/serve.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import side_venv, table, write_json

DURATION = int(os.environ.get("TIFFIN_BENCH_SECONDS", "5"))
CONCURRENCY = (1, 8, 64)

MLP_SRC = textwrap.dedent(
    """
    from torch import nn


    class MLP(nn.Module):
        def __init__(self, n_in=20, hidden=256, n_out=2):
            super().__init__()
            self.n_in, self.hidden, self.n_out = n_in, hidden, n_out
            self.net = nn.Sequential(
                nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                nn.Linear(hidden, n_out),
            )

        def forward(self, x):
            return self.net(x)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} never became ready")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (worker processes), in MB."""
    total = 0
    pids = [pid]
    try:
        children = subprocess.run(
            ["pgrep", "-P", str(pid)], capture_output=True, text=True
        ).stdout.split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, body: bytes, connections: int) -> dict[str, float]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("P50 %d\\nP99 %d\\n", latency:percentile(50), latency:percentile(99)))\n'
        "end\n"
    )
    threads = min(connections, 2)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{DURATION}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    script.unlink()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"P50 (\d+)", out).group(1)) / 1000  # type: ignore[union-attr]
    p99 = float(re.search(r"P99 (\d+)", out).group(1)) / 1000  # type: ignore[union-attr]
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(g) for g in m.groups())
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "errors": errors}


def run_server(
    argv: list[str], ready_url: str, url: str, body: bytes, env: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, **(env or {})}
    )
    try:
        wait_ready(ready_url, proc)
        wrk(url, body, 8)  # warm-up
        rows = []
        for c in CONCURRENCY:
            result = wrk(url, body, c)
            result["rss_mb"] = rss_mb(proc.pid)
            result["clients"] = c
            rows.append(result)
        return rows
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def ceiling(predict: Any, x: np.ndarray) -> dict[str, Any]:
    for _ in range(50):
        predict(x)
    times = []
    for _ in range(500):
        t = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - t)
    p50 = float(np.median(times))
    return {
        "clients": 1,
        "rps": 1 / p50,
        "p50_ms": p50 * 1000,
        "p99_ms": float(np.percentile(times, 99)) * 1000,
        "errors": 0,
        "rss_mb": 0.0,
    }


def main() -> None:
    if not shutil.which("wrk"):
        sys.exit("benchmarks/serve.py needs wrk (apt-get install wrk)")
    import torch
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import tiffin

    work = Path(tempfile.mkdtemp(prefix="tiffin-serve-bench-"))
    X, y = make_classification(n_samples=1000, n_features=20, random_state=0)
    sk = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    sk_pkg = tiffin.pack(sk, work / "sk", name="sk", version="1", example=X[:5]).path
    (work / "mlp_model.py").write_text(MLP_SRC)
    sys.path.insert(0, str(work))
    from mlp_model import MLP  # type: ignore[import-not-found]

    torch.manual_seed(0)
    mlp = MLP().eval()
    xf = X.astype(np.float32)
    mlp_pkg = tiffin.pack(mlp, work / "mlp", name="mlp", version="1", example=xf[:5]).path

    results: dict[str, list[dict[str, Any]]] = {}
    tiffin_cmd = [sys.executable, "-m", "tiffin.cli", "serve"]
    for model, pkg, dtype, row in (
        ("sklearn", sk_pkg, "FP64", X[0]),
        ("torch", mlp_pkg, "FP32", xf[0]),
    ):
        body = json.dumps(
            {
                "inputs": [
                    {"name": "input", "shape": [1, 20], "datatype": dtype, "data": row.tolist()}
                ]
            }
        ).encode()
        if model == "sklearn":
            results[f"{model}: in-process predict (ceiling)"] = [ceiling(sk.predict, X[:1])]
        else:
            with torch.inference_mode():
                t1 = torch.from_numpy(xf[:1])
                results[f"{model}: in-process predict (ceiling)"] = [ceiling(mlp, t1)]
        configs = [("tiffin, batching", []), ("tiffin, no batching", ["--no-batching"]),
                   ("tiffin, batching, 2 workers", ["--workers", "2"])]  # fmt: skip
        for label, extra in configs:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            results[f"{model}: {label}"] = run_server(
                [*tiffin_cmd, str(pkg), "--port", str(port), *extra],
                f"{base}/v2/health/ready", f"{base}/v2/models/{model if model == 'mlp' else pkg.name}/infer", body,
            )  # fmt: skip
        if model == "sklearn":
            mlflow_rows(work, sk, X, results)

    rows = []
    for label, runs in results.items():
        for r in runs:
            rows.append(
                [
                    label,
                    r["clients"],
                    f"{r['rps']:.0f}",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    r["errors"],
                    f"{r['rss_mb']:.0f}",
                ]
            )
    print(table(["server", "clients", "req/s", "p50 ms", "p99 ms", "errors", "RSS MB"], rows))
    path = write_json("serve", {"duration_s": DURATION, "results": results})
    print(f"\nwrote {path}")


def mlflow_rows(
    work: Path, model: Any, X: np.ndarray, results: dict[str, list[dict[str, Any]]]
) -> None:
    import pickle

    import sklearn

    python = side_venv(
        "mlflow", ["mlflow==3.*", f"scikit-learn=={sklearn.__version__}", "torch==2.13.0"]
    )
    if python is None:
        return
    (work / "model.pkl").write_bytes(pickle.dumps(model))
    dest = work / "mlflow-sk"
    subprocess.run(
        [
            str(python),
            "-c",
            f"import pickle, mlflow.sklearn; mlflow.sklearn.save_model(pickle.load(open({str(work / 'model.pkl')!r}, 'rb')), {str(dest)!r})",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    mlflow = Path(python).parent / "mlflow"
    body = json.dumps({"inputs": X[:1].tolist()}).encode()
    results["sklearn: mlflow models serve"] = run_server(
        [str(mlflow), "models", "serve", "-m", str(dest), "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"],
        f"http://127.0.0.1:{port}/ping", f"http://127.0.0.1:{port}/invocations", body,
        env={"PATH": f"{mlflow.parent}:{os.environ.get('PATH', '')}"},
    )  # fmt: skip


if __name__ == "__main__":
    main()
