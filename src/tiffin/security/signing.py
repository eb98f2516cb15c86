"""Package signatures, in the OpenSSF model-signing format (``cryptography`` only).

``tiffin.sig`` lives beside the manifest, outside the sealed content (the file index
never lists it). It is a Sigstore bundle (v0.3, JSON) holding a DSSE envelope whose
payload is an in-toto Statement v1 with the ``https://model_signing/signature/v1.0``
predicate: every file of the package (``tiffin.json`` included) with its sha256, and a
subject digest over those digests, exactly what OpenSSF's ``model-signing`` writes. The
predicate also carries the tiffin package digest. The signature covers the DSSE
pre-authentication encoding of the statement, so it covers every file.

Keys: Ed25519 (the default) or ECDSA P-256/P-384/P-521. With an ECDSA key,
``model_signing verify key PKG --signature PKG/tiffin.sig --public_key KEY.pub`` accepts
a tiffin package as it is; ``model-signing``'s key verifier (1.1) takes only ECDSA
keys, so an Ed25519 signature, while in the same format, is checked by tiffin alone.

Verification needs only ``cryptography`` and the standard library: no Sigstore client,
no network, no transparency log (these are private keys the operator manages).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import SigningError, UsageError
from ..package import layout
from ..package.integrity import sha256_file, verify_tree
from ..package.manifest import Manifest

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
ALGORITHMS = ("ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521")
MAX_SIGNATURE_BYTES = 64 << 20


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    except ImportError:
        raise UsageError("signing needs cryptography", fix="pip install 'tiffin[sign]'") from None
    return serialization, ed25519, ec, hashes


def keygen(
    private_path: str | os.PathLike[str],
    public_path: str | os.PathLike[str] | None = None,
    *,
    algorithm: str = "ed25519",
) -> tuple[Path, Path]:
    """Write a new key pair as PEM files (the private one readable by its owner only).

    ``algorithm`` is ``ed25519`` (default) or ``ecdsa-p256`` (also p384, p521), the key
    kind OpenSSF ``model_signing verify key`` accepts.
    """
    serialization, ed25519, ec, _ = _crypto()
    private = Path(private_path)
    public = Path(public_path) if public_path else private.with_suffix(".pub")
    if algorithm not in ALGORITHMS:
        raise UsageError(f"unknown key algorithm {algorithm!r}", fix=f"use one of {ALGORITHMS}")
    for path in (private, public):
        if path.exists():
            raise UsageError(
                f"{path} already exists", fix="choose another name; keys are never overwritten"
            )
    if algorithm == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        curve = {"p256": ec.SECP256R1, "p384": ec.SECP384R1, "p521": ec.SECP521R1}
        key = ec.generate_private_key(curve[algorithm.split("-")[1]]())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_bytes(_public_pem(key.public_key()))
    return private, public


def _public_pem(public_key: Any) -> bytes:
    serialization = _crypto()[0]
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _check_kind(key: Any, where: str) -> Any:
    _, ed25519, ec, _ = _crypto()
    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, ed25519.Ed25519PublicKey):
        return key
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in (
        "secp256r1",
        "secp384r1",
        "secp521r1",
    ):
        return key
    raise UsageError(
        f"{where} is not an Ed25519 or ECDSA P-256/384/521 key",
        fix="make one with `tiffin keygen`",
    )


def _key_bytes(key: Any) -> tuple[bytes, str]:
    if isinstance(key, (str, os.PathLike)):
        try:
            return Path(key).read_bytes(), str(key)
        except OSError as exc:
            raise UsageError(f"cannot read key {key}: {exc.strerror}") from None
    if isinstance(key, (bytes, bytearray, memoryview)):
        return bytes(key), "the key"
    # bytes(123) would be 123 zero bytes, bytes(None) a TypeError: neither is a key
    raise UsageError(
        f"a key of type {type(key).__name__} is not a key",
        fix="give a key file path, PEM bytes, raw Ed25519 public bytes, or a key object",
    )


def key_list(trusted_keys: Any) -> list[Any]:
    """``trusted_keys`` as a list: one key (a path, PEM bytes, a key object) is one key,
    not the characters of its path."""
    if trusted_keys is None:
        return []
    if isinstance(trusted_keys, (str, os.PathLike, bytes, bytearray, memoryview)):
        return [trusted_keys]
    if isinstance(trusted_keys, (list, tuple, set, frozenset)):
        return list(trusted_keys)
    _, ed25519, ec, _ = _crypto()
    kinds: tuple[type, ...] = (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)
    kinds += (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)
    if isinstance(trusted_keys, kinds):
        return [trusted_keys]
    try:
        return list(trusted_keys)
    except TypeError:
        raise UsageError(
            f"trusted_keys of type {type(trusted_keys).__name__} is not a key or a list of keys",
            fix="pass trusted_keys=['release.pub']",
        ) from None


_POLICY_ON = frozenset({"1", "true", "yes", "on", "require", "required"})
_POLICY_OFF = frozenset({"", "0", "false", "no", "off"})


def required_by_policy(value: str | None = None) -> bool:
    """Whether ``TIFFIN_REQUIRE_SIGNED`` (or ``value``) demands a signature.

    An unrecognised value is an error, never a silent "no": a policy that reads ``on``
    as off fails open.
    """
    if value is None:
        if "TIFFIN_REQUIRE_SIGNATURE" in os.environ:
            # the variable's old name: ignoring it would turn a required check off
            raise UsageError(
                "TIFFIN_REQUIRE_SIGNATURE was renamed TIFFIN_REQUIRE_SIGNED",
                where="environment",
                fix="set TIFFIN_REQUIRE_SIGNED instead, and unset TIFFIN_REQUIRE_SIGNATURE",
            )
        value = os.environ.get("TIFFIN_REQUIRE_SIGNED", "")
    word = value.strip().lower()
    if word in _POLICY_ON:
        return True
    if word in _POLICY_OFF:
        return False
    raise UsageError(
        f"TIFFIN_REQUIRE_SIGNED={value!r} is not a yes or a no",
        fix="set it to 1 (require a signature) or 0, or unset it",
    )


def _load_private(key: Any) -> Any:
    serialization, ed25519, ec, _ = _crypto()
    if isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        return _check_kind(key, "the key")
    data, where = _key_bytes(key)
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"not an unencrypted PEM private key: {exc}", where=where) from None
    return _check_kind(loaded, where)


def load_public(key: Any) -> Any:
    """A public key from a path, PEM or raw Ed25519 bytes, or a key object."""
    serialization, ed25519, ec, _ = _crypto()
    if isinstance(key, (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey)):
        return _check_kind(key.public_key(), "the key")
    if isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey)):
        return _check_kind(key, "the key")
    data, where = _key_bytes(key)
    try:
        loaded = (
            serialization.load_pem_public_key(data)
            if data.lstrip().startswith(b"-----")
            else ed25519.Ed25519PublicKey.from_public_bytes(data)
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(f"not a public key: {exc}", where=where) from None
    return _check_kind(loaded, where)


def key_id(public_key: Any) -> str:
    """The key hint model-signing records: sha256 of the public key's PEM."""
    return hashlib.sha256(_public_pem(public_key)).hexdigest()


def pae(payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    return b"DSSEv1 %d %s %d %s" % (len(PAYLOAD_TYPE), PAYLOAD_TYPE.encode(), len(payload), payload)


def _sign_bytes(private: Any, message: bytes) -> bytes:
    _, ed25519, ec, hashes = _crypto()
    if isinstance(private, ed25519.Ed25519PrivateKey):
        return bytes(private.sign(message))
    return bytes(private.sign(message, ec.ECDSA(_ec_hash(private.public_key(), hashes))))


def _ec_hash(public: Any, hashes: Any) -> Any:
    return {256: hashes.SHA256, 384: hashes.SHA384, 521: hashes.SHA512}[public.curve.key_size]()


def _verifies(public: Any, signature: bytes, message: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature

    _, ed25519, ec, hashes = _crypto()
    try:
        if isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, message)
        else:
            public.verify(signature, message, ec.ECDSA(_ec_hash(public, hashes)))
    except (InvalidSignature, ValueError):
        return False
    return True


def package_resources(root: Path, manifest: Manifest) -> dict[str, str]:
    """Every signed file of a (verified) package and its sha256: the index plus tiffin.json."""
    resources = {entry.path: entry.sha256 for entry in manifest.files}
    resources[layout.MANIFEST] = sha256_file(root / layout.MANIFEST)
    return resources


def statement(root: Path, manifest: Manifest) -> dict[str, Any]:
    """The in-toto statement for a verified package, as model-signing writes it."""
    resources = package_resources(root, manifest)
    order = sorted(resources, key=PurePosixPath)  # model-signing's order
    root_digest = hashlib.sha256(b"".join(bytes.fromhex(resources[n]) for n in order))
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.name, "digest": {"sha256": root_digest.hexdigest()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": {
                "method": "files",
                "hash_type": "sha256",
                "allow_symlinks": False,
                "ignore_paths": [layout.SIGNATURE],
            },
            "resources": [
                {"name": n, "algorithm": "sha256", "digest": resources[n]} for n in order
            ],
            "tiffin": {
                "digest": manifest.digest,
                "name": manifest.name,
                "version": manifest.version,
            },
        },
    }


def sign_package(path: str | os.PathLike[str], key: Any) -> Path:
    """Sign the package at ``path`` (verified first); writes ``tiffin.sig``.

    Example::

        tiffin.keygen("release.key")          # release.key and release.pub
        tiffin.sign("out/iris-1.0.0", "release.key")
        tiffin.load("out/iris-1.0.0", trusted_keys=["release.pub"])
    """
    root = Path(path)
    manifest = verify_tree(root)
    private = _load_private(key)
    payload = json.dumps(statement(root, manifest), sort_keys=True, separators=(",", ":"))
    signature = _sign_bytes(private, pae(payload.encode()))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {
            "publicKey": {"hint": key_id(private.public_key())},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(payload.encode()).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode(), "keyid": ""}],
        },
    }
    out = root / layout.SIGNATURE
    tmp = root / f".{layout.SIGNATURE}.tmp-{os.getpid()}"
    try:
        tmp.write_text(json.dumps(bundle, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _read_bundle(path: Path) -> tuple[bytes, list[bytes]]:
    """The DSSE payload and signatures of ``tiffin.sig``; malformed is an error."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SIGNATURE_BYTES + 1)
        if len(raw) > MAX_SIGNATURE_BYTES:
            raise ValueError("too large")
        bundle = json.loads(raw)
        if bundle["mediaType"] != BUNDLE_MEDIA_TYPE:
            raise ValueError(f"media type {bundle['mediaType']!r} is not {BUNDLE_MEDIA_TYPE}")
        envelope = bundle["dsseEnvelope"]
        if envelope["payloadType"] != PAYLOAD_TYPE:
            raise ValueError(f"payload type {envelope['payloadType']!r} is not {PAYLOAD_TYPE}")
        payload = base64.b64decode(envelope["payload"], validate=True)
        signatures = [base64.b64decode(s["sig"], validate=True) for s in envelope["signatures"]]
        if not signatures:
            raise ValueError("no signatures")
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        raise SigningError(
            f"{layout.SIGNATURE} is malformed: {exc}",
            where=str(path),
            fix="sign the package again with `tiffin sign`",
        ) from None
    return payload, signatures


def _check_statement(payload: bytes, root: Path, manifest: Manifest, where: str) -> None:
    """The signed statement must describe exactly this package."""
    try:
        doc = json.loads(payload)
        if doc["_type"] != STATEMENT_TYPE or doc["predicateType"] != PREDICATE_TYPE:
            raise ValueError("not a model-signing in-toto statement")
        signed = {r["name"]: r["digest"] for r in doc["predicate"]["resources"]}
        if any(r.get("algorithm") != "sha256" for r in doc["predicate"]["resources"]):
            raise ValueError("only sha256 resources are supported")
        subject = doc["subject"][0]["digest"]["sha256"]
        names = [r["name"] for r in doc["predicate"]["resources"]]
        recomputed = hashlib.sha256(b"".join(bytes.fromhex(signed[n]) for n in names))
        tiffin_digest = doc["predicate"].get("tiffin", {}).get("digest")
    except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError) as exc:
        raise SigningError(f"the signed statement is malformed: {exc}", where=where) from None
    if recomputed.hexdigest() != subject:
        raise SigningError(
            "the signed statement is inconsistent: its subject digest does not match its files",
            where=where,
        )
    actual = package_resources(root, manifest)
    # the manifest changes along with any file, so name the file first
    changed = sorted(
        (n for n in set(actual) & set(signed) if actual[n] != signed[n]),
        key=lambda n: (n == layout.MANIFEST, n),
    )
    extra, missing = sorted(set(actual) - set(signed)), sorted(set(signed) - set(actual))
    for what, names_ in (("removed", missing), ("added", extra), ("changed", changed)):
        if names_:
            raise SigningError(
                f"{names_[0]} was {what} after signing (the signature is for another package)",
                where=where,
                fix="sign the package again, or fetch the signed version",
            )
    if tiffin_digest is not None and tiffin_digest != manifest.digest:
        raise SigningError("the signature is for another package digest", where=where)


def enforce_policy(
    root: Path, manifest: Manifest, trusted_keys: Any, require: bool | None = None
) -> str | None:
    """The signature check every reader runs: when keys are given, or the policy demands one.

    ``require=None`` reads ``TIFFIN_REQUIRE_SIGNED``. Returns the signing key's id, or
    None when no check was asked for.
    """
    if require is None:
        require = required_by_policy()
    keys = key_list(trusted_keys)  # one key given alone is one key, not its characters
    if not keys and not require:
        return None
    return verify_signature(root, manifest, keys, required=True)


def verify_signature(
    root: Path, manifest: Manifest, trusted_keys: Sequence[Any], *, required: bool = True
) -> str | None:
    """Check ``tiffin.sig`` against the (already verified) package and the trusted keys.

    Returns the key id (sha256 of the signing key's PEM), or None when the package is
    unsigned and a signature is not required.
    """
    trusted_keys = key_list(trusted_keys)
    path = Path(root) / layout.SIGNATURE
    if not path.is_file() or path.is_symlink():
        if required:
            raise SigningError(
                "the package is not signed, and a signature is required",
                where=str(root),
                fix="sign it with `tiffin sign PKG --key KEY`, or drop the signature policy",
            )
        return None
    payload, signatures = _read_bundle(path)
    if not trusted_keys:
        raise SigningError(
            "no trusted keys were given to check the signature against",
            fix="pass trusted_keys=[...] (or --key PUB)",
        )
    message = pae(payload)
    for key in trusted_keys:
        public = load_public(key)
        if any(_verifies(public, sig, message) for sig in signatures):
            _check_statement(payload, Path(root), manifest, str(path))
            return key_id(public)
    raise SigningError(
        "the package is not signed by any trusted key",
        where=str(path),
        fix="check that you trust the key that signed it, or get a package signed by yours",
    )
