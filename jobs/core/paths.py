"""The fixed paths inside a store (``raw/<dataset>/`` …), and the names allowed in them.

``raw/<dataset>/``, ``index/<dataset>/``, ``splits/<dataset>/``, ``runs/<run-id>/``, ``crossval/<cv-id>/`` (the
metrics of a cross-validation's fold runs aggregated), ``registry/<model-name>/``,
``pipeline-runs/`` (one record per local pipeline run, for ``irmsia status``), and ``shards/<stage>/<dataset>/``
(the parts of a sharded collect or index while they are gathered; removed once the dataset's output is sealed).
Every tool finds things by these names, so they are built here and nowhere else.
"""

from __future__ import annotations

import re

from jobs.core.errors import UsageError

MANIFEST_NAME = "_SUCCESS.json"
_NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_name(value: str, field: str) -> str:
    """A dataset or run name: lowercase letters, digits, '.', '_' and '-', at most 63, alphanumeric ends."""
    if not isinstance(value, str) or not _NAME.match(value):
        raise UsageError(
            f"{field} {value!r} is not a valid name: use 1-63 lowercase letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def check_dns_label(value: str, field: str) -> str:
    """A DNS-1123 label (Kubernetes object names, model names): ``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, <= 63."""
    if not isinstance(value, str) or not DNS_LABEL.match(value):
        raise UsageError(
            f"{field} {value!r} is not a DNS-1123 label: use 1-63 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit"
        )
    return value


def raw_prefix(dataset: str) -> str:
    """Where collect writes a dataset's files: ``raw/<dataset>/``."""
    return f"raw/{check_name(dataset, '--dataset')}/"


def index_prefix(dataset: str) -> str:
    """Where index writes ``index.parquet`` and ``quarantine.csv``: ``index/<dataset>/``."""
    return f"index/{check_name(dataset, '--dataset')}/"


def splits_prefix(dataset: str) -> str:
    """Where split writes train/val/test lists and statistics: ``splits/<dataset>/``."""
    return f"splits/{check_name(dataset, '--dataset')}/"


def run_prefix(run_id: str) -> str:
    """Where train writes one run's checkpoints, models and metrics: ``runs/<run-id>/``."""
    return f"runs/{check_name(run_id, '--run-id')}/"


def crossval_prefix(cv_id: str) -> str:
    """Where ``irmsia-train --aggregate-folds`` seals ``cv.json`` (the fold runs' mean ± sd): ``crossval/<cv-id>/``."""
    return f"crossval/{check_name(cv_id, '--cv')}/"


def registry_prefix(model_name: str) -> str:
    """Where register keeps a model's versions and ledger: ``registry/<model-name>/``."""
    return f"registry/{check_dns_label(model_name, '--model-name')}/"


SHARDS = "shards/"
"""Where sharded runs keep their parts (``jobs.core.shards``) until the gather step has sealed the stage's output."""


def shards_prefix(stage: str, dataset: str) -> str:
    """Every part of one sharded stage of one dataset: ``shards/<stage>/<dataset>/`` (removed after the gather)."""
    return f"{SHARDS}{stage}/{check_name(dataset, '--dataset')}/"


PIPELINE_RUNS = "pipeline-runs/"
"""Where ``irmsia run`` (and the Python API) records each pipeline run it executed: one JSON object per run."""


def pipeline_run_key(started_at: str, workflow_id: str) -> str:
    """``pipeline-runs/<UTC start, sortable>-<workflow id>.json``: a listing returns the runs in start order."""
    stamp = re.sub(r"[^0-9TZ]", "", started_at)
    return f"{PIPELINE_RUNS}{stamp}-{check_name(workflow_id, 'workflow id')}.json"


def manifest_key(prefix: str) -> str:
    """The ``_SUCCESS.json`` key of a stage output prefix."""
    if not prefix.endswith("/"):
        raise ValueError(f"stage prefix must end with '/': {prefix!r}")
    return prefix + MANIFEST_NAME
