"""Stage arguments that never go on a command line: every user of the machine can read a process's argv (``ps``,
``/proc/<pid>/cmdline``), and ``docker run`` arguments end up in the engine's records too.

A ``--url`` may carry credentials (``https://user:PASSWORD@host/x.zip``, ``?token=…``), so the runner hands its
value to the stage in the environment (``IRMSIA_URL``, which the stage reads as the value of an empty ``--url``)
and leaves ``--url ""`` on the command line. What people are shown is the public form (``jobs.core.urls``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jobs.core.urls import URL_ENV, public_url

ENV_FLAGS = {"--url": URL_ENV}
"""Flags whose value travels in an environment variable (the stage reads it when the flag is empty)."""


@dataclass(frozen=True)
class StageInvocation:
    """One stage's arguments split into what its process gets and what people see."""

    argv: list[str]
    """The command-line arguments, with every ``ENV_FLAGS`` value emptied."""
    env: dict[str, str] = field(repr=False)
    """Variables to add to the stage's environment: each ``ENV_FLAGS`` variable, ``""`` when the flag is unset (so
    a value in the runner's own environment never leaks into a stage that was not given one)."""
    shown: list[str] = field(default_factory=list)
    """The arguments as printed: ``ENV_FLAGS`` values in their public form."""


def hand_over(argv: Sequence[str]) -> StageInvocation:
    """Move the values of ``ENV_FLAGS`` out of ``argv`` into environment variables."""
    args, shown = list(argv), list(argv)
    env = dict.fromkeys(ENV_FLAGS.values(), "")
    for i, arg in enumerate(args[:-1]):
        if arg in ENV_FLAGS:
            env[ENV_FLAGS[arg]] = args[i + 1]
            args[i + 1] = ""
            shown[i + 1] = public_url(shown[i + 1])
    return StageInvocation(argv=args, env=env, shown=shown)
