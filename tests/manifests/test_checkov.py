"""checkov over everything we ship (manifests/ and every chart scenario's render): no failed check, and every
skipped one carries its reason inline (``checkov.io/skipN: CHECK=reason`` on the object)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.argo_schema import REPO_ROOT
from tests.support.k8s_objects import MANIFESTS, ci_values_files, render_chart


def _checkov() -> str | None:
    """checkov lives in its own environment (it pins boto3 below what the store needs); see the Makefile."""
    candidates = [
        os.environ.get("IRMSIA_CHECKOV"),
        str(REPO_ROOT / ".venv/tools/checkov/bin/checkov"),
        str(Path(sys.executable).parent / "checkov"),
        shutil.which("checkov"),
    ]
    return next((c for c in candidates if c and Path(c).is_file()), None)


CHECKOV = _checkov()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHECKOV is None, reason="checkov not installed (make venv installs it in .venv/tools/checkov)"),
]


def test_checkov_passes_on_manifests_and_chart_renders(tmp_path):
    # GIVEN the manifests and each chart scenario's render, as files checkov can read
    shutil.copytree(MANIFESTS, tmp_path / "manifests")
    for values_file in ci_values_files():
        docs = [obj for _, obj in render_chart(values_file)]
        (tmp_path / f"chart-{values_file.stem}.yaml").write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    # WHEN checkov scans them
    proc = subprocess.run(
        [CHECKOV, "-d", str(tmp_path), "--framework", "kubernetes", "--quiet", "--compact", "-o", "json"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    # THEN it parsed every object, nothing failed, and each skip is justified
    failed = [
        f"{f['check_id']} {f['resource']} {f['file_path']}: {f['check_name']}"
        for report in reports
        for f in report["results"]["failed_checks"]
    ]
    assert failed == []
    assert all(r["summary"]["parsing_errors"] == 0 for r in reports)
    assert sum(r["summary"]["resource_count"] for r in reports) > 40
