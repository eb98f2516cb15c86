"""One served package version: its batcher, admission slots, signature checks and metrics.

``Server`` (``app``) holds one ``ServedModel`` per package version and hands each inference
request to it once the body is decoded; a model's calls run on the worker's event loop.
``ServeConfig`` holds the server's options, most of which shape each model (queue size,
batching, latency budget).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._load import Predictor
from ..errors import FlavorError
from ..flavors import cost_follows_input_size
from ..schema.tensorspec import TensorSpec
from .batching import DEFAULT_MAX_BATCH_SIZE, Batcher, Overloaded, request_shape
from .config import ServeConfig
from .errors import BadRequest, HTTPError
from .metrics import Metrics, ModelMetrics
from .model_config import triton_config
from .placement import INLINE_SECONDS, Placement

MAX_CHECKED_KINDS = 256  # request kinds remembered per model as passing the signature check


class ServedModel:
    """One served package version: its batcher, admission count and metrics."""

    def __init__(
        self, predictor: Predictor, config: ServeConfig, executor: ThreadPoolExecutor, metrics: Metrics
    ) -> None:  # fmt: skip
        self.predictor = predictor
        self.signature = predictor.signature
        self.name, self.version = predictor.name, predictor.version
        self.metadata = self.signature.to_v2_metadata(
            self.name, self.version, f"tiffin_{predictor.flavor}"
        )
        # 0: never on the event loop (a custom model's cost may follow its values)
        inline = INLINE_SECONDS if cost_follows_input_size(predictor.flavor) else 0.0
        self.metrics: ModelMetrics = metrics.for_model(self.name, self.version)
        self.queue_size = config.queue_size
        self.in_flight = 0
        self.has_datetimes = any(s.dtype.startswith("datetime") for s in self.signature.inputs)
        self.batchable = self.signature.batchable  # a property that walks every spec: once
        # Request kinds (names, dtypes, trailing shapes) known to pass the signature check,
        # for signatures where that is all the check looks at (see ``infer``).
        self.checked_kinds: set[tuple[object, ...]] = set()
        self.kinds_decide = (
            self.batchable
            and self.signature.input_kind in ("tensor", "dict")
            and all(np.dtype(s.dtype).kind in "biuf" for s in self.signature.inputs)
        )
        packed = dict(predictor.manifest.runtime.get("batching") or {})
        self.batcher: Batcher | None = None
        if config.batching and self.batchable and packed.get("enabled", True):
            latency = config.max_latency_ms or packed.get("max_latency_ms") or config.timeout * 1000
            self.batcher = Batcher(
                predictor.predict_named,
                executor,
                max_batch_size=int(
                    config.max_batch_size or packed.get("max_batch_size") or DEFAULT_MAX_BATCH_SIZE
                ),
                max_latency_ms=float(latency),
                queue_size=config.queue_size,
                on_batch=self.metrics.batch,
                inline_seconds=inline,
            )
        # one placement per model, learning its cost once: the batcher's when it batches
        self.run = (
            self.batcher.predict
            if self.batcher is not None
            else Placement(predictor.predict_named, executor, inline)
        )
        self.config = triton_config(
            self.name, self.metadata["platform"], self.signature,
            self.batcher.max_batch_size if self.batcher else None,
        )  # fmt: skip

    def check_room(self) -> None:
        """503 when every slot is taken (``admit`` asks before it takes one)."""
        if self.in_flight >= self.queue_size:
            raise Overloaded(f"{self.in_flight} requests are in flight for this model")

    def admit(self) -> None:
        """Take one slot of ``--queue-size``, from the end of the head to the answer.

        ``leave`` frees it. Taken before the body is read: a full model refuses without
        reading and decoding a body (megabytes, seconds of CPU), and bodies still
        arriving count, so a model never has more than ``--queue-size`` bodies in memory
        (a body too slow to arrive is cut by the rate floor, ``http``).

        Two calls rather than a context manager: this runs once per request, and a
        generator-based ``with`` costs more than the slot bookkeeping itself.
        """
        self.check_room()
        self.in_flight += 1
        self.metrics.depth(self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1
        self.metrics.depth(self.in_flight)

    async def infer(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check against the signature, then batch (or run alone); call it while admitted."""
        if self.has_datetimes:
            arrays = parse_datetimes(dict(arrays), self.signature.inputs)
        if self.signature.input_kind == "dataframe":
            _check_columns(arrays, self.signature.input_names())
        # Checked before queueing, so one bad request never joins (and fails) a batch.
        shape = request_shape(arrays)
        if shape[1] not in self.checked_kinds:
            self.signature.from_named_arrays(arrays)
            self.remember_kind(shape[1])
        if self.batchable and all(a.ndim and not a.shape[0] for a in arrays.values()):
            return self.no_rows()
        try:
            if self.batcher is not None:
                return await self.batcher.submit(arrays, shape)
            return await self.run(arrays)
        except FlavorError as exc:
            if _holds_non_finite(arrays):
                raise HTTPError(400, f"the model refused this input, which holds NaN or infinite values (missing values, or null on /invocations): {exc.message}") from exc  # fmt: skip
            raise

    def remember_kind(self, kind: tuple[object, ...] | None) -> None:
        """Skip the signature check for later requests of ``kind``, which just passed it.

        The check costs 2.5 µs of a one-row request, and for numeric inputs of a
        batchable tensor or dict signature it decides from the names, dtypes and
        trailing shapes alone (the batch axis is free; a cast is safe or not by dtype;
        values never matter, as decoded inputs are arrays, never Python lists), which
        is exactly a request's kind. So a kind that passed once passes always. Bounded:
        a signature with free trailing axes has a kind per length, and past the bound
        they are simply checked.
        """
        if kind is not None and self.kinds_decide and len(self.checked_kinds) < MAX_CHECKED_KINDS:
            self.checked_kinds.add(kind)

    def no_rows(self) -> dict[str, np.ndarray]:
        """The answer to a request of zero rows, from the signature: zero rows of each output.

        Many models refuse an empty batch (scikit-learn raises ValueError), which made a
        valid request a 500; a batch axis of zero has only one consistent answer.
        """
        return self.signature.no_rows_named()


def _holds_non_finite(arrays: Mapping[str, np.ndarray]) -> bool:
    """Whether a float input holds NaN or an infinity (only asked once the model failed).

    Many models refuse them (scikit-learn: "Input X contains NaN"); the signature cannot
    tell, since others take them as missing values. When the model fails on such an
    input, the input is the likely cause: a 400 for the client, not a 500 that pages
    the operator.
    """
    return any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in arrays.values())


def _check_columns(arrays: Mapping[str, np.ndarray], columns: list[str]) -> None:
    """A DataFrame model takes one value per row in each column: shape [n] (or [n, 1]).

    A single value (shape [], or a JSON scalar on /invocations) reached pandas as a
    0-d array, and iterating it raised a TypeError: a 500 for the client's mistake.
    """
    for name in columns:
        arr = arrays.get(name)
        if arr is None or arr.ndim == 1 or (arr.ndim == 2 and arr.shape[1] == 1):
            continue
        raise BadRequest(
            f"input {name!r} is a column of the model's table: send a list of values, "
            f"one per row (shape [n] or [n, 1]); got shape {list(arr.shape)}"
        )


def parse_datetimes(arrays: dict[str, np.ndarray], specs: Iterable[TensorSpec]) -> dict[str, np.ndarray]:  # fmt: skip
    """Text inputs that the signature types as datetimes, parsed from ISO 8601.

    Neither wire protocol has a datetime type (V2's metadata says BYTES), so a client can
    only send text; without this, no request could ever satisfy a datetime input.
    """
    for spec in specs:
        arr = arrays.get(spec.name)
        if arr is None or not spec.dtype.startswith("datetime") or arr.dtype.kind not in "OUS":
            continue
        values = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in arr.ravel().tolist()]  # fmt: skip
        try:
            with warnings.catch_warnings():  # numpy warns on (and drops) offsets: refuse
                warnings.simplefilter("error")
                arrays[spec.name] = np.array(values, dtype=spec.dtype).reshape(arr.shape)
        except Warning:
            raise BadRequest(f"input {spec.name!r}: send datetimes in UTC without an offset (no 'Z' or '+01:00')") from None  # fmt: skip
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"input {spec.name!r} expects ISO 8601 datetimes: {exc}") from None
    return arrays
