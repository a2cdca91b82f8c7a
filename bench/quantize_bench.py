"""What ``--quantize int8`` buys per network: ONNX file size and single-image CPU latency, int8 over fp32.

Each network (``pretrained=False``, seeded weights) is exported by the register stage's own ``export_onnx``,
quantized by ``jobs.register.quantize.quantize_static_int8`` (static QDQ, calibrated on synthetic images from
``tests.support.synthetic_split``), and both graphs are timed by ``median_latencies`` in the same process with the
same session settings (one thread): the fp32 graph is the baseline of each ratio. Weights are untrained, so top-1
agreement here only says the int8 graph is not broken; the register tests check agreement on a trained model.
Run: ``PYTHONPATH=. python bench/quantize_bench.py [network ...]`` (needs onnx and onnxruntime).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from jobs.ml.networks import build_network
from jobs.register.export import export_onnx
from jobs.register.quantize import _session, median_latencies, quantize_static_int8
from tests.support.synthetic_split import synthetic_image

CASES = {"small-cnn": 32, "resnet18": 64, "densenet121": 64}
"""Network -> input size (the project's defaults for the demo data are 32-64 px)."""


def images(size: int, n: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.stack([synthetic_image(rng, size, i % 2 == 0)[None] for i in range(n)]).astype(np.float32)


def bench(network: str, size: int, tmp: Path) -> str:
    torch.manual_seed(0)
    model = build_network(network, 1, 2).eval()
    batch = torch.from_numpy(images(size, 2))
    fp32_path, int8_path = tmp / f"{network}.onnx", tmp / f"{network}.int8.onnx"
    export_onnx(model, batch, fp32_path)
    data = images(size)
    quantize_static_int8(fp32_path, int8_path, data)
    fp32, int8 = _session(fp32_path), _session(int8_path)
    fp32_ms, int8_ms = median_latencies(fp32, int8, data)
    name = fp32.get_inputs()[0].name
    a = np.concatenate([fp32.run(None, {name: x[None]})[0] for x in data]).argmax(1)
    b = np.concatenate([int8.run(None, {name: x[None]})[0] for x in data]).argmax(1)
    fp32_size, int8_size = fp32_path.stat().st_size, int8_path.stat().st_size
    return (
        f"| {network} | {size} | {fp32_size} | {int8_size} | {int8_size / fp32_size:.3f} | {fp32_ms:.3f} | "
        f"{int8_ms:.3f} | {int8_ms / fp32_ms:.2f}x | {float(np.mean(a == b)):.2f} |"
    )


def main(argv: list[str]) -> None:
    header = ["network", "input px", "fp32 bytes", "int8 bytes", "size ratio", "fp32 ms", "int8 ms", "latency ratio"]
    print("| " + " | ".join([*header, "top-1 agree"]) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for network in argv or list(CASES):
            print(bench(network, CASES.get(network, 64), Path(tmp)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
