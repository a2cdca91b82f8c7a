"""Every Kubernetes object the project ships: the kustomize overlays as ``kubectl kustomize`` builds them, the
optional monitoring objects, and the Helm chart's renders of each ``ci/*-values.yaml`` scenario."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from tests.support.argo_schema import REPO_ROOT
from tests.support.kubectl import kustomize

MANIFESTS = REPO_ROOT / "manifests"
CHART = REPO_ROOT / "helm/irmsia"
OVERLAYS = sorted(p.parent for p in (MANIFESTS / "overlays").glob("*/kustomization.yaml"))
KUSTOMIZATIONS = sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml"))
KUBERNETES_VERSIONS = ("1.33.0", "1.35.0")
"""The Kubernetes releases the strict schema checks target."""
KUBERNETES_VERSION = KUBERNETES_VERSIONS[-1]
THIRD_PARTY_GROUPS = ("monitoring.coreos.com/",)
"""Custom resources whose CRDs are not available here (prometheus-operator's): checked on paper only."""


def is_object(doc: Any) -> bool:
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc and doc["kind"] != "Kustomization"


def load_objects(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if is_object(d)]


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@functools.cache
def built_objects(folder: Path) -> tuple[dict[str, Any], ...]:
    """What ``kubectl kustomize folder`` builds (a real kubectl: see tests/support/kubectl.py)."""
    return tuple(kustomize(folder))


def kustomize_objects() -> list[tuple[str, dict[str, Any]]]:
    """``(folder:kind/name, object)`` for every object every kustomization builds."""
    return [
        (f"{folder.relative_to(MANIFESTS)}:{name_of(obj)}", obj)
        for folder in KUSTOMIZATIONS
        for obj in built_objects(folder)
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
        (f"{template}:{name_of(obj)}", obj)
        for template, text in sorted(rendered.items())
        if template.endswith((".yaml", ".yml"))
        for obj in yaml.safe_load_all(text)
        if is_object(obj)
    )


def chart_objects() -> list[tuple[str, dict[str, Any]]]:
    """Objects of every ``ci/*-values.yaml`` scenario, named ``scenario:template:kind/name``."""
    return [(f"{f.stem}:{where}", obj) for f in ci_values_files() for where, obj in render_chart(f)]
