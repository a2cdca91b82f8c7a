"""Retries of transient failures only: the stage contract's exit 75 or a lost pod, never bad usage or data.

A pod that is preempted, evicted or deleted ends in Argo's ``Error`` phase (no exit code of the stage's own);
a stage that fails ends ``Failed`` with its exit code. Retrying ``Error`` is what lets ``--resume auto`` continue
a preempted training run from its last checkpoint; a stage's exit 2 or 3 (``Failed``) is never retried.
"""

from __future__ import annotations

from hera.workflows import RetryStrategy
from hera.workflows.models import Backoff, IntOrString
from hera.workflows.models import RetryStrategy as RetryStrategyModel

from jobs.core.errors import ExitCode
from pipeline.config import RetryConfig

# Argo evaluates this after each failed attempt; exit codes arrive as strings (empty when the pod was lost, so the
# status test comes first and short-circuits).
TRANSIENT_ONLY = f"lastRetry.status == 'Error' || asInt(lastRetry.exitCode) == {int(ExitCode.TRANSIENT)}"


def transient_retry(config: RetryConfig) -> RetryStrategyModel:
    """Retry up to ``config.limit`` times with exponential backoff when the stage exited 75."""
    return RetryStrategy(
        limit=config.limit,
        retry_policy="Always",  # the expression decides; OnFailure alone would also retry exit 2 and 3
        expression=TRANSIENT_ONLY,
        backoff=Backoff(
            duration=config.backoff.duration,
            factor=IntOrString(config.backoff.factor),
            max_duration=config.backoff.max_duration,
        ),
    ).build()
