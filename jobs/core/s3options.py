"""How long the S3 store waits for a silent endpoint, and how often it tries again: the bounds that turn a stalled
S3 server into exit 75 within a minute instead of a stage hung for many minutes.

botocore's defaults (60 s to connect, 60 s per read, 5 attempts) kept a stage waiting about six minutes on an
endpoint that accepts connections but never answers (a SIGSTOPped server, a black-holed proxy). Environment
(read here, nowhere else): ``IRMSIA_S3_CONNECT_TIMEOUT`` (seconds, default 5), ``IRMSIA_S3_READ_TIMEOUT``
(seconds to wait for each response or chunk, default 15), ``IRMSIA_S3_ATTEMPTS`` (tries per request, the first
included, default 3). With the defaults a stall ends in at most about 3 x 15 s plus botocore's backoff (under 7 s).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from jobs.core.errors import UsageError


@dataclass(frozen=True, kw_only=True)
class S3Options:
    """Timeouts and retry budget of every S3 request."""

    connect_timeout_s: float = 5.0
    read_timeout_s: float = 15.0
    attempts: int = 3

    def __post_init__(self) -> None:
        for name, value in (("IRMSIA_S3_CONNECT_TIMEOUT", self.connect_timeout_s),
                            ("IRMSIA_S3_READ_TIMEOUT", self.read_timeout_s)):  # fmt: skip
            if not (math.isfinite(value) and 0 < value <= 3600):
                raise UsageError(f"{name} {value!r}: use a number of seconds between 0 and 3600")
        if not 1 <= self.attempts <= 20:
            raise UsageError(f"IRMSIA_S3_ATTEMPTS {self.attempts!r}: use a whole number from 1 to 20")


def s3_options_from_env(env: Mapping[str, str]) -> S3Options:
    """``S3Options`` from the ``IRMSIA_S3_*`` variables (unset or empty: the default); a ``UsageError`` names a
    bad one."""
    defaults = S3Options()

    def number(name: str, default: float, kind: type) -> float:
        text = (env.get(name) or "").strip()
        if not text:
            return default
        try:
            return kind(text)
        except ValueError as exc:
            raise UsageError(f"{name} {text!r}: expected a number") from exc

    return S3Options(
        connect_timeout_s=number("IRMSIA_S3_CONNECT_TIMEOUT", defaults.connect_timeout_s, float),
        read_timeout_s=number("IRMSIA_S3_READ_TIMEOUT", defaults.read_timeout_s, float),
        attempts=int(number("IRMSIA_S3_ATTEMPTS", defaults.attempts, int)),
    )
