"""What the menu shows while a stage runs: a ``RunObserver`` that hands the stage's log lines and progress events
to the app's thread, and the parsing of the forms' free-form ``key=value`` options."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from jobs.core.errors import UsageError
from pipeline.dag import StageSpec
from pipeline.runner import StageOutcome


def parse_options(text: str) -> dict[str, str]:
    """``"patients=12 modality=CT"`` -> ``{"patients": "12", "modality": "CT"}``; names as the stage's options
    (``max-patients`` and ``max_patients`` alike). The stage's settings check every value."""
    options: dict[str, str] = {}
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"options {text!r}: {exc}") from exc
    for word in words:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise UsageError(f"option {word!r}: use name=value, e.g. patients=12")
        options[name.strip().lstrip("-").replace("-", "_")] = value
    return options


class MenuObserver:
    """Forwards a stage process's activity to the app: ``post(kind, stage, payload)`` runs on the app's thread."""

    def __init__(self, post: Callable[[str, str, Any], None]) -> None:
        self.post = post

    def started(self, stage: StageSpec, shown: list[str]) -> None:
        self.post("started", stage.name, shown)

    def output(self, stage: StageSpec, line: str) -> None:
        self.post("line", stage.name, line)

    def progress(self, stage: StageSpec, event: dict[str, Any]) -> None:
        self.post("progress", stage.name, event)

    def finished(self, stage: StageSpec, outcome: StageOutcome) -> None:
        self.post("finished", stage.name, outcome)
