from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import zstandard

import tiffin
from tiffin.package.archive import open_archive


@pytest.mark.parametrize("compression", ["zstd", None])
def test_round_trip_and_reproducible(
    packed_iris: Path, tmp_path: Path, compression: str | None
) -> None:
    a = tiffin.archive(packed_iris, tmp_path / "a.tiffin", compression=compression)
    b = tiffin.archive(packed_iris, tmp_path / "b.tiffin", compression=compression)
    assert a.read_bytes() == b.read_bytes()
    out = tiffin.unpack(a, tmp_path / "out")
    assert tiffin.inspect(out).digest == tiffin.inspect(packed_iris).digest
    m = tiffin.load(a)  # load straight from the file
    assert m.predict(np.zeros((1, 4))).shape == (1,)


def _tar(
    entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None, zstd: bool = False
) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info in entries:
            payload = (data or {}).get(info.name, b"")
            if info.isreg():
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if info.isreg() else None)
    raw = buf.getvalue()
    return zstandard.ZstdCompressor().compress(raw) if zstd else raw


def _entry(
    name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    return info


HOSTILE = {
    "traversal": ([_entry("../evil.txt")], "unsafe path"),
    "nested traversal": ([_entry("a/../../evil.txt")], "unsafe path"),
    "absolute": ([_entry("/tmp/evil.txt")], "unsafe path"),
    "symlink": ([_entry("link", tarfile.SYMTYPE, link="/etc/passwd")], "is a link"),
    "hardlink": ([_entry("a.txt"), _entry("b.txt", tarfile.LNKTYPE, link="a.txt")], "is a link"),
    "device": ([_entry("dev", tarfile.CHRTYPE)], "device"),
    "fifo": ([_entry("fifo", tarfile.FIFOTYPE)], "device, FIFO"),
    "setuid": ([_entry("run.sh", mode=0o4755)], "setuid"),
    "duplicate": ([_entry("a.txt"), _entry("a.txt")], "appears twice"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_refused(tmp_path: Path, case: str) -> None:
    entries, message = HOSTILE[case]
    path = tmp_path / "x.tiffin"
    path.write_bytes(_tar(entries, {"a.txt": b"a"}))
    with pytest.raises(tiffin.ArchiveError, match=message):
        tiffin.unpack(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["x.tiffin"]  # nothing half-written


def test_zstd_bomb_stopped_at_cap(tmp_path: Path) -> None:
    """A 1 GB tar of zeros squeezed into a small zstd file: stopped at the cap (now by the
    declared size, before a byte of it is written; the read cap stays as the backstop)."""
    cctx = zstandard.ZstdCompressor(level=3)
    path = tmp_path / "bomb.tiffin"
    info = _entry("zeros.bin")
    info.size = 1 << 30
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    with open(path, "wb") as fh, cctx.stream_writer(fh) as w:
        w.write(header)
        chunk = b"\0" * (1 << 20)
        for _ in range(1024):
            w.write(chunk)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(tiffin.ArchiveError, match="past 10,485,760 bytes"):
        tiffin.unpack(path, tmp_path / "out", max_bytes=10 << 20)
    assert not (tmp_path / "out").exists()


def test_tar_bomb_many_files_capped(tmp_path: Path) -> None:
    entries = [_entry(f"f{i}.bin") for i in range(200)]
    path = tmp_path / "many.tiffin"
    path.write_bytes(_tar(entries, {f"f{i}.bin": b"x" * 10_000 for i in range(200)}))
    with pytest.raises(tiffin.ArchiveError, match="past 500,000 bytes"):
        tiffin.unpack(path, tmp_path / "out", max_bytes=500_000)


def test_only_into_a_new_empty_folder(packed_iris: Path, tmp_path: Path) -> None:
    a = tiffin.archive(packed_iris, tmp_path / "a.tiffin")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(tiffin.UsageError, match="not an empty folder"):
        tiffin.unpack(a, full)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert tiffin.inspect(tiffin.unpack(a, empty)).name == "iris"


def test_garbage_and_tampered_archives(packed_iris: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.tiffin"
    bad.write_bytes(os.urandom(2048))
    with pytest.raises(tiffin.ArchiveError):
        tiffin.unpack(bad, tmp_path / "o1")
    plain = tiffin.archive(packed_iris, tmp_path / "p.tar", compression=None)
    data = bytearray(plain.read_bytes())
    idx = data.find(b'"name": "iris"')
    assert idx > 0
    data[idx + 10] = ord("x")  # "iris" -> "ixis": still a valid name, but the seal breaks
    plain.write_bytes(bytes(data))
    with pytest.raises(tiffin.IntegrityError):
        tiffin.unpack(plain, tmp_path / "o2")
    assert not (tmp_path / "o2").exists()
    with pytest.raises(tiffin.IntegrityError) as caught:
        tiffin.load(plain)
    # the error names the archive given, not the private folder it went to
    assert f"archive {plain}" in str(caught.value) and "tiffin-archive-" not in str(caught.value)
    assert open_archive  # the loader's extraction path is the same hardened one


def test_oversized_extended_header_refused_before_reading(tmp_path: Path) -> None:
    """A pax header declaring 512 MB (zstd makes it a few KB) is refused, not read."""
    info = _entry("././@PaxHeader", tarfile.XHDTYPE)
    info.size = 512 << 20
    path = tmp_path / "pax.tiffin"
    cctx = zstandard.ZstdCompressor(level=3)
    with open(path, "wb") as fh, cctx.stream_writer(fh) as w:
        w.write(info.tobuf(format=tarfile.USTAR_FORMAT))
        for _ in range(16):
            w.write(b"9" * (1 << 20))
    with pytest.raises(tiffin.ArchiveError, match="extended tar header declares"):
        tiffin.unpack(path, tmp_path / "out")


def test_hostile_archive_refused_by_load_and_temp_removed(tmp_path: Path) -> None:
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("tiffin-archive-*"))
    path = tmp_path / "x.tiffin"
    path.write_bytes(_tar([_entry("a.txt"), _entry("../evil.txt")], {"a.txt": b"a"}, zstd=True))
    with pytest.raises(tiffin.ArchiveError, match="unsafe path"):
        tiffin.load(path)
    assert set(Path(tempfile.gettempdir()).glob("tiffin-archive-*")) == before
    zipped = tmp_path / "model.zip"
    import zipfile

    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("tiffin.json", "{}")
    with pytest.raises(tiffin.ArchiveError, match="not a tiffin archive"):
        tiffin.load(zipped)


def test_signed_package_travels_in_the_archive(packed_iris: Path, tmp_path: Path) -> None:
    private, public = tiffin.keygen(tmp_path / "k.key")
    tiffin.sign(packed_iris, private)
    a = tiffin.archive(packed_iris, tmp_path / "signed.tiffin")
    assert tiffin.load(a, trusted_keys=[public], require_signed=True).name == "iris"
    with pytest.raises(tiffin.UsageError, match="inside the package"):
        tiffin.archive(packed_iris, packed_iris / "x.tiffin")
    with pytest.raises(tiffin.ConflictError, match="already exists"):
        tiffin.archive(packed_iris, a)
    with pytest.raises(tiffin.UsageError, match="unknown compression"):
        tiffin.archive(packed_iris, tmp_path / "g.tiffin", compression="gzip")


def test_cli_archive_and_unpack(packed_iris: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tiffin.cli", *args], capture_output=True, text=True
        )

    out = tmp_path / "iris.tiffin"
    assert cli("archive", str(packed_iris), "-o", str(out)).returncode == 0
    assert cli("unpack", str(out), str(tmp_path / "u")).returncode == 0
    assert tiffin.inspect(tmp_path / "u").digest == tiffin.inspect(packed_iris).digest
    bomb = cli("unpack", str(out), str(tmp_path / "v"), "--max-bytes", "1000")
    assert bomb.returncode == 13 and "expands past" in bomb.stdout + bomb.stderr


def _sparse_entry(name: str, realsize: int, chunk: int = 512) -> bytes:
    """A GNU sparse header (tarfile cannot write one): ``chunk`` stored bytes at the
    end of a ``realsize`` file whose holes a reader fills with zeros it never read."""
    info = tarfile.TarInfo(name)
    info.size, info.type = chunk, tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))

    def octal(n: int) -> bytes:
        return b"%011o\0" % n

    header[386:398], header[398:410] = octal(realsize - chunk), octal(chunk)  # one map entry
    header[482], header[483:495] = 0, octal(realsize)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    return bytes(header[:512]) + b"A" * chunk + b"\0" * 1024


def test_sparse_entry_cannot_fill_the_disk_past_the_cap(tmp_path: Path) -> None:
    """2.5 KB of archive once wrote a 200 MB file under a 1 MB cap: holes are not read."""
    path = tmp_path / "sparse.tiffin"
    path.write_bytes(_sparse_entry("artifacts/big.bin", 200 << 20))
    with pytest.raises(tiffin.ArchiveError, match="sparse"):
        tiffin.unpack(path, tmp_path / "out", max_bytes=1 << 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sparse.tiffin"]


def test_declared_sizes_past_the_cap_refused_before_writing(tmp_path: Path) -> None:
    info = _entry("artifacts/huge.bin")
    info.size = 10 << 30  # declared, never delivered
    path = tmp_path / "huge.tiffin"
    path.write_bytes(info.tobuf(tarfile.GNU_FORMAT) + b"x" * 4096)
    with pytest.raises(tiffin.ArchiveError, match="past 1,048,576 bytes"):
        tiffin.unpack(path, tmp_path / "out", max_bytes=1 << 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.tiffin"]


def test_deeply_nested_entry_refused_and_nothing_left(tmp_path: Path) -> None:
    """1,500 folders deep once raised RecursionError and left a tree rmtree could not remove."""
    path = tmp_path / "deep.tiffin"
    path.write_bytes(_tar([_entry("/".join(["a"] * 1500) + "/f")], zstd=True))
    with pytest.raises(tiffin.ArchiveError, match="nested more than 64 folders"):
        tiffin.unpack(path, tmp_path / "out")
    with pytest.raises(tiffin.ArchiveError, match="nested"):
        tiffin.load(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.tiffin"]


def test_destination_links_refused(packed_iris: Path, tmp_path: Path) -> None:
    archive = tiffin.archive(packed_iris, tmp_path / "a.tiffin")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "to-empty").symlink_to(tmp_path / "empty")
    for name in ("dangling", "to-empty"):
        with pytest.raises(tiffin.UsageError, match="symbolic link"):
            tiffin.unpack(archive, tmp_path / name)
    assert not (tmp_path / "nowhere").exists() and not any((tmp_path / "empty").iterdir())


def test_writer_does_not_follow_a_planted_temp_link(packed_iris: Path, tmp_path: Path) -> None:
    """The temp name was predictable (.NAME.tmp-PID): a link there redirected the write."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / f".a.tiffin.tmp-{os.getpid()}").symlink_to(victim)
    out = tiffin.archive(packed_iris, tmp_path / "a.tiffin")
    assert victim.read_text() == "precious"
    assert tiffin.inspect(tiffin.unpack(out, tmp_path / "out")).name == "iris"


def test_read_cap_stops_what_headers_do_not_declare(tmp_path: Path) -> None:
    """Extended headers are read but declared by no entry's size: the byte cap still
    stops a stream of them."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i in range(400):
            info = _entry(f"f{i}")
            info.pax_headers = {"comment": "x" * 4000}
            tar.addfile(info, io.BytesIO(b""))
    path = tmp_path / "headers.tiffin"
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    with pytest.raises(tiffin.ArchiveError, match="expands past"):
        tiffin.unpack(path, tmp_path / "out", max_bytes=500_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["headers.tiffin"]
