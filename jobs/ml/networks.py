"""The classification networks a run can use, built by name (shared by train and register).

Every network is built with ``pretrained=False``: nothing is downloaded at run time. torch and monai are
imported inside functions so that importing ``jobs.core`` stays light for the CPU-only stage images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobs.core.errors import UsageError


def _densenet121(in_channels: int, num_classes: int) -> Any:
    from monai.networks.nets import DenseNet121

    return DenseNet121(spatial_dims=2, in_channels=in_channels, out_channels=num_classes, pretrained=False)


def _resnet(depth: int) -> Callable[[int, int], Any]:
    def build(in_channels: int, num_classes: int) -> Any:
        from monai.networks import nets

        factory = getattr(nets, f"resnet{depth}")
        return factory(pretrained=False, spatial_dims=2, n_input_channels=in_channels, num_classes=num_classes)

    return build


def _efficientnet_b0(in_channels: int, num_classes: int) -> Any:
    from monai.networks.nets import EfficientNetBN

    return EfficientNetBN(
        "efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=in_channels, num_classes=num_classes
    )


def _small_cnn(in_channels: int, num_classes: int) -> Any:
    """A 4-block CNN for smoke runs and the demo: trains in seconds on a CPU."""
    from torch import nn

    def block(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )

    return nn.Sequential(
        block(in_channels, 16),
        block(16, 32),
        block(32, 64),
        block(64, 64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(64, num_classes),
    )


BUILDERS: dict[str, Callable[[int, int], Any]] = {
    "densenet121": _densenet121,
    "resnet18": _resnet(18),
    "resnet50": _resnet(50),
    "efficientnet-b0": _efficientnet_b0,
    "small-cnn": _small_cnn,
}
NETWORKS: tuple[str, ...] = tuple(BUILDERS)
# The smallest input each network accepts (its total downsampling); smaller images are a usage error.
MIN_IMAGE_SIZE: dict[str, int] = {
    "densenet121": 32,
    "resnet18": 32,
    "resnet50": 32,
    "efficientnet-b0": 32,
    "small-cnn": 16,
}


def check_network(name: str, image_size: int | None = None) -> str:
    """``name`` if it is a known network (and ``image_size`` is large enough), else a ``UsageError``."""
    if name not in BUILDERS:
        raise UsageError(f"--model {name!r} is not a known network; choose one of: {', '.join(NETWORKS)}")
    if image_size is not None and image_size < MIN_IMAGE_SIZE[name]:
        raise UsageError(f"--image-size {image_size} is too small for {name}: use at least {MIN_IMAGE_SIZE[name]}")
    return name


def build_network(name: str, in_channels: int, num_classes: int) -> Any:
    """A freshly initialised ``torch.nn.Module`` for ``name`` (never pretrained)."""
    check_network(name)
    if in_channels < 1 or num_classes < 2:
        raise UsageError(f"network needs in_channels >= 1 and >= 2 classes, got {in_channels} and {num_classes}")
    return BUILDERS[name](in_channels, num_classes)
