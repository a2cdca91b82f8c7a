"""Registered models from Python: list, show, promote (``jobs.register.registry``, no torch) and ``load_model``
(the serving API ``jobs.register.api.load_model``, which needs torch and imports it only when called)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jobs.core.store import DEFAULT_STORE, Store, open_store
from jobs.register import registry


def _store(store: Store | str | None) -> Store:
    return store if isinstance(store, Store) else open_store(store or DEFAULT_STORE)


@dataclass(frozen=True)
class LoadedModel:
    """A registered version ready to evaluate: ``module(torch.from_numpy(preprocess(image_bytes))[None])``."""

    name: str
    version: int
    module: Any
    """The torch module, in eval mode on the CPU."""
    preprocess: Any
    """``jobs.ml.preprocess.Preprocessing``: image file bytes -> the ``(C, H, W)`` float32 input."""
    classes: list[str]
    temperature: float = 1.0
    """Already applied by ``module``: ``softmax(module(x))`` are the calibrated probabilities."""
    operating_points: dict[str, dict[str, Any]] | None = None
    """Per class and point (``youden``, ``specificity_0.9``), the threshold on the calibrated probability chosen on
    val."""


def load_model(
    name: str, version: str | int = "champion", store: Store | str | None = None, precision: str = "fp32"
) -> LoadedModel:
    """Load ``version`` (an alias, ``latest`` or a number) of ``name``, its ledger chain, files and hashes checked
    first (a tampered file or forged alias is a ``DataError``); ``precision="int8"``: its INT8 ONNX model
    (``--quantize int8``) through onnxruntime."""
    from jobs.register.api import load_model as serving_load_model  # torch, only when a model is loaded

    opened = _store(store)
    entry = registry.resolve(opened, name, version)
    module, preprocessing = serving_load_model(opened, name, entry.version, precision)
    record = registry.show(opened, name, entry.version)
    ours = record["metadata"].get("irmsia", {})
    classes = list(ours.get("classes") or [])
    serving = (ours.get("evaluation") or {}).get("serving") or {}
    return LoadedModel(
        name=name,
        version=entry.version,
        module=module,
        preprocess=preprocessing,
        classes=classes,
        temperature=float(serving.get("temperature") or 1.0),
        operating_points=dict(serving.get("operating_points") or {}),
    )


def list_models(store: Store | str | None = None) -> list[str]:
    """Every model with at least one registered version."""
    return registry.model_names(_store(store))


def model_versions(name: str, store: Store | str | None = None) -> list[registry.VersionRow]:
    """The versions of ``name``, ascending, with their metric and aliases."""
    return registry.list_versions(_store(store), name)


def show_model(name: str, version: str | int = "latest", store: Store | str | None = None) -> dict[str, Any]:
    """A version's ledger entry, aliases, files and metadata (``irmsia registry show``)."""
    return registry.show(_store(store), name, version)


def promote(name: str, version: int, alias: str = "champion", store: Store | str | None = None) -> int:
    """Point ``alias`` at ``version`` (an alias move in the ledger); returns the version."""
    return registry.promote(_store(store), name, version, alias).version
