"""Talk to the Argo Server (its REST API, through Hera's ``WorkflowsService``): submit runs, apply templates.

The bearer token is handed to the service and nowhere else: it is never logged, printed or put in an error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar, cast

import requests
from hera.exceptions import HeraException, NotFound
from hera.workflows import CronWorkflow, WorkflowsService, WorkflowTemplate
from hera.workflows.models import (
    CreateCronWorkflowRequest,
    UpdateCronWorkflowRequest,
    WorkflowCreateRequest,
    WorkflowTemplateCreateRequest,
    WorkflowTemplateUpdateRequest,
)
from hera.workflows.models import (
    CronWorkflow as CronWorkflowModel,
)
from hera.workflows.models import (
    Workflow as WorkflowModel,
)
from hera.workflows.models import (
    WorkflowTemplate as WorkflowTemplateModel,
)

from jobs.core.errors import IrmsiaError, TransientError, UsageError
from pipeline.argo.workflow import build_workflow
from pipeline.dag import PIPELINE, Pipeline

log = logging.getLogger("irmsia.argo")

FINISHED_PHASES = ("Succeeded", "Failed", "Error")
T = TypeVar("T")


def _name(name: str | None) -> str:
    """A built object's name (always set by our builders)."""
    if not name:
        raise ValueError("an Argo object without a name")
    return name


class ArgoServerError(IrmsiaError):
    """The Argo Server refused the request: the message carries its answer (check namespace, RBAC, the token)."""


@dataclass(kw_only=True)
class ArgoServer:
    """A connection to one Argo Server."""

    url: str
    """Base URL, e.g. ``https://localhost:2746``."""
    namespace: str
    """Namespace of the workflows and templates."""
    token: str | None = field(default=None, repr=False)
    """Bearer token (``argo auth token``); kept out of ``repr`` and logs."""
    verify_ssl: bool = True
    """Verify the server's TLS certificate (turn off only for a port-forwarded local server)."""

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise UsageError(f"--argo-server {self.url!r}: use an http:// or https:// URL, e.g. https://localhost:2746")
        self.url = self.url.rstrip("/") + "/"
        self._service = WorkflowsService(
            host=self.url, token=self.token, namespace=self.namespace, verify_ssl=self.verify_ssl
        )

    def _call(self, what: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except NotFound:
            raise
        except HeraException as exc:
            raise ArgoServerError(f"{what} at {self.url}: {exc}") from exc
        except requests.RequestException as exc:
            # Only the exception's class: its text can echo request details.
            raise TransientError(f"{what}: cannot reach the Argo Server at {self.url} ({type(exc).__name__})") from exc

    def _find(self, what: str, call: Callable[[], T]) -> T | None:
        """``call``'s answer, or ``None`` when the server says the object does not exist."""
        try:
            return self._call(what, call)
        except NotFound:
            return None

    def submit(self, parameters: Mapping[str, str], pipeline: Pipeline = PIPELINE) -> WorkflowModel:
        """Create a Workflow from ``pipeline``'s template (``irmsia-pipeline``); returns the created Workflow."""
        workflow = cast(WorkflowModel, build_workflow(self.namespace, parameters, pipeline).build())
        request = WorkflowCreateRequest(namespace=self.namespace, workflow=workflow)
        try:
            created = self._call("submit", lambda: self._service.create_workflow(request, namespace=self.namespace))
        except NotFound as exc:  # the server's answer when the referenced WorkflowTemplate is not there
            ref = workflow.spec.workflow_template_ref
            template = ref.name if ref is not None else "?"
            raise ArgoServerError(
                f"submit: WorkflowTemplate {template} not found in namespace {self.namespace} at {self.url}; "
                "apply it first (kubectl apply --server-side -k manifests/overlays/local, or irmsia templates apply)"
            ) from exc
        log.info("submitted workflow %s in %s", created.metadata.name, self.namespace)
        return created

    def wait(self, name: str, *, poll_s: float = 5.0, timeout_s: float = 86400.0) -> str:
        """Poll the workflow until it finishes; returns its final phase."""
        deadline = time.monotonic() + timeout_s
        while True:
            workflow = self._call("get workflow", lambda: self._service.get_workflow(name, namespace=self.namespace))
            phase = (workflow.status.phase if workflow.status else None) or "Pending"
            if phase in FINISHED_PHASES:
                return phase
            if time.monotonic() > deadline:
                raise TransientError(f"workflow {name} still {phase} after {timeout_s:.0f}s; check it in the Argo UI")
            log.info("workflow %s is %s", name, phase)
            time.sleep(poll_s)

    def apply_template(self, template: WorkflowTemplate) -> str:
        """Create or update the WorkflowTemplate; returns ``created`` or ``updated``."""
        model = cast(WorkflowTemplateModel, template.build())
        name = _name(model.metadata.name)
        current = self._find("get template", lambda: self._service.get_workflow_template(name, self.namespace))
        if current is None:
            request = WorkflowTemplateCreateRequest(namespace=self.namespace, template=model)
            self._call("create template", lambda: self._service.create_workflow_template(request, self.namespace))
            return "created"
        model.metadata.resource_version = current.metadata.resource_version
        update = WorkflowTemplateUpdateRequest(namespace=self.namespace, template=model)
        self._call("update template", lambda: self._service.update_workflow_template(name, update, self.namespace))
        return "updated"

    def apply_cron(self, cron: CronWorkflow) -> str:
        """Create or update a CronWorkflow; returns ``created`` or ``updated``."""
        model = cast(CronWorkflowModel, cron.build())
        name = _name(model.metadata.name)
        current = self._find("get cron workflow", lambda: self._service.get_cron_workflow(name, self.namespace))
        if current is None:
            request = CreateCronWorkflowRequest(namespace=self.namespace, cron_workflow=model)
            self._call("create cron workflow", lambda: self._service.create_cron_workflow(request, self.namespace))
            return "created"
        model.metadata.resource_version = current.metadata.resource_version
        update = UpdateCronWorkflowRequest(namespace=self.namespace, cron_workflow=model)
        self._call("update cron workflow", lambda: self._service.update_cron_workflow(name, update, self.namespace))
        return "updated"
