"""Ed25519 package signatures (``cryptography``).

A signature covers the package digest, which covers every file, so one signature seals
the whole package. It lives in ``tiffin.sig`` beside the manifest, outside the signed
content (the file index never lists it). ``tiffin.sig`` is JSON::

    {"format": "tiffin-signature/1", "algorithm": "ed25519",
     "digest": "sha256:...", "public_key": "<base64 raw key>", "signature": "<base64>"}

The signed message is the UTF-8 digest string, prefixed with a context label so a
tiffin signature cannot be replayed as a signature over anything else.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import layout
from ..errors import SignatureVerificationError, UsageError
from ..integrity import verify_tree
from ..manifest import Manifest

FORMAT = "tiffin-signature/1"
CONTEXT = b"tiffin-package-digest-v1:"


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise UsageError("signing needs cryptography", fix="pip install 'tiffin[sign]'") from None
    return serialization, ed25519


def keygen(
    private_path: str | os.PathLike[str], public_path: str | os.PathLike[str] | None = None
) -> tuple[Path, Path]:
    """Write a new Ed25519 key pair as PEM files (the private one readable by its owner only)."""
    serialization, ed25519 = _crypto()
    private = Path(private_path)
    public = Path(public_path) if public_path else private.with_suffix(".pub")
    for path in (private, public):
        if path.exists():
            raise UsageError(
                f"{path} already exists", fix="choose another name; keys are never overwritten"
            )
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def _load_private(key: Any) -> Any:
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    data = Path(key).read_bytes() if isinstance(key, (str, os.PathLike)) else bytes(key)
    try:
        loaded = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise UsageError(
            f"not an unencrypted PEM private key: {exc}", where=str(key)[:200]
        ) from None
    if not isinstance(loaded, ed25519.Ed25519PrivateKey):
        raise UsageError("the key is not an Ed25519 key", fix="make one with `tiffin keygen`")
    return loaded


def load_public(key: Any) -> Any:
    serialization, ed25519 = _crypto()
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.public_key()
    data = Path(key).read_bytes() if isinstance(key, (str, os.PathLike)) else bytes(key)
    try:
        loaded = (
            serialization.load_pem_public_key(data)
            if data.startswith(b"-----")
            else ed25519.Ed25519PublicKey.from_public_bytes(data)
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(f"not an Ed25519 public key: {exc}") from None
    if not isinstance(loaded, ed25519.Ed25519PublicKey):
        raise UsageError("the public key is not an Ed25519 key")
    return loaded


def _raw(public_key: Any) -> bytes:
    serialization, _ = _crypto()
    return bytes(
        public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )


def sign_package(path: str | os.PathLike[str], key: Any) -> Path:
    """Sign the package at ``path`` (verified first); writes ``tiffin.sig``."""
    root = Path(path)
    manifest = verify_tree(root)
    assert manifest.digest is not None
    private = _load_private(key)
    signature = private.sign(CONTEXT + manifest.digest.encode())
    doc = {
        "format": FORMAT,
        "algorithm": "ed25519",
        "digest": manifest.digest,
        "public_key": base64.b64encode(_raw(private.public_key())).decode(),
        "signature": base64.b64encode(signature).decode(),
    }
    out = root / layout.SIGNATURE
    tmp = root / f".{layout.SIGNATURE}.tmp"
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out)
    return out


def verify_signature(
    root: Path, manifest: Manifest, trusted_keys: Sequence[Any], *, required: bool = True
) -> str | None:
    """Check ``tiffin.sig`` against the manifest digest and the trusted keys.

    Returns the base64 public key that signed, or None when unsigned and not required.
    """
    path = Path(root) / layout.SIGNATURE
    if not path.is_file() or path.is_symlink():
        if required:
            raise SignatureVerificationError(
                "the package is not signed, and a signature is required",
                where=str(root),
                fix="sign it with `tiffin sign PKG --key KEY`, or drop the signature policy",
            )
        return None
    try:
        doc = json.loads(path.read_bytes()[:65536])
        digest, sig_b64, key_b64 = doc["digest"], doc["signature"], doc["public_key"]
        if doc.get("format") != FORMAT or doc.get("algorithm") != "ed25519":
            raise ValueError("unknown signature format")
        signature = base64.b64decode(sig_b64, validate=True)
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise SignatureVerificationError(
            f"tiffin.sig is malformed: {exc}", where=str(path)
        ) from None
    if digest != manifest.digest:
        raise SignatureVerificationError(
            "the signature is for another package digest (the package changed after signing)",
            where=str(path),
            fix="sign the package again, or fetch the signed version",
        )
    if not trusted_keys:
        raise SignatureVerificationError(
            "no trusted keys were given to check the signature against"
        )
    message = CONTEXT + digest.encode()
    for key in trusted_keys:
        public = load_public(key)
        try:
            public.verify(signature, message)
        except Exception:
            continue
        return str(key_b64)
    raise SignatureVerificationError(
        "the package is not signed by any trusted key",
        where=str(path),
        fix="check that you trust the key that signed it (tiffin.sig names it), or get a package signed by yours",
    )
