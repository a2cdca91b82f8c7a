"""Validate Kubeflow Training Operator objects against the operator's own generated API models, strictly.

The PyPI package ``kubeflow-training`` (the operator's Python SDK) ships the models generated from its OpenAPI
spec (``kubeflow.training.models.KubeflowOrgV1PyTorchJob`` …, each with ``openapi_types`` and ``attribute_map``;
pod templates are the ``kubernetes`` client's ``V1PodTemplateSpec`` models). ``kubeflow_errors`` walks an object
through them as strict deserialisation would: a field the model does not declare is an error (the API server's
strict field validation), so is a value of the wrong type, and the object is then built through the SDK's own
deserialiser, whose models refuse a missing required field. Tests skip when the package is not installed.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

try:
    import kubernetes.client.models as k8s_models
    from kubeflow.training import models as kubeflow_models
    from kubeflow.training.api_client import ApiClient
except ImportError:  # pragma: no cover - the dev extra installs it
    kubeflow_models = None

AVAILABLE = kubeflow_models is not None
SKIP_REASON = "kubeflow-training (the Training Operator's SDK and API models) is not installed"
_PRIMITIVES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float)}
_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict\(([^,]+), (.+)\)$")


def _model(name: str) -> Any:
    for module in (kubeflow_models, k8s_models):
        if hasattr(module, name):
            return getattr(module, name)
    raise KeyError(name)


def _check(value: Any, kind: str, path: str, errors: list[str]) -> None:
    if kind in _PRIMITIVES:
        if not isinstance(value, _PRIMITIVES[kind]) or (kind != "bool" and isinstance(value, bool)):
            errors.append(f"{path}: must be of type {kind}, got {type(value).__name__}")
    elif kind == "object":
        return
    elif kind in ("datetime", "date"):
        if not isinstance(value, str | datetime.date):
            errors.append(f"{path}: must be a timestamp")
    elif match := _LIST.match(kind):
        if not isinstance(value, list):
            errors.append(f"{path}: must be a list")
            return
        for i, item in enumerate(value):
            _check(item, match.group(1), f"{path}[{i}]", errors)
    elif match := _DICT.match(kind):
        if not isinstance(value, dict):
            errors.append(f"{path}: must be a mapping")
            return
        for key, item in value.items():
            _check(item, match.group(2), f"{path}.{key}", errors)
    else:
        model = _model(kind)
        if not isinstance(value, dict):
            errors.append(f"{path}: must be an object ({kind})")
            return
        by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
        for key, item in value.items():
            if key not in by_json:
                errors.append(f'{path}: unknown field "{key}" ({kind})')
            else:
                _check(item, model.openapi_types[by_json[key]], f"{path}.{key}", errors)


def kubeflow_errors(obj: dict[str, Any], kind: str = "KubeflowOrgV1PyTorchJob") -> list[str]:
    """What the Training Operator's API would refuse in ``obj`` (``[]``: nothing)."""
    errors: list[str] = []
    _check(obj, kind, obj.get("kind", kind), errors)
    if not errors:
        try:
            ApiClient()._ApiClient__deserialize(obj, kind)  # required fields and enums of the generated models
        except (ValueError, TypeError) as exc:
            errors.append(f"{kind}: {exc}")
    return errors
