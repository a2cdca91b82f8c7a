"""Argo custom metrics on each stage template, exported by the workflow controller (``argo_workflows_`` prefix).

Every stage template emits, when it completes: a counter of results by status, and a gauge of its duration; the
XX
result JSON). They complement the metrics the stages push themselves (``jobs.core.metrics``): these exist even
when a pod never started or was killed, because the controller, not the pod, emits them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hera.workflows.models import Counter, Gauge, MetricLabel, Metrics, Prometheus

from pipeline.dag import StageSpec

ARGO_PREFIX = "argo_workflows_"
"""What the workflow controller puts before a custom metric's name."""


@dataclass(frozen=True, kw_only=True)
class ArgoMetric:
    """One custom metric of a template."""

    name: str
    """Name without the controller's prefix."""
    help: str
    """Help text; Argo requires the same text for every use of a name."""
    kind: Literal["counter", "gauge"]
    value: str
    """A literal or an Argo variable (``{{duration}}``) or expression (``{{=…}}``)."""
    labels: tuple[tuple[str, str], ...] = ()
    when: str | None = None
    """Emit only when this Argo condition holds."""

    def __post_init__(self) -> None:
        if not self.name.replace("_", "").isalnum() or not self.name.startswith("irmsia_"):
            raise ValueError(f"Argo metric {self.name!r}: use irmsia_ and letters, digits and '_' only")

    @property
    def exported_name(self) -> str:
        """The name Prometheus sees: prefixed, and counters with ``_total`` (Argo 3.6+ exports via OpenTelemetry)."""
        return ARGO_PREFIX + self.name + ("_total" if self.kind == "counter" else "")

    def build(self) -> Prometheus:
        labels = [MetricLabel(key=k, value=v) for k, v in self.labels] or None
        if self.kind == "counter":
            return Prometheus(
                name=self.name, help=self.help, labels=labels, when=self.when, counter=Counter(value=self.value)
            )
        return Prometheus(
            name=self.name, help=self.help, labels=labels, when=self.when, gauge=Gauge(value=self.value, realtime=False)
        )


def stage_metrics(stage: StageSpec, result_output: str = "result") -> list[ArgoMetric]:
    """The custom metrics of ``stage``'s template; ``result_output`` names its result JSON output parameter."""
    metrics = [
        ArgoMetric(
            name="irmsia_stage_results",
            help="IRMSIA stage completions by status (Succeeded, Failed, Error)",
            kind="counter",
            value="1",
            labels=(("stage", stage.stage), ("status", "{{status}}")),
        ),
        ArgoMetric(
            name="irmsia_stage_last_duration_seconds",
            help="Duration of the last completion of an IRMSIA stage, seconds",
            kind="gauge",
            value="{{duration}}",
            labels=(("stage", stage.stage), ("status", "{{status}}")),
        ),
    ]
    metrics += [
        ArgoMetric(
            name=f"irmsia_{stage.stage}_final_validation_metric",
            help=f"Final validation metric of the last successful IRMSIA {stage.stage} run",
            kind="gauge",
            # Argo substitutes the value before it evaluates `when`, also for a failed run: read it so that a
            # result without the metric ("{}", the output's default) gives 0 instead of a MetricsError.
            value=f"{{{{=fromJSON(outputs.parameters.{result_output})?.summary?.{metric} ?? 0}}}}",
            labels=(("metric", metric),),
            when="{{status}} == Succeeded",
        )
        for metric in stage.exported_metrics
    ]
    return metrics


def template_metrics(stage: StageSpec, result_output: str) -> Metrics:
    """``stage``'s custom metrics as the Argo model a template carries."""
    return Metrics(prometheus=[m.build() for m in stage_metrics(stage, result_output)])


def exported_names(stages: tuple[StageSpec, ...]) -> set[str]:
    """Every name the controller exports for these stages' custom metrics (for dashboards and their tests)."""
    return {m.exported_name for stage in stages for m in stage_metrics(stage)}
