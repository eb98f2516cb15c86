"""Cold start: a fresh process that loads a package and predicts one row.

Compared, in the same run and the same environment (PyTorch installed, on purpose):

- floor: the framework's own load and predict in a fresh process (pickle for
  scikit-learn, which is what the fastest unsafe path costs; safetensors + the class
  for PyTorch), with the framework imported as usual;
- tiffin: ``tiffin.load(path).predict(row)``: verify every file, then load;
- MLflow: ``mlflow.pyfunc.load_model(path).predict(row)`` in a side venv with the same
  framework versions (skipped when MLflow cannot be installed).

Also ``import tiffin`` alone. Prints a table of medians and writes
bench-results/cold_start.json.
"""

from __future__ import annotations

import pickle
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, side_venv, table, time_process, write_json

RUNS = int(__import__("os").environ.get("TIFFIN_BENCH_RUNS", "7"))


def sklearn_model() -> tuple[Any, np.ndarray]:
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(n_samples=500, n_features=20, random_state=0)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X


MLP_SRC = textwrap.dedent(
    """
    import torch
    from torch import nn


    class MLP(nn.Module):
        def __init__(self, n_in=20, hidden=64, n_out=2):
            super().__init__()
            self.n_in, self.hidden, self.n_out = n_in, hidden, n_out
            self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))

        def forward(self, x):
            return self.net(x)
    """
)


def python_code(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tiffin-cold-"))
    import tiffin

    results: dict[str, dict[str, float]] = {}
    rows: list[list[Any]] = []

    def record(case: str, label: str, times: list[float], floor: float | None) -> float:
        m = median(times)
        results.setdefault(case, {})[label] = m
        ratio = f"{m / floor:.2f}x" if floor else "-"
        rows.append([case, label, f"{m * 1000:.0f} ms", ratio])
        return m

    record("import", "import tiffin", time_process(python_code("import tiffin"), RUNS), None)
    record("import", "python -c pass", time_process(python_code("pass"), RUNS), None)

    # scikit-learn pipeline, 20 features
    model, X = sklearn_model()
    pkl = work / "model.pkl"
    pkl.write_bytes(pickle.dumps(model))
    row = X[:1].tolist()
    pkg = tiffin.pack(model, work / "sk", name="sk", version="1", example=X[:5])
    floor = record("sklearn pipeline", "floor: pickle.load + predict", time_process(python_code(
        f"import pickle, numpy as np; m = pickle.load(open({str(pkl)!r}, 'rb')); m.predict(np.array({row}))"
    ), RUNS), None)  # fmt: skip
    record("sklearn pipeline", "tiffin.load + predict", time_process(python_code(
        f"import tiffin; tiffin.load({str(pkg.path)!r}).predict({row})"
    ), RUNS), floor)  # fmt: skip
    record("sklearn pipeline", "skops.io.load + predict (plain)", time_process(python_code(
        f"import skops.io as s, numpy as np; p = {str(pkg.path / 'artifacts/model.skops')!r}; "
        f"m = s.load(p, trusted=s.get_untrusted_types(file=p)); m.predict(np.array({row}))"
    ), RUNS), floor)  # fmt: skip

    # PyTorch MLP (safetensors + class source)
    import torch

    (work / "mlp_model.py").write_text(MLP_SRC)
    sys.path.insert(0, str(work))
    from mlp_model import MLP  # type: ignore[import-not-found]

    torch.manual_seed(0)
    mlp = MLP().eval()
    x = np.random.default_rng(0).normal(size=(5, 20)).astype(np.float32)
    from safetensors.torch import save_file

    save_file(mlp.state_dict(), str(work / "mlp.safetensors"))
    torch_floor_code = (
        f"import sys; sys.path.insert(0, {str(work)!r}); import torch; from mlp_model import MLP; "
        f"from safetensors.torch import load_file; m = MLP(); "
        f"m.load_state_dict(load_file({str(work / 'mlp.safetensors')!r})); m.eval(); "
        f"torch.no_grad()(m)(torch.tensor({x[:1].tolist()}))"
    )
    floor = record("torch MLP", "floor: safetensors + class + forward",
                   time_process(python_code(torch_floor_code), RUNS), None)  # fmt: skip
    try:
        tpkg = tiffin.pack(mlp, work / "mlp", name="mlp", version="1", example=x)
    except tiffin.TiffinError as exc:
        print(f"[skip] tiffin torch flavor: {exc}", file=sys.stderr)
    else:
        record("torch MLP", "tiffin.load + predict", time_process(python_code(
            f"import numpy as np, tiffin; tiffin.load({str(tpkg.path)!r}).predict(np.array({x[:1].tolist()}, dtype=np.float32))"
        ), RUNS), floor)  # fmt: skip

    mlflow_rows(work, model, X, results, rows, record)

    print(table(["case", "what", "median", "vs floor"], rows))
    path = write_json("cold_start", {"runs": RUNS, "median_seconds": results})
    print(f"\nwrote {path}")


def mlflow_rows(
    work: Path, model: Any, X: np.ndarray, results: Any, rows: Any, record: Any
) -> None:
    import sklearn
    import torch

    python = side_venv(
        "mlflow",
        [
            "mlflow==3.*",
            f"scikit-learn=={sklearn.__version__}",
            f"torch=={torch.__version__.split('+')[0]}",
        ],
    )
    if python is None:
        rows.append(["sklearn pipeline", "mlflow (not installed)", "-", "-"])
        return
    pkl = work / "model.pkl"
    dest = work / "mlflow-sk"
    save = [str(python), "-c", textwrap.dedent(f"""
        import pickle, time, mlflow.sklearn
        m = pickle.load(open({str(pkl)!r}, 'rb'))
        t = time.perf_counter()
        mlflow.sklearn.save_model(m, {str(dest)!r})
        print(time.perf_counter() - t)
    """)]  # fmt: skip
    saved = time_process(save, 1)
    results.setdefault("sklearn pipeline", {})["mlflow save_model (one run)"] = saved[0]
    floor = results["sklearn pipeline"]["floor: pickle.load + predict"]
    row = X[:1].tolist()
    record("sklearn pipeline", "mlflow.pyfunc.load_model + predict", time_process([str(python), "-c",
        f"import mlflow.pyfunc, numpy as np; mlflow.pyfunc.load_model({str(dest)!r}).predict(np.array({row}))"
    ], RUNS), floor)  # fmt: skip
    reqs = (dest / "requirements.txt").read_text().split()
    results["sklearn pipeline"]["mlflow requirements"] = reqs  # type: ignore[assignment]
    print(f"mlflow inferred requirements for the sklearn pipeline: {reqs}")


if __name__ == "__main__":
    main()
