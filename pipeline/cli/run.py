"""``irmsia run``: execute the whole DAG locally and print a short summary of what each stage produced."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any

from jobs.core.errors import UsageError
from jobs.core.store import open_store
from jobs.stages import IMAGE_REGISTRY, IMAGE_TAG
from pipeline.dag import PIPELINE, StageSpec
from pipeline.docker_executor import DockerExecutor
from pipeline.history import now_iso, record_run
from pipeline.profiles import PROFILES
from pipeline.runner import Executor, ProcessExecutor, StageOutcome, run_pipeline
from pipeline.secret_args import set_arguments
from pipeline.values import local_run_name, resolve_values


def add_parameter_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per pipeline parameter, and ``--profile`` (``irmsia run``, ``irmsia status --explain``)."""
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


def values_from_args(args: argparse.Namespace) -> dict[str, str]:
    """The parameter values of parsed ``add_parameter_arguments`` flags (see ``resolve_values``)."""
    return resolve_values(PIPELINE, {p.name: getattr(args, p.name) for p in PIPELINE.parameters}, args.profile)


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the pipeline DAG locally", description=__doc__)
    add_parameter_arguments(parser)
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


def wants_live_view(log_format: str, stream: Any = None) -> bool:
    """The combined rich view on a terminal with text logs; plain stage output anywhere else."""
    stream = sys.stderr if stream is None else stream
    return log_format in ("auto", "text") and stream.isatty()


def do_command(args: argparse.Namespace) -> int:
    values = values_from_args(args)
    store = args.store
    if args.from_stage and args.from_stage not in {s.name for s in PIPELINE.stages}:
        raise UsageError(f"--from {args.from_stage!r}: not a stage")
    executor: Executor = ProcessExecutor()
    if args.executor == "docker":
        executor = DockerExecutor(tag=args.image_tag, registry=args.image_registry, gpu=args.gpus)
    env = {**os.environ, "IRMSIA_LOG_FORMAT": args.log_format}
    workflow_id = f"local-{values['run_id'] or local_run_name(values)}"
    started_at = now_iso()
    run = functools.partial(
        run_pipeline, PIPELINE, values, store=store, from_stage=args.from_stage, force=args.force,
        workflow_id=workflow_id, executor=executor, env=env,
    )  # fmt: skip
    if wants_live_view(args.log_format):
        from pipeline.cli.run_view import RunView

        stages = PIPELINE.downstream_of(args.from_stage) if args.from_stage else PIPELINE.order()
        with RunView([s.name for s in stages]) as view:
            outcomes = run(observer=view)
    else:

        def announce(stage: StageSpec, argv: list[str]) -> None:
            print(f"==> {stage.name}: {stage.entrypoint} {' '.join(set_arguments(argv))}", file=sys.stderr, flush=True)

        outcomes = run(on_stage=announce)
    record_run(open_store(store), PIPELINE, workflow_id=workflow_id, started_at=started_at, values=values,
               outcomes=outcomes, from_stage=args.from_stage, force=args.force, executor=args.executor)  # fmt: skip
    print_summary(outcomes, store)
    return outcomes[-1].exit_code if outcomes else 0
