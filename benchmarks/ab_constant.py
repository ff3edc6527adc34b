"""Paired A/B of one module constant: the training step with the constant at a new value against
its own, switched between steps in one process.

    python benchmarks/ab_constant.py minialex.functional.conv_cpu CHUNK_BYTES "2 << 20" --preset paper
    python benchmarks/ab_constant.py minialex.cpu SPLIT_BYTES "1 << 30" --preset fashion --rounds 12

Each round times one step at each value, in turn (the order swapped every other round), after a
short rest and an untimed step at each switch, as ``cpu_step.py`` does between frameworks. It
prints both medians, their ratio and the median of the per-round ratios (below 1: the new value
is faster). Whether the value changes the result's bits is for ``ab_ops.py`` and ``cpu_step.py
--baseline`` to say: a constant read when a module is imported (not at each call) cannot be
switched this way.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import minialex.cpu  # noqa: E402
from ab_ops import training_step  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("module", help="e.g. minialex.functional.conv_cpu")
    parser.add_argument("name", help="the constant, e.g. CHUNK_BYTES")
    parser.add_argument("value", help="a Python expression, e.g. '2 << 20'")
    parser.add_argument("--preset", default="fashion")
    parser.add_argument("--batch", type=int, help="default: 16 for paper, 128 for the others")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--pause", type=float, default=0.05, help="seconds of rest at each switch")
    args = parser.parse_args(argv)
    minialex.cpu.configure()
    module = importlib.import_module(args.module)
    old, new = getattr(module, args.name), eval(args.value, {})
    batch, step = training_step(args.preset, args.batch)
    times = {"new": [], "old": []}
    for r in range(args.rounds):
        for label in (("old", "new") if r % 2 == 0 else ("new", "old")):
            setattr(module, args.name, new if label == "new" else old)
            time.sleep(args.pause)
            step()                                          # untimed, after the switch
            start = time.perf_counter()
            step()
            times[label].append(time.perf_counter() - start)
    setattr(module, args.name, old)
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = statistics.median(a / b for a, b in zip(times["new"], times["old"]))
    print(f"{args.preset}, batch {batch}, {minialex.cpu.THREADS} thread(s), "
          f"{minialex.cpu.blas_kernels()}, {args.rounds} rounds: "
          f"{args.name} {old!r} -> {new!r}: new {1e3 * med['new']:.1f} ms, old "
          f"{1e3 * med['old']:.1f} ms, ratio of medians {med['new'] / med['old']:.3f}, "
          f"median of paired ratios {paired:.3f}")


if __name__ == "__main__":
    main()
