"""``irmsia templates apply``: create or update the WorkflowTemplate and the CronWorkflows on an Argo Server."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace

from pipeline.argo.cron import build_cron_workflows
from pipeline.argo.workflow_template import build_workflow_template
from pipeline.cli.argo_options import add_server_arguments, config_from_args, server_from_args


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("templates", help="manage the pipeline's templates on Argo", description=__doc__)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = actions.add_parser("apply", help="create or update the WorkflowTemplate and CronWorkflows")
    add_server_arguments(apply)
    apply.set_defaults(do_command=do_command)


def do_command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    server = server_from_args(args, config)
    config = replace(config, namespace=server.namespace)
    template = build_workflow_template(config)
    print(f"WorkflowTemplate {template.name}: {server.apply_template(template)}", file=sys.stderr)
    for cron in build_cron_workflows(config):
        print(f"CronWorkflow {cron.name}: {server.apply_cron(cron)}", file=sys.stderr)
    return 0
