"""The training loop: AdamW, warm-up + cosine schedule, AMP, gradient clipping, early stopping, per-epoch checkpoints.

Determinism: every epoch reseeds torch (dropout), the shuffling generator, the augmentation generator and Python's
and NumPy's global generators from (seed, epoch), so the batches and random numbers of epoch ``e`` do not depend on
how the process got there, and the RNG states a checkpoint records are a function of (seed, epoch), not of the OS
entropy a fresh interpreter starts them from. With the model/optimiser/scheduler/scaler states from the checkpoint,
a resumed run repeats an uninterrupted one, and two uninterrupted runs seal the same bytes.
Throughput (images/s) and the data-wait fraction (time blocked on the next batch / epoch time) are measured per epoch.

Several processes (``jobs.train.distributed``): the model is wrapped in DistributedDataParallel and
``--batch-size`` is the global batch. Each epoch's permutation is the one a single process draws (a
``DistributedSampler`` seeded with the epoch's shuffle seed), and rank ``r`` of ``W`` takes every ``W``-th index of
it, so the union of the ranks' step-``i`` batches is exactly one process's step-``i`` batch: same steps per epoch,
same learning-rate schedule, gradients averaged over the same images. What still differs from one process:
BatchNorm statistics come from each rank's ``batch / W`` images (running statistics are averaged over the ranks
after every epoch, so that all ranks evaluate and checkpoint one model), and dropout/augmentation draw from
per-rank streams. Val/test are scored once: each rank predicts a contiguous share and the shares are gathered.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from jobs.core.progress import progress
from jobs.ml.networks import build_network, network_head
from jobs.train.acceleration import CompiledForward, scaled_lr, training_batches
from jobs.train.augment import Augmentation, random_crop
from jobs.train.cache import ImageSet
from jobs.train.checkpoint import TrainState
from jobs.train.data import class_counts
from jobs.train.distributed import World
from jobs.train.finetune import Finetuning
from jobs.train.init_weights import InitSource, load_into
from jobs.train.settings import TrainSettings
from jobs.train.tasks import task_for

log = logging.getLogger("irmsia.train.loop")


# -- device ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hardware:
    """Where training runs and with which numeric tricks."""

    device: torch.device
    name: str
    amp_dtype: torch.dtype | None
    """``float16`` (CUDA, with a GradScaler), ``bfloat16`` (CPU) or ``None`` (fp32)."""

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def describe(self) -> dict[str, Any]:
        amp = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(self.amp_dtype, "off")  # type: ignore[arg-type]
        return {"device": self.device.type, "device_name": self.name, "amp": amp}


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "cpu"


def pick_hardware(device: str, amp: str) -> Hardware:
    """CUDA when present (or asked for), else CPU; AMP fp16 on CUDA, bf16 on CPUs where it pays off."""
    from jobs.core.errors import UsageError

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is visible; use --device auto or cpu")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        return Hardware(torch.device("cuda"), torch.cuda.get_device_name(0), None if amp == "off" else torch.float16)
    # bf16 autocast is only faster than fp32 on CPUs with AMX tiles; AVX512-BF16 alone measured slower here.
    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    use_bf16 = amp == "on" or (amp == "auto" and amx)
    return Hardware(torch.device("cpu"), _cpu_name(), torch.bfloat16 if use_bf16 else None)


# -- batches ---------------------------------------------------------------------------------------------------
class BatchDataset(Dataset):
    """Whole batches gathered from the cached array in one indexing operation (no per-item collation)."""

    def __init__(self, images: ImageSet) -> None:
        self.images = images.images
        self.labels = images.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(index)
        labels = np.ascontiguousarray(self.labels[idx])
        return torch.from_numpy(np.ascontiguousarray(self.images[idx])), torch.from_numpy(labels)


def make_loader(
    images: ImageSet,
    batch_size: int,
    *,
    hardware: Hardware,
    workers: int,
    generator: torch.Generator | None = None,
    world: World | None = None,
) -> DataLoader:
    """Shuffled, last-partial-batch-dropped batches with ``generator``; in order without one (evaluation). With
    several processes (``world``), this rank's share of each global batch of ``batch_size``: a
    ``DistributedSampler`` whose ``set_epoch`` the trainer calls with the epoch's shuffle seed."""
    dataset = BatchDataset(images)
    if world is not None and world.distributed:
        drop_last = len(dataset) > batch_size
        ranks: DistributedSampler[int] = DistributedSampler(
            dataset, num_replicas=world.size, rank=world.rank, shuffle=True, seed=0, drop_last=drop_last
        )
        sampler = BatchSampler(ranks, batch_size // world.size, drop_last=drop_last)
    elif generator is not None:
        drop_last = len(dataset) > batch_size  # a batch of one breaks BatchNorm; keep tiny sets whole
        sampler = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last=drop_last)
    else:
        sampler = BatchSampler(SequentialSampler(dataset), batch_size, drop_last=False)
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        pin_memory=hardware.cuda,
        persistent_workers=workers > 0,
        prefetch_factor=4 if workers > 0 else None,
    )


def loader_workers(requested: int, hardware: Hardware) -> int:
    """-1: 4 workers feeding a GPU; none on CPU, where gathering from the cache is cheaper than a process hop."""
    if requested >= 0:
        return requested
    return 4 if hardware.cuda else 0


# -- schedule --------------------------------------------------------------------------------------------------
def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """LR multiplier per optimiser step: linear warm-up to 1, then cosine down to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def class_weight_tensor(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights ``N / (K * n_c)`` (1 for every class when balanced)."""
    counts = np.asarray(class_counts(labels, num_classes), dtype=np.float64)
    return torch.tensor(len(labels) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)


# -- the trainer -----------------------------------------------------------------------------------------------
def _epoch_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """The seed of one random stream in one epoch; rank > 0 (another training process) gets streams of its own."""
    return (seed * 1_000_003 + epoch * 101 + stream + rank * 2**40) % (2**63)


def is_improvement(value: float | None, best: float | None, monitor: str, min_delta: float) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` (lower is better for loss)."""
    if value is None:
        return best is None
    if best is None:
        return True
    return value < best - min_delta if monitor == "loss" else value > best + min_delta


class Trainer:
    """Owns the model and optimisation state of one run; ``fit`` runs epochs, ``evaluate`` scores a split."""

    def __init__(
        self,
        settings: TrainSettings,
        sets: dict[str, ImageSet],
        classes: tuple[str, ...],
        in_channels: int,
        hardware: Hardware,
        *,
        world: World | None = None,
        init: tuple[InitSource, dict[str, torch.Tensor]] | None = None,
    ) -> None:
        """``init``: the weights to start from (``--init``) and their tensors; else the seeded initialisation."""
        self.settings = settings
        self.world = world or World()
        self.sets = sets
        self.classes = classes
        self.hardware = hardware
        self.task = task_for(settings.task)
        self.workers = loader_workers(settings.workers, hardware)
        # Channels-last is cuDNN's fast path, and on CPU oneDNN's for volumes: a small-unet 3-D step at 32³-64³
        # took 2-2.5x less time in channels_last_3d there (2-D on CPU stays contiguous: no gain measured).
        self.memory_format = torch.channels_last if settings.dims == 2 else torch.channels_last_3d
        self.channels_last = hardware.cuda or settings.dims == 3
        torch.manual_seed(settings.seed)
        outputs = self.task.outputs(classes)
        model = build_network(settings.model, in_channels, outputs, settings.dims)
        self.finetuning = Finetuning(
            head=network_head(settings.model),
            freeze=settings.freeze,
            freeze_epochs=settings.freeze_epochs,
            backbone_lr_scale=settings.backbone_lr_scale,
        )
        self.reinitialised: list[str] = []
        """Head tensors the init's weights did not fit (another class count), left freshly initialised."""
        if init is not None:
            describe = f"--model {settings.model} with {in_channels} channel(s), {outputs} outputs, {settings.dims}-D"
            self.reinitialised = load_into(model, init[1], self.finetuning.head, init[0], describe)
        model = model.to(hardware.device)
        if self.channels_last:
            model = model.to(memory_format=self.memory_format)
        if hardware.cuda:
            torch.backends.cudnn.benchmark = True
        self.model = model
        self.train_module: nn.Module = model
        self._wrapped: frozenset[str] | None = None
        """The parameters DistributedDataParallel reduces (its set is fixed when it wraps): the trainable ones."""
        self.compiled = CompiledForward(self.train_module, settings.compile)
        # Fused AdamW on CUDA: one kernel per step instead of several per parameter group (launch-bound nets).
        # On CPU torch defaults to a per-parameter loop; the multi-tensor one took 1.7 ms instead of 2.5 ms per
        # small-unet step (3 % of a 2-D 32² batch-8 step), the same update.
        lr = scaled_lr(settings.lr, settings.batch_size, settings.lr_base_batch)
        self.optimizer = torch.optim.AdamW(
            self.finetuning.param_groups(model, lr),
            lr=lr,
            weight_decay=settings.weight_decay,
            fused=hardware.cuda or None,
            foreach=None if hardware.cuda else True,
        )
        train_n = len(sets["train"])
        drop_last = train_n > settings.batch_size
        self.steps_per_epoch = max(1, train_n // settings.batch_size if drop_last else 1)
        total = self.steps_per_epoch * settings.epochs
        warmup = round(settings.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(total, warmup, settings.min_lr_ratio)
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=hardware.amp_dtype == torch.float16)
        weight = self.task.loss_weight(sets["train"].labels, len(classes)) if settings.class_weights else None
        self.loss_weight = weight.to(hardware.device) if weight is not None else None
        self.augmentation = (
            Augmentation(
                rotate_deg=settings.rotate_deg,
                flip_prob=settings.flip_prob,
                zoom=settings.zoom,
                noise_std=settings.noise_std,
                noise_prob=settings.noise_prob,
            )
            if settings.augment
            else None
        )
        self.shuffle = torch.Generator()
        self.aug_generator = torch.Generator(device=hardware.device)
        self.train_loader = make_loader(
            sets["train"],
            settings.batch_size,
            hardware=hardware,
            workers=self.workers,
            generator=self.shuffle,
            world=self.world,
        )
        self.train_batches, self.data_path = training_batches(
            self.train_loader,
            sets["train"].images,
            sets["train"].labels,
            hardware.device,
            device_cache=settings.device_cache,
            prefetch=settings.prefetch,
        )

    def components(self) -> dict[str, Any]:
        """What a checkpoint saves and restores."""
        return {"model": self.model, "optimizer": self.optimizer, "scheduler": self.scheduler, "scaler": self.scaler}

    def _autocast(self) -> Any:
        hw = self.hardware
        return torch.autocast(hw.device.type, dtype=hw.amp_dtype or torch.float32, enabled=hw.amp_dtype is not None)

    def to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch on the training device: inputs as float32, labels as the task's loss takes them."""
        dev = self.hardware.device
        x = x.to(dev, non_blocking=True).float()
        y = self.task.target(y.to(dev, non_blocking=True))
        return x, y

    def forward(self, x: torch.Tensor, *, train: bool = False) -> torch.Tensor:
        """The model's logits for ``x`` (the memory layout and autocast of training); a training step goes through
        the compiled forward when ``--compile`` asks for it (evaluation stays eager: its shapes vary)."""
        if self.channels_last:
            x = x.contiguous(memory_format=self.memory_format)
        with self._autocast():
            return self.compiled(x) if train else self.model(x)

    def _wrap(self) -> None:
        """Across processes, wrap the model in DistributedDataParallel over its trainable parameters, again whenever
        that set changes (the backbone unfrozen after ``--freeze-epochs``): DDP fixes the set it reduces when it
        wraps and fails on a parameter that gets no gradient, or silently skips one that starts to get one."""
        trainable = frozenset(n for n, p in self.model.named_parameters() if p.requires_grad)
        if not self.world.distributed or trainable == self._wrapped:
            return
        from torch.nn.parallel import DistributedDataParallel

        # Buffers (BatchNorm running statistics) are averaged after each epoch instead of rank 0's being
        # broadcast before every forward: every image's statistics count, at one collective per epoch.
        self.train_module = DistributedDataParallel(
            self.model,
            device_ids=[torch.cuda.current_device()] if self.hardware.cuda else None,
            forward_sync_buffers=False,
        )
        self.compiled = CompiledForward(self.train_module, self.settings.compile)
        self._wrapped = trainable

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the training split; returns loss, images/s and data-wait fraction."""
        s = self.settings
        rank = self.world.rank
        torch.manual_seed(_epoch_seed(s.seed, epoch, 0, rank))
        self.shuffle.manual_seed(_epoch_seed(s.seed, epoch, 1))
        batches = self.train_loader.batch_sampler or self.train_loader.sampler  # batch_size=None: sampler batches
        if isinstance(sampler := getattr(batches, "sampler", None), DistributedSampler):
            sampler.set_epoch(_epoch_seed(s.seed, epoch, 1))  # seed 0 + this: the permutation one process draws
        self.aug_generator.manual_seed(_epoch_seed(s.seed, epoch, 2, rank))
        # Nothing here draws from these, but libraries may, and the checkpoint stores their states: unseeded,
        # they would differ between processes and so would every run's checkpoint and manifest.
        random.seed(_epoch_seed(s.seed, epoch, 3))
        np.random.seed(_epoch_seed(s.seed, epoch, 4) % 2**32)
        self.model.train()
        self.finetuning.apply(self.model, epoch)
        self._wrap()
        loss_sum = torch.zeros((), device=self.hardware.device)
        seen = 0
        wait = 0.0
        started = time.perf_counter()
        mark = started
        batches = progress(self.train_batches, len(self.train_batches), f"epoch {epoch}/{s.epochs}", unit="batches")
        segmentation = self.task.name == "segmentation"
        for x_cpu, y_cpu in batches:
            wait += time.perf_counter() - mark
            if segmentation and s.patch_size:  # before the conversion: an eighth of a 128³ batch's voxels at 64³
                x_cpu, y_cpu = random_crop(x_cpu, y_cpu, s.patch_size, self.aug_generator)
            x, y = self.to_device(x_cpu, y_cpu)
            if self.augmentation is not None:
                x, masks = self.augmentation.pair(x, y if segmentation else None, self.aug_generator)
                y = masks if masks is not None else y
            logits = self.forward(x, train=True)
            loss = self.task.loss(logits, y, self)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if s.grad_clip > 0:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), s.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            loss_sum += loss.detach() * len(y)
            seen += len(y)
            mark = time.perf_counter()
        if self.world.distributed:
            totals = self.world.sum_(torch.stack([loss_sum.float(), torch.tensor(float(seen), device=loss_sum.device)]))
            loss_sum, seen = totals[0], int(totals[1].item())
            self._average_buffers()
        if self.hardware.cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        return {
            "train_loss": float(loss_sum.item()) / max(1, seen),
            "images_per_s": seen / elapsed if elapsed > 0 else 0.0,
            "data_wait_fraction": wait / elapsed if elapsed > 0 else 0.0,
            "epoch_s": elapsed,
        }

    def _average_buffers(self) -> None:
        """BatchNorm running statistics, which each rank updated from its own images, averaged over the ranks (the
        counters are equal): every rank then holds the same model."""
        for buffer in self.model.buffers():
            if buffer.is_floating_point():
                self.world.sum_(buffer.data).div_(self.world.size)

    def evaluate(self, split: str, thresholds: list[float] | None = None) -> dict[str, Any]:
        """Metrics of the current model on ``split`` (``loss`` included); multi-label ``thresholds`` are chosen on
        ``split`` itself unless given (the run gives val's to test)."""
        return self.task.evaluate(self, split, thresholds)

    def fit(self, state: TrainState, on_epoch: Callable[[TrainState], None]) -> TrainState:
        """Train from ``state.epoch`` to ``epochs`` (or early stop); ``on_epoch`` checkpoints after each epoch."""
        s = self.settings
        while state.epoch < s.epochs and not state.stopped:
            epoch = state.epoch + 1
            stats = self.train_epoch(epoch)
            val = self.evaluate("val")
            value = val[s.monitor]
            groups = self.optimizer.param_groups
            entry = {
                "epoch": epoch,
                "lr": groups[0]["lr"],
                **({"backbone_lr": groups[1]["lr"]} if len(groups) > 1 else {}),  # --backbone-lr-scale's group
                "train_loss": round(stats["train_loss"], 6),
                "val_loss": round(val["loss"], 6),
                **{f"val_{k}": _round(val[k]) for k in self.task.headline},
            }
            timing = {
                "epoch": epoch,
                "images_per_s": round(stats["images_per_s"], 1),
                "data_wait_fraction": round(stats["data_wait_fraction"], 4),
                "epoch_s": round(stats["epoch_s"], 3),
            }
            state.epoch = epoch
            if is_improvement(value, state.best_metric, s.monitor, s.min_delta):
                state.best_metric, state.best_epoch = value, epoch
                state.best_state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            if s.patience and epoch - state.best_epoch >= s.patience and epoch < s.epochs:
                state.stopped = True
                log.info("early stopping: val %s has not improved for %d epochs", s.monitor, s.patience)
            entry["best"] = state.best_epoch == epoch
            state.history.append(entry)
            state.timings.append(timing)
            shown = " ".join(f"val_{k} {entry[f'val_{k}']}" for k in self.task.headline[:2])
            log.info(
                "epoch %d/%d train_loss %.4f val_loss %.4f %s %.0f img/s data-wait %.1f%%",
                epoch, s.epochs, entry["train_loss"], entry["val_loss"], shown,
                timing["images_per_s"], 100 * timing["data_wait_fraction"],
            )  # fmt: skip
            on_epoch(state)
        return state


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)
