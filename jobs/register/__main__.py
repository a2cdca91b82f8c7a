"""``irmsia-register`` / ``python -m jobs.register``: register a trained run as a new model version."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs.core.entrypoint import stage_main
from jobs.register.registration import run
from jobs.register.settings import parse_settings


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("register", argv, parse_settings, run)


if __name__ == "__main__":
    sys.exit(main())
