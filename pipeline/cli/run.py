"""``irmsia run``: execute the whole DAG locally and print a short summary of what each stage produced.

``--spec FILE`` runs a pipeline spec's DAG instead (several datasets merged, ``pipeline.spec``); ``--jobs N`` runs
up to N stages at a time where the DAG allows it (a spec's per-dataset branches)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Any

from jobs.core.errors import UsageError
from jobs.core.store import open_store
from jobs.stages import IMAGE_REGISTRY, IMAGE_TAG
from pipeline.argo.size import NODE_LIMIT, STATUS_LIMIT_BYTES
from pipeline.dag import PIPELINE, Pipeline, StageSpec
from pipeline.docker_executor import DockerExecutor
from pipeline.history import now_iso, record_run
from pipeline.plan import plan
from pipeline.profiles import PROFILES
from pipeline.runner import Executor, ProcessExecutor, StageOutcome, run_pipeline
from pipeline.secret_args import set_arguments
from pipeline.spec import load_spec, spec_pipeline
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
    add_spec_argument(parser)
    parser.add_argument(
        "--from",
        dest="from_stage",
        metavar="STAGE",
        help="start at this stage (earlier stages' outputs must exist): "
        f"{', '.join(s.name for s in PIPELINE.stages)}, or a task of the --spec's DAG (index-<dataset>)",
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="run only the planning steps: print each sharded stage's shards and the run's size in Argo, then stop",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, metavar="N", help="run up to N stages at a time where the DAG allows (default 1)"
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


def add_spec_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec",
        metavar="FILE",
        help="a pipeline spec: several datasets, each from its source, merged, trained and registered "
        "(see examples/); the stage parameter flags do not apply to it",
    )


def spec_from_args(args: argparse.Namespace) -> tuple[Pipeline, dict[str, str]] | None:
    """The ``--spec`` file's DAG and parameter values (``None`` without one); a parameter flag given with it is a
    usage error, since the spec says every value."""
    if not args.spec:
        return None
    if given := [p.flag for p in PIPELINE.parameters if getattr(args, p.name, None) is not None]:
        raise UsageError(f"--spec {args.spec}: {', '.join(given)} do not apply to a spec; set them in the file")
    if getattr(args, "profile", None):
        raise UsageError(f"--spec {args.spec}: --profile does not apply to a spec; set the values in the file")
    pipeline = spec_pipeline(load_spec(args.spec))
    return pipeline, pipeline.defaults()


def print_plan(
    pipeline: Pipeline, values: dict[str, str], *, store: str, env: dict[str, str], executor: Executor, jobs: int,
    out: Any = None,
) -> int:  # fmt: skip
    """``irmsia run --plan``: each planned task's shards, then the run's estimated size against Argo's limits."""
    out = out or sys.stdout
    planned, size = plan(pipeline, values, store=store, env={**env, "IRMSIA_LOG_FORMAT": "json"}, executor=executor,
                         jobs=jobs)  # fmt: skip
    print(f"\nplan of {pipeline.name} (store {store})", file=out)
    for task in planned:
        if task.error:
            print(f"  {task.task:<24} not planned: {task.error}", file=out)
            continue
        size_bytes = float(task.summary.get("bytes") or 0)
        if "unit" in task.summary:  # a collect plan: the source's units (series, archives)
            what = f"{task.summary.get('units')} {task.summary['unit']}, {_bytes(size_bytes)}"
        elif "files" in task.summary:
            what = f"{task.summary['files']} files, {_bytes(size_bytes)}"
        else:
            what = "the whole dataset in one"  # a source collected in one shard, or a dataset sealed already
        print(f"  {task.task:<24} {len(task.shards)} shard(s): {what}", file=out)
    verdict = "far below Argo's limits" if size.within_limits else "TOO CLOSE to Argo's limits: plan bigger shards"
    print(f"  workflow: {size.nodes} nodes, node status about {_bytes(size.status_bytes)} "
          f"(limits {STATUS_LIMIT_BYTES >> 20} MiB, {NODE_LIMIT} nodes): {verdict}", file=out)  # fmt: skip
    return 0


def do_command(args: argparse.Namespace) -> int:
    chosen = spec_from_args(args)
    pipeline, values = chosen if chosen is not None else (PIPELINE, values_from_args(args))
    store = args.store
    if args.from_stage and args.from_stage not in {s.name for s in pipeline.stages}:
        raise UsageError(
            f"--from {args.from_stage!r}: not a stage; use one of {', '.join(s.name for s in pipeline.stages)}"
        )
    if args.from_stage and (fan_out := pipeline.stage(args.from_stage).fan_out):
        raise UsageError(
            f"--from {args.from_stage}: it runs once per item {fan_out} reports (shards, folds); start at {fan_out}"
        )
    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: use 1 or more")
    executor: Executor = ProcessExecutor()
    if args.executor == "docker":
        executor = DockerExecutor(tag=args.image_tag, registry=args.image_registry, gpu=args.gpus)
    env = {**os.environ, "IRMSIA_LOG_FORMAT": args.log_format}
    if args.plan:
        return print_plan(pipeline, values, store=store, env=env, executor=executor, jobs=args.jobs)
    workflow_id = f"local-{values['run_id'] or local_run_name(values, pipeline)}"
    started_at = now_iso()
    run = functools.partial(
        run_pipeline, pipeline, values, store=store, from_stage=args.from_stage, force=args.force,
        workflow_id=workflow_id, executor=executor, env=env, jobs=args.jobs,
    )  # fmt: skip
    if wants_live_view(args.log_format):
        from pipeline.cli.run_view import RunView

        stages = pipeline.downstream_of(args.from_stage) if args.from_stage else pipeline.order()
        with RunView([s.name for s in stages]) as view:
            outcomes = run(observer=view)
    else:

        def announce(stage: StageSpec, argv: list[str]) -> None:
            print(f"==> {stage.name}: {stage.entrypoint} {' '.join(set_arguments(argv))}", file=sys.stderr, flush=True)

        outcomes = run(on_stage=announce)
    record_run(open_store(store), pipeline, workflow_id=workflow_id, started_at=started_at, values=values,
               outcomes=outcomes, from_stage=args.from_stage, force=args.force, executor=args.executor)  # fmt: skip
    print_summary(outcomes, store)
    return next((o.exit_code for o in outcomes if o.exit_code), 0)
