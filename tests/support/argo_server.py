"""A local Argo Server on 127.0.0.1 speaking the parts of its REST API that ``irmsia`` uses.

Workflows (create, get), WorkflowTemplates and CronWorkflows (get, create, update), bearer-token auth, and
Argo's JSON error bodies (``{"code": …, "message": …}``). Every request is recorded for assertions.

It validates as Argo v4.1.2's server does before it stores anything (``server/workflow`` and
``server/workflowtemplate`` call ``validate.Workflow``/``validate.WorkflowTemplate``): a Workflow whose
``workflowTemplateRef`` names no WorkflowTemplate of its namespace is a NotFound; a parameter whose value is not
in its own ``enum`` is an InvalidArgument. Like the real one it does not check a submitted value against the
referenced template's enum (``MergeParameters`` keeps the submitted parameter, which carries none).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# gRPC-gateway codes Argo puts in error bodies
_INVALID_ARGUMENT, _NOT_FOUND, _ALREADY_EXISTS, _UNAUTHENTICATED = 3, 5, 6, 16
_KINDS = {"workflows": "workflow", "workflow-templates": "template", "cron-workflows": "cronWorkflow"}


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class ArgoServerState:
    token: str
    phases: list[str] = field(default_factory=lambda: ["Running", "Succeeded"])
    """Phases a workflow reports on successive GETs (the last one repeats)."""
    objects: dict[tuple[str, str, str], dict] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    gets: dict[str, int] = field(default_factory=dict)
    counter: int = 0


class _Handler(BaseHTTPRequestHandler):
    state: ArgoServerState

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        path = self.path.split("?", 1)[0]
        # recorded as sent (the handlers below add server-side fields to their own copy)
        self.state.requests.append(RecordedRequest(method, path, dict(self.headers), json.loads(raw) if raw else None))
        if self.headers.get("Authorization") != f"Bearer {self.state.token}":
            return self._reply(401, {"code": _UNAUTHENTICATED, "message": "token not valid"})
        match = re.fullmatch(r"/api/v1/(workflows|workflow-templates|cron-workflows)/([^/]+)(?:/([^/]+))?", path)
        if not match:
            return self._reply(404, {"code": _NOT_FOUND, "message": f"no route {path}"})
        kind, namespace, name = match.groups()
        if method == "GET" and name:
            return self._get(kind, namespace, name)
        if method == "POST" and not name:
            return self._create(kind, namespace, body[_KINDS[kind]])
        if method == "PUT" and name:
            return self._update(kind, namespace, name, body[_KINDS[kind]])
        return self._reply(405, {"code": 12, "message": f"{method} {path} not supported"})

    def _get(self, kind: str, namespace: str, name: str) -> None:
        obj = self.state.objects.get((kind, namespace, name))
        if obj is None:
            return self._reply(404, {"code": _NOT_FOUND, "message": f'{kind} "{name}" not found'})
        if kind == "workflows":
            seen = self.state.gets[name] = self.state.gets.get(name, 0) + 1
            obj = {**obj, "status": {"phase": self.state.phases[min(seen, len(self.state.phases)) - 1]}}
        return self._reply(200, obj)

    def _invalid(self, kind: str, namespace: str, obj: dict) -> tuple[int, int, str] | None:
        """Argo's validation of a created or updated object: ``(http status, grpc code, message)`` or None."""
        spec = obj.get("spec") or {}
        if kind == "cron-workflows":
            spec = spec.get("workflowSpec") or {}
        for param in (spec.get("arguments") or {}).get("parameters") or []:
            enum = param.get("enum")
            if enum is not None and param.get("value") is not None and param["value"] not in enum:
                name = param["name"]
                message = f"spec.arguments.{name}.value should be present in spec.arguments.{name}.enum list"
                return 400, _INVALID_ARGUMENT, message
        ref = (spec.get("workflowTemplateRef") or {}).get("name")
        if kind == "workflows" and ref and ("workflow-templates", namespace, ref) not in self.state.objects:
            return 404, _NOT_FOUND, f'workflowtemplate.argoproj.io "{ref}" not found'
        return None

    def _create(self, kind: str, namespace: str, obj: dict) -> None:
        if invalid := self._invalid(kind, namespace, obj):
            status, code, message = invalid
            return self._reply(status, {"code": code, "message": message})
        meta = obj.setdefault("metadata", {})
        self.state.counter += 1
        if "generateName" in meta:
            meta["name"] = f"{meta['generateName']}{self.state.counter:05d}"
        key = (kind, namespace, meta["name"])
        if key in self.state.objects:
            return self._reply(409, {"code": _ALREADY_EXISTS, "message": f'{kind} "{meta["name"]}" already exists'})
        meta.update(namespace=namespace, resourceVersion=str(self.state.counter), uid=f"uid-{self.state.counter}")
        self.state.objects[key] = obj
        return self._reply(200, obj)

    def _update(self, kind: str, namespace: str, name: str, obj: dict) -> None:
        current = self.state.objects.get((kind, namespace, name))
        if current is None:
            return self._reply(404, {"code": _NOT_FOUND, "message": f'{kind} "{name}" not found'})
        if invalid := self._invalid(kind, namespace, obj):
            status, code, message = invalid
            return self._reply(status, {"code": code, "message": message})
        if obj["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return self._reply(409, {"code": 10, "message": "the object has been modified; resourceVersion mismatch"})
        self.state.counter += 1
        obj["metadata"]["resourceVersion"] = str(self.state.counter)
        self.state.objects[(kind, namespace, name)] = obj
        return self._reply(200, obj)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


class LocalArgoServer:
    """The server and its state; ``url`` is ``http://127.0.0.1:<port>``."""

    def __init__(self, token: str) -> None:
        self.state = ArgoServerState(token=token)
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def add(self, kind: str, namespace: str, obj: dict) -> None:
        """Store ``obj`` as if created earlier (``kubectl apply`` of the overlay)."""
        obj = {
            **obj,
            "metadata": {**obj["metadata"], "namespace": namespace, "resourceVersion": "applied"},
        }
        self.state.objects[(kind, namespace, obj["metadata"]["name"])] = obj

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
