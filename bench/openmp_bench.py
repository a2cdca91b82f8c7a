"""OpenMP wait policies under host load: one small-unet training step, in a fresh process per policy.

libgomp reads ``OMP_WAIT_POLICY`` / ``GOMP_SPINCOUNT`` once, when torch loads it, so every measurement is its own
process. ``--busy N`` starts N busy-looping processes beside it (the load of other pods on the node). Prints the
median step per policy and its ratio to ``PASSIVE`` (what irmsia-train used before ``jobs.core.cpus.
openmp_defaults``), for the 2-D (32², batch 8) and 3-D (64³, batch 4, channels_last_3d) steps of
bench/RESULTS.md, "Train step round 3".

    PYTHONPATH=. python bench/openmp_bench.py --busy 0 2 6
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POLICIES = {
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin 100000": {"GOMP_SPINCOUNT": "100000"},
    "default": {},
}


def _step_child(dims: int, steps: int) -> None:
    """In the child: time ``steps`` training steps after 3 warm-up ones; prints the median in ms."""
    sys.path.insert(0, str(ROOT))
    import torch
    from monai.losses import DiceCELoss

    from jobs.ml.networks import BUILDERS

    torch.manual_seed(0)
    model = BUILDERS["small-unet"](3 if dims == 2 else 1, 2, dims)
    shape = (8, 3, 32, 32) if dims == 2 else (4, 1, 64, 64, 64)
    x = torch.randn(shape)
    y = (torch.rand((shape[0], 1, *shape[2:])) > 0.5).float()
    if dims == 3:  # as the trainer runs 3-D networks on CPU
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    times = []
    for i in range(steps + 3):
        started = time.perf_counter()
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i >= 3:
            times.append(time.perf_counter() - started)
    print(json.dumps({"ms": statistics.median(times) * 1000, "threads": torch.get_num_threads()}))


def _measure(dims: int, steps: int, policy: dict[str, str], threads: int) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_"))}
    env |= {**policy, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, "--child", str(dims), str(steps)], env=env, check=True,
                         capture_output=True, text=True, timeout=900)  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["threads"] != threads:  # the policy's team is not the one asked for: the figures would mislead
        raise SystemExit(f"the step ran {result['threads']} threads, not OMP_NUM_THREADS={threads}")
    return float(result["ms"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2], help="busy processes beside the step")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per setting, policy order alternating")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--steps-2d", type=int, default=30)
    parser.add_argument("--steps-3d", type=int, default=6)
    args = parser.parse_args(argv)
    rows = []
    for busy in args.busy:
        burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(1.0)
            for dims, steps in ((2, args.steps_2d), (3, args.steps_3d)):
                times: dict[str, list[float]] = {name: [] for name in POLICIES}
                for r in range(args.rounds):
                    order = list(POLICIES) if r % 2 == 0 else list(POLICIES)[::-1]
                    for name in order:
                        times[name].append(_measure(dims, steps, POLICIES[name], args.threads))
                base = statistics.median(times["PASSIVE"])
                for name, values in times.items():
                    row = {"busy": busy, "dims": dims, "policy": name, "ms": [round(v, 1) for v in values],
                           "vs_passive": round(base / statistics.median(values), 2)}  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
        finally:
            for p in burners:
                p.kill()
                p.wait()
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _step_child(int(sys.argv[2]), int(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
