"""Fine-tuning's optimisation: the backbone frozen (``--freeze backbone``, for ``--freeze-epochs`` or the whole run)
and trained at a fraction of the learning rate (``--backbone-lr-scale``) beside the head.

The head is what ``jobs.ml.networks`` declares for the network (the layers whose shapes follow the output count);
the backbone is every other parameter. Frozen means no gradient (AdamW skips a parameter without one, weight decay
included, so its values stay exactly as loaded) and its normalisation layers kept in eval mode, so BatchNorm's
running statistics stay those of the init too. Whether the backbone is frozen is a function of the epoch alone, so a
resumed run freezes and unfreezes where an uninterrupted one does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn

from jobs.train.init_weights import is_head

log = logging.getLogger("irmsia.train.finetune")


@dataclass(frozen=True)
class Finetuning:
    """What is frozen when, and the backbone's learning-rate scale, for one run's network."""

    head: tuple[str, ...]
    """Module names of the network's head (``jobs.ml.networks``)."""
    freeze: str = "none"
    freeze_epochs: int = 0
    """With ``freeze == "backbone"``: frozen for these first epochs, then trained (0: the whole run)."""
    backbone_lr_scale: float = 1.0

    def frozen(self, epoch: int) -> bool:
        """Whether the backbone is frozen in ``epoch`` (1-based)."""
        return self.freeze == "backbone" and (self.freeze_epochs == 0 or epoch <= self.freeze_epochs)

    def param_groups(self, model: nn.Module, lr: float) -> list[dict[str, Any]]:
        """One group at ``lr``, or (with a backbone scale) the head at ``lr`` first and the backbone scaled after
        it: the first group's rate is the one the history records as ``lr``."""
        if self.backbone_lr_scale == 1.0:
            return [{"params": list(model.parameters()), "lr": lr}]
        head = [p for n, p in model.named_parameters() if is_head(n, self.head)]
        backbone = [p for n, p in model.named_parameters() if not is_head(n, self.head)]
        return [
            {"params": head, "lr": lr, "name": "head"},
            {"params": backbone, "lr": lr * self.backbone_lr_scale, "name": "backbone"},
        ]

    def apply(self, model: nn.Module, epoch: int) -> None:
        """Freeze or unfreeze the backbone for ``epoch``; call after ``model.train()``."""
        frozen = self.frozen(epoch)
        if self.freeze == "backbone" and (epoch == 1 or epoch == self.freeze_epochs + 1):
            log.info("epoch %d: backbone %s", epoch, "frozen, training the head only" if frozen else "trainable")
        for name, param in model.named_parameters():
            if not is_head(name, self.head):
                param.requires_grad_(not frozen)
        if frozen:
            for name, module in model.named_modules():
                if isinstance(module, nn.modules.batchnorm._NormBase) and not is_head(name, self.head):
                    module.eval()
