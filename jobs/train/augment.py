"""Training-time augmentation of a whole batch on the training device: rotation, flip, zoom, Gaussian noise.

One affine per image (rotation, zoom and flip combined, so the image is resampled once) applied with
``grid_sample``, then noise. Parameters are drawn from a ``torch.Generator`` the loop reseeds every epoch, so an
epoch's augmentation depends only on (seed, epoch): a resumed run sees exactly the batches an uninterrupted one does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True, kw_only=True)
class Augmentation:
    """Ranges of the random transforms; all zero means identity."""

    rotate_deg: float = 10.0
    flip_prob: float = 0.5
    zoom: float = 0.1
    noise_std: float = 0.02
    noise_prob: float = 0.5

    @property
    def geometric(self) -> bool:
        return self.rotate_deg > 0 or self.flip_prob > 0 or self.zoom > 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augmented copy of ``images`` ``(N, C, H, W)``; random numbers come only from ``generator``.

        ``generator`` lives on the images' device, so nothing is drawn on the CPU and copied per batch.
        """
        n, dev = images.shape[0], images.device
        out = images.float()
        if self.geometric:
            angle = (torch.rand(n, generator=generator, device=dev) * 2 - 1) * math.radians(self.rotate_deg)
            scale = 1 + (torch.rand(n, generator=generator, device=dev) * 2 - 1) * self.zoom
            flip = torch.where(torch.rand(n, generator=generator, device=dev) < self.flip_prob, -1.0, 1.0)
            # The grid maps output to input coordinates, so dividing by the scale zooms in when scale > 1.
            cos, sin, zero = torch.cos(angle) / scale, torch.sin(angle) / scale, torch.zeros(n, device=dev)
            theta = torch.stack([torch.stack([cos * flip, -sin, zero], 1), torch.stack([sin * flip, cos, zero], 1)], 1)
            grid = F.affine_grid(theta, list(out.shape), align_corners=False)
            out = F.grid_sample(out, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.noise_std > 0 and self.noise_prob > 0:
            apply = (torch.rand(n, generator=generator, device=dev) < self.noise_prob).float().view(n, 1, 1, 1)
            out = out + torch.randn(out.shape, generator=generator, device=dev) * self.noise_std * apply
        return out.to(images.dtype)
