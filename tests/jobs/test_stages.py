"""The stage registry is the one list of stages: pyproject's scripts, extras and import contracts, the DAG, the
images and the Makefile's lists all follow it, and adding a stage means its package plus one entry."""

from __future__ import annotations

import importlib
import subprocess
import tomllib

import pytest

from jobs.core.settings import StageSettings
from jobs.core.stage import Stage
from jobs.stages import STAGES, image_base, image_names, image_of, image_ref
from pipeline.dag import PIPELINE
from tests.support.argo_schema import REPO_ROOT

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("entry", STAGES, ids=lambda e: e.name)
def test_each_stage_is_a_package_with_its_script_extra_settings_and_stage(entry):
    # THEN pyproject installs its console script as the package's main, and declares its extra
    assert PYPROJECT["project"]["scripts"][entry.script] == f"{entry.module}.__main__:main"
    assert entry.extra in PYPROJECT["project"]["optional-dependencies"]
    # AND its settings are a StageSettings, and its stage module's STAGE runs under that name
    assert issubclass(entry.settings_class(), StageSettings)
    stage = importlib.import_module(f"{entry.module}.stage").STAGE
    assert isinstance(stage, Stage) and stage.name == entry.name and stage.settings_type is entry.settings_class()


def test_pyproject_lists_no_stage_the_registry_does_not_know():
    stage_scripts = {s for s in PYPROJECT["project"]["scripts"] if s != "irmsia"}
    assert stage_scripts == {e.script for e in STAGES}
    layers = next(c for c in PYPROJECT["tool"]["importlinter"]["contracts"] if c["type"] == "layers")["layers"]
    assert {m.strip() for m in layers[0].split("|")} == {e.module for e in STAGES}


def test_the_dag_runs_the_registered_stages_in_dependency_order():
    registered = [s for s in PIPELINE.stages if not s.kind]  # beside them, train's cross-validation tasks
    assert [s.name for s in registered] == [e.name for e in STAGES]
    for spec, entry in zip(registered, STAGES, strict=True):
        assert (spec.depends[: len(entry.depends)], spec.entrypoint) == (entry.depends, entry.script)


def test_images_follow_the_registry():
    # THEN every stage has an image, a GPU stage a CUDA image and a -cpu variant on the torch layer
    assert {image_of(i).name for i in image_names()} == {e.name for e in STAGES}
    for entry in STAGES:
        if entry.gpu:
            assert (image_base(entry.image()), image_base(entry.image(gpu=False))) == ("cuda", "torch-cpu")
        else:
            assert image_base(entry.image()) == ("torch-cpu" if entry.torch else "core")
    assert image_ref("irmsia-index", registry="r.example/x/", tag="1") == "r.example/x/irmsia-index:1"
    assert image_ref("irmsia-index", registry="", tag="1") == "irmsia-index:1"


def test_the_makefile_and_the_build_script_read_their_image_lists_from_the_registry():
    # WHEN make shows what `make images` would run
    shown = subprocess.run(["make", "-s", "-n", "images"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    # THEN it builds every image of the registry, and the scripts' own lookup lists the same images
    assert f'TARGETS="{" ".join(image_names())}"' in shown.stdout
    listed = subprocess.run(["python3", "-m", "jobs.stages", "images"], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    assert listed == list(image_names())
