"""``--quantize int8``: an INT8 ONNX model beside ``model.onnx``, kept only if it scores like fp32 on val.

The val items are the ones the train stage scored (the run's ``predictions.json``, read by
``jobs.ml.predictions``), decoded by the run's own ``jobs.ml.preprocess.Preprocessing`` (what serving applies),
so the fp32 ONNX metrics here should reproduce the run's val metrics. Quantization is onnxruntime's *static* QDQ
form: per-channel int8 weights, uint8 activations whose ranges come from a MinMax calibration over those val
images. Static rather than dynamic because the project's networks (MONAI DenseNet/ResNet/EfficientNet, the small
CNN, the UNet) are convolution stacks: dynamic quantization only rewrites MatMul/Linear (their single classifier
head), leaving the convolutions, nearly all the weights and time, in fp32. Calibration sees images but no labels,
so scoring on the same val images measures quantization error, not fitted to the labels.

Both models are scored on every val image, and timed one image at a time in the same process with the same
session settings (one thread, all graph optimisations), interleaved, median over ``LATENCY_RUNS``. The outcome
(sizes, latencies, fp32 vs int8 val metrics, top-1 agreement, and why the int8 file was or was not kept) is
``irmsia.quantization`` in the metadata; a task it cannot score (segmentation, multilabel), a run without
predictions, an unreadable val image or a failed quantization is recorded there with its reason, never a
silently missing file, and never a failed registration: the fp32 files are registered either way.
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from jobs.core.errors import IrmsiaError
from jobs.core.store import Store
from jobs.ml.predictions import read_predictions
from jobs.ml.preprocess import Preprocessing, to_channels
from jobs.ml.scores import HEADLINE, classification_metrics
from jobs.register.keys import MODEL_INT8
from jobs.register.source_run import SourceRun

log = logging.getLogger("irmsia.register.quantize")
CALIBRATION_IMAGES = 64
"""Val images the activation ranges are calibrated on (all of them when val is smaller)."""
LATENCY_RUNS = 50
"""Timed single-image runs per model (after ``WARMUP_RUNS``); the median is recorded."""
WARMUP_RUNS = 5
SUPPORTED_TASKS = ("classification",)
_PRECISION = 4


@dataclass(frozen=True)
class Quantized:
    """The int8 file (``None`` when not kept) and the record for ``irmsia.quantization``."""

    path: Path | None
    record: dict[str, Any] = field(default_factory=dict)


def _session(path: Path) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def val_images(store: Store, run: SourceRun, predictions: bytes | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The run's val inputs ``(N, C, ...)`` float32 and labels, or empty arrays and why there are none."""
    empty = np.zeros((0,), np.float32), np.zeros((0,), np.int64)
    if predictions is None:
        return *empty, "the run has no predictions.json, so its val items are not known"
    _, splits = read_predictions(predictions, f"{run.prefix}predictions.json")
    val = splits.get("val")
    if val is None or not len(val.keys):
        return *empty, "the run's predictions.json has no val items"
    try:
        prep = Preprocessing.from_dict(run.config.get("preprocessing") or {})
    except (KeyError, TypeError, ValueError, IrmsiaError) as exc:
        return *empty, f"the run's config.json records no usable preprocessing ({exc})"
    channels = int(run.config["in_channels"])
    images = []
    for key in val.keys:
        try:
            x = prep(store.get_bytes(key), key)
        except IrmsiaError as exc:  # a volume named by its series, or data removed since training
            return *empty, f"val item {key} cannot be read as one file ({exc})"
        images.append(to_channels(x, channels).astype(np.float32))
    return np.stack(images), val.labels, ""


def calibration_images(images: np.ndarray) -> np.ndarray:
    """The images the activation ranges are fitted on: the first ``CALIBRATION_IMAGES`` val images."""
    return images[:CALIBRATION_IMAGES]


def quantize_static_int8(fp32: Path, out: Path, calibration: np.ndarray) -> None:
    """Write the static QDQ int8 model of ``fp32`` to ``out``, calibrated (MinMax) on ``calibration``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        """One image per batch, as serving sends them."""

        def __init__(self, name: str) -> None:
            self._batches = iter([{name: image[None]} for image in calibration])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    prepared = out.with_name(out.stem + ".pre.onnx")
    # shape inference and graph optimisation first (folds BatchNorm into the convolutions), as onnxruntime advises
    quant_pre_process(str(fp32), str(prepared))
    name = _session(prepared).get_inputs()[0].name
    quantize_static(
        str(prepared),
        str(out),
        Reader(name),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    prepared.unlink()


def _logits(session: Any, images: np.ndarray) -> np.ndarray:
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: image[None]})[0] for image in images])


def median_latencies(fp32: Any, int8: Any, images: np.ndarray, runs: int = LATENCY_RUNS) -> tuple[float, float]:
    """Median milliseconds per image of each session, interleaved over the same images (so both see the same
    machine load), after a warm-up."""
    name = fp32.get_inputs()[0].name
    times: dict[int, list[float]] = {0: [], 1: []}
    for i in range(WARMUP_RUNS + runs):
        batch = {name: images[i % len(images)][None]}
        for which, session in enumerate((fp32, int8)):
            start = time.perf_counter()
            session.run(None, batch)
            if i >= WARMUP_RUNS:
                times[which].append((time.perf_counter() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def _softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), _PRECISION)


def _headline(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float | None]:
    metrics = classification_metrics(labels, probs, classes)
    return {name: _round(metrics[name]) for name in HEADLINE}


def decision_metric(metric: str) -> str:
    """The headline metric the tolerance applies to: ``--metric`` when it is a val one, else val accuracy."""
    split, _, name = metric.partition("_")
    return name if split == "val" and name in HEADLINE else "accuracy"


def quantize_model(
    *,
    store: Store,
    run: SourceRun,
    onnx_path: Path | None,
    predictions: bytes | None,
    metric: str,
    max_drop: float,
) -> Quantized:
    """Quantize ``onnx_path`` to int8 and keep it when its val ``metric`` is at most ``max_drop`` below fp32's."""
    task = str(run.config.get("task") or "classification")
    record: dict[str, Any] = {"requested": "int8", "kept": False, "file": None, "max_drop": max_drop}

    def skipped(reason: str) -> Quantized:
        log.warning("--quantize int8: keeping the fp32 model only: %s", reason)
        return Quantized(None, {**record, "reason": reason})

    if onnx_path is None:
        return skipped("onnx and onnxruntime are not installed, so there is no model.onnx to quantize")
    if task not in SUPPORTED_TASKS:
        return skipped(f"not supported for task {task}: the int8 check scores classification val predictions only")
    images, labels, why = val_images(store, run, predictions)
    if why:
        return skipped(why)
    out = onnx_path.with_name(Path(MODEL_INT8).name)
    try:
        quantize_static_int8(onnx_path, out, calibration_images(images))
        int8 = _session(out)
    except Exception as exc:  # onnxruntime raises its own, undocumented types: any failure keeps fp32
        out.unlink(missing_ok=True)
        return skipped(f"onnxruntime static quantization failed ({type(exc).__name__}: {exc})")
    fp32 = _session(onnx_path)
    record["method"] = (
        f"onnxruntime static QDQ: per-channel int8 weights, uint8 activations, MinMax calibration on "
        f"{len(calibration_images(images))} val images"
    )
    temperature = float((run.metrics.get("serving") or {}).get("temperature") or 1.0)
    classes = [str(c) for c in (run.config.get("classes") or range(int(run.config["num_classes"])))]
    logits = {"fp32": _logits(fp32, images), "int8": _logits(int8, images)}
    scores = {k: _headline(labels, _softmax(v, temperature), classes) for k, v in logits.items()}
    fp32_ms, int8_ms = median_latencies(fp32, int8, images)
    sizes = {"fp32": onnx_path.stat().st_size, "int8": out.stat().st_size}
    name = decision_metric(metric)
    before, after = scores["fp32"][name], scores["int8"][name]
    finite = bool(np.isfinite(logits["int8"]).all())
    drop = None if before is None or after is None else round(before - after, _PRECISION)
    record.update(
        {
            "size_bytes": sizes,
            "size_ratio": round(sizes["int8"] / sizes["fp32"], _PRECISION),
            "latency_ms": {
                "fp32": round(fp32_ms, _PRECISION),
                "int8": round(int8_ms, _PRECISION),
                "statistic": "median",
                "runs": LATENCY_RUNS,
                "batch": 1,
                "threads": 1,
            },
            "latency_ratio": round(int8_ms / fp32_ms, _PRECISION) if fp32_ms else None,
            "val": {
                "images": len(images),
                "fp32": scores["fp32"],
                "int8": scores["int8"],
                "run_recorded": {k: run.scalar_metrics.get(f"val_{k}") for k in HEADLINE},
                "top1_agreement": _round(float(np.mean(logits["fp32"].argmax(1) == logits["int8"].argmax(1)))),
                "max_abs_logit_diff": _round(float(np.max(np.abs(logits["fp32"] - logits["int8"])))),
                "metric": f"val_{name}",
                "drop": drop,
            },
        }
    )
    if not finite:
        out.unlink()
        return skipped("the int8 model gives non-finite logits on val")
    if drop is None:
        out.unlink()
        return skipped(f"val_{name} is undefined on val (a single class?), so the int8 drop cannot be checked")
    if drop > max_drop:
        out.unlink()
        return skipped(f"int8 val_{name} {after} is {drop} below fp32's {before}, more than --quantize-max-drop")
    record.update(kept=True, file=MODEL_INT8, reason=f"int8 val_{name} {after} vs fp32 {before}: within {max_drop}")
    log.info("--quantize int8: kept (%s)", record["reason"])
    return Quantized(out, record)
