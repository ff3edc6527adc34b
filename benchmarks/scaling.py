"""Data-parallel scaling on this machine: 1 process x T threads against N processes x T/N threads.

    python benchmarks/scaling.py                      # mini, CPU: 1 x 2 threads vs 2 x 1 thread
    python benchmarks/scaling.py --devices cuda --processes 8 --preset paper   # 1 vs 8 GPUs

Each configuration times the same training step (forward, loss, backward, gradient allreduce,
SGD update) at the same global batch (--batch, split over the processes) on batches built by the
real loader, after warm-up steps, and reports images/s and the share of a step spent in the
allreduce (time in ``World.average_gradients`` after a barrier, the slowest rank's; the time
spent at the barrier, waiting for the slower rank, is reported apart). Target (issue 17): N
processes reach at least 0.9x the images/s of one on the same cores, and the allreduce takes at
most 10% of a step.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def worker(args) -> None:
    """One process of a configuration (under mpiexec or alone): prints one JSON line on rank 0."""
    sys.path.insert(0, ROOT)
    import numpy
    import minialex.cpu
    from minialex import functional as F
    from minialex.autograd import Tensor
    from minialex.data import DataLoader, open_dataset
    minialex.cpu.configure()
    from minialex.tools.distributed import world
    from minialex.models import AlexNet, get_preset
    from minialex.optim import SGD
    from minialex.train.setup import parse_devices
    w = world()
    w = w if w.size > 1 else None         # one process: no World methods to call
    rank, size = (w.rank, w.size) if w else (0, 1)
    spec = args.devices
    devices = parse_devices(w.map_devices(spec) if w else spec) or ("cpu", "cpu")
    model = AlexNet(num_classes=10, preset=args.preset, devices=devices, seed=0)
    opt = SGD(model.named_parameters(), lr=0.01)
    if w:
        w.use_devices(model.devices)
        w.broadcast_start(model, opt)
    size_px = get_preset(args.preset).input_size
    ds = open_dataset("builtin", "train", seed=0, base_size=round(size_px * 256 / 224),
                      num_train=args.batch * 4)
    loader = DataLoader(ds, args.batch // size, input_size=size_px, device=model.devices[0],
                        shard=(rank, size) if w else None)
    batches = list(loader)
    reduce_s = wait_s = 0.0
    model.train()
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            if w:
                w.barrier()
            start, reduce_s, wait_s = time.perf_counter(), 0.0, 0.0
            sent = w.grads.bytes_sent if w else 0
        x, y = batches[i % len(batches)]
        loss = F.cross_entropy(model(Tensor(x, device=model.devices[0])), y)
        opt.zero_grad()
        loss.backward()
        if w:   # waiting for the slower rank (a barrier) apart from the allreduce itself
            t = time.perf_counter()
            w.barrier()
            t1 = time.perf_counter()
            w.average_gradients(opt)
            wait_s, reduce_s = wait_s + t1 - t, reduce_s + time.perf_counter() - t1
        opt.step()
        loss.item()
    elapsed = time.perf_counter() - start
    if w:
        elapsed, reduce_s = max(w.comm.allgather(elapsed)), max(w.comm.allgather(reduce_s))
        wait_s = max(w.comm.allgather(wait_s))
    if rank == 0:
        print(json.dumps({"processes": size, "images_per_s": args.batch * args.steps / elapsed,
                          "step_s": elapsed / args.steps, "allreduce_share": reduce_s / elapsed,
                          "wait_share": wait_s / elapsed,
                          "bytes_per_step": (w.grads.bytes_sent - sent) // args.steps
                          if w else 0}))


def run(args, processes: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    me = [sys.executable, "-m", "mpi4py"] if processes > 1 else [sys.executable]
    cmd = me + [os.path.abspath(__file__), "--worker", "--preset", args.preset, "--batch",
                str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.devices:
        cmd += ["--devices", args.devices]
    if processes > 1:
        cmd = ["mpiexec", "-n", str(processes)] + cmd
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="mini")
    p.add_argument("--batch", type=int, default=128, help="global batch (split over processes)")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="threads in all (CPU)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="alternate the two configurations")
    p.add_argument("--devices", default=None, help="cuda: a GPU per process")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    n, t = args.processes, args.threads
    best = {}
    for _ in range(args.repeats):   # alternated, best of each: other work shares the cores
        configs = {"one": (1, t), "many": (n, max(1, t // n))}
        if not args.devices and t > 1:
            configs["one thread"] = (1, 1)   # how much one process gains from its threads
        for key, (procs, threads) in configs.items():
            r = run(args, procs, threads)
            if key not in best or r["images_per_s"] > best[key]["images_per_s"]:
                best[key] = r
    one, many = best["one"], best["many"]
    where = "GPU" if args.devices else f"{t} CPU threads"
    print(f"preset {args.preset}, global batch {args.batch}, {where}, {args.steps} timed steps, "
          f"best of {args.repeats}")
    print(f"1 process  x {t if not args.devices else 1}: {one['images_per_s']:8.1f} images/s "
          f"({one['step_s'] * 1000:.0f} ms/step)")
    if "one thread" in best:
        r = best["one thread"]
        print(f"1 process  x 1: {r['images_per_s']:8.1f} images/s ({r['step_s'] * 1000:.0f} ms/step)")
    print(f"{n} processes x {max(1, t // n) if not args.devices else 1}: "
          f"{many['images_per_s']:8.1f} images/s ({many['step_s'] * 1000:.0f} ms/step), "
          f"{many['images_per_s'] / one['images_per_s']:.2f}x; allreduce "
          f"{100 * many['allreduce_share']:.1f}% of a step (waiting for the slower rank "
          f"{100 * many['wait_share']:.1f}%), {many['bytes_per_step']:,} bytes per rank per step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
