"""One naming rule for stage images (``jobs.stages.image_ref``): what ``make images`` builds, ``make kind-load``
loads, the WorkflowTemplate and the chart run, and the docs say are the same references."""

from __future__ import annotations

import os
import re
import stat
import subprocess

import pytest

from jobs.stages import IMAGE_TAG, image_names, image_ref
from pipeline.argo.workflow_template import build_workflow_template
from pipeline.config import load_config
from tests.support.argo_schema import REPO_ROOT
from tests.support.k8s_objects import render_chart

CONFIG = load_config(REPO_ROOT / "irmsia.yaml")


def _template_images(config) -> set[str]:
    templates = build_workflow_template(config).to_dict()["spec"]["templates"]
    return {t["container"]["image"] for t in templates if "container" in t}


def test_the_local_configuration_pins_the_version_the_build_tags():
    assert CONFIG.images.tag == IMAGE_TAG


def test_kind_load_loads_exactly_what_the_templates_run():
    # GIVEN the kind configuration (no GPU pool: train runs its -cpu image)
    assert not CONFIG.gpu_pool.enabled
    # WHEN make says which references kind-load loads
    loaded = subprocess.run(
        ["make", "-s", "image-refs", f"IMAGE_TAG={CONFIG.images.tag}", f"IMAGE_REGISTRY={CONFIG.images.registry}"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    # THEN they are the images of the rendered WorkflowTemplate, one for one
    assert set(loaded) == _template_images(CONFIG) and len(loaded) == len(set(loaded))
    assert image_ref("irmsia-train-cpu", registry=CONFIG.images.registry, tag=CONFIG.images.tag) in loaded


def test_the_chart_names_images_as_hera_does():
    for _, obj in render_chart():
        if obj["kind"] == "WorkflowTemplate":
            images = {t["container"]["image"] for t in obj["spec"]["templates"] if "container" in t}
            assert images == _template_images(CONFIG)


@pytest.fixture
def recording_docker(tmp_path):
    """A ``docker`` that records its arguments (and answers ``buildx version``), so the build script runs dry."""
    log = tmp_path / "docker.log"
    script = tmp_path / "docker"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script, log


def test_make_images_tags_every_image_under_the_rule(recording_docker):
    docker, log = recording_docker
    # WHEN the image build runs (with a docker that only records what it is asked)
    env = {**os.environ, "DOCKER": str(docker)}
    subprocess.run(["make", "-s", "images", f"DOCKER={docker}"], cwd=REPO_ROOT, env=env, check=True,
                   capture_output=True)  # fmt: skip
    builds = [line.split() for line in log.read_text().splitlines() if line.startswith("build ")]
    # THEN every image of the registry was built under <registry>/<image>:<version> (and its git revision)
    tags = {args[i + 1] for args in builds for i, a in enumerate(args) if a == "--tag"}
    expected = {image_ref(image) for image in image_names()}
    assert expected <= tags
    assert {args[args.index("--target") + 1] for args in builds} == set(image_names())


def test_the_docs_name_images_by_the_rule():
    known = {image_ref(image, tag="TAG") for image in image_names()}
    for doc in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md"))]:
        for ref in re.findall(r"localhost/irmsia/irmsia-[a-z-]+:[\w.]+", doc.read_text(encoding="utf-8")):
            assert re.sub(r":[\w.]+$", ":TAG", ref) in known, f"{doc.name}: {ref} is not a stage image"
