"""The V2 wire protocol: its inference paths (the tensors are test_v2_codec.py's)."""

from __future__ import annotations

from tiffin.serve.protocols import PROTOCOLS


def test_v2_reads_the_model_and_version_from_the_path() -> None:
    v2 = next(p for p in PROTOCOLS if p.endpoint == "infer")
    assert v2.match("/v2/models/iris/infer") == ("iris", None)
    assert v2.match("/v2/models/iris/versions/2/infer") == ("iris", "2")
    assert v2.match("/v2/models/a/b/infer") is None
