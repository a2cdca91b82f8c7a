"""Print the requirements of pyproject extras, one a line: what an image's ``pip install`` step installs.

``python3 requirements.py core collect`` prints the project's core dependencies and the ``collect`` extra;
``build`` is the build system's requirements, ``torch`` only the torch requirement of the ``train`` extra (its
own image layer, shared by the train and register images).
Standard library only: it runs inside the image build before anything is installed. Reading only
``pyproject.toml`` keeps the dependency layers cached until the dependencies change, not on every code change.
"""

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, groups: list[str]) -> list[str]:
    data = tomllib.loads(pyproject.read_text())
    project = data["project"]
    found: list[str] = []
    for group in groups:
        if group == "core":
            found += project["dependencies"]
        elif group == "build":
            found += data["build-system"]["requires"]
        elif group == "torch":
            found += [r for r in project["optional-dependencies"]["train"] if r.split(">")[0].split("=")[0] == "torch"]
        elif group in project["optional-dependencies"]:
            found += project["optional-dependencies"][group]
        else:
            sys.exit(f"requirements.py: no extra {group!r} in {pyproject}; use core, build or an extra")
    return list(dict.fromkeys(r for r in found if not r.startswith("irmsia-pipeline")))


if __name__ == "__main__":
    print("\n".join(requirements(Path(__file__).resolve().parent.parent / "pyproject.toml", sys.argv[1:])))
