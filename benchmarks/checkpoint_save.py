"""What writing a checkpoint whole costs: minialex.save (the HDF5 file built in memory, then
written, fsynced and renamed by files.write_atomic) against h5py writing the same datasets
straight to disk (what save did before issue 16), for the paper preset's weights and momentum.

    python benchmarks/checkpoint_save.py [--preset paper] [--dir /path/on/the/disk/to/measure]

Each way runs in a fresh process; it prints the seconds of the save and the peak memory it added
(VmHWM after the save minus the resident size before it, Linux only).
"""

import argparse
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import os, sys, time
import h5py
from minialex import checkpoint
from minialex.models import AlexNet
from minialex.optim import SGD
how, preset, path = sys.argv[1:]
model = AlexNet(1000, preset, devices=("cpu", "cpu"), seed=0)
opt = SGD(model.named_parameters(), lr=0.01)
for v in opt.state_dict()["velocity"].values():
    v[...] = 1e-3                                   # momentum buffers that are really there
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) / 1024
open("/proc/self/clear_refs", "w").write("5")       # reset the peak to the present size
before = status("VmRSS")
t = time.perf_counter()
if how == "in-memory":
    checkpoint.save(path, model, optimizer=opt)
else:
    with h5py.File(path, "w") as f:
        checkpoint._write_tree(f.create_group("model"), checkpoint.model_state(model))
        checkpoint._write_tree(f.create_group("optimizer"), opt.state_dict())
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
seconds = time.perf_counter() - t
print(f"{how:>9}: {seconds:5.2f} s, file {os.path.getsize(path) / 1e6:.0f} MB, "
      f"peak memory +{status('VmHWM') - before:.0f} MiB")
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    folder = args.dir or tempfile.mkdtemp(prefix="ckpt-bench-")
    path = os.path.join(folder, "bench.h5")
    try:
        for _ in range(args.repeat):
            for how in ("direct", "in-memory"):
                subprocess.run([sys.executable, "-c", CHILD, how, args.preset, path], check=True)
    finally:
        if os.path.exists(path):
            os.remove(path)


if __name__ == "__main__":
    main()
