"""The layout's names are the ones pack writes, sign adds and readers look for."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

import tiffin
from tiffin.package import layout

SRC = Path(__file__).resolve().parents[2] / "src" / "tiffin"

CUSTOM_MODEL = """
import numpy as np


class Doubler:
    def load(self, context):
        with open(context.artifacts["factor"]) as fh:
            self.factor = float(fh.read())

    def predict(self, inputs):
        return np.asarray(inputs, dtype=np.float64) * self.factor
"""


@pytest.fixture
def packed_custom(tmp_path: Path) -> Path:
    (tmp_path / "doubler.py").write_text(CUSTOM_MODEL)
    (tmp_path / "factor.txt").write_text("2")
    pkg = tiffin.pack(f"{tmp_path / 'doubler.py'}:Doubler", tmp_path / "p", name="doubler",
                      version="1", example=np.ones((2, 3)),
                      artifacts={"factor": str(tmp_path / "factor.txt")})  # fmt: skip
    return pkg.path


def _written(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def test_pack_writes_every_layer_under_its_name(packed_custom: Path, tmp_path: Path) -> None:
    written = _written(packed_custom)
    for name in (layout.MANIFEST, layout.SCHEMA, layout.MODEL_CARD, layout.REQUIREMENTS,
                 layout.EXAMPLE_INPUT, layout.EXAMPLE_OUTPUT):  # fmt: skip
        assert name in written, name
    tops = {p.split("/", 1)[0] for p in written if "/" in p}
    assert tops == {layout.ENV_DIR, layout.CODE_DIR, layout.ARTIFACTS_DIR, layout.EXAMPLES_DIR}
    private, _ = tiffin.keygen(tmp_path / "k")
    tiffin.sign(packed_custom, private)
    assert _written(packed_custom) - written == {layout.SIGNATURE}


def test_the_index_holds_every_file_but_the_unindexed_with_its_layer(packed_custom: Path) -> None:
    manifest = json.loads((packed_custom / layout.MANIFEST).read_text())
    index = {f["path"]: f["layer"] for f in manifest["files"]}
    assert set(index) == _written(packed_custom) - layout.UNINDEXED
    assert all(layer == layout.layer_of(path) for path, layer in index.items())
    # every layer of the format shows in a package with code and an artifact
    assert set(index.values()) == set(layout.LAYERS)


@pytest.mark.parametrize(
    ("path", "layer"),
    [
        ("schema.json", "schema"),
        ("README.md", "metadata"),
        ("tiffin.json", "metadata"),
        ("env/requirements.lock", "environment"),
        ("code/pkg/mod.py", "logic"),
        ("artifacts/model.skops", "artifact"),
        ("examples/input.json", "examples"),
        ("schema.json.bak", "metadata"),
        ("environment/x", "metadata"),  # a prefix of a layer folder is not that folder
    ],
)
def test_layer_of(path: str, layer: str) -> None:
    assert layout.layer_of(path) == layer
    assert layout.layer_of(path) in layout.LAYERS


def test_file_names_sit_in_their_folders() -> None:
    assert layout.REQUIREMENTS.startswith(layout.ENV_DIR + "/")
    assert layout.LOCK.startswith(layout.ENV_DIR + "/")
    assert layout.EXAMPLE_INPUT.startswith(layout.EXAMPLES_DIR + "/")
    assert layout.EXAMPLE_OUTPUT.startswith(layout.EXAMPLES_DIR + "/")
    assert {layout.MANIFEST, layout.SIGNATURE} == layout.UNINDEXED


NAMES = sorted(n for n in vars(layout) if re.fullmatch(r"[A-Z_]+", n) and n != "LAYERS")


@pytest.mark.parametrize(
    "name",
    NAMES,
)
def test_every_name_is_used(name: str) -> None:
    """A name nothing uses (beyond its own definition) is a file the format promises and
    nothing writes or reads."""
    uses = sum(len(re.findall(rf"\b{name}\b", p.read_text("utf-8"))) for p in SRC.rglob("*.py"))
    assert uses > 1, f"layout.{name} is used nowhere"
