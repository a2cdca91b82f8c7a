"""Stage processes that file permissions apply to, for tests of permission errors (root reads everything).

As root the process keeps its user but loses the two capabilities that bypass permission checks on reads
(``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``): dropped from the bounding set before ``exec``, so the new program
never gets them, and a ``chmod 000`` file or folder is then as unreadable to it as to any owner without the bits.
As anyone else the process runs unchanged.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _drop_read_override() -> None:
    """In the child before ``exec``: remove the permission-bypassing capabilities from the bounding set."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_stage(module: str, argv: Sequence[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -I -m <module> <argv>`` with file permissions enforced; stdout and stderr captured as text."""
    env = {**os.environ, "IRMSIA_LOG_FORMAT": "text"}
    env.pop("IRMSIA_RESULT_FILE", None)
    return subprocess.run([sys.executable, "-I", "-m", module, *argv], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300, check=False,
                          preexec_fn=_drop_read_override if os.geteuid() == 0 else None)  # fmt: skip
