"""``--source url --url URL [--sha256 HEX]``: one HTTP(S) file or archive into ``raw/<dataset>/``.

An archive (zip or tar, recognised by content) is tested and unpacked safely, its members keeping their
relative paths, so a dataset's own layout (``chest_xray/train/NORMAL/…``) reaches the index stage intact.
Any other file is stored under its name from the URL. A rerun after an interruption does not download again
when the store already holds the completed result: with ``--sha256`` that checksum identifies it; without, the
server's ETag/Last-Modified and size must match.

Credentials in the URL (userinfo, sent as HTTP Basic auth; ``?token=``-like query values) are used for the
request only: the manifest, the ``_collect/`` record and its name, logs and the summary hold ``public_url``, and
the cache key and unit id ``url_identity`` (a salted scrypt hash stands for the credentials).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from jobs.collect.archive import archive_kind, extract, named_like_archive, remove_tree
from jobs.collect.sources.base import ArchiveOptions, CollectReport, RawSink, Source, TransferOptions
from jobs.collect.transfer import HttpClient, RetryPolicy, TransferStats
from jobs.core.errors import IrmsiaError, TransientError, UsageError
from jobs.core.manifest import OutputRecord
from jobs.core.settings import option
from jobs.core.urls import URL_ENV, public_url, url_identity

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

log = logging.getLogger("irmsia.collect")


def http_client(options: TransferOptions, stats: TransferStats | None = None, headers=None) -> HttpClient:
    """The HTTP client every network source uses, configured from its retry options."""
    policy = RetryPolicy(attempts=options.retries, timeout=options.timeout, backoff=options.backoff)
    return HttpClient(policy, headers=headers, stats=stats)


def file_name_of(url: str) -> str:
    """The last path segment of ``url``, decoded; ``download`` when the URL has none."""
    name = unquote(PurePosixPath(urlsplit(url).path).name)
    return name if name and name not in (".", "..") and "/" not in name else "download"


def license_from_members(members) -> tuple[str | None, str | None]:
    """(first line, full text) of a top-level LICENSE member, if the archive has one."""
    for m in members:
        if "/" not in m.name and m.name.upper().startswith(("LICENSE", "LICENCE")):
            text = m.path.read_text(errors="replace")
            first = next((line.strip() for line in text.splitlines() if line.strip()), None)
            return (first[:200] if first else None), text
    return None, None


def store_download(sink: RawSink, unit_id: str, validator: dict[str, Any], file: Path, name: str,
                   options: ArchiveOptions, folder: str = "",
                   **extra: Any) -> tuple[list[OutputRecord], str | None]:  # fmt: skip
    """Store a downloaded file (unpacked if it is an archive) under ``folder`` as the unit ``unit_id``; returns
    (records, licence). With ``--deidentify`` the unit's record keeps its files' tally (``RawSink.unit_scope``)."""
    license_line = None
    with sink.unit_scope():
        if archive_kind(file) is not None or named_like_archive(name):
            target = file.with_name(file.name + ".d")
            members = extract(file, target, options.max_extract_bytes, archive=name)
            file.unlink(missing_ok=True)
            license_line, _ = license_from_members(members)
            records = sink.put_many(((folder + m.name, m.path, m.sha256, m.size) for m in members), move=True)
            remove_tree(target)
        else:
            records = [r for r in [sink.move_file(folder + name, file)] if r is not None]  # None: left out (de-id)
        sink.seal_unit(unit_id, validator, records, license=license_line, **extra)
    return records, license_line


def _sha256(value: str, flag: str) -> None:
    if not _SHA256.match(value):
        raise UsageError(f"{flag} {value!r}: expected 64 lowercase hex digits")


def _url(value: str, flag: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise UsageError(f"{flag} {public_url(value)!r}: use an http:// or https:// URL")


@dataclass(frozen=True, kw_only=True)
class UrlOptions(ArchiveOptions):
    """``--source url``: the file or archive, and optionally its checksum."""

    url: str = option(
        check=_url,
        parameter="url",
        env=URL_ENV,
        secret=True,
        help="file or archive URL to download (--source url); it may carry credentials, so it is never "
        "shown, and the runner passes it in IRMSIA_URL rather than on the command line",
    )
    sha256: str | None = option(
        None,
        parse=lambda t: t.strip().lower(),
        check=_sha256,
        parameter="sha256",
        help="expected SHA-256 of the --url download (64 hex digits)",
    )


class UrlSource(Source[UrlOptions]):
    """Any HTTP(S) file or archive."""

    name = "url"
    options_type = UrlOptions

    def result_params(self, options: UrlOptions) -> dict[str, Any]:
        return {"url": url_identity(options.url), "sha256": options.sha256}

    def _validator(self, options: UrlOptions, client: HttpClient) -> dict[str, Any] | None:
        if options.sha256:
            return {"sha256": options.sha256}
        try:
            headers = client.head(options.url)
        except TransientError:
            raise
        except IrmsiaError:  # some servers refuse HEAD; then there is no cheap way to prove the store is current
            return None
        etag, modified = headers.get("ETag"), headers.get("Last-Modified")
        if not (etag or modified):
            return None
        return {"etag": etag, "last_modified": modified, "size": headers.get("Content-Length")}

    def collect(self, options: UrlOptions, sink: RawSink) -> CollectReport:
        stats = TransferStats()
        client = http_client(options, stats)
        unit_id = f"url:{url_identity(options.url)}"
        validator = self._validator(options, client)
        if validator is not None and (record := sink.reuse_unit(unit_id, validator)) is not None:
            log.info("%s is already in the store with a matching checksum; not downloading it again",
                     public_url(options.url))  # fmt: skip
            details = {"url": public_url(options.url), "sha256": record.get("sha256")}
            return CollectReport(license=record.get("license"), details=details)
        name = file_name_of(options.url)
        got = client.fetch(options.url, sink.workdir / "download" / name, sha256=options.sha256, what="--url")
        if validator is None or "sha256" not in validator:
            # record what this download was, so an interrupted rerun can recognise it
            validator = {"sha256": options.sha256} if options.sha256 else {
                "etag": got.etag, "last_modified": got.last_modified, "size": str(got.size)}  # fmt: skip
        records, license_line = store_download(sink, unit_id, validator, got.path, name, options, sha256=got.sha256)
        log.info("downloaded %s (%d bytes, %d files); transfer %s", public_url(options.url), got.size, len(records),
                 stats.as_dict(), extra={"fields": {"transfer": stats.as_dict()}})  # fmt: skip
        return CollectReport(license=license_line, details={"url": public_url(options.url), "sha256": got.sha256})


SOURCE = UrlSource()
