"""The collect stage's settings: one frozen dataclass, parsed and validated once from flags and the environment.

Argo passes every flag of the DAG, so an empty string means "not set". Source-specific checks (``--path``
required for ``local``…) live here too, so a bad combination fails before anything is downloaded or written.
Environment: ``IRMSIA_URL`` (the value of an empty ``--url``: how the runner passes a URL that may carry
credentials, kept off the command line), ``IRMSIA_TCIA_URL``, ``IRMSIA_NIH_URL``, ``IRMSIA_KAGGLE_ENDPOINT``
(base URLs of the public services, overridable for mirrors and tests), Kaggle credentials
(``KAGGLE_API_TOKEN``, or ``KAGGLE_USERNAME`` + ``KAGGLE_KEY``, or ``kaggle.json`` in ``KAGGLE_CONFIG_DIR`` or
``~/.kaggle``) plus the common ``IRMSIA_*`` variables. Credentials never appear in a repr, a log line or the manifest.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jobs.core.errors import UsageError
from jobs.core.layout import check_name
from jobs.core.settings import (
    CommonSettings,
    StageArgumentParser,
    add_common_arguments,
    common_settings,
    float_flag,
    int_flag,
    optional_flag,
)
from jobs.core.urls import URL_ENV, public_url

SOURCES = ("demo", "local", "url", "tcia", "kaggle", "nih")
SYMLINK_POLICIES = ("inside", "refuse")
DEFAULT_SEED = 42
DEFAULT_PATIENTS = 48
DEFAULT_WORKERS = 8
DEFAULT_MAX_EXTRACT_BYTES = 64 << 30  # 64 GiB: larger than any recommended dataset, small enough to stop a bomb
TCIA_URL = "https://nbia.cancerimagingarchive.net/nbia-api/services/v4/"
NIH_URL = "https://nihcc.box.com/shared/static/"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
NIH_ARCHIVES = 12


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


@dataclass(frozen=True, kw_only=True)
class CollectSettings:
    """Everything one collect run needs; ``None`` / empty means the flag was not given."""

    common: CommonSettings = field(default_factory=CommonSettings)
    source: str = "demo"
    """Where the data comes from: demo, local, url, tcia, kaggle or nih."""
    dataset: str = "demo"
    """Dataset name in the store: files go to ``raw/<dataset>/``."""
    path: str | None = None
    """Local folder for ``--source local``."""
    symlinks: str = "inside"
    """``--source local``: ``inside`` copies links that point inside ``--path`` (refusing the others), ``refuse``
    refuses every link."""
    url: str | None = field(default=None, repr=False)
    """File or archive URL for ``--source url`` (or env ``IRMSIA_URL``); may hold credentials, so never shown."""
    ref: str | None = None
    """Kaggle ``owner/slug`` or TCIA collection name."""
    sha256: str | None = None
    """Expected SHA-256 of the ``--url`` download (lowercase hex)."""
    seed: int = DEFAULT_SEED
    """Seed of the demo generator: the same seed gives byte-identical files."""
    patients: int = DEFAULT_PATIENTS
    """How many synthetic patients the demo generates (at least 4)."""
    workers: int = DEFAULT_WORKERS
    """Parallel downloads and uploads."""
    collection: str | None = None
    """TCIA collection (``--collection``; ``--ref`` is accepted as an alias)."""
    patient: tuple[str, ...] = ()
    """TCIA PatientIDs to restrict to (comma-separated flag)."""
    modality: str | None = None
    """TCIA Modality filter (CT, MR, CR, DX…)."""
    body_part: str | None = None
    """TCIA BodyPartExamined filter."""
    max_patients: int | None = None
    """Collect at most this many patients (first in sorted PatientID order)."""
    manifest: str | None = None
    """A ``.tcia`` manifest file listing SeriesInstanceUIDs."""
    max_extract_bytes: int = DEFAULT_MAX_EXTRACT_BYTES
    """Refuse archives whose members add up to more than this many bytes uncompressed (zip bombs)."""
    archives: tuple[int, ...] = tuple(range(1, NIH_ARCHIVES + 1))
    """NIH image archives to collect (1-12); fewer for a quick look at the dataset."""
    retries: int = 5
    """Attempts per HTTP request before the source counts as unavailable (exit 75)."""
    backoff: float = 1.0
    """Seconds to wait before the first retry; doubles each time (a server's Retry-After wins)."""
    timeout: float = 60.0
    """Seconds to wait for a connection or a chunk of data."""
    tcia_url: str = TCIA_URL
    """NBIA v4 base URL (env ``IRMSIA_TCIA_URL``)."""
    nih_url: str = NIH_URL
    """Base URL of the NIH ChestX-ray14 files (env ``IRMSIA_NIH_URL``)."""
    kaggle_endpoint: str | None = None
    """Kaggle API endpoint override (env ``IRMSIA_KAGGLE_ENDPOINT``), for mirrors and tests."""
    kaggle: KaggleCredentials | None = None
    """Kaggle credentials (never logged)."""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise UsageError(f"--source {self.source!r}: use one of {', '.join(SOURCES)}")
        check_name(self.dataset, "--dataset")
        if self.workers < 1 or self.workers > 256:
            raise UsageError(f"--workers {self.workers}: use a number between 1 and 256")
        if self.patients < 4:
            raise UsageError(f"--patients {self.patients}: the demo needs at least 4 patients (two per class)")
        if self.max_patients is not None and self.max_patients < 1:
            raise UsageError(f"--max-patients {self.max_patients}: use a positive number, or leave it empty for all")
        if self.sha256 is not None and not _SHA256.match(self.sha256):
            raise UsageError(f"--sha256 {self.sha256!r}: expected 64 lowercase hex digits")
        if self.retries < 1:
            raise UsageError(f"--retries {self.retries}: use at least 1")
        if self.backoff < 0:
            raise UsageError(f"--backoff {self.backoff}: use zero or a positive number of seconds")
        if not self.archives or any(not 1 <= a <= NIH_ARCHIVES for a in self.archives):
            raise UsageError(f"--archives {self.archives}: use numbers between 1 and {NIH_ARCHIVES}, e.g. 1,2")
        if self.timeout <= 0:
            raise UsageError(f"--timeout {self.timeout}: use a positive number of seconds")
        if self.max_extract_bytes < 1:
            raise UsageError(f"--max-extract-bytes {self.max_extract_bytes}: use a positive number of bytes")
        if self.symlinks not in SYMLINK_POLICIES:
            raise UsageError(f"--symlinks {self.symlinks!r}: use one of {', '.join(SYMLINK_POLICIES)}")
        if self.source == "local" and not self.path:
            raise UsageError("--source local needs --path DIR: the folder to copy into the store")
        if self.source == "url" and not self.url:
            raise UsageError("--source url needs --url URL: the file or archive to download")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise UsageError(f"--url {public_url(self.url)!r}: use an http:// or https:// URL")
        if self.source == "kaggle" and not (self.ref and re.fullmatch(r"[\w.-]+/[\w.-]+", self.ref)):
            raise UsageError(f"--source kaggle needs --ref owner/slug (e.g. paultimothymooney/chest-xray-pneumonia), "
                             f"got {self.ref or ''!r}")  # fmt: skip
        if self.source == "kaggle" and self.kaggle is None:
            raise UsageError(
                "--source kaggle needs credentials: set KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, "
                "or put kaggle.json in ~/.kaggle (or KAGGLE_CONFIG_DIR)"
            )
        if self.source == "tcia" and not (self.collection or self.manifest or self.patient):
            raise UsageError("--source tcia needs --collection NAME (or --ref NAME), --patient IDS or --manifest FILE")


def _int_list(value: str | None, flag: str) -> tuple[int, ...]:
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    try:
        return tuple(int(v) for v in items)
    except ValueError as exc:
        raise UsageError(f"{flag} {value!r}: expected comma-separated whole numbers like 1,2") from exc


def build_parser() -> argparse.ArgumentParser:
    parser = StageArgumentParser(
        prog="irmsia-collect",
        description="Download a dataset (demo, local folder, URL, TCIA, Kaggle, NIH) into raw/<dataset>/.",
    )
    parser.add_argument("--source", default="demo", help=f"one of {', '.join(SOURCES)} (default demo)")
    parser.add_argument("--dataset", default="", help="dataset name: files go to raw/<dataset>/ (default: demo)")
    parser.add_argument("--path", default="", help="local folder (--source local)")
    parser.add_argument("--symlinks", default="", help="--source local: inside (default: copy links that stay in "
                        "--path, refuse the others) or refuse (every link)")  # fmt: skip
    parser.add_argument("--url", default="", help=f"file or archive URL (--source url; env {URL_ENV} when empty)")
    parser.add_argument("--ref", default="", help="Kaggle owner/slug or TCIA collection")
    parser.add_argument("--sha256", default="", help="expected SHA-256 of the --url download")
    parser.add_argument("--seed", default="", help=f"demo generator seed (default {DEFAULT_SEED})")
    parser.add_argument("--patients", default="", help=f"demo patients (default {DEFAULT_PATIENTS})")
    parser.add_argument("--workers", default="", help=f"parallel transfers (default {DEFAULT_WORKERS})")
    parser.add_argument("--collection", default="", help="TCIA collection")
    parser.add_argument("--patient", default="", help="TCIA PatientIDs, comma-separated")
    parser.add_argument("--modality", default="", help="TCIA modality filter (CT, MR, CR, DX…)")
    parser.add_argument("--body-part", default="", help="TCIA BodyPartExamined filter")
    parser.add_argument("--max-patients", default="", help="collect at most this many patients")
    parser.add_argument("--manifest", default="", help="a .tcia manifest file listing series")
    parser.add_argument("--max-extract-bytes", default="", help="uncompressed size limit for archives (zip bombs)")
    parser.add_argument("--archives", default="", help="NIH image archives to collect, e.g. 1,2 (default 1-12)")
    parser.add_argument("--retries", default="", help="attempts per HTTP request (default 5)")
    parser.add_argument("--backoff", default="", help="seconds before the first retry, doubling (default 1)")
    parser.add_argument("--timeout", default="", help="seconds to wait for the network (default 60)")
    add_common_arguments(parser)
    return parser


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> CollectSettings:
    """Flags and environment -> validated ``CollectSettings`` (``UsageError`` naming the bad flag)."""
    args = build_parser().parse_args(list(argv))
    source = optional_flag(args.source) or "demo"
    if source not in SOURCES:
        raise UsageError(f"--source {source!r}: use one of {', '.join(SOURCES)}")
    dataset = optional_flag(args.dataset) or ("demo" if source == "demo" else None)
    if dataset is None:
        raise UsageError(f"--source {source} needs --dataset NAME: the store folder raw/<NAME>/ to collect into")
    collection = optional_flag(args.collection)
    ref = optional_flag(args.ref)
    if source == "tcia" and collection is None:
        collection = ref
    patients = tuple(p.strip() for p in (args.patient or "").split(",") if p.strip())
    return CollectSettings(
        common=common_settings(args, env),
        source=source,
        dataset=dataset,
        path=optional_flag(args.path),
        symlinks=optional_flag(args.symlinks) or "inside",
        url=optional_flag(args.url) or optional_flag(env.get(URL_ENV)),
        ref=ref,
        sha256=(optional_flag(args.sha256) or "").lower() or None,
        seed=int_flag(args.seed, "--seed", DEFAULT_SEED),  # type: ignore[arg-type]
        patients=int_flag(args.patients, "--patients", DEFAULT_PATIENTS),  # type: ignore[arg-type]
        workers=int_flag(args.workers, "--workers", DEFAULT_WORKERS),  # type: ignore[arg-type]
        collection=collection,
        patient=patients,
        modality=optional_flag(args.modality),
        body_part=optional_flag(args.body_part),
        max_patients=int_flag(args.max_patients, "--max-patients", None),
        manifest=optional_flag(args.manifest),
        max_extract_bytes=int_flag(args.max_extract_bytes, "--max-extract-bytes", DEFAULT_MAX_EXTRACT_BYTES),  # type: ignore[arg-type]
        archives=_int_list(args.archives, "--archives") or tuple(range(1, NIH_ARCHIVES + 1)),
        retries=int_flag(args.retries, "--retries", 5),  # type: ignore[arg-type]
        backoff=float_flag(args.backoff, "--backoff", 1.0),
        timeout=float_flag(args.timeout, "--timeout", 60.0),
        tcia_url=optional_flag(env.get("IRMSIA_TCIA_URL")) or TCIA_URL,
        nih_url=optional_flag(env.get("IRMSIA_NIH_URL")) or NIH_URL,
        kaggle_endpoint=optional_flag(env.get("IRMSIA_KAGGLE_ENDPOINT")),
        kaggle=kaggle_credentials(env) if source == "kaggle" else None,
    )
