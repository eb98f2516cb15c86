"""PyTorch ``nn.Module``s: safetensors weights plus the class's own source in ``code/``.

Why not torch.export: a ``.pt2`` archive carries pickled parts and ties the package to
one torch version, and ``torch.save`` is pickle outright. safetensors is a flat,
pickle-free tensor file that any torch version reads, and the class source in ``code/``
is plain Python a reviewer can read. The constructor arguments are recorded as JSON:
given with ``options={"init_kwargs": {...}}``, or read from same-named attributes of the
instance (``self.hidden = hidden``). At load the class is imported from the package,
built with them, and ``load_state_dict(strict=True)`` must match every tensor.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import numpy as np

from ..errors import FlavorError
from . import LoadContext, SaveContext, mro_modules

NAME = "torch"
FRAMEWORKS = ("torch", "safetensors", "numpy")
FILE = "artifacts/model.safetensors"


def detect(obj: Any) -> bool:
    return "torch.nn.modules.module" in mro_modules(obj)


def detect_file(path: Any) -> bool:
    return False  # a bare weights file has no class: use "file.py:Class" (custom) instead


def _init_kwargs(model: Any, given: dict[str, Any] | None) -> dict[str, Any]:
    cls = type(model)
    params = [
        p for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]  # fmt: skip
    if given is not None:
        kwargs = dict(given)
    else:
        kwargs = {}
        for p in params:
            if hasattr(model, p.name):
                kwargs[p.name] = getattr(model, p.name)
            elif p.default is p.empty:
                raise FlavorError(
                    f"cannot find the value of {cls.__name__}.__init__ argument {p.name!r}",
                    fix=f"store it as self.{p.name} in __init__, or pass "
                    f"options={{'init_kwargs': {{'{p.name}': ...}}}}",
                )
    try:
        json.dumps(kwargs)
    except TypeError as exc:
        raise FlavorError(
            f"{cls.__name__} constructor arguments are not JSON values: {exc}",
            fix="pass options={'init_kwargs': {...}} with plain values",
        ) from None
    return kwargs


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    from safetensors.torch import save_file

    from .custom import _class_file, copy_code

    cls = type(model)
    source = _class_file(cls)
    copy_code([source], ctx.code)
    kwargs = _init_kwargs(model, ctx.options.get("init_kwargs"))
    # Tied or shared tensors cannot be stored twice in safetensors: store copies.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(ctx.artifacts / "model.safetensors"), metadata={"format": "pt"})
    return {
        "file": FILE,
        "format": "safetensors",
        "module": source.stem,
        "class": cls.__name__,
        "init_kwargs": kwargs,
        "device": ctx.options.get("device", "cpu"),
    }


class _TorchModel:
    def __init__(self, module: Any, torch: Any, device: str) -> None:
        self.module, self.torch, self.device = module, torch, device

    def _tensor(self, value: Any) -> Any:
        return self.torch.from_numpy(np.ascontiguousarray(value)).to(self.device)

    def predict(self, inputs: Any) -> Any:
        with self.torch.inference_mode():
            if isinstance(inputs, dict):
                out = self.module(**{k: self._tensor(v) for k, v in inputs.items()})
            else:
                out = self.module(self._tensor(inputs))
        return _to_numpy(out)


def _to_numpy(out: Any) -> Any:
    if isinstance(out, dict):
        return {k: _to_numpy(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return tuple(_to_numpy(v) for v in out)
    return out.detach().cpu().numpy()


def load(ctx: LoadContext) -> Any:
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError:
        raise FlavorError(
            "torch and safetensors are needed", fix="pip install torch safetensors"
        ) from None
    from .custom import import_from_package

    module = import_from_package(ctx.path / "code", str(ctx.options["module"]))
    cls = getattr(module, str(ctx.options["class"]), None)
    if cls is None:
        raise FlavorError(
            f"class {ctx.options['class']} is missing from code/{ctx.options['module']}.py"
        )
    device = str(ctx.options.get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    try:
        net = cls(**dict(ctx.options.get("init_kwargs", {})))
        net.load_state_dict(load_file(str(ctx.file()), device="cpu"), strict=True)
    except Exception as exc:
        raise FlavorError(f"could not rebuild {cls.__name__}: {exc}", where=str(ctx.path)) from None
    net.eval().to(device)
    return _TorchModel(net, torch, device)
