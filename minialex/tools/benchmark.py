"""Timing one training step of minialex's AlexNet (``python cli.py bench``).

A step is what ``train`` does per batch: forward through both columns, softmax cross-entropy,
backward, and the SGD update (momentum 0.9, weight decay 5e-4), on random images of the preset's
input size. The time is the median over ``steps`` steps after ``warmup`` untimed ones (the first
steps compile CUDA kernels and grow CuPy's memory pool). On a GPU each step ends with a device
synchronize so the clock sees the work, not just the launches.

The side-by-side comparison with PyTorch + cuDNN lives in ``benchmarks/gpu_step.py`` (PyTorch is
never a dependency of the package); ``bench`` uses it when the file and PyTorch are present.
"""

from __future__ import annotations

import statistics
import time
from typing import Dict, Optional

import numpy

import minialex.functional as F
from ..autograd import Tensor, no_grad
from ..backend import cupy
from ..models import AlexNet
from ..optim import SGD


def time_training_step(preset: str = "mini", batch_size: int = 128, devices=None,
                       steps: int = 10, warmup: int = 2, num_classes: int = 1000,
                       seed: int = 0) -> Dict:
    """{'step_ms', 'images_per_s', 'forward_ms', 'preset', 'batch_size', 'devices'} for one
    training step (median of ``steps``), and forward-only time in eval mode."""

    model = AlexNet(num_classes=num_classes, preset=preset, devices=devices, seed=seed)
    opt = SGD(model.named_parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    d0 = model.devices[0]
    rng = numpy.random.default_rng(seed)
    s = model.input_size
    x = Tensor(d0.put(rng.standard_normal((batch_size, 3, s, s), dtype=numpy.float32)), device=d0)
    y = d0.put(rng.integers(0, num_classes, size=batch_size).astype(numpy.int64))

    def sync():
        for d in set(model.devices):
            if d.is_cuda:
                cupy.cuda.Device(d.index).synchronize()

    def step():
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sync()

    def forward():
        model.eval()
        with no_grad():
            model(x)
        sync()

    def median_ms(fn, n):
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t0))
        return statistics.median(times)

    for _ in range(warmup):
        step()
    step_ms = median_ms(step, steps)
    forward_ms = median_ms(forward, max(1, steps // 2))
    return {"preset": preset, "batch_size": batch_size,
            "devices": (str(model.devices[0]) if model.devices[0] == model.devices[1] else
                        " and ".join(str(d) for d in model.devices)),
            "step_ms": step_ms, "images_per_s": batch_size * 1000 / step_ms,
            "forward_ms": forward_ms, "steps": steps, "warmup": warmup}


def format_result(r: Dict, precision: Optional[str] = None) -> str:
    prec = f", {precision}" if precision else ""
    return (f"minialex AlexNet '{r['preset']}' on {r['devices']}{prec}, batch {r['batch_size']}: "
            f"training step {r['step_ms']:.1f} ms (median of {r['steps']}, after {r['warmup']} "
            f"warm-up), {r['images_per_s']:.0f} images/s; forward only {r['forward_ms']:.1f} ms")
