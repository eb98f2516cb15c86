"""PyTorch ``nn.Module``s: safetensors weights plus the class's own source in ``code/``.

Why safetensors and source, not torch.export: a ``.pt2`` archive is a zip that carries
pickled parts (constants, the graph's metadata) and is only promised to load on the
torch version that wrote it, and ``torch.save`` is pickle outright. safetensors is a
flat, pickle-free tensor file (a JSON header and raw bytes) that any torch version
reads, and the class source in ``code/`` is plain Python a reviewer can read and diff;
a weights-only change leaves ``code/`` byte-identical.

The constructor arguments are recorded as JSON: given with
``options={"init_kwargs": {...}}``, or read from same-named attributes of the instance
(``self.hidden = hidden``). Pack rebuilds the module from the package and must get the
original's output on the example, so wrongly guessed arguments, or state kept outside
the state dict, fail the pack, not the deployment. A non-persistent buffer that holds
something its constructor does not give it is named in the refusal. At load the class
is imported from the package's ``code/``, built with the recorded arguments,
``load_state_dict(strict=True, assign=True)`` must match every tensor and keeps each
one's dtype (float64, float16, bfloat16 modules stay so; non-persistent buffers are
cast to their recorded dtype). Floating inputs are cast to the module's dtype; NumPy has
no bfloat16, so a bfloat16 module takes and gives float32 and computes in bfloat16. Then
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
from ..logic.namespace import import_from_package
from ..logic.sources import class_file, copy_code, local_modules
from . import LoadContext, SaveContext, mro_modules

NAME = "torch"
FRAMEWORKS = ("torch", "safetensors", "numpy")
COST_FOLLOWS_INPUT_SIZE = True
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

    device = _check_device(ctx.options.get("device", "cpu"))
    cls = _user_class(model)
    source = class_file(cls)
    kwargs = _init_kwargs(cls, model, ctx.options.get("init_kwargs"))
    # Tied or shared tensors cannot be stored twice in safetensors: store copies.
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    rebuilt = _rebuild(cls, kwargs, state)
    transient = _check_transient_buffers(model, rebuilt, cls)
    copy_code([source, *local_modules(source)], ctx.code)
    save_file(state, str(ctx.artifacts / "model.safetensors"), metadata={"format": "pt"})
    options = {
        "file": FILE,
        "format": "safetensors",
        "module": source.stem,
        "class": cls.__name__,
        "init_kwargs": kwargs,
        "device": device,
    }
    dtype = _compute_dtype(model)
    if dtype is not None:
        options["dtype"] = dtype
    if transient:
        options["buffer_dtypes"] = transient
    return options


REBUILD_FIX = (
    "the package rebuilds the module as Class(**init_kwargs) plus its state_dict: pass the "
    "constructor arguments with options={'init_kwargs': {...}}, and keep every tensor the "
    "module computes with in a parameter or a persistent buffer, not a plain attribute"
)


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _compute_dtype(model: Any) -> str | None:
    """The dtype of the module's first floating tensor: what floating inputs are cast to."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return _dtype_name(tensor.dtype)
    return None


def _rebuild(cls: type, kwargs: dict[str, Any], state: dict[str, Any]) -> Any:
    try:
        rebuilt = cls(**kwargs)
        rebuilt.load_state_dict(state, strict=True, assign=True)
    except Exception as exc:
        raise FlavorError(
            f"{cls.__name__}(**{kwargs}) does not rebuild the model: {exc}",
            fix="pass the constructor arguments with options={'init_kwargs': {...}}",
        ) from None
    return rebuilt


def _non_persistent(module: Any) -> dict[str, Any]:
    found = {}
    for prefix, sub in module.named_modules():
        for name in getattr(sub, "_non_persistent_buffers_set", ()):
            tensor = sub._buffers.get(name)
            if tensor is not None:
                found[f"{prefix}.{name}" if prefix else name] = tensor
    return found


def _check_transient_buffers(model: Any, rebuilt: Any, cls: type) -> dict[str, str]:
    """Non-persistent buffers are not saved: the constructor must give them their values.

    Returns each one's dtype, which the module may have been cast to after construction.
    """
    import torch

    fresh = _non_persistent(rebuilt)
    dtypes = {}
    for name, tensor in _non_persistent(model).items():
        again = fresh.get(name)
        same = (
            again is not None
            and again.shape == tensor.shape
            and bool(torch.equal(again.to(tensor.device, tensor.dtype), tensor))
        )
        if not same:
            raise FlavorError(
                f"the non-persistent buffer {name!r} of {cls.__name__} holds values its "
                "constructor does not give it, and state_dict (so the saved weights) leaves "
                "it out: the packed model would compute with other values",
                fix=f"register it as persistent (register_buffer({name.rsplit('.', 1)[-1]!r}, "
                "tensor, persistent=True), the default) so the weights file carries it, or "
                "compute it in __init__ from constructor arguments",
            )
        dtypes[name] = _dtype_name(tensor.dtype)
    return dtypes


def prepare_example(example: Any, options: dict[str, Any]) -> Any:
    """The example with floating arrays in the module's dtype (float32 for bfloat16)."""
    if options.get("dtype") is None:
        return example
    dtype = np.dtype(_numpy_dtype(str(options["dtype"])))

    def cast(value: Any) -> Any:
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.dtype != dtype:
            return value.astype(dtype)
        return value

    if isinstance(example, dict):
        return {k: cast(v) for k, v in example.items()}
    return cast(example)


def _numpy_dtype(name: str) -> str:
    return "float32" if name == "bfloat16" else name


def original(model: Any, options: dict[str, Any]) -> Any:
    """The module the user passed, run as the packaged one runs (eval, inference mode)."""
    import torch

    where = next(iter(model.parameters()), torch.empty(0)).device
    return _Original(model, torch, where, options.get("dtype"))


class _Original:
    def __init__(self, module: Any, torch: Any, device: Any, dtype: str | None) -> None:
        self.module, self.torch, self.device, self.dtype = module, torch, device, dtype

    def predict(self, inputs: Any) -> Any:
        was_training = self.module.training
        self.module.eval()
        try:
            with self.torch.inference_mode():
                out = _call(self.module, inputs, self.torch, self.device, self.dtype)
                return _to_numpy(out)
        finally:
            self.module.train(was_training)


def _torch_dtype(torch: Any, name: str, *, floating: bool = True) -> Any:
    """A torch dtype by name; a manifest naming anything else is refused."""
    found = getattr(torch, name, None) if name.isidentifier() else None
    if not isinstance(found, torch.dtype) or (floating and not found.is_floating_point):
        kind = "floating-point torch dtype" if floating else "torch dtype"
        raise FlavorError(f"{name!r} is not a {kind}", where="tiffin.json: runtime.options")
    return found


def _call(module: Any, inputs: Any, torch: Any, device: Any, dtype: str | None = None) -> Any:
    target = _torch_dtype(torch, dtype) if dtype else None

    def tensor(value: Any) -> Any:
        t = torch.from_numpy(np.ascontiguousarray(value)).to(device)
        if target is not None and t.is_floating_point() and t.dtype != target:
            t = t.to(target)
        return t

    if isinstance(inputs, dict):
        return module(**{k: tensor(v) for k, v in inputs.items()})
    return module(tensor(inputs))


def _to_numpy(out: Any) -> Any:
    if isinstance(out, dict):
        return {k: _to_numpy(v) for k, v in out.items()}
    if isinstance(out, (tuple, list)):
        return tuple(_to_numpy(v) for v in out)
    out = out.detach().cpu()
    if str(out.dtype) == "torch.bfloat16":
        out = out.float()  # NumPy has no bfloat16; float32 holds every bfloat16 value
    return out.numpy()


class _TorchModel:
    def __init__(self, module: Any, torch: Any, device: str, dtype: str | None = None) -> None:
        self.module, self.torch, self.device, self.dtype = module, torch, device, dtype

    def predict(self, inputs: Any) -> Any:
        with self.torch.inference_mode():
            return _to_numpy(_call(self.module, inputs, self.torch, self.device, self.dtype))


def load(ctx: LoadContext) -> Any:
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError:
        raise FlavorError(
            "torch and safetensors are needed", fix="pip install torch safetensors"
        ) from None
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
        # assign: each tensor keeps the dtype it was saved in, not the constructor's
        net.load_state_dict(load_file(str(ctx.file()), device="cpu"), strict=True, assign=True)
        for name, dtype in dict(ctx.options.get("buffer_dtypes", {})).items():
            owner, _, leaf = str(name).rpartition(".")
            sub = net.get_submodule(owner)
            sub._buffers[leaf] = sub._buffers[leaf].to(
                _torch_dtype(torch, str(dtype), floating=False)
            )
    except FlavorError:
        raise
    except Exception as exc:
        raise FlavorError(f"could not rebuild {cls.__name__}: {exc}", where=str(ctx.path)) from None
    net.eval().to(device)
    dtype = ctx.options.get("dtype")
    if dtype is not None:
        _torch_dtype(torch, str(dtype))
    return _TorchModel(net, torch, device, None if dtype is None else str(dtype))
