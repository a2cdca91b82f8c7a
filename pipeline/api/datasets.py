"""Manage datasets from Python: scan and index, split, merge, statistics, export (the seed's ``DatasetManager``).

``scan_directory`` is the index stage, ``create_train_val_test_split`` and ``merge_datasets`` the split stage;
``get_dataset_statistics`` and ``export`` read the sealed outputs through their manifests (every byte verified
against the SHA-256 the manifest records). ``collect`` runs any collect source by name.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.core.errors import DataError
from jobs.core.manifest import fetch_output, read_output, require_manifest
from jobs.core.paths import check_name, index_prefix, splits_prefix
from pipeline.api.client import StoreClient
from pipeline.api.results import CollectResult, DatasetStatistics, IndexResult, SplitResult
from pipeline.status import DatasetStatus, datasets

EXPORTS = ("train.csv", "val.csv", "test.csv", "train.txt", "val.txt", "test.txt", "datalist.json", "stats.json")
"""What ``export`` copies out of ``splits/<dataset>/``."""


class DatasetManager(StoreClient):
    """The datasets of one store."""

    def collect(self, source: str, dataset: str, *, force: bool = False, **options: Any) -> CollectResult:
        """Collect ``dataset`` from ``source`` (demo, local, url, tcia, kaggle, nih…) with that source's options."""
        return self._run("collect", CollectResult, force=force, extra={"dataset": dataset}, source=source,
                         dataset=dataset, **options)  # fmt: skip

    def scan_directory(
        self,
        dataset: str,
        *,
        layout: str | None = None,
        labels: str | Path | None = None,
        verify_pixels: bool | None = None,
        force: bool = False,
        **options: Any,
    ) -> IndexResult:
        """Index the collected ``raw/<dataset>/``: formats by content, DICOM headers, labels from the layout (or a
        ``labels`` CSV), duplicates and unusable files quarantined."""
        return self._run("index", IndexResult, force=force, extra={"dataset": dataset}, dataset=dataset,
                         layout=layout, labels=labels, verify_pixels=verify_pixels, **options)  # fmt: skip

    def create_train_val_test_split(
        self,
        dataset: str,
        *,
        ratios: Sequence[float] = (0.7, 0.15, 0.15),
        seed: int = 42,
        force: bool = False,
        **options: Any,
    ) -> SplitResult:
        """Split the indexed ``dataset`` by patient, stratified by label (``split_from="official"`` keeps the
        dataset's own split); byte-identical for the same seed."""
        return self._run("split", SplitResult, force=force, extra={"dataset": dataset}, dataset=dataset,
                         ratios=tuple(ratios), seed=seed, **options)  # fmt: skip

    def merge_datasets(self, datasets: Sequence[str], into: str, *, ratios: Sequence[float] = (0.7, 0.15, 0.15),
                       seed: int = 42, force: bool = False, **options: Any) -> SplitResult:  # fmt: skip
        """Combine the indexed ``datasets`` into one split named ``into`` (patients kept apart per dataset)."""
        return self._run("split", SplitResult, force=force, extra={"dataset": into}, dataset=into,
                         merge=tuple(datasets), ratios=tuple(ratios), seed=seed, **options)  # fmt: skip

    def get_dataset_statistics(self, dataset: str) -> DatasetStatistics:
        """Counts of the sealed index (images, patients, classes, formats, quarantine) and, when the dataset is
        split, its ``stats.json``."""
        store = self.store
        index = require_manifest(store, index_prefix(check_name(dataset, "dataset")), "index")
        s = index.summary
        split = store.exists(splits_prefix(dataset) + "_SUCCESS.json")
        stats = None
        if split:
            manifest = require_manifest(store, splits_prefix(dataset), "split")
            stats = json.loads(read_output(store, manifest, "stats.json"))
        return DatasetStatistics(dataset=dataset, images=int(s.get("rows", 0)), patients=int(s.get("patients", 0)),
                                 classes=dict(s.get("per_class", {})), quarantined=int(s.get("quarantined", 0)),
                                 formats=dict(s.get("per_format", {})), modalities=dict(s.get("per_modality", {})),
                                 splits=stats)  # fmt: skip

    def export(self, dataset: str, folder: str | Path, names: Sequence[str] = EXPORTS) -> list[Path]:
        """Copy the split's lists (``train.csv``…, ``datalist.json``, ``stats.json``) into ``folder``, each
        checked against its manifest; returns the files written."""
        store = self.store
        manifest = require_manifest(store, splits_prefix(check_name(dataset, "dataset")), "split")
        listed = {o.key[len(manifest.prefix) :] for o in manifest.outputs}
        if missing := [n for n in names if n not in listed]:
            raise DataError(f"{manifest.prefix} has no {', '.join(missing)}; it holds {', '.join(sorted(listed))}")
        return [fetch_output(store, manifest, name, Path(folder) / name) for name in names]

    def list_datasets(self) -> list[DatasetStatus]:
        """Every dataset in the store and its sealed stages."""
        return datasets(self.store)
