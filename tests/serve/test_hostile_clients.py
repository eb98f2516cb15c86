"""A real `tiffin serve` against hostile or sloppy clients: odd tensors, odd HTTP.

Each case answers JSON ``{"error": ...}`` with a 4xx (or a correct 200), and the server
keeps answering afterwards; none of these is covered by the other server tests.
"""

from __future__ import annotations

import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.serve.conftest import Served, start, stop
from tests.serve.test_http import body_of, exchange, request, status_of

IRIS = json.dumps(
    {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}
).encode()  # fmt: skip
ROW = json.dumps({"dataframe_split": {"columns": ["city", "age"], "data": [["paris", 20.0]]}}).encode()  # fmt: skip


@pytest.fixture(scope="module")
def table(packages: dict[str, Path]) -> Iterator[Served]:
    """The DataFrame model alone (so /invocations serves it), short timeout, 2 slots."""
    served = start([str(packages["table"]), "--timeout", "1", "--queue-size", "2"])
    yield served
    stop(served)


def multi(**tensors: dict[str, Any]) -> dict[str, Any]:
    """A good request for the multi model, with some of its inputs replaced."""
    base = {
        "x": {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]},
        "n": {"name": "n", "shape": [1], "datatype": "INT64", "data": [1]},
        "s": {"name": "s", "shape": [1], "datatype": "BYTES", "data": ["ok"]},
    }
    return {"inputs": list({**base, **tensors}.values())}


def post(served: Served, path: str, body: bytes, **headers: str) -> httpx.Response:
    with served.client() as c:
        return c.post(path, content=body, headers=headers)


def refused(r: httpx.Response, status: int, message: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"], r.json()


def alive(served: Served) -> None:
    r = post(served, "/v2/models/iris/versions/1/infer", IRIS)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [0], r.text


def read_answers(sock: socket.socket, count: int) -> list[bytes]:
    """``count`` whole responses from ``sock``, however the bytes arrive in chunks."""
    data, answers = b"", []
    while len(answers) < count:
        if b"\r\n\r\n" in data:
            head, rest = data.split(b"\r\n\r\n", 1)
            length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")))  # fmt: skip
            if len(rest) >= length:
                answers.append(head + b"\r\n\r\n" + rest[:length])
                data = rest[length:]
                continue
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection after {len(answers)} answers"
        data += chunk
    return answers


def rss_kb(served: Served) -> int:
    status = Path(f"/proc/{served.proc.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def binary(tensors: list[dict[str, Any]], blob: bytes) -> tuple[bytes, dict[str, str]]:
    head = json.dumps({"inputs": tensors}).encode()
    headers = {"Inference-Header-Content-Length": str(len(head)), "Content-Type": "application/octet-stream"}  # fmt: skip
    return head + blob, headers


# -- tensors ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "message"),
    [
        ({"shape": [1] * 65, "data": [1]}, "65 dimensions; at most 64"),
        ({"shape": [0, 2**62, 2**62], "data": []}, "larger than any tensor can be"),
        ({"shape": [2**64 - 1, 0], "data": []}, "larger than any tensor can be"),
    ],
)
def test_shapes_numpy_cannot_make_are_400(server: Served, x: dict[str, Any], message: str) -> None:
    """Both were a 500 ValueError: a zero dimension makes the value count 0 (so the
    count check passes), and NumPy then refuses the shape itself."""
    body = multi(x={"name": "x", "datatype": "FP32", **x})
    refused(post(server, "/v2/models/multi/infer", json.dumps(body).encode()), 400, message)
    tensors = multi(x={"name": "x", "datatype": "FP32", "shape": x["shape"], "parameters": {"binary_data_size": 0}})  # fmt: skip
    blob, headers = binary(tensors["inputs"], b"")
    refused(post(server, "/v2/models/multi/infer", blob, **headers), 400, message)
    alive(server)


def test_data_and_binary_data_together_are_400(server: Served) -> None:
    """The binary bytes silently won over the JSON data: a predict on zeros for [9, 9, 9]."""
    x = {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [9, 9, 9], "parameters": {"binary_data_size": 12}}  # fmt: skip
    blob, headers = binary(multi(x=x)["inputs"], b"\x00" * 12)
    refused(post(server, "/v2/models/multi/infer", blob, **headers), 400, "both 'data' and binary_data_size")  # fmt: skip


@pytest.mark.parametrize(
    ("datatype", "value"), [("INT64", 2**70), ("UINT64", 2**64), ("INT64", -(2**63) - 1)]
)
def test_integers_beyond_64_bits_do_not_fit(server: Served, datatype: str, value: int) -> None:
    """orjson reads them as floats; the answer said "needs integers" to a client that sent one."""
    body = multi(n={"name": "n", "shape": [1], "datatype": datatype, "data": [value]})
    refused(post(server, "/v2/models/multi/infer", json.dumps(body).encode()), 400, f"does not fit {datatype}")  # fmt: skip


@pytest.mark.parametrize(
    ("data", "status", "answer"),
    [
        (b"[1e400, 1, 1]", 400, "not valid JSON"),  # infinity is no JSON number
        (b"[1e-400, -0, -0.0]", 200, 0.0),  # underflow rounds to zero, as JSON decoders do
        (b"[1180591620717411303424, 1, 1]", 200, 2.0**70 + 2),  # an integer that fits FP32
        (b"[true, 1, 1]", 400, "FP32 needs numbers"),
        (b"[null, 1, 1]", 400, "FP32 needs numbers"),
    ],
)
def test_float_edge_values(server: Served, data: bytes, status: int, answer: object) -> None:
    template = json.dumps(multi(x={"name": "x", "shape": [1, 3], "datatype": "FP32", "data": "D"}))
    body = template.encode().replace(b'"D"', data)
    r = post(server, "/v2/models/multi/infer", body)
    if status == 200:
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [pytest.approx(answer, rel=1e-6)]
    else:
        refused(r, status, str(answer))


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        ({"name": "s", "shape": [1], "datatype": "BYTES", "data": [None]}, "must be strings"),
        ({"name": "s", "shape": [2], "datatype": "BYTES", "data": "ab"}, "needs 2 values"),
        ({"name": "n", "shape": [1], "datatype": "BOOL", "data": [1]}, "BOOL needs booleans"),
        ({"name": "n", "shape": [1], "datatype": "INT64", "data": [{"a": 1}]}, "needs integers"),
    ],
)
def test_values_of_the_wrong_kind(server: Served, tensor: dict[str, Any], message: str) -> None:
    body = multi(**{tensor["name"]: tensor})
    refused(post(server, "/v2/models/multi/infer", json.dumps(body).encode()), 400, message)


def test_zero_rows_and_huge_shapes_over_tiny_data(server: Served) -> None:
    """A batch of zero rows is a batch; a billion-row shape over three values allocates
    nothing (the value count is checked first) and the server's memory stays put."""
    empty = multi(
        x={"name": "x", "shape": [0, 3], "datatype": "FP32", "data": []},
        n={"name": "n", "shape": [0], "datatype": "INT64", "data": []},
        s={"name": "s", "shape": [0], "datatype": "BYTES", "data": []},
    )
    r = post(server, "/v2/models/multi/infer", json.dumps(empty).encode())
    assert r.status_code == 200, r.text
    assert [o["shape"] for o in r.json()["outputs"]] == [[0], [0], [0]]
    before = rss_kb(server)
    huge = multi(x={"name": "x", "shape": [10**9, 3], "datatype": "FP32", "data": [1, 2, 3]})
    refused(post(server, "/v2/models/multi/infer", json.dumps(huge).encode()), 400, "needs 3000000000 values")  # fmt: skip
    x = {"name": "x", "shape": [10**9, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}  # fmt: skip
    blob, headers = binary(multi(x=x)["inputs"], b"\x00" * 12)
    refused(post(server, "/v2/models/multi/infer", blob, **headers), 400, "12 bytes do not make shape")  # fmt: skip
    s = {"name": "s", "shape": [10**9], "datatype": "BYTES", "parameters": {"binary_data_size": 4}}
    blob, headers = binary(multi(s=s)["inputs"], b"\x00" * 4)
    refused(post(server, "/v2/models/multi/infer", blob, **headers), 400, "cannot hold")
    assert rss_kb(server) - before < 50_000  # 12 GB if any of them had been allocated


@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": '
        + b"[" * 5000
        + b"]" * 5000
        + b"}]}",  # deep in the data
        b'{"extra": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_000 + b', "inputs": []}',
        b'{"inputs": [{"name": "s\xff", "shape": [1], "datatype": "FP32", "data": [1]}]}',
        b'{"inputs": [{"name": "\\ud800", "shape": [1], "datatype": "FP32", "data": [1]}]}',
    ],
    ids=["deep-data", "deep-unknown-field", "non-utf8-name", "lone-surrogate"],
)
def test_undecodable_json_is_400(server: Served, body: bytes) -> None:
    refused(post(server, "/v2/models/multi/infer", body), 400, "not valid JSON")
    alive(server)


def test_long_client_names_are_not_echoed_whole(server: Served, table: Served) -> None:
    """A megabyte input, output or field name came back whole in the error message."""
    big = "n" * 1_000_000
    n = {"name": big, "shape": [1], "datatype": "INT64", "data": [1]}
    bodies = [
        {"inputs": [{**n, "datatype": "X" * 1000}]},  # unknown datatype
        {"inputs": [{**n, "data": ["a"]}]},  # wrong kind of value
        {"inputs": [n, n]},  # given twice
        {**multi(), "outputs": [{"name": big}]},  # unknown output
    ]
    for body in bodies:
        r = post(server, "/v2/models/multi/infer", json.dumps(body).encode())
        assert r.status_code == 400 and len(r.content) < 1000, r.content[:200]
    r = post(table, "/invocations", json.dumps({big: 1}).encode())
    assert r.status_code == 400 and len(r.content) < 1000 and "exactly one of" in r.json()["error"]


# -- a DataFrame model ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/invocations", {"instances": {"city": "paris", "age": 20.0}}),
        ("/invocations", {"dataframe_records": [{"city": ["paris", "lyon"], "age": [1.0, 2.0]}]}),
        ("/v2/models/table/infer", {"inputs": [
            {"name": "city", "shape": [], "datatype": "BYTES", "data": "paris"},
            {"name": "age", "shape": [], "datatype": "FP64", "data": 20.0},
        ]}),
    ],
)  # fmt: skip
def test_a_column_that_is_not_a_list_of_rows_is_400(table: Served, path: str, body: object) -> None:
    """A single value for a column was a 500 (TypeError: iteration over a 0-d array)."""
    refused(post(table, path, json.dumps(body).encode()), 400, "input 'city' is a column")
    assert post(table, "/invocations", ROW).json() == {"predictions": [0]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"dataframe_split": {"columns": ["city", "age"], "data": [["paris"]]}}, "one value per column"),
        ({"dataframe_split": {"columns": ["city", "age"], "data": [["paris", "20"]]}}, "FP64 needs numbers"),
        ({"dataframe_records": [{"city": "paris", "age": 1.0, "zip": 75}]}, "unknown input 'zip'"),
        ({"dataframe_records": [{"city": "paris"}]}, "input 'age' is missing"),
        ({"instances": {"city": ["paris", "lyon"], "age": [1.0]}}, "differ in length"),
    ],
)  # fmt: skip
def test_sloppy_tables_on_invocations(table: Served, body: object, message: str) -> None:
    refused(post(table, "/invocations", json.dumps(body).encode()), 400, message)


def test_a_gzip_body_that_inflates_to_garbage_is_400(table: Served) -> None:
    for inner in (b"{not json", b'{"instances": "\xff"}', b""):
        r = post(table, "/invocations", gzip.compress(inner), **{"Content-Encoding": "gzip"})
        refused(r, 400, "not valid JSON")
    r = post(table, "/invocations", gzip.compress(ROW), **{"Content-Encoding": "gzip"})
    assert r.json() == {"predictions": [0]}


# -- HTTP -------------------------------------------------------------------------------
def chunked(body: bytes, te: bytes = b"chunked", size: bytes | None = None) -> bytes:
    head = b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    size = b"%x" % len(body) if size is None else size
    return (
        head + b"Transfer-Encoding: " + te + b"\r\n\r\n" + size + b"\r\n" + body + b"\r\n0\r\n\r\n"
    )


def test_transfer_codings(server: Served) -> None:
    """`gzip, chunked` was taken as plain chunked: a gzip body then failed as "not valid
    UTF-8" JSON. Other codings are 501 (RFC 9112 6.1); bad chunks and CL with TE, 400."""
    assert status_of(exchange(server, chunked(IRIS))) == 200
    for te in (b"gzip, chunked", b"x-custom,chunked"):
        answer = exchange(server, chunked(gzip.compress(IRIS), te))
        assert status_of(answer) == 501 and "Content-Encoding: gzip" in body_of(answer)["error"]
    for size in (b"zz", b"-5", b"f" * 20, b"2"):
        answer = exchange(server, chunked(IRIS, size=size))
        assert status_of(answer) == 400 and "malformed HTTP request" in body_of(answer)["error"]
    smuggle = chunked(IRIS).replace(b"Host: x\r\n", b"Host: x\r\nContent-Length: 5\r\n")
    assert status_of(exchange(server, smuggle)) == 400
    alive(server)


def test_head_and_http_1_0_on_every_read_endpoint(server: Served) -> None:
    paths = ["/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/iris", "/v2/models/iris/versions/1",
             "/v2/models/iris/config", "/v2/models/iris/ready", "/metrics", "/v2/openapi.json"]  # fmt: skip
    for path in paths:
        with server.client() as c:
            got = c.get(path)
            head = c.head(path)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == got.headers["content-length"]
        old = exchange(server, f"GET {path} HTTP/1.0\r\n\r\n".encode())
        assert status_of(old) == 200 and b"\r\nconnection: close" in old.lower()
    old = exchange(server, b"POST /v2/models/iris/versions/1/infer HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" % (len(IRIS), IRIS))  # fmt: skip
    assert status_of(old) == 200 and body_of(old)["outputs"][0]["data"] == [0]


def test_pipelined_errors_do_not_derail_the_connection(server: Served) -> None:
    """A refused request (bad JSON, an unknown model) leaves the connection framed: the
    requests pipelined behind it get their own answers, in order."""
    keep = request("POST", "/v2/models/iris/infer", IRIS).replace(b"Connection: close\r\n", b"")
    bad = request("POST", "/v2/models/iris/infer", b"{bad}").replace(b"Connection: close\r\n", b"")
    unknown = keep.replace(b"/iris/", b"/nope/")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(bad + unknown)
        sock.sendall(keep)  # a second write before any answer came
        answers = read_answers(sock, 3)
    assert [status_of(a) for a in answers] == [400, 404, 200]
    assert all("error" in body_of(a) for a in answers[:2])


def test_stalled_bodies_time_out_and_free_their_slots(table: Served) -> None:
    """Six clients send half a body and hold on, three more leave mid-body, with 2 slots:
    a body still arriving holds a slot, so two of them are held and the others are 503
    at once; the held ones get their 504 within --timeout (1 s), and the slots all come
    back."""
    head = b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(ROW)
    stalled = [socket.create_connection(("127.0.0.1", table.port), timeout=10) for _ in range(6)]
    try:
        for sock in stalled:
            sock.sendall(head + ROW[:10])
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", table.port), timeout=10) as gone:
                gone.sendall(head + ROW[:10])
        started = time.monotonic()
        statuses = []
        for sock in stalled:
            (answer,) = read_answers(sock, 1)
            statuses.append(status_of(answer))
            assert ("timeout" if statuses[-1] == 504 else "in flight") in body_of(answer)["error"]
        assert sorted(statuses) == [503] * 4 + [504] * 2
        assert time.monotonic() - started < 8
    finally:
        for sock in stalled:
            sock.close()
    for _ in range(4):  # more than --queue-size: no slot was leaked
        assert post(table, "/invocations", ROW).json() == {"predictions": [0]}


def test_100_continue_without_a_body_times_out(table: Served) -> None:
    with socket.create_connection(("127.0.0.1", table.port), timeout=10) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 50\r\n\r\n")  # fmt: skip
        answer = b""
        while b"504" not in answer:
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 504")


def test_many_half_sent_heads_do_not_starve_other_clients(table: Served) -> None:
    """Slowloris: 300 connections each send half a request head and wait; a normal
    client is answered meanwhile, each of them gets a 408, and memory stays put."""
    before = rss_kb(table)
    socks = [socket.create_connection(("127.0.0.1", table.port), timeout=10) for _ in range(300)]
    try:
        for sock in socks:
            sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Le")
        for _ in range(3):
            assert post(table, "/invocations", ROW).status_code == 200
        statuses = {status_of(sock.recv(65536)) for sock in socks}
    finally:
        for sock in socks:
            sock.close()
    assert statuses == {408}
    assert rss_kb(table) - before < 50_000
    assert post(table, "/invocations", ROW).json() == {"predictions": [0]}
