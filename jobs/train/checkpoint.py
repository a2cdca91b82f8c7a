"""Per-epoch checkpoints in the store, so a preempted pod continues where it stopped (``--resume``).

``runs/<run-id>/checkpoints/last.pt`` is replaced atomically after every epoch and holds the model, optimiser,
scheduler and scaler states, the epoch, RNG states, the best metric and best weights so far, the history, and
the run's cache key: resuming with different settings is refused rather than silently mixing two runs.
Everything in it loads with ``torch.load(weights_only=True)``. It is a sealed output of the run, so it must be a
function of data, settings and seed: the RNG states it records are those the loop seeded for the epoch (``loop.py``
seeds torch, Python and NumPy per epoch), never a process's entropy, and nothing in it is a timing.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import torch

from jobs.core.errors import DataError, ObjectNotFound, UsageError
from jobs.core.store import Store

CHECKPOINT_NAME = "checkpoints/last.pt"


@dataclass(kw_only=True)
class TrainState:
    """What survives a preemption: where training is, the best result so far, and the metric history."""

    epoch: int = 0
    """Epochs completed."""
    best_metric: float | None = None
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    """Per-epoch losses and validation metrics: a function of data, settings and seed (no timings)."""
    stopped: bool = False
    """Early stopping ended the run (a resume must not train further)."""
    timings: list[dict[str, Any]] = field(default_factory=list)
    """Per-epoch throughput of this process (images/s, data wait, seconds); never checkpointed or sealed as an
    output, so a rerun that reproduces the model reproduces every output byte for byte."""


def rng_states() -> dict[str, Any]:
    """Python, numpy and torch RNG states (numpy's as plain lists so ``weights_only`` loading accepts it)."""
    legacy = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    kind, keys, pos, has_gauss, cached = legacy
    states: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": [kind, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(_to_tuples(states["python"]))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _to_lists(value: Any) -> Any:
    return [_to_lists(v) for v in value] if isinstance(value, tuple | list) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, list) else value


def save_checkpoint(store: Store, prefix: str, *, cache_key: str, state: TrainState, **components: Any) -> None:
    """Write ``checkpoints/last.pt``: ``components`` are objects with ``state_dict()`` (model, optimizer…)."""
    payload = {
        "cache_key": cache_key,
        "epoch": state.epoch,
        "best_metric": state.best_metric,
        "best_epoch": state.best_epoch,
        "best_state": state.best_state,
        "history": state.history,
        "stopped": state.stopped,
        "rng": rng_states(),
        **{name: obj.state_dict() for name, obj in components.items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    store.put_bytes(prefix + CHECKPOINT_NAME, buffer.getvalue())


def _read_checkpoint(store: Store, key: str) -> dict[str, Any] | None:
    """The checkpoint at ``key``, or ``None`` when there is none; ``DataError`` when it cannot be read."""
    try:
        raw = store.get_bytes(key)
    except ObjectNotFound:
        return None
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{key}: not a readable checkpoint ({exc}); drop --resume to start over") from exc


def load_checkpoint(store: Store, prefix: str, cache_key: str) -> dict[str, Any]:
    """The run's last checkpoint; ``UsageError`` if there is none or it belongs to other settings."""
    key = prefix + CHECKPOINT_NAME
    payload = _read_checkpoint(store, key)
    if payload is None:
        raise UsageError(
            f"--resume: no checkpoint at {store.uri}/{key}; check --run-id and --store, or drop --resume "
            "to start a fresh run"
        )
    if payload.get("cache_key") != cache_key:
        raise UsageError(
            f"--resume: {key} was written with different settings or data; rerun with the original flags "
            "or drop --resume to start a fresh run"
        )
    return payload


def find_checkpoint(store: Store, prefix: str, cache_key: str) -> tuple[dict[str, Any] | None, str]:
    """``--resume auto``: the run's last checkpoint if it has this cache key, else ``None``; and why, for the log."""
    key = prefix + CHECKPOINT_NAME
    payload = _read_checkpoint(store, key)
    if payload is None:
        return None, f"no checkpoint at {key}"
    if payload.get("cache_key") != cache_key:
        return None, f"{key} was written with different settings or data"
    return payload, f"{key} is from an unfinished run with these settings"


def restore(payload: dict[str, Any], **components: Any) -> TrainState:
    """Load each component's state and the RNGs; return the training state to continue from."""
    for name, obj in components.items():
        if name in payload and payload[name] is not None:
            obj.load_state_dict(payload[name])
    set_rng_states(payload["rng"])
    return TrainState(
        epoch=int(payload["epoch"]),
        best_metric=payload["best_metric"],
        best_epoch=int(payload["best_epoch"]),
        best_state=payload["best_state"],
        history=list(payload["history"]),
        stopped=bool(payload.get("stopped", False)),
    )
