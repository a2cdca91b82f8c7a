"""``irmsia menu`` in a real pseudo-terminal (pexpect): it draws, answers the keys a terminal sends, and quits
with exit 0."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pexpect = pytest.importorskip("pexpect")
IRMSIA = Path(sys.executable).with_name("irmsia")
F2 = "\x1bOQ"  # what an xterm sends for F2
CTRL_Q = "\x11"


def test_menu_draws_switches_tabs_and_quits_in_a_terminal(tmp_path):
    # GIVEN the menu started in a 140x45 terminal on an empty store
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "45"}
    child = pexpect.spawn(str(IRMSIA), ["menu", "--store", str(tmp_path / "store")], env=env,
                          dimensions=(45, 140), encoding="utf-8", timeout=60)  # fmt: skip
    try:
        # THEN it draws its title, the store and the Collect tab
        child.expect("IRMSIA Pipeline")
        child.expect("Collect")
        # WHEN F2 is pressed, THEN the Datasets tab's actions are drawn
        child.send(F2)
        child.expect("Scan & index")
        # WHEN ctrl+q is pressed, THEN it ends with exit 0
        child.send(CTRL_Q)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
