"""A thin adapter over one boto3 S3 client and one bucket: translates errors, nothing else.

boto3 is imported here, lazily, so `scons` builds and the rest of the CLI never pay for it.
The client follows the standard AWS configuration: the boto3 credential chain, the region
from the environment/config files, and `endpoint_url` / AWS_ENDPOINT_URL(_S3). With a
loopback endpoint (the local moto server) and no credentials configured anywhere, dummy
credentials are used, since the local server accepts any.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from sparkflash import names
from sparkflash.errors import InputError, PublishError
from sparkflash.manifest.release import MANIFEST_NAME, SIGNATURE_NAME

__all__ = ["S3Url", "parse_s3_url", "release_keys", "ClientOptions", "make_client", "S3Store", "open_store", "sha256_b64"]

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class S3Url:
    bucket: str
    prefix: str  # no leading/trailing slash; may be ""

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def url(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"


def parse_s3_url(url: str) -> S3Url:
    u = urlparse(url)
    if u.scheme != "s3" or not u.netloc:
        raise InputError(f"{url!r} is not an s3://BUCKET/PREFIX URL")
    prefix = u.path.strip("/")
    if any(p in (".", "..") for p in prefix.split("/")) or "//" in u.path.strip("/"):
        raise InputError(f"{url!r}: empty, '.' or '..' path components are not allowed in a release prefix")
    if u.query or u.fragment or u.params:
        raise InputError(f"{url!r}: an s3:// URL has no ?query, ;params or #fragment")
    return S3Url(names.bucket(u.netloc, url), names.prefix(prefix, url))


def release_keys(loc: S3Url, name: str, version: str) -> tuple[str, str]:
    """(manifest key, signature key) of one release; only validated names become key segments."""
    names.release_name(name)
    names.version(version)
    return loc.key("releases", name, version, MANIFEST_NAME), loc.key("releases", name, version, SIGNATURE_NAME)


def sha256_b64(data: bytes) -> str:
    """The x-amz-checksum-sha256 form: S3 recomputes it and rejects a corrupted upload."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


@dataclass(frozen=True)
class ClientOptions:
    endpoint_url: str | None = None  # None: AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / AWS
    region: str | None = None  # None: AWS_REGION / AWS_DEFAULT_REGION / config, else us-east-1
    max_attempts: int = 3  # botocore "standard" retry mode: transient errors retried with backoff
    connect_timeout: float = 5.0
    read_timeout: float = 30.0


def _is_loopback(endpoint: str | None) -> bool:
    host = urlparse(endpoint).hostname if endpoint else None
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as e:  # pragma: no cover - boto3 is a declared dependency
        raise PublishError(f"boto3 is not importable ({e}); run tools/setup or `pip install boto3`") from e
    return boto3


_loader: list[Any] = []  # botocore's service-model loader: static data, expensive to parse, safe to share


def _botocore_session() -> Any:
    """A fresh session (credentials and config read anew) that reuses the parsed service models."""
    import botocore.session

    s = botocore.session.get_session()
    if _loader:
        s.register_component("data_loader", _loader[0])
    else:
        _loader.append(s.get_component("data_loader"))
    return s


def make_client(opts: ClientOptions) -> tuple[Any, str]:
    """(boto3 S3 client, endpoint description for messages)."""
    boto3 = _boto3()
    from botocore.config import Config

    endpoint = opts.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    session = boto3.session.Session(botocore_session=_botocore_session(), region_name=opts.region)
    region = session.region_name or "us-east-1"
    creds: dict[str, str] = {}
    if session.get_credentials() is None and _is_loopback(endpoint):
        creds = {"aws_access_key_id": "sparkflash-local", "aws_secret_access_key": "sparkflash-local"}
    cfg = Config(
        retries={"max_attempts": opts.max_attempts, "mode": "standard"},
        connect_timeout=opts.connect_timeout,
        read_timeout=opts.read_timeout,
        s3={"addressing_style": "path"} if endpoint else {},
    )
    client = session.client("s3", endpoint_url=endpoint, region_name=region, config=cfg, **creds)
    return client, endpoint or f"AWS S3 ({region})"


class S3Store:
    """One bucket. Every botocore error becomes a PublishError naming the object and the endpoint."""

    def __init__(self, client: Any, bucket: str, endpoint: str) -> None:
        self.client = client
        self.bucket = bucket
        self.endpoint = endpoint

    def _fail(self, e: Exception, action: str, key: str) -> PublishError:
        from botocore.exceptions import ClientError, NoCredentialsError

        where = f"s3://{self.bucket}/{key}" if key else f"s3://{self.bucket}"
        if isinstance(e, NoCredentialsError):
            return PublishError(f"{action} {where}: no AWS credentials found; configure them (AWS_PROFILE, "
                                "AWS_ACCESS_KEY_ID, ~/.aws/credentials) or use a local endpoint")
        if isinstance(e, ClientError):
            err = e.response.get("Error", {})
            code = err.get("Code", "?")
            if code == "NoSuchBucket":
                return PublishError(f"{action} {where}: bucket {self.bucket!r} does not exist at {self.endpoint}; "
                                    "create it (publish --create-bucket, or s3-local --bucket)")
            return PublishError(f"{action} {where} at {self.endpoint}: {code}: {err.get('Message', '')}")
        return PublishError(f"{action} {where}: cannot reach {self.endpoint}: {e}; check --endpoint-url / "
                            "AWS_ENDPOINT_URL and the network, then rerun (finished work is skipped)")

    @staticmethod
    def _code(e: BaseException | None) -> str:
        resp = getattr(e, "response", None) or {}
        return str(resp.get("Error", {}).get("Code", ""))

    def _call(self, action: str, key: str, fn: Callable[..., Any], **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(Bucket=self.bucket, **kw)
        except (BotoCoreError, ClientError) as e:
            raise self._fail(e, action, key) from e

    def head(self, key: str) -> dict[str, Any] | None:
        """Object metadata (with its stored checksum when S3 has one), or None if absent."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            r: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
            return r
        except ClientError as e:
            if e.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404 or self._code(e) in ("404", "NoSuchKey"):
                return None
            raise self._fail(e, "checking", key) from e
        except BotoCoreError as e:
            raise self._fail(e, "checking", key) from e

    def get(self, key: str) -> bytes | None:
        it = self.iter_get(key)
        return None if it is None else b"".join(it)

    def iter_get(self, key: str, chunk: int = 1 << 20) -> Iterator[bytes] | None:
        """The object's bytes in chunks, or None if it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except ClientError as e:
            if self._code(e) in ("NoSuchKey", "404"):
                return None
            raise self._fail(e, "downloading", key) from e
        except BotoCoreError as e:
            raise self._fail(e, "downloading", key) from e

        def chunks() -> Iterator[bytes]:
            try:
                yield from body.iter_chunks(chunk)
            except BotoCoreError as e:
                raise self._fail(e, "downloading", key) from e
            finally:
                body.close()

        return chunks()

    def put(self, key: str, data: bytes, *, if_none_match: bool, content_type: str = "application/octet-stream") -> bool:
        """Upload with a SHA-256 checksum S3 verifies; with if_none_match, False if the key already exists."""
        kw: dict[str, Any] = {"Key": key, "Body": data, "ChecksumSHA256": sha256_b64(data), "ContentType": content_type}
        if if_none_match:
            kw["IfNoneMatch"] = "*"
        try:
            self._call("uploading", key, self.client.put_object, **kw)
        except PublishError as e:
            if self._code(e.__cause__) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def put_multipart(self, key: str, data: bytes, part_size: int, progress: ProgressFn, *, if_none_match: bool) -> bool:
        """Multipart upload, a SHA-256 checksum per part; an interrupted upload is aborted (best effort)."""
        up = self._call("starting upload of", key, self.client.create_multipart_upload, Key=key,
                        ChecksumAlgorithm="SHA256", ContentType="application/octet-stream")
        uid = up["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            for n, off in enumerate(range(0, len(data), part_size), start=1):
                chunk = data[off:off + part_size]
                cs = sha256_b64(chunk)
                r = self._call("uploading part of", key, self.client.upload_part, Key=key, UploadId=uid, PartNumber=n,
                               Body=chunk, ChecksumSHA256=cs)
                parts.append({"ETag": r["ETag"], "PartNumber": n, "ChecksumSHA256": cs})
                progress(off + len(chunk), len(data))
            kw: dict[str, Any] = {"IfNoneMatch": "*"} if if_none_match else {}
            self._call("completing upload of", key, self.client.complete_multipart_upload, Key=key, UploadId=uid,
                       MultipartUpload={"Parts": parts}, **kw)
        except PublishError as e:
            self._abort(key, uid)
            if self._code(e.__cause__) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def _abort(self, key: str, upload_id: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except (BotoCoreError, ClientError):
            pass  # the server is gone; a bucket lifecycle rule (AbortIncompleteMultipartUpload) cleans up

    def ensure_bucket(self, create: bool) -> None:
        """Fail early, naming the bucket, if it does not exist; or create it when asked."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as e:
            if self._code(e) not in ("404", "NoSuchBucket", "NotFound"):  # head_bucket's 404 has no body
                raise self._fail(e, "opening", "") from e
            if not create:
                raise PublishError(f"s3://{self.bucket}: bucket {self.bucket!r} does not exist at {self.endpoint}; "
                                   "create it (publish --create-bucket, or s3-local --bucket)") from e
        except BotoCoreError as e:
            raise self._fail(e, "opening", "") from e
        region = self.client.meta.region_name
        kw: dict[str, Any] = {}
        if region and region != "us-east-1":
            kw["CreateBucketConfiguration"] = {"LocationConstraint": region}
        self._call("creating", "", self.client.create_bucket, **kw)

    def list_children(self, prefix: str, folders: bool = True) -> list[str]:
        """Names of the "sub-folders" (or objects) right under prefix/, for hints such as available versions."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            r = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix.rstrip("/") + "/", Delimiter="/")
        except (BotoCoreError, ClientError):
            return []
        names = [p["Prefix"] for p in r.get("CommonPrefixes", [])] if folders else [o["Key"] for o in r.get("Contents", [])]
        return sorted(n.rstrip("/").rsplit("/", 1)[-1] for n in names)


def open_store(bucket: str, client_options: ClientOptions) -> S3Store:
    """One bucket behind a client configured the standard AWS way (see make_client)."""
    client, endpoint = make_client(client_options)
    return S3Store(client, bucket, endpoint)
