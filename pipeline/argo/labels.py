"""The ``app.kubernetes.io/*`` labels of generated objects and of the stage pods (NetworkPolicy selects on them).

Hera renders the objects of the Helm release named ``RELEASE`` (the chart's default install, the kustomize
overlays); the chart puts ``.Release.Name`` where these use ``RELEASE``, so two releases fit in one namespace.
"""

from __future__ import annotations

PART_OF = "irmsia"
RELEASE = "irmsia"
"""The release (object name prefix) Hera's objects belong to: ``irmsia-pipeline``, ``irmsia-<schedule>``."""
POD_LABELS = {
    "app.kubernetes.io/name": "irmsia-pipeline",
    "app.kubernetes.io/instance": RELEASE,
    "app.kubernetes.io/part-of": PART_OF,
}
"""Every stage pod carries these; the release's NetworkPolicies select them."""
ARTIFACT_REPOSITORIES = f"{RELEASE}-artifact-repositories"
"""The release's ConfigMap of Argo artifact repositories (the WorkflowTemplate's ``artifactRepositoryRef``)."""
ARTIFACT_REPOSITORY_KEY = "default"


def object_labels(name: str) -> dict[str, str]:
    """Labels of a generated Argo object."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}
