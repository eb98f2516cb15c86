"""``tiffin serve``."""

from __future__ import annotations

import os

import click

from ..errors import UsageError


@click.command()
@click.argument("packages", nargs=-1)
@click.option(
    "--repository", type=click.Path(file_okay=False), help="Serve every package in this folder."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers", default=1, show_default=True, type=int, help="Worker processes sharing the port."
)
@click.option("--threads", type=int, help="Predict threads per worker (default: CPU count).")
@click.option("--no-batching", is_flag=True, help="Run each request on its own.")
@click.option(
    "--max-batch-size", type=int, help="Rows per merged predict (default: package's, else 64)."
)
@click.option(
    "--max-latency-ms", type=float, help="Longest a request may queue before 503 (default 1000)."
)
@click.option(
    "--timeout", default=30.0, show_default=True, help="Per-request timeout in seconds (504)."
)
@click.option(
    "--max-body", default=64 << 20, show_default=True, help="Largest request body in bytes (413)."
)
@click.option(
    "--queue-size", default=256, show_default=True, help="Requests in flight per model before 503."
)
@click.option(
    "--token",
    envvar="TIFFIN_TOKEN",
    help="Require 'Authorization: Bearer TOKEN' (or TIFFIN_TOKEN).",
)
@click.option(
    "--allow-pickle", is_flag=True, help="Allow pickle-flavor packages (allow-listed types only)."
)
@click.option("--log-level", default="warning", show_default=True)
def serve(
    packages: tuple[str, ...], repository: str | None, host: str, port: int, workers: int,
    threads: int | None, no_batching: bool, max_batch_size: int | None, max_latency_ms: float | None,
    timeout: float, max_body: int, queue_size: int, token: str | None, allow_pickle: bool, log_level: str,
) -> None:  # fmt: skip
    """Serve PACKAGES over the Open Inference Protocol (KServe V2) and MLflow's /invocations."""
    from ..serve.app import ServeConfig
    from ..serve.runner import serve as run

    if not packages and not repository:
        raise UsageError("give package folders or --repository DIR")
    if workers < 1 or queue_size < 1 or max_body < 1 or timeout <= 0:
        raise UsageError("--workers, --queue-size, --max-body and --timeout must be positive")
    config = ServeConfig(
        max_body=max_body, timeout=timeout, queue_size=queue_size, batching=not no_batching,
        max_batch_size=max_batch_size, max_latency_ms=max_latency_ms, token=token or None,
        threads=threads,
    )  # fmt: skip
    os.environ.pop("TIFFIN_TOKEN", None)
    click.echo(f"serving on http://{host}:{port} (V2: /v2/models/<name>/infer)", err=True)
    run(list(packages), repository=repository, host=host, port=port, workers=workers,
        config=config, allow_pickle=allow_pickle, log_level=log_level)  # fmt: skip
