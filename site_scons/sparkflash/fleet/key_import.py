"""Bring the cloud server's key directory (DIR/<24-hex-id>.pub.pem) into the fleet store.

Today's server reads a device's key file on every handshake; the store keeps the key in
the `devices` row instead. Every file is treated as hostile: only regular files named by
a full-match id, at most 4 KiB, holding an RSA-1024 public key (a Core's), are imported;
anything else is reported with its path and the reason, and nothing is half-written.
"""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.errors import InputError
from sparkflash.fleet.store import Store

__all__ = ["import_key_dir"]

_NAME = re.compile(r"(?P<id>[0-9a-f]{24})\.pub\.pem")
MAX_KEY = 4096


def _read_key(path: Path) -> str:
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"{path}: not a regular file")
    if st.st_size > MAX_KEY:
        raise InputError(f"{path}: {st.st_size} bytes, more than a public key's {MAX_KEY}")
    raw = path.read_bytes()
    try:
        key = serialization.load_pem_public_key(raw)
    except ValueError as e:
        raise InputError(f"{path}: not a PEM public key ({e})") from None
    if not isinstance(key, rsa.RSAPublicKey) or key.key_size != 1024:
        raise InputError(f"{path}: a Core's key is RSA-1024 (got {getattr(key, 'key_size', '?')} bits)")
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _declared(root: Path, device_id: str) -> set[str]:
    """What the operator declared with `cloud register` (DIR/<id>.json): capabilities the wire cannot prove."""
    path = root / f"{device_id}.json"
    try:
        if not stat.S_ISREG(path.lstat().st_mode) or path.stat().st_size > MAX_KEY:
            return set()
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return set()
    return {"save_begin"} if isinstance(doc, dict) and doc.get("save_begin") is True else set()


def import_key_dir(store: Store, root: Path, *, labels: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(imported device ids, problems as 'path: reason'); all imports in one transaction.
    Files not named like a key (`pending/`, notes) are left alone."""
    done, problems = [], []
    with store.transaction():
        for path in sorted(root.iterdir()):
            m = _NAME.fullmatch(path.name)
            if m is None:
                continue
            try:
                pem = _read_key(path)
            except (InputError, OSError) as e:
                problems.append(str(e) if isinstance(e, InputError) else f"{path}: {e.strerror}")
                continue
            old = store.device(m["id"])
            store.put_device(m["id"], pem, labels=old.labels + labels if old else labels,
                             capabilities=sorted(set(old.capabilities if old else ()) | _declared(root, m["id"])))
            done.append(m["id"])
    return done, problems
