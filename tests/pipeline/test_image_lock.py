"""The image lock (docker/constraints.txt) pins every package the stage images install, without building one:
a dependency added to an image extra without `make constraints` fails here, not only in the docker tests."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]


def _constraints_module():
    spec = importlib.util.spec_from_file_location("docker_constraints", REPO / "docker" / "constraints.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_package_the_images_install_is_pinned():
    # GIVEN the image extras' requirements, walked through this venv's installed metadata
    lock = _constraints_module()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    requirements = list(project["dependencies"]) + [r for e in lock.IMAGE_EXTRAS for r in extras.get(e, [])]
    needed = set(lock.closure(requirements))
    # WHEN the lock is read
    lines = (REPO / "docker" / "constraints.txt").read_text().splitlines()
    pinned = {canonicalize_name(line.split("==", 1)[0]) for line in lines if "==" in line}
    # THEN each needed package has a pin (versions may differ from this venv's: the images install the pins)
    assert not needed - pinned, f"not in docker/constraints.txt (run `make constraints`): {sorted(needed - pinned)}"
