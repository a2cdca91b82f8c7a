"""Where a model's registry lives in the store: version bundles, version claims and the ledger.

``registry/<name>/<version>/``         one MONAI-bundle-shaped version, sealed by its ``_SUCCESS.json``
``registry/<name>/claims/<n>.json``    the exclusive claim on version number ``n`` (created with put_if_absent)
``registry/<name>/ledger/<n>.json``    ledger entry ``n`` of the hash chain (created with put_if_absent): a
                                       registration or an alias move

Nothing else belongs there: aliases (``champion``, ``candidate``) have no objects of their own, their values are
the ledger's alias moves (``aliases.py``), and ``verify`` reports any other object (an ``aliases/`` folder of an
older layout, or a forgery) as a break. Sequence numbers are zero-padded so a store listing returns them in order.
This module imports no torch.
"""

from __future__ import annotations

import re

from jobs.core.errors import UsageError
from jobs.core.paths import manifest_key, registry_prefix

ALIASES = ("champion", "candidate")
SEQ_WIDTH = 8
# Bundle files, relative to the version folder (MONAI bundle layout).
MODEL_PT = "models/model.pt"
MODEL_TS = "models/model.ts"
MODEL_ONNX = "models/model.onnx"
MODEL_INT8 = "models/model_int8.onnx"
"""The static-quantized INT8 ONNX graph (``--quantize int8``), present only when it passed the val check."""
METADATA = "configs/metadata.json"
MODEL_CARD = "docs/README.md"
CONFUSION_MATRIX = "docs/confusion_matrix.png"
REPORT = "docs/report.html"
PREDICTIONS = "eval/predictions.json"
"""The run's per-image val/test probabilities: what the paired promotion test compares a challenger with."""
TASK_PICTURES = ("confusion_matrix.png", "finding_auc.png", "overlays.png")
"""The run's task picture (classification, multilabel, segmentation), copied into ``docs/`` under its name."""
MODEL_FILES = (MODEL_PT, MODEL_TS, MODEL_ONNX, MODEL_INT8)
_SEQ_FILE = re.compile(r"^(\d+)\.json$")


def version_prefix(name: str, version: int) -> str:
    """``registry/<name>/<version>/``: the folder one version's bundle lives in."""
    if version < 1:
        raise ValueError(f"versions start at 1, got {version}")
    return f"{registry_prefix(name)}{version}/"


def version_manifest_key(name: str, version: int) -> str:
    """The ``_SUCCESS.json`` that seals one version's bundle."""
    return manifest_key(version_prefix(name, version))


def version_of_folder(name: str, key: str) -> int | None:
    """The version whose bundle folder ``key`` is in (``registry/<name>/<n>/...``), else ``None``."""
    prefix = registry_prefix(name)
    head, sep, _ = key[len(prefix) :].partition("/") if key.startswith(prefix) else ("", "", "")
    return int(head) if sep and head.isdigit() and head == str(int(head)) and int(head) > 0 else None


def claims_prefix(name: str) -> str:
    return f"{registry_prefix(name)}claims/"


def ledger_prefix(name: str) -> str:
    return f"{registry_prefix(name)}ledger/"


def seq_key(prefix: str, seq: int) -> str:
    """``<prefix><seq zero-padded>.json``."""
    return f"{prefix}{seq:0{SEQ_WIDTH}d}.json"


def seq_of(key: str, prefix: str) -> int | None:
    """The sequence number in ``key`` under ``prefix``, or ``None`` for anything else found there."""
    match = _SEQ_FILE.match(key[len(prefix) :]) if key.startswith(prefix) else None
    return int(match.group(1)) if match else None


def check_alias(alias: str) -> str:
    """``alias`` if it is one the registry keeps, else a ``UsageError`` naming the choices."""
    if alias not in ALIASES:
        raise UsageError(f"alias {alias!r} is not known: use one of {', '.join(ALIASES)}")
    return alias
