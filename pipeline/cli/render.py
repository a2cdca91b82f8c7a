"""``irmsia render``: write the WorkflowTemplate and CronWorkflows for a configuration as YAML; with ``--spec FILE``
the WorkflowTemplate of a pipeline spec's DAG (``irmsia-<name>``: its datasets' collect and index in parallel)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.argo.render import render_files, write_files
from pipeline.cli.argo_options import add_config_argument, config_from_args
from pipeline.dag import PIPELINE
from pipeline.spec import load_spec, spec_pipeline


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "render", help="write the Argo YAML (WorkflowTemplate, CronWorkflows)", description=__doc__
    )
    add_config_argument(parser)
    parser.add_argument("--spec", metavar="FILE", help="render a pipeline spec's DAG (see examples/) instead")
    parser.add_argument("-o", "--output", type=Path, help="directory to write (a kustomize base); default: stdout")
    parser.set_defaults(do_command=do_command)


def do_command(args: argparse.Namespace) -> int:
    pipeline = spec_pipeline(load_spec(args.spec)) if args.spec else PIPELINE
    source = f"{args.config} and {args.spec}" if args.spec else str(args.config)
    files = render_files(config_from_args(args), source=source, pipeline=pipeline, schedules=not args.spec)
    if args.output is None:
        documents = [text for name, text in sorted(files.items()) if name != "kustomization.yaml"]
        sys.stdout.write("---\n".join(documents))
        return 0
    for path in write_files(files, args.output):
        print(path, file=sys.stderr)
    return 0
