"""Package signatures: sign, verify, wrong keys, tampering of the package and of the
signature itself, the policy, and the OpenSSF model-signing format."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tiffin
from tiffin.security import signing


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return tiffin.keygen(tmp_path / "alice.key")


def _statement(pkg: Path) -> dict[str, Any]:
    bundle = json.loads((pkg / "tiffin.sig").read_text())
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


@pytest.mark.parametrize("algorithm", ["ed25519", "ecdsa-p256"])
def test_sign_and_verify(packed_iris: Path, tmp_path: Path, algorithm: str) -> None:
    private, public = tiffin.keygen(tmp_path / "k.key", algorithm=algorithm)
    assert oct(private.stat().st_mode & 0o777) == "0o600"
    tiffin.sign(packed_iris, private)
    statement = _statement(packed_iris)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert statement["predicate"]["tiffin"]["digest"] == tiffin.inspect(packed_iris).digest
    listed = {r["name"]: r["digest"] for r in statement["predicate"]["resources"]}
    on_disk = {
        p.relative_to(packed_iris).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in packed_iris.rglob("*")
        if p.is_file() and p.name != "tiffin.sig"
    }
    assert listed == on_disk  # every file, tiffin.json included, as model-signing lists them
    m = tiffin.load(packed_iris, trusted_keys=[public])  # the signature file is outside the seal
    assert m.name == "iris"
    key_id = signing.verify_signature(packed_iris, m.manifest, [public.read_bytes()])
    assert key_id == hashlib.sha256(public.read_bytes()).hexdigest()


def test_key_forms_and_bad_keys(packed_iris: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    private, public = keys
    tiffin.sign(packed_iris, private.read_bytes())
    manifest = tiffin.inspect(packed_iris)
    pub_obj = signing.load_public(public)
    raw = pub_obj.public_bytes_raw()
    for form in (public, str(public), public.read_bytes(), raw, pub_obj):
        assert signing.verify_signature(packed_iris, manifest, [form])
    with pytest.raises(tiffin.UsageError, match="already exists"):
        tiffin.keygen(private)
    with pytest.raises(tiffin.UsageError, match="unknown key algorithm"):
        tiffin.keygen(tmp_path / "x.key", algorithm="rsa")
    with pytest.raises(tiffin.UsageError, match="not a public key"):
        signing.load_public(b"garbage")
    with pytest.raises(tiffin.UsageError, match="not an unencrypted PEM"):
        tiffin.sign(packed_iris, public)  # a public key is not a signing key
    with pytest.raises(tiffin.UsageError, match="not an Ed25519 or ECDSA"):
        signing.load_public(ec.generate_private_key(ec.SECP256K1()).public_key())
    assert signing.load_public(ed25519.Ed25519PrivateKey.generate())  # its public half


def test_wrong_key_refused(packed_iris: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    tiffin.sign(packed_iris, keys[0])
    _, mallory_pub = tiffin.keygen(tmp_path / "mallory.key")
    _, ec_pub = tiffin.keygen(tmp_path / "ec.key", algorithm="ecdsa-p256")
    for wrong in (mallory_pub, ec_pub):
        with pytest.raises(tiffin.SigningError, match="not signed by any trusted"):
            tiffin.load(packed_iris, trusted_keys=[wrong])
    # one trusted key among several is enough
    assert tiffin.load(packed_iris, trusted_keys=[mallory_pub, keys[1]]).name == "iris"


def _resign_statement(
    pkg: Path, private: Path, edit: Callable[[dict[str, Any]], None], consistent: bool = False
) -> None:
    """Sign a statement changed by ``edit`` with a trusted key: only its content is wrong.

    ``consistent`` recomputes the subject digest, so only the package comparison is left.
    """
    bundle = json.loads((pkg / "tiffin.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    edit(statement)
    if consistent:
        resources = statement["predicate"]["resources"]
        joined = b"".join(bytes.fromhex(r["digest"]) for r in resources)
        statement["subject"][0]["digest"]["sha256"] = hashlib.sha256(joined).hexdigest()
    payload = json.dumps(statement).encode()
    key = signing._load_private(private)
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(
        signing._sign_bytes(key, signing.pae(payload))
    ).decode()
    (pkg / "tiffin.sig").write_text(json.dumps(bundle))


def _reseal(pkg: Path) -> None:
    import dataclasses

    from tiffin.package.integrity import index_files, read_manifest

    old = read_manifest(pkg)
    (pkg / "tiffin.json").write_bytes(
        dataclasses.replace(old, files=index_files(pkg)).seal().to_bytes()
    )


def _flip_sig_byte(pkg: Path) -> None:
    bundle = json.loads((pkg / "tiffin.sig").read_text())
    sig = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[5] ^= 1
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    (pkg / "tiffin.sig").write_text(json.dumps(bundle))


def _swap_payload(pkg: Path) -> None:
    """A payload from elsewhere under the original signature."""
    bundle = json.loads((pkg / "tiffin.sig").read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["resources"] = statement["predicate"]["resources"][:-1]
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (pkg / "tiffin.sig").write_text(json.dumps(bundle))


def _edit_bundle(**changes: Any) -> Callable[[Path], None]:
    def edit(pkg: Path) -> None:
        bundle = json.loads((pkg / "tiffin.sig").read_text())
        for dotted, value in changes.items():
            *parents, leaf = dotted.split("__")
            node = bundle
            for part in parents:
                node = node[part]
            node[leaf] = value
        (pkg / "tiffin.sig").write_text(json.dumps(bundle))

    return edit


def _drop_resource(s: dict[str, Any]) -> None:
    s["predicate"]["resources"] = [
        r for r in s["predicate"]["resources"] if r["name"] != "README.md"
    ]


def _fake_resource(s: dict[str, Any]) -> None:
    s["predicate"]["resources"][0]["digest"] = "00" * 32


def _other_digest(s: dict[str, Any]) -> None:
    s["predicate"]["tiffin"]["digest"] = "sha256:" + "0" * 64


def _md5(s: dict[str, Any]) -> None:
    s["predicate"]["resources"][0]["algorithm"] = "md5"


def _predicate_type(s: dict[str, Any]) -> None:
    s["predicateType"] = "https://example.com/other"


# (label, how the signed package is changed, the error, what it must say)
TAMPERING: list[tuple[str, Callable[[Path, Path], None], type[Exception], str]] = [
    ("artifact byte changed", lambda p, k: _append(p / "artifacts/model.skops"),
     tiffin.IntegrityError, "model.skops"),
    ("model card changed", lambda p, k: (p / "README.md").write_text("changed"),
     tiffin.IntegrityError, "README.md"),
    ("file added", lambda p, k: (p / "extra.py").write_text("x"), tiffin.IntegrityError, "extra.py"),
    ("file removed", lambda p, k: (p / "README.md").unlink(), tiffin.IntegrityError, "README.md"),
    ("changed and re-sealed", lambda p, k: ((p / "README.md").write_text("evil"), _reseal(p)),
     tiffin.SigningError, "README.md was changed after signing"),
    ("removed and re-sealed", lambda p, k: ((p / "README.md").unlink(), _reseal(p)),
     tiffin.SigningError, "README.md was removed after signing"),
    ("added and re-sealed", lambda p, k: ((p / "code").mkdir(), (p / "code/x.py").write_text("1"),
                                          _reseal(p)),
     tiffin.SigningError, "code/x.py was added after signing"),
    ("signature byte flipped", lambda p, k: _flip_sig_byte(p),
     tiffin.SigningError, "not signed by any trusted key"),
    ("payload swapped under the signature", lambda p, k: _swap_payload(p),
     tiffin.SigningError, "not signed by any trusted key"),
    ("signed statement omits a file", lambda p, k: _resign_statement(p, k, _drop_resource),
     tiffin.SigningError, "inconsistent"),
    ("signed statement lists another digest", lambda p, k: _resign_statement(p, k, _fake_resource),
     tiffin.SigningError, "inconsistent"),
    ("signed statement omits a file, subject recomputed",
     lambda p, k: _resign_statement(p, k, _drop_resource, consistent=True),
     tiffin.SigningError, "README.md was added after signing"),
    ("signed statement lists another digest, subject recomputed",
     lambda p, k: _resign_statement(p, k, _fake_resource, consistent=True),
     tiffin.SigningError, "was changed after signing"),
    ("signed for another package digest", lambda p, k: _resign_statement(p, k, _other_digest),
     tiffin.SigningError, "another package digest"),
    ("md5 resources", lambda p, k: _resign_statement(p, k, _md5),
     tiffin.SigningError, "only sha256"),
    ("other predicate type", lambda p, k: _resign_statement(p, k, _predicate_type),
     tiffin.SigningError, "not a model-signing"),
    ("not JSON", lambda p, k: (p / "tiffin.sig").write_text("{not json"),
     tiffin.SigningError, "malformed"),
    ("wrong media type", lambda p, k: _edit_bundle(mediaType="x")(p),
     tiffin.SigningError, "media type"),
    ("wrong payload type", lambda p, k: _edit_bundle(dsseEnvelope__payloadType="text/plain")(p),
     tiffin.SigningError, "payload type"),
    ("payload not base64", lambda p, k: _edit_bundle(dsseEnvelope__payload="@@@")(p),
     tiffin.SigningError, "malformed"),
    ("no signatures", lambda p, k: _edit_bundle(dsseEnvelope__signatures=[])(p),
     tiffin.SigningError, "no signatures"),
    ("signature replaced by a folder", lambda p, k: ((p / "tiffin.sig").unlink(),
                                                     (p / "tiffin.sig").mkdir()),
     tiffin.SigningError, "not signed"),
    ("signature is a symlink", lambda p, k: _symlink_sig(p),
     tiffin.IntegrityError, "tiffin.sig is a symbolic link"),
    ("signature removed", lambda p, k: (p / "tiffin.sig").unlink(),
     tiffin.SigningError, "not signed"),
]  # fmt: skip


def _append(path: Path) -> None:
    with open(path, "ab") as fh:
        fh.write(b"\x00")


def _symlink_sig(pkg: Path) -> None:
    real = pkg.parent / "elsewhere.sig"
    shutil.move(pkg / "tiffin.sig", real)
    os.symlink(real, pkg / "tiffin.sig")


def test_tampering_is_caught(
    packed_iris: Path, keys: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private, public = keys
    tiffin.sign(packed_iris, private)
    caught = 0
    for i, (label, tamper, error, message) in enumerate(TAMPERING):
        pkg = tmp_path / f"case-{i}" / "pkg"
        shutil.copytree(packed_iris, pkg)
        tamper(pkg, private)
        with pytest.raises(error) as info:
            tiffin.load(pkg, trusted_keys=[public])
        assert message in str(info.value), (label, str(info.value))
        caught += 1
    with capsys.disabled():
        print(f"\nsignature tampering cases caught: {caught}/{len(TAMPERING)}")
    assert caught == len(TAMPERING)


def test_unsigned_refused_under_policy(
    packed_iris: Path, keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert tiffin.load(packed_iris).name == "iris"  # no policy, no keys: nothing to check
    with pytest.raises(tiffin.SigningError, match="not signed"):
        tiffin.load(packed_iris, require_signed=True, trusted_keys=[keys[1]])
    with pytest.raises(tiffin.SigningError, match="not signed"):
        tiffin.load(packed_iris, trusted_keys=[keys[1]])  # keys given: a signature is needed
    monkeypatch.setenv("TIFFIN_REQUIRE_SIGNED", "1")
    with pytest.raises(tiffin.SigningError, match="not signed"):
        tiffin.load(packed_iris)
    assert tiffin.load(packed_iris, require_signed=False).name == "iris"  # option wins
    tiffin.sign(packed_iris, keys[0])
    with pytest.raises(tiffin.SigningError, match="no trusted keys"):
        tiffin.load(packed_iris)
    assert tiffin.load(packed_iris, trusted_keys=[keys[1]]).name == "iris"


def test_signing_is_deterministic_for_ed25519(packed_iris: Path, keys: tuple[Path, Path]) -> None:
    first = tiffin.sign(packed_iris, keys[0]).read_bytes()
    assert tiffin.sign(packed_iris, keys[0]).read_bytes() == first


def test_sign_refuses_a_damaged_package(packed_iris: Path, keys: tuple[Path, Path]) -> None:
    (packed_iris / "README.md").write_text("changed")
    with pytest.raises(tiffin.IntegrityError, match="README.md"):
        tiffin.sign(packed_iris, keys[0])
    assert not (packed_iris / "tiffin.sig").exists()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tiffin.cli", *args], capture_output=True, text=True
    )


def test_cli_keygen_sign_verify(tmp_path: Path, packed_iris: Path) -> None:
    assert _cli("keygen", str(tmp_path / "k")).returncode == 0
    assert _cli("keygen", str(tmp_path / "k")).returncode == 2  # never overwrites a key
    assert _cli("keygen", str(tmp_path / "e"), "--algorithm", "ecdsa-p256").returncode == 0
    assert _cli("sign", str(packed_iris), "--key", str(tmp_path / "k")).returncode == 0
    ok = _cli("verify", str(packed_iris), "--env", "current", "--key", str(tmp_path / "k.pub"))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    tiffin.keygen(tmp_path / "other")
    bad = _cli("verify", str(packed_iris), "--env", "current", "--key", str(tmp_path / "other.pub"))
    assert bad.returncode == 10 and "not signed by any trusted key" in bad.stdout + bad.stderr
    bad_key = _cli("sign", str(packed_iris), "--key", str(tmp_path / "k.pub"))
    assert bad_key.returncode != 0 and "private key" in bad_key.stdout + bad_key.stderr


def _model_signing_python() -> str | None:
    """An interpreter with OpenSSF model-signing: this one, or TIFFIN_MODEL_SIGNING_PYTHON."""
    candidates = [os.environ.get("TIFFIN_MODEL_SIGNING_PYTHON", ""), sys.executable]
    for python in filter(None, candidates):
        probe = subprocess.run([python, "-c", "import model_signing"], capture_output=True)
        if probe.returncode == 0:
            return python
    return None


def test_openssf_model_signing_verifies_a_tiffin_signature(
    tmp_path: Path, packed_iris: Path
) -> None:
    """The reference implementation accepts tiffin's tiffin.sig and catches tampering."""
    python = _model_signing_python()
    if python is None:
        pytest.skip("model-signing is not installed (set TIFFIN_MODEL_SIGNING_PYTHON)")
    private, public = tiffin.keygen(tmp_path / "ec.key", algorithm="ecdsa-p256")
    tiffin.sign(packed_iris, private)
    verify = textwrap_verify(python, packed_iris, public)
    ok = subprocess.run(verify, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    _append(packed_iris / "README.md")
    bad = subprocess.run(verify, capture_output=True, text=True)
    assert bad.returncode != 0 and "README.md" in bad.stdout + bad.stderr


def textwrap_verify(python: str, pkg: Path, public: Path) -> list[str]:
    code = (
        "import sys, model_signing\n"
        "model_signing.verifying.Config().use_elliptic_key_verifier(public_key=sys.argv[3])"
        ".verify(sys.argv[1], sys.argv[2])\n"
    )
    return [python, "-c", code, str(pkg), str(pkg / "tiffin.sig"), str(public)]


@pytest.mark.parametrize("value", ["on", "ON", " true ", "required"])
def test_policy_words_that_mean_yes_are_enforced(
    packed_iris: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """TIFFIN_REQUIRE_SIGNED=on once meant no policy at all: it failed open."""
    monkeypatch.setenv("TIFFIN_REQUIRE_SIGNED", value)
    with pytest.raises(tiffin.SigningError, match="not signed"):
        tiffin.load(packed_iris)


def test_an_unreadable_policy_value_is_a_refusal(
    packed_iris: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIFFIN_REQUIRE_SIGNED", "sure")
    with pytest.raises(tiffin.UsageError, match="TIFFIN_REQUIRE_SIGNED='sure'"):
        tiffin.load(packed_iris)
    for off in ("0", "off", "no", ""):
        monkeypatch.setenv("TIFFIN_REQUIRE_SIGNED", off)
        assert tiffin.load(packed_iris).name == "iris"


def test_one_key_given_alone_is_one_key(packed_iris: Path, keys: tuple[Path, Path]) -> None:
    """trusted_keys="k.pub" was read as the keys "k", ".", "p"...; a Path raised TypeError."""
    tiffin.sign(packed_iris, keys[0])
    public = keys[1]
    key_object = signing.load_public(public)
    for single in (public, str(public), public.read_bytes(), key_object):
        assert tiffin.load(packed_iris, trusted_keys=single).name == "iris"
    other = tiffin.keygen(public.parent / "mallory.key")[1]
    with pytest.raises(tiffin.SigningError, match="not signed by any trusted key"):
        tiffin.load(packed_iris, trusted_keys=str(other))


@pytest.mark.parametrize("bad", [None, 123, 4.5, object()])
def test_things_that_are_not_keys_are_named(
    packed_iris: Path, keys: tuple[Path, Path], bad: Any
) -> None:
    tiffin.sign(packed_iris, keys[0])
    with pytest.raises(tiffin.UsageError, match="is not a key"):
        tiffin.load(packed_iris, trusted_keys=[bad])


def test_every_command_that_loads_applies_the_policy(packed_iris: Path, tmp_path: Path) -> None:
    """predict, predict --isolated, verify and serve take --key and --require-signed,
    and the environment variable, as tiffin.load does (serve once had no way to trust a key)."""
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps(json.loads((packed_iris / "examples" / "input.json").read_text())))
    unsigned = _cli("predict", str(packed_iris), "-i", str(rows), "--require-signed")
    assert unsigned.returncode == 11 and "not signed" in unsigned.stderr
    isolated = _cli("predict", str(packed_iris), "-i", str(rows), "--isolated", "--require-signed")
    assert isolated.returncode == 11 and "not signed" in isolated.stderr
    verify = _cli("verify", str(packed_iris), "--env", "current", "--require-signed")
    assert verify.returncode == 10 and "not signed" in verify.stdout
    served = subprocess.run(
        [sys.executable, "-m", "tiffin.cli", "serve", str(packed_iris), "--port", "0", "--workers", "1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "TIFFIN_REQUIRE_SIGNED": "1"},
    )  # fmt: skip
    assert served.returncode == 11 and "not signed" in served.stderr
    private, public = tiffin.keygen(tmp_path / "k")
    tiffin.sign(packed_iris, private)
    ok = _cli(
        "predict", str(packed_iris), "-i", str(rows), "--key", str(public), "--require-signed"
    )
    assert ok.returncode == 0, ok.stderr
    wrong = tiffin.keygen(tmp_path / "other")[1]
    bad = _cli("predict", str(packed_iris), "-i", str(rows), "--key", str(wrong))
    assert bad.returncode == 11 and "not signed by any trusted key" in bad.stderr


def test_the_old_policy_variable_fails_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployment still setting the variable's old name must not lose its check."""
    from tiffin.security.signing import required_by_policy

    monkeypatch.delenv("TIFFIN_REQUIRE_SIGNED", raising=False)
    monkeypatch.setenv("TIFFIN_REQUIRE_SIGNATURE", "1")
    with pytest.raises(tiffin.UsageError, match="renamed TIFFIN_REQUIRE_SIGNED"):
        required_by_policy()
