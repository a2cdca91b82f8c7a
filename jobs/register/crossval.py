"""The cross-validation a registered version records: ``crossval/<cv-id>/cv.json`` of its training configuration.

``irmsia-register --cv <cv-id>`` (the pipeline hands on ``train-cv``'s id) reads the sealed aggregate through its
manifest and checks that its fold runs were trained with the registered run's settings (the aggregate's
parameters are the fold runs' result parameters without the fold, so each must equal the run's own). The record,
the fold runs with their metrics and each metric's mean, sd, ``n`` and per-fold values, goes into the ledger
entry, the metadata and the model card: the folds estimate how well this configuration trains; the registered
model is the run itself. ``--cv`` empty (a split without folds) records none. Imports no torch.
"""

from __future__ import annotations

import json
from typing import Any

from jobs.core.errors import DataError, UsageError
from jobs.core.manifest import Manifest, read_manifest, read_output
from jobs.core.paths import MANIFEST_NAME, crossval_prefix
from jobs.core.store import Store

CV_FILE = "cv.json"
IGNORED_PARAMS = ("folds",)
"""The aggregate's parameters a training run does not have."""


def load_cross_validation(store: Store, cv_id: str | None, run: Manifest) -> tuple[Manifest, dict[str, Any]] | None:
    """The sealed aggregate ``cv_id`` and its record for the ledger, checked against the run's manifest ``run``;
    ``None`` without a cv id."""
    if not cv_id:
        return None
    prefix = crossval_prefix(cv_id)
    manifest = read_manifest(store, prefix)
    if manifest is None:
        raise DataError(f"--cv {cv_id!r}: {store.uri}/{prefix} has no {MANIFEST_NAME}; run irmsia-train "
                        "--aggregate-folds with the run's settings first, or drop --cv")  # fmt: skip
    if manifest.stage != "train" or not any(o.key == prefix + CV_FILE for o in manifest.outputs):
        raise DataError(f"--cv {cv_id!r}: {prefix} holds no {CV_FILE}; check the cv id")
    differs = sorted(k for k, v in manifest.params.items() if k not in IGNORED_PARAMS and run.params.get(k) != v)
    if differs:
        raise UsageError(f"--cv {cv_id!r}: its folds were trained with other settings than {run.prefix} (differing: "
                         f"{', '.join(differs)}); register the cross-validation of this run's settings")  # fmt: skip
    cv = json.loads(read_output(store, manifest, CV_FILE))  # verified against its manifest
    record = {
        "cv_id": cv_id,
        "folds": cv["folds"],
        "manifest_sha256": manifest.content_sha256,
        "runs": [{"fold": r["fold"], "run_id": r["run_id"], "metrics": r["metrics"]} for r in cv["runs"]],
        "metrics": cv["metrics"],
    }
    return manifest, record
