"""Triton's model configuration endpoint, ``GET /v2/models/{m}[/versions/{v}]/config``.

Not part of the Open Inference Protocol but a Triton extension that tools built for
Triton call first (``tritonclient``'s ``get_model_config``, ``perf_analyzer``): it
needs ``max_batch_size`` and, when that is above zero, dims *without* the batch axis.
The answer is derived from the signature and the batching settings, nothing else.
"""

from __future__ import annotations

from typing import Any

from ..schema.signature import Signature
from ..schema.tensorspec import TensorSpec

# Triton's data_type names for the V2 datatypes (BYTES is TYPE_STRING there)
_TYPES = {"BOOL": "TYPE_BOOL", "BYTES": "TYPE_STRING", **{
    t: f"TYPE_{t}" for t in ("UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
                             "INT64", "FP16", "FP32", "FP64")}}  # fmt: skip


def triton_config(
    name: str, platform: str, signature: Signature, max_batch_size: int | None
) -> dict[str, Any]:
    """The config for one model version; ``max_batch_size`` None: not batched (0)."""
    batched = max_batch_size is not None

    def tensor(spec: TensorSpec) -> dict[str, Any]:
        dims = list(spec.shape[1:] if batched else spec.shape)
        return {"name": spec.name, "data_type": _TYPES[spec.v2_datatype], "dims": dims}

    config: dict[str, Any] = {
        "name": name,
        "platform": platform,
        "backend": "tiffin",
        "max_batch_size": max_batch_size or 0,
        "input": [tensor(s) for s in signature.inputs],
        "output": [tensor(s) for s in signature.outputs],
    }
    if batched:
        config["dynamic_batching"] = {}
    return config
