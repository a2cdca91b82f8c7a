"""The documentation site builds with ``mkdocs build --strict`` (every page in the nav, every link and anchor
resolves, the API reference renders from the docstrings), and the README stays an overview with the two
commands that are true."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_mkdocs_builds_strict_with_the_api_reference(tmp_path):
    pytest.importorskip("mkdocstrings")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install 'irmsia-pipeline[docs]')")
    # WHEN the site is built strictly into a temporary folder (never into the repository)
    done = subprocess.run([mkdocs, "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)  # fmt: skip
    # THEN it succeeds with no warning, and the API page holds the reference generated from the docstrings
    assert done.returncode == 0, done.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name in ("download_collection", "scan_directory", "create_train_val_test_split", "merge_datasets",
                 "get_dataset_statistics", "load_model", "run_pipeline", "StageFailed"):  # fmt: skip
        assert name in api, name
    assert (tmp_path / "site" / "datasets" / "index.html").read_text().count("irmsia-collect --source") >= 3


def test_every_page_is_in_the_nav():
    nav = (REPO / "mkdocs.yml").read_text()
    pages = sorted(p.name for p in (REPO / "docs").glob("*.md"))
    assert [p for p in pages if f": {p}" not in nav] == []


def test_the_readme_is_an_overview_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^make \w+", readme, flags=re.M)
    assert commands == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    # the two commands do what the README says: demo runs the demo profile, test runs lint and every test
    assert re.search(r"^demo: venv\n\t\$\(BIN\)/irmsia run --profile demo$", makefile, flags=re.M)
    assert re.search(r"^test: venv lint services\n\t\$\(BIN\)/python -m pytest", makefile, flags=re.M)
    assert len(readme.splitlines()) < 60
    for page in ("docs/quickstart.md", "docs/concepts.md", "docs/kubernetes.md", "docs/api.md",
                 "docs/troubleshooting.md"):  # fmt: skip
        assert page in readme and (REPO / page).is_file()
