"""Serving throughput and latency: tiffin against MLflow and against the model itself.

A bounded load generator (wrk when it is installed, else the asyncio HTTP/1.1 client
below) keeps 1, 8 and 64 connections busy with one-row requests, for a 20-feature
scikit-learn pipeline and two PyTorch MLPs: a small one (20-256-256-2, 72k weights) and a
wide one (20-1024-1024-1024-2, 2.1M weights). Side by side, in the same run:

- in-process predict on one row, one compute thread (as in a worker): the ceiling;
- uvicorn answering a constant with no model (the HTTP floor): the most a Python HTTP
  server reaches here, which bounds what batching can buy a model that is cheaper
  than the HTTP work around it;
- ``tiffin serve`` as shipped (adaptive batching, one worker per CPU);
- ``tiffin serve --no-batching`` (same workers): what batching buys;
- ``tiffin serve --workers 1``: one process, predict on threads: what workers buy;
- ``mlflow models serve --env-manager local`` on the same scikit-learn model, with its
  default single worker and with ``--workers`` one per CPU, from a side venv
  (``mlflow==3.*``); skipped cleanly when MLflow cannot be installed.

Every server runs ``TIFFIN_BENCH_ROUNDS`` times (default 3). In a round, the servers of
one model are up at once and take turns: at each client count each runs once, the order
reversed every other round, so a noisy neighbour hurts every row alike and two rows'
cells at one client count run seconds apart; the table shows medians. Prints the table and the
targets, writes bench-results/serve.json.

    TIFFIN_BENCH_SECONDS=5 TIFFIN_BENCH_ROUNDS=3 python benchmarks/serve.py

``TIFFIN_BENCH_MODELS=torch,torch-wide`` runs only those models (keys: sklearn, torch,
torch-wide); MLflow runs only with sklearn.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
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
from _load import DURATION, LOAD, free_port

ROUNDS = int(os.environ.get("TIFFIN_BENCH_ROUNDS", "3"))
CONCURRENCY = (1, 8, 64)
CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

MLP_SRC = textwrap.dedent(
    """
    from torch import nn


    class MLP(nn.Module):
        def __init__(self, n_in=20, hidden=256, depth=2, n_out=2):
            super().__init__()
            layers = [nn.Linear(n_in, hidden), nn.ReLU()]
            for _ in range(depth - 1):
                layers += [nn.Linear(hidden, hidden), nn.ReLU()]
            self.net = nn.Sequential(*layers, nn.Linear(hidden, n_out))

        def forward(self, x):
            return self.net(x)
    """
)


# -- servers -------------------------------------------------------------------------


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {err}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{url} never became ready")


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its descendants (worker processes), in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
            todo += [int(k) for k in kids]
        except OSError:
            continue
    return total / 1024


def start_server(argv: list[str], env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )  # fmt: skip


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    if proc.stderr:
        proc.stderr.close()


def run_group(entries: list[tuple[str, Any]], reverse: bool) -> dict[str, list[dict[str, Any]]]:
    """Every server of one model, up at once: each one's rows at each of CONCURRENCY.

    The cells are interleaved: at each client count every server runs once, one after
    the other (``reverse``: in the opposite order), so two servers' cells at one client
    count run a few seconds apart and the machine's drift (up to 1.5 times within
    minutes here) mostly cancels out of their ratio. An idle tiffin server takes under
    1% of one core (its processes' periodic ticks; 80 ms of CPU in 10 s, measured here).
    """
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, (argv, _, _, _, env) in entries:
            procs[name] = start_server(argv, env)
        for name, (_, ready, url, body, _) in entries:
            wait_ready(ready, procs[name])
            LOAD(url, body, 8)  # warm-up
        order = entries[::-1] if reverse else entries
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in entries}
        for c in CONCURRENCY:
            for name, (_, _, url, body, _) in order:
                result: dict[str, Any] = {"clients": c, **LOAD(url, body, c)}
                result["rss_mb"] = rss_mb(procs[name].pid)
                rows[name].append(result)
        return rows
    finally:
        for proc in procs.values():
            stop_server(proc)


def ceiling(predict: Any, x: Any) -> list[dict[str, Any]]:
    for _ in range(50):
        predict(x)
    times = []
    for _ in range(1000):
        t = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    p50 = float(np.median(ms))
    row = {"clients": 1, "rps": 1000 / p50, "p50_ms": p50, "p99_ms": float(np.percentile(ms, 99)),
           "errors": 0, "rss_mb": 0.0}  # fmt: skip
    return [row]


def median_rows(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for cells in zip(*rounds):
        row: dict[str, Any] = {"clients": cells[0]["clients"]}
        for key in ("rps", "p50_ms", "p99_ms", "rss_mb"):
            row[key] = statistics.median(c[key] for c in cells)
        row["errors"] = sum(c["errors"] for c in cells)
        row["rounds"] = len(cells)
        out.append(row)
    return out


# -- the run -------------------------------------------------------------------------


def make_models(work: Path) -> dict[str, Any]:
    import torch
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import tiffin

    X, y = make_classification(n_samples=1000, n_features=20, random_state=0)
    sk = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    sk_pkg = tiffin.pack(sk, work / "sk", name="sk", version="1", example=X[:5]).path
    (work / "mlp_model.py").write_text(MLP_SRC)
    sys.path.insert(0, str(work))
    from mlp_model import MLP  # type: ignore[import-not-found]

    torch.manual_seed(0)
    xf = X.astype(np.float32)
    mlps = {}
    for key, hidden, depth in (("torch", 256, 2), ("torch-wide", 1024, 3)):
        net = MLP(hidden=hidden, depth=depth).eval()
        init = {"options": {"init_kwargs": {"hidden": hidden, "depth": depth}}}
        pkg = tiffin.pack(net, work / key, name=key, version="1", example=xf[:5], **init).path
        mlps[key] = (net, pkg)

    def torch_predict(net: Any) -> Any:
        def predict(x: np.ndarray) -> Any:
            with torch.inference_mode():
                return net(torch.from_numpy(x)).numpy()

        return predict

    def body(row: np.ndarray, datatype: str) -> bytes:
        tensor = {"name": "input", "shape": [1, 20], "datatype": datatype, "data": row.tolist()}
        return json.dumps({"inputs": [tensor]}).encode()

    return {
        "sklearn": {"pkg": sk_pkg, "name": "sk", "body": body(X[0], "FP64"), "model": sk,
                    "predict": sk.predict, "x": X[:1], "X": X},
        **{key: {"pkg": pkg, "name": key, "body": body(xf[0], "FP32"), "predict": torch_predict(net),
                 "x": xf[:1]} for key, (net, pkg) in mlps.items()},
    }  # fmt: skip


def mlflow_model(work: Path, model: Any) -> tuple[Path, Path] | None:
    """The model saved by MLflow in its side venv, and that venv's ``mlflow`` command."""
    import pickle

    import sklearn

    python = side_venv(
        "mlflow", ["mlflow==3.*", f"scikit-learn=={sklearn.__version__}", "torch==2.13.0"]
    )
    if python is None:
        return None
    (work / "model.pkl").write_bytes(pickle.dumps(model))
    dest = work / "mlflow-sk"
    code = (
        "import pickle, sys, mlflow.sklearn\n"
        "mlflow.sklearn.save_model(pickle.load(open(sys.argv[1], 'rb')), sys.argv[2])\n"
    )
    proc = subprocess.run(
        [str(python), "-c", code, str(work / "model.pkl"), str(dest)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        print(f"[skip] mlflow save_model: {proc.stderr[-400:]}", file=sys.stderr)
        return None
    return dest, Path(python).parent / "mlflow"


CONSTANT_APP = textwrap.dedent(
    """
    ANSWER = b'{"model_name":"m","outputs":[{"name":"output","shape":[1,2],"datatype":"FP32","data":[0.5,0.5]}]}'
    HEAD = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


    async def app(scope, receive, send):
        \"\"\"Reads the body and answers a constant: HTTP/1.1 and ASGI, no model, no JSON.\"\"\"
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": HEAD})
        await send({"type": "http.response.body", "body": ANSWER})
    """
)


def http_floor(work: Path, body: bytes) -> tuple[str, str, Any]:
    """uvicorn (httptools, as tiffin runs it) answering a constant with the same workers:
    what HTTP alone costs on this machine, the most any Python server here can reach."""
    (work / "constant_app.py").write_text(CONSTANT_APP)

    def factory() -> Any:
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", "constant_app:app", "--app-dir", str(work),
                "--port", str(port), "--workers", str(CPUS), "--http", "httptools",
                "--no-access-log", "--log-level", "warning"]  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        return argv, f"{base}/", f"{base}/v2/models/m/infer", body, None

    return "http", f"uvicorn answering a constant, {CPUS} workers (HTTP floor)", factory


def servers(models: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """(model, label, factory) for every server row; factory() -> (argv, ready, url, body, env)."""
    tiffin_cmd = [sys.executable, "-m", "tiffin.cli", "serve"]
    rows = []
    for key, m in models.items():
        for label, extra in (
            (f"tiffin, batching, {CPUS} workers (default)", []),
            (f"tiffin, no batching, {CPUS} workers", ["--no-batching"]),
            ("tiffin, batching, 1 worker + threads", ["--workers", "1"]),
        ):

            def factory(m: dict[str, Any] = m, extra: list[str] = extra) -> Any:
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                argv = [*tiffin_cmd, str(m["pkg"]), "--port", str(port), *extra]
                return argv, f"{base}/v2/health/ready", f"{base}/v2/models/{m['name']}/infer", m["body"], None  # fmt: skip

            rows.append((key, label, factory))
    return rows


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tiffin-serve-bench-"))
    models = make_models(work)
    wanted = os.environ.get("TIFFIN_BENCH_MODELS")
    if wanted:
        models = {k: v for k, v in models.items() if k in wanted.split(",")}
    results: dict[str, list[dict[str, Any]]] = {}
    import torch

    torch.set_num_threads(1)  # as each server worker runs it (one compute thread per worker)
    for key, m in models.items():
        results[f"{key}: in-process predict, 1 row (ceiling)"] = ceiling(m["predict"], m["x"])

    floor_body = (models.get("torch") or next(iter(models.values())))["body"]
    rows = [http_floor(work, floor_body), *servers(models)]
    saved = mlflow_model(work, models["sklearn"]["model"]) if "sklearn" in models else None
    if saved is not None:
        dest, mlflow_bin = saved
        sk = models["sklearn"]
        mlflow_body = json.dumps({"inputs": sk["X"][:1].tolist()}).encode()
        for label, extra in (("mlflow models serve (1 worker, its default)", []),
                             (f"mlflow models serve --workers {CPUS}", ["--workers", str(CPUS)])):  # fmt: skip

            def factory(extra: list[str] = extra) -> Any:
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                argv = [str(mlflow_bin), "models", "serve", "-m", str(dest), "--env-manager", "local",
                        "-p", str(port), "-h", "127.0.0.1", *extra]  # fmt: skip
                env = {"PATH": f"{mlflow_bin.parent}:{os.environ.get('PATH', '')}"}
                return argv, f"{base}/ping", f"{base}/invocations", mlflow_body, env

            rows.append(("sklearn", label, factory))

    print(f"load generator: {LOAD.__name__}; {ROUNDS} rounds of {DURATION:g} s per cell; {CPUS} CPUs", file=sys.stderr)  # fmt: skip
    raw: dict[str, list[list[dict[str, Any]]]] = {}
    groups: dict[str, list[tuple[str, Any]]] = {}
    for key, label, factory in rows:
        groups.setdefault(key, []).append((f"{key}: {label}", factory))
    for round_ in range(ROUNDS):
        for key, group in groups.items():
            labels = ", ".join(name.split(": ", 1)[1] for name, _ in group)
            print(f"[round {round_ + 1}/{ROUNDS}] {key}: {labels}", file=sys.stderr)
            measured = run_group([(name, factory()) for name, factory in group], reverse=round_ % 2 == 1)  # fmt: skip
            for name, server_rows in measured.items():
                raw.setdefault(name, []).append(server_rows)
    for name, rounds in raw.items():
        results[name] = median_rows(rounds)

    keys = ["http", *models]
    names = list(results)
    order = sorted(
        names,
        key=lambda n: (
            keys.index(n.split(":")[0]),
            "ceiling" not in n,
            "mlflow" in n,
            names.index(n),
        ),
    )
    lines = []
    for name in order:
        for r in results[name]:
            lines.append([name, r["clients"], f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}",
                          f"{r['p99_ms']:.2f}", r["errors"], f"{r['rss_mb']:.0f}"])  # fmt: skip
    print(table(["server", "clients", "req/s", "p50 ms", "p99 ms", "errors", "RSS MB"], lines))
    targets = check_targets(results, raw)
    for line in targets["lines"]:
        print(line)
    path = write_json(
        "serve",
        {"load_generator": LOAD.__name__, "seconds": DURATION, "rounds": ROUNDS, "cpus": CPUS,
         "results": results, "raw": raw, "targets": targets},
    )  # fmt: skip
    print(f"\nwrote {path}")


def _at(results: dict[str, list[dict[str, Any]]], prefix: str, clients: int) -> dict[str, Any] | None:  # fmt: skip
    for name, rows in results.items():
        if name.startswith(prefix):
            for r in rows:
                if r["clients"] == clients:
                    return r
    return None


def _paired_ratios(raw: dict[str, list[list[dict[str, Any]]]], top: str, bottom: str, clients: int) -> list[float]:  # fmt: skip
    """``top`` over ``bottom`` req/s, round by round: their cells run one after the
    other (``run_group``), so a drift of the machine's speed mostly cancels out of each
    ratio."""
    tops = next((rounds for name, rounds in raw.items() if name.startswith(top)), [])
    bottoms = next((rounds for name, rounds in raw.items() if name.startswith(bottom)), [])
    out = []
    for t_rows, b_rows in zip(tops, bottoms):
        t = next(r["rps"] for r in t_rows if r["clients"] == clients)
        b = next(r["rps"] for r in b_rows if r["clients"] == clients)
        out.append(t / b)
    return out


def check_targets(results: dict[str, list[dict[str, Any]]], raw: dict[str, list[list[dict[str, Any]]]]) -> dict[str, Any]:  # fmt: skip
    lines, out = [], {}
    tiffin_sk = _at(results, "sklearn: tiffin, batching, ", 64)
    mlflow_sk = _at(results, "sklearn: mlflow models serve (1 worker", 64)
    if tiffin_sk and mlflow_sk:
        ratio = tiffin_sk["rps"] / mlflow_sk["rps"]
        lower = tiffin_sk["p99_ms"] < mlflow_sk["p99_ms"]
        out["sklearn_vs_mlflow_rps"] = ratio
        out["sklearn_p99_lower"] = lower
        lines.append(f"target: sklearn at 64 clients, tiffin / MLflow req/s = {ratio:.1f}x (>= 5x: "
                     f"{'met' if ratio >= 5 else 'MISSED'}); p99 {tiffin_sk['p99_ms']:.1f} vs "
                     f"{mlflow_sk['p99_ms']:.1f} ms ({'lower' if lower else 'NOT lower'})")  # fmt: skip
    for key in ("torch", "torch-wide"):
        batched = _at(results, f"{key}: tiffin, batching, ", 64)
        single = _at(results, f"{key}: tiffin, no batching", 64)
        if batched and single:
            ratio = batched["rps"] / single["rps"]
            out[f"{key}_batching_vs_none"] = ratio
            lines.append(f"target: {key} MLP at 64 clients, batching / no batching = {ratio:.1f}x "
                         f"(>= 2x: {'met' if ratio >= 2 else 'MISSED'})")  # fmt: skip
            paired = _paired_ratios(raw, f"{key}: tiffin, batching, ", f"{key}: tiffin, no batching", 64)  # fmt: skip
            if paired:
                out[f"{key}_batching_vs_none_by_round"] = paired
                lines.append(f"  round by round: {', '.join(f'{r:.2f}' for r in paired)} (median "
                             f"{statistics.median(paired):.2f}, {sum(r >= 2 for r in paired)} of {len(paired)} at 2x or more)")  # fmt: skip
    floor = _at(results, "http: ", 64)
    if floor:
        out["http_floor_rps"] = floor["rps"]
        lines.append(f"HTTP floor at 64 clients: {floor['rps']:.0f} req/s (uvicorn answering a constant)")  # fmt: skip
    out["lines"] = lines
    return out


if __name__ == "__main__":
    main()
