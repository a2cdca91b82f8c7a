"""Where a fine-tuned run's starting weights come from (``--init``), and how they go into the run's network.

``--init`` names local weights or a registered model: a state dict (``.pt``/``.pth``, bare or under ``model`` /
``state_dict`` as checkpoints keep it), a TorchScript file (told by its content, not its name), a MONAI bundle
folder (``models/model.pt``, else ``models/model.ts``) or ``registry:NAME[:VERSION]`` (an alias, ``latest`` or a
number; ``champion`` when left out), read with the register stage's own readers (``jobs.register.api``: the ledger
chain, the version's manifest and ``model.pt``'s SHA-256 are checked on the way). Nothing is downloaded.

``resolve_init`` runs while the stage plans: it names the source and the SHA-256 of its weights, which go into the
run's parameters (so a different init is a different cache key and run) and its ``config.json`` (so a model
registered from the run says what it started from). ``load_into`` copies every tensor into the network; a head whose
output count differs (another set of classes) keeps its fresh initialisation and the log says so, and any other
missing, extra or differently shaped tensor is a ``UsageError`` naming it.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.core.errors import IrmsiaError, UsageError
from jobs.core.hashing import sha256_file
from jobs.core.paths import check_dns_label
from jobs.core.store import Store

log = logging.getLogger("irmsia.train.init")

REGISTRY_SCHEME = "registry:"
BUNDLE_MODELS = ("models/model.pt", "models/model.ts")
"""What a MONAI bundle folder's weights are called, in the order they are looked for."""
WRAPPERS = ("state_dict", "model")
"""Keys a saved checkpoint keeps its network's state dict under (``checkpoints/last.pt`` uses ``model``)."""
PREFIXES = ("module.", "_orig_mod.")
"""Key prefixes of a network saved inside DistributedDataParallel or after ``torch.compile``."""
KINDS = ("state_dict", "torchscript", "bundle", "registry")
_HINT = "give a .pt/.pth state dict, a TorchScript file, a MONAI bundle folder or registry:NAME[:VERSION]"


@dataclass(frozen=True)
class InitSource:
    """The weights a run starts from: what ``--init`` said, what it is, and the SHA-256 of its weights file."""

    given: str
    """``--init`` as given (the message and log name it so)."""
    kind: str
    """One of ``KINDS``."""
    source: str
    """The absolute path of the weights file, or ``registry:NAME:VERSION`` with the version number resolved."""
    sha256: str
    extra: dict[str, Any]
    """For a registered model: ``model_name``, ``version``, ``run_id`` and ``network`` of that version."""

    def record(self) -> dict[str, Any]:
        """What the run's parameters, ``config.json`` and a registered model's lineage say it started from."""
        return {"kind": self.kind, "source": self.source, "sha256": self.sha256, **self.extra}


def check_init(value: str, flag: str) -> str:
    """``--init``'s form (existence is checked when the stage plans): a registry reference must name a model."""
    if value.startswith(REGISTRY_SCHEME):
        name, _, version = value[len(REGISTRY_SCHEME) :].partition(":")
        check_dns_label(name, f"{flag} registry: model name")
        if ":" in version or (value.count(":") == 2 and not version):
            raise UsageError(
                f"{flag} {value!r}: use registry:NAME or registry:NAME:VERSION (a number, alias or latest)"
            )
    elif not value.strip():
        raise UsageError(f"{flag}: empty; {_HINT}")
    return value


def _registry_ref(given: str) -> tuple[str, str]:
    name, _, version = given[len(REGISTRY_SCHEME) :].partition(":")
    return name, version or "champion"


def is_torchscript(path: Path) -> bool:
    """A TorchScript archive (``torch.jit.save``) holds ``code/`` and ``constants.pkl``; ``torch.save`` neither."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _bundle_weights(folder: Path, given: str) -> Path:
    for name in BUNDLE_MODELS:
        if (folder / name).is_file():
            return folder / name
    raise UsageError(f"--init {given!r}: a folder, but not a MONAI bundle with {' or '.join(BUNDLE_MODELS)}; {_HINT}")


def resolve_init(given: str, store: Store, model: str) -> InitSource:
    """The source ``--init`` names and its weights' SHA-256, read without loading them (the registry's from the
    version's verified metadata); ``UsageError`` for a path that is not there."""
    if given.startswith(REGISTRY_SCHEME):
        from jobs.register.api import load_metadata

        name, version = _registry_ref(given)
        meta = load_metadata(store, name, version)
        ours = meta["irmsia"]
        network = str(ours["network"]["name"])
        if network != model:
            raise UsageError(f"--init {given!r} is a {network}; use --model {network} to fine-tune it")
        number = int(ours["registry_version"])
        digest = next(iter(v for k, v in sorted(ours["model_files"].items()) if k.endswith("model.pt")), None)
        if digest is None:
            raise UsageError(f"--init {given!r}: v{number} of {name!r} has no model.pt; register it again")
        extra = {"model_name": name, "version": number, "run_id": ours.get("run_id"), "network": network}
        return InitSource(given, "registry", f"{REGISTRY_SCHEME}{name}:{number}", str(digest), extra)
    path = Path(given).expanduser()
    if path.is_dir():
        weights, kind = _bundle_weights(path, given), "bundle"
    elif path.is_file():
        weights, kind = path, "torchscript" if is_torchscript(path) else "state_dict"
    else:
        raise UsageError(f"--init {given!r}: no such file or folder; {_HINT}")
    try:
        digest = sha256_file(weights)
    except OSError as exc:
        raise UsageError(f"--init {given!r}: cannot read {weights} ({exc.strerror}); check its permissions") from exc
    return InitSource(given, kind, str(weights.resolve()), digest, {})


def _unwrap(obj: Any, given: str) -> dict[str, Any]:
    """The tensors of a saved state dict, out of a checkpoint wrapper and without DDP/compile key prefixes."""
    import torch

    for key in WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UsageError(f"--init {given!r}: holds no state dict (a mapping of tensor names to tensors); {_HINT}")
    for prefix in PREFIXES:
        if all(str(k).startswith(prefix) for k in obj):
            obj = {str(k)[len(prefix) :]: v for k, v in obj.items()}
    return {str(k): v for k, v in obj.items()}


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_state(init: InitSource, store: Store) -> dict[str, Any]:
    """The init's tensors on the CPU: ``torch.load(weights_only=True)`` for state dicts, ``torch.jit.load`` for
    TorchScript, ``jobs.register.api.load_model`` for a registered version (which checks ``model.pt``'s SHA-256)."""
    import torch

    if init.kind == "registry":
        from jobs.register.api import load_model

        module, _ = load_model(store, init.extra["model_name"], init.extra["version"])
        network = getattr(module, "network", module)  # under the temperature scaling of a calibrated version
        return {k: v.detach().cpu() for k, v in network.state_dict().items()}
    path = Path(init.source)
    if sha256_file(path) != init.sha256:
        raise UsageError(f"--init {init.given!r}: {path} changed while the run started; rerun")
    try:
        if init.kind == "torchscript" or (init.kind == "bundle" and is_torchscript(path)):
            return _unwrap(dict(torch.jit.load(str(path), map_location="cpu").state_dict()), init.given)
        return _unwrap(torch.load(path, map_location="cpu", weights_only=True), init.given)
    except IrmsiaError:
        raise
    except Exception as exc:  # torch raises several kinds for a file that is not what it should be
        raise UsageError(f"--init {init.given!r}: cannot load {path} ({_first_line(exc)}); {_HINT}") from exc


def is_head(name: str, head: tuple[str, ...]) -> bool:
    """Whether tensor ``name`` belongs to the network's head (the modules whose shapes follow the output count)."""
    return any(name == h or name.startswith(h + ".") for h in head)


def load_into(model: Any, state: dict[str, Any], head: tuple[str, ...], init: InitSource, describe: str) -> list[str]:
    """Copy ``state`` into ``model``; returns the head tensors left freshly initialised (another output count).

    ``describe`` names the run's network in messages (``--model small-cnn with 1 channel(s), 2-D``).
    """
    own = model.state_dict()
    extra = sorted(set(state) - set(own))
    if extra:
        raise UsageError(
            f"--init {init.given!r}: tensor {extra[0]!r} is not in {describe} ({len(extra)} such); use weights of "
            "the same network or drop --init"
        )
    fresh: list[str] = []
    for name, tensor in own.items():
        theirs = state.get(name)
        if theirs is not None and tuple(theirs.shape) == tuple(tensor.shape):
            continue
        if is_head(name, head):
            fresh.append(name)
            continue
        if theirs is None:
            raise UsageError(f"--init {init.given!r}: has no tensor {name!r} of {describe}; use weights of the same "
                             "network or drop --init")  # fmt: skip
        raise UsageError(
            f"--init {init.given!r}: tensor {name!r} is {tuple(theirs.shape)} there and {tuple(tensor.shape)} in "
            f"{describe}; use weights of the same network and input channels, or drop --init"
        )
    if fresh:
        # the whole head or none of it: half a classifier layer from other classes would be neither
        fresh = [name for name in own if is_head(name, head)]
        outputs = [int(state[n].shape[0]) for n in fresh if n in state and state[n].dim() > 0]
        log.warning(
            "--init %s: the head (%s) has %s outputs there and %d in this run: it is re-initialised, the rest is "
            "loaded from %s",
            init.given, ", ".join(fresh), outputs[0] if outputs else "no", int(own[fresh[0]].shape[0]),
            init.source,
        )  # fmt: skip
    model.load_state_dict({k: v for k, v in state.items() if k not in fresh}, strict=not fresh)
    loaded = len(own) - len(fresh)
    log.info("--init %s: loaded %d of %d tensors from %s (sha256 %s)", init.given, loaded, len(own), init.source,
             init.sha256[:12])  # fmt: skip
    return fresh
