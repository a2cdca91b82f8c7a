"""Validate Argo objects as the API server does: against the openAPIV3 schemas of Argo v4.1.2's full CRDs.

The CRDs live outside the project, in ``../shared/argo/v4.1.2/crds`` (``IRMSIA_ARGO_DIR`` points elsewhere);
tests that need them skip when the folder is absent. Validation follows the API server's structural-schema rules
with strict field validation (``kubectl apply --validate=strict`` and the default ``Strict`` of server-side apply):
a field the schema does not declare is an error, except under ``x-kubernetes-preserve-unknown-fields``;
``x-kubernetes-int-or-string`` accepts an integer or a string; ``metadata`` is checked as an ObjectMeta.
CEL rules (``x-kubernetes-validations``) are not evaluated.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
ARGO_VERSION = "v4.1.2"
ARGO_DIR = Path(os.environ.get("IRMSIA_ARGO_DIR") or REPO_ROOT.parent / "shared/argo" / ARGO_VERSION)
"""Argo's released CRDs, quick-start install and swagger.json (see its README.md)."""
CRD_DIR = ARGO_DIR / "crds"
ARGO_SCHEMA = CRD_DIR
"""What the schema tests need (kept under its old name for their ``skipif``)."""
SKIP_REASON = f"Argo {ARGO_VERSION} CRDs not found at {CRD_DIR}"

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_OBJECT_META = {"name", "generateName", "namespace", "labels", "annotations", "finalizers", "ownerReferences",
                "resourceVersion", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                "generation", "managedFields", "selfLink"}  # fmt: skip
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind)`` -> openAPIV3Schema of every served version of every CRD in ``CRD_DIR``."""
    schemas = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.load(path.read_text(encoding="utf-8"), Loader=_LOADER)
        if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
            continue
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schemas[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    return schemas


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def _validate(value: Any, schema: dict[str, Any], path: str, errors: list[str]) -> None:
    if value is None:
        if not schema.get("nullable"):
            errors.append(f"{path}: null is not allowed")
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not (_type_ok(value, "integer") or isinstance(value, str)):
            errors.append(f"{path}: must be an integer or a string, got {type(value).__name__}")
        return
    kind = schema.get("type")
    if kind is None:
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            errors.append(f"{path}: schema has no type")
        return
    if not _type_ok(value, kind):
        errors.append(f"{path}: must be of type {kind}, got {type(value).__name__}")
        return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if kind == "string":
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']}")
        if "minLength" in schema and len(value) < schema["minLength"]:
            errors.append(f"{path}: shorter than {schema['minLength']}")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: does not match {schema['pattern']}")
    elif kind in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{path}: below the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{path}: above the maximum {schema['maximum']}")
    elif kind == "array":
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{path}: more than {schema['maxItems']} items")
        if "minItems" in schema and len(value) < schema["minItems"]:
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        for i, item in enumerate(value):
            _validate(
                item, schema.get("items") or {"x-kubernetes-preserve-unknown-fields": True}, f"{path}[{i}]", errors
            )
    elif kind == "object":
        _validate_object(value, schema, path, errors)


def _validate_object(value: dict[str, Any], schema: dict[str, Any], path: str, errors: list[str]) -> None:
    for key in schema.get("required", []):
        if key not in value:
            errors.append(f"{path}.{key}: required")
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        if properties is not None and key in properties:
            _validate(item, properties[key], f"{path}.{key}", errors)
        elif isinstance(additional, dict):
            _validate(item, additional, f"{path}.{key}", errors)
        elif not schema.get("x-kubernetes-preserve-unknown-fields"):
            errors.append(f'{path}: unknown field "{key}"')


def _metadata_errors(meta: Any) -> list[str]:
    if not isinstance(meta, dict):
        return ["metadata: must be an object"]
    errors = [f'metadata: unknown field "{k}"' for k in meta if k not in _OBJECT_META]
    name = meta.get("name") or meta.get("generateName", "x").rstrip("-")
    if not name or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        errors.append(f"metadata.name {name!r}: not a DNS-1123 subdomain")
    for key in ("labels", "annotations"):
        if any(not isinstance(v, str) for v in (meta.get(key) or {}).values()):
            errors.append(f"metadata.{key}: values must be strings")
    return errors


def argo_schema_errors(obj: dict[str, Any]) -> list[str]:
    """Every field the API server would reject in ``obj`` (an Argo object), as ``path: message`` lines."""
    schema = crd_schemas().get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        return [f"{obj.get('apiVersion')}/{obj.get('kind')}: no such custom resource in Argo {ARGO_VERSION}"]
    errors = _metadata_errors(obj.get("metadata"))
    # metadata is an ObjectMeta, checked above; the CRD schema types it as a bare object
    meta_schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    _validate_object(obj, {**schema, "properties": {**schema["properties"], "metadata": meta_schema}}, "", errors)
    return [e.lstrip(".") for e in errors]
