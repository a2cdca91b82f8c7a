"""Validate Argo objects against Argo's published JSON schema (kept outside the project, in ``../shared/argo``)."""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path
from typing import Any

import jsonschema

REPO_ROOT = Path(__file__).resolve().parents[2]
# In CI the schema sits beside the checkout; IRMSIA_ARGO_SCHEMA points elsewhere (a worktree on a dev machine).
ARGO_SCHEMA = Path(os.environ.get("IRMSIA_ARGO_SCHEMA") or REPO_ROOT.parent / "shared/argo/schema.json")
INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


@functools.cache
def _definitions() -> dict[str, Any]:
    schema = json.loads(ARGO_SCHEMA.read_text(encoding="utf-8"))
    definitions = copy.deepcopy(schema["definitions"])
    # The schema types IntOrString as string only; Kubernetes (and Argo's `limit: 3`) accept integers too.
    definitions[INT_OR_STRING] = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    return definitions


def argo_schema_errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of ``obj`` (an Argo object with ``kind``), as ``path: message`` lines."""
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/definitions/io.argoproj.workflow.v1alpha1.{obj['kind']}",
        "definitions": _definitions(),
    }
    validator = jsonschema.Draft202012Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
