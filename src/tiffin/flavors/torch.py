"""PyTorch ``nn.Module``s: safetensors weights plus the class's own source in ``code/``.

Why safetensors and source, not torch.export: a ``.pt2`` archive is a zip that carries
pickled parts (constants, the graph's metadata) and is only promised to load on the
torch version that wrote it, and ``torch.save`` is pickle outright. safetensors is a
flat, pickle-free tensor file (a JSON header and raw bytes) that any torch version
reads, and the class source in ``code/`` is plain Python a reviewer can read and diff;
a weights-only change leaves ``code/`` byte-identical.

The constructor arguments are recorded as JSON: given with
``options={"init_kwargs": {...}}``, or read from same-named attributes of the instance
(``self.hidden = hidden``). The module is rebuilt from them at pack time and must give
the original's output on the example, so wrongly guessed arguments fail the pack, not
the deployment. At load the class is imported from the package's ``code/``, built with
the recorded arguments, ``load_state_dict(strict=True)`` must match every tensor, and
``predict`` runs it in eval mode under ``torch.inference_mode()``: NumPy in (an array,
or a dict of arrays passed as keyword arguments), NumPy out (a tensor, or a dict/tuple
of them). ``options={"device": "cuda"}`` runs it on the GPU where torch has one, else
on the CPU.
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
    return False  # a bare weights file has no class: pack the module object instead


def _check_device(device: Any) -> str:
    text = str(device)
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise FlavorError(
        f"unknown torch device {text!r}", where="options.device", fix="use 'cpu' or 'cuda'"
    )


def _user_class(model: Any) -> type:
    """The model's class, which must come from the user's own source file."""
    orig = getattr(model, "_orig_mod", None)  # torch.compile wraps the module
    cls = type(orig if orig is not None else model)
    module = cls.__module__ or ""
    try:
        file = inspect.getsourcefile(cls)
    except (TypeError, OSError):
        file = None
    installed = file is not None and ("site-packages" in file or "dist-packages" in file)
    if module == "torch" or module.startswith("torch.") or installed:
        raise FlavorError(
            f"{module}.{cls.__qualname__} is not a class from your own source file",
            fix="define an nn.Module subclass in a .py file of your project that builds it, "
            "and pack an instance of that (or export the model to ONNX)",
        )
    return cls


def _init_kwargs(cls: type, model: Any, given: Any) -> dict[str, Any]:
    sig = inspect.signature(cls)
    params = [
        p for p in sig.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]  # fmt: skip
    if given is not None:
        if not isinstance(given, dict):
            raise FlavorError("init_kwargs must be a dict", where="options.init_kwargs")
        kwargs = dict(given)
        try:
            sig.bind(**kwargs)
        except TypeError as exc:
            raise FlavorError(
                f"init_kwargs do not fit {cls.__name__}(...): {exc}",
                where="options.init_kwargs",
                fix=f"give the arguments of {cls.__name__}{sig}",
            ) from None
    else:
        kwargs = {}
        for p in params:
            if hasattr(model, p.name):
                kwargs[p.name] = getattr(model, p.name)
            elif p.default is p.empty:
                raise FlavorError(
                    f"cannot find the value of {cls.__name__}.__init__ argument {p.name!r}",
                    fix=f"pass options={{'init_kwargs': {{'{p.name}': ...}}}} to tiffin.pack, "
                    f"or store it as self.{p.name} in __init__",
                )
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise FlavorError(
            f"{cls.__name__} constructor arguments are not JSON values: {exc}",
            fix="pass options={'init_kwargs': {...}} to tiffin.pack with plain values",
        ) from None
    return kwargs


def save(model: Any, ctx: SaveContext) -> dict[str, Any]:
    from safetensors.torch import save_file

    from .custom import _class_file, copy_code, local_modules

    device = _check_device(ctx.options.get("device", "cpu"))
    cls = _user_class(model)
    source = _class_file(cls)
    kwargs = _init_kwargs(cls, model, ctx.options.get("init_kwargs"))
    # Tied or shared tensors cannot be stored twice in safetensors: store copies.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    _check_rebuild(model, cls, kwargs, state, ctx.example)
    copy_code([source, *local_modules(source)], ctx.code)
    save_file(state, str(ctx.artifacts / "model.safetensors"), metadata={"format": "pt"})
    return {
        "file": FILE,
        "format": "safetensors",
        "module": source.stem,
        "class": cls.__name__,
        "init_kwargs": kwargs,
        "device": device,
    }


def _check_rebuild(
    model: Any, cls: type, kwargs: dict[str, Any], state: dict[str, Any], example: Any
) -> None:
    """Build the class from the recorded arguments; it must hold and compute the same."""
    import torch

    try:
        rebuilt = cls(**kwargs)
        rebuilt.load_state_dict(state, strict=True)
    except Exception as exc:
        raise FlavorError(
            f"{cls.__name__}(**{kwargs}) does not rebuild the model: {exc}",
            fix="pass the constructor arguments with options={'init_kwargs': {...}}",
        ) from None
    if example is None or not isinstance(example, (np.ndarray, dict)):
        return
    was_training = model.training
    model.eval()
    rebuilt.eval()
    try:
        # Compared where the model lives; the rebuilt copy follows it there.
        where = next(iter(model.parameters()), torch.empty(0)).device
        rebuilt.to(where)
        with torch.inference_mode():
            expected = _to_numpy(_call(model, example, torch, where))
            got = _to_numpy(_call(rebuilt, example, torch, where))
    except Exception:
        return  # the reload check runs the example and reports a failure clearly
    finally:
        model.train(was_training)
    from ..examples import compare

    problem = compare(expected, got)
    if problem:
        raise FlavorError(
            f"{cls.__name__}(**{kwargs}) rebuilt from the recorded arguments computes "
            f"something else than the model: {problem}",
            fix="pass the constructor arguments with options={'init_kwargs': {...}}",
        )


def _call(module: Any, inputs: Any, torch: Any, device: Any) -> Any:
    def tensor(value: Any) -> Any:
        return torch.from_numpy(np.ascontiguousarray(value)).to(device)

    if isinstance(inputs, dict):
        return module(**{k: tensor(v) for k, v in inputs.items()})
    return module(tensor(inputs))


def _to_numpy(out: Any) -> Any:
    if isinstance(out, dict):
        return {k: _to_numpy(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return tuple(_to_numpy(v) for v in out)
    return out.detach().cpu().numpy()


class _TorchModel:
    def __init__(self, module: Any, torch: Any, device: str) -> None:
        self.module, self.torch, self.device = module, torch, device

    def predict(self, inputs: Any) -> Any:
        with self.torch.inference_mode():
            return _to_numpy(_call(self.module, inputs, self.torch, self.device))


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
    device = _check_device(ctx.options.get("device", "cpu"))
    if device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"  # the same weights and code run on the CPU
    try:
        net = cls(**dict(ctx.options.get("init_kwargs", {})))
        net.load_state_dict(load_file(str(ctx.file()), device="cpu"), strict=True)
    except Exception as exc:
        raise FlavorError(f"could not rebuild {cls.__name__}: {exc}", where=str(ctx.path)) from None
    net.eval().to(device)
    return _TorchModel(net, torch, device)
