"""Property and fuzz tests over the readers: no crash other than a TiffinError (or a 4xx).

Counts of inputs run go into SECURITY.md; each test runs Hypothesis's examples.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tiffin
from tiffin.package.manifest import Manifest
from tiffin.schema import typed_json as examples
from tiffin.schema.signature import Signature
from tiffin.serve.protocols import v2_codec as codec

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2048))
def test_manifest_reader_on_bytes(data: bytes) -> None:
    try:
        Manifest.from_bytes(data)
    except tiffin.TiffinError:
        pass


@FUZZ
@given(json_values)
def test_manifest_reader_on_json(value: Any) -> None:
    try:
        Manifest.from_dict(value)
    except tiffin.TiffinError:
        pass


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "name",
                "version",
                "format_version",
                "runtime",
                "files",
                "metadata",
                "environment",
                "provenance",
                "digest",
                "created",
            ]
        ),
        json_values,
    )
)
def test_manifest_reader_on_near_manifests(value: dict[str, Any]) -> None:
    base = {"format_version": 1, "name": "m", "version": "1", "created": None, "metadata": {}, "runtime": {"flavor": "x"},
            "environment": {}, "provenance": {}, "files": [], "digest": None}  # fmt: skip
    base.update(value)
    try:
        Manifest.from_bytes(json.dumps(base).encode())
    except tiffin.TiffinError:
        pass


@FUZZ
@given(json_values)
def test_signature_documents(value: Any) -> None:
    try:
        Signature.from_dict(value)
    except tiffin.TiffinError:
        pass


SIG = Signature.from_dict(
    {
        "inputs": [
            {"name": "x", "dtype": "float32", "shape": [-1, 3]},
            {"name": "s", "dtype": "str", "shape": [-1]},
        ],
        "input_kind": "dict",
    }
)


@FUZZ
@given(st.dictionaries(st.sampled_from(["x", "s", "y"]), json_values, max_size=3))
def test_signature_enforcement(value: dict[str, Any]) -> None:
    try:
        SIG.validate(value)
    except tiffin.TiffinError:
        pass


@FUZZ
@given(json_values)
def test_examples_codec(value: Any) -> None:
    try:
        examples.decode(value)
    except tiffin.TiffinError:
        pass


@FUZZ
@given(st.binary(max_size=1024), st.one_of(st.none(), st.integers(min_value=-5, max_value=2000)))
def test_v2_codec_on_bytes(body: bytes, header: int | None) -> None:
    try:
        codec.decode_request(body, header)
    except codec.BadRequest:
        pass


tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["x", "s", "input"]), "datatype": st.sampled_from([*codec.DTYPES, "BAD"]),
     "shape": st.lists(st.integers(min_value=-1, max_value=4), max_size=3)},
    optional={"data": json_values, "parameters": st.dictionaries(st.just("binary_data_size"), st.integers(-2, 64))},
)  # fmt: skip


@FUZZ
@given(st.lists(tensor, max_size=3), st.binary(max_size=64))
def test_v2_codec_on_requests(inputs: list[dict[str, Any]], tail: bytes) -> None:
    header = json.dumps({"inputs": inputs}).encode()
    try:
        arrays, _request = codec.decode_request(header + tail, len(header) if tail else None)
    except codec.BadRequest:
        return
    try:
        SIG.from_named_arrays(arrays)
    except tiffin.TiffinError:
        pass


@FUZZ
@given(st.lists(st.binary(max_size=8), max_size=6))
def test_bytes_tensor_round_trip(items: list[bytes]) -> None:
    raw = b"".join(struct.pack("<I", len(b)) + b for b in items)
    request = {
        "inputs": [
            {
                "name": "s",
                "datatype": "BYTES",
                "shape": [len(items)],
                "parameters": {"binary_data_size": len(raw)},
            }
        ]
    }
    header = json.dumps(request).encode()
    arrays, _ = codec.decode_request(header + raw, len(header))
    assert list(arrays["s"]) == items
    body, json_len = codec.encode_response(
        {"s": arrays["s"]}, {"parameters": {"binary_data_output": True}}, "m", "1"
    )
    assert json_len is not None and body[json_len:] == raw


@FUZZ
@given(
    st.sampled_from(["FP32", "FP64", "INT64", "INT8", "UINT16", "BOOL", "FP16"]),
    st.integers(1, 5),
    st.integers(0, 2**31),
)
def test_numeric_binary_round_trip(datatype: str, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    arr = (rng.normal(size=(n, 2)) * 10).astype(codec.DTYPES[datatype])
    out = {"y": arr}
    body, json_len = codec.encode_response(
        out, {"parameters": {"binary_data_output": True}}, "m", "1"
    )
    assert json_len is not None
    head = json.loads(body[:json_len])
    request = {"inputs": [{"name": "y", "datatype": head["outputs"][0]["datatype"], "shape": head["outputs"][0]["shape"],
                           "parameters": {"binary_data_size": len(body) - json_len}}]}  # fmt: skip
    req_head = json.dumps(request).encode()
    arrays, _ = codec.decode_request(req_head + body[json_len:], len(req_head))
    np.testing.assert_array_equal(arrays["y"], arr)


# --- the trust readers: pickles, sniffing, signatures, archives ----------------------


@FUZZ
@given(st.binary(max_size=512))
def test_unpickler_on_bytes(data: bytes) -> None:
    from tiffin.security.unpickler import safe_loads

    try:
        safe_loads(data)
    except tiffin.UnsafeArtifactError:
        pass


def _base_pickles() -> list[bytes]:
    import pickle
    from collections import OrderedDict

    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    objects = [np.arange(6.0).reshape(2, 3), {"a": [1, "x", (2.5, None)]}, OrderedDict(b=1), clf]
    return [pickle.dumps(o, protocol=p) for o in objects for p in range(6)]


BASE_PICKLES = _base_pickles()


@FUZZ
@given(
    st.sampled_from(BASE_PICKLES),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_scan_sees_every_global_the_unpickler_resolves(
    base: bytes, edits: list[tuple[int, int]]
) -> None:
    """Mutated real pickles: the static scan is never bypassed, and nothing but
    UnsafeArtifactError escapes."""
    import io

    from tiffin.security.unpickler import AllowListUnpickler, safe_loads, scan

    data = bytearray(base)
    for pos, value in edits:
        data[pos % len(data)] = value
    resolved: list[tuple[str, str]] = []

    class Recording(AllowListUnpickler):
        def find_class(self, module: str, name: str) -> Any:
            resolved.append((module, name))
            return super().find_class(module, name)

    try:
        found = set(scan(bytes(data)))
    except tiffin.UnsafeArtifactError:
        return
    try:
        Recording(io.BytesIO(bytes(data))).load()
    except Exception:
        pass
    assert set(resolved) <= found, (set(resolved) - found, bytes(data))
    try:
        safe_loads(bytes(data))
    except tiffin.UnsafeArtifactError:
        pass


@FUZZ
@given(st.binary(max_size=4096), st.sampled_from(["", "x.json", "m.onnx", "w.npy"]))
def test_sniff_always_gives_a_verdict(data: bytes, name: str) -> None:
    from tiffin.flavors import byte_formats
    from tiffin.security.sniff import classify_bytes

    verdict = classify_bytes(data, name=name, formats=byte_formats())
    assert isinstance(verdict.carries_code, bool)


_PROBE_HITS: list[int] = []


def _probe() -> None:
    """A harmless global: the real unpickler calling it means a pickle's code ran."""
    _PROBE_HITS.append(1)


_NUMBERS = st.one_of(
    st.builds(lambda i, f: f(i), st.integers(-999, 999), st.sampled_from([str, hex, oct, bin])),
    st.builds(lambda i: f"0{i}", st.integers(0, 77)),  # strtol reads these as octal
    st.text(alphabet="0123456789abcdefxXoObBL_+-. e", max_size=7),
)
_TEXT_OPS = st.one_of(
    st.builds(lambda n: b"I" + n.encode() + b"\n0", _NUMBERS),
    st.builds(lambda n: b"L" + n.encode() + b"\n0", _NUMBERS),
    st.builds(lambda n: b"F" + n.encode() + b"\n0", _NUMBERS),
    st.builds(lambda t: b"V" + t.encode("raw_unicode_escape") + b"\n0", st.text(max_size=5)),
    st.builds(lambda t: b"S'" + t.encode("latin-1") + b"'\n0", st.text("ab\\x0'", max_size=5)),
    st.builds(lambda n: b"p" + n.encode() + b"\n", _NUMBERS),
    st.sampled_from([b"N0", b"(0", b"(l0", b"(d0", b"]0", b"}0", b")0", b"N2" + b"00", b"\x88"]),
)


@FUZZ
@given(st.lists(_TEXT_OPS, max_size=4))
def test_sniff_sees_every_pickle_the_real_unpickler_runs(prefix: list[bytes]) -> None:
    """Differential: protocol 0 streams that pickletools and the C unpickler may read
    differently (numbers with a base prefix, odd strings); whenever C ``pickle`` gets to
    call the global, the sniffer must have called the bytes code-carrying."""
    import pickle

    from tiffin.security.sniff import classify_bytes

    data = b"".join(prefix) + b"ctests.test_fuzz\n_probe\n(tR."
    _PROBE_HITS.clear()
    try:
        pickle.loads(data)
    except Exception:
        pass
    if _PROBE_HITS:
        assert classify_bytes(data).carries_code, data


_SIGNED: dict[str, Any] = {}


def _signed_package() -> dict[str, Any]:
    """One signed package for the signature fuzzers (built once, outside Hypothesis)."""
    if not _SIGNED:
        import tempfile
        from pathlib import Path

        from sklearn.linear_model import LogisticRegression

        root = Path(tempfile.mkdtemp(prefix="tiffin-fuzz-"))
        X = np.random.default_rng(0).normal(size=(20, 3))
        model = LogisticRegression().fit(X, (X[:, 0] > 0).astype(int))
        pkg = tiffin.pack(model, root / "pkg", name="fuzz", version="1", example=X[:2])
        private, public = tiffin.keygen(root / "k.key")
        tiffin.sign(pkg.path, private)
        _SIGNED.update(path=pkg.path, manifest=pkg.manifest, private=private, public=public,
                       bundle=(pkg.path / "tiffin.sig").read_bytes())  # fmt: skip
    return _SIGNED


def _check_signature(bundle: bytes) -> None:
    from tiffin.security.signing import verify_signature

    s = _signed_package()
    (s["path"] / "tiffin.sig").write_bytes(bundle)
    try:
        verify_signature(s["path"], s["manifest"], [s["public"]])
    except tiffin.TiffinError:
        pass
    finally:
        (s["path"] / "tiffin.sig").write_bytes(s["bundle"])


@FUZZ
@given(st.one_of(st.binary(max_size=512), json_values.map(lambda v: json.dumps(v).encode())))
def test_signature_bundle_reader(data: bytes) -> None:
    _check_signature(data)


@FUZZ
@given(json_values, st.sampled_from(["subject", "predicate", "predicateType", "_type", "all"]))
def test_signed_statements_with_hostile_content(value: Any, field: str) -> None:
    """A statement signed by the trusted key but with any content: still only TiffinError."""
    import base64

    from tiffin.security import signing

    s = _signed_package()
    bundle = json.loads(s["bundle"])
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement = value if field == "all" else {**statement, field: value}
    payload = json.dumps(statement).encode()
    key = signing._load_private(s["private"])
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    bundle["dsseEnvelope"]["signatures"] = [
        {"sig": base64.b64encode(signing._sign_bytes(key, signing.pae(payload))).decode()}
    ]
    _check_signature(json.dumps(bundle).encode())


_ARCHIVE: dict[str, bytes] = {}


@FUZZ
@given(
    st.sampled_from(["zstd", "tar", "random"]),
    st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=4),
    st.binary(max_size=256),
)
def test_archive_reader(kind: str, edits: list[tuple[int, int]], noise: bytes) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    if not _ARCHIVE:
        s = _signed_package()
        work = Path(tempfile.mkdtemp(prefix="tiffin-fuzz-"))
        _ARCHIVE["zstd"] = tiffin.archive(s["path"], work / "a.tiffin").read_bytes()
        _ARCHIVE["tar"] = tiffin.archive(s["path"], work / "b.tar", compression=None).read_bytes()
    data = bytearray(_ARCHIVE[kind] if kind != "random" else noise)
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    work = Path(tempfile.mkdtemp(prefix="tiffin-fuzz-"))
    try:
        (work / "x.tiffin").write_bytes(bytes(data))
        tiffin.unpack(work / "x.tiffin", work / "out", max_bytes=8 << 20)
    except tiffin.TiffinError:
        pass
    finally:
        shutil.rmtree(work)
