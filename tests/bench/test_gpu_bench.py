"""bench/gpu_bench.py: the CPU dry run (``--device cpu --quick``) measures every planned case and writes a
well-formed table under its dated heading plus the JSON; the CUDA run is exercised by the ``gpu`` test."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "bench" / "gpu_bench.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_bench"] = module
    spec.loader.exec_module(module)
    return module


def _rows(markdown: str) -> list[list[str]]:
    """The table's data rows as cells (header and separator left out)."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| network | case |") and set(lines[1].replace("|", "").split()) == {"---"}
    width = lines[0].count("|")
    assert all(line.count("|") == width for line in lines), "every row has the header's column count"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_the_plan_has_every_case_and_puts_the_compile_cases_last():
    # GIVEN the quick CPU arguments  WHEN the cases are planned
    bench = _bench()
    cases = bench.plan_cases(bench.parse_args(["--device", "cpu", "--quick", "--models", "small-cnn,resnet18"]))
    names = [(c.network, c.name) for c in cases]
    # THEN every 2-D network has (a), (b) and each ours variant once, the 3-D case its baselines and an n/a ours
    for network in ("small-cnn", "resnet18"):
        expected = {"(a) tutorial", "(b) monai-fast"} | {name for name, _ in bench.OURS_VARIANTS}
        assert sorted(n for net, n in names if net == network) == sorted(expected)
    assert [(c.name, c.status) for c in cases if c.network == bench.MODEL_3D] == [
        ("(a) tutorial", "ok"),
        ("(b) monai-fast", "ok"),
        ("ours", "n/a"),
    ]
    # AND a budget cut drops compile cases before any baseline
    first_compile = min(i for i, c in enumerate(cases) if c.name in bench.COMPILE_CASES)
    assert all(c.name in bench.COMPILE_CASES for c in cases[first_compile:])


def test_results_are_appended_under_one_heading(tmp_path):
    # GIVEN a RESULTS.md without the bench's heading
    bench = _bench()
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Other\n\ntext\n")
    # WHEN two runs append their sections, and another section is added after the bench's before the second run
    bench.append_results(results, "### run 1\n\n| a |\n")
    results.write_text(results.read_text() + "\n## Later\n\nmore\n")
    bench.append_results(results, "### run 2\n\n| b |\n")
    # THEN the heading appears once, both runs sit under it in order, and the other sections are kept
    text = results.read_text()
    assert text.count(bench.RESULTS_HEADING) == 1
    order = ["## Other", bench.RESULTS_HEADING, "### run 1", "### run 2", "## Later", "more"]
    assert [text.index(s) for s in order] == sorted(text.index(s) for s in order)


@pytest.mark.slow
def test_cpu_quick_run_measures_every_case_and_writes_the_table(tmp_path):
    # GIVEN an existing RESULTS.md
    bench = _bench()
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n")
    # WHEN the bench dry-runs on the CPU, as a script in its own process (as gpu_check.sh runs it)
    argv = ["--device", "cpu", "--quick", "--results", str(results), "--out", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_bench.py"), *argv], capture_output=True, text=True)
    # THEN it succeeds, and the JSON has a measured figure for every case but the n/a 3-D ours row
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "gpu_bench.json").read_text())
    cases = report["cases"]
    planned = bench.plan_cases(bench.parse_args(["--device", "cpu", "--quick"]))
    assert [(c["network"], c["name"]) for c in cases] == [(c.network, c.name) for c in planned]
    for case in cases:
        if case["status"] == "n/a":
            assert case["network"] == bench.MODEL_3D and case["name"] == "ours"
            continue
        assert case["status"] == "ok", case
        assert case["images_per_s"] > 0 and 0 <= case["data_wait_fraction"] < 1
        assert case["vs_tutorial"] > 0 and case["vs_monai_fast"] > 0
        assert case["gpu_busy_pct"] is None  # no GPU: nothing invented
    ours = {c["name"]: c for c in cases if c["network"] == "small-cnn"}
    assert ours["ours"]["vs_tutorial"] == pytest.approx(
        ours["ours"]["images_per_s"] / ours["(a) tutorial"]["images_per_s"], rel=0.01
    )
    assert ours["ours + batch x4, LR scaled"]["batch_size"] == 4 * report["config"]["batch_size"]
    assert "device cache" in ours["ours + device cache"]["notes"]
    assert all(ours[name]["compile_s"] is not None for name in bench.COMPILE_CASES), done.stdout[-3000:]
    assert report["ddp"]["status"] == "skipped"
    # AND the markdown table under the dated heading has one row per case, in the same order
    text = results.read_text()
    assert bench.RESULTS_HEADING in text and f"### {report['date']}: CPU" in text
    rows = _rows(text.split(bench.RESULTS_HEADING, 1)[1])
    assert [(r[0], r[1]) for r in rows] == [(c["network"], c["name"]) for c in cases]
    assert "DDP scaling: skipped" in text


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_of_the_ours_cases_reports_gpu_busy(tmp_path):
    # GIVEN a CUDA machine  WHEN the bench runs the data-path cases (and CUDA graphs with the device cache)
    bench = _bench()
    args = ["--device", "cuda", "--images", "256", "--image-size", "64", "--batch-size", "32", "--volumes", "0"]
    cases = ["--models", "small-cnn", "--cases", "pinned prefetch,device cache"]
    code = bench.main([*args, *cases, "--results", "", "--out", str(tmp_path)])
    # THEN every case is measured on the GPU, with NVML's busy figure
    assert code == 0
    cases = json.loads((tmp_path / "gpu_bench.json").read_text())["cases"]
    assert cases and all(c["status"] == "ok" and c["images_per_s"] > 0 for c in cases)
    assert all(c["peak_mem_mib"] for c in cases)
