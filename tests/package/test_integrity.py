from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import tiffin
from tiffin.package.integrity import verify_tree


def test_clean_package_verifies(packed_iris: Path) -> None:
    manifest = verify_tree(packed_iris)
    assert manifest.digest == tiffin.inspect(packed_iris).digest


@pytest.mark.parametrize(
    "relpath",
    [
        "artifacts/model.skops",
        "schema.json",
        "env/requirements.txt",
        "examples/input.json",
        "README.md",
    ],
)
def test_one_changed_byte_in_each_layer_is_caught(packed_iris: Path, relpath: str) -> None:
    target = packed_iris / relpath
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(tiffin.IntegrityError, match=relpath.replace(".", r"\.")):
        tiffin.load(packed_iris)


def test_changed_manifest_is_caught(packed_iris: Path) -> None:
    path = packed_iris / "tiffin.json"
    data = json.loads(path.read_bytes())
    data["metadata"]["description"] = "sneaky"
    path.write_text(json.dumps(data))
    with pytest.raises(tiffin.IntegrityError, match="tiffin.json was changed"):
        tiffin.load(packed_iris)


def test_manifest_listing_a_forged_hash_is_caught(packed_iris: Path) -> None:
    """Changing a file and its manifest entry still breaks the digest seal."""
    path = packed_iris / "tiffin.json"
    data = json.loads(path.read_bytes())
    (packed_iris / "schema.json").write_text("{}")
    for entry in data["files"]:
        if entry["path"] == "schema.json":
            entry["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(tiffin.IntegrityError):
        tiffin.load(packed_iris)


def test_missing_file(packed_iris: Path) -> None:
    (packed_iris / "examples" / "output.json").unlink()
    with pytest.raises(tiffin.IntegrityError, match="examples/output.json .*missing"):
        tiffin.load(packed_iris)


def test_extra_file(packed_iris: Path) -> None:
    (packed_iris / "code").mkdir()
    (packed_iris / "code" / "evil.py").write_text("import os\n")
    with pytest.raises(tiffin.IntegrityError, match="code/evil.py .*extra"):
        tiffin.load(packed_iris)


def test_symlinked_file(packed_iris: Path, tmp_path: Path) -> None:
    target = packed_iris / "schema.json"
    outside = tmp_path / "outside.json"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(tiffin.IntegrityError, match="schema.json is a symbolic link"):
        tiffin.load(packed_iris)


def test_symlinked_folder(packed_iris: Path, tmp_path: Path) -> None:
    (packed_iris / "artifacts").rename(tmp_path / "artifacts")
    (packed_iris / "artifacts").symlink_to(tmp_path / "artifacts")
    with pytest.raises(tiffin.IntegrityError, match="artifacts is a symbolic link"):
        tiffin.load(packed_iris)


def test_hard_link(packed_iris: Path, tmp_path: Path) -> None:
    os.link(packed_iris / "schema.json", tmp_path / "other")
    with pytest.raises(tiffin.IntegrityError, match="hard link"):
        tiffin.load(packed_iris)


def test_fifo(packed_iris: Path) -> None:
    os.mkfifo(packed_iris / "examples" / "pipe")
    with pytest.raises(tiffin.IntegrityError, match="not a regular file"):
        tiffin.load(packed_iris)


def test_setuid(packed_iris: Path) -> None:
    os.chmod(packed_iris / "README.md", 0o4755)
    with pytest.raises(tiffin.IntegrityError, match="setuid"):
        tiffin.load(packed_iris)


def test_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(tiffin.PackageNotFoundError, match="tiffin.json is missing"):
        tiffin.load(tmp_path)
    with pytest.raises(tiffin.PackageNotFoundError, match="no package folder"):
        tiffin.load(tmp_path / "nope")


def test_nothing_deserialized_before_verification(packed_iris: Path) -> None:
    """A tampered artifact fails integrity even if skops would choke on it first."""
    (packed_iris / "artifacts" / "model.skops").write_bytes(b"not a zip at all")
    with pytest.raises(tiffin.IntegrityError, match="artifacts/model.skops was changed"):
        tiffin.load(packed_iris)


def _reseal(pkg: Path, edit: Any) -> None:
    """What an attacker who can write the whole folder does: edit, then seal again."""
    from tiffin.package.manifest import Manifest

    raw = json.loads((pkg / "tiffin.json").read_bytes())
    edit(raw)
    (pkg / "tiffin.json").write_bytes(Manifest.from_dict(raw).seal().to_bytes())


@pytest.mark.parametrize("where", ["/etc/hostname", "../outside.pkl", "artifacts/../../x"])
def test_runtime_options_cannot_point_outside_the_package(packed_iris: Path, where: str) -> None:
    """A re-sealed manifest once sent the flavor to a file no digest covers (skops then
    died with a raw BadZipFile); now only files listed in the manifest are read."""
    outside = packed_iris.parent / "outside.pkl"
    outside.write_bytes(b"cposix\nsystem\n(Vtouch TRIPWIRE\ntR.")
    _reseal(packed_iris, lambda raw: raw["runtime"]["options"].update(file=where))
    with pytest.raises(tiffin.IntegrityError, match="not a file of this package"):
        tiffin.load(packed_iris)


def test_pickle_flavor_reads_the_bytes_it_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file swapped between verification and deserialization (a shared disk, a
    signature already checked) is caught: the pickle flavor hashes what it unpickles."""
    import pickle
    import sys

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    load_module = sys.modules["tiffin._load"]

    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    pkg = tiffin.pack(
        model, tmp_path / "p", name="p", version="1", example=X, flavor="pickle",
        allow_pickle=True,
    )  # fmt: skip
    assert tiffin.load(pkg.path, allow_pickle=True).name == "p"
    real = load_module.read_signature
    other = pickle.dumps(LogisticRegression().fit(X, [1, 1, 0, 0]), protocol=5)

    def swap_then_read(root: Path) -> Any:  # runs after verify_tree, before the flavor
        (root / "artifacts" / "model.pkl").write_bytes(other)
        return real(root)

    monkeypatch.setattr(load_module, "read_signature", swap_then_read)
    with pytest.raises(tiffin.IntegrityError, match="model.pkl changed after"):
        tiffin.load(pkg.path, allow_pickle=True)


def test_a_file_filed_under_another_layer_is_caught(packed_iris: Path) -> None:
    def move(raw: dict[str, Any]) -> None:
        for entry in raw["files"]:
            if entry["path"] == "README.md":
                entry["layer"] = "artifact"

    _reseal(packed_iris, move)
    with pytest.raises(tiffin.IntegrityError, match="README.md is listed in the artifact layer"):
        tiffin.load(packed_iris)


def _replace_file(raw: dict[str, Any], pkg: Path, rel: str, data: bytes) -> None:
    """Swap a file's bytes and record its new digest, as a re-sealing attacker would."""
    import hashlib

    (pkg / rel).write_bytes(data)
    for entry in raw["files"]:
        if entry["path"] == rel:
            entry.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_a_resealed_non_skops_file_is_a_clear_flavor_error(packed_iris: Path) -> None:
    """skops once died with a raw BadZipFile on a re-sealed artifact that is not a zip."""
    _reseal(packed_iris, lambda raw: _replace_file(raw, packed_iris, "artifacts/model.skops", b"not a zip"))  # fmt: skip
    with pytest.raises(tiffin.FlavorError, match="not a readable skops file") as info:
        tiffin.load(packed_iris)
    assert (info.value.where or "").endswith("artifacts/model.skops")


def test_resealed_trusted_types_must_be_a_list(packed_iris: Path) -> None:
    """A string would pass `"os.system" in "...os.system..."` substring tests."""
    _reseal(packed_iris, lambda raw: raw["runtime"]["options"].update(trusted_types="posix.system builtins.eval"))  # fmt: skip
    with pytest.raises(tiffin.ManifestError, match="trusted_types' must be a list"):
        tiffin.load(packed_iris)


@pytest.mark.parametrize("module", ["../outside", "/tmp/outside", "", "a/b"])
def test_custom_module_option_cannot_leave_code(tmp_path: Path, module: str) -> None:
    """A re-sealed `runtime.options.module` of '../x' once imported a file outside code/."""
    import numpy as np

    src = tmp_path / "scorer.py"
    src.write_text(
        "class Scorer:\n"
        "    def load(self, context):\n        pass\n"
        "    def predict(self, x):\n        return x\n"
    )
    pkg = tiffin.pack(f"{src}:Scorer", tmp_path / "pkg", name="s", version="1", example=np.ones((1, 2))).path  # fmt: skip
    tripwire = tmp_path / "TRIPWIRE"
    (tmp_path / "outside.py").write_text(f"open({str(tripwire)!r}, 'w').close()\nclass Scorer: pass\n")  # fmt: skip
    _reseal(pkg, lambda raw: raw["runtime"]["options"].update(module=module))
    with pytest.raises(tiffin.IntegrityError, match="not a module name inside code/"):
        tiffin.load(pkg)
    assert not tripwire.exists()
