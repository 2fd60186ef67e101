"""Ed25519 keys and bundle signatures, through the ``cryptography`` package.

A bundle's manifest.sig is the 64-byte Ed25519 signature of manifest.json's exact bytes.
Whoever checks it must bring the public key: one found inside the bundle proves nothing,
since whoever changed the bundle could have re-signed it with a key of their own.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from keel.errors import InvalidInput

__all__ = [
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "public_key_fingerprint",
    "raw_public_key",
    "sign",
    "signature_valid",
]

_HOW = "make a key pair with keel.export.generate_keypair()"


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as ``(private_pem, public_pem)``: PKCS#8 and
    SubjectPublicKeyInfo PEM, the private one unencrypted (keep it out of bundles)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def load_private_key(
    source: Ed25519PrivateKey | bytes | str | Path, *, password: bytes | None = None
) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM bytes or a PEM file (``str`` or ``Path``)."""
    if isinstance(source, Ed25519PrivateKey):
        return source
    data, where = _read(source, "private key")
    if b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise InvalidInput(f"{where}: holds a public key; signing needs the private one")
    if b"PRIVATE KEY-----" not in data:
        raise InvalidInput(
            f"{where}: not a PEM private key (expected '-----BEGIN PRIVATE KEY-----'); {_HOW}"
        )
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except TypeError as exc:  # encrypted without a password, or a password for a plain key
        raise InvalidInput(f"{where}: {exc}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(f"{where}: not a readable PEM private key ({exc}); {_HOW}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidInput(f"{where}: {_algorithm(key)}; keel signs with Ed25519 ({_HOW})")
    return key


def load_public_key(source: Ed25519PublicKey | bytes | str | Path) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM bytes or a PEM file (``str`` or ``Path``)."""
    if isinstance(source, Ed25519PublicKey):
        return source
    data, where = _read(source, "public key")
    if b"PRIVATE KEY-----" in data:
        raise InvalidInput(f"{where}: holds a private key; give the public one, never ship that")
    if b"PUBLIC KEY-----" not in data:
        raise InvalidInput(f"{where}: not a PEM public key (expected '-----BEGIN PUBLIC KEY-----')")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput(f"{where}: not a readable PEM public key ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidInput(f"{where}: {_algorithm(key)}; keel bundles are signed with Ed25519")
    return key


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The key's 32 raw bytes (what the runner's pure-Python check takes)."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_fingerprint(key: Ed25519PublicKey) -> str:
    """sha256 (hex) of the key's 32 raw bytes: names a key in messages and manifests."""
    return hashlib.sha256(raw_public_key(key)).hexdigest()


def sign(data: bytes, key: Ed25519PrivateKey) -> bytes:
    return key.sign(data)


def signature_valid(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` signs ``data`` under the 32 raw bytes of ``public_key``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def _read(source: bytes | str | Path, what: str) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray)):
        return bytes(source), f"{what} (PEM bytes)"
    if not isinstance(source, (str, Path)):
        raise InvalidInput(
            f"{what}: expected PEM bytes, a file path or a key object, got {type(source).__name__}"
        )
    path = Path(source)
    try:
        return path.read_bytes(), f"{what} file '{path}'"
    except FileNotFoundError:
        raise InvalidInput(f"{what} file '{path}' does not exist; {_HOW}") from None
    except OSError as exc:
        raise InvalidInput(f"{what} file '{path}': cannot read it ({exc.strerror})") from None


def _algorithm(key: object) -> str:
    name = type(key).__name__.lstrip("_").replace("PrivateKey", "").replace("PublicKey", "")
    return f"a key of type {name}"
