"""Triton's model configuration from a signature: dims without the batch axis when batched."""

from __future__ import annotations

import numpy as np

from tiffin.schema.signature import Signature
from tiffin.schema.tensorspec import V2_DATATYPES, TensorSpec
from tiffin.serve.model_config import triton_config
from tiffin.serve.protocols.v2_codec import DTYPES


def _signature() -> Signature:
    return Signature(
        inputs=(TensorSpec("x", "float32", (-1, 4)), TensorSpec("s", "str", (-1,))),
        outputs=(TensorSpec("y", "int64", (-1, 3)),),
    )


def test_a_batched_model_drops_the_batch_axis_and_says_it_batches() -> None:
    config = triton_config("iris", "tiffin_sklearn", _signature(), 32)
    assert config["max_batch_size"] == 32
    assert config["dynamic_batching"] == {}
    assert config["input"] == [
        {"name": "x", "data_type": "TYPE_FP32", "dims": [4]},
        {"name": "s", "data_type": "TYPE_STRING", "dims": []},
    ]
    assert config["output"] == [{"name": "y", "data_type": "TYPE_INT64", "dims": [3]}]
    assert (config["name"], config["platform"], config["backend"]) == ("iris", "tiffin_sklearn", "tiffin")  # fmt: skip


def test_an_unbatched_model_keeps_every_axis_and_max_batch_size_zero() -> None:
    config = triton_config("iris", "tiffin_sklearn", _signature(), None)
    assert config["max_batch_size"] == 0
    assert "dynamic_batching" not in config
    assert [t["dims"] for t in config["input"]] == [[-1, 4], [-1]]


def test_every_signature_dtype_has_a_triton_type() -> None:
    specs = tuple(TensorSpec(f"t{i}", dtype, (-1,)) for i, dtype in enumerate(V2_DATATYPES))
    config = triton_config("m", "p", Signature(inputs=specs, outputs=specs[:1]), None)
    for spec, tensor in zip(specs, config["input"], strict=True):
        v2 = spec.v2_datatype
        assert tensor["data_type"] == ("TYPE_STRING" if v2 == "BYTES" else f"TYPE_{v2}")
        # the wire type the V2 codec decodes is the signature's own dtype
        assert DTYPES[v2] == (np.dtype(object) if v2 == "BYTES" else np.dtype(spec.dtype))
