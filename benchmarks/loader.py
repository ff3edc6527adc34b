"""Loader throughput: images/s read from an HDF5 cache with the paper's full training
augmentation (random crop, flip, PCA lighting, mean subtraction, float32 NCHW), for 0 (main
thread), 1, 2 and all cores' worth of worker threads.

    python benchmarks/loader.py                       # builds a small 256-pixel cache first
    python benchmarks/loader.py --cache imagenet256.h5 --batches 50

Without --cache it writes the built-in shapes at base size 256 (the paper's stored size) to a
temporary cache and crops 224, so the numbers are those of the paper's pipeline.
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minialex.data import DataLoader, open_dataset  # noqa: E402
from minialex.tools.prepare import prepare_cache  # noqa: E402


def measure(ds, workers, batch_size, input_size, batches, device):
    """Images/s over ``batches`` batches, timed from the iterator's creation to the last batch.

    The clock starts before the worker threads do, so batches they prefetch are counted in the
    time they took (timing only after a warm-up batch would credit the prefetched batches as
    free, and report absurd rates once workers x queue depth covers the whole run).
    """
    loader = DataLoader(ds, batch_size, input_size=input_size, train=True, workers=workers,
                        seed=0, device=device)
    n = min(batches, len(loader))
    start = time.perf_counter()
    it = iter(loader)
    images = 0
    for _ in range(n):
        x, y = next(it)
        images += len(y)
    if device != "cpu":
        from minialex.backend import cupy
        cupy.cuda.Device().synchronize()
    elapsed = time.perf_counter() - start
    it.close()
    return images / elapsed, n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", help="a cache written by 'prepare' (default: build a small one)")
    p.add_argument("--images", type=int, default=1024, help="images in the built cache")
    p.add_argument("--base-size", type=int, default=256)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=8, help="timed batches per row (use several times the worker count)")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N (uint8 to the GPU, float there)")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.cache
        if path is None:
            path = os.path.join(tmp, f"builtin{args.base_size}.h5")
            t = time.perf_counter()
            prepare_cache("builtin", path, base_size=args.base_size, num_train=args.images,
                          num_val=16, progress=False)
            print(f"built {path}: {args.images} images of {args.base_size}x{args.base_size} "
                  f"in {time.perf_counter() - t:.1f} s")
        ds = open_dataset(path, "train")
        cores = os.cpu_count() or 1
        rows = sorted({0, 1, 2, cores})
        print(f"cache {path}: {len(ds)} images of {ds.base_size}, crops {args.input_size}, "
              f"batch {args.batch_size}, device {args.device}, {cores} cores")
        print(f"{'workers':>8} | {'threads':>7} | {'images/s':>9} | {'batches':>7}")
        print(f"{'-' * 8}-+-{'-' * 7}-+-{'-' * 9}-+-{'-' * 7}")
        for w in rows:
            rate, n = measure(ds, w, args.batch_size, args.input_size, args.batches, args.device)
            label = "main" if w == 0 else (f"{w} (all)" if w == cores else str(w))
            print(f"{label:>8} | {w:>7} | {rate:>9.0f} | {n:>7}")
        ds.close()


if __name__ == "__main__":
    main()
