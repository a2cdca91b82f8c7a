"""strace for fault injection: kill a process at its N-th rename or link, as a power cut or an OOM kill would.

``strace -f -e inject=rename,renameat,renameat2,link,linkat:signal=KILL:when=N`` stops the tracee on entry to
that call and delivers SIGKILL, so the call never happens. The count is per thread (strace keeps one per traced
task); the stages perform every rename and link in their main thread, which ``count_calls`` checks.
Debian's strace is installed with apt-get when missing (as root); tests skip only when it cannot be.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

CALLS = "rename,renameat,renameat2,link,linkat"
_CALL_LINE = re.compile(r"^(\d+)\s+(?:rename|renameat|renameat2|link|linkat)\(")


@functools.cache
def strace_binary() -> tuple[str | None, str]:
    """The strace executable (installing Debian's package if needed), or ``None`` and why it is unavailable."""
    found = shutil.which("strace")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-q", "strace"], capture_output=True, timeout=600, check=False,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})  # fmt: skip
        found = shutil.which("strace")
    if found is None:
        return None, "strace is not installed and could not be installed (apt-get install strace)"
    probe = subprocess.run([found, "-f", "-o", os.devnull, "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return None, f"strace cannot trace here (ptrace not permitted?): {probe.stderr.strip()[:200]}"
    return found, ""


def count_calls(strace: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, trace: Path) -> tuple[int, int]:
    """Run ``argv`` to the end under strace; returns (exit code, renames and links made by its main thread).

    Raises ``AssertionError`` if another thread or process made one: then kill points would not be addressable.
    """
    done = subprocess.run([strace, "-f", "-qq", "-o", str(trace), "-e", f"trace={CALLS}", *argv], env=dict(env),
                          cwd=cwd, capture_output=True, check=False, timeout=600)  # fmt: skip
    callers = Counter(m.group(1) for line in trace.read_text().splitlines() if (m := _CALL_LINE.match(line)))
    assert len(callers) <= 1, f"renames/links from several tasks {dict(callers)}: kill points are ambiguous"
    return done.returncode, sum(callers.values())


def kill_at(strace: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path, n: int) -> int:
    """Run ``argv`` under strace, SIGKILLed on entry to its ``n``-th rename or link; returns the exit code
    (``-9`` when the kill happened)."""
    inject = f"inject={CALLS}:signal=KILL:when={n}"
    done = subprocess.run([strace, "-f", "-qq", "-o", os.devnull, "-e", f"trace={CALLS}", "-e", inject, *argv],
                          env=dict(env), cwd=cwd, capture_output=True, check=False, timeout=600)  # fmt: skip
    return done.returncode
