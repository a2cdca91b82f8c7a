"""Every Kubernetes object the project ships: the YAML under ``manifests/`` and the Helm chart's renders."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from tests.support.argo_schema import REPO_ROOT

MANIFESTS = REPO_ROOT / "manifests"
CHART = REPO_ROOT / "helm/irmsia"
KUBERNETES_VERSION = "1.35.0"
"""The Kubernetes release the strict schema checks target."""


def is_object(doc: Any) -> bool:
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc and doc["kind"] != "Kustomization"


def load_objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if is_object(d)]


def manifest_objects() -> list[tuple[str, dict[str, Any]]]:
    """``(file:kind/name, object)`` for every object in ``manifests/`` (overlay patches are whole objects too)."""
    return [
        (f"{path.relative_to(REPO_ROOT)}:{obj['kind']}/{obj['metadata']['name']}", obj)
        for path in sorted(MANIFESTS.rglob("*.yaml"))
        for obj in load_objects(path)
    ]


def ci_values_files() -> list[Path]:
    return sorted((CHART / "ci").glob("*-values.yaml"))


@functools.cache
def render_chart(values_file: Path | None = None, namespace: str = "irmsia") -> tuple[tuple[str, dict[str, Any]], ...]:
    """``(template:kind/name, object)`` for every object the chart renders with ``values_file``."""
    import helm_python as helm

    values = yaml.safe_load(values_file.read_text(encoding="utf-8")) if values_file else None
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values=values, name="irmsia", namespace=namespace, is_install=True)
    return tuple(
        (f"{template}:{obj['kind']}/{obj['metadata']['name']}", obj)
        for template, text in sorted(rendered.items())
        if template.endswith((".yaml", ".yml"))
        for obj in yaml.safe_load_all(text)
        if is_object(obj)
    )


def chart_objects() -> list[tuple[str, dict[str, Any]]]:
    """Objects of every ``ci/*-values.yaml`` scenario, named ``scenario:template:kind/name``."""
    return [(f"{f.stem}:{where}", obj) for f in ci_values_files() for where, obj in render_chart(f)]
