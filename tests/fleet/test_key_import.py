"""The cloud server's key directory into the store (both backends)."""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sparkflash.fleet import Store
from sparkflash.fleet.key_import import import_key_dir


def _pem(bits: int) -> bytes:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_registered_keys_are_imported_and_hostile_files_reported(store: Store, tmp_path: Path) -> None:
    root = tmp_path / "devices"  # the layout today's `cloud register` writes: DIR/<id>.pub.pem
    root.mkdir()
    good = _pem(1024)
    (root / ("a" * 24 + ".pub.pem")).write_bytes(good)
    (root / ("b" * 24 + ".pub.pem")).write_bytes(_pem(1024))
    (root / ("c" * 24 + ".pub.pem")).write_bytes(_pem(2048))  # not a Core key
    (root / ("d" * 24 + ".pub.pem")).write_bytes(b"-----BEGIN PUBLIC KEY-----\nnope\n")
    os.mkfifo(root / ("e" * 24 + ".pub.pem"))  # would block a reader
    (root / ("f" * 24 + ".pub.pem")).write_bytes(b"x" * 5000)
    (root / ("A" * 24 + ".pub.pem")).write_bytes(good)  # upper case: not a device id, left alone
    (root / "pending").mkdir()
    (root / "pending" / ("9" * 24 + "_handshake.pub.pem")).write_bytes(good)  # awaiting approval: not imported
    done, problems = import_key_dir(store, root, labels=("imported",))
    assert done == ["a" * 24, "b" * 24]
    assert [p.split(":")[0].rsplit("/", 1)[1][:1] for p in problems] == ["c", "d", "e", "f"]
    assert "RSA-1024 (got 2048 bits)" in problems[0] and "not a regular file" in problems[2] and "5000 bytes" in problems[3]
    d = store.device("a" * 24)
    assert d is not None and d.public_key.encode() == good and d.labels == ("imported",)
    assert [x.id for x in store.devices()] == ["a" * 24, "b" * 24]
    again, _ = import_key_dir(store, root)  # idempotent; labels kept
    assert again == done and store.device("a" * 24).labels == ("imported",)  # type: ignore[union-attr]
