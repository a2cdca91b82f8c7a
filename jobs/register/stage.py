"""The register stage: a sealed training run in, the next version of a model out (see ``registration.py``).

Unlike the other stages it cannot plan its output prefix up front (the version folder is known only once a
number is claimed) and its cache is the ledger (the same run registered again is that version), so it implements
``Stage.execute`` itself; ``registration.register`` holds the logic and its order of writes.
"""

from __future__ import annotations

from jobs.core.stage import Stage, StageResult
from jobs.core.store import open_store
from jobs.register.registration import register
from jobs.register.settings import RegisterSettings


class RegisterStage(Stage[RegisterSettings]):
    """``runs/<run-id>/`` -> ``registry/<model-name>/<version>/`` plus its ledger entry and alias moves."""

    name = "register"
    settings_type = RegisterSettings

    def execute(self, settings: RegisterSettings) -> StageResult:
        return StageResult(*register(open_store(settings.common.store, s3=settings.common.s3), settings))


STAGE = RegisterStage()


def run(settings: RegisterSettings) -> StageResult:
    """Register ``settings.run_id``: the version's manifest, and whether the run was already registered."""
    return STAGE.execute(settings)
