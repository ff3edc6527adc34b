"""Time one AlexNet training step on the GPU: minialex next to PyTorch + cuDNN, fp32 and TF32.

    python benchmarks/gpu_step.py                    # both precisions, paper preset, batch 128
    python benchmarks/gpu_step.py --precision tf32 --steps 20
    python cli.py bench                              # the same, through the CLI
    python benchmarks/gpu_step.py --compare relu-apart,no-pad-k,loss-apart
                                                     # also time minialex without each of its
                                                     # choices (see VARIANTS), in the same process

A step is forward, softmax cross-entropy, backward and the SGD update (momentum 0.9, weight decay
5e-4), on random 227x227 images (the paper preset's input; see minialex/models/presets.py), batch
128, both AlexNet columns on one GPU. Each precision runs in its own subprocess because CuPy reads
``CUPY_TF32`` when it starts. Times are medians of CUDA-event-timed steps after warm-up. Peak
memory: PyTorch's ``max_memory_allocated``; for minialex the largest ``used_bytes`` of CuPy's
memory pool seen by a counting allocator during one step (a separate, untimed pass).

PyTorch is imported only here, only if present (it is never a dependency of minialex).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ------------------------------------------------------------------------------------------
# PyTorch reference: the paper's AlexNet in its grouped single-device form
# ------------------------------------------------------------------------------------------

def torch_step_times(batch, steps, warmup, precision, input_size=227, num_classes=1000):
    import torch
    from torch import nn

    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True
    # PyTorch's LRN divides alpha by size: alpha 5e-4 here is the paper's 1e-4 per term, k = 2.
    lrn = lambda: nn.LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)  # noqa: E731
    model = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(inplace=True), lrn(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Flatten(),
        nn.Linear(9216, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Linear(4096, num_classes),
    ).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(batch, 3, input_size, input_size, device="cuda")
    y = torch.randint(0, num_classes, (batch,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    peak = torch.cuda.max_memory_allocated()
    fwd = []
    with torch.no_grad():
        for _ in range(max(3, steps // 2)):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(x)
            end.record()
            end.synchronize()
            fwd.append(start.elapsed_time(end))
    return {"step_ms": statistics.median(times), "forward_ms": statistics.median(fwd),
            "peak_bytes": int(peak), "version": torch.__version__,
            "cudnn": torch.backends.cudnn.version()}


# ------------------------------------------------------------------------------------------
# minialex
# ------------------------------------------------------------------------------------------

def minialex_step_times(batch, steps, warmup, preset="paper", num_classes=1000):
    sys.path.insert(0, ROOT)
    import cupy
    import minialex
    import minialex.functional as F
    from minialex.models import AlexNet
    from minialex.optim import SGD

    dev = minialex.Device("cuda:0")
    model = AlexNet(num_classes=num_classes, preset=preset, devices=(dev, dev), seed=0)
    opt = SGD(model.named_parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    s = model.input_size
    with dev:
        x = minialex.Tensor(cupy.random.standard_normal((batch, 3, s, s), dtype=cupy.float32), device=dev)
        y = cupy.random.randint(0, num_classes, (batch,)).astype(cupy.int64)

    def step():
        opt.zero_grad()
        # labels were made in range: no device-side check, so the step has no host sync
        loss = F.cross_entropy(model(x), y, check_labels=False)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    cupy.cuda.Device(0).synchronize()

    times = []
    for _ in range(steps):
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        start.record()
        step()
        end.record()
        end.synchronize()
        times.append(cupy.cuda.get_elapsed_time(start, end))

    fwd = []
    with minialex.no_grad():
        for _ in range(max(3, steps // 2)):
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            model(x)
            end.record()
            end.synchronize()
            fwd.append(cupy.cuda.get_elapsed_time(start, end))

    # Peak memory: count the pool's used bytes at every allocation during one step.
    pool = cupy.get_default_memory_pool()
    peak = [pool.used_bytes()]

    def counting_malloc(size):
        mem = pool.malloc(size)
        peak[0] = max(peak[0], pool.used_bytes())
        return mem

    cupy.cuda.set_allocator(counting_malloc)
    try:
        step()
        cupy.cuda.Device(0).synchronize()
    finally:
        cupy.cuda.set_allocator(pool.malloc)
    return {"step_ms": statistics.median(times), "forward_ms": statistics.median(fwd),
            "peak_bytes": int(peak[0]), "version": cupy.__version__,
            "input_size": s, "pool_total_bytes": int(pool.total_bytes())}


# ------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _relu_apart():
    """Every conv's ReLU as its own op again: relu(conv2d(...)) in place of conv2d_relu."""
    import minialex.functional as F
    fused = F.conv2d_relu
    F.conv2d_relu = lambda *a, **k: F.relu(F.conv2d(*a, **k))
    try:
        yield
    finally:
        F.conv2d_relu = fused


@contextlib.contextmanager
def _no_pad_k():
    """The GEMMs' shared dimension as it is (conv1: 363), not padded to a multiple of 8."""
    from minialex.kernels import conv_gpu
    saved, conv_gpu.PAD_K = conv_gpu.PAD_K, 1
    try:
        yield
    finally:
        conv_gpu.PAD_K = saved


@contextlib.contextmanager
def _loss_apart():
    """Softmax cross-entropy as the NumPy formulas on CuPy (~15 launches), not kernels/loss.cu."""
    from minialex.functional import loss
    saved, loss.FUSED_ON_GPU = loss.FUSED_ON_GPU, False
    try:
        yield
    finally:
        loss.FUSED_ON_GPU = saved


#: --compare NAME: minialex's step again with one of its speed choices undone.
VARIANTS = {
    "relu-apart": ("ReLU as its own op", _relu_apart),
    "no-pad-k": ("GEMM K not padded", _no_pad_k),
    "loss-apart": ("softmax cross-entropy unfused", _loss_apart),
}


def run_one(args):
    """Both frameworks at one precision (inside a subprocess with CUPY_TF32 already set)."""
    out = {"precision": args.precision, "batch": args.batch}
    try:
        out["minialex"] = minialex_step_times(args.batch, args.steps, args.warmup, args.preset)
    except Exception as exc:  # report, keep the PyTorch figure
        out["minialex_error"] = f"{type(exc).__name__}: {exc}"
    for name in args.compare:      # the same step with one choice undone, for an A/B
        key = f"minialex_{name}"
        try:
            with VARIANTS[name][1]():
                out[key] = minialex_step_times(args.batch, args.steps, args.warmup, args.preset)
        except Exception as exc:
            out[f"{key}_error"] = f"{type(exc).__name__}: {exc}"
    try:
        import torch  # noqa: F401
        if args.preset == "paper":
            out["torch"] = torch_step_times(args.batch, args.steps, args.warmup, args.precision)
    except ImportError:
        out["torch_error"] = "PyTorch not installed"
    except Exception as exc:
        out["torch_error"] = f"{type(exc).__name__}: {exc}"
    print("JSON " + json.dumps(out))


def environment():
    info = {"python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
    try:
        import cupy
        props = cupy.cuda.runtime.getDeviceProperties(0)
        info["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        info["cupy"] = cupy.__version__
    except Exception as exc:
        info["gpu"] = f"unavailable ({exc})"
    try:
        import torch
        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = "not installed"
    return info


def format_table(results, env):
    lines = [f"GPU: {env.get('gpu')}  CUDA runtime: {env.get('cuda_runtime')}  CuPy: {env.get('cupy')}  "
             f"PyTorch: {env.get('torch')}  date: {env.get('date')}",
             f"{'precision':<9} {'framework':<11} {'step ms':>9} {'img/s':>8} {'fwd ms':>8} "
             f"{'peak MiB':>9} {'ratio':>7}"]
    for r in results:
        ours, ref = r.get("minialex"), r.get("torch")
        rows = [("minialex", ours, "minialex")]
        rows += [(name, r.get(f"minialex_{name}"), f"minialex_{name}") for name in VARIANTS
                 if f"minialex_{name}" in r or f"minialex_{name}_error" in r]
        rows.append(("pytorch", ref, "torch"))
        for name, d, key in rows:
            if d is None:
                err = r.get(f"{key}_error", "not run")
                lines.append(f"{r['precision']:<9} {name:<11} {err}")
                continue
            ratio = ""
            if name != "pytorch" and ref:
                ratio = f"{d['step_ms'] / ref['step_ms']:.2f}x"
            lines.append(f"{r['precision']:<9} {name:<11} {d['step_ms']:>9.2f} "
                         f"{r['batch'] * 1000 / d['step_ms']:>8.0f} {d['forward_ms']:>8.2f} "
                         f"{d['peak_bytes'] / 2**20:>9.0f} {ratio:>7}")
        if ours and ref:
            lines.append(f"{'':<9} memory ratio {ours['peak_bytes'] / ref['peak_bytes']:.2f}x")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--precision", choices=["fp32", "tf32", "both"], default="both")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--preset", default="paper")
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--compare", default="", type=lambda text: [v for v in text.split(",") if v],
                   help="also time minialex with these choices undone: "
                        + ", ".join(f"{k} ({d})" for k, (d, _) in VARIANTS.items()))
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    unknown = [v for v in args.compare if v not in VARIANTS]
    if unknown:
        p.error(f"--compare: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    if args._child:
        run_one(args)
        return 0
    precisions = ["fp32", "tf32"] if args.precision == "both" else [args.precision]
    results = []
    for prec in precisions:
        env = dict(os.environ, CUPY_TF32="1" if prec == "tf32" else "0", PYTHONPATH=ROOT)
        cmd = [sys.executable, os.path.abspath(__file__), "--_child", "--precision", prec,
               "--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
               "--preset", args.preset, "--compare", ",".join(args.compare)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        found = [l for l in proc.stdout.splitlines() if l.startswith("JSON ")]
        if not found:
            print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
            results.append({"precision": prec, "batch": args.batch, "minialex_error": "child failed",
                            "torch_error": "child failed"})
            continue
        results.append(json.loads(found[-1][5:]))
    env = environment()
    print(format_table(results, env))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
