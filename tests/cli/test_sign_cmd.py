"""``tiffin keygen`` and ``tiffin sign``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli._run import tiffin
from tiffin.package.open import open_package


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_keygen_then_sign(packed_iris: Path, tmp_path: Path, algorithm: str) -> None:
    private, public = tmp_path / "release.pem", tmp_path / "pub" / "release.pub"
    public.parent.mkdir()
    proc = tiffin("keygen", str(private), "--public", str(public), "--algorithm", algorithm)
    assert proc.returncode == 0, proc.stderr
    assert f"private key {private} (keep it secret)" in proc.stdout
    assert f"public key  {public}" in proc.stdout
    proc = tiffin("sign", str(packed_iris), "--key", str(private))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"signed {packed_iris} -> {packed_iris / 'tiffin.sig'}\n"
    assert open_package(packed_iris, trusted_keys=[public], require_signed=True)


def test_bad_arguments(packed_iris: Path, tmp_path: Path) -> None:
    proc = tiffin("keygen", str(tmp_path / "k"), "--algorithm", "rsa")
    assert proc.returncode == 2 and "'rsa' is not one of" in proc.stderr
    proc = tiffin("sign", str(packed_iris), "--key", str(tmp_path / "missing.pem"))
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert not (packed_iris / "tiffin.sig").exists()
