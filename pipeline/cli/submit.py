"""``irmsia submit``: start a run of the ``irmsia-pipeline`` WorkflowTemplate on an Argo Server; with ``--spec FILE``,
apply the spec's WorkflowTemplate (``irmsia-<name>``, rendered from the configuration) and start a run of it."""

from __future__ import annotations

import argparse
import sys

from jobs.core.errors import UsageError
from pipeline.argo.workflow import parse_parameters
from pipeline.argo.workflow_template import build_workflow_template
from pipeline.cli.argo_options import add_server_arguments, optional_config_from_args, server_from_args
from pipeline.config import DeploymentConfig
from pipeline.dag import PIPELINE
from pipeline.profiles import PROFILES, profile_values
from pipeline.spec import load_spec, spec_pipeline
from pipeline.values import require_dataset


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("submit", help="submit a pipeline run to Argo Workflows", description=__doc__)
    add_server_arguments(parser)
    parser.add_argument(
        "-p", "--parameter", dest="parameters", action="append", default=[], metavar="KEY=VALUE",
        help="workflow parameter, repeatable (-p dataset=demo -p epochs=5)",
    )  # fmt: skip
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        help="start from a named set of parameter values (demo: the quick CPU demo); -p wins",
    )
    parser.add_argument(
        "--spec", metavar="FILE", help="a pipeline spec (see examples/): apply its WorkflowTemplate, then run it"
    )
    parser.add_argument("--wait", action="store_true", help="wait for the run to finish; exit 1 unless it succeeded")
    parser.set_defaults(do_command=do_command)


def do_command(args: argparse.Namespace) -> int:
    if args.spec:
        if args.profile:
            raise UsageError(f"--spec {args.spec}: --profile does not apply to a spec; set the values in the file")
        pipeline = spec_pipeline(load_spec(args.spec))
        parameters = parse_parameters(args.parameters, pipeline)
        config = optional_config_from_args(args)
        server = server_from_args(args, config)
        template_config = config if config is not None else DeploymentConfig(namespace=server.namespace)
        state = server.apply_template(build_workflow_template(template_config, pipeline))
        print(f"{state} WorkflowTemplate {server.namespace}/{pipeline.name}", file=sys.stderr)
        created = server.submit(parameters, pipeline)
    else:
        parameters = {**profile_values(args.profile, PIPELINE.defaults()), **parse_parameters(args.parameters)}
        require_dataset(parameters, named="dataset" in parameters)
        server = server_from_args(args, optional_config_from_args(args))
        created = server.submit(parameters)
    name = created.metadata.name or ""
    print(f"submitted {server.namespace}/{name}", file=sys.stderr)
    print(name)
    if not args.wait:
        return 0
    phase = server.wait(name)
    print(f"{server.namespace}/{name}: {phase}", file=sys.stderr)
    return 0 if phase == "Succeeded" else 1
