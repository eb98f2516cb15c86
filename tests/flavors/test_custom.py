from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

import tiffin
from tests.conftest import run_python

MODEL_SRC = textwrap.dedent(
    """
    import json
    import numpy as np
    from helpers import scale


    class Scorer:
        def load(self, context):
            with open(context.artifacts["weights"]) as fh:
                self.w = np.asarray(json.load(fh))
            self.root = context.path

        def predict(self, inputs):
            import colorsys  # imported only inside predict

            return scale(np.asarray(inputs) @ self.w)
    """
)


def _project(tmp_path: Path) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "scorer.py").write_text(MODEL_SRC)
    (proj / "helpers.py").write_text("def scale(x):\n    return x * 10\n")
    (proj / "weights.json").write_text("[0.5, 0.25]")
    return proj


def test_custom_round_trip_in_fresh_process_without_sources(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    dest = tmp_path / "pkg"
    proc = run_python(
        f"""
        import sys, numpy as np, tiffin
        sys.path.insert(0, {str(proj)!r})
        pkg = tiffin.pack({str(proj / "scorer.py")!r} + ":Scorer", {str(dest)!r}, name="scorer",
                          version="1.0.0", example=np.array([[1.0, 2.0]]),
                          code=[{str(proj / "helpers.py")!r}],
                          artifacts={{"weights": {str(proj / "weights.json")!r}}})
        print(pkg.manifest.flavor)
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "custom"
    # The packer's sources are gone: loading must use the package's code/ folder.
    for f in proj.iterdir():
        f.unlink()
    proj.rmdir()
    proc = run_python(
        f"""
        import tiffin
        m = tiffin.load({str(dest)!r})
        print(m.predict([[2.0, 4.0]]).tolist())
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[20.0]"
    assert sorted(p.name for p in (dest / "code").iterdir()) == ["helpers.py", "scorer.py"]
    assert (dest / "artifacts" / "weights.json").is_file()  # the name keeps its extension


def test_package_code_wins_over_same_named_module(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    dest = tmp_path / "pkg"
    tiffin.pack(f"{proj / 'scorer.py'}:Scorer", dest, name="scorer", version="1",
                example=np.array([[1.0, 2.0]]), code=[proj / "helpers.py"],
                artifacts={"weights": proj / "weights.json"})  # fmt: skip
    # A different scorer.py in the working directory must not be picked up.
    other = tmp_path / "cwd"
    other.mkdir()
    (other / "scorer.py").write_text("class Scorer:\n    pass\n")
    (other / "helpers.py").write_text("def scale(x):\n    return -1\n")
    proc = run_python(
        f"import tiffin; print(tiffin.load({str(dest)!r}).predict([[2.0, 4.0]]).tolist())",
        cwd=other,
        env={"PYTHONPATH": str(other)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[20.0]"


def test_custom_instance_detected(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    import sys

    sys.path.insert(0, str(proj))
    try:
        import scorer  # type: ignore[import-not-found]

        pkg = tiffin.pack(scorer.Scorer(), tmp_path / "p", name="s", version="1",
                          example=np.array([[1.0, 1.0]]), code=[proj / "helpers.py"],
                          artifacts={"weights": proj / "weights.json"})  # fmt: skip
    finally:
        sys.path.remove(str(proj))
        sys.modules.pop("scorer", None)
        sys.modules.pop("helpers", None)
    assert pkg.manifest.runtime["options"]["class"] == "Scorer"


@pytest.mark.parametrize(
    ("model", "match"),
    [
        ("nope.py:Model", "cannot find class source"),
        ("{proj}/scorer.py:9bad", "cannot find class source"),
    ],
)
def test_bad_sources(tmp_path: Path, model: str, match: str) -> None:
    proj = _project(tmp_path)
    with pytest.raises(tiffin.UsageError, match=match):
        tiffin.pack(
            model.format(proj=proj), tmp_path / "p", name="s", version="1", example=np.ones((1, 2))
        )


def test_missing_artifact(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    with pytest.raises(tiffin.UsageError, match="artifact 'weights'"):
        tiffin.pack(f"{proj / 'scorer.py'}:Scorer", tmp_path / "p", name="s", version="1",
                    example=np.ones((1, 2)), artifacts={"weights": tmp_path / "missing.json"})  # fmt: skip
    assert not (tmp_path / "p").exists()


def test_failing_load_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "bad.py"
    src.write_text(
        "class Bad:\n    def load(self, context):\n        raise RuntimeError('no weights')\n    def predict(self, x):\n        return x\n"
    )
    with pytest.raises(tiffin.FlavorError, match="Bad.load failed: RuntimeError\\('no weights'\\)"):
        tiffin.pack(f"{src}:Bad", tmp_path / "p", name="b", version="1", example=np.ones((1, 2)))
    assert not (tmp_path / "p").exists()


def test_loading_never_writes_bytecode_into_the_package(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    dest = tmp_path / "pkg"
    tiffin.pack(f"{proj / 'scorer.py'}:Scorer", dest, name="scorer", version="1",
                example=np.array([[1.0, 2.0]]), code=[proj / "helpers.py"],
                artifacts={"weights": proj / "weights.json"})  # fmt: skip
    code = (
        f"import sys, tiffin; tiffin.load({str(dest)!r}).predict([[1.0, 2.0]]); tiffin.load({str(dest)!r}); "
        # declined by the package's own loader: the user's process still caches bytecode
        "assert not sys.dont_write_bytecode, 'load changed sys.dont_write_bytecode'"
    )
    import os
    import subprocess
    import sys

    full_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert not list(dest.rglob("__pycache__"))


def test_sibling_imports_packed_without_code_argument(tmp_path: Path) -> None:
    """The class file's own imports from its folder go into code/ without code=."""
    proj = _project(tmp_path)
    dest = tmp_path / "pkg"
    proc = run_python(
        f"""
        import numpy as np, tiffin
        tiffin.pack({str(proj / "scorer.py")!r} + ":Scorer", {str(dest)!r}, name="scorer",
                    version="1.0.0", example=np.array([[1.0, 2.0]]),
                    artifacts={{"weights": {str(proj / "weights.json")!r}}})
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (dest / "code").iterdir()) == ["helpers.py", "scorer.py"]
    for f in proj.iterdir():
        f.unlink()
    proc = run_python(
        f"import tiffin; print(tiffin.load({str(dest)!r}).predict([[2.0, 4.0]]).tolist())",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[20.0]"


def test_code_folder_given_again_is_not_a_conflict(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "lib").mkdir(parents=True)
    (proj / "lib" / "__init__.py").write_text("OFFSET = 1.5\n")
    (proj / "model.py").write_text(
        "import lib\n\nclass M:\n    def load(self, context):\n        pass\n\n"
        "    def predict(self, inputs):\n        return inputs + lib.OFFSET\n"
    )
    pkg = tiffin.pack(f"{proj / 'model.py'}:M", tmp_path / "p", name="m", version="1",
                      example=np.zeros((1, 2)), code=[proj / "lib"])  # fmt: skip
    assert sorted(p.name for p in (pkg.path / "code").iterdir()) == ["lib", "model.py"]
    (proj / "other").mkdir()
    (proj / "other" / "lib").mkdir()
    (proj / "other" / "lib" / "__init__.py").write_text("OFFSET = 2\n")
    with pytest.raises(tiffin.UsageError, match="both called 'lib'"):
        tiffin.pack(f"{proj / 'model.py'}:M", tmp_path / "q", name="m", version="1",
                    example=np.zeros((1, 2)), code=[proj / "other" / "lib"])  # fmt: skip


def test_missing_module_error_says_how_to_ship_it(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "deep").mkdir(parents=True)
    (proj / "deep" / "faraway.py").write_text("K = 1\n")
    (proj / "model.py").write_text(
        "import faraway\n\nclass M:\n    def load(self, context):\n        pass\n\n"
        "    def predict(self, inputs):\n        return inputs\n"
    )
    with pytest.raises(tiffin.FlavorError, match="faraway") as info:
        tiffin.pack(f"{proj / 'model.py'}:M", tmp_path / "p", name="m", version="1",
                    example=np.zeros((1, 2)))  # fmt: skip
    assert info.value.fix is not None and "code=" in info.value.fix


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("    def __init__(self, k):\n        self.k = k\n", r"Odd\(\) failed: TypeError"),
        ("    def predict(self, x):\n        return None\n", "returned None on the example"),
    ],
)
def test_unusable_classes_refused_clearly(tmp_path: Path, body: str, match: str) -> None:
    src = tmp_path / "odd.py"
    src.write_text(
        "class Odd:\n    def load(self, context):\n        pass\n\n"
        "    def predict(self, x):\n        return x\n\n" + body
    )
    with pytest.raises(tiffin.FlavorError, match=match):
        tiffin.pack(f"{src}:Odd", tmp_path / "p", name="o", version="1", example=np.ones((1, 2)))
    assert not (tmp_path / "p").exists()


def test_two_packages_with_same_named_modules_in_one_process(tmp_path: Path) -> None:
    """A server loads many packages: each one's utils.py must stay its own, at import time
    and inside predict, and the packer's own utils must not leak in either."""
    for name, k in (("a", 1), ("b", 100)):
        src = tmp_path / name
        (src / "lib").mkdir(parents=True)
        (src / "utils.py").write_text(f"K = {k}\n")
        (src / "lib" / "__init__.py").write_text("from .inner import offset\n")
        (src / "lib" / "inner.py").write_text(f"def offset():\n    return {k} / 10\n")
        (src / "model.py").write_text(
            "import numpy as np\nimport utils\n\n"
            "class M:\n    def load(self, context):\n        pass\n\n"
            "    def predict(self, x):\n"
            "        from lib import offset  # imported when called\n"
            "        return np.asarray(x) * utils.K + offset()\n"
        )
        tiffin.pack(f"{src / 'model.py'}:M", tmp_path / f"pkg-{name}", name=name, version="1",
                    example=np.ones((1, 1)))  # fmt: skip
    (tmp_path / "utils.py").write_text("K = -1\n")  # the caller's own, same name
    proc = run_python(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import utils, tiffin
        a = tiffin.load({str(tmp_path / "pkg-a")!r})
        b = tiffin.load({str(tmp_path / "pkg-b")!r})
        again = tiffin.load({str(tmp_path / "pkg-a")!r})
        print(a.predict([[1.0]]).tolist(), b.predict([[1.0]]).tolist(),
              again.predict([[1.0]]).tolist(), utils.K)
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[[1.1]] [[110.0]] [[1.1]] -1"


def test_class_in_a_package_with_relative_sibling_imports(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    (proj / "myproj").mkdir(parents=True)
    (proj / "myproj" / "__init__.py").write_text("")
    (proj / "myproj" / "consts.py").write_text("K = 2\n")
    (proj / "myproj" / "model.py").write_text(
        "import numpy as np\nfrom .consts import K\n\n"
        "class M:\n    def load(self, context):\n        pass\n\n"
        "    def predict(self, x):\n        return np.asarray(x) * K\n"
    )
    dest = tmp_path / "pkg"
    proc = run_python(
        f"""
        import sys, numpy as np, tiffin
        sys.path.insert(0, {str(proj)!r})
        from myproj.model import M
        tiffin.pack(M(), {str(dest)!r}, name="m", version="1", example=np.ones((1, 1)))
        """,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (dest / "code").iterdir()) == ["consts.py", "model.py"]
    shutil.rmtree(proj)
    proc = run_python(
        f"import tiffin; print(tiffin.load({str(dest)!r}).predict([[3.0]]).tolist())", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[[6.0]]"


ARTIFACT_SRC = textwrap.dedent(
    """
    import json
    import numpy as np


    class Model:
        def load(self, context):
            self.files = {k: p.name for k, p in context.artifacts.items()}
            with open(context.artifacts["params"]) as fh:
                self.scale = json.load(fh)["scale"]

        def predict(self, inputs):
            return np.asarray(inputs) * self.scale
    """
)


def test_artifacts_keep_their_file_extension(tmp_path: Path) -> None:
    src = tmp_path / "model.py"
    src.write_text(ARTIFACT_SRC)
    (tmp_path / "params.json").write_text('{"scale": 3}')
    (tmp_path / "vocab.v2.txt").write_text("a b\n")
    (tmp_path / "table.txt").write_text("a\n")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "x.txt").write_text("x")
    pkg = tiffin.pack(f"{src}:Model", tmp_path / "p", name="m", version="1",
                      example=np.ones((1, 2)),
                      artifacts={"params": tmp_path / "params.json", "vocab": tmp_path / "vocab.v2.txt",
                                 "lookup.tsv": tmp_path / "table.txt", "assets": tmp_path / "assets"})  # fmt: skip
    assert pkg.manifest.runtime["options"]["artifacts"] == {
        "assets": "artifacts/assets",
        "lookup.tsv": "artifacts/lookup.tsv",
        "params": "artifacts/params.json",
        "vocab": "artifacts/vocab.txt",
    }
    model = tiffin.load(pkg.path)
    assert model.predict([[1.0, 2.0]]).tolist() == [[3.0, 6.0]]
    assert model._model.files["params"] == "params.json"


def test_artifacts_that_would_share_a_file_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "model.py"
    src.write_text(ARTIFACT_SRC)
    (tmp_path / "params.json").write_text('{"scale": 3}')
    with pytest.raises(tiffin.UsageError, match="'params' and 'params.json' would both be stored"):
        tiffin.pack(f"{src}:Model", tmp_path / "p", name="m", version="1", example=np.ones((1, 2)),
                    artifacts={"params": tmp_path / "params.json",
                               "params.json": tmp_path / "params.json"})  # fmt: skip
    assert not (tmp_path / "p").exists()


EMPTY_SRC = textwrap.dedent(
    """
    import numpy as np


    class Model:
        calls = 0

        def load(self, context):
            pass

        def predict(self, inputs):
            type(self).calls += 1
            if len(inputs) == 0:
                raise ValueError("Found array with 0 sample(s)")
            return {"score": np.asarray(inputs, np.float32).sum(axis=1), "label": np.array(["a"] * len(inputs))}
    """
)


def test_empty_batch_answers_zero_rows_without_running_the_model(tmp_path: Path) -> None:
    src = tmp_path / "model.py"
    src.write_text(EMPTY_SRC)
    pkg = tiffin.pack(f"{src}:Model", tmp_path / "p", name="m", version="1",
                      example=np.ones((2, 3), np.float32))  # fmt: skip
    model = tiffin.load(pkg.path)
    calls = type(model._model).calls
    out = model.predict(np.zeros((0, 3), np.float32))
    assert out["score"].shape == (0,) and out["score"].dtype == np.float32
    assert out["label"].shape == (0,)
    named = model.predict_named({"input": np.zeros((0, 3), np.float32)})
    assert set(named) == {"score", "label"} and named["score"].shape == (0,)
    assert type(model._model).calls == calls  # the model never saw the empty batch
    with pytest.raises(tiffin.SignatureError, match=r"expects shape \[-1, 3\]"):
        model.predict(np.zeros((0, 4), np.float32))  # an empty batch is still checked
    assert model.predict(np.ones((1, 3), np.float32))["score"].tolist() == [3.0]


def test_the_packed_method_is_the_one_that_answers(tmp_path: Path) -> None:
    (tmp_path / "two.py").write_text(
        "import numpy as np\n\n"
        "class Two:\n"
        "    def load(self, context):\n        pass\n\n"
        "    def predict(self, x):\n        return np.asarray(x) * 1.0\n\n"
        "    def scores(self, x):\n        return np.asarray(x) * 100.0\n"
    )
    pkg = tiffin.pack(f"{tmp_path / 'two.py'}:Two", tmp_path / "p", name="two", version="1",
                      example=np.ones((1, 2)), method="scores")  # fmt: skip
    assert tiffin.load(pkg.path).predict(np.full((1, 2), 3.0)).tolist() == [[300.0, 300.0]]
    with pytest.raises(tiffin.UsageError, match="changes the model or is private"):
        tiffin.pack(f"{tmp_path / 'two.py'}:Two", tmp_path / "q", name="two", version="1",
                    example=np.ones((1, 2)), method="_private")  # fmt: skip
