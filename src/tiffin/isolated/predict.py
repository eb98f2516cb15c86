"""``tiffin predict --isolated``: predict in the package's own environment."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..env.cache import ensure_environment
from ..errors import EnvironmentBuildError
from ..package import layout
from ..package.open import open_package
from ..schema import datafiles
from ..schema import typed_json as examples
from ..schema.signature import Signature
from .run import child_failure, run_child


def run_isolated(
    package: str | os.PathLike[str],
    input_file: str | os.PathLike[str],
    output_file: str | os.PathLike[str] | None,
    *,
    fmt: str | None = None,
    trusted_keys: Any = None,
    require_signed: bool | None = None,
) -> None:
    """Predict ``input_file`` with the package, in the package's own environment.

    The package is opened and the signing policy applied here, as ``load`` does; the input
    is read here (any format ``tiffin predict`` reads) and checked against the signature
    before any build, so a wrong input is the caller's error, said at once. The child
    (``python -I -B -m tiffin.isolated.child predict``) exchanges data in the example
    codec, so the environment needs no pandas or pyarrow the model does not; the output
    goes to ``output_file`` or, without one, JSON to stdout. An error the child reports
    comes back as the same tiffin error and exit code.
    """
    opened = open_package(
        Path(package).resolve(), trusted_keys=trusted_keys, require_signed=require_signed
    )
    root = opened.root
    signature = Signature.from_dict(json.loads((root / layout.SCHEMA).read_text(encoding="utf-8")))
    inputs = datafiles.read_input(Path(input_file), signature, fmt)
    signature.validate(inputs)
    python = ensure_environment(root)
    with tempfile.TemporaryDirectory(prefix="tiffin-isolated-") as tmp:
        sent, got = Path(tmp) / "input.json", Path(tmp) / "output.json"
        sent.write_bytes(examples.dumps(inputs))
        proc = run_child(python, ["predict", str(root), str(sent), str(got)], cwd=tmp)
        if proc.returncode != 0:
            raise child_failure(proc.stderr, root, error=EnvironmentBuildError, keep_reported=True)
        output = examples.loads(got.read_bytes())
    body = datafiles.write_output(output, Path(output_file) if output_file else None)
    if body is not None:
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
