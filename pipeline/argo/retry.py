"""Retries of transient failures only: the stage contract's exit 75, never bad usage (2) or bad data (3)."""

from __future__ import annotations

from hera.workflows import RetryStrategy
from hera.workflows.models import Backoff
from hera.workflows.models import RetryStrategy as RetryStrategyModel

from jobs.core.errors import ExitCode
from pipeline.config import RetryConfig

# Argo evaluates this after each failed attempt; exit codes arrive as strings.
TRANSIENT_ONLY = f"asInt(lastRetry.exitCode) == {int(ExitCode.TRANSIENT)}"


def transient_retry(config: RetryConfig) -> RetryStrategyModel:
    """Retry up to ``config.limit`` times with exponential backoff when the stage exited 75."""
    return RetryStrategy(
        limit=config.limit,
        retry_policy="Always",  # the expression decides; OnFailure alone would also retry exit 2 and 3
        expression=TRANSIENT_ONLY,
        backoff=Backoff(
            duration=config.backoff.duration,
            factor=config.backoff.factor,
            max_duration=config.backoff.max_duration,
        ),
    ).build()
