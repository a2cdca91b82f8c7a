"""Collect a dataset from Python, one class per source (``TCIACollector().download_collection("COVID-19-AR",
max_patients=10, modality="CT")``), each running the collect stage with that source's options.

Every method takes the source's own options by name (see ``irmsia-collect --help``: ``retries``, ``timeout``,
``max_extract_bytes``, ``workers``…) besides the ones it names, and ``force=True`` to recollect a cached dataset.
Where no ``dataset`` is given the store folder is named after the source's reference (``COVID-19-AR`` ->
``raw/covid-19-ar/``), never ``demo``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.core.errors import UsageError
from jobs.core.paths import check_name
from pipeline.api.client import StoreClient
from pipeline.api.results import CollectResult


def dataset_name_for(ref: str) -> str:
    """A dataset name from a source reference: the last path part, lowercase, other characters as ``-``
    (``paultimothymooney/chest-xray-pneumonia`` -> ``chest-xray-pneumonia``, ``COVID-19-AR`` -> ``covid-19-ar``)."""
    tail = ref.rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^a-z0-9._-]+", "-", tail.lower())[:63].strip("-._")
    if not name:
        raise UsageError(f"cannot name a dataset after {ref!r}; pass dataset='name'")
    return check_name(name, "dataset")


class _Collector(StoreClient):
    source: str = ""

    def _collect(self, dataset: str, *, force: bool = False, **options: Any) -> CollectResult:
        check_name(dataset, "dataset")
        return self._run("collect", CollectResult, force=force, extra={"dataset": dataset}, source=self.source,
                         dataset=dataset, **options)  # fmt: skip


class DemoCollector(_Collector):
    """The built-in synthetic chest X-ray DICOM dataset (two classes, seeded, no network)."""

    source = "demo"

    def generate(self, dataset: str = "demo", *, patients: int = 48, seed: int = 42, **options: Any) -> CollectResult:
        """Write ``patients`` synthetic patients (4-2000) into ``raw/<dataset>/``; byte-identical per seed."""
        return self._collect(dataset, patients=patients, seed=seed, **options)


class TCIACollector(_Collector):
    """The Cancer Imaging Archive (NBIA v4 API, no login for public collections)."""

    source = "tcia"

    def download_collection(
        self,
        collection: str,
        *,
        dataset: str | None = None,
        max_patients: int | None = None,
        modality: str | None = None,
        body_part: str | None = None,
        patients: Sequence[str] | None = None,
        **options: Any,
    ) -> CollectResult:
        """Download the series of ``collection`` (optionally only ``modality``, ``body_part``, some ``patients``,
        the first ``max_patients``) into ``raw/<dataset>/``."""
        return self._collect(dataset or dataset_name_for(collection), collection=collection,
                             max_patients=max_patients, modality=modality, body_part=body_part,
                             patient=tuple(patients) if patients else None, **options)  # fmt: skip

    def download_manifest(self, manifest: str | Path, *, dataset: str, **options: Any) -> CollectResult:
        """Download the series listed in a ``.tcia`` manifest file."""
        return self._collect(dataset, manifest=manifest, **options)


class KaggleCollector(_Collector):
    """Kaggle datasets (credentials: ``KAGGLE_API_TOKEN``, ``KAGGLE_USERNAME`` + ``KAGGLE_KEY`` or kaggle.json)."""

    source = "kaggle"

    def download(self, ref: str, *, dataset: str | None = None, **options: Any) -> CollectResult:
        """Download and unpack Kaggle dataset ``owner/slug`` into ``raw/<dataset>/``."""
        return self._collect(dataset or dataset_name_for(ref), ref=ref, **options)


class NIHCollector(_Collector):
    """NIH ChestX-ray14: its label CSV and split lists from a local folder, the image archives from NIH."""

    source = "nih"

    def download(self, path: str | Path, *, dataset: str = "nih-chestxray14", archives: Sequence[int] | None = None,
                 **options: Any) -> CollectResult:  # fmt: skip
        """Collect the ``archives`` (1-12, default all) with the CSVs in ``path`` into ``raw/<dataset>/``."""
        return self._collect(dataset, path=path, archives=tuple(archives) if archives else None, **options)


class URLCollector(_Collector):
    """Any file or archive over HTTP(S); a URL's credentials never reach a command line, log or manifest."""

    source = "url"

    def download(self, url: str, *, dataset: str, sha256: str | None = None, **options: Any) -> CollectResult:
        """Download ``url`` (unpacking an archive) into ``raw/<dataset>/``, checked against ``sha256`` if given."""
        return self._collect(dataset, url=url, sha256=sha256, **options)


class LocalCollector(_Collector):
    """A folder tree on this machine (or a mounted volume)."""

    source = "local"

    def copy_folder(self, path: str | Path, *, dataset: str, symlinks: str = "inside", **options: Any) -> CollectResult:
        """Copy the images under ``path`` into ``raw/<dataset>/`` (hidden files skipped, nothing from outside)."""
        return self._collect(dataset, path=path, symlinks=symlinks, **options)


COLLECTORS: dict[str, type[_Collector]] = {
    c.source: c for c in (DemoCollector, TCIACollector, KaggleCollector, NIHCollector, URLCollector, LocalCollector)
}
"""Source name -> its collector class."""
