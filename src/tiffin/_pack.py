"""The pack pipeline: flavor -> reload check -> signature -> examples -> env -> card -> seal.

Everything is written into a temporary folder beside the destination, the package is
reloaded from there and run on the example (so a package that cannot load never ships),
sealed, fsynced and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import flavors
from ._lint import lint_package
from ._load import load
from .env import capture
from .errors import ConflictError, FlavorError, TiffinError, UnsafeArtifactError, UsageError
from .logic.namespace import forgetting_imports_from
from .logic.sources import copy_code
from .package import layout, provenance
from .package.atomic import (
    clean_stale,
    destination_lock,
    disk_error,
    fsync_dir,
    make_temp_dir,
    publish,
)
from .package.integrity import index_files
from .package.manifest import Described, Manifest, pretty_json, validate_name, validate_version
from .schema import typed_json as example_codec
from .schema.modelcard import render
from .schema.signature import Signature, named_arrays
from .security.sniff import check_artifacts


@dataclass(frozen=True)
class Package(Described):
    """A sealed package folder."""

    path: Path
    manifest: Manifest

    def load(self, **kwargs: Any) -> Any:
        return load(self.path, **kwargs)

    def __repr__(self) -> str:
        return f"Package({self.name} {self.version}, {self.digest[:19]}…, {self.path})"


def pack(
    model: Any,
    dest: str | os.PathLike[str],
    *,
    name: str,
    version: str,
    example: Any = None,
    method: str = "predict",
    flavor: str | None = None,
    code: Sequence[str | os.PathLike[str]] | None = None,
    artifacts: Mapping[str, str | os.PathLike[str]] | None = None,
    requirements: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
    signature: Signature | Mapping[str, Any] | None = None,
    dynamic_axes: Mapping[str, Sequence[int]] | None = None,
    allow_pickle: bool = False,
    trusted_types: Sequence[str] = (),
    batching: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    python: str | None = None,
    platform: str | None = None,
    strict: bool = False,
    force: bool = False,
) -> Package:
    """Pack ``model`` into a sealed package folder at ``dest``.

    ``model`` is a model object, a model file path, or ``"path/to/file.py:ClassName"``.
    The model's output on ``example`` is recorded with it and used to infer the signature.
    ``options`` go to the flavor (``init_kwargs`` and ``device`` for PyTorch, ``device``
    for ONNX). ``dynamic_axes`` names the axes, beyond the batch axis, that take any size
    (``{"tokens": [1]}``); docs/signature.md describes the signature.

    Example::

        pkg = tiffin.pack(clf, "out/iris-1.0.0", name="iris", version="1.0.0", example=X[:5])
    """
    validate_name(name, UsageError)
    validate_version(version, UsageError)
    meta = dict(metadata or {})
    _check_json(meta, "metadata")
    dest = Path(os.path.abspath(dest))  # absolute, '..' folded, links kept
    if isinstance(model, (str, os.PathLike)) and not (
        ":" in str(model) and str(model).rsplit(":", 1)[0].endswith(".py")
    ):
        model = Path(model)
        if not model.exists():
            raise UsageError(f"model file {model} does not exist")
    chosen = flavors.get(flavor) if flavor else flavors.detect(model)
    if chosen.NAME == "pickle" and not allow_pickle:
        raise UnsafeArtifactError(
            "this model can only be saved with pickle, which runs code when loaded",
            fix="use a framework tiffin saves safely, wrap the model in a custom class, or pass "
            "allow_pickle=True (and allow_pickle=True again at load)",
        )
    if dest.exists() and not force:
        raise ConflictError(
            f"{dest} already exists", fix="choose another destination or pass force=True"
        )

    made = _make_parents(dest)
    try:
        clean_stale(dest.parent, dest.name)
        with destination_lock(dest):
            tmp = make_temp_dir(dest)
            try:
                manifest = _write(
                    tmp, model, chosen, name=name, version=version, example=example, method=method,
                    code=code, artifacts=artifacts, requirements=requirements, metadata=meta,
                    signature=signature, dynamic_axes=dynamic_axes, allow_pickle=allow_pickle,
                    trusted_types=tuple(trusted_types),
                    batching=batching, options=options, python=python, platform=platform,
                    strict=strict,
                )  # fmt: skip
                publish(tmp, dest, replace=force)
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                raise disk_error(exc, dest) from exc
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except BaseException:
        _remove_made(made, dest)
        raise
    return Package(path=dest, manifest=manifest)


def _make_parents(dest: Path) -> list[Path]:
    """Create the destination's missing parent folders; return those made, outermost first."""
    missing: list[Path] = []
    folder = dest.parent
    while not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            raise UsageError(
                f"{folder} is not a folder, so {dest} cannot be created",
                where=str(dest),
                fix="choose a destination whose parent is a folder",
            )
        missing.append(folder)
        folder = folder.parent
    made: list[Path] = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            made.append(folder)
            fsync_dir(folder.parent)
    except OSError as exc:
        _remove_made(made, dest)
        raise disk_error(exc, dest) from exc
    return made


def _remove_made(made: list[Path], dest: Path) -> None:
    """Undo :func:`_make_parents` after a failed pack; a folder someone else filled stays."""
    if not made:
        return
    with contextlib.suppress(OSError):
        (dest.parent / f".{dest.name}.tiffin-lock").unlink()
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            return


def _check_json(value: Any, where: str) -> None:
    try:
        pretty_json(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where} must be JSON-serialisable: {exc}", where=where) from None


def _write(
    root: Path,
    model: Any,
    flavor: Any,
    *,
    name: str,
    version: str,
    example: Any,
    method: str,
    code: Sequence[str | os.PathLike[str]] | None,
    artifacts: Mapping[str, str | os.PathLike[str]] | None,
    requirements: Sequence[str] | None,
    metadata: dict[str, Any],
    signature: Signature | Mapping[str, Any] | None,
    dynamic_axes: Mapping[str, Sequence[int]] | None,
    allow_pickle: bool,
    trusted_types: tuple[str, ...],
    batching: Mapping[str, Any] | None,
    options: Mapping[str, Any] | None,
    python: str | None,
    platform: str | None,
    strict: bool,
) -> Manifest:
    ctx = flavors.SaveContext(
        root=root, method=method, example=example, allow_pickle=allow_pickle,
        trusted_types=trusted_types, options={**dict(options or {}), "artifacts": dict(artifacts or {})},
    )  # fmt: skip
    runtime_options = flavor.save(model, ctx)
    check_artifacts(root, allow_pickle=allow_pickle, formats=flavors.byte_formats())
    if code:
        runtime_options["code"] = copy_code([Path(p) for p in code], ctx.code)
    runtime: dict[str, Any] = {"flavor": flavor.NAME, "options": runtime_options}
    if batching:
        runtime["batching"] = dict(batching)

    prepare = getattr(flavor, "prepare_example", None)  # the example in the model's own dtypes
    if example is not None and prepare is not None:
        example = prepare(example, runtime_options)
    # The record is what the model the user passed answers; state the saved files do not
    # carry would otherwise ship as silently wrong answers that verify calls verified.
    expected = (
        None
        if example is None
        else _original_output(model, flavor, method, runtime_options, example)
    )

    # Reload what was written and run it: a package that cannot load never ships.
    with forgetting_imports_from(root):
        loaded = flavor.load(
            flavors.LoadContext(path=root, options=runtime_options, allow_pickle=allow_pickle)
        )
        output = None
        if example is not None:
            try:
                output = loaded.predict(example)
            except TiffinError:
                raise
            except Exception as exc:
                raise FlavorError(
                    f"the reloaded model failed on the example: {exc!r}",
                    fix="check that the example is what the model's predict takes",
                ) from exc
            if output is None:
                raise FlavorError(
                    "the model returned None on the example",
                    fix="make predict return its predictions (an array, a dict of arrays, ...)",
                )
    if expected is not None:
        problem = example_codec.compare(expected, output, **_tolerance(expected))
        if problem:
            raise FlavorError(
                "the saved model does not reproduce the model you passed (rebuilt from the "
                f"package, it computes something else on the example): {problem}",
                fix=getattr(flavor, "REBUILD_FIX", None) or "the saved artifacts do not hold "
                "all the state the model computes with (something set on the object after it "
                "was built, outside what its framework saves): keep that state where the "
                "framework saves it, or report the model type as a tiffin bug",
            )  # fmt: skip
        output = expected

    if signature is None:
        if example is None:
            raise UsageError(
                "give example= (recommended) or signature=, so the package has a signature",
                fix="pass a few rows of real input as example=",
            )
        sig = Signature.infer(example, output)
        refine = getattr(flavor, "refine_signature", None)  # what the format itself declares
        if refine is not None:
            sig = refine(loaded, sig)
    else:
        sig = signature if isinstance(signature, Signature) else Signature.from_dict(signature)
    if dynamic_axes:
        sig = sig.with_dynamic_axes(dynamic_axes)
    if example is not None:
        sig.validate(example)
    (root / layout.SCHEMA).write_bytes(pretty_json(sig.to_dict()))
    if example is not None:
        (root / layout.EXAMPLES_DIR).mkdir(exist_ok=True)
        (root / layout.EXAMPLE_INPUT).write_bytes(example_codec.dumps(example))
        (root / layout.EXAMPLE_OUTPUT).write_bytes(example_codec.dumps(output))

    environment = capture.capture(
        root, flavor=flavor.NAME, frameworks=flavors.frameworks_of(flavor, runtime_options),
        requirements=requirements,
        python=python, platform=platform, options=runtime_options, allow_pickle=allow_pickle,
    )  # fmt: skip
    reqs = list(environment.get("requirements", []))
    (root / layout.MODEL_CARD).write_text(
        render(name, version, flavor.NAME, sig, metadata, reqs), encoding="utf-8"
    )
    manifest = Manifest(
        name=name,
        version=version,
        runtime=runtime,
        files=index_files(root),
        metadata=metadata,
        environment=environment,
        provenance=provenance.collect(flavors.frameworks_of(flavor, runtime_options)),
        created=provenance.created_time(),
    ).seal()
    (root / layout.MANIFEST).write_bytes(manifest.to_bytes())
    _lint(root, strict)
    return manifest


def _lint(root: Path, strict: bool) -> None:
    """Run the anti-pattern checks: warnings by default, errors under ``strict``."""
    lint_package(root, strict=strict, report=True)


def _original_output(
    model: Any, flavor: Any, method: str, options: dict[str, Any], example: Any
) -> Any:
    """What the model object the user passed gives on the example; None without one.

    A flavor with ``original(model, options)`` says how its in-memory model is called the
    way its loaded one is; otherwise the object's ``method`` is, and where that cannot
    take the example as given (a booster needing its own matrix type) the reloaded
    model's output stands alone.
    """
    if isinstance(model, (str, os.PathLike)):
        return None  # a file: the package is built from these very bytes
    hook = getattr(flavor, "original", None)
    if hook is not None:
        runner = hook(model, options)
        try:
            return runner.predict(example)
        except TiffinError:
            raise
        except Exception as exc:
            raise FlavorError(
                f"the model failed on the example: {exc!r}",
                fix="check that the example is what the model takes",
            ) from exc
    fn = getattr(model, method, None)
    if not callable(fn):
        return None
    try:
        return fn(example)
    except Exception:
        return None


def _tolerance(expected: Any) -> dict[str, float]:
    """Half-precision outputs agree to their own precision, not to float64's."""
    kinds = {np.asarray(v).dtype for v in named_arrays(expected).values()}
    if np.dtype(np.float16) in kinds:
        return {"rtol": 1e-2, "atol": 1e-2}
    if np.dtype(np.float32) in kinds:
        return {"rtol": 1e-5, "atol": 1e-5}
    return {}
