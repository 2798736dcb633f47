"""Download a published release into a local cache, verified before anything can use it.

`fetch_release` returns a manifest.json path only after the signature (given a trust store)
and every blob digest matched; a blob that does not match is never stored. Blobs are cached
by digest and shared by every release, so deploying a new version downloads only what
changed. Cache layout (default $SPARKFLASH_HOME/cache, else ~/.cache/sparkflash):

    blobs/sha256/<hex>                                    verified blobs only
    releases/<bucket>/<prefix>/<name>/<version>/manifest.json, manifest.json.sig,
                                               blobs -> ../../…/blobs (the shared store)
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sparkflash import names
from sparkflash.errors import InputError, NoSuchChannel, PublishError, VerifyError
from sparkflash.manifest.model import Manifest, Region
from sparkflash.manifest.release import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    Signature,
    atomic_write,
    blob_key,
    verify_manifest_signature,
)
from sparkflash.manifest.trust import Trust, TrustRoot
from sparkflash.publish.channel import ChannelMemory, open_channel
from sparkflash.publish.roots import RootMemory, refresh_root
from sparkflash.publish.store import (
    ClientOptions,
    S3Store,
    S3Url,
    open_store,
    parse_s3_url,
    release_keys,
)

__all__ = ["default_cache", "fetch_release", "parse_release_url", "resolve_channel"]

EventFn = Callable[[dict[str, Any]], None]


def _noop(_: dict[str, Any]) -> None:
    pass


def default_cache() -> Path:
    home = os.environ.get("SPARKFLASH_HOME")
    if home:
        return Path(home) / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sparkflash"


def parse_release_url(url: str) -> tuple[S3Url, str, str]:
    """s3://BUCKET/PREFIX/releases/NAME/VERSION[/manifest.json] -> (store root, name, version)."""
    loc = parse_s3_url(url)
    parts = loc.prefix.split("/") if loc.prefix else []
    if parts and parts[-1] == MANIFEST_NAME:
        parts = parts[:-1]
    if len(parts) < 3 or parts[-3] != "releases":
        raise InputError(f"{url}: expected s3://BUCKET/PREFIX/releases/NAME/VERSION "
                         "(or s3://BUCKET/PREFIX/NAME with --channel)")
    return S3Url(loc.bucket, "/".join(parts[:-3])), names.release_name(parts[-2], url), names.version(parts[-1], url)


def _channel_root(url: str) -> tuple[S3Url, str]:
    """s3://BUCKET/PREFIX/NAME -> (store root, name)."""
    loc = parse_s3_url(url)
    parts = loc.prefix.split("/") if loc.prefix else []
    if not parts:
        raise InputError(f"{url}: with --channel, expected s3://BUCKET/PREFIX/NAME")
    return S3Url(loc.bucket, "/".join(parts[:-1])), names.release_name(parts[-1], url)


def resolve_channel(store: S3Store, url: str, channel: str, trust: Trust | None,
                    memory: ChannelMemory | None = None) -> tuple[S3Url, str, str, str]:
    """s3://BUCKET/PREFIX/NAME + channel -> (store root, name, version, pinned manifest sha256).
    A verified record must not be expired nor older (by sequence) than the last one `memory`
    holds for this channel; it then becomes the last one."""
    root, name = _channel_root(url)
    names.channel(channel, "--channel")
    key = root.key("channels", name, f"{channel}.json")
    raw = store.get(key)
    if raw is None:
        have = [c.removesuffix(".json") for c in store.list_children(root.key("channels", name), folders=False)]
        raise NoSuchChannel(f"s3://{root.bucket}/{key}: no channel {channel!r} for {name}"
                           + (f" (channels: {', '.join(have)})" if have else " (nothing published for it)"))
    origin = f"s3://{root.bucket}/{key}"
    rec, _ = open_channel(raw, origin, trust, now=datetime.now(UTC))
    if rec.name != name or rec.channel != channel:
        raise VerifyError(f"{origin}: record is for {rec.name}/{rec.channel}, not {name}/{channel}")
    if trust is not None:  # only a verified sequence may advance what this host remembers
        (memory or ChannelMemory()).check_and_remember(root.bucket, root.prefix, rec, origin)
    return root, name, rec.version, rec.manifest_sha256


def _check_blob(data: bytes, region: Region) -> bool:
    return (len(data) == region.size and hashlib.sha256(data).hexdigest() == region.sha256
            and zlib.crc32(data) & 0xFFFFFFFF == region.crc32)


def _fetch_blob(store: S3Store, root: S3Url, region: Region, cache: Path, on_event: EventFn) -> str:
    """Ensure cache/blobs/sha256/<hex> holds the region's verified bytes; "cached" or "downloaded"."""
    path = cache / blob_key(region.sha256)
    if path.exists() and _check_blob(path.read_bytes(), region):
        return "cached"
    key = root.key(blob_key(region.sha256))
    chunks = store.iter_get(key)
    if chunks is None:
        raise PublishError(f"s3://{store.bucket}/{key}: blob of region {region.name!r} is missing from the bucket "
                           "(incomplete or damaged release); republish it")
    buf = bytearray()
    for c in chunks:
        buf += c
        if len(buf) > region.size:
            break
        on_event({"event": "progress", "blob": region.sha256, "done": len(buf), "total": region.size})
    if not _check_blob(bytes(buf), region):
        raise VerifyError(f"s3://{store.bucket}/{key}: region {region.name!r} blob does not match the signed manifest "
                          f"(sha256/size/crc32; altered in the bucket?); nothing was written to the device")
    atomic_write(path, bytes(buf))
    return "downloaded"


def _verify_manifest(raw: bytes, sig_raw: bytes | None, origin: str, name: str, version: str,
                     pinned: str | None, trust: Trust | None, require_signature: bool = True) -> Manifest:
    try:
        m = Manifest.from_bytes(raw, origin)
    except InputError as e:
        raise VerifyError(str(e)) from e
    if pinned is not None and hashlib.sha256(raw).hexdigest() != pinned:
        raise VerifyError(f"{origin}: manifest differs from the one the channel record pins (altered in the bucket?)")
    if require_signature and trust is None:  # refused now, before a single blob is downloaded
        if sig_raw is None:
            raise VerifyError(f"{origin}: release has no {SIGNATURE_NAME}; refusing an unsigned release "
                              "(nothing was downloaded but the manifest)")
        kid = Signature.from_bytes(sig_raw, origin + ".sig").key_id
        raise VerifyError(f"{origin}: signed by key {kid[:16]}…, but no key is trusted; pass --trust KEY.pub.pem "
                          "(nothing was downloaded but the manifest)")
    if trust is not None:
        if sig_raw is None:
            raise VerifyError(f"{origin}: release has no {SIGNATURE_NAME}; refusing an unsigned release")
        verify_manifest_signature(trust, raw, Signature.from_bytes(sig_raw, origin + ".sig"), origin)
    if (m.name, m.version) != (name, version):
        raise VerifyError(f"{origin}: manifest is for {m.name} {m.version}, not {name} {version} (moved or replayed?)")
    return m


def fetch_release(
    url: str,
    *,
    channel: str | None = None,
    cache: Path | None = None,
    endpoint_url: str | None = None,
    trust: Trust | None = None,
    client_options: ClientOptions | None = None,
    on_event: EventFn = _noop,
    store: S3Store | None = None,
    require_signature: bool = True,
    channel_memory: ChannelMemory | None = None,
    root_memory: RootMemory | None = None,
) -> Path:
    """Download, verify and cache a release; the local manifest.json path (blobs/ beside it).
    The manifest and its signature are checked before any blob is downloaded; without a trust
    store an unsigned or untrusted release is refused then (unless require_signature=False)."""
    cache = Path(cache) if cache is not None else default_cache()
    opts = client_options or ClientOptions(endpoint_url=endpoint_url)
    if store is None:
        store = open_store(parse_s3_url(url).bucket, opts)
    pinned: str | None = None
    if isinstance(trust, TrustRoot):  # the bucket's roots/ chain from what this host trusts: the newest root
        trust = refresh_root(trust, store, _channel_root(url)[0] if channel else parse_release_url(url)[0], root_memory)
    if channel:
        root, name, version, pinned = resolve_channel(store, url, channel, trust, channel_memory)
    else:
        root, name, version = parse_release_url(url)
    mkey, skey = release_keys(root, name, version)
    origin = f"s3://{root.bucket}/{mkey}"
    raw = store.get(mkey)
    if raw is None:
        have = store.list_children(root.key("releases", name))
        raise PublishError(f"{origin}: no such release" + (f" (versions: {', '.join(have)})" if have else ""))
    sig_raw = store.get(skey)
    m = _verify_manifest(raw, sig_raw, origin, name, version, pinned, trust, require_signature)
    on_event({"event": "fetch-start", "release": name, "version": version, "url": origin})
    seen: dict[str, str] = {}
    for r in m.regions:
        if r.sha256 not in seen:
            seen[r.sha256] = _fetch_blob(store, root, r, cache, on_event)
    on_event({"event": "fetch-done", "blobs": seen})
    rel_dir = cache / "releases" / names.bucket(root.bucket)  # every part below was validated
    for c in [*(names.prefix(root.prefix).split("/") if root.prefix else []), names.release_name(name),
              names.version(version)]:
        rel_dir = rel_dir / c
    rel_dir.mkdir(parents=True, exist_ok=True)
    link = rel_dir / "blobs"
    if not link.exists():
        os.symlink(os.path.relpath(cache / "blobs", rel_dir), link)
    sig_path = rel_dir / SIGNATURE_NAME
    if sig_raw is None:
        sig_path.unlink(missing_ok=True)
    else:
        atomic_write(sig_path, sig_raw)
    atomic_write(rel_dir / MANIFEST_NAME, raw)  # last: a manifest in the cache means all of it is there
    return rel_dir / MANIFEST_NAME
