"""The kill-point campaign: each stage is killed (SIGKILL) on entry to each rename or link it performs, then rerun;
the rerun must seal outputs byte-identical to an uninterrupted run's and leave no scratch behind.

Real stage processes on a folder store; the kill is injected by strace (``tests/support/strace.py``), so the
process dies exactly where a power cut or an OOM kill could stop it: between two steps of a write, before an
object's rename into place, before the manifest's. A case *holds* when (1) what the killed run left is never a
wrong seal (no manifest, or one identical to the reference), (2) the plain rerun exits 0, (3) every file under
the stage's prefix then has the reference bytes, the manifest lists the reference outputs and every output reads
back verified, (4) the result file matches, and (5) nothing is left in the store's ``.tmp/``.

``IRMSIA_FAULT_KILL_POINTS``: ``all`` for every kill point, or how many per stage (default 8: the first, the last
and evenly spaced ones between; deterministic). ``IRMSIA_FAULT_REPORT=PATH`` appends the table as Markdown.
Rerun with ``pytest -m fault tests/jobs/test_kill_points.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jobs.core.manifest import read_manifest
from jobs.core.store import open_store
from tests.support.strace import count_calls, kill_at, strace_binary

pytestmark = pytest.mark.fault


@dataclass(frozen=True)
class StageCase:
    name: str
    argv: tuple[str, ...]
    prefix: str
    after: str | None
    """The stage whose sealed store this one starts from (``None``: an empty store)."""


CASES = (
    StageCase("collect", ("jobs.collect", "--source", "demo", "--dataset", "demo", "--patients", "8"), "raw/demo/",
              None),
    StageCase("index", ("jobs.index", "--dataset", "demo", "--workers", "1"), "index/demo/", "collect"),
    StageCase("split", ("jobs.split", "--dataset", "demo"), "splits/demo/", "index"),
)  # fmt: skip


@dataclass
class Row:
    stage: str
    kill_points: int
    cases: int = 0
    held: int = 0
    failures: list[str] = field(default_factory=list)


ROWS: dict[str, Row] = {}


def kill_points(total: int) -> list[int]:
    """Which of the ``total`` kill points to try: all, or ``IRMSIA_FAULT_KILL_POINTS`` spread evenly."""
    wanted = os.environ.get("IRMSIA_FAULT_KILL_POINTS", "8").strip().lower()
    if wanted == "all" or total <= int(wanted):
        return list(range(1, total + 1))
    k = int(wanted)
    return sorted({1, total} | {round(1 + i * (total - 1) / (k - 1)) for i in range(k)})


def _env(store: Path, result: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IRMSIA_")}
    return {**env, "IRMSIA_STORE": str(store), "IRMSIA_LOG_FORMAT": "json", "IRMSIA_RESULT_FILE": str(result)}


def _command(case: StageCase) -> list[str]:
    return [sys.executable, "-I", "-m", *case.argv]


def _run(case: StageCase, store: Path, result: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(_command(case), env=_env(store, result), cwd=store.parent, capture_output=True,
                          timeout=600, check=False)  # fmt: skip


def sealed(store: Path, prefix: str) -> dict:
    """What the stage sealed: manifest identity and outputs, and the bytes of every file under the prefix (each
    output also read back through the store, which verifies its recorded checksum)."""
    s = open_store(str(store))
    manifest = read_manifest(s, prefix)
    files = {
        p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((store / prefix).rglob("*"))
        if p.is_file() and p != store / prefix / "_SUCCESS.json"
    }
    if manifest is None:
        return {"manifest": None, "files": files}
    for output in manifest.outputs:
        s.get_bytes(output.key)
    outputs = [(o.key, o.size, o.sha256) for o in manifest.outputs]
    return {"manifest": manifest.content_sha256, "outputs": outputs, "files": files}


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest, symlinks=True)  # copy2: extended attributes (the checksums) travel too
    return dest


@pytest.fixture(scope="module")
def strace() -> str:
    binary, why = strace_binary()
    if binary is None:
        pytest.skip(why)
    return binary


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str | None, Path]:
    """The store as each stage leaves it, built once by uninterrupted runs: the starting points of the cases."""
    root = tmp_path_factory.mktemp("kill-points")
    built: dict[str | None, Path] = {None: root / "empty"}
    built[None].mkdir()
    for case in CASES:
        store = _copy(built[case.after], root / f"after-{case.name}")
        done = _run(case, store, root / f"{case.name}.json")
        assert done.returncode == 0, done.stderr.decode()[-2000:]
        built[case.name] = store
    return built


@pytest.fixture(scope="module", autouse=True)
def report(request: pytest.FixtureRequest) -> Iterator[None]:
    """The campaign's table, printed at the end (and appended to ``IRMSIA_FAULT_REPORT`` when set)."""
    yield
    if not ROWS:
        return
    lines = ["| stage | kill points | cases | held | failed |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r.stage} | {r.kill_points} | {r.cases} | {r.held} | {len(r.failures)} |" for r in ROWS.values()]
    total = [sum(getattr(r, a) for r in ROWS.values()) for a in ("kill_points", "cases", "held")]
    failed = sum(len(r.failures) for r in ROWS.values())
    lines.append(f"| all | {total[0]} | {total[1]} | {total[2]} | {failed} |")
    terminal = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if terminal is not None and capture is not None:
        with capture.global_and_fixture_disabled():  # shown even when the tests pass
            terminal.write_line("\nkill-point campaign (SIGKILL on entry to a rename/link, then rerun):")
            for line in lines:
                terminal.write_line(line)
    if path := os.environ.get("IRMSIA_FAULT_REPORT"):
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


def _check_case(case: StageCase, strace: str, start: Path, workdir: Path, n: int, reference: dict,
                reference_result: dict) -> list[str]:  # fmt: skip
    """Kill at the ``n``-th rename/link, rerun, compare; returns what did not hold (empty: it held)."""
    store = _copy(start, workdir / "store")
    result = workdir / "result.json"
    problems = []
    code = kill_at(strace, _command(case), _env(store, result), workdir, n)
    if code not in (-9, 137):
        return [f"kill point {n} not reached (exit {code}): the run made fewer renames than the reference"]
    left = sealed(store, case.prefix)
    if left["manifest"] not in (None, reference["manifest"]):
        problems.append(f"kill point {n}: the killed run sealed a manifest that differs from the reference")
    rerun = _run(case, store, result)
    if rerun.returncode != 0:
        return [*problems, f"kill point {n}: rerun exited {rerun.returncode}: {rerun.stderr.decode()[-300:]}"]
    got = sealed(store, case.prefix)
    if got != reference:
        diff = sorted(set(got["files"].items()) ^ set(reference["files"].items()))[:3]
        problems.append(f"kill point {n}: rerun sealed other outputs than the reference (first differences {diff})")
    outcome = json.loads(result.read_text())
    if {k: outcome[k] for k in ("prefix", "content_sha256")} != reference_result:
        problems.append(f"kill point {n}: result file {outcome} differs from the reference")
    leftovers = sorted(p.relative_to(store).as_posix() for p in (store / ".tmp").rglob("*"))
    if leftovers:
        problems.append(f"kill point {n}: scratch left behind after the rerun: {leftovers[:3]}")
    return problems


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_killed_at_any_rename_or_link_the_rerun_is_byte_identical(case, strace, stores, tmp_path):
    # GIVEN the store the stage starts from, and an uninterrupted run of it (counting its renames and links)
    start = stores[case.after]
    ref_store = _copy(start, tmp_path / "reference")
    ref_result = tmp_path / "reference.json"
    code, total = count_calls(strace, _command(case), _env(ref_store, ref_result), tmp_path, tmp_path / "trace")
    assert code == 0 and total > 0
    reference = sealed(ref_store, case.prefix)
    assert reference["manifest"] is not None
    outcome = json.loads(ref_result.read_text())
    reference_result = {k: outcome[k] for k in ("prefix", "content_sha256")}
    row = ROWS.setdefault(case.name, Row(case.name, total))
    # WHEN the stage is killed at each chosen kill point and then rerun
    for n in kill_points(total):
        workdir = tmp_path / f"kill-{n}"
        workdir.mkdir()
        problems = _check_case(case, strace, start, workdir, n, reference, reference_result)
        row.cases += 1
        row.held += not problems
        row.failures += problems
        shutil.rmtree(workdir, ignore_errors=True)
    # THEN every case held
    assert row.failures == [], "\n".join(row.failures)
