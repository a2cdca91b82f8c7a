"""``irmsia-train`` / ``python -m jobs.train``: train a classifier on a split (see ``jobs.train.stage``).

With ``--nproc-per-node N`` (N > 1) the process starts N training processes on this node and waits for them
(``jobs.train.distributed.launch``); under ``torchrun`` (``RANK``/``WORLD_SIZE`` set) it is one of them.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Sequence


def _requested_processes(argv: Sequence[str]) -> int:
    """``--nproc-per-node`` of ``argv`` (flag or ``--config``); 1 when the arguments do not parse (the stage then
    reports why, once: the probe prints nothing)."""
    from jobs.train.stage import STAGE

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            settings = STAGE.parse(argv, os.environ)
    except (Exception, SystemExit):
        return 1
    return 1 if settings.sealed_only else int(settings.nproc_per_node)  # --sealed-only trains nothing


def run_process(argv: Sequence[str]) -> int:
    """This process's part: the stage itself on rank 0 (one process, or the leader), a follower otherwise."""
    from jobs.core.entrypoint import stage_main
    from jobs.train.distributed import world_from_env
    from jobs.train.stage import STAGE, follow_main

    if world_from_env().leader:
        return stage_main(STAGE, argv)
    return follow_main(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the train stage; returns the contract's exit code."""
    from jobs.core.cpus import openmp_defaults
    from jobs.train.distributed import launch, world_from_env

    args = list(sys.argv[1:] if argv is None else argv)
    distributed = world_from_env().distributed
    nproc = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) if distributed else _requested_processes(args)
    # Before torch loads OpenMP (inherited by the processes launch starts): the team sized to this process's share
    # of the usable CPUs, idle threads spinning briefly on a quiet host and sleeping on a busy one.
    os.environ.update(openmp_defaults(os.environ, processes=nproc))
    if not distributed and nproc > 1:
        return launch(args, nproc)
    return run_process(args)


if __name__ == "__main__":
    sys.exit(main())
