from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest

from tiffin.flavors import byte_formats
from tiffin.security import sniff as sniffing
from tiffin.security.sniff import Verdict


def sniff(path: Path | str) -> sniffing.Verdict:
    """The sniffer as pack and load run it: with every flavor's formats."""
    return sniffing.sniff(path, formats=byte_formats())


def classify_bytes(data: bytes, name: str = "") -> sniffing.Verdict:
    return sniffing.classify_bytes(data, name, formats=byte_formats())


@pytest.mark.parametrize(
    ("data", "kind", "code"),
    [
        (pickle.dumps([1]), "pickle", True),
        (pickle.dumps([1], protocol=0), "pickle", True),
        (b'{"learner": {}}', "json/ubjson", False),
        (b"tree\nversion=v4\n", "lightgbm", False),
        (b"hello, world\n", "text", False),
        (b"", "empty", False),
        (bytes(range(256)) * 4, "unknown", True),
    ],
)
def test_classify(data: bytes, kind: str, code: bool) -> None:
    verdict = classify_bytes(data)
    assert (verdict.kind, verdict.carries_code) == (kind, code)


def test_numpy_and_safetensors(tmp_path: Path) -> None:
    buf = io.BytesIO()
    np.save(buf, np.zeros(3))
    assert not classify_bytes(buf.getvalue()).carries_code
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, str(tmp_path / "w.bin"))
    assert sniff(tmp_path / "w.bin").kind == "safetensors"
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY\x01\x00\xff\xffgarbage")
    assert sniff(tmp_path / "bad.npy").carries_code  # a parse error fails closed


def test_compressed_pickle(tmp_path: Path) -> None:
    import gzip
    import lzma

    for packed in (gzip.compress(pickle.dumps(1)), lzma.compress(pickle.dumps(1))):
        assert classify_bytes(packed).carries_code
    assert not classify_bytes(gzip.compress(b"plain text")).carries_code


def test_pickle_artifact_refused_at_pack_and_load(tmp_path: Path) -> None:
    import textwrap

    import tiffin

    src = tmp_path / "m.py"
    src.write_text(textwrap.dedent("""
        class M:
            def load(self, context):
                pass
            def predict(self, x):
                return x
    """))  # fmt: skip
    blob = tmp_path / "table.csv"
    blob.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(tiffin.UnsafeArtifactError, match="artifacts/table.csv is pickle"):
        tiffin.pack(f"{src}:M", tmp_path / "p", name="m", version="1", example=np.ones((1, 2)),
                    artifacts={"table.csv": blob})  # fmt: skip
    pkg = tiffin.pack(f"{src}:M", tmp_path / "q", name="m", version="1", example=np.ones((1, 2)),
                      artifacts={"table.csv": blob}, allow_pickle=True)  # fmt: skip
    with pytest.raises(tiffin.UnsafeArtifactError, match="table.csv"):
        tiffin.load(pkg.path)
    assert tiffin.load(pkg.path, allow_pickle=True).predict(np.ones((1, 2))).shape == (1, 2)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"0.5,1.25\n2,3\n", "text"),  # "0." parses as POP STOP; still a CSV
        (b"import os\nimport sys\n", "text"),  # "i" is INST, with no importable name
        (b"class M:\n    def predict(self, x):\n        return x\n", "text"),
        (b"Random forest, 100 trees\n", "text"),
        (b"N.", "pickle"),
        (b"cos\nsystem\n(S'touch x'\ntR\xff\xfe", "pickle"),  # broken after the call
        (b")0cos\nsystem\n(S'touch x'\ntR.", "pickle"),  # starts unlike any pickler output
        (b"hello\x00world\x00" * 10, "unknown"),  # NUL bytes are not text
        (b"\x93\x00\x01binary" * 20, "unknown"),
    ],
)
def test_text_is_not_mistaken_for_pickle_and_back(data: bytes, kind: str) -> None:
    verdict = classify_bytes(data, name="looks-safe.json")
    assert verdict.kind == kind, verdict
    assert verdict.carries_code == (kind != "text")


def _tar_bytes(members: dict[str, bytes]) -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_containers_inside_containers(tmp_path: Path) -> None:
    import gzip
    import zipfile

    evil = pickle.dumps({"a": 1}, protocol=0)
    tar = _tar_bytes({"notes.txt": b"fine\n", "deep/x.bin": evil})
    assert classify_bytes(tar).kind == "tar" and classify_bytes(tar).carries_code
    assert classify_bytes(gzip.compress(tar)).carries_code  # .tar.gz
    assert not classify_bytes(_tar_bytes({"a.txt": b"fine\n"})).carries_code
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("w.pkl", evil)
    outer = tmp_path / "outer.dat"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("inner.zip", inner.getvalue())
        zf.writestr("readme.txt", "fine")
    verdict = sniff(outer)
    assert verdict.carries_code and "inner.zip" in verdict.detail
    # nesting deeper than tiffin looks fails closed instead of recursing forever
    data = b"fine"
    for level in range(8):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(f"level{level}.zip", data)
        data = buf.getvalue()
    assert classify_bytes(data).carries_code
    (tmp_path / "broken.zip").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    assert sniff(tmp_path / "broken.zip").carries_code


def test_skops_and_framework_files_are_not_code(tmp_path: Path, iris_pipeline: tuple) -> None:  # type: ignore[type-arg]
    import skops.io

    model, _X = iris_pipeline
    skops.io.dump(model, tmp_path / "m.skops")
    assert sniff(tmp_path / "m.skops").kind == "zip"
    assert not sniff(tmp_path / "m.skops").carries_code


def test_protocol0_streams_pickletools_misreads_are_still_pickles(tmp_path: Path) -> None:
    """The C unpickler reads ``I0x10`` (strtol, base 0) and UTF-8 global names, where
    pickletools stops; such a stream once passed as text while ``pickle.loads`` ran it."""
    import subprocess
    import sys

    trip = tmp_path / "TRIPWIRE"
    evil = f"cposix\nsystem\n(Vtouch {trip}\ntR.".encode()
    for prefix in (b"I0x10\n0", b"L0o17\n0", b"I010\n0", b"I1_000\n0"):
        assert classify_bytes(prefix + evil).carries_code, prefix
    run = [sys.executable, "-c", "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"]
    subprocess.run(run, input=b"I0x10\n0" + evil, check=True)  # the real unpickler runs it
    assert trip.exists()
    assert classify_bytes("c\u0455klearn.base\nBaseEstimator\n)R.".encode()).carries_code
    assert not classify_bytes(b"Iris data\nI0x10\nnot a pickle\n").carries_code


def test_pickle_padded_past_the_examined_bytes_is_still_a_pickle(tmp_path: Path) -> None:
    """5 MB of harmless opcodes, then the global: the sniffer sees only the first 4 MiB,
    all of it valid opcodes, and once called the file UTF-8 text."""
    import subprocess
    import sys

    trip = tmp_path / "TRIPWIRE"
    evil = f"cposix\nsystem\n(Vtouch {trip}\ntR.".encode()
    for pad in (b"N0", b"(l0", b")0"):
        path = tmp_path / "notes.txt"
        path.write_bytes(pad * ((5 << 20) // len(pad)) + evil)
        assert sniff(path).carries_code, pad
    loader = "import pickle,sys; pickle.load(open(sys.argv[1], 'rb'))"
    subprocess.run([sys.executable, "-c", loader, str(path)], check=True)
    assert trip.exists()  # the real unpickler does run it
    csv = "\n".join(f"{i},{i * 0.5},{i % 7}" for i in range(400_000)).encode()
    assert len(csv) > 4 << 20 and not sniff_file(tmp_path / "big.csv", csv).carries_code


def sniff_file(path: Path, data: bytes) -> Verdict:
    path.write_bytes(data)
    return sniff(path)


def test_safetensors_whose_header_length_looks_like_pickle_or_zip(tmp_path: Path) -> None:
    """Header lengths of 640, 896, 1,152 or 1,408 bytes begin b"\\x80\\x02".."\\x80\\x05"
    (a pickle's protocol mark) and 19,280 begins b"PK": real tensors were refused."""
    import struct

    from safetensors.numpy import save

    wanted = {0x280, 0x380, 0x480, 0x580, 0x4B50}
    found: dict[int, bytes] = {}
    tensors = {"w": np.zeros((2, 3), np.float32)}
    for hlen in sorted(wanted):  # metadata of the right length gives that header length
        for k in range(hlen - 200, hlen):
            data = save(tensors, metadata={"note": "x" * k})
            if struct.unpack("<Q", data[:8])[0] == hlen:
                found[hlen] = data
                break
    assert set(found) == wanted
    for hlen, data in found.items():
        verdict = classify_bytes(data)
        assert verdict.kind == "safetensors" and not verdict.carries_code, hlen


def test_pickle_hidden_behind_a_safetensors_header(tmp_path: Path) -> None:
    """Its low byte B (BINBYTES) makes pickle.load skip into the "header", where the
    real stream goes on: it was called safetensors tensors while pickle.load ran it."""
    import subprocess
    import sys

    trip = tmp_path / "TRIPWIRE"
    evil = f"0cposix\nsystem\n(Vtouch {trip}\ntR.".encode()
    head = bytes([0x42, 0x10, 0, 0, 0, 0, 0, 0])  # BINBYTES of 16 bytes; header of 4,162
    body = bytearray(b"{" + b" " * (int.from_bytes(head, "little") - 1))
    body[13 : 13 + len(evil)] = evil  # where the stream resumes: byte 5 + 16
    path = tmp_path / "model.safetensors"
    path.write_bytes(head + bytes(body))
    assert sniff(path).carries_code
    loader = "import pickle,sys; pickle.load(open(sys.argv[1], 'rb'))"
    subprocess.run([sys.executable, "-c", loader, str(path)], check=True)
    assert trip.exists()


def test_work_per_file_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A zip of thousands of benign 4 MiB members (16 MB on disk) once took minutes to
    sniff at pack, lint and load, and nesting multiplied it; now bytes examined per
    file have a budget, and a stream that keeps parsing as opcodes fails closed."""
    import time
    import zipfile

    import tiffin.security.sniff as sniff_module

    path = tmp_path / "many.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(40):
            zf.writestr(f"notes/{i}.txt", b"hello world\n" * 90_000)  # about 1 MB each
    assert not sniff(path).carries_code  # within the default budget: examined, benign
    monkeypatch.setattr(sniff_module, "_BUDGET_BYTES", 16 << 20)
    verdict = sniff(path)
    assert verdict.carries_code and "more data than tiffin examines" in verdict.detail
    started = time.perf_counter()
    assert classify_bytes(b"a" * 300_000).carries_code  # 300,000 APPENDs: not text
    assert time.perf_counter() - started < 20  # minutes before the opcode cap; generous for CI


def test_plain_data_formats_are_data_but_polyglots_stay_pickles(tmp_path: Path) -> None:
    """A custom model's Parquet table or PNG image is data; a file that begins with such a
    magic but parses as pickle opcodes ("GIF89a" starts with BINFLOAT) is still a pickle."""
    import pandas as pd

    pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}).to_parquet(tmp_path / "t.bin")
    assert (sniff(tmp_path / "t.bin").kind, sniff(tmp_path / "t.bin").carries_code) == ("parquet", False)  # fmt: skip
    assert not classify_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64)).carries_code
    assert classify_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt ").kind == "wave"
    polyglot = b"GIF89a\x00\x00" + b"0cposix\nsystem\n(S'true'\ntR."
    assert classify_bytes(polyglot).carries_code
