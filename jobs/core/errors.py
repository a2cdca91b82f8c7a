"""The errors a stage can end with; each maps to one exit code of the stage contract.

Exit codes: 0 success or cache hit, 2 bad usage or configuration, 3 bad data, 75 transient (retry is safe).
Raise these with a one-line message that names the field, file or key and says what to do.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes every stage uses; Argo retries only ``TRANSIENT``."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    DATA = 3
    INTERRUPTED = 130
    TRANSIENT = 75


class IrmsiaError(Exception):
    """Base class of every error a stage reports on one line and turns into an exit code."""

    exit_code: ExitCode = ExitCode.FAILURE


class UsageError(IrmsiaError):
    """A flag, environment variable or config value is wrong: fix the one the message names and rerun."""

    exit_code = ExitCode.USAGE


class DataError(IrmsiaError):
    """The input exists but cannot be used (corrupt, empty, inconsistent): fix or replace the named input.

    Rerunning without changing the input fails the same way, so orchestrators must not retry it.
    """

    exit_code = ExitCode.DATA


class ObjectNotFound(DataError):
    """A key the stage needs is not in the store: run the stage that produces it first, or check --store."""


class ChecksumMismatch(DataError):
    """An object's bytes do not match its recorded SHA-256: the object is corrupt; rerun its producing stage."""


class TransientError(IrmsiaError):
    """Storage or network was unavailable: nothing was half-written, and rerunning the stage is safe."""

    exit_code = ExitCode.TRANSIENT
