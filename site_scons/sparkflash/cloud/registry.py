"""Which devices may connect: their public keys in a directory, as the Node server kept them.

DIR/<24-hex-id>.pub.pem is a registered device; DIR/<id>.json holds the properties an
operator declared when registering it (what its firmware can do, e.g. `save_begin`: the
flasher_additions protocol library that stores files at any address), since nothing on the
wire proves them. A device we do not know is refused; the
key it offered in the handshake (Device OS sends one) is kept as
DIR/pending/<id>_handshake.pub.pem for an operator to approve with `sparkflash cloud register`.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.errors import InputError
from sparkflash.manifest.release import atomic_write

__all__ = ["DeviceRegistry", "normalise_id"]

log = logging.getLogger("sparkflash.cloud")
_ID = re.compile(r"^[0-9a-f]{24}$")
PROPERTIES = {"save_begin": "its firmware's protocol library takes SaveBegin (POST /s) for files at any address"}


def normalise_id(device_id: str) -> str:
    d = device_id.strip().lower()
    if not _ID.match(d):
        raise InputError(f"device id {device_id!r} must be 24 hex digits (the STM32 96-bit unique id)")
    return d


class DeviceRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.refused: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def path(self, device_id: str) -> Path:
        return self.root / f"{normalise_id(device_id)}.pub.pem"

    def register(self, device_id: str, public_pem: bytes, properties: dict[str, Any] | None = None) -> Path:
        try:
            key = serialization.load_pem_public_key(public_pem)
        except ValueError as e:
            raise InputError(f"device {device_id}: not a PEM public key ({e})") from None
        if not isinstance(key, rsa.RSAPublicKey) or key.key_size != 1024:
            raise InputError(f"device {device_id}: a Core key is RSA-1024 (got {getattr(key, 'key_size', '?')} bits)")
        p = self.path(device_id)
        atomic_write(p, public_pem)
        if properties is not None:
            unknown = set(properties) - set(PROPERTIES)
            if unknown:
                raise InputError(f"device {device_id}: unknown properties {sorted(unknown)} (known: {', '.join(PROPERTIES)})")
            atomic_write(self.root / f"{normalise_id(device_id)}.json", (json.dumps(properties, sort_keys=True) + "\n").encode())
        return p

    def properties(self, device_id: str) -> dict[str, Any]:
        """What the operator declared for this device (empty if nothing)."""
        p = self.root / f"{normalise_id(device_id)}.json"
        try:
            doc = json.loads(p.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise InputError(f"{p}: {e}") from None
        return {k: v for k, v in doc.items() if k in PROPERTIES} if isinstance(doc, dict) else {}

    def lookup(self, device_id: str) -> rsa.RSAPublicKey | None:
        p = self.path(device_id)
        if not p.exists():
            return None
        key = serialization.load_pem_public_key(p.read_bytes())
        if not isinstance(key, rsa.RSAPublicKey):
            raise InputError(f"{p}: not an RSA public key")
        return key

    def devices(self) -> list[str]:
        return sorted(p.name[:24] for p in self.root.glob("*.pub.pem") if _ID.match(p.name[:24]))

    def pending_count(self) -> int:
        d = self.root / "pending"
        return sum(1 for _ in d.glob("*_handshake.pub.pem")) if d.is_dir() else 0

    def refuse(self, device_id: str, peer: str, reason: str, offered_der: bytes | None = None) -> None:
        """Log and remember a refused connection; keep an offered key for approval."""
        log.warning("refused device %s from %s: %s", device_id, peer, reason)
        if offered_der and _ID.match(device_id):
            try:
                pem = serialization.load_der_public_key(offered_der).public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
                atomic_write(self.root / "pending" / f"{device_id}_handshake.pub.pem", pem)
            except ValueError:
                pass
        with self._lock:
            self.refused.append({"device": device_id, "peer": peer, "reason": reason, "time": time.time()})
            del self.refused[:-100]
