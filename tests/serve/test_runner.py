"""Worker processes on one port: spread, summed metrics, restarts, clean stops, bad starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.serve.conftest import free_port, start, stop

BODY = json.dumps(
    {
        "inputs": [
            {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}
        ]
    }
)


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_two_workers_share_the_port_and_the_metrics(packages: dict[str, Path]) -> None:
    served = start([str(packages["iris"]), "--workers", "2"])
    try:
        workers = children(served.proc.pid)
        assert len(workers) == 2
        for _ in range(40):  # a new connection each time, so the kernel spreads them
            with httpx.Client(base_url=served.url, timeout=30) as c:
                assert c.post("/v2/models/iris/infer", content=BODY).status_code == 200
        with served.client() as c:
            text = c.get("/metrics").text
        line = 'tiffin_requests_total{code="200",endpoint="infer",model="iris",version="1"}'
        assert f"{line} 40.0" in text  # whichever worker answered, it counts both
        os.kill(workers[0], signal.SIGKILL)  # a crashed worker is replaced
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            now = children(served.proc.pid)
            if len(now) == 2 and workers[0] not in now:
                break
            time.sleep(0.2)
        assert len(children(served.proc.pid)) == 2
        for _ in range(10):
            with httpx.Client(base_url=served.url, timeout=30) as c:
                assert c.post("/v2/models/iris/infer", content=BODY).status_code == 200
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(30) == 0
    finally:
        stop(served)


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "serve", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_package_that_fails_to_load_stops_every_worker(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tiffin.json").write_text("{}")
    result = serve(str(broken), "--workers", "3", "--port", str(free_port()))
    assert result.returncode != 0
    assert "tiffin.json" in result.stderr and "Traceback" not in result.stderr
    # one message, not one per worker; no address announced for a server that never ran
    assert result.stderr.count("error:") == 1, result.stderr
    assert "http://" not in result.stderr


def test_a_taken_port_is_a_clear_error(packages: dict[str, Path]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = serve(str(packages["iris"]), "--port", str(port), "--workers", "1")
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_usage_errors() -> None:
    assert "give package folders" in serve().stderr
    assert "--workers 'many'" in serve("x", "--workers", "many").stderr
    odd = serve("x", "--workers", "\u00b2")  # '²'.isdigit() is True; int('²') raised
    assert odd.returncode != 0 and "is not a positive number" in odd.stderr
    assert "Traceback" not in odd.stderr


def test_auto_workers_follow_the_cgroup_cpu_quota(tmp_path: Path) -> None:
    """A container limited to 2 CPUs on a big host lists every host CPU in its affinity;
    --workers auto must not start a worker (and a copy of every model) per host CPU."""
    from tiffin.serve.runner import usable_cpus

    affinity = len(os.sched_getaffinity(0))
    cpu_max = tmp_path / "cpu.max"
    for text, want in (
        ("max 100000\n", affinity),  # no quota
        ("50000 100000\n", 1),  # half a CPU: still one worker
        (f"{100000 * (affinity + 8)} 100000\n", affinity),  # a quota above the affinity
        ("garbage\n", affinity),
    ):
        cpu_max.write_text(text)
        assert usable_cpus(str(cpu_max)) == want, text
    if affinity > 1:
        cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: two workers
        assert usable_cpus(str(cpu_max)) == 2
    assert usable_cpus(str(tmp_path / "absent")) == affinity


def test_sigterm_under_load_with_two_workers(packages: dict[str, Path]) -> None:
    """Every accepted request is answered, nothing new is taken once draining (a probe
    on a new connection is not "ready"), and the supervisor exits 0."""
    from concurrent.futures import ThreadPoolExecutor

    served = start([str(packages["multi"]), "--workers", "2"])
    slow = json.dumps({"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
        {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["slow"]},
    ]})  # fmt: skip

    def call(_: int) -> int:
        headers = {"Connection": "close"}  # new connections: both workers get some
        return httpx.post(f"{served.url}/v2/models/multi/infer", content=slow, headers=headers, timeout=30).status_code  # fmt: skip

    try:
        with ThreadPoolExecutor(8) as pool:
            answers = [pool.submit(call, i) for i in range(8)]
            time.sleep(1.0)  # all eight accepted, the first batches running (2 s each)
            served.proc.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            try:
                probe: int | str = httpx.get(f"{served.url}/v2/health/ready", timeout=2).status_code
            except httpx.HTTPError as exc:
                probe = type(exc).__name__
            codes = [a.result() for a in answers]
        assert codes == [200] * 8
        assert probe != 200
        assert served.proc.wait(30) == 0
    finally:
        stop(served)


def test_drain_delay_answers_not_ready_while_still_serving(packages: dict[str, Path]) -> None:
    """--drain-delay: after SIGTERM the readiness probe gets a 503 (what a load balancer
    needs to stop routing here) while inference on a kept-alive connection and on new
    connections is still answered; then the drain, and exit 0."""
    served = start([str(packages["iris"]), "--workers", "2", "--drain-delay", "3"])
    try:
        with served.client() as kept:
            assert kept.post("/v2/models/iris/infer", content=BODY).status_code == 200
            began = time.monotonic()
            served.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            ready = kept.get("/v2/health/ready")
            assert (ready.status_code, ready.json()) == (503, {"ready": False})
            model_ready = kept.get("/v2/models/iris/ready")
            assert model_ready.status_code == 503 and model_ready.json()["ready"] is False
            assert kept.get("/v2/health/live").status_code == 200
            assert kept.post("/v2/models/iris/infer", content=BODY).status_code == 200
            fresh = httpx.post(f"{served.url}/v2/models/iris/infer", content=BODY, timeout=5)
            assert fresh.status_code == 200
            assert served.proc.poll() is None  # still up inside the delay
        assert served.proc.wait(30) == 0
        assert time.monotonic() - began >= 2.5
        with socket.socket() as probe:  # the listener is gone
            assert probe.connect_ex(("127.0.0.1", served.port)) != 0
    finally:
        stop(served)


def test_a_second_sigterm_cuts_the_drain_delay_short(packages: dict[str, Path]) -> None:
    served = start([str(packages["iris"]), "--drain-delay", "60"])
    try:
        served.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert httpx.get(f"{served.url}/v2/health/ready", timeout=5).status_code == 503
        began = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        assert served.proc.wait(30) == 0
        assert time.monotonic() - began < 20
    finally:
        stop(served)
