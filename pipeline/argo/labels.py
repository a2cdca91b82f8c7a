"""The ``app.kubernetes.io/*`` labels of generated objects and of the stage pods (NetworkPolicy selects on them)."""

from __future__ import annotations

PART_OF = "irmsia"
POD_LABELS = {"app.kubernetes.io/name": "irmsia-pipeline", "app.kubernetes.io/part-of": PART_OF}
"""Every stage pod carries these; the NetworkPolicy in ``manifests/base`` selects them."""


def object_labels(name: str) -> dict[str, str]:
    """Labels of a generated Argo object."""
    return {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": PART_OF}
