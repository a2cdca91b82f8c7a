"""Stage arguments that never go on a command line: every user of the machine can read a process's argv (``ps``,
``/proc/<pid>/cmdline``), and ``docker run`` arguments end up in the engine's records too.

An option declared ``secret`` with an environment variable (``--url``, which may carry credentials:
``https://user:PASSWORD@host/x.zip``, ``?token=…``) is handed to the stage in that variable (which the stage reads
when the flag is empty), and the command line keeps ``--url ""``. What people are shown is the public form
(``jobs.core.urls``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jobs.core.urls import public_url
from pipeline.dag import StageSpec


@dataclass(frozen=True)
class StageInvocation:
    """One stage's arguments split into what its process gets and what people see."""

    argv: list[str]
    """The command-line arguments, with every secret flag's value emptied."""
    env: dict[str, str] = field(repr=False)
    """Variables to add to the stage's environment: each secret flag's variable, ``""`` when the flag is unset (so
    a value in the runner's own environment never leaks into a stage that was not given one)."""
    shown: list[str] = field(default_factory=list)
    """The arguments as printed: secret values in their public form."""


def hand_over(stage: StageSpec, argv: Sequence[str]) -> StageInvocation:
    """Move the values of the stage's secret flags out of ``argv`` into their environment variables."""
    by_flag = dict(stage.secret_flags)
    args, shown = list(argv), list(argv)
    env = dict.fromkeys(by_flag.values(), "")
    for i, arg in enumerate(args[:-1]):
        if arg in by_flag:
            env[by_flag[arg]] = args[i + 1]
            args[i + 1] = ""
            shown[i + 1] = public_url(shown[i + 1])
    return StageInvocation(argv=args, env=env, shown=shown)


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
