"""``--source kaggle --ref owner/slug``: a Kaggle dataset through Kaggle's official client library.

The API calls go through ``kagglesdk`` (the client the official ``kaggle`` package is built on; importing
``kaggle`` itself tries to authenticate at import time, so it is not imported here): ``DownloadDataset`` answers
with a redirect to the dataset's ZIP, whose location and validators are taken from the client's response; the
ZIP itself is then streamed by our transfer code (resume with Range + If-Range, retries, Retry-After), tested,
and unpacked with the members' own paths (``chest_xray/train/NORMAL/…``). ``GetDataset`` gives the licence.

Credentials: ``KAGGLE_API_TOKEN``, or ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``, or ``kaggle.json`` (see settings).
Endpoint: Kaggle's clients only know fixed endpoints (``api.kaggle.com``, or ``http://localhost`` and
``http://localhost:7777`` through ``KAGGLE_API_ENVIRONMENT``). ``IRMSIA_KAGGLE_ENDPOINT=http://host:port`` points
the client's HTTP layer at any server speaking the same protocol (``POST <endpoint>/api/v1/<Service>/<Method>``):
a mirror, a proxy, or the test server in ``tests/support/kaggle_server.py``.
"""

from __future__ import annotations

import logging
from typing import Any

from jobs.collect.sources.base import CollectReport, RawSink, Source
from jobs.collect.sources.url import file_name_of, http_client, store_download
from jobs.collect.transfer import HttpClient, Retryable, RetryPolicy, TransferStats, fatal_status, retry_after_seconds
from jobs.core.errors import UsageError
from jobs.core.logs import redact

log = logging.getLogger("irmsia.collect")
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


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


class KaggleSource(Source):
    """A public Kaggle dataset."""

    name = "kaggle"
    dependencies = ("kagglesdk", "requests")

    def params(self, settings) -> dict[str, Any]:
        return {"ref": settings.ref}

    def collect(self, settings, sink: RawSink) -> CollectReport:
        stats = TransferStats()
        client = http_client(settings, stats)
        api = KaggleDatasets(settings.kaggle, settings.kaggle_endpoint, client)
        owner, slug = settings.ref.split("/", 1)
        license_name = api.license(owner, slug)
        url, headers = api.download_location(owner, slug)
        validator = {"ref": settings.ref, "etag": headers.get("ETag"), "size": headers.get("Content-Length")}
        unit_id = f"kaggle:{settings.ref}"
        if (headers.get("ETag") or headers.get("Content-Length")) and sink.reuse_unit(unit_id, validator):
            log.info("Kaggle %s is already in the store with a matching checksum; not downloading it again",
                     settings.ref)  # fmt: skip
            return CollectReport(license=license_name, details={"ref": settings.ref})
        name = file_name_of(url) if file_name_of(url).lower().endswith(".zip") else f"{slug}.zip"
        got = client.fetch(url, sink.workdir / "kaggle" / name, what=f"Kaggle dataset {settings.ref}")
        records, _ = store_download(sink, unit_id, validator, got.path, name, settings, sha256=got.sha256)
        log.info("Kaggle %s: %d files from %s; transfer %s", settings.ref, len(records), redact(url),
                 stats.as_dict(), extra={"fields": {"transfer": stats.as_dict()}})  # fmt: skip
        return CollectReport(license=license_name, details={"ref": settings.ref})


def kaggle_api(settings_like, policy: RetryPolicy | None = None) -> KaggleDatasets:
    """A ready client for ``irmsia datasets search`` (credentials and endpoint as the stage reads them)."""
    return KaggleDatasets(settings_like.kaggle, settings_like.kaggle_endpoint, HttpClient(policy))


SOURCE = KaggleSource()
