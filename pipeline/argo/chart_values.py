"""The Helm chart's ``values.yaml`` and ``values.schema.json``, generated from ``pipeline/config.py``.

The values are ``irmsia.yaml``'s keys with ``irmsia.yaml``'s settings (so the chart's defaults are the local quick
start's and cannot drift from it), each documented with a ``# --`` comment taken from its dataclass field's
docstring, plus the chart's own keys (names, NetworkPolicy, MinIO, Pushgateway). The schema follows the
dataclasses' types (unknown keys rejected, as ``load_config`` does) with the checks of their ``__post_init__``
that a schema can express (``CONSTRAINTS``).
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from jobs.core.paths import DNS_LABEL
from jobs.stages import STAGES
from pipeline import config as config_module
from pipeline.config import DeploymentConfig, _camel, load_config, to_mapping
from pipeline.dag import PIPELINE

VALUES = "helm/irmsia/values.yaml"
SCHEMA = "helm/irmsia/values.schema.json"
SOURCE_CONFIG = "irmsia.yaml"

_QUANTITY = config_module._QUANTITY.pattern
_DNS_LABEL = DNS_LABEL.pattern
_DURATION = config_module._DURATION.pattern
_URL_OR_EMPTY = r"^$|^https?://\S+$"
_STAGES = [e.name for e in STAGES]
"""Registry stages: what resources and credentials are given per (every task of a stage shares them)."""
_TASKS = [s.name for s in PIPELINE.stages]
"""The default DAG's tasks: what a schedule may target."""

CONSTRAINTS: dict[str, dict[str, Any]] = {
    "DeploymentConfig.service_account": {
        "anyOf": [{"const": ""}, {"pattern": _DNS_LABEL, "maxLength": 63}],
        "not": {"const": "default"},
    },
    "ImageRef.registry": {"minLength": 1},
    "ImageRef.tag": {"minLength": 1, "not": {"const": "latest"}},
    "ImageRef.pull_policy": {"enum": ["IfNotPresent", "Always", "Never"]},
    "StoreConfig.uri": {"pattern": r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$"},
    "StoreConfig.endpoint": {"pattern": r"^$|^https?://"},
    "StoreConfig.credentials_secret": {"pattern": _DNS_LABEL, "maxLength": 63},
    "KaggleConfig.credentials_secret": {"pattern": _DNS_LABEL, "maxLength": 63},
    "KaggleConfig.stages": {"items": {"enum": _STAGES}},
    "DeidentificationConfig.key_secret": {"pattern": _DNS_LABEL, "maxLength": 63},
    "Toleration.operator": {"enum": ["Exists", "Equal"]},
    "Toleration.effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
    "GpuPool.gpus": {"minimum": 1},
    "GpuPool.nodes": {"minimum": 1},
    "GpuPool.resource_name": {"minLength": 1},
    "StageResources.active_deadline_seconds": {"minimum": 60},
    "StageResources.shm_size": {"pattern": f"^$|{_QUANTITY}"},
    "Backoff.duration": {"pattern": _DURATION},
    "Backoff.max_duration": {"pattern": _DURATION},
    "Backoff.factor": {"minimum": 1},
    "RetryConfig.limit": {"minimum": 0, "maximum": 10},
    "SecurityConfig.run_as_user": {"minimum": 1},
    "SecurityConfig.run_as_group": {"minimum": 1},
    "SecurityConfig.fs_group": {"minimum": 0},
    "WorkflowConfig.active_deadline_seconds": {"minimum": 60},
    "WorkflowConfig.ttl_seconds_after_finished": {"minimum": 0},
    "WorkflowConfig.parallelism": {"minimum": 1},
    "Schedule.name": {"pattern": _DNS_LABEL, "maxLength": 56},
    "Schedule.schedules": {"minItems": 1, "items": {"pattern": r"^\S+( \S+){4}$"}},
    "Schedule.target": {"enum": _TASKS},
    "Schedule.parameters": {"propertyNames": {"enum": [p.name for p in PIPELINE.parameters]}},
    "MetricsConfig.pushgateway": {"pattern": _URL_OR_EMPTY},
    "MirrorsConfig.tcia": {"pattern": _URL_OR_EMPTY},
    "MirrorsConfig.nih": {"pattern": _URL_OR_EMPTY},
    "MirrorsConfig.kaggle": {"pattern": _URL_OR_EMPTY},
    "LocalDataConfig.claim_name": {"pattern": f"^$|{_DNS_LABEL}"},
    "LocalDataConfig.mount_path": {"pattern": "^/"},
    "TrainCacheConfig.size": {"pattern": f"^$|{_QUANTITY}"},
}
"""JSON-schema checks per ``Class.field``, mirroring the dataclasses' ``__post_init__`` checks."""
NOT_IN_VALUES = ("namespace",)
"""Configuration keys the chart takes from the release (the namespace is the release namespace)."""

CHART_VALUES: dict[str, tuple[str, Any, dict[str, Any]]] = {
    "nameOverride": ("Override the chart name used in object names and labels.", "", {"type": "string"}),
    "fullnameOverride": ("Override the prefix of every object's name (default: the release name).", "",
                         {"type": "string", "maxLength": 40}),
    "networkPolicy": (
        "Default deny for the release's pods, then the egress the stages need.",
        {"enabled": True, "egressPorts": [443, 6443, 8443]},
        {"type": "object", "additionalProperties": False, "required": ["enabled", "egressPorts"],
         "properties": {"enabled": {"type": "boolean"},
                        "egressPorts": {"type": "array",
                                        "items": {"type": "integer", "minimum": 1, "maximum": 65535}}}},
    ),
    "minio": (
        "A single MinIO for local clusters (kind/minikube); its root credentials are the store Secret.",
        {"enabled": True, "image": "quay.io/minio/minio:RELEASE.2025-04-22T22-12-26Z",
         "mcImage": "quay.io/minio/mc:RELEASE.2025-04-16T18-13-26Z", "storage": "10Gi"},
        {"type": "object", "additionalProperties": False, "required": ["enabled", "image", "mcImage", "storage"],
         "properties": {"enabled": {"type": "boolean"}, "image": {"type": "string", "minLength": 1},
                        "mcImage": {"type": "string", "minLength": 1},
                        "storage": {"type": "string", "pattern": _QUANTITY}}},
    ),
    "pushgateway": (
        "A Prometheus Pushgateway for the stages' metrics (<fullname>-pushgateway; see metrics.pushgateway).",
        {"enabled": True, "image": "docker.io/prom/pushgateway:v1.9.0"},
        {"type": "object", "additionalProperties": False, "required": ["enabled", "image"],
         "properties": {"enabled": {"type": "boolean"}, "image": {"type": "string", "minLength": 1}}},
    ),
}  # fmt: skip
"""The chart's own keys: (``# --`` documentation, default, schema)."""
CHART_VALUE_DOCS = {
    "networkPolicy.enabled": "Create the NetworkPolicies.",
    "networkPolicy.egressPorts": "Ports the stages may reach anywhere: HTTPS sources and S3 (443), the Kubernetes "
    "API server (6443 kind, 8443 minikube).",
    "minio.enabled": "Run MinIO (set store.endpoint to http://<fullname>-minio.<namespace>.svc.cluster.local:9000).",
    "minio.image": "MinIO server image (pinned release).",
    "minio.mcImage": "MinIO client image of the bucket-init hook Job.",
    "minio.storage": "Size of MinIO's volume.",
    "pushgateway.enabled": "Run the Pushgateway.",
    "pushgateway.image": "Pushgateway image (pinned release).",
}


@functools.cache
def field_docs() -> dict[str, str]:
    """``Class.field`` -> the docstring under the field in pipeline/config.py (attribute docstrings)."""
    tree = ast.parse(Path(inspect.getfile(config_module)).read_text(encoding="utf-8"))
    docs = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        for stmt, nxt in zip(node.body, node.body[1:], strict=False):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[f"{node.name}.{stmt.target.id}"] = " ".join(nxt.value.value.split())
    return docs


def _schema_of(kind: Any, where: str) -> dict[str, Any]:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
        origin = typing.get_origin(kind)
    if isinstance(kind, type) and is_dataclass(kind):
        return _dataclass_schema(kind)
    if origin is dict:
        _, item = typing.get_args(kind)
        if where == "DeploymentConfig.resources":  # one entry per stage, each complete
            stage = _schema_of(item, where)
            return {"type": "object", "additionalProperties": False, "properties": dict.fromkeys(_STAGES, stage)}
        if where == "StageResources.requests" or where == "StageResources.limits":
            keys = ("cpu", "memory", "ephemeral-storage")
            schema = {"type": "object", "additionalProperties": False,
                      "properties": {k: {"type": "string", "pattern": _QUANTITY} for k in keys}}  # fmt: skip
            return {**schema, "required": ["memory"]} if where.endswith("limits") else schema
        return {"type": "object", "additionalProperties": _schema_of(item, where)}
    if origin is tuple:
        return {"type": "array", "items": _schema_of(typing.get_args(kind)[0], where)}
    return {bool: {"type": "boolean"}, int: {"type": "integer"}, str: {"type": "string"}}[kind]


def _dataclass_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    docs = field_docs()
    properties = {}
    for f in fields(cls):
        if cls is DeploymentConfig and f.name in NOT_IN_VALUES:
            continue
        where = f"{cls.__name__}.{f.name}"
        schema = _schema_of(hints[f.name], where)
        for key, value in CONSTRAINTS.get(where, {}).items():
            schema[key] = {**schema[key], **value} if isinstance(schema.get(key), dict) else value
        if where in docs:
            schema["description"] = docs[where]
        properties[_camel(f.name)] = schema
    required = [_camel(f.name) for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    schema = {"type": "object", "additionalProperties": False, "properties": properties}
    return {**schema, "required": required} if required else schema


def values_schema() -> dict[str, Any]:
    schema = _dataclass_schema(DeploymentConfig)
    for key, (doc, _, chart_schema) in CHART_VALUES.items():
        schema["properties"][key] = {**chart_schema, "description": doc}
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "irmsia chart values: the keys of irmsia.yaml (pipeline/config.py) plus the chart's own",
        **schema,
    }


def values_schema_text() -> str:
    return json.dumps(values_schema(), indent=2) + "\n"


def chart_values(config: DeploymentConfig) -> dict[str, Any]:
    """The values a release with ``config`` takes (what the kustomize overlays are rendered from)."""
    values = {k: v for k, v in to_mapping(config).items() if k not in NOT_IN_VALUES}
    # every stage explicitly: Helm merges maps with the chart's defaults, Hera uses StageResources() for the rest
    values["resources"] = {s: to_mapping(config.stage_resources(s)) for s in _STAGES}
    for stage in values["resources"].values():  # null deletes a default the configuration does not have
        for side in ("requests", "limits"):
            stage[side] = {k: stage[side].get(k) for k in ("cpu", "memory", "ephemeral-storage")}
    values["serviceAccount"] = ""  # release-scoped: <fullname>-pipeline
    return {**{k: default for k, (_, default, _) in CHART_VALUES.items()}, **values}


def _flow(value: Any) -> str:
    return (
        yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1000).strip().removesuffix("...").strip()
    )


def _emit(lines: list[str], key: str, value: Any, doc: str | None, indent: int, cls: type | None) -> None:
    pad = " " * indent
    if doc:
        lines.append(f"{pad}# -- {doc}")
    if is_dataclass(cls) and isinstance(value, dict) and value:
        lines.append(f"{pad}{key}:")
        hints = typing.get_type_hints(cls)
        by_key = {_camel(f.name): f for f in fields(cls)}
        for sub, item in value.items():
            f = by_key[sub]
            sub_cls = hints[f.name] if is_dataclass(hints[f.name]) else None
            _emit(lines, sub, item, field_docs().get(f"{cls.__name__}.{f.name}"), indent + 2, sub_cls)
    elif isinstance(value, dict | list) and value and key in ("resources", "schedules", "tolerations"):
        lines.append(f"{pad}{key}:")
        block = yaml.safe_dump(value, sort_keys=False, default_flow_style=None, width=110)
        lines += [f"{pad}  {line}" for line in block.rstrip().splitlines()]
    else:
        lines.append(f"{pad}{key}: {_flow(value)}")


def values_text(config_path: str = SOURCE_CONFIG) -> str:
    """``values.yaml``: ``irmsia.yaml``'s settings and the chart's keys, every value documented with ``# --``."""
    values = chart_values(load_config(config_path))
    lines = [
        "# Values of the irmsia chart, generated by `make generate` from irmsia.yaml and pipeline/config.py: do not",
        "# edit (change irmsia.yaml or the dataclasses). The keys from serviceAccount on mean what they mean in",
        "# irmsia.yaml; the namespace is the release namespace; every object is named <fullname>-<what>.",
        "",
    ]
    docs = field_docs()
    for key, value in values.items():
        if key in CHART_VALUES:
            doc, _, _ = CHART_VALUES[key]
            if isinstance(value, dict):
                lines.append(f"# -- {doc}")
                lines.append(f"{key}:")
                for sub, item in value.items():
                    lines.append(f"  # -- {CHART_VALUE_DOCS[f'{key}.{sub}']}")
                    lines.append(f"  {sub}: {_flow(item)}")
            else:
                lines.append(f"# -- {doc}")
                lines.append(f"{key}: {_flow(value)}")
            continue
        f = next(f for f in fields(DeploymentConfig) if _camel(f.name) == key)
        hint = typing.get_type_hints(DeploymentConfig)[f.name]
        doc = docs.get(f"DeploymentConfig.{f.name}") or ""
        if key == "serviceAccount":
            doc = (
                "Service account of the stage pods (never `default`); empty: <fullname>-pipeline, created by the chart."
            )
        _emit(lines, key, value, doc, 0, hint if isinstance(hint, type) and is_dataclass(hint) else None)
    return "\n".join(lines) + "\n"
