from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from tiffin.security.sniff import classify_bytes, sniff


@pytest.mark.parametrize(
    ("data", "kind", "code"),
    [
        (pickle.dumps([1]), "pickle", True),
        (pickle.dumps([1], protocol=0), "pickle", True),
        (b'{"learner": {}}', "json/ubjson", False),
        (b"tree\nversion=v4\n", "lightgbm", False),
        (b"hello, world\n", "text", False),
        (b"", "empty", False),
        (bytes(range(256)) * 4, "unknown", True),
    ],
)
def test_classify(data: bytes, kind: str, code: bool) -> None:
    verdict = classify_bytes(data)
    assert (verdict.kind, verdict.carries_code) == (kind, code)


def test_numpy_and_safetensors(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    assert not classify_bytes(buf.getvalue()).carries_code
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, str(tmp_path / "w.bin"))
    assert sniff(tmp_path / "w.bin").kind == "safetensors"
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00\xff\xffgarbage")
    assert sniff(tmp_path / "bad.npy").carries_code  # a parse error fails closed


def test_compressed_pickle(tmp_path: Path) -> None:
    import gzip
    import lzma

    for packed in (gzip.compress(pickle.dumps(1)), lzma.compress(pickle.dumps(1))):
        assert classify_bytes(packed).carries_code
    assert not classify_bytes(gzip.compress(b"plain text")).carries_code


def test_pickle_artifact_refused_at_pack_and_load(tmp_path: Path) -> None:
    import textwrap

    import tiffin

    src = tmp_path / "m.py"
    src.write_text(textwrap.dedent("""
        class M:
            def load(self, context):
                pass
            def predict(self, x):
                return x
    """))  # fmt: skip
    blob = tmp_path / "table.csv"
    blob.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(tiffin.UnsafeArtifactError, match="artifacts/table.csv is pickle"):
        tiffin.pack(f"{src}:M", tmp_path / "p", name="m", version="1", example=np.ones((1, 2)),
                    artifacts={"table.csv": blob})  # fmt: skip
    pkg = tiffin.pack(f"{src}:M", tmp_path / "q", name="m", version="1", example=np.ones((1, 2)),
                      artifacts={"table.csv": blob}, allow_pickle=True)  # fmt: skip
    with pytest.raises(tiffin.UnsafeArtifactError, match="table.csv"):
        tiffin.load(pkg.path)
    assert tiffin.load(pkg.path, allow_pickle=True).predict(np.ones((1, 2))).shape == (1, 2)
