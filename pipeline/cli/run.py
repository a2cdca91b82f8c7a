"""``irmsia run``: execute the whole DAG locally and print a short summary of what each stage produced."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from jobs.core.errors import UsageError
from jobs.core.hashing import sha256_json
from jobs.core.paths import check_name
from jobs.core.store import DEFAULT_STORE
from jobs.core.urls import url_identity
from jobs.stages import IMAGE_REGISTRY, IMAGE_TAG
from pipeline.dag import PIPELINE, Pipeline, StageSpec
from pipeline.docker_executor import DockerExecutor
from pipeline.profiles import PROFILES, profile_values
from pipeline.runner import Executor, ProcessExecutor, StageOutcome, run_pipeline


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the pipeline DAG locally", description=__doc__)
    for param in PIPELINE.parameters:
        kwargs: dict[str, Any] = {"default": None, "help": f"{param.description} (default {param.default!r})"}
        if param.enum:
            kwargs["choices"] = param.enum
        parser.add_argument(param.flag, dest=param.name, **kwargs)
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="start from a named set of parameter values (demo: the quick CPU demo); flags win",
    )
    parser.add_argument("--store", help=f"store URI (env IRMSIA_STORE; default {DEFAULT_STORE})")
    parser.add_argument(
        "--from",
        dest="from_stage",
        choices=[s.name for s in PIPELINE.stages],
        help="start at this stage (earlier stages' outputs must exist)",
    )
    parser.add_argument("--force", action="store_true", help="recompute every stage even on a cache hit")
    parser.add_argument(
        "--executor",
        choices=("process", "docker"),
        default="process",
        help="run each stage as a local process (default) or as `docker run` of its image (see docker/)",
    )
    parser.add_argument(
        "--image-tag", default=IMAGE_TAG, help=f"stage image tag for --executor docker (default {IMAGE_TAG})"
    )
    parser.add_argument(
        "--image-registry",
        default=IMAGE_REGISTRY,
        help=f"image registry and path for --executor docker (default {IMAGE_REGISTRY}, as make images tags them)",
    )
    parser.add_argument(
        "--gpus", action="store_true", help="--executor docker: run GPU stages on their CUDA image with --gpus all"
    )
    parser.set_defaults(do_command=do_command)


def resolve_values(pipeline: Pipeline, given: dict[str, str | None], profile: str | None = None) -> dict[str, str]:
    """Parameter values: the given ones over the profile's over the defaults. An empty ``run_id`` stays empty: the
    train stage derives it from its cache key and the runner hands it on to the stages after it."""
    values = pipeline.defaults()
    values.update(profile_values(profile, values))
    values.update({k: v for k, v in given.items() if v is not None and k in values})
    check_name(values["dataset"], "--dataset")
    if values.get("run_id"):
        check_name(values["run_id"], "--run-id")
    return values


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def print_summary(outcomes: list[StageOutcome], store: str, out=sys.stdout) -> None:
    """One block per stage: status, time, where its output is, and its headline numbers."""
    print("\nIRMSIA pipeline summary", file=out)
    print(f"  store: {store}", file=out)
    for o in outcomes:
        if o.exit_code != 0:
            print(f"  {o.name:<9} FAILED (exit {o.exit_code}) after {o.duration_s:.1f}s", file=out)
            continue
        result = o.result or {}
        state = "cached" if result.get("cached") else "done"
        print(f"  {o.name:<9} {state:<6} {o.duration_s:6.1f}s  {result.get('prefix', '')}", file=out)
        for key, value in (result.get("summary") or {}).items():
            print(f"      {key}: {_fmt(value)}", file=out)
        if o.metrics:
            print(f"      {_io_line(o.metrics)}", file=out)


def _bytes(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KiB", "MiB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GiB"


def _io_line(metrics: dict[str, float]) -> str:
    """Items and bytes from the stage's metrics file: ``items 12, read 1.2 MiB, wrote 340 B``."""
    return (
        f"items {metrics.get('irmsia_stage_items_total', 0):.0f}, "
        f"read {_bytes(metrics.get('irmsia_stage_bytes_read_total', 0))}, "
        f"wrote {_bytes(metrics.get('irmsia_stage_bytes_written_total', 0))}"
    )


def set_arguments(argv: list[str]) -> list[str]:
    """``argv`` without flags whose value is empty: what a person needs to see of a stage's command line."""
    shown: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i].startswith("--") and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            if argv[i + 1] != "":
                shown += argv[i : i + 2]
            i += 2
        else:
            shown.append(argv[i])
            i += 1
    return shown


def local_run_name(values: dict[str, str], pipeline: Pipeline = PIPELINE) -> str:
    """A stable name for a local run without a given run id: the dataset and a hash of every parameter value (a
    secret one by its identity: a fast hash of a URL's password must not end up in a name)."""
    secret = {p for s in pipeline.stages for flag, _ in s.secret_flags for p in s.parameters_of(flag)}
    hashed = {k: url_identity(v) if k in secret and v else v for k, v in values.items()}
    return f"{values['dataset'][:40].rstrip('-._')}-{sha256_json(hashed)[:10]}"


def do_command(args: argparse.Namespace) -> int:
    given = {p.name: getattr(args, p.name) for p in PIPELINE.parameters}
    values = resolve_values(PIPELINE, given, args.profile)
    store = args.store or os.environ.get("IRMSIA_STORE") or DEFAULT_STORE
    if args.from_stage and args.from_stage not in {s.name for s in PIPELINE.stages}:
        raise UsageError(f"--from {args.from_stage!r}: not a stage")

    def announce(stage: StageSpec, argv: list[str]) -> None:
        print(f"==> {stage.name}: {stage.entrypoint} {' '.join(set_arguments(argv))}", file=sys.stderr, flush=True)

    executor: Executor = ProcessExecutor()
    if args.executor == "docker":
        executor = DockerExecutor(tag=args.image_tag, registry=args.image_registry, gpu=args.gpus)
    outcomes = run_pipeline(
        PIPELINE,
        values,
        store=store,
        from_stage=args.from_stage,
        force=args.force,
        workflow_id=f"local-{values['run_id'] or local_run_name(values)}",
        on_stage=announce,
        executor=executor,
    )
    print_summary(outcomes, store)
    return outcomes[-1].exit_code if outcomes else 0
