"""Every error case of the server, over real HTTP, and the worker stays alive after each."""

from __future__ import annotations

import gzip
import json
import threading
import time

import httpx
import pytest

from tests.serve.conftest import Served

GOOD = {
    "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]
}


def _alive(server: Served) -> None:
    with server.client() as c:
        r = c.post("/v2/models/iris/versions/1/infer", content=json.dumps(GOOD))
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [0]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[]", 400, "non-empty 'inputs' list"),
        (
            json.dumps(
                {
                    "inputs": [
                        {"name": "input", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}
                    ]
                }
            ),
            400,
            "expects shape",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [1, 4],
                            "datatype": "BYTES",
                            "data": ["a", "b", "c", "d"],
                        }
                    ]
                }
            ),
            400,
            "expects dtype float64",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {"name": "other", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}
                    ]
                }
            ),
            400,
            "missing",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3]}
                    ]
                }
            ),
            400,
            "needs 4 values",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [1, 4],
                            "datatype": "FP64",
                            "data": ["a", 2, 3, 4],
                        }
                    ]
                }
            ),
            400,
            "needs numbers",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [1, 4],
                            "datatype": "COMPLEX",
                            "data": [1, 2, 3, 4],
                        }
                    ]
                }
            ),
            400,
            "unknown datatype",
        ),
        (
            b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [NaN, 1, 2, 3]}]}',
            400,
            "not valid JSON",
        ),
        (
            json.dumps(
                {
                    "inputs": [
                        {
                            "name": "input",
                            "shape": [1, 4],
                            "datatype": "INT64",
                            "data": [10**30, 1, 2, 3],
                        }
                    ]
                }
            ),
            400,
            "",
        ),
        (b"[" * 150_000 + b"]" * 150_000, 400, "not valid JSON"),
        (
            json.dumps(
                {"inputs": [{"name": "input", "shape": "x", "datatype": "FP64", "data": []}]}
            ),
            400,
            "shape must be",
        ),
    ],
)
def test_bad_requests_are_400(server: Served, body: bytes | str, status: int, message: str) -> None:
    with server.client() as c:
        r = c.post("/v2/models/iris/versions/1/infer", content=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    _alive(server)


@pytest.mark.parametrize(
    "path",
    ["/v2/models/nope/infer", "/v2/models/iris/versions/9/infer", "/v2/models/..%2F..%2Fetc%2Fpasswd/infer",
     "/v2/models/%2e%2e/infer", "/v2/models/iris%00/infer"],
)  # fmt: skip
def test_unknown_models_are_404(server: Served, path: str) -> None:
    with server.client() as c:
        r = c.post(path, content=json.dumps(GOOD))
        assert r.status_code == 404, r.text
        assert "error" in r.json()
        assert c.get("/v2/models/nope").status_code == 404


@pytest.mark.parametrize(
    "ctype", ["application/python-pickle", "application/x-www-form-urlencoded", "text/plain"]
)
def test_other_content_types_are_415(server: Served, ctype: str) -> None:
    with server.client() as c:
        r = c.post(
            "/v2/models/iris/infer", content=b"\x80\x04K\x01.", headers={"Content-Type": ctype}
        )
    assert r.status_code == 415
    assert "Content-Type" in r.json()["error"]


def test_no_content_type_is_accepted(server: Served) -> None:
    request = httpx.Request(
        "POST", f"{server.url}/v2/models/iris/versions/1/infer", content=json.dumps(GOOD).encode()
    )
    assert "content-type" not in request.headers
    with httpx.Client() as c:
        assert c.send(request).status_code == 200


def test_body_limit_and_gzip_bomb(strict_server: Served) -> None:
    auth = {"Authorization": "Bearer s3cret"}
    with strict_server.client(headers=auth) as c:
        r = c.post("/v2/models/multi/infer", content=b" " * 200_000)
        assert r.status_code == 413
        bomb = gzip.compress(b" " * 50_000_000)  # 50 MB that packs into ~50 KB
        assert len(bomb) < 100_000
        r = c.post("/v2/models/multi/infer", content=bomb, headers={"Content-Encoding": "gzip"})
        assert r.status_code == 413
        assert "expands past the limit" in r.json()["error"]
        r = c.post("/v2/models/multi/infer", content=b"x", headers={"Content-Encoding": "br"})
        assert r.status_code == 415


MULTI = {
    "inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
        {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
        {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["ok"]},
    ]
}


def test_auth(strict_server: Served) -> None:
    with strict_server.client() as c:
        assert c.get("/v2/health/live").status_code == 200  # health stays open
        r = c.post("/v2/models/multi/infer", json=MULTI)
        assert r.status_code == 401 and "token" in r.json()["error"]
        r = c.post("/v2/models/multi/infer", json=MULTI, headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
        assert c.get("/v2/models/multi").status_code == 401
        assert c.get("/v2/models/multi/config").status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert c.get("/v2/models/multi/config", headers=auth).json()["max_batch_size"] == 0
        r = c.post("/v2/models/multi/infer", json=MULTI, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200, r.text


def _slow() -> dict[str, object]:
    body = json.loads(json.dumps(MULTI))
    body["inputs"][2]["data"] = ["slow"]
    return body


def test_timeout_504_and_overload_503(strict_server: Served) -> None:
    auth = {"Authorization": "Bearer s3cret"}
    results: list[int] = []

    def call() -> None:
        with strict_server.client(headers=auth) as c:
            results.append(c.post("/v2/models/multi/infer", json=_slow()).status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 504 in results
    assert 503 in results  # queue size 2: the others are turned away at once
    assert time.monotonic() - started < 10
    time.sleep(2.5)  # the slow predicts finish in their threads; the slots are free again
    with strict_server.client(headers=auth) as c:
        r = c.post("/v2/models/multi/infer", json=MULTI)
        assert r.status_code == 200, r.text
        overloaded = [s for s in results if s == 503]
        assert overloaded


def test_retry_after_on_overload(strict_server: Served) -> None:
    auth = {"Authorization": "Bearer s3cret"}
    responses: list[httpx.Response] = []

    def call() -> None:
        with strict_server.client(headers=auth) as c:
            responses.append(c.post("/v2/models/multi/infer", json=_slow()))

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    busy = [r for r in responses if r.status_code == 503]
    assert busy and all(r.headers.get("Retry-After") == "1" for r in busy)
    time.sleep(2.5)


def test_token_guards_models_but_not_probes(strict_server: Served) -> None:
    with strict_server.client() as c:
        assert c.get("/v2/health/ready").json() == {"ready": True}
        assert c.get("/v2/models/multi/ready").status_code == 200
        assert c.get("/metrics").status_code == 401  # its labels name the models
        assert c.get("/v2").status_code == 200
        assert c.get("/v2/openapi.json").status_code == 401
        assert c.post("/invocations", json={"inputs": [1]}).status_code == 401
        auth = {"Authorization": "Bearer s3cret"}
        assert c.get("/v2/openapi.json", headers=auth).json()["security"] == [{"bearer": []}]
        assert c.get("/metrics", headers=auth).status_code == 200


def test_unknown_endpoints_and_methods_answer_json(server: Served) -> None:
    with server.client() as c:
        for r in (c.get("/v2/models/iris/infer"), c.get("/nope"), c.delete("/v2/models/iris")):
            assert r.status_code in (404, 405) and "error" in r.json()
        r = c.post("/v2/models/iris/versions/1/infer/extra", content=json.dumps(GOOD))
        assert r.status_code in (404, 405) and "error" in r.json()
