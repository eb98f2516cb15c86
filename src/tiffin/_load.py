"""Load a package: verify every byte, then the flavor's load, then a Predictor."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import flavors
from .errors import FlavorError, ManifestError, SignatureError, TiffinError
from .logic.namespace import own_names
from .package import layout
from .package.manifest import Described, Manifest
from .package.open import open_package
from .schema.signature import Signature
from .security.sniff import check_artifacts


class Predictor(Described):
    """A verified, loaded package. ``predict`` enforces the signature on every call."""

    def __init__(self, path: Path, manifest: Manifest, signature: Signature, model: Any) -> None:
        self.path = path
        self.manifest = manifest
        self.signature = signature
        self._model = model
        self._predict = model.predict
        self._answers_no_rows = bool(signature.outputs) and signature.batchable

    def predict(self, inputs: Any) -> Any:
        """Check ``inputs`` against the signature, then run the model on them.

        A batch of zero rows answers zero rows of each output, shaped from the
        signature, without running the model (as the server and the CLI do).
        """
        return self._run(self.signature.validate(inputs))

    def predict_named(self, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Named arrays in, named arrays out (the server's view of the model)."""
        output = self._run(self.signature.from_named_arrays(arrays))
        return self.signature.to_named_arrays(output)

    def _run(self, checked: Any) -> Any:
        if self._answers_no_rows and self.signature.rows(checked) == 0:
            return self.signature.no_rows()
        try:
            return self._predict(checked)
        except TiffinError:
            raise
        except Exception as exc:
            raise FlavorError(
                f"the model raised {type(exc).__name__}: {exc}",
                where=f"{self.name} {self.version}",
            ) from exc

    def __repr__(self) -> str:
        return f"Predictor({self.name} {self.version}, {self.manifest.flavor}, {self.digest[:19]}…)"


def read_signature(root: Path) -> Signature:
    try:
        raw = json.loads((root / layout.SCHEMA).read_bytes())
    except FileNotFoundError:
        raise ManifestError("schema.json is missing", where=str(root)) from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise ManifestError(f"schema.json is not valid JSON: {exc}", where=str(root)) from None
    try:
        return Signature.from_dict(raw)
    except SignatureError as exc:
        raise ManifestError(exc.message, where=str(root / layout.SCHEMA), fix=exc.fix) from None


def load(
    path: str | os.PathLike[str],
    *,
    allow_pickle: bool = False,
    trusted_keys: Sequence[Any] | None = None,
    require_signed: bool | None = None,
) -> Predictor:
    """Verify the package at ``path`` and load it.

    Every file is checked against the manifest before anything is deserialized; a
    changed, missing, extra or linked file raises IntegrityError naming it.

    Example::

        model = tiffin.load("out/iris-1.0.0")
        model.predict([[5.1, 3.5, 1.4, 0.2]])
    """
    opened = open_package(path, trusted_keys=trusted_keys, require_signed=require_signed)
    with opened.errors_named_by_source():
        return _load_opened(opened.root, opened.manifest, allow_pickle)


def _load_opened(root: Path, manifest: Manifest, allow_pickle: bool) -> Predictor:
    check_artifacts(root, allow_pickle=allow_pickle, formats=flavors.byte_formats())
    signature = read_signature(root)
    options = manifest.runtime.get("options", {})
    if not isinstance(options, dict):
        raise ManifestError("runtime.options must be an object", where=str(root / layout.MANIFEST))
    code_dir = root / layout.CODE_DIR
    flavor = flavors.get(manifest.flavor)
    digests = {f.path: f.sha256 for f in manifest.files}
    ctx = flavors.LoadContext(root, options, allow_pickle=allow_pickle, digests=digests)
    # The package's own code (custom classes, helpers) resolves from the package, ahead
    # of anything else of the same name, and apart from every other package's code.
    with own_names(code_dir):
        model = flavor.load(ctx)
    return Predictor(root, manifest, signature, model)
