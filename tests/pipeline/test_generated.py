"""The one generation mechanism: every generated file is current, and the check names what is stale."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline import generated, generation
from tests.support.argo_schema import REPO_ROOT


@pytest.mark.slow
def test_every_generated_file_is_current():
    # WHEN the check runs as `make generate` users run it
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.generated", "--check"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    # THEN nothing is stale (run `make generate` and commit the result otherwise)
    assert proc.returncode == 0, proc.stderr


def test_the_registry_covers_the_chart_and_the_overlays():
    paths = set(generated.expected_files())
    assert {"helm/irmsia/files/pipeline.json", "helm/irmsia/values.yaml", "helm/irmsia/values.schema.json",
            "manifests/generated/local/irmsia.yaml", "manifests/generated/gpu/irmsia.yaml",
            "manifests/argo/workflow-controller-configmap.patch.yaml",
            "manifests/argo/argo-helm-values.yaml"} <= paths  # fmt: skip


@pytest.fixture
def registry(monkeypatch, tmp_path):
    """A registry of two files and one owned folder, in an empty repository at tmp_path."""
    monkeypatch.setattr(generated, "GENERATED", {"a.txt": lambda: "A\n", "gen/b.txt": lambda: "B\n"})
    monkeypatch.setattr(generated, "OWNED_DIRS", ["gen"])
    monkeypatch.setattr(generated, "_load_providers", lambda: None)
    monkeypatch.setattr(generated, "REPO_ROOT", tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "stale"),
    [
        ({}, ["a.txt", "gen/b.txt"]),
        ({"a.txt": "A\n", "gen/b.txt": "B\n"}, []),
        ({"a.txt": "old\n", "gen/b.txt": "B\n"}, ["a.txt"]),
        ({"a.txt": "A\n", "gen/b.txt": "B\n", "gen/deleted-schedule.yaml": "x"}, ["gen/deleted-schedule.yaml"]),
    ],
)
def test_check_names_each_stale_missing_or_orphaned_file(registry, files, stale, capsys):
    # GIVEN a repository holding these files
    for path, text in files.items():
        (registry / path).parent.mkdir(parents=True, exist_ok=True)
        (registry / path).write_text(text)
    # WHEN checked
    code = generated.main(["--check"])
    # THEN the exit code and the named files say what `make generate` would change
    assert generated.stale_files(registry) == stale
    assert code == (1 if stale else 0)
    assert all(f"stale: {p}" in capsys.readouterr().err for p in stale[:1])


def test_generate_writes_and_removes_until_nothing_is_stale(registry):
    (registry / "gen").mkdir()
    (registry / "gen/orphan.yaml").write_text("x")
    assert generated.main([]) == 0
    assert (registry / "a.txt").read_text() == "A\n" and not (registry / "gen/orphan.yaml").exists()
    assert generated.stale_files(registry) == []


def test_a_path_is_registered_once():
    with pytest.raises(ValueError, match="generated twice"):
        generation.register("helm/irmsia/values.yaml")(lambda: "")
