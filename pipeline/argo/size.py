"""How big a run of a DAG grows inside Argo: its node count and the bytes of its node statuses.

Argo keeps one ``NodeStatus`` per node (the workflow, the DAG, every task, every ``withParam`` item and its group)
in the Workflow object, which etcd caps (about 1.5 MB; Argo refuses a workflow over 1 MB unless it offloads or
compresses its status). The estimate builds the statuses a run of ``pipeline`` would have, field for field as in
Argo's ``NodeStatus`` (``pkg/apis/workflow/v1alpha1/workflow_types.go``), with each pod's ``result`` output of the
given size, and measures their JSON, so a plan is checked against the limits before it is submitted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.dag import Pipeline

STATUS_LIMIT_BYTES = 1 << 20
"""Argo's maximum workflow size (``MaxWorkflowSize``: 1 MB) without status offloading."""
NODE_LIMIT = 3000
"""Nodes of one workflow we stay under: "a few thousand" before the controller's status updates slow down."""
DEFAULT_RESULT_BYTES = 1024
"""A stage's ``result`` output when no measured one is given: twice the largest we measured (index's, 548 bytes on
the demo; collect's 317, a plan's 229 plus 8 a shard)."""
PART_RESULT_BYTES = 512
"""A fan-out part's ``result`` output: twice the 239 bytes of an index part (its summary: shard, files, quarantined)."""
_WORKFLOW = "irmsia-pipeline-x7k2p"


@dataclass(frozen=True)
class WorkflowSize:
    """A run's estimated node count and status bytes, and whether both stay far enough below Argo's limits."""

    nodes: int
    status_bytes: int

    @property
    def within_limits(self) -> bool:
        """Under half the size limit and a third of the node limit: room for retries (a node each) and messages."""
        return self.status_bytes < STATUS_LIMIT_BYTES // 2 and self.nodes < NODE_LIMIT // 3


def _node(name: str, kind: str, template: str, children: int, result_bytes: int = 0) -> dict:
    """A finished node's status as Argo writes it (ids are ``<workflow>-<10 digits>``)."""
    node_id = f"{_WORKFLOW}-1234567890"
    status = {
        "id": node_id,
        "name": f"{_WORKFLOW}.{name}",
        "displayName": name,
        "type": kind,
        "templateName": template,
        "templateScope": "local/",
        "phase": "Succeeded",
        "boundaryID": node_id,
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:10:00Z",
        "progress": "1/1",
        "resourcesDuration": {"cpu": 600, "memory": 600},
        "children": [node_id] * children,
    }
    if kind == "Pod":
        status["hostNodeName"] = "ip-10-0-0-1.eu-west-1.compute.internal"
        status["outputs"] = {"parameters": [{"name": "result", "value": "x" * result_bytes}], "exitCode": "0"}
    return status


def estimate(
    pipeline: Pipeline, shards: Mapping[str, int], result_bytes: Mapping[str, int] | None = None
) -> WorkflowSize:
    """The size of a run of ``pipeline`` where each fan-out task runs ``shards[task]`` times (1 when not given);
    ``result_bytes`` gives a task's result output size (a plan's grows with its list of shards)."""
    sizes = dict(result_bytes or {})
    nodes = [_node(_WORKFLOW, "DAG", "pipeline", len(pipeline.stages))]
    for stage in pipeline.stages:
        size = sizes.get(stage.name, PART_RESULT_BYTES if stage.fan_out else DEFAULT_RESULT_BYTES)
        if stage.fan_out:
            count = max(1, shards.get(stage.name, 1))
            nodes.append(_node(stage.name, "TaskGroup", stage.name, count))
            nodes += [_node(f"{stage.name}({k}:{k + 1}/{count})", "Pod", stage.name, 0, size) for k in range(count)]
        else:
            nodes.append(_node(stage.name, "Pod", stage.name, 1, size))
    return WorkflowSize(nodes=len(nodes), status_bytes=sum(len(json.dumps(n, separators=(",", ":"))) for n in nodes))
