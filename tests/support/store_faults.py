"""Faults at one exact store write, on a real store: a process killed there, a store failing from there on, or
another writer running to completion right there.

``kill_at(pattern, module, argv)`` runs ``python -m tests.support.store_faults`` which patches the real backends
(``FileStore``, ``S3Store``) so the process SIGKILLs itself the moment its first write whose key matches
``pattern`` has reached the store, then runs the stage's ``main``: a pod killed at exactly that point. The
wrappers delegate every call to a real store and act only at the write named.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.core.errors import TransientError
from jobs.core.store import Store

REPO = Path(__file__).resolve().parents[2]
WRITES = ("put_file", "put_bytes", "put_parts", "put_if_absent", "move_file")


def kill_at(pattern: str, module: str, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m <module>`` with ``argv``, SIGKILLed right after its first write to a key matching ``pattern``."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "IRMSIA_LOG_FORMAT": "json"}
    cmd = [sys.executable, "-m", "tests.support.store_faults", pattern, module, *argv]
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def _killing(method: Callable[..., Any], pattern: re.Pattern[str]) -> Callable[..., Any]:
    def write_then_die(self: Store, key: str, *args: Any, **kwargs: Any) -> Any:
        result = method(self, key, *args, **kwargs)
        if pattern.search(key) and result is not False:  # put_if_absent returns False when nothing was written
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    return write_then_die


class _Wrapper:
    """A real store, every call delegated; subclasses hook the top-level writes the code under test makes."""

    def __init__(self, inner: Store, pattern: str) -> None:
        self._inner = inner
        self._pattern = re.compile(pattern)
        self.uri = inner.uri

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _write(self, op: str, key: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._inner, op)(key, *args, **kwargs)

    def put_file(self, key: str, *args: Any, **kwargs: Any) -> Any:
        return self._write("put_file", key, *args, **kwargs)

    def put_bytes(self, key: str, *args: Any, **kwargs: Any) -> Any:
        return self._write("put_bytes", key, *args, **kwargs)

    def put_parts(self, key: str, *args: Any, **kwargs: Any) -> Any:
        return self._write("put_parts", key, *args, **kwargs)

    def put_if_absent(self, key: str, *args: Any, **kwargs: Any) -> Any:
        return self._write("put_if_absent", key, *args, **kwargs)

    def move_file(self, key: str, *args: Any, **kwargs: Any) -> Any:
        return self._write("move_file", key, *args, **kwargs)

    def delete(self, key: str) -> None:
        self._write("delete", key)

    def delete_prefix(self, prefix: str) -> int:
        return Store.delete_prefix(self, prefix)  # type: ignore[arg-type]  # through our delete


class FailAfter(_Wrapper):
    """Every write or delete after the first write to a key matching ``pattern`` raises ``TransientError``
    (S3 went away at that moment); ``failed`` counts them."""

    def __init__(self, inner: Store, pattern: str) -> None:
        super().__init__(inner, pattern)
        self.tripped = False
        self.failed = 0

    def _write(self, op: str, key: str, *args: Any, **kwargs: Any) -> Any:
        if self.tripped:
            self.failed += 1
            raise TransientError(f"{op} {key!r}: the store is unavailable (injected)")
        result = super()._write(op, key, *args, **kwargs)
        self.tripped = bool(self._pattern.search(key)) and result is not False and op != "delete"
        return result


class Interleave(_Wrapper):
    """Runs ``action`` (another writer, to completion) once: just ``before`` or after the first write to a key
    matching ``pattern``."""

    def __init__(self, inner: Store, pattern: str, action: Callable[[], Any], before: bool) -> None:
        super().__init__(inner, pattern)
        self._action = action
        self._before = before
        self.ran = False

    def _write(self, op: str, key: str, *args: Any, **kwargs: Any) -> Any:
        hit = not self.ran and op != "delete" and bool(self._pattern.search(key))
        if hit and self._before:
            self.ran = True
            self._action()
        result = super()._write(op, key, *args, **kwargs)
        if hit and not self._before:
            self.ran = True
            self._action()
        return result


def main(argv: list[str]) -> int:
    pattern, module, rest = re.compile(argv[0]), argv[1], argv[2:]
    from jobs.core.filestore import FileStore
    from jobs.core.s3store import S3Store

    for cls in (FileStore, S3Store):
        for name in WRITES:
            if name in vars(cls):
                setattr(cls, name, _killing(vars(cls)[name], pattern))
    return int(importlib.import_module(f"{module}.__main__").main(rest))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
