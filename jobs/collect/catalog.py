"""The dataset catalogue (``irmsia datasets list|search|show``), and search across Kaggle and TCIA.

Two parts, one shape (``CatalogEntry``):

* the reviewed entries of ``datasets.yaml`` beside this module: Kaggle datasets and competitions (the RSNA
  challenges), NIH ChestX-ray14, MedMNIST, segmentation benchmarks, credentialed collections (MIMIC-CXR, CheXpert,
  ADNI…), each with what the pipeline can and cannot do with it;
* one entry per NCI Imaging Data Commons collection, generated from the installed ``idc-index-data``'s own
  ``collections_index`` (name, cancer types, licence, DOI, citation) and main index (this release's series,
  patients, modalities, bytes), so they are real and current. A reviewed entry with ``idc_collection`` replaces
  the generated one. Without idc-index-data only the reviewed entries are listed.

Every entry has its exact collect command. ``search_kaggle``/``search_tcia`` ask those services (``--online``).
"""

from __future__ import annotations

import difflib
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from jobs.collect.sources.kaggle import kaggle_credentials
from jobs.collect.sources.tcia import TCIA_URL
from jobs.collect.transfer import HttpClient, RetryPolicy
from jobs.core.errors import UsageError

DATA_FILE = Path(__file__).with_name("datasets.yaml")
ACCESS = {
    "public": "no account",
    "account": "a free account (Kaggle: KAGGLE_API_TOKEN)",
    "rules": "a Kaggle account that accepted the competition's rules",
    "registration": "a registration or click-through licence",
    "credentialed": "a data-use agreement, training or approval",
}
"""Who may get the data: each entry's ``access``, and what it means."""
TOP_TEN = ("nih-chestxray14", "lidc-idri", "chest-xray-pneumonia", "covid19-radiography", "lgg-mri-segmentation",
           "tcga-gbm", "rsna-pneumonia", "rsna-intracranial-hemorrhage", "brats-2021", "mimic-cxr")  # fmt: skip
"""The datasets the project set out to support first (README), in that order."""
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_REQUIRED_TEXT = ("name", "title", "source", "ref", "modality", "task", "labels", "license", "citation", "access",
                  "how_to_access", "can", "cannot")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class CatalogEntry:
    """One dataset: where it lives, what it is, who may have it, and what the pipeline does with it."""

    name: str
    """Suggested ``--dataset`` name (the store folder ``raw/<name>/``)."""
    title: str
    source: str
    """Where it comes from: a collect source (kaggle, idc, tcia, nih, url, dicomweb, demo), ``kaggle-competition``,
    or ``local`` (downloaded by hand, then collected from a folder)."""
    ref: str
    """The source's id: Kaggle owner/slug or competition, IDC collection id, TCIA collection, URL, or ``-``."""
    modality: str
    task: str
    labels: str
    images: int | None = None
    patients: int | None = None
    bytes: int | None = None
    license: str
    citation: str
    doi: str | None = None
    access: str
    how_to_access: str
    can: str
    """What the pipeline can do with it."""
    cannot: str
    """What it cannot (yet) do with it."""
    collect: str | None = None
    """The collect command, when the one derived from source and ref is not enough."""
    idc_collection: str | None = None
    origin: str = "reviewed"
    """``reviewed`` (datasets.yaml) or ``idc vN`` (generated from IDC release N's metadata)."""

    @property
    def command(self) -> str:
        if self.collect:
            return self.collect
        base = f"irmsia-collect --source {self.source} --dataset {self.name}"
        flag = {"kaggle": "--ref", "idc": "--collection", "tcia": "--collection", "url": "--url"}.get(self.source)
        if self.source == "kaggle-competition":
            return f"irmsia-collect --source kaggle --dataset {self.name} --competition {self.ref}"
        return f"{base} {flag} {self.ref}" if flag else base

    @property
    def size(self) -> str:
        parts = []
        if self.images:
            parts.append(f"{self.images:,} images")
        if self.patients:
            parts.append(f"{self.patients:,} patients")
        if self.bytes:
            parts.append(_human(self.bytes))
        return ", ".join(parts) or "see the source"

    def text(self) -> str:
        """Everything a search looks through."""
        return " ".join(str(getattr(self, f.name) or "") for f in fields(self)).lower()


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def entry_from(data: Mapping[str, Any], where: str) -> CatalogEntry:
    """One catalogue entry from a mapping; ``ValueError`` naming the entry and the field that is wrong."""
    name = str(data.get("name", "?"))
    known = {f.name for f in fields(CatalogEntry)}
    if unknown := sorted(set(data) - known):
        raise ValueError(f"{where}: entry {name}: unknown fields {unknown}")
    missing = [k for k in _REQUIRED_TEXT if not isinstance(data.get(k), str) or not data[k].strip()]
    if missing:
        raise ValueError(f"{where}: entry {name}: {', '.join(missing)} must be non-empty text")
    if not _NAME.match(name):
        raise ValueError(f"{where}: entry {name}: the name must be a store folder name (a-z, 0-9, -)")
    if data["access"] not in ACCESS:
        raise ValueError(f"{where}: entry {name}: access must be one of {', '.join(ACCESS)}")
    for key in ("images", "patients", "bytes"):
        if data.get(key) is not None and (not isinstance(data[key], int) or data[key] <= 0):
            raise ValueError(f"{where}: entry {name}: {key} must be a positive whole number or null")
    if data["source"] in ("local", "dicomweb") and not data.get("collect"):
        raise ValueError(f"{where}: entry {name}: a {data['source']} entry needs its collect command")
    return CatalogEntry(**data)


@cache
def reviewed_entries() -> tuple[CatalogEntry, ...]:
    """The entries of ``datasets.yaml``."""
    import yaml

    data = yaml.safe_load(DATA_FILE.read_text(encoding="utf-8"))
    return tuple(entry_from(item, DATA_FILE.name) for item in data)


def _plain(text: str | None) -> str:
    """IDC's citation HTML as one line of text."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", text or "")).split())


def idc_entry(row: Mapping[str, Any], release: int) -> CatalogEntry:
    """The catalogue entry of one IDC collection (a row of ``IdcIndex.collections``)."""
    sources = [s for s in (row.get("sources") or []) if s]
    original = [s for s in sources if s.get("source_type") == "original_data"] or sources
    licenses = sorted({s["license"]["license_short_name"] for s in original if (s.get("license") or {}).get(
        "license_short_name")})  # fmt: skip
    access = "public" if all((s.get("Access") or "Public") == "Public" for s in sources) else "registration"
    modalities = (row.get("modalities") or "").replace(",", ", ") or "see the collection"
    analyses = [s for s in sources if s.get("source_type") == "analysis_result"]
    labels = "none in the images; bring a --labels CSV keyed by PatientID or SeriesInstanceUID"
    if analyses:
        labels += f"; IDC also holds {len(analyses)} analysis result(s) (segmentations, annotations)"
    whole_slide = set(modalities.replace(" ", "").split(",")) <= {"SM", "ANN", "OT", "SEG", "SR"}
    return CatalogEntry(
        name=row["collection_id"].replace("_", "-")[:63],
        title=str(row.get("collection_name") or row["collection_id"]),
        source="idc",
        ref=row["collection_id"],
        modality=modalities + " (DICOM)",
        task=" / ".join(t for t in (row.get("cancer_types"), row.get("tumor_locations")) if t) or "imaging research",
        labels=labels,
        patients=row.get("patients") or None,
        bytes=row.get("bytes") or None,
        license="; ".join(licenses) or "see the collection page",
        citation=_plain(original[0].get("citation")) if original else "see the collection page",
        doi=(original[0].get("source_doi") if original else None) or None,
        access=access,
        how_to_access="no account: IDC's public S3 buckets" if access == "public" else "see the collection page",
        can=f"collect by patient, modality, SQL or release (--idc-version {release}); index the DICOM headers",
        cannot=(
            "tile whole-slide microscopy (SM) images for training"
            if whole_slide
            else "derive labels (the images carry none)"
        ),
        origin=f"idc v{release}",
    )


@cache
def idc_entries() -> tuple[CatalogEntry, ...]:
    """One entry per collection of the installed IDC release (none without idc-index-data)."""
    try:
        from jobs.collect.idc_index import open_index

        index = open_index()
    except UsageError:
        return ()
    return tuple(idc_entry(row, index.release) for row in index.collections())


def catalogue() -> list[CatalogEntry]:
    """Every entry, sorted by name: the reviewed ones, then IDC's that no reviewed entry replaces."""
    reviewed = reviewed_entries()
    replaced = {e.idc_collection for e in reviewed if e.idc_collection}
    names = {e.name for e in reviewed}
    generated = [e for e in idc_entries() if e.ref not in replaced and e.name not in names]
    return sorted([*reviewed, *generated], key=lambda e: e.name)


def find(name: str) -> CatalogEntry:
    """The entry called ``name``; ``UsageError`` with close names otherwise."""
    entries = {e.name: e for e in catalogue()}
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, list(entries), n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UsageError(f"no dataset {name!r} in the catalogue; {hint}see: irmsia datasets search TEXT")


def search(text: str) -> list[CatalogEntry]:
    """Entries whose fields contain every word of ``text`` (case-insensitive)."""
    words = text.lower().split()
    return [e for e in catalogue() if all(w in e.text() for w in words)]


def search_tcia(text: str, env: Mapping[str, str], client: HttpClient | None = None) -> list[dict[str, Any]]:
    """TCIA collections whose name contains ``text`` (case-insensitive)."""
    from jobs.collect.sources.tcia import NbiaApi

    api = NbiaApi(env.get("IRMSIA_TCIA_URL") or TCIA_URL, client or HttpClient(RetryPolicy(attempts=3)))
    needle = text.lower()
    return [{"source": "tcia", "ref": name, "title": name, "command":
             f"irmsia-collect --source tcia --dataset {name.lower()[:63]} --collection {name}"}
            for name in api.collections() if needle in name.lower()]  # fmt: skip


def search_kaggle(text: str, env: Mapping[str, str], client: HttpClient | None = None) -> list[dict[str, Any]]:
    """Kaggle datasets and competitions matching ``text``; ``UsageError`` without credentials."""
    from jobs.collect.sources.kaggle import KaggleDatasets

    api = KaggleDatasets(kaggle_credentials(env), env.get("IRMSIA_KAGGLE_ENDPOINT") or None,
                         client or HttpClient(RetryPolicy(attempts=3)))  # fmt: skip
    hits = [{"source": "kaggle", **hit, "command":
             f"irmsia-collect --source kaggle --dataset {hit['ref'].split('/')[-1].lower()[:63]} --ref {hit['ref']}"}
            for hit in api.search(text)]  # fmt: skip
    hits += [{"source": "kaggle (competition)", **hit, "command":
              f"irmsia-collect --source kaggle --dataset {hit['ref'][:63]} --competition {hit['ref']}"}
             for hit in api.search_competitions(text)]  # fmt: skip
    return hits
