"""``tiffin serve``: the Open Inference Protocol (KServe V2) server."""

from __future__ import annotations

import os
import sys

import click

from ..errors import UsageError
from ..serve.budget import DEFAULT_BUDGET
from ..serve.config import ServeConfig
from .trust_options import trust_options


@click.command()
@click.argument("packages", nargs=-1, type=click.Path(file_okay=False))
@click.option("--repository", type=click.Path(file_okay=False), help="Serve every package in this folder (versions side by side).")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="Port (0: a free one).")  # fmt: skip
@click.option("--workers", default="auto", show_default=True, help="Worker processes sharing the port (SO_REUSEPORT), each with its own copy of the models; auto: one per usable CPU (affinity, cgroup quota).")  # fmt: skip
@click.option("--threads", type=click.IntRange(1), help="Threads running predict calls, per worker [default: max(2, CPUs)].")  # fmt: skip
@click.option("--no-batching", is_flag=True, help="Run every request on its own.")
@click.option("--max-batch-size", type=click.IntRange(1), help="Rows per merged predict call [default: the package's, else 64].")  # fmt: skip
@click.option("--max-latency-ms", type=click.FloatRange(0, min_open=True), help="Latency budget of a queued request; past it, 503 [default: the package's, else --timeout].")  # fmt: skip
@click.option("--timeout", default=30.0, show_default=True, type=click.FloatRange(0, min_open=True), help="Seconds per request before 504.")  # fmt: skip
@click.option("--max-body", default=64 << 20, show_default=True, type=click.IntRange(1), help="Largest request body in bytes, after gzip (413).")  # fmt: skip
@click.option("--max-buffered-bytes", default=DEFAULT_BUDGET, show_default=True, type=click.IntRange(1), help="Request body bytes (raw and inflated) one worker holds at once, across all connections; past it, 503 with Retry-After. At least --max-body.")  # fmt: skip
@click.option("--min-body-rate", default=1024.0, show_default=True, type=click.FloatRange(0), help="Bytes a second a request body must arrive at after --body-grace; slower, 408 (0: no floor).")  # fmt: skip
@click.option("--body-grace", default=5.0, show_default=True, type=click.FloatRange(0), help="Seconds a request body may take before --min-body-rate applies.")  # fmt: skip
@click.option("--queue-size", default=256, show_default=True, type=click.IntRange(1), help="Requests in flight per model (bodies still arriving included) before 503.")  # fmt: skip
@click.option("--drain-delay", default=0.0, show_default=True, type=click.FloatRange(0), help="Seconds between SIGTERM and the drain: readiness answers 503 while requests are still served, so a load balancer can stop routing here first.")  # fmt: skip
@click.option("--token", envvar="TIFFIN_TOKEN", help="Require 'Authorization: Bearer TOKEN' (or set TIFFIN_TOKEN) for models, inference, OpenAPI and /metrics; health probes and /v2 stay open.")  # fmt: skip
@click.option("--metrics-public", is_flag=True, help="Serve /metrics without the token (for scrapers that cannot send one); its labels name every served model and version.")  # fmt: skip
@click.option("--allow-pickle", is_flag=True, help="Allow pickle-flavor packages (allow-listed types only).")  # fmt: skip
@trust_options
@click.option("--log-level", default="warning", show_default=True, type=click.Choice(["critical", "error", "warning", "info", "debug"]))  # fmt: skip
def serve(
    packages: tuple[str, ...], repository: str | None, host: str, port: int, workers: str,
    threads: int | None, no_batching: bool, max_batch_size: int | None, max_latency_ms: float | None,
    timeout: float, max_body: int, max_buffered_bytes: int, min_body_rate: float, body_grace: float,
    queue_size: int, drain_delay: float, token: str | None, metrics_public: bool, allow_pickle: bool,
    keys: tuple[str, ...], require_signed: bool | None, log_level: str,
) -> None:  # fmt: skip
    """Serve PACKAGES over the Open Inference Protocol (KServe V2) and MLflow's /invocations.

    \b
    Endpoints: /v2/health/live, /v2/health/ready, /v2, /v2/models/NAME[/versions/V],
    .../ready, .../infer (JSON or binary tensors), /invocations, /metrics, /v2/openapi.json.

    \b
    Limits: --max-body per request (413), --max-buffered-bytes for all bodies held at
    once (503 + Retry-After), --queue-size per model (503 + Retry-After), --timeout per
    request (504) and per request head (408), --min-body-rate after --body-grace (408).
    With --token, /metrics needs the token too unless --metrics-public.
    """
    # the server's libraries (uvicorn, starlette) come with the serve extra: imported
    # only when a server starts, so the rest of the CLI works without them
    from ..serve.runner import serve as run

    if not packages and not repository:
        raise UsageError(
            "give package folders or --repository DIR", fix="tiffin serve out/model-1.0.0"
        )
    config = ServeConfig(
        max_body=max_body, timeout=timeout, queue_size=queue_size, batching=not no_batching,
        max_batch_size=max_batch_size, max_latency_ms=max_latency_ms, token=token or None,
        threads=threads, drain_delay=drain_delay, max_buffered_bytes=max_buffered_bytes,
        min_body_rate=min_body_rate, body_grace=body_grace, metrics_public=metrics_public,
    )  # fmt: skip
    os.environ.pop("TIFFIN_TOKEN", None)  # not inherited by anything the models start

    def announce(bound: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"tiffin serve: http://{shown}:{bound} (V2: /v2/models/<name>/infer)", err=True)

    code = run(
        list(packages), repository=repository, host=host, port=port, workers=_workers(workers),
        config=config, allow_pickle=allow_pickle, trusted_keys=[str(k) for k in keys],
        require_signed=require_signed, log_level=log_level, announce=announce,
    )  # fmt: skip
    sys.exit(code)


def _workers(value: str) -> int:
    if value == "auto":
        from ..serve.runner import usable_cpus  # the serve extra, as above

        return usable_cpus()
    if not (value.isascii() and value.isdigit()) or int(value) < 1:  # '²'.isdigit() is True
        raise UsageError(f"--workers {value!r} is not a positive number or 'auto'")
    return int(value)
