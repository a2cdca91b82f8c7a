"""The networks a run can use, built by name for 2-D or 3-D inputs (shared by train and register).

Classifiers (DenseNet121, ResNet18/50, EfficientNet-B0, a small CNN) output one logit per class (or per finding
for multi-label); segmenters (MONAI's UNet, full and small) output one logit map per label value. Every network
is built with ``pretrained=False``: nothing is downloaded at run time. torch and monai are imported inside
functions so that importing ``jobs.core`` stays light for the CPU-only stage images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jobs.core.errors import UsageError

CLASSIFIER, SEGMENTER = "classifier", "segmenter"


def _densenet121(in_channels: int, outputs: int, dims: int) -> Any:
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=dims, in_channels=in_channels, out_channels=outputs, pretrained=False)


def _resnet(depth: int) -> Callable[[int, int, int], Any]:
    def build(in_channels: int, outputs: int, dims: int) -> Any:
        from monai.networks import nets

        factory = getattr(nets, f"resnet{depth}")
        return factory(pretrained=False, spatial_dims=dims, n_input_channels=in_channels, num_classes=outputs)

    return build


def _efficientnet_b0(in_channels: int, outputs: int, dims: int) -> Any:
    from monai.networks.nets import EfficientNetBN

    return EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=dims, in_channels=in_channels, num_classes=outputs
    )


def _small_cnn(in_channels: int, outputs: int, dims: int) -> Any:
    """A 4-block CNN for smoke runs and the demo: trains in seconds on a CPU (in 2-D or 3-D)."""
    from torch import nn

    conv, norm, pool, adaptive = (
        (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d)
        if dims == 2
        else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.AdaptiveAvgPool3d)
    )

    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(conv(cin, cout, 3, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True), pool(2))

    widths = (16, 32, 64, 64) if dims == 2 else (8, 16, 32, 32)
    return nn.Sequential(
        block(in_channels, widths[0]),
        block(widths[0], widths[1]),
        block(widths[1], widths[2]),
        block(widths[2], widths[3]),
        adaptive(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(widths[3], outputs),
    )


def _unet(channels: tuple[int, ...], residual_units: int) -> Callable[[int, int, int], Any]:
    def build(in_channels: int, outputs: int, dims: int) -> Any:
        from monai.networks.nets import UNet

        return UNet(
            spatial_dims=dims,
            in_channels=in_channels,
            out_channels=outputs,
            channels=channels,
            strides=(2,) * (len(channels) - 1),
            num_res_units=residual_units,
        )

    return build


@dataclass(frozen=True)
class Network:
    """A network by name: how to build it, what it does, and the input size it needs."""

    build: Callable[[int, int, int], Any]
    kind: str
    """``classifier`` (one logit per class) or ``segmenter`` (one logit map per label value)."""
    min_size: int
    """The smallest input side it accepts (its total downsampling)."""
    multiple: int = 1
    """Input sides must be a multiple of this (a U-Net's skip connections need the exact downsampled size)."""
    head: tuple[str, ...] = ()
    """Module names of the head: the layers whose shapes follow the output count (what fine-tuning re-initialises
    for other classes and leaves trainable under ``--freeze backbone``); everything else is the backbone."""


NETWORK_SPECS: dict[str, Network] = {
    "densenet121": Network(_densenet121, CLASSIFIER, 32, head=("class_layers.out",)),
    "resnet18": Network(_resnet(18), CLASSIFIER, 32, head=("fc",)),
    "resnet50": Network(_resnet(50), CLASSIFIER, 32, head=("fc",)),
    "efficientnet-b0": Network(_efficientnet_b0, CLASSIFIER, 32, head=("_fc",)),
    "small-cnn": Network(_small_cnn, CLASSIFIER, 16, head=("7",)),
    # MONAI's UNet ends in its outermost up-sampling layer (transposed conv + residual unit) at the output count
    "unet": Network(_unet((16, 32, 64, 128, 256), 2), SEGMENTER, 16, 16, head=("model.2",)),
    "small-unet": Network(_unet((8, 16, 32, 64), 1), SEGMENTER, 8, 8, head=("model.2",)),
}
NETWORKS: tuple[str, ...] = tuple(NETWORK_SPECS)
BUILDERS: dict[str, Callable[[int, int, int], Any]] = {name: spec.build for name, spec in NETWORK_SPECS.items()}
MIN_IMAGE_SIZE: dict[str, int] = {name: spec.min_size for name, spec in NETWORK_SPECS.items()}
"""The smallest input each network accepts (its total downsampling); smaller images are a usage error."""


def check_network(name: str, image_size: int | None = None, kind: str | None = None, depth: int | None = None) -> str:
    """``name`` if it is a known network of ``kind`` taking ``image_size`` (and ``depth``), else a ``UsageError``."""
    if name not in NETWORK_SPECS:
        raise UsageError(f"--model {name!r} is not a known network; choose one of: {', '.join(NETWORKS)}")
    spec = NETWORK_SPECS[name]
    if kind is not None and spec.kind != kind:
        fitting = ", ".join(n for n, s in NETWORK_SPECS.items() if s.kind == kind)
        raise UsageError(f"--model {name} is a {spec.kind}, this task needs a {kind}: use one of {fitting}")
    for flag, size in (("--image-size", image_size), ("--depth", depth)):
        if size is None:
            continue
        if size < spec.min_size:
            raise UsageError(f"{flag} {size} is too small for {name}: use at least {spec.min_size}")
        if size % spec.multiple:
            raise UsageError(f"{flag} {size}: {name} needs a multiple of {spec.multiple}")
    return name


def network_head(name: str) -> tuple[str, ...]:
    """The module names of ``name``'s head (see ``Network.head``)."""
    return NETWORK_SPECS[check_network(name)].head


def build_network(name: str, in_channels: int, num_classes: int, dims: int = 2) -> Any:
    """A freshly initialised ``torch.nn.Module`` for ``name`` (never pretrained) with ``num_classes`` outputs."""
    check_network(name)
    if in_channels < 1 or num_classes < 1 or dims not in (2, 3):
        raise UsageError(
            f"network needs in_channels >= 1, >= 1 output and 2 or 3 dimensions, got {in_channels}, "
            f"{num_classes} and {dims}"
        )
    return NETWORK_SPECS[name].build(in_channels, num_classes, dims)
