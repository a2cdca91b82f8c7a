"""Turn a run's state dict into the bundle's model files, and prove each one predicts what the state dict does.

``model.pt`` is the run's ``best_model.pt`` byte for byte. ``model.ts`` is a traced TorchScript module and
``model.onnx`` an ONNX graph (only when ``onnx`` and ``onnxruntime`` are installed), each loaded back (TorchScript
by ``torch.jit.load``, ONNX by an onnxruntime session) and compared with the state dict's outputs on a seeded
sample batch; a difference beyond the tolerance is a ``DataError`` and nothing is registered.
"""

from __future__ import annotations

import importlib.util
import pickle
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.core.errors import DataError
from jobs.ml.networks import build_network

ATOL = 1e-4
RTOL = 1e-3
SAMPLE_BATCH = 2
SAMPLE_SEED = 0


@dataclass(frozen=True)
class ExportedModel:
    """Local paths of the exported files (``onnx`` is ``None`` when ONNX is not installed) and the checks run."""

    state_dict: Path
    torchscript: Path
    onnx: Path | None
    max_abs_diff: dict[str, float]


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def load_state_dict_model(config: dict[str, Any], path: Path) -> Any:
    """The run's network with its weights loaded, in eval mode; ``DataError`` if the weights do not fit it."""
    import torch

    try:
        model = build_network(
            str(config["model"]), int(config["in_channels"]), int(config["num_classes"]), int(config.get("dims") or 2)
        )
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, TypeError, EOFError, AttributeError, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"best_model.pt does not load into {config.get('model')!r} with {config.get('in_channels')} channels, "
            f"{config.get('num_classes')} outputs and {config.get('dims') or 2} dimensions ({first}); check the run's "
            "config.json"
        ) from exc
    return model.eval()


def sample_batch(config: dict[str, Any]) -> Any:
    """A seeded batch of the network's input shape, so exports are checked the same way every time."""
    import torch

    size = int(config.get("image_size") or 32)
    spatial = [size, size]
    if int(config.get("dims") or 2) == 3:
        spatial.insert(0, int((config.get("preprocessing") or {}).get("depth") or config.get("depth") or 0) or size)
    generator = torch.Generator().manual_seed(SAMPLE_SEED)
    return torch.rand(SAMPLE_BATCH, int(config["in_channels"]), *spatial, generator=generator)


def _max_diff(expected: Any, actual: Any, what: str) -> float:
    import numpy as np

    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        raise DataError(f"{what} output shape {actual.shape} differs from the state dict's {expected.shape}")
    diff = float(np.max(np.abs(expected - actual))) if expected.size else 0.0
    if not np.allclose(actual, expected, atol=ATOL, rtol=RTOL):
        raise DataError(f"{what} predictions differ from the state dict's by up to {diff:.3g}; export is unusable")
    return diff


def export_torchscript(model: Any, batch: Any, path: Path) -> Any:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        # torch.jit is deprecated in favour of torch.export, but TorchScript is what MONAI bundles ship.
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, batch, check_trace=False)  # checked below, on the reloaded file
        torch.jit.save(traced, str(path))
        return torch.jit.load(str(path), map_location="cpu").eval()


def export_onnx(model: Any, batch: Any, path: Path) -> None:
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        # The TorchScript-based exporter: fast, no extra dependencies, dynamic batch axis.
        torch.onnx.export(
            model,
            (batch,),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["pred"],
            dynamic_axes={"image": {0: "batch"}, "pred": {0: "batch"}},
            opset_version=17,
        )


def onnx_predict(path: Path, batch: Any) -> Any:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch.numpy()})[0]


def export_model(config: dict[str, Any], state_dict_path: Path, outdir: Path) -> ExportedModel:
    """Write ``model.pt``, ``model.ts`` and (if available) ``model.onnx`` into ``outdir``, each checked."""
    import torch

    outdir.mkdir(parents=True, exist_ok=True)
    model = load_state_dict_model(config, state_dict_path)
    batch = sample_batch(config)
    with torch.no_grad():
        expected = model(batch).numpy()
    pt = outdir / "model.pt"
    shutil.copyfile(state_dict_path, pt)
    diffs: dict[str, float] = {}
    ts_path = outdir / "model.ts"
    with torch.no_grad():
        diffs["torchscript"] = _max_diff(expected, export_torchscript(model, batch, ts_path)(batch).numpy(), "model.ts")
    onnx_path: Path | None = None
    if onnx_available():
        onnx_path = outdir / "model.onnx"
        export_onnx(model, batch, onnx_path)
        diffs["onnx"] = _max_diff(expected, onnx_predict(onnx_path, batch), "model.onnx")
    return ExportedModel(pt, ts_path, onnx_path, diffs)
