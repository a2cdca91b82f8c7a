"""The whole kind/minikube quick start in one command (``make kind-up``, ``make minikube-up``).

For a user with kind or minikube, kubectl and Docker: create the cluster, install the pinned Argo release with
the compliant executor settings, build and load the stage images, create the namespace and the local store's
credentials (once, never overwritten), apply the local overlay, wait for MinIO and its bucket, submit the demo
run and wait for it to succeed.

``--dry-run DIR`` (``DRY_RUN=1``) prints every command instead and writes every object it would apply into
``DIR`` (numbered in apply order, ``commands.sh`` beside them), so the tests check the whole path without a
cluster. Credentials are generated into ``.quickstart/credentials.env`` (git-ignored, mode 0600) and only ever
handed to ``kubectl create secret --from-env-file``; a dry run writes placeholders.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jobs.core.errors import IrmsiaError, UsageError
from jobs.stages import image_names
from pipeline.argo.install import ARGO_NAMESPACE, ARGO_VERSION, CONTROLLER_CONFIGMAP, QUICK_START_URL
from pipeline.argo.workflow import build_workflow
from pipeline.config import DEFAULT_CONFIG, DeploymentConfig, load_config
from pipeline.profiles import PROFILES

REPO_ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = REPO_ROOT / ".quickstart"
WORKFLOW_FILE = ".quickstart/demo-workflow.yaml"
OVERLAY = "manifests/overlays/local"
BASE = "manifests/base"
CONTROLLER_PATCH = "manifests/argo/workflow-controller-configmap.patch.yaml"
CLUSTER = "irmsia"
CPU_IMAGES = " ".join(image_names(gpu=False))
"""What ``make images`` builds and ``make kind-load`` loads for a cluster without GPUs (train runs its -cpu image)."""
DEMO_PARAMETERS = PROFILES["demo"]
"""The demo run's parameters: the demo profile (about half a minute of training on two CPU cores)."""
PLACEHOLDER = "<generated into .quickstart/credentials.env>"


class QuickStartError(IrmsiaError):
    """A step of the quick start failed: the message names the command (its output is above it)."""


@dataclass
class Step:
    """One command, and the objects it applies (written to the dry-run folder)."""

    title: str
    command: list[str]
    objects: list[dict[str, Any]] = field(default_factory=list)
    unless: list[str] | None = None
    """A command whose success means the step is already done (the cluster exists, the Secret exists)."""
    stdin_objects: bool = False
    """Feed ``objects`` to the command's standard input as YAML (``kubectl apply -f -``)."""


def _kubectl(*args: str) -> list[str]:
    return [os.environ.get("KUBECTL", "kubectl"), *args]


def _kustomize(folder: str) -> list[dict[str, Any]]:
    out = subprocess.run(_kubectl("kustomize", str(REPO_ROOT / folder)), capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _secret_placeholder(config: DeploymentConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": config.store.credentials_secret, "namespace": config.namespace},
        "type": "Opaque",
        "stringData": {"AWS_ACCESS_KEY_ID": PLACEHOLDER, "AWS_SECRET_ACCESS_KEY": PLACEHOLDER},
    }


def credentials_file(state_dir: Path = STATE_DIR) -> Path:
    """The local MinIO's root credentials, generated once: re-running the quick start keeps them."""
    path = state_dir / "credentials.env"
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(
                f"AWS_ACCESS_KEY_ID=irmsia-{secrets.token_hex(4)}\nAWS_SECRET_ACCESS_KEY={secrets.token_hex(24)}\n"
            )
    return path


def plan(
    platform: str, config: DeploymentConfig, *, credentials: str, workflow_file: str = WORKFLOW_FILE
) -> list[Step]:
    """Every step of the quick start on ``platform`` (kind or minikube), in order."""
    ns, tag = config.namespace, config.images.tag
    if platform == "kind":
        create = Step(
            "create the kind cluster",
            ["kind", "create", "cluster", "--name", CLUSTER],
            unless=["kind", "get", "kubeconfig", "--name", CLUSTER],
        )
        load = Step("load the images into kind", ["make", "kind-load", f"IMAGE_TAG={tag}", f"KIND_CLUSTER={CLUSTER}"])
    else:
        create = Step(
            "start minikube", ["minikube", "start", "-p", CLUSTER], unless=["minikube", "status", "-p", CLUSTER]
        )
        load = Step(
            "load the images into minikube",
            ["make", "minikube-load", f"IMAGE_TAG={tag}", f"MINIKUBE_PROFILE={CLUSTER}"],
        )
    (patch,) = [d for d in yaml.safe_load_all((REPO_ROOT / CONTROLLER_PATCH).read_text(encoding="utf-8")) if d]
    workflow = build_workflow(ns, DEMO_PARAMETERS).build().model_dump(by_alias=True, exclude_none=True)
    return [
        create,
        Step(
            f"create namespace {ARGO_NAMESPACE}",
            _kubectl("apply", "-f", "-"),
            [_namespace(ARGO_NAMESPACE)],
            stdin_objects=True,
        ),
        # Argo's CRDs are over client-side apply's 256 KiB annotation limit: server-side apply only
        Step(
            f"install Argo Workflows {ARGO_VERSION}",
            _kubectl("apply", "--server-side", "--force-conflicts", "-n", ARGO_NAMESPACE, "-f", QUICK_START_URL),
        ),
        Step(
            "give Argo's executor containers the restricted security context",
            _kubectl(
                "-n", ARGO_NAMESPACE, "patch", "configmap", CONTROLLER_CONFIGMAP, "--patch-file", CONTROLLER_PATCH
            ),
            [patch],
        ),
        Step(
            "wait for Argo",
            _kubectl(
                "-n",
                ARGO_NAMESPACE,
                "rollout",
                "status",
                "deploy/workflow-controller",
                "deploy/argo-server",
                "--timeout=300s",
            ),
        ),
        Step("build the stage images", ["make", "images", f"IMAGES={CPU_IMAGES}", f"IMAGE_TAG={tag}"]),
        load,
        Step(
            f"create namespace {ns} (restricted Pod Security)",
            _kubectl("apply", "--server-side", "-k", BASE),
            _kustomize(BASE),
        ),
        Step(
            f"create Secret {config.store.credentials_secret} once (never overwritten)",
            _kubectl(
                "-n",
                ns,
                "create",
                "secret",
                "generic",
                config.store.credentials_secret,
                f"--from-env-file={credentials}",
            ),
            [_secret_placeholder(config)],
            unless=_kubectl("-n", ns, "get", "secret", config.store.credentials_secret),
        ),
        Step("apply the local overlay", _kubectl("apply", "--server-side", "-k", OVERLAY), _kustomize(OVERLAY)),
        Step(
            "wait for MinIO and its bucket",
            _kubectl("-n", ns, "wait", "--for=condition=complete", "job/irmsia-bucket-init", "--timeout=300s"),
        ),
        Step("submit the demo run", _kubectl("-n", ns, "create", "-f", workflow_file, "-o", "name"), [workflow]),
    ]


def _write_dry_run(steps: list[Step], folder: Path, namespace: str, timeout: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        "#!/bin/sh",
        "# What `make kind-up` / `make minikube-up` would run, in order.",
        "set -eu",
        f"NAMESPACE={namespace}",
        f"TIMEOUT={timeout}",
    ]
    for number, step in enumerate(steps, start=1):
        lines.append(f"# {number:02d} {step.title}")
        command = shlex.join(step.command)
        lines.append(f"{shlex.join(step.unless)} >/dev/null 2>&1 || {command}" if step.unless else command)
        if step.objects:
            slug = step.title.split(" (")[0].replace(" ", "-").replace("'", "").lower()
            text = yaml.safe_dump_all(step.objects, sort_keys=False)
            (folder / f"{number:02d}-{slug}.yaml").write_text(text, encoding="utf-8")
    lines[-1] = f"run=$({lines[-1]})"
    lines.append('kubectl -n "$NAMESPACE" wait --for=condition=Completed "$run" --timeout="$TIMEOUT"')
    lines.append('test "$(kubectl -n "$NAMESPACE" get "$run" -o jsonpath={.status.phase})" = Succeeded')
    (folder / "commands.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _run(step: Step) -> str:
    print(f"==> {step.title}: {shlex.join(step.command)}", file=sys.stderr, flush=True)
    if step.unless and subprocess.run(step.unless, capture_output=True, check=False).returncode == 0:
        print("    already done", file=sys.stderr)
        return ""
    stdin = yaml.safe_dump_all(step.objects) if step.stdin_objects else None
    proc = subprocess.run(step.command, input=stdin, text=True, stdout=subprocess.PIPE, check=False, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise QuickStartError(f"{step.title}: `{shlex.join(step.command)}` exited {proc.returncode}")
    return proc.stdout.strip()


def _wait_for(name: str, namespace: str, timeout: str) -> str:
    wait = _kubectl("-n", namespace, "wait", "--for=condition=Completed", name, f"--timeout={timeout}")
    subprocess.run(wait, check=True)
    phase = _kubectl("-n", namespace, "get", name, "-o", "jsonpath={.status.phase}")
    return subprocess.run(phase, capture_output=True, text=True, check=True).stdout.strip()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.quickstart", description=__doc__.split("\n")[0])
    parser.add_argument("platform", choices=("kind", "minikube"))
    parser.add_argument("--dry-run", type=Path, metavar="DIR", help="print the commands, write the objects to DIR")
    parser.add_argument("--timeout", default="30m", help="how long to wait for the demo run (default 30m)")
    args = parser.parse_args(argv)
    try:
        config = load_config(REPO_ROOT / DEFAULT_CONFIG)  # the configuration the local overlay is generated from
        credentials = PLACEHOLDER if args.dry_run else str(credentials_file().relative_to(REPO_ROOT))
        steps = plan(args.platform, config, credentials=credentials)
        if args.dry_run:
            _write_dry_run(steps, args.dry_run, config.namespace, args.timeout)
            print((args.dry_run / "commands.sh").read_text(encoding="utf-8"), end="")
            return 0
        (REPO_ROOT / WORKFLOW_FILE).write_text(yaml.safe_dump(steps[-1].objects[0]), encoding="utf-8")
        name = ""
        for step in steps:
            name = _run(step)  # the last step, the submission, prints the run's name
        phase = _wait_for(name, config.namespace, args.timeout)
        print(f"{name}: {phase}", file=sys.stderr)
        return 0 if phase == "Succeeded" else 1
    except (IrmsiaError, UsageError) as exc:
        print(f"quickstart: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except subprocess.CalledProcessError as exc:
        print(f"quickstart: error: `{shlex.join(exc.cmd)}` exited {exc.returncode}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
