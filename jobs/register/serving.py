"""What serving applies on top of the network: the temperature fitted on val and the operating points chosen there.

The train stage records both in ``metrics.json`` (``serving``), register copies them into the metadata
(``irmsia.evaluation.serving``), and ``api.load_model`` returns a module whose logits are already divided by the
temperature, so ``softmax(module(x))`` are the calibrated probabilities the thresholds were chosen on. A threshold
of ``"inf"`` (no score reached the specificity on val) never calls a case positive. ``OnnxModule`` serves an
ONNX graph (the INT8 model) through onnxruntime, called like the torch module. torch and onnxruntime only inside
``calibrated`` and ``OnnxModule``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from jobs.core.errors import UsageError


@dataclass(frozen=True)
class Serving:
    """The temperature and, per class and operating point (``youden``, ``specificity_0.9``…), its threshold."""

    temperature: float = 1.0
    operating_points: dict[str, dict[str, float | str]] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> Serving:
        """From a version's metadata; a version registered before calibration was kept serves uncalibrated."""
        section = (meta.get("irmsia", {}).get("evaluation") or {}).get("serving") or {}
        return cls(
            temperature=float(section.get("temperature") or 1.0),
            operating_points={str(c): dict(p) for c, p in (section.get("operating_points") or {}).items()},
        )

    def decide(self, probabilities: np.ndarray, class_index: int, class_name: str, point: str = "youden") -> np.ndarray:
        """Whether each row of calibrated ``probabilities`` is positive for the class at ``point``."""
        threshold = self.operating_points.get(class_name, {}).get(point)
        if threshold is None:
            known = ", ".join(f"{c}: {', '.join(p)}" for c, p in self.operating_points.items()) or "none"
            raise UsageError(f"no operating point {point!r} for class {class_name!r}; the model has {known}")
        scores = np.asarray(probabilities, np.float64)[:, class_index]
        return scores >= (np.inf if threshold == "inf" else float(threshold))


def calibrated(module: Any, temperature: float) -> Any:
    """``module`` with its logits divided by ``temperature`` (``module`` itself when it is 1), in eval mode."""
    if temperature == 1.0:
        return module
    import torch

    class TemperatureScaled(torch.nn.Module):
        """The network's logits over the temperature fitted on val."""

        def __init__(self, network: torch.nn.Module, t: float) -> None:
            super().__init__()
            self.network = network
            self.temperature = t

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.network(x) / self.temperature

    return TemperatureScaled(module, temperature).eval()


class OnnxModule:
    """An ONNX graph (bytes) in a CPU onnxruntime session, called like the network: a float tensor batch in, its
    logits tensor out, so ``calibrated``, ``Predictor`` and sliding windows use it unchanged."""

    def __init__(self, model: bytes) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: Any) -> Any:
        import torch

        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session.run(None, {self.input: batch})[0])

    def eval(self) -> OnnxModule:
        return self
