"""Settings of the register stage, parsed and validated once from flags and the environment.

Environment: ``IRMSIA_IMAGE`` (the container image, recorded in the metadata when set) and
``MLFLOW_TRACKING_URI`` (mirror each version into MLflow when set and mlflow is installed), besides the
common ``IRMSIA_*`` variables.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from jobs.core.errors import UsageError
from jobs.core.layout import check_dns_label, check_name
from jobs.core.settings import CommonSettings, StageArgumentParser, add_common_arguments, common_settings
from jobs.register.aliases import PROMOTE_MODES


@dataclass(frozen=True, kw_only=True)
class RegisterSettings:
    """What one registration needs."""

    common: CommonSettings
    run_id: str
    """The training run to register (``runs/<run-id>/``)."""
    model_name: str
    """Registry name, a DNS-1123 label (``registry/<model-name>/``)."""
    promote: str = "auto"
    """``auto``: champion only if ``metric`` beats the champion's on the same split; ``always``; ``never``."""
    metric: str = "val_auc"
    """The flat metric (``metrics.json`` key) that decides promotion."""
    description: str = ""
    """Free text for the metadata and model card; generated when empty."""
    image: str | None = None
    """The container image this stage runs in, when known (``IRMSIA_IMAGE``)."""
    mlflow_tracking_uri: str | None = None
    """``MLFLOW_TRACKING_URI``: also register the version in MLflow."""

    def __post_init__(self) -> None:
        check_name(self.run_id, "--run")
        check_dns_label(self.model_name, "--model-name")
        if self.promote not in PROMOTE_MODES:
            raise UsageError(f"--promote {self.promote!r}: use one of {', '.join(PROMOTE_MODES)}")
        if not self.metric:
            raise UsageError("--metric is empty: name a metrics.json key such as val_auc")


def build_parser() -> argparse.ArgumentParser:
    parser = StageArgumentParser(prog="irmsia-register", description="Register a trained run as a new model version.")
    parser.add_argument("--run", required=True, help="run id of a finished training run (runs/<run-id>/)")
    parser.add_argument("--model-name", required=True, help="registry name, a DNS-1123 label")
    parser.add_argument("--promote", default="auto", help="auto (default), always or never")
    parser.add_argument("--metric", default="val_auc", help="metrics.json key that decides promotion")
    parser.add_argument("--description", default="", help="description for the metadata and model card")
    add_common_arguments(parser)
    return parser


def parse_settings(argv: Sequence[str], env: Mapping[str, str]) -> RegisterSettings:
    """Flags first, then the environment; an empty flag value means "not set" (Argo passes every flag)."""
    args = build_parser().parse_args(list(argv))
    return RegisterSettings(
        common=common_settings(args, env),
        run_id=args.run,
        model_name=args.model_name,
        promote=args.promote or "auto",
        metric=args.metric or "val_auc",
        description=args.description or "",
        image=env.get("IRMSIA_IMAGE") or None,
        mlflow_tracking_uri=env.get("MLFLOW_TRACKING_URI") or None,
    )
