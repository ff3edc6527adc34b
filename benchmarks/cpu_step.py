"""Time one AlexNet training step on the CPU: minialex next to PyTorch, interleaved in one process.

    python benchmarks/cpu_step.py                          # mini, tiny and paper (batch 16)
    python benchmarks/cpu_step.py --presets mini --batch 128 --rounds 7 --threads 2
    python benchmarks/cpu_step.py --no-layers              # ratios only
    python benchmarks/cpu_step.py --baseline /tmp/old      # also an older checkout's minialex
                                                           # (git worktree add /tmp/old <commit>),
                                                           # paired, and same weights checked

A step is forward, softmax cross-entropy, backward and the SGD update (momentum 0.9, weight decay
5e-4 on weights), on random images, both AlexNet columns on 'cpu' (minialex's one-device path).
PyTorch runs the same network in its grouped single-device form (conv2/4/5 with groups=2, LRN over
each column's own channels, fc6/fc7 holding both columns' neurons, the paper's dropout).

Before timing, the two are checked to be the same function: minialex's weights are copied into
the PyTorch net, then the logits must agree in float32 and every weight gradient in float64
(dropout off for the check: its masks come from different generators).

Both frameworks get ``--threads`` threads (OpenBLAS through its environment variable, set before
NumPy is imported; PyTorch through ``set_num_threads``). OpenBLAS's idle threads keep spinning for
a while after a GEMM and slow whatever runs next, so at every switch between the frameworks the
script sleeps ``--pause`` seconds and takes one untimed step. Each round times ``--steps`` steps
of each; the ratio is the median of minialex's steps over the median of PyTorch's (and, less
moved by other work on the machine, the fastest over the fastest).

The per-layer table times each layer's forward and backward inside real steps: for minialex every
``Function`` call (autograd's ``Function.method``), for PyTorch module hooks. PyTorch is imported
only here, only if installed (``--no-torch``, or PyTorch missing: minialex alone, and the
baseline if given); it is never a dependency of minialex.

The roofline table puts each of minialex's ops, forward and backward, next to the machine's own
limit. At start the script measures two rates on this machine with ``--threads`` threads: the GEMM
rate (float32 2048 x 2048 products, the better of OpenBLAS's own threads and minialex's
``parallel_matmul``) and the memory bandwidth (a 256 MB copy shared among the threads, read + write
counted), and both again at the end, and takes the better of each (other work on the machine
only ever lowers them). A quiet 2-core machine here gave about 300 GFLOP/s and 10-20 GB/s. An op's floor is the larger of its FLOPs / the GEMM rate and the bytes it must move /
the bandwidth:

- FLOPs: 2 per multiply-add of the direct algorithm (conv: N*OH*OW*K*C/groups*kh*kw forward, the
  same again for dW and for dx in the backward; linear likewise), so Winograd, with 4/9 of the
  multiply-adds, can show more than 100%; the other ops' FLOPs are left at 0 (their floor is memory).
- bytes: what the op reads and writes at the least: its inputs and outputs forward, and the
  gradient, what it saved and the gradients it returns backward. The SGD step reads the weights,
  gradients and momenta and writes the weights and momenta (5 x 4 bytes per parameter).

The share is floor / time; the step's share is the sum of the floors over the sum of the times.
An op whose data stay in the cache (the small ones, the SGD step over a small net) can beat the
memory floor, which is measured for data that do not.

minialex sets glibc's malloc to keep freed memory for the next step (``minialex.cpu.MMAP_THRESHOLD``).
That holds for the whole process, so PyTorch's steps here get it too: its paper step at batch 16
took about 580 ms here and about 700 ms alone in a process with glibc's defaults, where it faulted
about 108,000 pages in per step (2026-11-30). The ratios compare the two on the same allocator.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import OrderedDict


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presets", default="mini,tiny,paper")
    parser.add_argument("--batch", type=int, default=128, help="batch for mini and tiny")
    parser.add_argument("--paper-batch", type=int, default=16, help="batch for paper")
    parser.add_argument("--classes", type=int, default=10, help="classes (paper: 1000)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5, help="switches between the frameworks")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per framework per round")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds of rest at each switch")
    parser.add_argument("--no-layers", action="store_true",
                        help="skip the per-layer tables and the roofline")
    parser.add_argument("--no-torch", action="store_true",
                        help="minialex alone (and --baseline): no PyTorch, even if installed")
    parser.add_argument("--baseline", default=None, metavar="DIR",
                        help="a checkout of an older minialex, timed as a third contender")
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:      # before NumPy loads OpenBLAS
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)
    os.environ["MINIALEX_THREADS"] = str(ARGS.threads)

import numpy  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import minialex  # noqa: E402
import minialex.cpu  # noqa: E402
import minialex.functional as F  # noqa: E402
from minialex import autograd  # noqa: E402
from minialex.models import AlexNet  # noqa: E402
from minialex.models.presets import PRESETS  # noqa: E402
from minialex import cpu as utils  # noqa: E402
from minialex.optim import SGD  # noqa: E402

minialex.cpu.configure()   # every core, OpenBLAS held to one thread, as the CLI runs

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


# ------------------------------------------------------------------------------------------
# The two networks
# ------------------------------------------------------------------------------------------

def minialex_net(preset, classes, dtype=numpy.float32):
    model = AlexNet(num_classes=classes, preset=preset, devices=("cpu", "cpu"), seed=0, dtype=dtype)
    return model, SGD(model.named_parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def torch_net(preset, classes, model, dtype):
    """PyTorch's form of ``model`` (weights copied in), and its SGD."""
    import torch
    from torch import nn
    p = PRESETS[preset]
    c1, c2, c3, c4, c5 = (2 * c for c in p.channels)
    side = p.spatial_sizes()["pool5"]

    class ColumnLRN(nn.Module):       # each column normalises its own channels (§3.3)
        def forward(self, x):         # torch divides alpha by size: 5e-4 is the paper's 1e-4
            n, c, h, w = x.shape
            y = nn.functional.local_response_norm(x.reshape(2 * n, c // 2, h, w), 5, 5e-4, 0.75, 2.0)
            return y.reshape(n, c, h, w)

    class PaperDropout(nn.Module):    # §4.2: y = x * mask in training, x * 0.5 at test
        def forward(self, x):
            return x * (torch.rand_like(x) >= 0.5) if self.training else x * 0.5

    class Scale(nn.Module):           # a grey preset averages the channels first (presets.py)
        def forward(self, x):
            return (x.mean(dim=1, keepdim=True) if p.grey else x) * p.input_scale

    net = nn.Sequential(OrderedDict([
        ("scale", Scale()),
        ("conv1", nn.Conv2d(p.conv_layers()[0].inputs, c1, p.conv1_kernel, p.conv1_stride, p.conv1_padding)),
        ("relu1", nn.ReLU()), ("lrn1", ColumnLRN()), ("pool1", nn.MaxPool2d(3, 2)),
        ("conv2", nn.Conv2d(c1, c2, 5, padding=2, groups=2)),
        ("relu2", nn.ReLU()), ("lrn2", ColumnLRN()), ("pool2", nn.MaxPool2d(3, 2)),
        ("conv3", nn.Conv2d(c2, c3, 3, padding=1)), ("relu3", nn.ReLU()),
        ("conv4", nn.Conv2d(c3, c4, 3, padding=1, groups=2)), ("relu4", nn.ReLU()),
        ("conv5", nn.Conv2d(c4, c5, 3, padding=1, groups=2)), ("relu5", nn.ReLU()),
        ("pool5", nn.MaxPool2d(3, 2)), ("flatten", nn.Flatten()),
        ("fc6", nn.Linear(c5 * side * side, 2 * p.fc)), ("relu6", nn.ReLU()), ("drop6", PaperDropout()),
        ("fc7", nn.Linear(2 * p.fc, 2 * p.fc)), ("relu7", nn.ReLU()), ("drop7", PaperDropout()),
        ("fc8", nn.Linear(2 * p.fc, classes)),
    ])).to(dtype)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for layer in LAYERS:
            for kind in ("weight", "bias"):
                both = [params[f"column{c}.{layer}.{kind}"].numpy() for c in (0, 1)]
                getattr(net, layer).__getattr__(kind).copy_(torch.from_numpy(numpy.concatenate(both)))
        net.fc8.weight.copy_(torch.from_numpy(params["fc8.weight"].numpy()))
        net.fc8.bias.copy_(torch.from_numpy(params["fc8.bias"].numpy()))
    decay = [q for n, q in net.named_parameters() if n.endswith("weight")]
    rest = [q for n, q in net.named_parameters() if not n.endswith("weight")]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0}],
                          lr=0.01, momentum=0.9)
    return net, opt


def torch_param_grads(net):
    """PyTorch's gradients under minialex's names (splitting each stacked layer by column)."""
    out = {}
    for layer in LAYERS:
        for kind in ("weight", "bias"):
            g = getattr(net, layer).__getattr__(kind).grad.numpy()
            half = g.shape[0] // 2
            out[f"column0.{layer}.{kind}"], out[f"column1.{layer}.{kind}"] = g[:half], g[half:]
    out["fc8.weight"], out["fc8.bias"] = net.fc8.weight.grad.numpy(), net.fc8.bias.grad.numpy()
    return out


def check_same_function(preset, classes, batch):
    """Logits equal in float32, every gradient equal in float64 (dropout off); returns the
    largest differences."""
    import torch
    rng = numpy.random.default_rng(1)
    s = PRESETS[preset].input_size
    images = rng.standard_normal((min(batch, 8), 3, s, s)) * 60
    labels = rng.integers(0, classes, len(images))
    worst = {}
    for dtype, tdtype in ((numpy.float32, torch.float32), (numpy.float64, torch.float64)):
        model, _ = minialex_net(preset, classes, dtype)
        net, _ = torch_net(preset, classes, model, tdtype)
        model.eval()
        net.eval()
        logits = model(minialex.Tensor(images.astype(dtype)))
        F.cross_entropy(logits, labels).backward()
        x = torch.from_numpy(images.astype(dtype))
        tlogits = net(x)
        torch.nn.functional.cross_entropy(tlogits, torch.from_numpy(labels)).backward()
        if dtype == numpy.float32:
            scale = numpy.abs(tlogits.detach().numpy()).max()
            worst["logits (float32, relative)"] = numpy.abs(logits.numpy() - tlogits.detach().numpy()).max() / scale
            assert worst["logits (float32, relative)"] < 1e-4, worst
        else:
            tg = torch_param_grads(net)
            rel = max(numpy.abs(p.grad - tg[n]).max() / max(numpy.abs(tg[n]).max(), 1e-30)
                      for n, p in model.named_parameters())
            worst["gradients (float64, relative)"] = rel
            assert rel < 1e-9, worst
    return worst


# ------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------

class Steps:
    """One framework's training step on fixed random data."""

    def __init__(self, framework, preset, classes, batch):
        self.framework = framework
        rng = numpy.random.default_rng(0)
        s = PRESETS[preset].input_size
        images = (rng.standard_normal((batch, 3, s, s)) * 60).astype(numpy.float32)
        labels = rng.integers(0, classes, batch)
        self.model, self.opt = minialex_net(preset, classes)
        self.model.train()
        if framework == "torch":
            import torch
            self.model, self.opt = torch_net(preset, classes, self.model, torch.float32)
            self.model.train()
            self.x, self.y = torch.from_numpy(images), torch.from_numpy(labels)
        else:
            self.x, self.y = minialex.Tensor(images), labels

    def __call__(self):
        if self.framework == "torch":
            import torch
            self.opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(self.model(self.x), self.y).backward()
        else:
            self.opt.zero_grad()
            F.cross_entropy(self.model(self.x), self.y, check_labels=False).backward()
        self.opt.step()


class BaselineSteps:
    """The training step of the minialex in another checkout (imported as ``minialex_baseline``),
    on the same data, with its CPU set up as that code expects."""

    def __init__(self, folder, preset, classes, batch, same_data: Steps, threads):
        import importlib.util
        name = "minialex_baseline"
        if name not in sys.modules:
            init = os.path.join(folder, "minialex", "__init__.py")
            spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[
                os.path.dirname(init)])
            sys.modules[name] = module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        old = sys.modules[name]
        importlib.import_module(name + ".models")
        self.model = old.models.AlexNet(num_classes=classes, preset=preset, devices=("cpu", "cpu"),
                                        seed=0)
        self.model.train()
        self.opt = importlib.import_module(name + ".optim").SGD(self.model.named_parameters())
        self.F = importlib.import_module(name + ".functional")
        self.x, self.y, self.threads = old.Tensor(same_data.x.data.copy()), same_data.y, threads
        # From the package layout of issue 30 on, importing minialex sets nothing: configure it
        # as this one is, and its threads hold OpenBLAS to one thread as these do.
        try:
            self.configured = hasattr(importlib.import_module(name + ".cpu"), "configure")
        except ImportError:      # an older layout: that minialex configured itself on import
            self.configured = False
        if self.configured:
            sys.modules[name + ".cpu"].configure(threads)

    def __call__(self):
        if utils._BLAS and not self.configured:
            utils._BLAS(self.threads)            # back to 1 at the next minialex step below
        self.opt.zero_grad()
        self.F.cross_entropy(self.model(self.x), self.y, check_labels=False).backward()
        self.opt.step()


def same_weights(model, other) -> str:
    """'yes' when two models (same init, same steps) hold the same weights, bit for bit: a change
    meant only to be faster must leave training unchanged. 'NO', or, where the two checkouts
    build different networks for the preset (a retuned preset), which parameter differs."""
    ours, theirs = dict(model.named_parameters()), dict(other.named_parameters())
    shape = lambda params, name: tuple(params[name].data.shape) if name in params else "absent"
    for name in sorted(set(ours) | set(theirs)):
        if shape(ours, name) != shape(theirs, name):
            return (f"NO (a different network: {name} is {shape(ours, name)} here, "
                    f"{shape(theirs, name)} in the baseline)")
    same = all(numpy.array_equal(p.data, theirs[name].data) for name, p in ours.items())
    return "yes" if same else "NO"


def interleaved(steps_by_name, rounds, per_round, pause):
    """{name: [seconds per step]}: the frameworks in turn, a rest and an untimed step at each switch."""
    times = {name: [] for name in steps_by_name}
    for r in range(rounds):      # every other round in the reverse order: none always goes first
        for name, step in (list if r % 2 == 0 else reversed)(list(steps_by_name.items())):
            time.sleep(pause)
            if name == "minialex" and "baseline" in steps_by_name and utils._BLAS:
                utils._BLAS(1)                   # as minialex's thread pool sets it
            step()
            for _ in range(per_round):
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
    return times


def nbytes(arrays) -> int:
    """Bytes of the arrays among ``arrays`` (None and numbers count 0)."""
    arrays = arrays if isinstance(arrays, (tuple, list)) else (arrays,)
    return sum(getattr(a, "nbytes", 0) for a in arrays)


def direct_flops(fn, args, out) -> float:
    """2 x the multiply-adds of ``fn``'s forward by the direct algorithm (conv, linear), else 0."""
    if fn.name in ("conv2d", "conv2d_relu"):          # N*OH*OW*K * C/groups*kh*kw
        return 2.0 * out.size * args[1][0].size
    if fn.name == "linear":                           # N*out * in
        return 2.0 * out.size * args[1].shape[1]
    return 0.0


def minialex_layer_times(step, repeat):
    """({layer label: [forward s, backward s]}, {label: [(FLOPs, bytes) forward, backward]}),
    times summed over ``repeat`` steps through every Function, the work of one step."""
    totals, work, labels, counts, flops = OrderedDict(), OrderedDict(), {}, {}, {}
    original = autograd.Function.method

    def timed(fn, name):
        run = original(fn, name)
        if id(fn) not in labels:
            op = fn.name or type(fn).__name__
            counts[op] = counts.get(op, 0) + 1
            labels[id(fn)] = f"{op} #{counts[op]}"
        label = labels[id(fn)]

        def call(*args):
            saved = nbytes(fn.saved) if name == "backward" else 0
            start = time.perf_counter()
            out = run(*args)
            totals.setdefault(label, [0.0, 0.0])[name == "backward"] += time.perf_counter() - start
            if name == "forward":
                flops[id(fn)] = direct_flops(fn, args, out)
                cost = (flops[id(fn)], nbytes(args) + nbytes(out))
            else:       # dW always, dx where the input needs it: the forward's work again each
                grads = out if isinstance(out, (tuple, list)) else (out,)
                cost = (flops.get(id(fn), 0.0) * (1 + (grads[0] is not None)),
                        nbytes(args) + saved + nbytes(grads))
            work.setdefault(label, [(0.0, 0), (0.0, 0)])[name == "backward"] = cost
            return out
        return call

    autograd.Function.method = timed
    try:
        for _ in range(repeat):
            labels.clear()
            counts.clear()
            step()
    finally:
        autograd.Function.method = original
    start = time.perf_counter()
    for _ in range(repeat):
        step.opt.step()
    totals["SGD step"] = [time.perf_counter() - start, 0.0]
    parameters = sum(p.data.nbytes for _, p in step.model.named_parameters())
    work["SGD step"] = [(0.0, 5 * parameters), (0.0, 0)]      # read w, g, v; write w, v
    return totals, work


# ------------------------------------------------------------------------------------------
# The machine's limits and the roofline
# ------------------------------------------------------------------------------------------

def best_seconds(fn, repeat=8):
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def machine_rates(threads):
    """(GEMM FLOP/s, memory bytes/s) of this machine on ``threads`` threads, best of a few tries.

    GEMM: float32 2048 x 2048 x 2048 products, the better of OpenBLAS with ``threads`` threads of
    its own and minialex's ``parallel_matmul`` (rows shared among its threads, OpenBLAS on one).
    Memory: a 256 MB float32 copy, cut into one slice per thread (read + write: 512 MB moved)."""
    rng = numpy.random.default_rng(0)
    a, b = (rng.standard_normal((2048, 2048), dtype=numpy.float32) for _ in range(2))
    gemm = [best_seconds(lambda: utils.parallel_matmul(a, b))]
    if utils._BLAS is not None:
        utils._BLAS(threads)
        gemm.append(best_seconds(lambda: a @ b))
        utils._BLAS(1)                      # as minialex's threads keep it
    source = numpy.ones(64 << 20, dtype=numpy.float32)
    target = numpy.empty_like(source)
    parts = utils.equal_slices(len(source), threads)
    copy = best_seconds(lambda: utils.in_parallel(
        lambda s: numpy.copyto(target[s], source[s]), parts))
    return 2.0 * 2048 ** 3 / min(gemm), 2.0 * source.nbytes / copy


def print_roofline(title, totals, work, repeat, rates):
    """Each op's time, floor and share of the floor reached; returns the step's (time, floor) s."""
    gemm, bandwidth = rates
    print(f"  minialex's roofline, {title}: GEMM {gemm / 1e9:.0f} GFLOP/s, memory "
          f"{bandwidth / 1e9:.1f} GB/s; FLOPs of the direct algorithm")
    print(f"    {'op':<24} {'pass':<4} {'ms':>8} {'GFLOP':>7} {'MB':>8} {'floor ms':>9} {'share':>6}")
    step_time = step_floor = 0.0
    for label, seconds in totals.items():
        for p, pass_name in enumerate(("", "") if label == "SGD step" else ("fwd", "bwd")):
            t = seconds[p] / repeat
            flops, moved = work.get(label, [(0.0, 0), (0.0, 0)])[p]
            if t == 0.0 and flops == 0.0 and moved == 0:
                continue
            floor = max(flops / gemm, moved / bandwidth)
            step_time, step_floor = step_time + t, step_floor + floor
            if t > 0.00005:
                print(f"    {label:<24} {pass_name:<4} {1e3 * t:8.2f} {flops / 1e9:7.3f} "
                      f"{moved / 1e6:8.1f} {1e3 * floor:9.2f} {floor / t:6.0%}")
    print(f"    {'step':<29} {1e3 * step_time:8.2f} {'':>16} {1e3 * step_floor:9.2f} "
          f"{step_floor / step_time:6.0%}")
    return step_time, step_floor


def torch_layer_times(step, repeat):
    import torch
    totals, start = OrderedDict(), {}
    hooks = []
    for name, module in step.model.named_children():
        totals[name] = [0.0, 0.0]

        def pre(m, *_, name=name):
            start[name] = time.perf_counter()

        def post_f(m, inputs, output, name=name):
            totals[name][0] += time.perf_counter() - start[name]

        def post_b(m, gin, gout, name=name):
            totals[name][1] += time.perf_counter() - start[name]

        hooks += [module.register_forward_pre_hook(pre), module.register_forward_hook(post_f),
                  module.register_full_backward_pre_hook(pre), module.register_full_backward_hook(post_b)]
    for _ in range(repeat):
        step()
    for h in hooks:
        h.remove()
    begin = time.perf_counter()
    for _ in range(repeat):
        step.opt.step()
    totals["SGD step"] = [time.perf_counter() - begin, 0.0]
    del torch
    return totals


def print_layers(title, totals, repeat):
    print(f"  {title}: ms per step, forward / backward")
    for label, (f, b) in totals.items():
        if f + b > 0.00005 * repeat:
            print(f"    {label:<28} {1e3 * f / repeat:8.2f} {1e3 * b / repeat:8.2f}")
    print(f"    {'sum':<28} {1e3 * sum(f for f, _ in totals.values()) / repeat:8.2f} "
          f"{1e3 * sum(b for _, b in totals.values()) / repeat:8.2f}")


def have_torch(args) -> bool:
    if args.no_torch:
        return False
    try:
        import torch  # noqa: F401
    except ImportError:
        print("PyTorch is not installed: minialex alone (pip install torch to compare)")
        return False
    return True


def main(args):
    with_torch = have_torch(args)
    versus = f"minialex (NumPy {numpy.__version__}, {utils.blas_kernels()})"
    if with_torch:
        import torch
        torch.set_num_threads(args.threads)
        versus += f" against PyTorch {torch.__version__}"
    print(f"CPU training step, {args.threads} thread(s) each; {versus}; medians of "
          f"{args.rounds} x {args.steps} steps")
    if utils.MALLOC_TUNED and with_torch:   # process-wide: PyTorch's arrays come from the same malloc
        print("glibc malloc keeps freed memory (minialex.cpu.MMAP_THRESHOLD), for "
              "both frameworks: PyTorch alone in its own process may be slower")
    rates = None if args.no_layers else machine_rates(args.threads)
    rows, shares, rooflines = [], [], []
    for preset in args.presets.split(","):
        batch = args.paper_batch if preset == "paper" else args.batch
        steps = OrderedDict([("minialex", Steps("minialex", preset, args.classes, batch))])
        if with_torch:
            worst = check_same_function(preset, args.classes, batch)
            print(f"{preset}: same function: " + ", ".join(f"{k} {v:.1e}" for k, v in worst.items()))
            steps["torch"] = Steps("torch", preset, args.classes, batch)
        if args.baseline:
            steps["baseline"] = BaselineSteps(args.baseline, preset, args.classes, batch,
                                              steps["minialex"], args.threads)
        times = interleaved(steps, args.rounds, args.steps, args.pause)
        ms = {f: 1e3 * statistics.median(t) for f, t in times.items()}
        best = {f: 1e3 * min(t) for f, t in times.items()}
        print(f"{preset}, batch {batch}: minialex {ms['minialex']:.1f} ms a step "
              f"(fastest {best['minialex']:.1f})")
        if with_torch:
            rows.append((preset, batch, ms["minialex"], ms["torch"], ms["minialex"] / ms["torch"],
                         best["minialex"] / best["torch"]))
            print(f"  PyTorch {ms['torch']:.1f} ms  ratio {rows[-1][-2]:.2f}"
                  f"  (fastest steps: {best['torch']:.1f} ms, {rows[-1][-1]:.2f})")
        if args.baseline:
            print(f"  baseline {ms['baseline']:.1f} ms: minialex / baseline "
                  f"{ms['minialex'] / ms['baseline']:.3f} (fastest steps "
                  f"{best['minialex'] / best['baseline']:.3f}); the same weights after "
                  f"{len(times['minialex']) + args.rounds} steps each, bit for bit: "
                  f"{same_weights(steps['minialex'].model, steps['baseline'].model)}")
        if not args.no_layers:
            repeat = max(2, args.steps)
            time.sleep(args.pause)
            rooflines.append((preset, batch, repeat) + minialex_layer_times(steps["minialex"], repeat))
            if with_torch:
                time.sleep(args.pause)
                steps["torch"]()
                print_layers("PyTorch", torch_layer_times(steps["torch"], repeat), repeat)
    if rows:
        print("\n| preset | batch | minialex ms/step | PyTorch ms/step | ratio | ratio of fastest steps |"
              "\n|---|---|---|---|---|---|")
        for preset, batch, a, b, r, r_best in rows:
            print(f"| {preset} | {batch} | {a:.1f} | {b:.1f} | {r:.2f} | {r_best:.2f} |")
    if rooflines:       # the limits again: other work on the machine lowers what one try sees
        again = machine_rates(args.threads)
        print(f"\nthe machine's limits: GEMM {rates[0] / 1e9:.0f} and {again[0] / 1e9:.0f} GFLOP/s, "
              f"memory {rates[1] / 1e9:.1f} and {again[1] / 1e9:.1f} GB/s (at start, at the end): "
              "the better of each is the floor's")
        rates = (max(rates[0], again[0]), max(rates[1], again[1]))
    for preset, batch, repeat, totals, work in rooflines:
        shares.append((preset, batch) + print_roofline(f"{preset}, batch {batch}", totals, work,
                                                       repeat, rates))
    if shares:
        print("\n| preset | batch | step ms (timed ops) | floor ms | share of the floor |"
              "\n|---|---|---|---|---|")
        for preset, batch, t, floor in shares:
            print(f"| {preset} | {batch} | {1e3 * t:.1f} | {1e3 * floor:.1f} | {floor / t:.0%} |")


if __name__ == "__main__":
    main(ARGS)
