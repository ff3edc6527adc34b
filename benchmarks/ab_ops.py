"""Paired A/B of the CPU ops: this checkout against an older one, alternating in one process.

    git worktree add /tmp/old <commit>                  # the version to compare with
    python benchmarks/ab_ops.py --baseline /tmp/old     # LRN, max pooling, conv, fc at the paper's shapes
    python benchmarks/ab_ops.py --baseline /tmp/old --ops lrn --rounds 31 --threads 1
    python benchmarks/ab_ops.py --overhead              # the Python cost of one Function call
    python benchmarks/ab_ops.py --scaling paper         # a step on 1 thread and on --threads, in turn
    python benchmarks/ab_ops.py --trim paper --batch 32 # glibc's trim threshold: never against 512 MB

On a machine shared with other work, absolute times move by tens of percent from one minute to
the next, so the two versions run in turn (ABAB..., BABA.. every other round) on the same arrays,
and the ratio of their medians is what to read. Each line also says whether the two give the
same bits (outputs and gradients, NaN equal to NaN): a change meant only to be faster must.

``--scaling PRESET`` times one training step (as benchmarks/cpu_step.py's, paper at batch 16,
the others at 128) on one thread and on ``--threads`` threads alternately in one process
(``minialex.cpu.configure`` changes the count between steps): what the second core buys. A
2048^2 GEMM and a 256 MB copy are timed the same way in the same rounds, as a control: on a
machine shared with other work they show what the second core was free to give (a GEMM
gains 2x on two quiet cores, a copy less: both cores share the memory's bandwidth).

``--trim PRESET`` times the step with glibc's trim threshold at ``minialex.cpu.TRIM_THRESHOLD``
(never) and at 512 MB (its value before), switched between rounds in one process, and counts the
page faults of each step: the allocator is the process's, so two checkouts side by side
(``--baseline``) share it and cannot show the difference.

``--overhead`` times ``relu`` on a 2x2 tensor, forward and forward + backward, next to the NumPy
call inside it: what autograd's bookkeeping costs per op, the part of the tiny preset's step that
does not shrink with the data.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import statistics
import sys
import time

import numpy

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import minialex  # noqa: E402
import minialex.cpu  # noqa: E402
import minialex.functional as F  # noqa: E402

#: (N, C, H, W) of the paper's LRN and pooling inputs at batch 16, and mini's first at 128.
NORM_SHAPES = [(16, 96, 55, 55), (16, 256, 27, 27), (128, 48, 27, 27)]
#: name: (N, C, H, K, kernel, stride, padding, groups), the paper's conv1-conv5 at batch 16, and
#: mini's (and fashion's) conv1 at 128.
CONV_SHAPES = {"conv1 (mini, 128)": (128, 3, 51, 24, 7, 2, 0, 1), "conv1": (16, 3, 227, 96, 11, 4, 0, 1), "conv2": (16, 96, 27, 256, 5, 1, 2, 2),
               "conv3": (16, 256, 13, 384, 3, 1, 1, 1), "conv4": (16, 384, 13, 384, 3, 1, 1, 2),
               "conv5": (16, 384, 13, 256, 3, 1, 1, 2)}

#: name: (N, in, out), one column's fc6 and fc7 of the two-column net at batch 16 (fc8 is small).
FC_SHAPES = {"fc6 (one column)": (16, 9216, 2048), "fc7 (one column)": (16, 4096, 2048)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", metavar="DIR", help="a checkout of the older minialex")
    parser.add_argument("--ops", default="lrn,pool,conv,fc", help="which ops (lrn, pool, conv, fc)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=15, help="runs of each version per op")
    parser.add_argument("--overhead", action="store_true", help="the cost of one Function call")
    parser.add_argument("--scaling", metavar="PRESET", help="one step on 1 thread against --threads")
    parser.add_argument("--trim", metavar="PRESET", help="the step with malloc's trim threshold "
                        "at minialex's (never) against 512 MB")
    parser.add_argument("--batch", type=int, help="batch of --scaling and --trim (paper: 16, "
                        "others: 128)")
    return parser.parse_args(argv)


def load_baseline(folder, threads):
    """The older checkout's ``minialex`` package, imported as ``minialex_baseline``."""
    init = os.path.join(folder, "minialex", "__init__.py")
    spec = importlib.util.spec_from_file_location("minialex_baseline", init,
                                                  submodule_search_locations=[os.path.dirname(init)])
    sys.modules["minialex_baseline"] = module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cpu = importlib.import_module("minialex_baseline.cpu")
    if hasattr(cpu, "configure"):            # from the layout of issue 30 on
        cpu.configure(threads)
    return "minialex_baseline"


def cases(ops, package):
    """(label, [function of the package run once]) for each op, pass and shape, on fixed data."""
    rng = numpy.random.default_rng(0)
    functional = package + ".functional"
    if "lrn" in ops:
        norm = importlib.import_module(functional + ".normalization").LocalResponseNorm
        for shape in NORM_SHAPES:
            x = numpy.maximum(rng.standard_normal(shape, dtype=numpy.float32) * 30, 0)
            gy = rng.standard_normal(shape, dtype=numpy.float32)
            op = norm(5, 1e-4, 0.75, 2.0)
            yield f"lrn {shape}", op.forward, x, op.backward, gy
    if "pool" in ops:
        pool = importlib.import_module(functional + ".pooling").MaxPool2d
        for shape in NORM_SHAPES:
            x = rng.standard_normal(shape, dtype=numpy.float32)
            x[0, 0, :5, :5] = 1.0                             # ties
            x[1, 1, 3, 3] = numpy.nan                         # a NaN wins its windows
            op = pool((3, 3), (2, 2), (0, 0))
            gy = rng.standard_normal(op.forward(x).shape, dtype=numpy.float32)
            yield f"pool {shape}", op.forward, x, op.backward, gy
    if "fc" in ops:
        linear = importlib.import_module(functional + ".linear").Linear
        for name, (n, inputs, outputs) in FC_SHAPES.items():
            x = rng.standard_normal((n, inputs), dtype=numpy.float32)
            w = rng.standard_normal((outputs, inputs), dtype=numpy.float32) * 0.01
            b = rng.standard_normal(outputs, dtype=numpy.float32)
            op = linear()
            gy = rng.standard_normal((n, outputs), dtype=numpy.float32)
            yield name, (lambda x, op=op, w=w, b=b: op.forward(x, w, b)), x, op.backward, gy
    if "conv" in ops:
        conv = importlib.import_module(functional + ".conv").Conv2d
        for name, (n, c, h, k, kernel, stride, padding, groups) in CONV_SHAPES.items():
            x = rng.standard_normal((n, c, h, h), dtype=numpy.float32)
            w = rng.standard_normal((k, c // groups, kernel, kernel), dtype=numpy.float32) * 0.01
            b = rng.standard_normal(k, dtype=numpy.float32)
            op = conv((stride,) * 2, (padding,) * 2, groups, relu=True)
            op.inputs = None                                   # every gradient, dx included
            gy = rng.standard_normal(op.forward(x, w, b).shape, dtype=numpy.float32)
            yield f"{name}", (lambda x, op=op, w=w, b=b: op.forward(x, w, b)), x, op.backward, gy


def same_bits(a, b):
    a, b = (v if isinstance(v, (tuple, list)) else (v,) for v in (a, b))
    return len(a) == len(b) and all(
        (p is None and q is None) or numpy.array_equal(p, q, equal_nan=True) for p, q in zip(a, b))


def paired(new, old, rounds):
    """Medians and minima of both, run in turn (the order swapped every other round)."""
    times = ([], [])
    for r in range(rounds):
        for i in ((0, 1) if r % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            (new, old)[i]()
            times[i].append(time.perf_counter() - start)
    return [(statistics.median(t), min(t)) for t in times]


def compare(args):
    baseline = load_baseline(args.baseline, args.threads)
    print(f"paired A/B, {args.threads} thread(s), {minialex.cpu.blas_kernels()}, {args.rounds} "
          f"runs each: this checkout (new) against {args.baseline} (old); ratios below 1 mean "
          "new is faster")
    for new, old in zip(cases(args.ops, "minialex"), cases(args.ops, baseline)):
        label, forward, x, backward, gy = new
        _, old_forward, old_x, old_backward, old_gy = old
        for pass_name, fn, old_fn in (
                ("forward", lambda: forward(x), lambda: old_forward(old_x)),
                ("backward", lambda: (forward(x), backward(gy))[1],
                 lambda: (old_forward(old_x), old_backward(old_gy))[1])):
            same = same_bits(fn(), old_fn())
            (new_med, new_min), (old_med, old_min) = paired(fn, old_fn, args.rounds)
            note = "forward + backward" if pass_name == "backward" else "forward"
            print(f"  {label:<24} {note:<18} new {1e3 * new_med:8.2f} ms  old {1e3 * old_med:8.2f} ms"
                  f"  new/old {new_med / old_med:5.2f} (fastest {new_min / old_min:5.2f})"
                  f"  same bits: {'yes' if same else 'NO'}")


def training_step(preset, batch=None):
    """(batch, one training step of ``preset`` on fixed random images): as cpu_step.py's, the
    paper at batch 16 and the others at 128 unless ``batch`` says."""
    from minialex.models import AlexNet
    from minialex.models.presets import PRESETS
    from minialex.optim import SGD
    batch = batch or (16 if preset == "paper" else 128)
    rng = numpy.random.default_rng(0)
    side = PRESETS[preset].input_size
    x = minialex.Tensor((rng.standard_normal((batch, 3, side, side)) * 60).astype(numpy.float32))
    labels = rng.integers(0, 10, batch)
    model = AlexNet(num_classes=10, preset=preset, devices=("cpu", "cpu"), seed=0)
    model.train()
    opt = SGD(model.named_parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step():
        opt.zero_grad()
        F.cross_entropy(model(x), labels, check_labels=False).backward()
        opt.step()
    return batch, step


def scaling(preset, threads, rounds, batch=None):
    """Median and fastest step on 1 thread and on ``threads``, alternating; their ratios, next to
    the same ratios for a 2048^2 GEMM and a 256 MB copy timed in the same rounds: what the
    machine itself gave the second core during the run (a neighbour on it shows there first)."""
    batch, step = training_step(preset, batch)
    rng = numpy.random.default_rng(0)
    a, b = (rng.standard_normal((2048, 2048), dtype=numpy.float32) for _ in range(2))
    source = numpy.ones(64 << 20, dtype=numpy.float32)
    target = numpy.empty_like(source)

    def copy():
        minialex.cpu.in_parallel(lambda s: numpy.copyto(target[s], source[s]),
                                 minialex.cpu.equal_slices(len(source), minialex.cpu.THREADS))
    jobs = {"step": step, "GEMM 2048^2": lambda: minialex.cpu.parallel_matmul(a, b),
            "copy 256 MB": copy}
    times = {(job, count): [] for job in jobs for count in (1, threads)}
    ops = {1: [], threads: []}                  # per timed step: {op and pass: seconds}
    for r in range(rounds):
        for count in ((1, threads) if r % 2 == 0 else (threads, 1)):
            minialex.cpu.configure(count)
            for job, fn in jobs.items():
                fn()                                        # untimed, after the switch
                with op_times() as per_op:
                    start = time.perf_counter()
                    fn()
                    times[job, count].append(time.perf_counter() - start)
                if job == "step":
                    ops[count].append(per_op)
    print(f"{preset}, batch {batch}, 1 thread against {threads}, {rounds} rounds alternating, "
          f"{minialex.cpu.blas_kernels()}:")
    for job in jobs:
        one, many = (statistics.median(times[job, c]) for c in (1, threads))
        print(f"  {job:<12} 1 thread {1e3 * one:8.1f} ms, {threads} threads {1e3 * many:8.1f} ms:"
              f" {one / many:.2f}x (fastest {min(times[job, 1]) / min(times[job, threads]):.2f}x)")
    print(f"  the step's ops (medians, ms; 'outside' is autograd, Python and the SGD step's "
          f"zero_grad):\n    {'op':<28} {'1 thread':>9} {threads:>2} threads  gain")
    for i, step_times in enumerate(zip(times["step", 1], times["step", threads])):
        for count, total in zip((1, threads), step_times):
            ops[count][i]["outside"] = total - sum(ops[count][i].values())
    for label in ops[1][0]:
        one, many = (statistics.median(o.get(label, 0.0) for o in ops[c]) for c in (1, threads))
        if one > 0.001:
            print(f"    {label:<28} {1e3 * one:9.2f} {1e3 * many:10.2f}  {one / many:4.2f}x")


def trim(preset, rounds, batch=None):
    """The step with glibc's trim threshold at minialex's (``cpu.TRIM_THRESHOLD``) and at 512 MB,
    switched between rounds (order swapped every other round), two timed steps a round after an
    untimed one: medians, fastest, and page faults a step."""
    import ctypes
    import resource
    if not minialex.cpu.MALLOC_TUNED:
        print("--trim: no glibc malloc here (or MINIALEX_MALLOC=default): nothing to compare")
        return
    mallopt = ctypes.CDLL("libc.so.6").mallopt
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    batch, step = training_step(preset, batch)
    settings = {"never": minialex.cpu.TRIM_THRESHOLD, "512 MB": 512 << 20}
    times, faults = ({name: [] for name in settings} for _ in range(2))
    for r in range(rounds):
        for name in (list(settings) if r % 2 == 0 else list(settings)[::-1]):
            mallopt(-1, settings[name])                      # M_TRIM_THRESHOLD
            step()
            for _ in range(2):
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.perf_counter()
                step()
                times[name].append(time.perf_counter() - start)
                faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    mallopt(-1, settings["never"])
    print(f"{preset}, batch {batch}, {minialex.cpu.THREADS} thread(s), {rounds} rounds:")
    for name in settings:
        print(f"  trim threshold {name:<7} {1e3 * statistics.median(times[name]):8.1f} ms a step "
              f"(fastest {1e3 * min(times[name]):.1f}), {statistics.median(faults[name]):.0f} "
              f"page faults a step")
    never, old = (statistics.median(times[name]) for name in settings)
    print(f"  never / 512 MB: {never / old:.3f} (fastest {min(times['never']) / min(times['512 MB']):.3f})")


@contextlib.contextmanager
def op_times():
    """{'<op> #<call> <pass>': seconds} of every Function call (and the SGD step) in the block."""
    from minialex import autograd, optim
    totals, labels, counts = {}, {}, {}
    method, update = autograd.Function.method, optim.SGD.step

    def timed(fn, name):
        run = method(fn, name)
        if id(fn) not in labels:                        # conv2d_relu #1, #2, ... in call order
            op = fn.name or type(fn).__name__
            counts[op] = counts.get(op, 0) + 1
            labels[id(fn)] = f"{op} #{counts[op]}"

        def call(*args):
            start = time.perf_counter()
            try:
                return run(*args)
            finally:
                label = f"{labels[id(fn)]} {'bwd' if name == 'backward' else 'fwd'}"
                totals[label] = totals.get(label, 0.0) + time.perf_counter() - start
        return call

    def timed_update(opt):
        start = time.perf_counter()
        update(opt)
        totals["SGD update"] = time.perf_counter() - start
    autograd.Function.method, optim.SGD.step = timed, timed_update
    try:
        yield totals
    finally:
        autograd.Function.method, optim.SGD.step = method, update


def overhead():
    """Microseconds per relu call on a 2x2 tensor, and per bare NumPy maximum."""
    x = minialex.Tensor(numpy.ones((2, 2), numpy.float32), requires_grad=True)
    upstream = numpy.ones((2, 2), numpy.float32)
    data = x.data

    def best(fn, calls=2000):
        """The fastest of seven runs of ``calls`` calls, per call."""
        times = []
        for _ in range(8):                      # the first run warms up
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            times.append((time.perf_counter() - start) / calls)
        return min(times[1:])
    numpy_call = best(lambda: numpy.maximum(data, 0))
    forward = best(lambda: F.relu(x))
    both = best(lambda: F.relu(x).backward(upstream))
    print(f"relu on 2x2: forward {1e6 * forward:.1f} us, forward + backward {1e6 * both:.1f} us; "
          f"numpy.maximum alone {1e6 * numpy_call:.2f} us: autograd's cost per op about "
          f"{1e6 * (both - 2 * numpy_call):.0f} us")


if __name__ == "__main__":
    ARGS = parse_args()
    minialex.cpu.configure(ARGS.threads)
    if ARGS.overhead:
        overhead()
    if ARGS.scaling:
        scaling(ARGS.scaling, ARGS.threads, ARGS.rounds, ARGS.batch)
    if ARGS.trim:
        trim(ARGS.trim, ARGS.rounds, ARGS.batch)
    if ARGS.baseline:
        compare(ARGS)
    elif not (ARGS.overhead or ARGS.scaling or ARGS.trim):
        print("nothing to do: give --baseline DIR, --scaling PRESET, --trim PRESET and/or --overhead")
