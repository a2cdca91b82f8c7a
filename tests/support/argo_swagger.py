"""Check requests to the Argo Server against its REST API description: Argo v4.1.2's ``swagger.json``.

``request_errors(method, path, body)`` finds the operation whose path template matches, takes the schema of its
``body`` parameter, and validates the body strictly: a field the API does not declare is an error (the server
would silently drop it, so a misspelt field is a setting that never reaches Argo). ``IntOrString`` accepts both
(the description types it as a string only).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from typing import Any

import jsonschema

from tests.support.argo_schema import ARGO_DIR

SWAGGER = ARGO_DIR / "swagger.json"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if schema.get("type") == "object" and "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    return schema


@functools.cache
def _swagger() -> dict[str, Any]:
    swagger = json.loads(SWAGGER.read_text(encoding="utf-8"))
    definitions = _strict(copy.deepcopy(swagger["definitions"]))
    definitions[_INT_OR_STRING] = {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    return {"paths": swagger["paths"], "definitions": definitions}


def body_schema(method: str, path: str) -> dict[str, Any]:
    """The schema of the request body of ``method path`` (``POST /api/v1/workflows/irmsia``)."""
    for template, operations in _swagger()["paths"].items():
        pattern = "^" + re.sub(r"\{[^/]+\}", "[^/]+", template) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            params = operations[method.lower()].get("parameters", [])
            body = next((p for p in params if p.get("in") == "body"), None)
            if body is None:
                raise LookupError(f"{method} {template} takes no body")
            return body["schema"]
    raise LookupError(f"no operation {method} {path} in {SWAGGER}")


def request_errors(method: str, path: str, body: Any) -> list[str]:
    """Every way ``body`` departs from the API's description of ``method path``."""
    schema = {**body_schema(method, path), "definitions": _swagger()["definitions"]}
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(body)]
