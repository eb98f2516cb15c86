from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tiffin


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return tiffin.keygen(tmp_path / "alice.key")


def test_sign_and_verify(packed_iris: Path, keys: tuple[Path, Path]) -> None:
    private, public = keys
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    sig = tiffin.sign(packed_iris, private)
    assert json.loads(sig.read_text())["digest"] == tiffin.inspect(packed_iris).digest
    m = tiffin.load(packed_iris, trusted_keys=[public])  # the signature file is outside the seal
    assert m.name == "iris"


def test_wrong_key_refused(packed_iris: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    tiffin.sign(packed_iris, keys[0])
    _, mallory_pub = tiffin.keygen(tmp_path / "mallory.key")
    with pytest.raises(tiffin.SignatureVerificationError, match="not signed by any trusted key"):
        tiffin.load(packed_iris, trusted_keys=[mallory_pub])


def test_tampered_after_signing(packed_iris: Path, keys: tuple[Path, Path]) -> None:
    tiffin.sign(packed_iris, keys[0])
    (packed_iris / "README.md").write_text("changed")
    with pytest.raises(tiffin.IntegrityError, match="README.md"):
        tiffin.load(packed_iris, trusted_keys=[keys[1]])


def test_resealed_manifest_breaks_signature(packed_iris: Path, keys: tuple[Path, Path]) -> None:
    """An attacker who re-seals a changed package cannot re-use the signature."""
    import dataclasses

    from tiffin.integrity import index_files

    tiffin.sign(packed_iris, keys[0])
    (packed_iris / "README.md").write_text("evil card")
    from tiffin.integrity import read_manifest

    old = read_manifest(packed_iris)
    resealed = dataclasses.replace(old, files=index_files(packed_iris)).seal()
    (packed_iris / "tiffin.json").write_bytes(resealed.to_bytes())
    with pytest.raises(tiffin.SignatureVerificationError, match="another package digest"):
        tiffin.load(packed_iris, trusted_keys=[keys[1]])


def test_unsigned_refused_under_policy(
    packed_iris: Path, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(tiffin.SignatureVerificationError, match="not signed"):
        tiffin.load(packed_iris, require_signature=True, trusted_keys=[keys[1]])
    monkeypatch.setenv("TIFFIN_REQUIRE_SIGNATURE", "1")
    with pytest.raises(tiffin.SignatureVerificationError, match="not signed"):
        tiffin.load(packed_iris)
    tiffin.sign(packed_iris, keys[0])
    with pytest.raises(tiffin.SignatureVerificationError, match="no trusted keys"):
        tiffin.load(packed_iris)
    assert tiffin.load(packed_iris, trusted_keys=[keys[1]]).name == "iris"


def test_malformed_signature(packed_iris: Path, keys: tuple[Path, Path]) -> None:
    (packed_iris / "tiffin.sig").write_text("{not json")
    with pytest.raises(tiffin.SignatureVerificationError, match="malformed"):
        tiffin.load(packed_iris, trusted_keys=[keys[1]])


def test_cli_keygen_sign_verify(tmp_path: Path, packed_iris: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tiffin.cli", *args], capture_output=True, text=True
        )

    assert run("keygen", str(tmp_path / "k")).returncode == 0
    assert run("keygen", str(tmp_path / "k")).returncode == 2  # never overwrites a key
    assert run("sign", str(packed_iris), "--key", str(tmp_path / "k")).returncode == 0
    ok = run("verify", str(packed_iris), "--env", "current", "--key", str(tmp_path / "k.pub"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    tiffin.keygen(tmp_path / "other")
    bad = run("verify", str(packed_iris), "--env", "current", "--key", str(tmp_path / "other.pub"))
    assert bad.returncode == 10 and "not signed by any trusted key" in bad.stdout
