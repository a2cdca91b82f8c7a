"""The Python API for serving code: ``load_model(store, name, version="champion")`` and ``load_predictor``.

``load_model`` returns a ready-to-evaluate torch module (eval mode, on the CPU) and the preprocessing the model was
trained with: ``jobs.ml.preprocess.Preprocessing`` rebuilt from the spec the run's ``config.json`` recorded (and
the metadata copied), a callable from a file (bytes or path) or a DICOM series folder to the ``(C, H, W)`` or
``(C, D, H, W)`` float32 input the module expects. ``load_predictor`` wraps both into the task's answer for a file
or folder: class probabilities, finding probabilities with the val-chosen thresholds' verdicts, or a label map of
mask values (sliding windows where the run trained on patches).
Before loading, the ledger is read and its hash chain validated (an alias is what the chain's last move of it
says: a rewritten or deleted entry is a ``DataError``, and an alias object dropped into the store outside the
ledger is never read), the version is checked against its ledger entry, and ``model.pt`` against its recorded
SHA-256, so a tampered file or a forged alias never reaches a server. The module's logits are divided by the
temperature fitted on val when the run was calibrated (``serving.py``); ``load_serving`` gives that temperature and
the operating points (thresholds chosen on val) a server decides with. ``precision="int8"`` serves the version's
INT8 ONNX model (``--quantize int8``, when it passed its val check) through onnxruntime, called like the module.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from jobs.core.errors import DataError, IrmsiaError, UsageError
from jobs.core.hashing import sha256_bytes
from jobs.core.manifest import Manifest, read_manifest
from jobs.core.store import Store, open_store
from jobs.ml.preprocess import Preprocessing
from jobs.register.export import load_state_dict_model
from jobs.register.keys import METADATA, MODEL_INT8, MODEL_PT, version_prefix
from jobs.register.registry import resolve
from jobs.register.serving import OnnxModule, Serving, calibrated

PRECISIONS = ("fp32", "int8")


def load_metadata(store: Store, name: str, version: str | int = "champion") -> dict[str, Any]:
    """The ``configs/metadata.json`` of a registered version, checked against its ledger entry."""
    entry = resolve(store, name, version)
    raw = store.get_bytes(version_prefix(name, entry.version) + METADATA)
    if sha256_bytes(raw) != entry.fields.get("metadata_sha256"):
        raise DataError(f"v{entry.version} of {name!r}: metadata does not match the ledger; run irmsia registry verify")
    return json.loads(raw)


def _int8_module(store: Store, name: str, version: int, meta: dict[str, Any], manifest: Manifest) -> OnnxModule:
    """The version's INT8 ONNX graph in an onnxruntime session, its bytes checked against the manifest."""
    quantization = meta["irmsia"].get("quantization") or {}
    if not quantization.get("kept"):
        why = quantization.get("reason") or "it was registered without --quantize int8"
        raise DataError(f"v{version} of {name!r} has no int8 model ({why}); load it with precision='fp32'")
    record = manifest.output(MODEL_INT8)
    raw = store.get_bytes(record.key, verify=False)
    if sha256_bytes(raw) != record.sha256:
        raise DataError(f"{record.key}: SHA-256 is {sha256_bytes(raw)}, recorded {record.sha256}; the file was altered")
    return OnnxModule(raw)


def load_model(
    store: Store | str, name: str, version: str | int = "champion", precision: str = "fp32"
) -> tuple[Any, Preprocessing]:
    """``(module, preprocessing)`` for ``version`` of ``name``: an alias, ``latest`` or a version number.

    ``preprocessing(file_bytes)`` gives one input; ``module(torch.from_numpy(x)[None])`` gives its logits.
    ``precision="int8"``: the INT8 ONNX model instead of the state dict (a ``DataError`` if the version has none).
    """
    if precision not in PRECISIONS:
        raise UsageError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    store = open_store(store) if isinstance(store, str) else store
    entry = resolve(store, name, version)
    prefix = version_prefix(name, entry.version)
    manifest = read_manifest(store, prefix)
    if manifest is None or manifest.content_sha256 != entry.fields.get("manifest_sha256"):
        raise DataError(f"v{entry.version} of {name!r} does not match its ledger entry; run irmsia registry verify")
    meta = load_metadata(store, name, entry.version)
    if precision == "int8":
        module = _int8_module(store, name, entry.version, meta, manifest)
    else:
        module = _fp32_module(store, manifest.output(MODEL_PT), meta)
    spec = meta["network_data_format"].get("preprocessing") or {}
    try:
        preprocessing = Preprocessing.from_dict(spec)
    except (KeyError, TypeError, ValueError, IrmsiaError) as exc:
        raise DataError(
            f"v{entry.version} of {name!r} records no usable preprocessing ({exc}); register a run whose "
            "config.json has a preprocessing section"
        ) from exc
    return calibrated(module, Serving.from_metadata(meta).temperature), preprocessing


def _fp32_module(store: Store, record: Any, meta: dict[str, Any]) -> Any:
    """The state dict in its network, its bytes checked against the manifest."""
    with tempfile.TemporaryDirectory(prefix="irmsia-load-") as tmp:
        path = Path(tmp) / "model.pt"
        info = store.get_file(record.key, path, verify=False)
        if info.sha256 != record.sha256:
            raise DataError(f"{record.key}: SHA-256 is {info.sha256}, recorded {record.sha256}; the file was altered")
        network = meta["irmsia"]["network"]
        module = load_state_dict_model(
            {"model": network["name"], "in_channels": network["in_channels"], "num_classes": network["num_classes"],
             "dims": network.get("dims", 2)},
            path,
        )  # fmt: skip
    return module


def load_serving(store: Store | str, name: str, version: str | int = "champion") -> Serving:
    """The temperature and operating points of ``version`` of ``name`` (checked against the ledger)."""
    store = open_store(store) if isinstance(store, str) else store
    return Serving.from_metadata(load_metadata(store, name, version))


class Predictor:
    """A registered model's answer for one input: ``predictor(file_bytes | path | series_folder)``.

    classification: ``{"probabilities": {class: p}, "class": best}``; multilabel: ``{"probabilities": {finding:
    p}, "findings": [those at or above their threshold]}``; segmentation: ``{"label_map": array of mask values,
    "classes": [...]}`` on the model's input grid.
    """

    def __init__(self, module: Any, preprocessing: Preprocessing, meta: dict[str, Any]) -> None:
        self.module, self.preprocessing = module, preprocessing
        ours = meta["irmsia"]
        self.task = str(ours.get("task") or "classification")
        self.classes = list(ours["classes"])
        config = ours.get("run_config") or {}
        self.thresholds = ours.get("thresholds") or config.get("thresholds") or [0.5] * len(self.classes)
        self.label_values = ours.get("label_values") or config.get("label_values") or list(range(len(self.classes)))
        self.patch_size = int(config.get("patch_size") or 0)

    def __call__(self, source: Any, name: str = "image") -> dict[str, Any]:
        import numpy as np
        import torch

        x = torch.from_numpy(self.preprocessing(source, name))[None]
        with torch.no_grad():
            if self.task == "segmentation" and self.patch_size and any(s > self.patch_size for s in x.shape[2:]):
                from monai.inferers import sliding_window_inference

                roi = (self.patch_size,) * (x.dim() - 2)
                logits = torch.as_tensor(sliding_window_inference(x, roi, 4, self.module, overlap=0.25))
            else:
                logits = self.module(x)
        if self.task == "segmentation":
            indices = logits.argmax(dim=1)[0].numpy()
            return {"label_map": np.asarray(self.label_values)[indices], "classes": self.classes}
        if self.task == "multilabel":
            probs = torch.sigmoid(logits)[0].tolist()
            found = [c for c, p, t in zip(self.classes, probs, self.thresholds, strict=True) if p >= t]
            return {"probabilities": dict(zip(self.classes, probs, strict=True)), "findings": found}
        probs = torch.softmax(logits, dim=1)[0].tolist()
        return {"probabilities": dict(zip(self.classes, probs, strict=True)),
                "class": self.classes[int(np.argmax(probs))]}  # fmt: skip


def load_predictor(
    store: Store | str, name: str, version: str | int = "champion", precision: str = "fp32"
) -> Predictor:
    """``load_model`` and the version's metadata as one callable giving the task's output for a file or folder."""
    store = open_store(store) if isinstance(store, str) else store
    number = resolve(store, name, version).version  # one version for both, even if an alias moves meanwhile
    module, preprocessing = load_model(store, name, number, precision)
    return Predictor(module, preprocessing, load_metadata(store, name, number))
