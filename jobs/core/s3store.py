"""The S3 store (AWS, MinIO, SeaweedFS) over boto3: streamed multipart transfers, SHA-256 in object metadata.

Endpoint and credentials come from the standard AWS environment (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``), which boto3 reads itself; nothing secret passes through our code.
Timeouts and the retry budget are ``S3Options`` (``jobs.core.settings``, env ``IRMSIA_S3_*``).
"""

from __future__ import annotations

import builtins
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from jobs.core.errors import IrmsiaError, ObjectNotFound, TransientError, UsageError
from jobs.core.hashing import sha256_file
from jobs.core.settings import S3Options
from jobs.core.store import (
    HashingReader,
    ObjectInfo,
    Part,
    PartsReader,
    Store,
    check_key,
    names_file,
    parts_sha256,
    parts_size,
    source_error,
)

SHA_META = "sha256"  # stored as x-amz-meta-sha256
_MB = 1 << 20
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
    "500",
    "502",
    "503",
    "504",
}
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken"}


class S3Store(Store):
    """A store at ``s3://bucket/prefix``; keys are appended to the prefix."""

    def __init__(self, uri: str, endpoint_url: str | None = None, max_workers: int = 16,
                 options: S3Options | None = None) -> None:  # fmt: skip
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        bucket, _, prefix = uri[len("s3://") :].partition("/")
        if not bucket:
            raise UsageError(f"--store {uri!r}: missing bucket; use s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        options = options or S3Options()
        self.options = options
        config = Config(
            # bounded waits: a stalled endpoint is exit 75 within a minute, not a stage hung for minutes
            connect_timeout=options.connect_timeout_s,
            read_timeout=options.read_timeout_s,
            retries={"total_max_attempts": options.attempts, "mode": "standard"},
            max_pool_connections=max(max_workers * 2, 32),
            # Path-style addressing works on every S3 implementation; virtual-host style needs DNS for buckets.
            # The payload is not hashed again for the SigV4 signature: every object carries our own SHA-256,
            # verified on read, so a second hash of each body would only spend CPU (TLS protects it in transit).
            s3={"addressing_style": "path", "payload_signing_enabled": False}
            if endpoint_url
            else {"payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=os.environ.get("AWS_REGION") or "us-east-1",
            config=config,
        )
        self.endpoint_url = endpoint_url
        # Bounded worker pool per transfer; parts of 8 MiB so memory stays at workers x part size.
        self.transfer = TransferConfig(
            multipart_threshold=64 * _MB, multipart_chunksize=8 * _MB, max_concurrency=8, use_threads=True
        )

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _wrap(self, action: str, key: str, exc: Exception) -> IrmsiaError:
        """Turn a botocore failure into the contract's error, naming the object and what to do."""
        from botocore.exceptions import (
            ClientError,
            ConnectionError,
            HTTPClientError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        where = f"{self.uri}/{key}" if key else self.uri
        if isinstance(exc, NoCredentialsError):
            return UsageError(f"{action} {where}: no S3 credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if isinstance(exc, ConnectionError | HTTPClientError | ReadTimeoutError):
            return TransientError(f"{action} {where}: S3 endpoint {self.endpoint_url or 'AWS'} unreachable ({exc})")
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return ObjectNotFound(f"{where} not found")
            if code == "NoSuchBucket":
                return UsageError(f"{action} {where}: bucket {self.bucket!r} does not exist; create it or fix --store")
            if code in _CREDENTIAL_CODES:
                return UsageError(
                    f"{action} {where}: S3 refused the credentials ({code}); check AWS_ACCESS_KEY_ID/"
                    "AWS_SECRET_ACCESS_KEY and the bucket policy"
                )
            if code in _TRANSIENT_CODES:
                return TransientError(f"{action} {where}: S3 is unavailable ({code}); retry later")
            return UsageError(f"{action} {where}: S3 error {code}: {exc}")
        return TransientError(f"{action} {where}: {exc}")

    # -- writes ---------------------------------------------------------------------------------------------
    def put_file(self, key: str, path: str | Path, sha256: str | None = None) -> ObjectInfo:
        full = self._key(key)
        try:
            sha = sha256 or sha256_file(path)
            size = os.path.getsize(path)
        except OSError as exc:
            raise source_error(path, key, exc) from exc
        try:
            if size < self.transfer.multipart_threshold:
                # One PutObject from the open file: the transfer manager's per-call thread pool costs more
                # than the upload itself for the small files medical datasets are made of.
                with open(path, "rb") as body:
                    self.client.put_object(
                        Bucket=self.bucket, Key=full, Body=body, ContentLength=size, Metadata={SHA_META: sha}
                    )
                return ObjectInfo(key, size, sha)
            self.client.upload_file(
                str(path), self.bucket, full, ExtraArgs={"Metadata": {SHA_META: sha}}, Config=self.transfer
            )
        except Exception as exc:
            cause = _unwrap(exc)
            if isinstance(cause, OSError) and names_file(cause, path):  # the local file, not S3
                raise source_error(path, key, cause) from exc
            raise self._wrap("upload", key, cause) from exc
        return ObjectInfo(key, size, sha)

    def put_bytes(self, key: str, data: bytes, sha256: str | None = None) -> ObjectInfo:
        return self._put(key, data, len(data), sha256 or parts_sha256([data]))

    def put_parts(self, key: str, parts: Sequence[Part], sha256: str | None = None) -> ObjectInfo:
        """One PutObject whose body reads the parts in turn (``PartsReader``): nothing joined in memory."""
        return self._put(key, PartsReader(parts), parts_size(parts), sha256 or parts_sha256(parts))

    def _put(self, key: str, body: bytes | PartsReader, size: int, sha: str) -> ObjectInfo:
        full = self._key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=body, ContentLength=size,
                                   Metadata={SHA_META: sha})  # fmt: skip
        except Exception as exc:
            raise self._wrap("put", key, exc) from exc
        return ObjectInfo(key, size, sha)

    def put_if_absent(self, key: str, data: bytes) -> bool:
        import hashlib

        from botocore.exceptions import ClientError

        full = self._key(key)
        sha = hashlib.sha256(data).hexdigest()
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data, Metadata={SHA_META: sha}, IfNoneMatch="*")
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409"):
                return False
            raise self._wrap("create", key, exc) from exc
        except Exception as exc:
            # The response was lost: the write may or may not have happened. Read back and compare.
            try:
                return self.head(key).sha256 == sha
            except IrmsiaError:
                raise self._wrap("create", key, exc) from exc
        return True

    # -- reads ----------------------------------------------------------------------------------------------
    def open_read(self, key: str, verify: bool = True) -> BinaryIO:
        full = self._key(key)
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            raise self._wrap("read", key, exc) from exc
        expected = resp.get("Metadata", {}).get(SHA_META) if verify else None
        reader = HashingReader(_StreamGuard(resp["Body"], self, key), expected, key)
        return io.BufferedReader(reader, buffer_size=1 << 20)

    def head(self, key: str) -> ObjectInfo:
        try:
            resp = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._wrap("head", key, exc) from exc
        return ObjectInfo(key, int(resp["ContentLength"]), resp.get("Metadata", {}).get(SHA_META))

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = (
            (f"{self.prefix}/{prefix}" if self.prefix else prefix)
            if prefix
            else (f"{self.prefix}/" if self.prefix else "")
        )
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(self._rel(obj["Key"]), int(obj["Size"]))
        except Exception as exc:
            raise self._wrap("list", prefix, exc) from exc

    def folders(self, prefix: str) -> builtins.list[str]:
        if prefix and not prefix.endswith("/"):
            raise UsageError(f"folders needs a folder prefix ending in '/' (or '' for the root), got {prefix!r}")
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        paginator = self.client.get_paginator("list_objects_v2")
        names: set[str] = set()
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                names.update(p["Prefix"][len(full) :].rstrip("/") for p in page.get("CommonPrefixes", []))
        except Exception as exc:
            raise self._wrap("list", prefix, exc) from exc
        return sorted(n for n in names if n)

    # -- deletes --------------------------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._wrap("delete", key, exc) from exc

    def delete_prefix(self, prefix: str) -> int:
        if not prefix.endswith("/"):
            raise UsageError(f"delete_prefix needs a folder prefix ending in '/', got {prefix!r}")
        keys = [self._key(o.key) for o in self.list(prefix)]
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            except Exception as exc:
                raise self._wrap("delete", prefix, exc) from exc
        return len(keys)


class _StreamGuard:
    """Maps network failures in the middle of a body read to ``TransientError``."""

    def __init__(self, body, store: S3Store, key: str) -> None:
        self._body = body
        self._store = store
        self._key = key

    def read(self, n: int = -1) -> bytes:
        try:
            return self._body.read(n)
        except Exception as exc:
            raise self._store._wrap("read", self._key, exc) from exc

    def close(self) -> None:
        self._body.close()


def _unwrap(exc: Exception) -> Exception:
    """boto3's transfer manager wraps client errors in S3UploadFailedError; recover the original."""
    cause = exc.__cause__ or exc.__context__
    return cause if isinstance(cause, Exception) and type(exc).__name__ == "S3UploadFailedError" else exc
