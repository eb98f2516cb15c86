"""Run the server: one process, or several worker processes sharing one port.

One process runs the event loop (HTTP, JSON, batching) on one core and predict calls
on a thread pool; NumPy, scikit-learn's BLAS, PyTorch and ONNX Runtime release the GIL
while they compute, and adaptive batching turns many small calls into few large ones.
``--workers N`` starts N processes, each with its own copy of the models, each
listening on the port with ``SO_REUSEPORT`` so the kernel spreads connections among
them; it pays off when the event loop itself is the bottleneck (many clients, cheap
models). The CLI's default is ``--workers auto``: one process per CPU this process may
run on (``os.sched_getaffinity``); ``--workers 1`` is the single process.
``benchmarks/serve.py`` measures both (README, "Serving").

Each predict call gets a budget of compute threads (PyTorch intra-op, BLAS, OpenMP):
the CPUs divided among the workers (one worker: all CPUs but the event loop's), unless
``OMP_NUM_THREADS`` says otherwise, so the workers' thread pools never fight over cores.

The supervisor reserves the port first (bound, never listening), starts the workers,
restarts one that crashes after it was ready, and stops everything with the first
worker's error if one fails while loading. SIGTERM (or Ctrl-C) turns readiness false
(503), waits ``--drain-delay`` seconds still serving, then stops accepting, lets
in-flight requests finish (up to the request timeout) and exits 0.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import TiffinError, UsageError
from .app import create_app
from .config import ServeConfig
from .http import bounded_protocol
from .metrics import MULTIPROC_ENV
from .repository import Repository, from_folder, from_paths

SPEC_ENV = "TIFFIN_SERVE_SPEC"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
READY_FD_ENV = "TIFFIN_SERVE_READY_FD"


def build_repository(
    packages: list[str], folder: str | None, allow_pickle: bool, **trust: Any
) -> Repository:
    """The packages named on the command line and every package in ``folder``.

    ``trust`` (``trusted_keys``, ``require_signed``) goes to every load.
    """
    repo = from_folder(Path(folder), allow_pickle=allow_pickle, **trust) if folder else Repository()
    for predictor in from_paths([Path(p) for p in packages], allow_pickle=allow_pickle, **trust):
        repo.add(predictor)
    if not len(repo):
        raise UsageError("no packages to serve", fix="give package folders or --repository DIR")
    return repo


def bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """A bound TCP socket (not yet listening); port 0 picks a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            fix="pick another --port, or stop the process that holds this one",
        ) from None
    sock.set_inheritable(False)
    return sock


def _uvicorn_server(app: Any, config: ServeConfig, log_level: str) -> Any:
    import uvicorn

    server_state = app.state.server

    class _Server(uvicorn.Server):
        drain_at: float | None = None  # when the delayed drain begins

        def handle_exit(self, sig: int, frame: Any) -> None:
            server_state.ready = False  # readiness goes false first, then uvicorn drains
            if self.drain_at is None and config.drain_delay > 0:
                # --drain-delay: a load balancer needs a few probe periods to see "not
                # ready" and stop routing here; until then traffic is still served.
                # A second signal drains at once.
                self.drain_at = time.monotonic() + config.drain_delay
                return
            server_state.accepting = False
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            if self.drain_at is not None and time.monotonic() >= self.drain_at:
                server_state.accepting = False
                self.should_exit = True
            return bool(await super().on_tick(counter))

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after a graceful shutdown, so the process would
            # die of SIGTERM; a drained, clean stop is a success (exit 0).
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    # The access log is written only at --log-level info or debug, and it is the only
    # reader of the client address that X-Forwarded-For rewrites: off otherwise, the two
    # cost 5% of a one-row request (uvicorn's proxy middleware and a logging call each).
    access_log = log_level in ("info", "debug")
    uv_config = uvicorn.Config(
        app, log_level=log_level, lifespan="off", server_header=False,
        timeout_graceful_shutdown=int(config.timeout + 5),
        http=bounded_protocol(
            head_timeout=config.timeout, direct=app.post_handler,
            min_body_rate=config.min_body_rate, body_grace=config.body_grace,
        ),
        access_log=access_log, proxy_headers=access_log,
    )  # fmt: skip
    return _Server(uv_config)


def usable_cpus(cpu_max: str = "/sys/fs/cgroup/cpu.max") -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota.

    In a container limited to 2 CPUs on a 64-core host the affinity still lists 64, and
    ``--workers auto`` would start 64 workers, each with its own copy of every model.
    """
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    cpus = len(affinity) if affinity else os.cpu_count() or 1
    try:
        quota, period = Path(cpu_max).read_text().split()[:2]
    except (OSError, ValueError):
        return cpus
    if not (quota.isdigit() and period.isdigit()) or int(period) == 0:  # "max": no quota
        return cpus
    return max(1, min(cpus, -(-int(quota) // int(period))))


def compute_threads(workers: int) -> int:
    """Threads one predict call may use: the CPUs left after the event loops, shared.

    A parallel region that waits for a thread the OS has handed to another worker (or to
    an event loop) is slower than one thread: a 64-row MLP forward took
    5.6 ms with PyTorch's default two threads on a busy 2-core machine, 0.17 ms with one.
    """
    cpus = usable_cpus()
    return max(1, (cpus - 1) // workers if workers == 1 else cpus // workers)


def limit_compute_threads(budget: int) -> None:
    """Apply the budget to libraries already loaded (PyTorch, BLAS and OpenMP pools)."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(budget)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(budget)


def run_worker(
    spec: dict[str, Any], sock: socket.socket, ready_fd: int | None = None, announce: Any = None
) -> None:
    """Load the models, then serve on ``sock`` until SIGTERM; ``announce`` once loaded."""
    config = ServeConfig(**spec["config"])
    budget = int(spec["compute_threads"])
    for var in THREAD_VARS:  # read by BLAS and OpenMP when they load (after this point)
        os.environ.setdefault(var, str(budget))
    repo = build_repository(
        spec["packages"], spec["repository"], spec["allow_pickle"],
        trusted_keys=spec.get("trusted_keys") or None,
        require_signed=spec.get("require_signed"),
    )  # fmt: skip
    limit_compute_threads(int(os.environ.get("OMP_NUM_THREADS", budget)))
    app = create_app(repo, config)
    server = _uvicorn_server(app, config, spec["log_level"])
    # The models and libraries are loaded for good: moved out of the collector's reach,
    # a full collection no longer walks them (tens of ms each, straight into the p99).
    gc.collect()
    gc.freeze()
    if ready_fd is not None:
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
    if announce is not None:
        announce(spec["port"])
    server.run(sockets=[sock])


def serve(
    packages: list[str],
    *,
    repository: str | None,
    host: str,
    port: int,
    workers: int,
    config: ServeConfig,
    allow_pickle: bool = False,
    trusted_keys: list[str] | None = None,
    require_signed: bool | None = None,
    log_level: str = "warning",
    announce: Any = None,
) -> int:
    """Serve until SIGTERM; returns the exit status (0 after a clean, drained stop)."""
    spec: dict[str, Any] = {
        "packages": packages,
        "repository": repository,
        "allow_pickle": allow_pickle,
        "trusted_keys": [str(k) for k in trusted_keys or ()],
        "require_signed": require_signed,
        "config": asdict(config),
        "log_level": log_level,
    }
    spec["compute_threads"] = compute_threads(workers)
    sock = bind(host, port, reuse_port=workers > 1)
    spec["port"] = sock.getsockname()[1]
    spec["host"] = host
    # announced once the models are loaded: the address printed is one that answers
    if workers == 1:
        run_worker(spec, sock, announce=announce)
        return 0
    return _supervise(spec, workers, sock, announce)


def _spawn(spec: dict[str, Any]) -> tuple[subprocess.Popen[bytes], int]:
    read, write = os.pipe()
    env = {**os.environ, SPEC_ENV: json.dumps(spec), READY_FD_ENV: str(write)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tiffin.serve.runner"], env=env, pass_fds=(write,)
    )
    os.close(write)
    os.set_blocking(read, False)
    return proc, read


def _supervise(spec: dict[str, Any], workers: int, reserved: socket.socket, announce: Any) -> int:
    with tempfile.TemporaryDirectory(prefix="tiffin-metrics-") as metrics_dir:
        os.environ[MULTIPROC_ENV] = metrics_dir  # inherited by the workers only
        try:
            return _watch(spec, workers, metrics_dir, announce)
        finally:
            os.environ.pop(MULTIPROC_ENV, None)
            reserved.close()


def _watch(spec: dict[str, Any], workers: int, metrics_dir: str, announce: Any) -> int:
    stopping = False
    announced = False

    def stop(sig: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for proc, _, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    procs: list[tuple[subprocess.Popen[bytes], int, list[bool]]] = []
    failure = ""  # the first load error a worker reported through its pipe
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for _ in range(workers):
            proc, fd = _spawn(spec)
            procs.append((proc, fd, [False]))
        while True:
            alive = 0
            for i, (proc, fd, ready) in enumerate(procs):
                if not ready[0]:
                    with contextlib.suppress(BlockingIOError):
                        message = os.read(fd, 1 << 16)
                        ready[0] = message.startswith(b"ready")
                        if message.startswith(b"error"):
                            failure = failure or message.decode(errors="replace")
                code = proc.poll()
                if code is None:
                    alive += 1
                    continue
                if stopping:
                    continue
                if not ready[0]:  # failed while loading: the same would happen to the others
                    with contextlib.suppress(BlockingIOError):  # it may have just written
                        message = os.read(fd, 1 << 16)
                        if message.startswith(b"error"):
                            failure = failure or message.decode(errors="replace")
                    # one message for the lot: every worker fails the same way
                    sys.stderr.write(
                        failure or f"error: a worker exited with {code} while loading\n"
                    )
                    stop(signal.SIGTERM, None)
                    for other, _, _ in procs:
                        other.wait()
                    return code or 1
                sys.stderr.write(
                    f"tiffin serve: worker {proc.pid} exited with {code}; restarting\n"
                )
                _forget(proc.pid, metrics_dir)
                os.close(fd)
                time.sleep(0.5)
                new, new_fd = _spawn(spec)
                procs[i] = (new, new_fd, [False])
                alive += 1
            if announce is not None and not announced and all(r[0] for _, _, r in procs):
                announce(spec["port"])
                announced = True
            if stopping and not alive:
                clean = (
                    0,
                    -signal.SIGTERM,
                )  # a worker stopped while still loading dies of the signal
                return 0 if all(p.returncode in clean for p, _, _ in procs) else 1
            time.sleep(0.1)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for _, fd, _ in procs:
            with contextlib.suppress(OSError):
                os.close(fd)


def _forget(pid: int, metrics_dir: str) -> None:
    """Drop a dead worker's live gauges (its counters stay: they were served)."""
    for path in Path(metrics_dir).glob(f"gauge_live*_{pid}.db"):
        path.unlink(missing_ok=True)


def _worker_main() -> int:
    spec = json.loads(os.environ.pop(SPEC_ENV))
    ready_fd = int(os.environ.pop(READY_FD_ENV))
    try:
        sock = bind(spec["host"], spec["port"], reuse_port=True)
        run_worker(spec, sock, ready_fd)
    except TiffinError as exc:
        # to the supervisor, which shows one message for all the workers
        os.write(ready_fd, f"error: {exc.format()}\n".encode())
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())
