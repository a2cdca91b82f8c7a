"""Optional mirror of each registered version into MLflow (``MLFLOW_TRACKING_URI`` set, ``mlflow`` installed).

The S3 registry stays the source of truth: MLflow gets the same metadata as tags and a source URI pointing at
the bundle, and a failure here is logged, never fatal (the version is already committed to the ledger).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from typing import Any

from jobs.core.store import Store
from jobs.register.keys import version_prefix

log = logging.getLogger("irmsia.register")
MAX_TAG = 5000  # MLflow's limit on a tag value


def mlflow_available() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def metadata_tags(meta: dict[str, Any], alias: str) -> dict[str, str]:
    """Flat string tags: the MONAI keys, our metrics, file hashes and lineage, and the alias."""
    ours = meta["irmsia"]
    tags = {
        "irmsia.registry_version": str(ours["registry_version"]),
        "irmsia.alias": alias,
        "irmsia.run_id": ours["run_id"],
        "irmsia.code_version": str(ours["code_version"]),
        "monai_version": str(meta.get("monai_version")),
        "pytorch_version": str(meta.get("pytorch_version")),
        "task": meta["task"],
    }
    tags.update({f"metric.{k}": repr(v) for k, v in ours["metrics"].items()})
    tags.update({f"sha256.{k}": v for k, v in ours["model_files"].items()})
    tags.update({f"lineage.{k}": json.dumps(v) for k, v in ours["lineage"].items() if v not in (None, [], {})})
    return {k: v[:MAX_TAG] for k, v in tags.items()}


def sync_version(tracking_uri: str, store: Store, name: str, version: int, meta: dict[str, Any], alias: str) -> bool:
    """Register ``version`` in MLflow's model registry; ``False`` (and a warning) when skipped or failed."""
    if not mlflow_available():
        log.warning("MLFLOW_TRACKING_URI is set but mlflow is not installed; skipping the MLflow mirror")
        return False
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            client.get_registered_model(name)
        except Exception:
            client.create_registered_model(name, description=meta["task"])
        source = f"{store.uri}/{version_prefix(name, version)}models"
        mv = client.create_model_version(name, source, tags=metadata_tags(meta, alias), description=meta["description"])
        if alias == "champion":
            client.set_registered_model_alias(name, "champion", mv.version)
        log.info("mirrored %s v%d into MLflow as version %s", name, version, mv.version)
        return True
    except Exception as exc:  # the ledger already committed the version; MLflow is a convenience copy
        log.warning("could not mirror %s v%d into MLflow: %s", name, version, exc)
        return False
