"""Settings of the register stage: its options, declared once (see ``jobs.core.settings``).

Environment: ``IRMSIA_IMAGE`` (the container image, recorded in the metadata when set) and
``MLFLOW_TRACKING_URI`` (mirror each version into MLflow when set and mlflow is installed), besides the
common ``IRMSIA_*`` variables.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.core.paths import check_dns_label, check_name
from jobs.core.settings import StageSettings, option
from jobs.register.aliases import PROMOTE_MODES

QUANTIZE_MODES = ("none", "int8")
"""``--quantize``: fp32 files only, or an INT8 ONNX model beside them (``quantize.py``)."""


@dataclass(frozen=True, kw_only=True)
class RegisterSettings(StageSettings):
    """What one registration needs."""

    prog = "irmsia-register"
    about = "Register a trained run as a new model version."

    run_id: str = option(
        flag="--run",
        result=True,
        check=check_name,
        parameter="run_id",
        help="run id of a finished training run (runs/<run-id>/)",
    )
    cv_id: str | None = option(
        None,
        flag="--cv",
        check=check_name,
        parameter="cv_id",
        help="cross-validation of the run's settings to record (crossval/<cv-id>/, irmsia-train --aggregate-folds): "
        "per-fold metrics and mean and sd go into the ledger entry, metadata and model card; empty for none",
    )
    model_name: str = option(
        result=True,
        check=check_dns_label,
        parameter="model_name",
        help="registry name, a DNS-1123 label (registry/<model-name>/)",
    )
    promote: str = option(
        "auto",
        choices=PROMOTE_MODES,
        parameter="promote",
        help="auto: champion only if --metric beats the champion's on the same split by a paired patient "
        "bootstrap (the 95-percent interval of the difference excludes 0); always; never",
    )
    bootstrap_resamples: int = option(
        1000, minimum=100, maximum=100_000, help="patient resamples of the paired promotion test (--promote auto)"
    )
    metric: str = option(
        "auto",
        result=True,
        parameter="metric",
        help="the metrics.json key that decides promotion; auto: the task's (val_auc, or val_dice for segmentation)",
    )
    quantize: str = option(
        "none",
        choices=QUANTIZE_MODES,
        result=True,
        parameter="quantize",
        help="int8: also add an onnxruntime static-quantized INT8 ONNX model, kept only if its val metric is "
        "within --quantize-max-drop of fp32's (sizes, latencies and metrics go into the model card)",
    )
    quantize_max_drop: float = option(
        0.02,
        minimum=0.0,
        maximum=1.0,
        result=True,
        parameter="quantize_max_drop",
        help="--quantize int8: the largest drop of the val metric (--metric, or val_accuracy) from fp32 to int8 "
        "that keeps the int8 model",
    )
    description: str = option("", help="free text for the metadata and model card; generated when empty")
    image: str | None = option(
        None, flag=None, env="IRMSIA_IMAGE", help="the container image this stage runs in, recorded in the metadata"
    )
    mlflow_tracking_uri: str | None = option(
        None, flag=None, env="MLFLOW_TRACKING_URI", help="also register the version in MLflow"
    )

    def log_fields(self) -> dict[str, str | None]:
        return {"dataset": None, "run_id": self.run_id}
