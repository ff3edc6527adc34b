"""How fast ``prepare --imagenet`` reads the official archives, measured on a sample, and what
the whole of ILSVRC-2012 would then take (an extrapolation, printed as one).

The sample imitates ImageNet's training JPEGs in size and content: 500x375 (the most common
ImageNet size; the mean is about 400x350), smooth colour fields with texture, quality 90, about
110 kB each like the real 138 GB / 1.28M. It is written in the archives' exact layout (a tar of
class tars, a flat val tar, a devkit made with SciPy) by the helpers of
tests/test_imagenet_archives.py, then read by the real command.

    python benchmarks/imagenet_archives_rate.py [--classes 8] [--per-class 60] [--base-size 256]
"""

import argparse
import io
import os
import sys
import tempfile
import time

import numpy
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import test_imagenet_archives as t  # noqa: E402

TRAIN, VAL = 1_281_167, 50_000          # ILSVRC-2012's images
TRAIN_GB, VAL_GB = 138.0, 6.3           # the two image archives' sizes


def photo(rng) -> bytes:
    small = rng.uniform(0, 255, (12, 16, 3)).astype(numpy.uint8)
    base = numpy.asarray(Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC),
                         dtype=numpy.float32)
    noisy = numpy.clip(base + rng.normal(0, 19, base.shape), 0, 255).astype(numpy.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--classes", type=int, default=8)
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--base-size", type=int, default=256)
    a = ap.parse_args()
    rng = numpy.random.default_rng(0)
    wnids = [f"n{1440764 + k:08d}" for k in range(a.classes)]
    classes = {w: (k + 1, f"class {k}", (0, 0, 0)) for k, w in enumerate(wnids)}
    t.TRAIN_PER_CLASS = a.per_class
    images = {w: [photo(rng) for _ in range(a.per_class)] for w in wnids}
    inner = {w: t.tar_bytes([(f"{w}_{j}.JPEG", d) for j, d in enumerate(images[w])]) for w in wnids}
    size = sum(len(d) for v in images.values() for d in v) / (a.classes * a.per_class)
    with tempfile.TemporaryDirectory() as tmp:
        root = t.write_archives(os.path.join(tmp, "ilsvrc"), classes=classes, train=inner,
                                truth=[k % a.classes + 1 for k in range(a.per_class)])
        start, cpu = time.perf_counter(), time.process_time()
        result = t.cli("prepare", "--imagenet", root, "--out", os.path.join(tmp, "c.h5"),
                       "--base-size", a.base_size, "--no-progress")
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert result.exit_code == 0, result.output
        count = a.classes * a.per_class + a.per_class
    rate, cpu_rate = count / seconds, count / cpu     # cpu: this process's CPU time alone
    cache = (TRAIN + VAL) * a.base_size ** 2 * 3
    print(f"sample: {count} JPEGs of 500x375, {size / 1e3:.0f} kB each on average, base size "
          f"{a.base_size}: {seconds:.1f} s, {rate:.0f} images/s; {cpu:.1f} s of CPU, "
          f"{1e3 * cpu / count:.1f} ms per image ({cpu_rate:.0f} images/s on a free core)")
    print(f"extrapolated to ILSVRC-2012 ({TRAIN + VAL:,} images): {(TRAIN + VAL) / rate / 3600:.1f}"
          f" h at the measured rate, {(TRAIN + VAL) / cpu_rate / 3600:.1f} h on a free core; the "
          f"cache {cache / 1e9:.0f} GB beside the archives' {TRAIN_GB + VAL_GB:.0f} GB, nothing "
          "extracted")


if __name__ == "__main__":
    main()
