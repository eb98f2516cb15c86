"""Run the app under uvicorn: one process, or several sharing the port.

Several worker processes (``--workers``) are what use more than one core for models
whose predict holds the GIL (most scikit-learn pipelines at small batch sizes); inside
each process predict calls run on a thread pool, which is enough for frameworks that
release the GIL (PyTorch, ONNX Runtime, XGBoost). SIGTERM flips readiness to false,
stops accepting, lets in-flight requests finish, and exits 0.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .app import ServeConfig, create_app
from .repository import Repository, from_folder, from_paths

ENV_KEY = "TIFFIN_SERVE_SPEC"


def build_repository(packages: list[str], folder: str | None, allow_pickle: bool) -> Repository:
    if folder:
        repo = from_folder(Path(folder), allow_pickle=allow_pickle)
        for p in packages:
            repo.add(from_paths([Path(p)], allow_pickle=allow_pickle).models.popitem()[1])
        return repo
    return from_paths([Path(p) for p in packages], allow_pickle=allow_pickle)


def app_from_env() -> Any:
    """uvicorn factory for worker processes: the spec travels in an environment variable."""
    spec = json.loads(os.environ[ENV_KEY])
    repo = build_repository(spec["packages"], spec["repository"], spec["allow_pickle"])
    return create_app(repo, ServeConfig(**spec["config"]))


def serve(
    packages: list[str],
    *,
    repository: str | None,
    host: str,
    port: int,
    workers: int,
    config: ServeConfig,
    allow_pickle: bool = False,
    log_level: str = "warning",
) -> None:
    import uvicorn

    if workers > 1:
        os.environ[ENV_KEY] = json.dumps(
            {
                "packages": packages,
                "repository": repository,
                "allow_pickle": allow_pickle,
                "config": asdict(config),
            }
        )
        uvicorn.run(
            "tiffin.serve.runner:app_from_env", factory=True, host=host, port=port, workers=workers,
            log_level=log_level, timeout_graceful_shutdown=int(config.timeout + 5),
        )  # fmt: skip
        return
    repo = build_repository(packages, repository, allow_pickle)
    app = create_app(repo, config)
    server_state = app.state.server

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            server_state.ready = False  # readiness goes false first, then uvicorn drains
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after a graceful shutdown, so the process
            # would die of SIGTERM; a drained, clean stop is a success (exit 0).
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    uv_config = uvicorn.Config(
        app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=int(config.timeout + 5),
        lifespan="off",
    )  # fmt: skip
    _Server(uv_config).run()
