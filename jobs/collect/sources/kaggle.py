"""``--source kaggle --ref owner/slug``: a Kaggle dataset through Kaggle's official client library.

The API calls go through ``kagglesdk`` (the client the official ``kaggle`` package is built on; importing
``kaggle`` itself tries to authenticate at import time, so it is not imported here): ``DownloadDataset`` answers
with a redirect to the dataset's ZIP, whose location and validators are taken from the client's response; the
ZIP itself is then streamed by our transfer code (resume with Range + If-Range, retries, Retry-After), tested,
and unpacked with the members' own paths (``chest_xray/train/NORMAL/…``). ``GetDataset`` gives the licence.

Credentials: ``KAGGLE_API_TOKEN``, or ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``, or ``kaggle.json`` in
``KAGGLE_CONFIG_DIR`` or ``~/.kaggle``; read once with the options, never in a repr, a log line or the manifest.
Endpoint: Kaggle's clients only know fixed endpoints (``api.kaggle.com``, or ``http://localhost`` and
``http://localhost:7777`` through ``KAGGLE_API_ENVIRONMENT``). ``IRMSIA_KAGGLE_ENDPOINT=http://host:port`` points
the client's HTTP layer at any server speaking the same protocol (``POST <endpoint>/api/v1/<Service>/<Method>``):
a mirror, a proxy, or the test server in ``tests/support/kaggle_server.py``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from jobs.collect.sources.base import ArchiveOptions, CollectReport, RawSink, Source
from jobs.collect.sources.url import file_name_of, http_client, store_download
from jobs.collect.transfer import HttpClient, Retryable, TransferStats, fatal_status, retry_after_seconds
from jobs.core.errors import UsageError
from jobs.core.logs import redact
from jobs.core.settings import option

log = logging.getLogger("irmsia.collect")
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class KaggleCredentials:
    """A Kaggle API token, or a username + key; ``repr`` shows only where they came from."""

    origin: str
    """Where they were found (an environment variable's name or the kaggle.json path), for messages."""
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    key: str | None = field(default=None, repr=False)


def kaggle_credentials(env: Mapping[str, str]) -> KaggleCredentials | None:
    """Kaggle credentials from ``KAGGLE_API_TOKEN``, ``KAGGLE_USERNAME``/``KAGGLE_KEY`` or ``kaggle.json``."""
    if token := (env.get("KAGGLE_API_TOKEN") or "").strip():
        return KaggleCredentials("KAGGLE_API_TOKEN", token=token)
    user, key = (env.get("KAGGLE_USERNAME") or "").strip(), (env.get("KAGGLE_KEY") or "").strip()
    if user and key:
        return KaggleCredentials("KAGGLE_USERNAME/KAGGLE_KEY", username=user, key=key)
    folder = env.get("KAGGLE_CONFIG_DIR") or (str(Path(env["HOME"]) / ".kaggle") if env.get("HOME") else "")
    path = Path(folder) / "kaggle.json" if folder else None
    if path is None or not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return KaggleCredentials(str(path), username=str(data["username"]), key=str(data["key"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f'{path}: not a valid kaggle.json (needs "username" and "key"); fix or remove it') from exc


def _ref(value: str, flag: str) -> None:
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", value):
        raise UsageError(f"{flag} {value!r}: use owner/slug, e.g. paultimothymooney/chest-xray-pneumonia")


@dataclass(frozen=True, kw_only=True)
class KaggleOptions(ArchiveOptions):
    """``--source kaggle``: which dataset, and where the API is."""

    ref: str = option(
        check=_ref,
        result=True,
        parameter="ref",
        help="dataset reference: Kaggle owner/slug (--source kaggle) or TCIA collection (--source tcia)",
    )
    endpoint: str | None = option(
        None, flag=None, env="IRMSIA_KAGGLE_ENDPOINT", help="Kaggle API endpoint override, for mirrors and tests"
    )
    credentials: KaggleCredentials | None = field(default=None, repr=False)
    """Kaggle credentials from the environment (never logged)."""

    def validate(self) -> None:
        if self.credentials is None:
            raise UsageError(
                "--source kaggle needs credentials: set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, "
                "or put kaggle.json in ~/.kaggle (or KAGGLE_CONFIG_DIR)"
            )

    @classmethod
    def from_values(cls, values: dict[str, Any], env: Mapping[str, str]) -> Self:
        if "ref" not in values:
            raise UsageError("--source kaggle needs --ref owner/slug (e.g. paultimothymooney/chest-xray-pneumonia)")
        return cls.build(values, credentials=kaggle_credentials(env))


class KaggleDatasets:
    """The few dataset calls the pipeline needs, on an authenticated ``kagglesdk`` client, with retries."""

    def __init__(self, credentials, endpoint: str | None, client: HttpClient) -> None:
        try:
            from kagglesdk import KaggleClient, KaggleEnv
        except ModuleNotFoundError as exc:
            raise UsageError("Kaggle needs the kagglesdk package: pip install 'irmsia-pipeline[collect]'") from exc

        if credentials is None:
            raise UsageError("Kaggle needs credentials: set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, "
                             "or put kaggle.json in ~/.kaggle")  # fmt: skip
        self.http = client
        self.endpoint = (endpoint or "https://www.kaggle.com").rstrip("/")
        self.kaggle = KaggleClient(
            env=KaggleEnv.LOCAL if endpoint else KaggleEnv.PROD,
            username=credentials.username,
            password=credentials.key,
            api_token=credentials.token,
            user_agent="irmsia-collect",
        )
        if endpoint:
            http_layer = self.kaggle.http_client()
            if not hasattr(http_layer, "_endpoint"):
                raise UsageError("IRMSIA_KAGGLE_ENDPOINT: this kagglesdk version has no endpoint to override; "
                                 "unset it or pin kagglesdk")  # fmt: skip
            # non-production environments address services as <endpoint>/api/v1/<Service>/<Method>
            http_layer._endpoint = self.endpoint

    def _call(self, what: str, call):
        """Run one SDK call, mapping its HTTP errors onto the contract (retry 429/5xx, exit 2 for 401/403/404)."""
        import requests

        def once():
            try:
                return call()
            except requests.HTTPError as exc:
                status = exc.response.status_code if exc.response is not None else 0
                if status in RETRY_STATUS:
                    wait = retry_after_seconds(exc.response.headers.get("Retry-After"))
                    raise Retryable(f"HTTP {status}", wait) from exc
                raise fatal_status(f"{self.endpoint} ({what})", status, f"Kaggle {what}") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise Retryable(type(exc).__name__) from exc

        return self.http.retrying(f"Kaggle {what}", once)

    def search(self, text: str, page_size: int = 20) -> list[dict[str, Any]]:
        from kagglesdk.datasets.types.dataset_api_service import ApiListDatasetsRequest

        request = ApiListDatasetsRequest()
        request.search = text
        request.page_size = page_size
        response = self._call("ListDatasets", lambda: self.kaggle.datasets.dataset_api_client.list_datasets(request))
        return [
            {"ref": d.ref, "title": d.title, "bytes": d.total_bytes, "license": d.license_name}
            for d in response.datasets
        ]

    def license(self, owner: str, slug: str) -> str | None:
        from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

        request = ApiGetDatasetRequest()
        request.owner_slug, request.dataset_slug = owner, slug
        dataset = self._call("GetDataset", lambda: self.kaggle.datasets.dataset_api_client.get_dataset(request))
        return dataset.license_name or None

    def download_location(self, owner: str, slug: str) -> tuple[str, dict[str, str]]:
        """Where the dataset's ZIP is (after Kaggle's redirect) and its headers; the body is not read."""
        from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

        request = ApiDownloadDatasetRequest()
        request.owner_slug, request.dataset_slug = owner, slug

        def locate():
            response = self.kaggle.datasets.dataset_api_client.download_dataset(request)
            try:
                return response.url, dict(response.headers)
            finally:
                response.close()

        return self._call("DownloadDataset", locate)


class KaggleSource(Source[KaggleOptions]):
    """A public Kaggle dataset."""

    name = "kaggle"
    dependencies = ("kagglesdk", "requests")
    options_type = KaggleOptions

    def collect(self, options: KaggleOptions, sink: RawSink) -> CollectReport:
        stats = TransferStats()
        client = http_client(options, stats)
        api = KaggleDatasets(options.credentials, options.endpoint, client)
        owner, slug = options.ref.split("/", 1)
        license_name = api.license(owner, slug)
        url, headers = api.download_location(owner, slug)
        validator = {"ref": options.ref, "etag": headers.get("ETag"), "size": headers.get("Content-Length")}
        unit_id = f"kaggle:{options.ref}"
        if (headers.get("ETag") or headers.get("Content-Length")) and sink.reuse_unit(unit_id, validator):
            log.info("Kaggle %s is already in the store with a matching checksum; not downloading it again",
                     options.ref)  # fmt: skip
            return CollectReport(license=license_name, details={"ref": options.ref})
        name = file_name_of(url) if file_name_of(url).lower().endswith(".zip") else f"{slug}.zip"
        got = client.fetch(url, sink.workdir / "kaggle" / name, what=f"Kaggle dataset {options.ref}")
        records, _ = store_download(sink, unit_id, validator, got.path, name, options, sha256=got.sha256)
        log.info("Kaggle %s: %d files from %s; transfer %s", options.ref, len(records), redact(url),
                 stats.as_dict(), extra={"fields": {"transfer": stats.as_dict()}})  # fmt: skip
        return CollectReport(license=license_name, details={"ref": options.ref})


SOURCE = KaggleSource()
