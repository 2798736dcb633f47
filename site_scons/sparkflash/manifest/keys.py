"""Ed25519 signing keys, key ids and the trust store.

Signers sit behind a narrow `Signer` protocol (sign(payload) -> bytes) so file keys
and offline/HSM signing can share it. Key id = sha256 of the raw public key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sparkflash.errors import InputError

__all__ = ["Signer", "FileSigner", "generate_key", "load_signer", "load_file_signer", "load_public_key", "key_id", "TrustStore"]


class Signer(Protocol):
    @property
    def key_id(self) -> str: ...

    @property
    def public_key(self) -> Ed25519PublicKey: ...

    def sign(self, payload: bytes) -> bytes: ...


def key_id(pub: Ed25519PublicKey) -> str:
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


@dataclass
class FileSigner:
    private: Ed25519PrivateKey

    @property
    def key_id(self) -> str:
        return key_id(self.private.public_key())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def sign(self, payload: bytes) -> bytes:
        return self.private.sign(payload)


def generate_key(private_path: Path) -> tuple[Path, str]:
    """Write a new PEM private key and its .pub.pem; refuse to overwrite a key."""
    pub_path = private_path.with_name(private_path.name.removesuffix(".pem") + ".pub.pem")
    for p in (private_path, pub_path):
        if p.exists():
            raise InputError(f"{p}: exists; refusing to overwrite a key")
    k = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private_path.write_bytes(
        k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private_path.chmod(0o600)
    pub_path.write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pub_path, key_id(k.public_key())


def load_signer(path: Path | str, password: bytes | None = None) -> Signer:
    """A PEM private key file, or an RFC 7512 `pkcs11:` URI for a key kept on a token (HSM)."""
    if str(path).startswith("pkcs11:"):
        from sparkflash.manifest.pkcs11_key import load_pkcs11_signer

        return load_pkcs11_signer(str(path))
    return load_file_signer(Path(path), password)


def load_file_signer(path: Path, password: bytes | None = None) -> FileSigner:
    try:
        k = serialization.load_pem_private_key(path.read_bytes(), password)
    except FileNotFoundError as e:
        raise InputError(f"{path}: signing key not found (create one with `sparkflash keys generate {path}`)") from e
    except OSError as e:
        raise InputError(f"{path}: cannot read the signing key: {e.strerror or e}") from e
    except (ValueError, TypeError) as e:
        raise InputError(f"{path}: not a usable private key: {e}") from e
    if not isinstance(k, Ed25519PrivateKey):
        raise InputError(f"{path}: not an Ed25519 private key")
    return FileSigner(k)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        k = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError as e:
        raise InputError(f"{path}: public key not found") from e
    except OSError as e:  # e.g. a directory named x.pub.pem
        raise InputError(f"{path}: cannot read the public key: {e.strerror or e}") from e
    except ValueError as e:
        raise InputError(f"{path}: not a PEM public key: {e}") from e
    if not isinstance(k, Ed25519PublicKey):
        raise InputError(f"{path}: not an Ed25519 public key")
    return k


class TrustStore:
    """Public keys allowed to sign releases, by key id."""

    def __init__(self, keys: dict[str, Ed25519PublicKey] | None = None) -> None:
        self.keys = dict(keys or {})

    @classmethod
    def from_paths(cls, paths: list[Path]) -> TrustStore:
        """Each path is a .pub.pem file or a directory of them."""
        ts = cls()
        for p in paths:
            files = sorted(p.glob("*.pub.pem")) if p.is_dir() else [p]
            for f in files:
                if not f.is_file():
                    raise InputError(f"{f}: not a regular file (a trusted key must be a .pub.pem file)")
                k = load_public_key(f)
                ts.keys[key_id(k)] = k
        return ts

    def verify(self, kid: str, signature: bytes, payload: bytes) -> bool:
        k = self.keys.get(kid)
        if k is None:
            return False
        try:
            k.verify(signature, payload)
        except InvalidSignature:
            return False
        return True
