"""``--source kaggle --ref owner/slug`` (a dataset) or ``--competition NAME``: Kaggle data through its client library.

The API calls go through ``kagglesdk`` (the client the official ``kaggle`` package is built on; importing
``kaggle`` itself tries to authenticate at import time, so it is not imported here): ``DownloadDataset`` (or, for
a competition, ``DownloadDataFiles``) answers with a redirect to the ZIP, whose location and validators are taken
from the client's response; the ZIP itself is then streamed by our transfer code (resume with Range + If-Range,
retries, Retry-After), tested, and unpacked with the members' own paths (``chest_xray/train/NORMAL/…``).
``GetDataset`` gives the licence and the current version number: a dataset is collected at a version
(``--kaggle-version N``, default the current one), which the cache key and the manifest's summary record
(``version``, ``pin``), so a rerun with ``--kaggle-version N`` asks for exactly that version again. A competition's
data (the RSNA challenges) needs its rules accepted on kaggle.com first: Kaggle answers 403 until then, which is
exit 2 saying so; its summary records the ZIP's SHA-256 and ETag.

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


def _competition(value: str, flag: str) -> None:
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", value):
        raise UsageError(f"{flag} {value!r}: use the competition's name from its URL, e.g. "
                         "rsna-pneumonia-detection-challenge")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class KaggleOptions(ArchiveOptions):
    """``--source kaggle``: which dataset, and where the API is."""

    ref: str | None = option(
        None,
        check=_ref,
        parameter="ref",
        help="dataset reference: Kaggle owner/slug (--source kaggle) or TCIA/IDC collection (--source tcia, idc)",
    )
    competition: str | None = option(
        None,
        check=_competition,
        parameter="competition",
        help="--source kaggle: a Kaggle competition's data instead of a dataset (its rules accepted on kaggle.com)",
    )
    kaggle_version: int | None = option(
        None,
        minimum=1,
        parameter="kaggle_version",
        help="--source kaggle: the dataset version to collect (default: the current one; the manifest records it)",
    )
    endpoint: str | None = option(
        None, flag=None, env="IRMSIA_KAGGLE_ENDPOINT", help="Kaggle API endpoint override, for mirrors and tests"
    )
    credentials: KaggleCredentials | None = field(default=None, repr=False)
    """Kaggle credentials from the environment (never logged)."""

    def validate(self) -> None:
        if bool(self.ref) == bool(self.competition):
            raise UsageError("--source kaggle needs --ref owner/slug (a dataset) or --competition NAME, not both")
        if self.competition and self.kaggle_version is not None:
            raise UsageError("--kaggle-version applies to datasets; a competition's data has no version numbers")
        if self.credentials is None:
            raise UsageError(
                "--source kaggle needs credentials: set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, "
                "or put kaggle.json in ~/.kaggle (or KAGGLE_CONFIG_DIR)"
            )

    @classmethod
    def from_values(cls, values: dict[str, Any], env: Mapping[str, str]) -> Self:
        if "ref" not in values and "competition" not in values:
            raise UsageError("--source kaggle needs --ref owner/slug (e.g. paultimothymooney/chest-xray-pneumonia) "
                             "or --competition NAME (e.g. rsna-pneumonia-detection-challenge)")  # fmt: skip
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

    def search_competitions(self, text: str) -> list[dict[str, Any]]:
        from kagglesdk.competitions.types.competition_api_service import ApiListCompetitionsRequest

        request = ApiListCompetitionsRequest()
        request.search = text
        client = self.kaggle.competitions.competition_api_client
        response = self._call("ListCompetitions", lambda: client.list_competitions(request))
        return [{"ref": c.ref.rstrip("/").rsplit("/", 1)[-1], "title": c.title} for c in response.competitions]

    def dataset(self, owner: str, slug: str) -> tuple[str | None, int | None]:
        """The dataset's licence and current version number."""
        from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

        request = ApiGetDatasetRequest()
        request.owner_slug, request.dataset_slug = owner, slug
        dataset = self._call("GetDataset", lambda: self.kaggle.datasets.dataset_api_client.get_dataset(request))
        return dataset.license_name or None, dataset.current_version_number or None

    def license(self, owner: str, slug: str) -> str | None:
        return self.dataset(owner, slug)[0]

    def competition(self, name: str) -> tuple[str, bool]:
        """A competition's title and whether these credentials accepted its rules."""
        from kagglesdk.competitions.types.competition_api_service import ApiGetCompetitionRequest

        request = ApiGetCompetitionRequest()
        request.competition_name = name
        client = self.kaggle.competitions.competition_api_client
        found = self._call("GetCompetition", lambda: client.get_competition(request))
        return found.title or name, bool(found.user_has_entered)

    def _locate(self, what: str, download) -> tuple[str, dict[str, str]]:
        def locate():
            response = download()
            try:
                return response.url, dict(response.headers)
            finally:
                response.close()

        return self._call(what, locate)

    def download_location(self, owner: str, slug: str, version: int | None = None) -> tuple[str, dict[str, str]]:
        """Where the dataset's ZIP (of ``version``, or the current one) is, after Kaggle's redirect, and its
        headers; the body is not read."""
        from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

        request = ApiDownloadDatasetRequest()
        request.owner_slug, request.dataset_slug = owner, slug
        if version is not None:
            request.dataset_version_number = version
        return self._locate(
            "DownloadDataset", lambda: self.kaggle.datasets.dataset_api_client.download_dataset(request)
        )

    def competition_location(self, name: str) -> tuple[str, dict[str, str]]:
        """Where a competition's data ZIP is; exit 2 naming the rules page when they are not accepted."""
        from kagglesdk.competitions.types.competition_api_service import ApiDownloadDataFilesRequest

        request = ApiDownloadDataFilesRequest()
        request.competition_name = name
        client = self.kaggle.competitions.competition_api_client
        try:
            return self._locate("DownloadDataFiles", lambda: client.download_data_files(request))
        except UsageError as exc:
            if "HTTP 403" not in str(exc):
                raise
            raise UsageError(
                f"Kaggle competition {name}: access denied (HTTP 403); accept its rules at "
                f"https://www.kaggle.com/competitions/{name}/rules with this account, then rerun"
            ) from exc


class KaggleSource(Source[KaggleOptions]):
    """A public Kaggle dataset, or a competition's data."""

    name = "kaggle"
    dependencies = ("kagglesdk", "requests")
    options_type = KaggleOptions

    def result_params(self, options: KaggleOptions) -> dict[str, Any]:
        # the version a dataset will be collected at is its result (a new version is a new result)
        if options.competition:
            return {"competition": options.competition}
        api = KaggleDatasets(options.credentials, options.endpoint, http_client(options))
        owner, slug = (options.ref or "").split("/", 1)
        version = options.kaggle_version or api.dataset(owner, slug)[1]
        return {"ref": options.ref, "version": version}

    def collect(self, options: KaggleOptions, sink: RawSink) -> CollectReport:
        stats = TransferStats()
        client = http_client(options, stats)
        api = KaggleDatasets(options.credentials, options.endpoint, client)
        if options.competition:
            return self._competition(options, api, client, sink, stats)
        owner, slug = (options.ref or "").split("/", 1)
        license_name, current = api.dataset(owner, slug)
        version = options.kaggle_version or current
        url, headers = api.download_location(owner, slug, options.kaggle_version)
        details = {"ref": options.ref, "version": version, "pin": f"--kaggle-version {version}" if version else None}
        validator = {"ref": options.ref, "version": version, "etag": headers.get("ETag"),
                     "size": headers.get("Content-Length")}  # fmt: skip
        unit_id = f"kaggle:{options.ref}"
        if (headers.get("ETag") or headers.get("Content-Length")) and (
            record := sink.reuse_unit(unit_id, validator)
        ) is not None:
            log.info("Kaggle %s is already in the store with a matching checksum; not downloading it again",
                     options.ref)  # fmt: skip
            return CollectReport(license=license_name, details={**details, "sha256": record.get("sha256")})
        name = file_name_of(url) if file_name_of(url).lower().endswith(".zip") else f"{slug}.zip"
        got = client.fetch(url, sink.workdir / "kaggle" / name, what=f"Kaggle dataset {options.ref}")
        records, _ = store_download(sink, unit_id, validator, got.path, name, options, sha256=got.sha256)
        log.info("Kaggle %s (version %s): %d files from %s; transfer %s", options.ref, version, len(records),
                 redact(url), stats.as_dict(), extra={"fields": {"transfer": stats.as_dict()}})  # fmt: skip
        return CollectReport(license=license_name, details={**details, "sha256": got.sha256})

    def _competition(self, options: KaggleOptions, api: KaggleDatasets, client: HttpClient, sink: RawSink,
                     stats: TransferStats) -> CollectReport:  # fmt: skip
        name = options.competition or ""
        title, entered = api.competition(name)
        if not entered:
            log.info("Kaggle says this account has not entered %s; trying the download anyway", name)
        url, headers = api.competition_location(name)
        license_name = f"{title}: competition rules (https://www.kaggle.com/competitions/{name}/rules)"
        validator = {"competition": name, "etag": headers.get("ETag"), "size": headers.get("Content-Length")}
        unit_id = f"kaggle-competition:{name}"
        if (headers.get("ETag") or headers.get("Content-Length")) and (
            record := sink.reuse_unit(unit_id, validator)
        ) is not None:
            log.info("Kaggle competition %s is already in the store; not downloading it again", name)
            return CollectReport(license=license_name, details={"competition": name, "sha256": record.get("sha256"),
                                                                "etag": headers.get("ETag")})  # fmt: skip
        zip_name = f"{name}.zip"
        got = client.fetch(url, sink.workdir / "kaggle" / zip_name, what=f"Kaggle competition {name}")
        records, _ = store_download(sink, unit_id, validator, got.path, zip_name, options, sha256=got.sha256)
        log.info("Kaggle competition %s: %d files from %s; transfer %s", name, len(records), redact(url),
                 stats.as_dict(), extra={"fields": {"transfer": stats.as_dict()}})  # fmt: skip
        return CollectReport(license=license_name, details={"competition": name, "sha256": got.sha256,
                                                            "etag": headers.get("ETag")})  # fmt: skip


SOURCE = KaggleSource()
