"""Ed25519 signing with a key that never leaves a PKCS#11 token (HSM, smart card, SoftHSM2).

`--key` takes an RFC 7512 URI instead of a PEM path, e.g.

    pkcs11:token=release;object=sparkflash?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/run/pin

Path attributes (`;`-separated) pick the token and key: token, manufacturer, serial, model,
object (the key's label), id (percent-encoded CKA_ID). Query attributes (`&`-separated):
module-path (else $SPARKFLASH_PKCS11_MODULE), pin-value or pin-source=file:PATH (else
$SPARKFLASH_PKCS11_PIN). The key must be CKK_EC_EDWARDS on edwards25519 and signs with
CKM_EDDSA (pure Ed25519), so signatures are byte-identical to a file key's. The public key
object beside it (same label/id) gives the key id. Uses python-pkcs11.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sparkflash.errors import InputError

__all__ = ["PKCS11_SCHEME", "Pkcs11Signer", "Pkcs11Uri", "load_pkcs11_signer", "parse_pkcs11_uri"]

PKCS11_SCHEME = "pkcs11:"
_PATH_ATTRS = ("token", "manufacturer", "serial", "model", "object", "id", "type", "library-manufacturer",
               "library-description", "library-version", "slot-description", "slot-manufacturer", "slot-id")
_QUERY_ATTRS = ("module-path", "module-name", "pin-value", "pin-source")
_ED25519_OIDS = (bytes.fromhex("06032b6570"),)  # DER OID 1.3.101.112 (id-Ed25519)
_ED25519_NAMES = (b"edwards25519",)  # PKCS#11 3.0 also allows the PrintableString curve name


@dataclass(frozen=True)
class Pkcs11Uri:
    path: dict[str, bytes]
    query: dict[str, bytes]

    def text(self, key: str) -> str | None:
        v = self.path.get(key, self.query.get(key))
        return None if v is None else v.decode("utf-8", "replace")


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """RFC 7512: `pkcs11:` path-attributes [`?` query-attributes], values percent-encoded."""
    if not uri.startswith(PKCS11_SCHEME):
        raise InputError(f"{uri[:60]!r}: not a pkcs11: URI")
    body = uri[len(PKCS11_SCHEME):]
    path_part, _, query_part = body.partition("?")

    def attrs(part: str, sep: str, known: tuple[str, ...], what: str) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for item in filter(None, part.split(sep)):
            k, eq, v = item.partition("=")
            if not eq or k not in known:
                raise InputError(f"pkcs11 URI: unknown or malformed {what} attribute {item[:40]!r} "
                                 f"(known: {', '.join(known)})")
            if k in out:
                raise InputError(f"pkcs11 URI: {what} attribute {k!r} given twice")
            out[k] = unquote_to_bytes(v)
        return out

    u = Pkcs11Uri(attrs(path_part, ";", _PATH_ATTRS, "path"), attrs(query_part, "&", _QUERY_ATTRS, "query"))
    if "object" not in u.path and "id" not in u.path:
        raise InputError("pkcs11 URI: name the key with object=LABEL or id=%XX..")
    return u


def _pin(u: Pkcs11Uri) -> str | None:
    if "pin-value" in u.query:
        return u.query["pin-value"].decode()
    src = u.text("pin-source")
    if src is not None:
        path = Path(src.removeprefix("file:"))
        try:
            return path.read_text().strip()
        except OSError as e:
            raise InputError(f"pkcs11 URI: pin-source {path}: {e.strerror or e}") from None
    return os.environ.get("SPARKFLASH_PKCS11_PIN")


def _raw_point(ec_point: bytes) -> bytes:
    """CKA_EC_POINT of an Ed25519 key: the 32 raw bytes, usually DER-wrapped in an OCTET STRING."""
    if len(ec_point) == 34 and ec_point[:2] == b"\x04\x20":
        return ec_point[2:]
    if len(ec_point) == 32:
        return ec_point
    raise InputError(f"pkcs11: the public key's EC_POINT ({len(ec_point)} bytes) is not an Ed25519 point")


class Pkcs11Signer:
    """A `Signer` whose private key stays on the token; one session for its lifetime."""

    def __init__(self, uri: str) -> None:
        try:
            import pkcs11
            from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
        except ImportError as e:
            raise InputError(f"pkcs11: python-pkcs11 is not installed ({e}); pip install python-pkcs11") from None
        self._mechanism = Mechanism.EDDSA
        u = parse_pkcs11_uri(uri)
        module = u.text("module-path") or os.environ.get("SPARKFLASH_PKCS11_MODULE")
        if not module:
            raise InputError("pkcs11 URI: no module: add ?module-path=/path/to/module.so or set SPARKFLASH_PKCS11_MODULE")
        shown = uri.split("?", 1)[0]  # never print the query: it may hold the PIN
        try:
            lib = pkcs11.lib(module)
            sel: dict[str, Any] = {}
            for uk, pk in (("token", "token_label"), ("serial", "token_serial")):
                if uk in u.path:
                    sel[pk] = u.path[uk].decode() if uk == "token" else u.path[uk]
            token = lib.get_token(**sel)
            try:
                self._session = token.open(user_pin=_pin(u))
            except pkcs11.exceptions.UserAlreadyLoggedIn:  # another signer of this process holds the login
                self._session = token.open()
            find: dict[Any, Any] = {Attribute.KEY_TYPE: KeyType.EC_EDWARDS}
            if "object" in u.path:
                find[Attribute.LABEL] = u.path["object"].decode()
            if "id" in u.path:
                find[Attribute.ID] = u.path["id"]
            privs = list(self._session.get_objects({**find, Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
            pubs = list(self._session.get_objects({**find, Attribute.CLASS: ObjectClass.PUBLIC_KEY}))
        except InputError:
            raise
        except (pkcs11.PKCS11Error, OSError, RuntimeError) as e:  # no such token, wrong PIN, bad module
            raise InputError(f"{shown}: cannot open the PKCS#11 key: {type(e).__name__} {e}".rstrip()) from None
        if len(privs) != 1 or len(pubs) != 1:
            raise InputError(f"{shown}: expected exactly one Ed25519 private key and its public key on the token, "
                             f"found {len(privs)} private and {len(pubs)} public")
        params = bytes(pubs[0][Attribute.EC_PARAMS])
        if params not in _ED25519_OIDS and not any(n in params for n in _ED25519_NAMES):
            raise InputError(f"{shown}: the key is not on edwards25519 (EC_PARAMS {params.hex()})")
        self._private: Any = privs[0]
        self.public_key = Ed25519PublicKey.from_public_bytes(_raw_point(bytes(pubs[0][Attribute.EC_POINT])))
        self.uri = shown

    @property
    def key_id(self) -> str:
        from sparkflash.manifest.keys import key_id

        return key_id(self.public_key)

    def sign(self, payload: bytes) -> bytes:
        import pkcs11

        try:
            sig = bytes(self._private.sign(payload, mechanism=self._mechanism))
        except pkcs11.PKCS11Error as e:
            raise InputError(f"{self.uri}: the token refused to sign: {type(e).__name__} {e}".rstrip()) from None
        self.public_key.verify(sig, payload)  # a token that signs wrongly is caught here, not at deploy
        return sig

    def close(self) -> None:
        self._session.close()


def load_pkcs11_signer(uri: str) -> Pkcs11Signer:
    return Pkcs11Signer(uri)
