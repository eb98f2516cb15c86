"""A corpus of malicious pickles, built here: each is refused before any of its code runs.

Every payload would create a tripwire file; after each refusal the file must not exist,
and the error must name the global the pickle asked for.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tiffin
from tiffin.flavors import byte_formats
from tiffin.security import sniff as sniffing
from tiffin.security.unpickler import safe_loads


def sniff(path: Path | str) -> sniffing.Verdict:
    """The sniffer as pack and load run it: with every flavor's formats."""
    return sniffing.sniff(path, formats=byte_formats())


def classify_bytes(data: bytes, name: str = "") -> sniffing.Verdict:
    return sniffing.classify_bytes(data, name, formats=byte_formats())


PROTOCOLS = range(0, pickle.HIGHEST_PROTOCOL + 1)


def _reduce_payload(func: Any, args: tuple[Any, ...], protocol: int) -> bytes:
    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            return func, args

    return pickle.dumps(Evil(), protocol=protocol)


def _global(module: str, name: str, arg: str) -> bytes:
    """Protocol 0 GLOBAL + REDUCE, written by hand: no need for the module to exist here."""
    return f"c{module}\n{name}\n(S'{arg}'\ntR.".encode()


def corpus(trip: Path) -> list[tuple[str, bytes, str]]:
    import builtins
    import importlib
    import marshal
    import os
    import pkgutil
    import subprocess

    cmd = f"touch {trip}"
    code = f"open({str(trip)!r}, 'w').write('x')"
    samples: list[tuple[str, bytes, str]] = []
    for p in PROTOCOLS:
        samples.append((f"os.system p{p}", _reduce_payload(os.system, (cmd,), p), "system"))
        samples.append(
            (
                f"subprocess.Popen p{p}",
                _reduce_payload(subprocess.Popen, (["touch", str(trip)],), p),
                "Popen",
            )
        )
        samples.append((f"builtins.exec p{p}", _reduce_payload(builtins.exec, (code,), p), "exec"))
        samples.append((f"builtins.eval p{p}", _reduce_payload(builtins.eval, (code,), p), "eval"))
        samples.append(
            (
                f"importlib.import_module p{p}",
                _reduce_payload(importlib.import_module, ("os",), p),
                "import_module",
            )
        )
        samples.append(
            (
                f"pkgutil.resolve_name p{p}",
                _reduce_payload(pkgutil.resolve_name, ("os:system",), p),
                "resolve_name",
            )
        )
        samples.append(
            (f"marshal.loads p{p}", _reduce_payload(marshal.loads, (b"\xe3",), p), "marshal.loads")
        )
    samples += [
        (
            "distutils.spawn.spawn (hand-built)",
            _global("distutils.spawn", "spawn", cmd),
            "distutils.spawn.spawn",
        ),
        ("posix.system (hand-built)", _global("posix", "system", cmd), "posix.system"),
        ("INST opcode", f"(S'{cmd}'\nios\nsystem\n.".encode(), "os.system"),
        ("OBJ opcode", f"(cos\nsystem\nS'{cmd}'\no.".encode(), "os.system"),
        ("runpy._run_code (hand-built)", _global("runpy", "_run_code", code), "runpy._run_code"),
        (
            "shutil.rmtree (hand-built)",
            _global("shutil", "rmtree", str(trip.parent)),
            "shutil.rmtree",
        ),
        ("ctypes.CDLL (hand-built)", _global("ctypes", "CDLL", "libc.so.6"), "ctypes.CDLL"),
        (
            "webbrowser.open (hand-built)",
            _global("webbrowser", "open", "http://x"),
            "webbrowser.open",
        ),
        (
            "numpy.memmap (a NumPy class that writes files)",
            _global("numpy", "memmap", str(trip)),
            "numpy.memmap",
        ),
        (
            "sklearn function, not class",
            _global("sklearn.utils", "check_array", "x"),
            "sklearn.utils.check_array",
        ),
        (
            "builtins.getattr chain",
            b"cbuiltins\ngetattr\n(cbuiltins\n__import__\n(S'os'\ntRS'system'\ntR(S'"
            + cmd.encode()
            + b"'\ntR.",
            "getattr",
        ),
    ]
    samples += _structural(cmd)
    return samples


def _u(text: str) -> bytes:
    """SHORT_BINUNICODE: a string pushed on the stack (protocol 4+)."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _structural(cmd: str) -> list[tuple[str, bytes, str]]:
    """Hand-built streams aimed at scanners that only look at neighbouring opcodes."""
    call = _u(cmd) + b"\x85R."  # TUPLE1 REDUCE STOP: call what is on the stack with (cmd,)
    return [
        (
            "STACK_GLOBAL with the module from the memo, a decoy in between",
            b"\x80\x04"
            + _u("os")
            + b"\x94"
            + b"0"
            + _u("json")
            + b"0"
            + b"h\x00"
            + _u("system")
            + b"\x93"
            + call,
            "os.system",
        ),
        (
            "STACK_GLOBAL with both names from the memo, stored with BINPUT",
            b"\x80\x04"
            + _u("system")
            + b"q\x07"
            + b"0"
            + _u("posix")
            + b"q\x08"
            + b"0"
            + b"h\x08h\x07\x93"
            + call,
            "posix.system",
        ),
        (
            "STACK_GLOBAL on a name computed at load time",
            b"\x80\x04cbuiltins\nstr\n" + _u("os") + b"\x85R" + _u("system") + b"\x93" + call,
            "STACK_GLOBAL",
        ),
        (
            "STACK_GLOBAL inside a MARK frame reaching below it",
            b"\x80\x04" + _u("os") + _u("system") + b"(\x93" + call,
            "malformed",
        ),
        ("Python 2 module name", f"c__builtin__\neval\n(S'{cmd}'\ntR.".encode(), "eval"),
        (
            "dotted name reaching type() through an audited class",
            b"\x80\x04" + _u("sklearn.base") + _u("BaseEstimator.__class__") + b"\x93" + call,
            "BaseEstimator.__class__",
        ),
        (
            "unregistered EXT1 code",
            b"\x80\x02\x82\xf2" + b"X" + len(cmd).to_bytes(4, "little") + cmd.encode() + b"\x85R.",
            "extension code",
        ),
        ("persistent id", b"\x80\x02X\x04\x00\x00\x00evilQ.", "persistent id"),
    ]


def test_corpus_refused_before_any_code_runs(tmp_path: Path) -> None:
    trip = tmp_path / "TRIPWIRE"
    samples = corpus(trip)
    refused = 0
    for label, data, name in samples:
        with pytest.raises(tiffin.UnsafeArtifactError) as info:
            safe_loads(data)
        assert name in info.value.message, (label, info.value.message)
        assert not trip.exists(), f"{label} ran code"
        assert sniff_bytes(data), label
        refused += 1
    assert refused == len(samples) >= 50
    print(f"malicious pickles refused: {refused}/{len(samples)}")


def sniff_bytes(data: bytes) -> bool:
    return classify_bytes(data).carries_code


def test_pickles_in_containers_are_caught_whatever_the_extension(tmp_path: Path) -> None:
    import os

    import joblib
    import torch

    trip = tmp_path / "TRIPWIRE"
    payload = _reduce_payload(os.system, (f"touch {trip}",), 2)

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            return os.system, (f"touch {trip}",)

    files: dict[str, Path] = {}
    z = tmp_path / "weights.safetensors"  # a zip with a pickle, named like something safe
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    files["zip"] = z
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    (tmp_path / "model.bin").write_bytes((tmp_path / "model.pt").read_bytes())
    files["pt renamed .bin"] = tmp_path / "model.bin"
    joblib.dump(Evil(), tmp_path / "m.joblib", compress=3)
    (tmp_path / "m.json").write_bytes((tmp_path / "m.joblib").read_bytes())
    files["joblib renamed .json"] = tmp_path / "m.json"
    arr = np.empty(1, dtype=object)
    arr[0] = Evil()
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    (tmp_path / "arr.txt").write_bytes(buf.getvalue())
    files["object .npy renamed .txt"] = tmp_path / "arr.txt"
    for label, path in files.items():
        verdict = sniff(path)
        assert verdict.carries_code, (label, verdict)
    assert not trip.exists()
    with zipfile.ZipFile(z) as zf:
        member = zf.read("archive/data.pkl")
    with pytest.raises(tiffin.UnsafeArtifactError, match="os.system|posix.system"):
        safe_loads(member)
    assert not trip.exists()


def test_benign_numpy_and_sklearn_pickles_load() -> None:
    from sklearn.linear_model import LogisticRegression

    for p in PROTOCOLS:
        arr = np.arange(6, dtype=np.float32).reshape(2, 3)
        np.testing.assert_array_equal(safe_loads(pickle.dumps(arr, protocol=p)), arr)
        assert safe_loads(pickle.dumps({"a": [1, 2.5, "x"], "b": (1,)}, protocol=p)) == {
            "a": [1, 2.5, "x"],
            "b": (1,),
        }
    clf = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    again = safe_loads(pickle.dumps(clf, protocol=5))
    assert again.predict([[1.0]]).tolist() == [1]


def test_declared_types_and_malformed_streams() -> None:
    import datetime

    data = pickle.dumps(datetime.date(2024, 1, 2), protocol=2)
    with pytest.raises(tiffin.UnsafeArtifactError, match="datetime.date"):
        safe_loads(data)
    assert safe_loads(data, trusted=["datetime.date"]) == datetime.date(2024, 1, 2)
    with pytest.raises(tiffin.UnsafeArtifactError):
        safe_loads(b"\x80\x05\x95garbage")


def test_registered_extension_codes_are_checked_like_globals(tmp_path: Path) -> None:
    import copyreg

    trip = tmp_path / "TRIPWIRE"
    cmd = f"touch {trip}".encode()
    copyreg.add_extension("os", "system", 0xF1)
    try:
        data = b"\x80\x02\x82\xf1X" + len(cmd).to_bytes(4, "little") + cmd + b"\x85R."
        with pytest.raises(tiffin.UnsafeArtifactError, match="os.system"):
            safe_loads(data)
    finally:
        copyreg.remove_extension("os", "system", 0xF1)
    assert not trip.exists()


def test_every_global_is_known_before_loading() -> None:
    from tiffin.security.unpickler import scan

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
            import os

            return os.system, ("true",)

    for p in PROTOCOLS:
        names = {f"{m}.{n}" for m, n in scan(pickle.dumps([np.arange(2), Evil()], protocol=p))}
        assert names & {"os.system", "posix.system"}, (p, names)


@pytest.mark.parametrize(
    "stream",
    [b"cos system\nx\n.", b"(ios system\nx\n.", b"c os\nsystem \n."],
)
def test_text_globals_are_read_as_the_unpickler_reads_them(stream: bytes) -> None:
    """A module or name with a space: the scan reports exactly the global the
    unpickler asks for (pickletools joins the two lines with a space)."""
    from tiffin.security.unpickler import scan

    asked: list[tuple[str, str]] = []

    class Recording(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            asked.append((module, name))
            raise pickle.UnpicklingError("stop")

    with pytest.raises(pickle.UnpicklingError):
        Recording(io.BytesIO(stream)).load()
    assert scan(stream) == asked


def test_a_text_global_that_is_not_ascii_is_refused_not_guessed() -> None:
    from tiffin.security.unpickler import scan

    for stream in (b"c\xffos\nsystem\n.", b"c\xc3\xa9t\xc3\xa9\nx\n."):
        with pytest.raises(tiffin.UnsafeArtifactError, match="malformed"):
            scan(stream)


def test_numpy_random_state_and_python2_names_load() -> None:
    for p in PROTOCOLS:
        rng = safe_loads(pickle.dumps(np.random.default_rng(7), protocol=p))
        assert rng.random() == np.random.default_rng(7).random()
        legacy = safe_loads(pickle.dumps(np.random.RandomState(7), protocol=p))
        assert legacy.rand() == np.random.RandomState(7).rand()
    assert safe_loads(b"c__builtin__\nset\n((lp0\nI1\natR.") == {1}


def _call(module: str, name: str, args: bytes = b"") -> bytes:
    """Protocol 0 GLOBAL, then REDUCE with the given (already encoded) arguments."""
    return f"c{module}\n{name}\n(".encode() + args + b"tR."


def _v(text: str) -> bytes:
    return f"V{text}\n".encode()


def allowed_looking(trip: Path) -> list[tuple[str, bytes, str]]:
    """Gadgets reached through names that look allowed: NumPy helpers that read files,
    aliases of the reconstruction modules, stdlib callables that compose into a call,
    framework functions, and framework modules that are not model state."""
    cmd = _v(f"touch {trip}")
    gadgets = [
        ("numpy.load", "numpy", "load", _v(str(trip))),
        ("numpy.lib.format.read_array", "numpy.lib.format", "read_array", _v("x")),
        ("numpy.testing", "numpy.testing", "assert_equal", _v("a") + _v("a")),
        ("numpy.f2py", "numpy.f2py", "run_main", b"(" + _v("-h") + b"l"),
        ("os through a reconstruction module", "numpy.core.multiarray", "os.system", cmd),
        ("os through numpy._core", "numpy._core.multiarray", "os.system", cmd),
        ("a function's globals", "numpy.core.multiarray", "_reconstruct.__globals__", b""),
        ("builtins.getattr", "builtins", "getattr", _v("x") + _v("y")),
        ("__builtin__.getattr (py2)", "__builtin__", "getattr", _v("x") + _v("y")),
        ("operator.attrgetter", "operator", "attrgetter", _v("system")),
        ("operator.methodcaller", "operator", "methodcaller", _v("system")),
        ("functools.partial", "functools", "partial", _v("x")),
        ("types.FunctionType", "types", "FunctionType", _v("x")),
        ("types.CodeType", "types", "CodeType", _v("x")),
        ("OrderedDict classmethod", "collections", "OrderedDict.fromkeys", _v("x")),
        ("object.__subclasses__", "builtins", "object.__subclasses__", b""),
        ("builtins.type", "builtins", "type", _v("x")),
        ("_codecs.decode", "_codecs", "decode", _v("x")),
        ("scipy.io.loadmat", "scipy.io", "loadmat", _v(str(trip))),
        ("scipy.sparse.load_npz", "scipy.sparse", "load_npz", _v(str(trip))),
        ("sklearn.datasets.fetch_openml", "sklearn.datasets", "fetch_openml", _v("x")),
        ("a module attribute of sklearn", "sklearn.utils", "os.system", cmd),
        ("sklearn estimator_checks", "sklearn.utils.estimator_checks", "check_estimator", b""),
        ("sklearn _mocking (takes callables)", "sklearn.utils._mocking", "CheckingClassifier", b""),
        ("sklearn deprecated (rewrites classes)", "sklearn.utils.deprecation", "deprecated", b""),
        ("sklearn Parallel (runs callables)", "sklearn.utils.parallel", "Parallel", b""),
        ("sklearn test module", "sklearn.tests.test_base", "K", b""),
        ("sklearn conftest", "sklearn.conftest", "X", b""),
        ("scipy.sparse test module", "scipy.sparse.tests.test_base", "X", b""),
        ("sklearn.experimental", "sklearn.experimental.enable_iterative_imputer", "X", b""),
        ("sklearn build helpers", "sklearn._build_utils", "X", b""),
        ("relative module", "..os", "system", cmd),
    ]
    samples = [(label, _call(m, n, a), f"{m}.{n}") for label, m, n, a in gadgets]
    samples += [
        (
            "copyreg._reconstructor with a dangerous base",
            _call("copyreg", "_reconstructor", b"cos\nsystem\ncbuiltins\nobject\nN"),
            "os.system",
        ),
        (
            "copyreg.__newobj__ on subprocess.Popen",
            _call("copyreg", "__newobj__", b"csubprocess\nPopen\n" + cmd),
            "subprocess.Popen",
        ),
        (
            "numpy random ctor handed os.system",
            _call("numpy.random._pickle", "__generator_ctor", cmd + b"cos\nsystem\n"),
            "os.system",
        ),
        (
            "FunctionTransformer holding os.system",
            _call(
                "sklearn.preprocessing._function_transformer",
                "FunctionTransformer",
                b"cos\nsystem\n",
            ),
            "os.system",
        ),
        (
            "BUILD setting a method on a SciPy class",
            b"cscipy.sparse._csr\ncsr_matrix\n(N}V__repr__\ncbuiltins\nstr\nstb0(l.",
            "csr_matrix itself",
        ),
        (
            "BUILD setting a method on a scikit-learn class, through the memo",
            b"\x80\x04\x8c\x20sklearn.gaussian_process.kernels\x94\x8c\x03RBF\x94\x93\x94"
            b"h\x02(N}\x8c\x08__call__\x8c\x08builtins\x8c\x03str\x93stb0]\x94.",
            "RBF itself",
        ),
        (
            "BUILD rewriting a function's __defaults__",
            b"ccopyreg\n_reconstructor\n(N}V__defaults__\n(I1\nttb0(l.",
            "_reconstructor itself",
        ),
        (
            "BUILD on a class returned by a call",
            b"\x80\x04\x8c\x08builtins\x8c\x04list\x93)R0"  # a harmless call first
            b"\x8c\x11scipy.sparse._csr\x8c\ncsr_matrix\x93\x940h\x00(N}\x8c\x01x"
            b"\x8c\x08builtins\x8c\x03str\x93stb.",
            "csr_matrix itself",
        ),
    ]
    return samples


def test_gadgets_through_allowed_looking_names_refused(tmp_path: Path) -> None:
    import sys

    from scipy.sparse import csr_matrix
    from sklearn.gaussian_process.kernels import RBF

    trip = tmp_path / "TRIPWIRE"
    untouched = (csr_matrix.__repr__, RBF.__call__)
    samples = allowed_looking(trip)
    refused = 0
    for label, data, name in samples:
        was_loaded = {m for m in sys.modules if m.startswith(("sklearn.tests", "sklearn.conf"))}
        with pytest.raises(tiffin.UnsafeArtifactError) as info:
            safe_loads(data)
        assert name in info.value.message, (label, info.value.message)
        assert not trip.exists(), f"{label} ran code"
        assert sniff_bytes(data), label
        now = {m for m in sys.modules if m.startswith(("sklearn.tests", "sklearn.conf"))}
        assert now == was_loaded, f"{label} imported {now - was_loaded} before refusing"
        refused += 1
    assert (csr_matrix.__repr__, RBF.__call__) == untouched
    assert refused == len(samples) >= 40
    print(f"gadgets through allowed-looking names refused: {refused}/{len(samples)}")


def test_a_refused_pickle_leaves_framework_classes_as_they_were() -> None:
    """deprecated()(cls) would make every later LogisticRegression() warn, process-wide."""
    import warnings

    from sklearn.linear_model import LogisticRegression

    data = (
        b"csklearn.utils.deprecation\ndeprecated\n(Vowned\ntR"
        b"(csklearn.linear_model._logistic\nLogisticRegression\ntR."
    )
    with pytest.raises(tiffin.UnsafeArtifactError, match="deprecation.deprecated"):
        safe_loads(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LogisticRegression()
    assert "sklearn.experimental.enable_iterative_imputer" not in __import__("sys").modules


def test_real_model_state_still_loads() -> None:
    """The narrower allow-list keeps fitted models of the common families loadable."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.gaussian_process import GaussianProcessClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = make_classification(60, 4, random_state=0)
    models = [
        make_pipeline(StandardScaler(), RandomForestClassifier(3, random_state=0)),
        HistGradientBoostingClassifier(max_iter=3),
        GaussianProcessClassifier(),
        MLPClassifier(max_iter=5),
    ]
    with __import__("warnings").catch_warnings():
        __import__("warnings").simplefilter("ignore")  # convergence warnings of tiny fits
        for model in models:
            model.fit(X, y)
            again = safe_loads(pickle.dumps(model, protocol=5))
            np.testing.assert_array_equal(again.predict(X), model.predict(X))


_PTR = (0x4141414141414141).to_bytes(8, "little")
_DT_O = b"cnumpy\ndtype\nX\x02\x00\x00\x00O8\x89\x88\x87R"  # dtype("O8", False, True)
_STATE = b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xff"  # subarray, names, fields, -1, -1
_RECON = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R"

# Only allowed NumPy names, aimed at memory: each segfaulted or corrupted the process.
NUMPY_MEMORY = {
    "object dtype with its flags zeroed, raw bytes as pointers": (
        b"\x80\x02" + _RECON + b"(K\x01K\x01\x85" + _DT_O
        + b"(K\x03X\x01\x00\x00\x00|" + _STATE + b"K\x00tb\x89C\x08" + _PTR + b"tb.",
        "a state NumPy would never write",
    ),
    "float dtype claiming to hold objects": (
        b"\x80\x02" + _RECON + b"(K\x01K\x01\x85cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R"
        b"(K\x03X\x01\x00\x00\x00<" + _STATE + b"K\x3ftb\x89C\x08" + _PTR + b"tb.",
        "a state NumPy would never write",
    ),
    "structured dtype smaller than its fields": (
        b"\x80\x02cnumpy\ndtype\nX\x03\x00\x00\x00V16\x89\x88\x87R(K\x03X\x01\x00\x00\x00|N"
        b"(X\x01\x00\x00\x00at}X\x01\x00\x00\x00acnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x88\x87R"
        b"K\x64\x86sK\x08K\x01K\x00tb.",
        "a state NumPy would never write",
    ),
    "dtype given object fields after an array uses it": (
        b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00V8\x89\x88\x87R\x94" + _RECON
        + b"(K\x01K\x01\x85h\x00\x89C\x08" + _PTR + b"tb0h\x00(K\x03X\x01\x00\x00\x00|N"
        b"(X\x01\x00\x00\x00atq\x01}X\x01\x00\x00\x00a" + _DT_O + b"K\x00\x86sK\x08K\x01K\x3ftb.",
        "after other objects refer to it",
    ),
    "the process-wide float64 dtype (copy=False) rebuilt": (
        b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00f8\x89\x89\x87R(K\x03X\x01\x00\x00\x00>"
        + _STATE + b"K\x00tb.",
        "after other objects refer to it",
    ),
    "ndarray(shape, object, buffer) by REDUCE": (
        b"\x80\x02cnumpy\nndarray\nK\x01\x85" + _DT_O + b"C\x08" + _PTR + b"\x87R.",
        "calls the array class",
    ),
    "ndarray by NEWOBJ": (
        b"\x80\x02cnumpy\nndarray\nK\x01\x85" + _DT_O + b"C\x08" + _PTR + b"\x87\x81.",
        "calls the array class",
    ),
    "ndarray through copyreg.__newobj__": (
        b"\x80\x02ccopyreg\n__newobj__\n(cnumpy\nndarray\nK\x01\x85" + _DT_O + b"C\x08" + _PTR
        + b"tR.",
        "calls the array class",
    ),
    "ndarray by OBJ": (
        b"(cnumpy\nndarray\n(I1\nt" + _DT_O + b"C\x08" + _PTR + b"o.",
        "calls the array class",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(NUMPY_MEMORY))
def test_numpy_reconstruction_cannot_forge_pointers(case: str) -> None:
    """Run in a child: before the guard, touching the result segfaulted (rc -11)."""
    import subprocess
    import sys

    data, message = NUMPY_MEMORY[case]
    child = (
        "import sys, tiffin\n"
        "from tiffin.security.unpickler import safe_loads\n"
        "try:\n"
        "    a = safe_loads(sys.stdin.buffer.read()); print('LOADED', repr(a))\n"
        "except tiffin.UnsafeArtifactError as e:\n"
        "    print('REFUSED', e.message)\n"
    )
    run = subprocess.run([sys.executable, "-c", child], input=data, capture_output=True)
    assert run.returncode == 0, (case, run.returncode, run.stderr[-300:])
    out = run.stdout.decode()
    assert out.startswith("REFUSED") and message in out, (case, out)


def _mt_state_pickles() -> dict[str, bytes]:
    """MT19937 with its read position far outside its 624-word key, three ways."""
    bitgen = np.random.MT19937(0)
    state = bitgen.state
    state["state"]["pos"] = 10**8
    ctor, args = bitgen.__reduce__()[:2]
    legacy = np.random.RandomState(0).__reduce__()
    legacy_state = dict(legacy[2])
    legacy_state["state"] = {**legacy_state["state"], "pos": 10**8}
    generator_ctor = getattr(np.random._pickle, "__generator_ctor")

    class Bit:
        def __reduce__(self) -> Any:
            return ctor, args, state

    class Legacy:
        def __reduce__(self) -> Any:
            return legacy[0], legacy[1], legacy_state

    class Gen:
        def __reduce__(self) -> Any:
            return generator_ctor, (Bit(),)

    return {
        "MT19937": pickle.dumps(Bit(), protocol=2),
        "RandomState": pickle.dumps(Legacy(), protocol=2),
        "Generator": pickle.dumps(Gen(), protocol=4),
    }


@pytest.mark.parametrize("kind", ["MT19937", "RandomState", "Generator"])
def test_random_generator_state_cannot_read_outside_its_key(kind: str) -> None:
    """pos=10**8 was accepted as given; the first draw then segfaulted (rc -11)."""
    import subprocess
    import sys

    child = (
        "import sys, tiffin\n"
        "from tiffin.security.unpickler import safe_loads\n"
        "try:\n"
        "    g = safe_loads(sys.stdin.buffer.read())\n"
        "    (g.random_raw if hasattr(g, 'random_raw') else g.random)(); print('DREW')\n"
        "except tiffin.UnsafeArtifactError as e:\n"
        "    print('REFUSED', e.message)\n"
    )
    data = _mt_state_pickles()[kind]
    run = subprocess.run([sys.executable, "-c", child], input=data, capture_output=True)
    assert run.returncode == 0, (kind, run.returncode)
    assert run.stdout.decode().startswith("REFUSED") and "read position" in run.stdout.decode()


def test_code_module_named_like_stdlib_does_not_let_stdlib_in(tmp_path: Path) -> None:
    """A package's code/ holding subprocess.py or logging.py made subprocess.Popen and
    logging.FileHandler "the package's own classes": a third-party pickle ran a command."""
    import sys

    from tiffin.security.unpickler import code_modules_of

    code = tmp_path / "code"
    code.mkdir()
    (code / "subprocess.py").write_text("")  # shadows nothing (stdlib is imported already)
    (code / "logging.py").write_text("")
    (code / "trust_probe_model.py").write_text(
        "class Model:\n    def __init__(self):\n        self.w = 1\n"
    )
    modules = code_modules_of(code)
    trip = tmp_path / "TRIPWIRE"
    attacks = {
        "subprocess.Popen": f"csubprocess\nPopen\n((Vtouch\nV{trip}\nltR.".encode(),
        "logging.FileHandler": f"clogging\nFileHandler\n(V{trip}\ntR.".encode(),
    }
    for name, data in attacks.items():
        with pytest.raises(tiffin.UnsafeArtifactError, match=name):
            safe_loads(data, code_modules=modules)
        assert not trip.exists(), name
    sys.path.insert(0, str(code))
    try:
        import trust_probe_model  # type: ignore[import-not-found]

        again = safe_loads(
            pickle.dumps(trust_probe_model.Model(), protocol=5), code_modules=modules
        )
        assert again.w == 1  # the package's own classes still load
    finally:
        sys.path.remove(str(code))
        sys.modules.pop("trust_probe_model", None)
