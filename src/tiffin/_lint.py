"""``tiffin lint``: the packaging anti-patterns, each with a severity, a place and a fix.

| rule | severity | finds |
|---|---|---|
| TL001 absolute-path | error | hard-coded absolute paths in the logic layer (code/) |
| TL002 training-dependency | warning | plotting, experiment tracking, notebook tools in the requirements |
| TL003 implicit-dependency | error | imports in code/ that no requirement provides |
| TL004 data-in-package | warning | data-set-like files or large tables in the package |
| TL005 unpinned-requirement | error | requirements without an exact ``==`` version, or "latest" |
| TL006 pickle-artifact | warning | artifacts whose bytes are pickle (whatever their name) |
| TL007 missing-example | warning | no recorded example, or an empty signature |
| TL008 unhashed-lock | warning | a lock without hashes (the installed closure of an offline pack) |
"""

from __future__ import annotations

import ast
import json
import re
import sys
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .env.lock import UNHASHED_HEADER
from .env.pins import top_level_owners
from .errors import PackageNotFoundError, VerificationError
from .flavors import byte_formats
from .package import layout
from .security.sniff import sniff

TRAINING_ONLY = frozenset({
    "matplotlib", "seaborn", "plotly", "bokeh", "altair", "mlflow", "wandb", "tensorboard",
    "tensorboardx", "comet-ml", "neptune", "clearml", "aim", "optuna", "ray-tune", "jupyter",
    "jupyterlab", "notebook", "ipykernel", "ipython", "ipywidgets", "nbconvert", "papermill",
    "pytest", "black", "ruff", "mypy", "flake8", "pylint",
    "mlflow-skinny", "mlflow-tracing", "tensorboard-data-server", "torch-tb-profiler",
    "jupyter-core", "jupyter-client", "jupyter-server", "jupyter-console", "nbformat",
    "nbclient", "voila", "ydata-profiling", "pandas-profiling", "sweetviz", "dvc", "sacred",
    "hyperopt", "pre-commit", "isort", "coverage", "tox", "nox", "pyright", "bandit",
    "keras-tuner",
})  # fmt: skip
# Families named by a prefix: pytest plugins, jupyterlab extensions, MLflow's parts.
TRAINING_PREFIXES = ("pytest-", "jupyterlab-", "jupyter-", "mlflow-", "wandb-", "types-")
DATA_SUFFIXES = frozenset(
    {
        ".csv",
        ".tsv",
        ".parquet",
        ".feather",
        ".arrow",
        ".xlsx",
        ".xls",
        ".jsonl",
        ".h5",
        ".hdf5",
        ".sqlite",
        ".db",
        ".avro",
        ".orc",
    }
)
LARGE_TABLE_BYTES = 10 << 20
KNOWN_IMPORTS: dict[str, tuple[str, ...]] = {
    "scikit-learn": ("sklearn",), "scikit-image": ("skimage",), "pillow": ("PIL",),
    "opencv-python": ("cv2",), "opencv-python-headless": ("cv2",), "pyyaml": ("yaml",),
    "beautifulsoup4": ("bs4",), "python-dateutil": ("dateutil",), "protobuf": ("google",),
    "attrs": ("attr", "attrs"), "typing-extensions": ("typing_extensions",),
    "pytorch-lightning": ("pytorch_lightning",), "sentence-transformers": ("sentence_transformers",),
}  # fmt: skip
_ABS_PATH = re.compile(
    r"^(/(home|Users|tmp|mnt|media|data|datasets|models|opt|var|srv|root|workspace|content"
    r"|work|app|scratch|nfs|gpfs|dbfs|Volumes|private|usr|etc|lustre|shared|storage|efs|nas"
    r"|kaggle|export|net|gcs|s3)/|[A-Za-z]:[\\/]|~/|\\\\[^\\]+\\)"
)
# Any other absolute path, two folders deep or more, to a file of a kind a model reads
# (``/weights/model.pt``); a URL path such as ``/api/v1/predict`` has no such suffix and
# ``/openapi.json`` is one level. Device and kernel files aside.
_ABS_FILE = re.compile(
    r"^/(?!dev/|proc/|sys/)[^\s/:]+(/[^\s/:]+)+\.(pt|pth|bin|ckpt|safetensors|onnx|pkl|pickle"
    r"|joblib|h5|hdf5|npy|npz|csv|tsv|parquet|json|ya?ml|txt|model|ubj|msgpack|tar|gz|zip)$",
    re.IGNORECASE,
)
_PIN = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[^\]]*\])?\s*===?\s*[A-Za-z0-9][A-Za-z0-9.+!_-]*\s*(;.*)?$"
)


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    file: str
    line: int | None
    message: str
    fix: str

    def render(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        return f"{self.severity}: {self.rule} {where}: {self.message}\n  fix: {self.fix}"


def _module_owners() -> dict[str, set[str]]:
    owners: dict[str, set[str]] = {}
    for top, dists in top_level_owners().items():
        for d in dists:
            owners.setdefault(re.sub(r"[-_.]+", "-", d).lower(), set()).add(top)
    return owners


def _requirements(root: Path) -> list[tuple[int, str]]:
    path = root / layout.REQUIREMENTS
    if not path.is_file():
        return []
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if text and not text.startswith("-"):
            out.append((i, text))
    return out


def _code_files(root: Path) -> list[Path]:
    code = root / layout.CODE_DIR
    return sorted(code.rglob("*.py")) if code.is_dir() else []


def check_paths(root: Path) -> list[Finding]:
    found = []
    for file in _code_files(root):
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError) as exc:
            found.append(
                Finding(
                    "TL001",
                    "error",
                    file.relative_to(root).as_posix(),
                    None,
                    f"cannot parse: {exc}",
                    "fix the syntax",
                )
            )
            continue
        docstrings = _docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and (_ABS_PATH.match(node.value) or _ABS_FILE.match(node.value))
            ):
                found.append(Finding(
                    "TL001", "error", file.relative_to(root).as_posix(), node.lineno,
                    f"hard-coded absolute path {node.value!r}",
                    "ship the file as an artifact and read it from context.artifacts, or take the path from configuration",
                ))  # fmt: skip
    return found


def _docstrings(tree: ast.AST) -> set[int]:
    """The string constants that are documentation (a module, class or function docstring,
    or any bare string statement): prose about a path is not a path the code opens."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            found.add(id(node.value))
    return found


def check_training_deps(root: Path) -> list[Finding]:
    found = []
    for line, req in _requirements(root):
        name = re.sub(r"[-_.]+", "-", re.split(r"[\s=<>!~;\[]", req, maxsplit=1)[0]).lower()
        if name in TRAINING_ONLY or name.startswith(TRAINING_PREFIXES):
            found.append(Finding(
                "TL002", "warning", layout.REQUIREMENTS, line, f"{name} is a training, tracking or notebook tool",
                f"drop {name} from the requirements; inference does not need it",
            ))  # fmt: skip
    return found


def check_implicit_deps(root: Path) -> list[Finding]:
    owners = _module_owners()
    provided: set[str] = set()
    for _, req in _requirements(root):
        name = re.sub(r"[-_.]+", "-", re.split(r"[\s=<>!~;\[]", req, maxsplit=1)[0]).lower()
        # Not installed where lint runs: the usual import names for well-known ones.
        guess = {name.replace("-", "_"), *KNOWN_IMPORTS.get(name, ())}
        provided |= owners.get(name, guess)
    local = (
        {p.stem for p in _code_files(root)}
        | {p.name for p in (root / layout.CODE_DIR).iterdir() if p.is_dir()}
        if (root / layout.CODE_DIR).is_dir()
        else set()
    )
    stdlib = set(sys.stdlib_module_names)
    trees = {}
    for file in _code_files(root):
        try:
            trees[file] = ast.parse(file.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
    unused = _unused_definitions(root, trees)
    found = []
    for file, tree in trees.items():
        optional = _guarded_imports(tree) | unused
        for node in ast.walk(tree):
            names: list[str] = []
            if id(node) in optional:
                continue
            if isinstance(node, ast.Import):
                names = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            elif (dynamic := _dynamic_import(node)) is not None:
                names = [dynamic.split(".")[0]]
            for top in names:
                if (
                    top in stdlib
                    or top in local
                    or top in provided
                    or top in ("tiffin", "__future__")
                ):
                    continue
                found.append(Finding(
                    "TL003", "error", file.relative_to(root).as_posix(), getattr(node, "lineno", None),
                    f"imports {top!r}, which no requirement provides",
                    f"add the distribution that provides {top!r} to the requirements (pinned)",
                ))  # fmt: skip
    return found


def _dynamic_import(node: ast.AST) -> str | None:
    """``importlib.import_module("yaml")`` or ``__import__("yaml")`` with a literal name."""
    if not (isinstance(node, ast.Call) and node.args):
        return None
    func = node.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    first = node.args[0]
    name = first.value if isinstance(first, ast.Constant) else None
    if called in ("import_module", "__import__") and isinstance(name, str):
        return name if name and not name.startswith(".") else None
    return None


def _unused_definitions(root: Path, trees: dict[Path, ast.Module]) -> set[int]:
    """The imports inside top-level classes and functions that nothing uses.

    Only for a custom model, whose entry class the manifest names: a class or function
    of code/ that is not that class and that no code refers to (by name, attribute or
    string) never runs, so the imports in its methods are never made. Imports in a class
    body itself run when the module is imported, and stay checked. For other flavors the
    saved model may refer to code/ (a scikit-learn FunctionTransformer's function), so
    everything there counts as used.
    """
    try:
        runtime = json.loads((root / layout.MANIFEST).read_text(encoding="utf-8"))["runtime"]
        entry = runtime["options"]["class"] if runtime["flavor"] == "custom" else None
    except (OSError, ValueError, KeyError, TypeError):
        entry = None
    if not isinstance(entry, str):
        return set()
    referred: dict[str, int] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                name = node.id
            elif isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value
            elif isinstance(node, ast.alias):
                name = (node.asname or node.name).split(".")[-1]
            else:
                continue
            referred[name] = referred.get(name, 0) + 1
    skipped: set[int] = set()
    for tree in trees.values():
        for node in tree.body:
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if node.name == entry or referred.get(node.name, 0):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                    skipped |= {
                        id(n)
                        for n in ast.walk(inner)
                        if isinstance(n, (ast.Import, ast.ImportFrom, ast.Call))
                    }
    return skipped


_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


def _guarded_imports(tree: ast.AST) -> set[int]:
    """Imports the code expects may fail: in a ``try`` that catches ImportError (an
    optional speed-up with a fallback), or under ``if TYPE_CHECKING:`` (never run)."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        body: list[ast.stmt] = []
        if isinstance(node, ast.Try):
            caught: set[str] = set()
            for handler in node.handlers:
                kinds = handler.type
                elts = kinds.elts if isinstance(kinds, ast.Tuple) else [kinds]
                if kinds is None:
                    caught.add("BaseException")
                caught |= {e.id if isinstance(e, ast.Name) else getattr(e, "attr", "")
                           for e in elts if e is not None}  # fmt: skip
            if caught & _IMPORT_ERRORS:
                body = node.body
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            body = node.body
        for stmt in body:
            guarded |= {
                id(n) for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))
            }
    return guarded


def check_data(root: Path) -> list[Finding]:
    found = []
    for rel in _package_files(root):
        path = root / rel
        if rel.startswith(layout.EXAMPLES_DIR + "/"):
            continue
        suffix = path.suffix.lower()
        size = path.stat().st_size
        content = None if suffix in DATA_SUFFIXES else _data_content(path, size)
        if (
            suffix in DATA_SUFFIXES
            or content
            or (rel.startswith(layout.CODE_DIR + "/") and size > LARGE_TABLE_BYTES)
        ):
            what = content or suffix or "large file"
            found.append(Finding(
                "TL004", "warning", rel, None, f"looks like data ({what}, {size:,} bytes)",
                "keep data sets out of model packages; ship only what inference reads",
            ))  # fmt: skip
    return found


_DATA_MAGIC = (
    (b"PAR1", "Parquet content"),
    (b"SQLite format 3\0", "SQLite content"),
    (b"ARROW1", "Arrow content"),
    (b"Obj\x01", "Avro content"),
    (b"ORC", "ORC content"),
    (b"PK\x03\x04", None),  # a zip: a spreadsheet if it holds xl/ (checked below)
)
TABLE_TEXT_BYTES = 16 << 10


def _data_content(path: Path, size: int) -> str | None:
    """What a file holds when its name hides it: a table format's magic, or CSV-like text
    (a renamed ``train.csv``), the latter only past a size a lookup table would have."""
    if path.suffix.lower() == ".py":
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(8192)
    except OSError:
        return None
    for magic, what in _DATA_MAGIC:
        if head.startswith(magic):
            if what is None:
                return "spreadsheet content" if _is_spreadsheet(path) else None
            return what
    if size < TABLE_TEXT_BYTES:
        return None
    try:  # whole lines only: the read may have cut a character in two
        text = head[: head.rfind(b"\n") + 1].decode("utf-8")
    except UnicodeDecodeError:
        return None  # binary: weights, not a table
    lines = [line for line in text.splitlines() if line.strip()][:40]
    if len(lines) < 10:
        return None
    for sep in (",", "\t", ";", "|"):
        counts = [line.count(sep) for line in lines]
        if counts[0] >= 1 and sum(c == counts[0] for c in counts) >= 0.9 * len(counts):
            return f"{'tab' if sep == chr(9) else repr(sep)}-separated table"
    return None


def _is_spreadsheet(path: Path) -> bool:
    """A zip is a spreadsheet when it has an ``xl/`` folder (the Office Open XML layout).

    Its member names are read, not its bytes: a saved model (skops is a zip of ``.npy``
    files) holds arbitrary binary data that may contain ``xl/`` by chance.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.startswith("xl/") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def check_pins(root: Path) -> list[Finding]:
    found = []
    for line, req in _requirements(root):
        if not _PIN.match(req) or "latest" in req.lower():
            found.append(Finding(
                "TL005", "error", layout.REQUIREMENTS, line, f"{req!r} is not pinned to one version",
                "pin it exactly, e.g. name==1.2.3",
            ))  # fmt: skip
    return found


def check_pickle(root: Path) -> list[Finding]:
    found = []
    formats = byte_formats()
    for rel in _package_files(root):
        if not rel.startswith(layout.ARTIFACTS_DIR + "/"):
            continue
        verdict = sniff(root / rel, formats=formats)
        if verdict.carries_code:
            found.append(Finding(
                "TL006", "warning", rel, None, f"{verdict.kind}: {verdict.detail}",
                "save the model in its framework's pickle-free format (tiffin's default flavors do)",
            ))  # fmt: skip
    return found


def check_example(root: Path) -> list[Finding]:
    found = []
    if not (root / layout.EXAMPLE_INPUT).is_file():
        found.append(Finding("TL007", "warning", layout.EXAMPLES_DIR, None, "no recorded example",
                             "pack with example= so verify can replay it"))  # fmt: skip
    try:
        sig = json.loads((root / layout.SCHEMA).read_text())
        empty = not sig.get("inputs")
    except (OSError, ValueError):
        empty = True
    if empty:
        found.append(
            Finding(
                "TL007",
                "warning",
                layout.SCHEMA,
                None,
                "no signature",
                "pack with example= or signature=",
            )
        )
    return found


def check_lock(root: Path) -> list[Finding]:
    path = root / layout.LOCK
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(len(UNHASHED_HEADER))
    except OSError:
        return []
    if head != UNHASHED_HEADER:
        return []
    return [
        Finding(
            "TL008",
            "warning",
            layout.LOCK,
            1,
            "the lock has no hashes: it is the closure of what was installed, not a resolution",
            "lock it where a package index is reachable: tiffin env lock PKG",
        )
    ]


def _package_files(root: Path) -> list[str]:
    from .package.integrity import walk_files

    return [r for r in walk_files(root) if r not in layout.UNINDEXED]


CHECKS = (
    check_paths,
    check_training_deps,
    check_implicit_deps,
    check_data,
    check_pins,
    check_pickle,
    check_example,
    check_lock,
)


def lint(path: str | Path) -> list[Finding]:
    """Every finding for the package (or package folder being written) at ``path``."""
    root = Path(path)
    if root.is_file():  # a single-file archive
        from .package.archive import open_archive

        root = open_archive(root)
    if not (root / layout.MANIFEST).is_file():
        raise PackageNotFoundError(
            f"{root} is not a tiffin package (it has no {layout.MANIFEST})",
            where=str(root),
            fix="give the folder that `tiffin pack` wrote",
        )
    findings: list[Finding] = []
    for check in CHECKS:
        findings.extend(check(root))
    return findings


def lint_package(root: Path, *, strict: bool = False, report: bool = True) -> list[Finding]:
    """What pack runs: print findings as warnings; under ``strict`` any finding fails."""
    findings = lint(root)
    if report and findings:
        for f in findings:
            sys.stderr.write(f"tiffin lint: {f.render()}\n")
    if strict and findings:
        raise VerificationError(
            f"{len(findings)} lint finding(s) under --strict: "
            + "; ".join(f"{f.rule} {f.file}" for f in findings),
            fix="fix the findings above, or pack without --strict",
        )
    return findings


def as_json(findings: list[Finding]) -> str:
    return json.dumps([asdict(f) for f in findings], indent=2)


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity == "error" for f in findings)


def summarize(findings: list[Finding]) -> dict[str, Any]:
    return {
        "errors": sum(f.severity == "error" for f in findings),
        "warnings": sum(f.severity == "warning" for f in findings),
    }
