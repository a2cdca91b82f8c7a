"""Named sets of parameter values for a kind of run, stated once and used by ``irmsia run``, ``irmsia submit``,
the schedules in ``irmsia.yaml``, ``make demo`` and the quick start.

The stages' own option defaults are the defaults for real data (``densenet121`` at 224 px for 10 epochs); a
profile says what differs for one purpose. ``demo`` trains the built-in synthetic dataset in about half a minute
on two CPU cores (val accuracy about 0.98), which is what a first run and a CI run need.
"""

from __future__ import annotations

from collections.abc import Mapping

from jobs.core.errors import UsageError

PROFILES: dict[str, dict[str, str]] = {
    "demo": {"source": "demo", "dataset": "demo", "epochs": "5", "image_size": "64", "batch_size": "16"},
}


def profile_values(name: str | None, known: Mapping[str, object]) -> dict[str, str]:
    """The values of profile ``name`` (none for ``None``); ``UsageError`` for an unknown profile, and a profile
    naming a parameter the pipeline does not have is a bug caught here."""
    if not name:
        return {}
    if name not in PROFILES:
        raise UsageError(f"--profile {name!r}: use one of {', '.join(PROFILES)}")
    values = PROFILES[name]
    if unknown := sorted(set(values) - set(known)):
        raise ValueError(f"profile {name}: {unknown} are not pipeline parameters")
    return dict(values)
