"""Stages made of two functions, for tests of ``stage_main`` itself: ``CallableStage("index", parse, run)``.

``parse(argv, env)`` returns the settings (a ``StageSettings``) and ``run(settings)`` what ``execute`` returns (a
``StageResult``), so a test decides exactly what the stage does or raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jobs.core.settings import StageSettings, option
from jobs.core.stage import Stage, StageResult


@dataclass(frozen=True, kw_only=True)
class DatasetSettings(StageSettings):
    """Settings with a dataset (and an optional run id), labelled on every log line."""

    dataset: str = option("d", help="dataset")
    run_id: str | None = option(None, help="run id")
    fail: bool = option(False, help="make the stage fail")

    def log_fields(self) -> dict[str, str | None]:
        return {"dataset": self.dataset, "run_id": self.run_id}


class CallableStage(Stage[Any]):
    """A ``Stage`` whose ``parse`` and ``execute`` are the given functions."""

    settings_type = DatasetSettings

    def __init__(self, name: str, parse: Callable[[Sequence[str], Mapping[str, str]], Any],
                 run: Callable[[Any], StageResult]) -> None:  # fmt: skip
        self.name = name  # type: ignore[misc]
        super().__init__()
        self._parse, self._run = parse, run

    def parse(self, argv: Sequence[str], env: Mapping[str, str]) -> Any:
        return self._parse(argv, env)

    def execute(self, settings: Any) -> StageResult:
        return self._run(settings)
