"""Time each AlexNet layer, forward and forward+backward, at the paper's batch-128 shapes.

    python benchmarks/layers.py                          # GPU if there is one, else CPU
    python benchmarks/layers.py --device cpu --batch 8 --repeat 3
    python benchmarks/layers.py --device cuda:0 --torch  # next to PyTorch + cuDNN (if installed)
    python benchmarks/layers.py --relu-in-conv           # each conv with its ReLU as one op
                                                         # (conv2d_relu, as the fast AlexNet runs)

Shapes are the single-device form of the two-column net (§3.5): conv2, conv4 and conv5 as
grouped convolutions (groups=2), 227x227 input (Caffe's crop; 55 -> 27 -> 13 -> 6). LRN runs
over all channels of the layer here (in the two-column net each column normalises its own half:
the same work). On the CPU the readable ``*_naive`` ops are timed too, at ``--naive-batch``
images, wherever their Python loops are not hopeless (fewer than ``--naive-max-loops`` output
windows); the fast op is re-timed at that batch for the speed-up column.

Times are medians of ``--repeat`` runs after one warm-up run; on the GPU each run ends with a
device synchronise. PyTorch is imported only here, only when asked for and installed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import minialex  # noqa: E402
import minialex.cpu  # noqa: E402
import minialex.functional as F  # noqa: E402
from minialex import Tensor  # noqa: E402

minialex.cpu.configure()   # every core, OpenBLAS held to one thread, as the CLI runs


def layer_specs(batch, relu_in_conv=False):
    """(name, input shapes, minialex op, naive op or None, loops of naive, torch builder).

    With ``relu_in_conv`` every conv row times ``conv2d_relu`` (PyTorch: its conv, then its ReLU)
    and the separate relu1 row is left out, so the sum is that of the fast one-device AlexNet."""
    b = batch
    conv_op = F.conv2d_relu if relu_in_conv else F.conv2d
    conv = lambda s, p, g: (lambda x, w, bias: conv_op(x, w, bias, s, p, g))           # noqa: E731
    naive_conv = lambda s, p, g: (lambda x, w, bias: F.conv2d_naive(x, w, bias, s, p, g))  # noqa: E731
    pool = lambda x: F.max_pool2d(x, 3, 2)                                             # noqa: E731
    lrn = lambda x: F.local_response_norm(x, 5, 1e-4, 0.75, 2.0)                       # noqa: E731
    specs = [
        ("conv1 11x11/4", [(b, 3, 227, 227), (96, 3, 11, 11), (96,)], conv(4, 0, 1),
         naive_conv(4, 0, 1), 96 * 55 * 55, ("conv", 4, 0, 1)),
        ("relu1", [(b, 96, 55, 55)], F.relu, None, 0, ("relu",)),
        ("lrn1", [(b, 96, 55, 55)], lrn, F.local_response_norm_naive, 96, ("lrn",)),
        ("pool1 3x3/2", [(b, 96, 55, 55)], pool, lambda x: F.max_pool2d_naive(x, 3, 2),
         96 * 27 * 27, ("pool",)),
        ("conv2 5x5 g2", [(b, 96, 27, 27), (256, 48, 5, 5), (256,)], conv(1, 2, 2),
         naive_conv(1, 2, 2), 256 * 27 * 27, ("conv", 1, 2, 2)),
        ("lrn2", [(b, 256, 27, 27)], lrn, F.local_response_norm_naive, 256, ("lrn",)),
        ("pool2 3x3/2", [(b, 256, 27, 27)], pool, lambda x: F.max_pool2d_naive(x, 3, 2),
         256 * 13 * 13, ("pool",)),
        ("conv3 3x3", [(b, 256, 13, 13), (384, 256, 3, 3), (384,)], conv(1, 1, 1),
         naive_conv(1, 1, 1), 384 * 13 * 13, ("conv", 1, 1, 1)),
        ("conv4 3x3 g2", [(b, 384, 13, 13), (384, 192, 3, 3), (384,)], conv(1, 1, 2),
         naive_conv(1, 1, 2), 384 * 13 * 13, ("conv", 1, 1, 2)),
        ("conv5 3x3 g2", [(b, 384, 13, 13), (256, 192, 3, 3), (256,)], conv(1, 1, 2),
         naive_conv(1, 1, 2), 256 * 13 * 13, ("conv", 1, 1, 2)),
        ("pool5 3x3/2", [(b, 256, 13, 13)], pool, lambda x: F.max_pool2d_naive(x, 3, 2),
         256 * 6 * 6, ("pool",)),
        ("fc6", [(b, 9216), (4096, 9216), (4096,)], F.linear, None, 0, ("linear",)),
        ("dropout6", [(b, 4096)], None, None, 0, ("dropout",)),
        ("fc7", [(b, 4096), (4096, 4096), (4096,)], F.linear, None, 0, ("linear",)),
        ("fc8", [(b, 4096), (1000, 4096), (1000,)], F.linear, None, 0, ("linear",)),
        ("softmax+loss", [(b, 1000)], None, None, 0, ("loss",)),
    ]
    if relu_in_conv:
        specs = [(name.replace(" ", "+relu ", 1) if kind[0] == "conv" else name, shapes, op, naive,
                  loops, ("conv_relu",) + kind[1:] if kind[0] == "conv" else kind)
                 for name, shapes, op, naive, loops, kind in specs if name != "relu1"]
    return specs


def make_inputs(shapes, device, dtype, rng):
    return [Tensor(device.put(rng.standard_normal(s) * 0.1, dtype=dtype), requires_grad=True)
            for s in shapes]


def synchronizer(device):
    if device.is_cuda:
        from minialex.backend import cupy
        return lambda: cupy.cuda.Device(device.index).synchronize()
    return lambda: None


def median_time(fn, repeat, sync):
    fn()
    sync()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def minialex_timer(op, inputs, sync, repeat):
    """(forward seconds, forward+backward seconds) of ``op`` on ``inputs``."""
    def forward():
        with minialex.no_grad():
            op(*inputs)

    y = op(*inputs)
    g = y.xp.asarray(numpy.ones(y.shape, dtype=y.dtype)) if y.ndim else None

    def forward_backward():
        for t in inputs:
            t.grad = None
        out = op(*inputs)
        out.backward(g)

    return median_time(forward, repeat, sync), median_time(forward_backward, repeat, sync)


def minialex_op(name, op, batch, device):
    """Ops that need more than the inputs: dropout's generator, the loss's labels."""
    if name.startswith("dropout"):
        gen = numpy.random.default_rng(0)
        if device.is_cuda:
            from minialex.backend import cupy
            gen = cupy.random.default_rng(0)
        return lambda x: F.dropout(x, 0.5, generator=gen)
    if name.startswith("softmax"):
        labels = device.put(numpy.arange(batch) % 1000)
        # as in the training step: labels checked once when read, no device sync per step
        return lambda x: F.cross_entropy(x, labels, check_labels=False)
    return op


def torch_times(kind, shapes, repeat, dtype):
    import torch
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = False      # compare fp32 with fp32
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device("cuda")
    tdtype = torch.float32 if dtype == numpy.float32 else torch.float64
    xs = [torch.randn(*s, device=dev, dtype=tdtype, requires_grad=True) for s in shapes]
    if kind[0] == "conv":
        _, s, p, g = kind
        op = lambda x, w, b: torch.nn.functional.conv2d(x, w, b, s, p, 1, g)  # noqa: E731
    elif kind[0] == "conv_relu":
        _, s, p, g = kind
        op = lambda x, w, b: torch.relu(torch.nn.functional.conv2d(x, w, b, s, p, 1, g))  # noqa: E731
    elif kind[0] == "relu":
        op = torch.relu
    elif kind[0] == "lrn":      # torch divides alpha by size: 5e-4 is the paper's 1e-4 (§3.3)
        op = lambda x: torch.nn.functional.local_response_norm(x, 5, 5e-4, 0.75, 2.0)  # noqa: E731
    elif kind[0] == "pool":
        op = lambda x: torch.nn.functional.max_pool2d(x, 3, 2)  # noqa: E731
    elif kind[0] == "linear":
        op = torch.nn.functional.linear
    elif kind[0] == "dropout":
        op = lambda x: torch.nn.functional.dropout(x, 0.5, True)  # noqa: E731
    else:
        labels = torch.arange(shapes[0][0], device=dev) % 1000
        op = lambda x: torch.nn.functional.cross_entropy(x, labels)  # noqa: E731

    def forward():
        with torch.no_grad():
            op(*xs)

    def forward_backward():
        for t in xs:
            t.grad = None
        y = op(*xs)
        y.backward(torch.ones_like(y))

    sync = torch.cuda.synchronize
    return median_time(forward, repeat, sync), median_time(forward_backward, repeat, sync)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=128, help="images per batch (paper: 128)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per layer (median)")
    parser.add_argument("--device", default=None, help="cpu or cuda:N (default: GPU if present)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--naive-batch", type=int, default=1, help="batch for the naive ops (CPU)")
    parser.add_argument("--naive-max-loops", type=int, default=30_000,
                        help="skip a naive op whose loops visit more output windows than this")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive ops")
    parser.add_argument("--torch", action="store_true",
                        help="also time PyTorch's op (GPU only; default on when torch imports)")
    parser.add_argument("--relu-in-conv", action="store_true",
                        help="time each conv with its ReLU as one op (conv2d_relu)")
    parser.add_argument("--only", default=None, help="comma-separated layer names to keep (e.g. conv1,fc6)")
    args = parser.parse_args(argv)

    device = minialex.Device(args.device) if args.device else minialex.default_device()
    dtype = numpy.dtype(args.dtype)
    sync = synchronizer(device)
    rng = numpy.random.default_rng(0)
    use_torch = False
    if device.is_cuda:
        try:
            import torch  # noqa: F401
            use_torch = torch.cuda.is_available()
        except ImportError:
            use_torch = False
        if args.torch and not use_torch:
            print("PyTorch with CUDA is not importable: no PyTorch column")
    naive = not args.no_naive and not device.is_cuda

    print(f"minialex layer benchmark: device {device}, dtype {dtype}, batch {args.batch}, "
          f"median of {args.repeat}" + (f"; naive at batch {args.naive_batch}" if naive else ""))
    if device.is_cuda:
        print(f"CUPY_TF32={os.environ.get('CUPY_TF32', '0')} (TF32 applies to 2-D matmul only)")
    head = f"{'layer':<19} {'input':<20} {'fwd ms':>9} {'fwd+bwd ms':>11}"
    if naive:
        head += f" {'naive f+b ms':>13} {'fast f+b ms':>12} {'speed-up':>9}"
    if use_torch:
        head += f" {'torch fwd':>10} {'torch f+b':>10} {'ratio f+b':>9}"
    print(head)
    print("-" * len(head))
    keep = set(args.only.split(",")) if args.only else None
    total = [0.0, 0.0]
    for name, shapes, op, naive_op, loops, kind in layer_specs(args.batch, args.relu_in_conv):
        first = name.split()[0]                       # 'conv1', 'conv1+relu', 'softmax+loss'
        if keep and first not in keep and first.split("+")[0] not in keep:
            continue
        op = minialex_op(name, op, args.batch, device)
        inputs = make_inputs(shapes, device, dtype, rng)
        fwd, fwdbwd = minialex_timer(op, inputs, sync, args.repeat)
        total[0] += fwd
        total[1] += fwdbwd
        line = f"{name:<19} {str(shapes[0]):<20} {fwd * 1e3:>9.2f} {fwdbwd * 1e3:>11.2f}"
        if naive:
            if naive_op is None:
                line += f" {'-':>13} {'-':>12} {'-':>9}"
            elif loops * args.naive_batch > args.naive_max_loops:
                line += f" {'(hopeless)':>13} {'-':>12} {'-':>9}"
            else:
                small = [(args.naive_batch,) + s[1:] if i == 0 else s for i, s in enumerate(shapes)]
                small_inputs = make_inputs(small, device, dtype, rng)
                _, slow = minialex_timer(naive_op, small_inputs, sync, 1)
                _, quick = minialex_timer(op, small_inputs, sync, args.repeat)
                line += f" {slow * 1e3:>13.1f} {quick * 1e3:>12.2f} {slow / quick:>8.0f}x"
        if use_torch:
            tf, tfb = torch_times(kind, shapes, args.repeat, dtype)
            line += f" {tf * 1e3:>10.2f} {tfb * 1e3:>10.2f} {fwdbwd / tfb:>8.1f}x"
        print(line)
    print("-" * len(head))
    print(f"{'sum':<40} {total[0] * 1e3:>9.2f} {total[1] * 1e3:>11.2f}")


if __name__ == "__main__":
    main()
