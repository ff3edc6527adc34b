"""``DataLoader``: batches of (images, labels) with the paper's augmentation, in the background.

What one batch is (§4.1):
- training: for each image a random crop of ``input_size``, mirrored with probability 1/2, plus
  the PCA colour shift with alphas ~ N(0, 0.1) drawn anew every time the image is used;
- evaluation: the centre crop, or with ``ten_crop=True`` the paper's ten patches, shaped
  (N, 10, 3, S, S) in the order top-left, top-right, bottom-left, bottom-right, centre, then
  the same five mirrored (average the softmax over axis 1);
- then the training mean is subtracted; images are float32 (N, 3, S, S) on the 0–255 pixel
  scale by default (``scale``), labels int64 (N,), both on ``device``.

Order and randomness: the epoch's order is ``default_rng([seed, epoch, 0]).permutation(N)``
(training) or 0..N-1 (evaluation); batch b's crops, flips and alphas come from
``default_rng([seed, epoch, 1, b])``. A batch is therefore a pure function of (seed, epoch, b):
the same seed gives the same batches, ``start_batch=k`` gives exactly batches k, k+1, ... of the
uninterrupted epoch (exact resume), and any number of ``workers`` gives identical results.

The last partial batch: dropped in training (``drop_last=True``: every step sees
``batch_size`` images, as in the paper's fixed batches of 128), kept in evaluation (every image is
scored once). ``len(loader)`` is the number of batches of the whole epoch, whatever
``start_batch`` is.

Data-parallel (``shard=(r, N)``, ``minialex/tools/distributed.py``): in training, global batch b is
batch b of a single process at batch N·B, and rank r takes its r-th B images, with the crops,
flips and alphas drawn for the global batch; ``len`` is images // (N·B) on every rank. In
evaluation rank r takes images r, r+N, r+2N, ... of the order, in batches of B (no padding).

Unreadable images (truncated JPEG, corrupt file): left out of their batch, which is then smaller
by one, and recorded in ``dataset.skipped`` / counted in ``loader.num_skipped``; a batch with no
readable image is not yielded. Nothing is raised mid-epoch.

Workers: ``workers`` threads each build whole batches (decode, crop, flip, and on the CPU the
float conversion; a dataset held in memory gives the batch's images at once, ``load_many``, and
all its crops are cut in one step); up to ``2 × workers`` batches are prepared ahead while the
caller trains.
Pillow decoding and NumPy's batch arithmetic release the GIL, so threads overlap with training
without pickling datasets or opening HDF5 files in several processes. workers=0 builds each batch
in the calling thread.

GPU (device 'cuda:N'): workers write the uint8 crops into pinned host memory; the copy to the GPU
is issued on a separate CUDA stream one batch ahead (so it overlaps the training step), and the
float conversion, mean subtraction and lighting run on the GPU in ``normalize_batch`` — the same
function the CPU path runs with NumPy. Only uint8 pixels cross the bus (4× fewer bytes).
"""

from __future__ import annotations

import concurrent.futures
import math
from typing import Iterator, NamedTuple, Optional, Tuple

import numpy
from numpy.lib.stride_tricks import sliding_window_view

from ..backend import as_device, cupy
from .errors import DataError
from .stats import DataStats
from .transforms import (center_offset, crop, hflip, lighting_alphas, normalize_batch,
                         pixel_offsets, random_crop_offsets, random_flips, ten_crop_offsets,
                         ten_crops)


class HostBatch(NamedTuple):
    """One batch on the host before normalisation, unreadable images left out."""

    crops: numpy.ndarray     # uint8 (n, [10,] S, S, C): C = 3, or 1 for grey data (R = G = B)
    labels: numpy.ndarray    # int64 (n,)
    offsets: numpy.ndarray   # float32 (n, 3): 255 * (lighting - mean), see transforms.pixel_offsets
    skipped: int             # images of this batch that could not be read


class Augmentation:
    """The random choices for one batch, in batch order: tops, lefts (N,), flips (N,), alphas (N, 3)."""

    def __init__(self, tops, lefts, flips, alphas):
        self.tops, self.lefts, self.flips, self.alphas = tops, lefts, flips, alphas


class DataLoader:
    """Iterate (images, labels) batches of ``dataset``; see the module docstring for the rules.

    batch_size: images per batch (128 in the paper, §5). input_size: side S of the crops.
    train: random crops, flips and lighting, shuffled, last partial batch dropped; False: centre
    crops (or ``ten_crop``), dataset order, last batch kept. device: 'cpu' (NumPy) or 'cuda:N'
    (CuPy). seed, epoch, start_batch: which batches (see the module docstring). workers: threads.
    augment=False: training order but centre crops, no flips, no lighting. stats: the DataStats
    whose mean and PCA are used (default ``dataset.stats``, the training set's).
    lighting_std: standard deviation of the alphas (0.1 in §4.1; 0 turns lighting off).
    scale: the value that one full pixel step of 255 becomes: images are
    (pixel − 255·mean + 255·shift) · scale/255 — 255 (default) keeps 0–255 units, 1 gives [0, 1]
    units, 255/σ divides by a standard deviation σ given in 0–255 units.
    """

    def __init__(self, dataset, batch_size: int = 128, *, input_size: int, train: bool = True,
                 device="cpu", seed: int = 0, epoch: int = 0, start_batch: int = 0,
                 workers: int = 0, drop_last: Optional[bool] = None, ten_crop: bool = False,
                 augment: bool = True, stats: Optional[DataStats] = None,
                 shuffle: Optional[bool] = None, lighting_std: float = 0.1, scale: float = 255.0,
                 shard: Optional[Tuple[int, int]] = None):
        if int(batch_size) < 1:
            raise ValueError(f"DataLoader: batch_size must be positive, got {batch_size}")
        if int(input_size) < 1:
            raise ValueError(f"DataLoader: input_size must be positive, got {input_size}")
        if int(input_size) > dataset.base_size:
            raise DataError(f"DataLoader: crops of {input_size} pixels do not fit in the "
                            f"{dataset.base_size}-pixel images of {dataset.name}; open it with "
                            f"base_size=base_size_for({input_size}) = "
                            f"{round(int(input_size) * 256 / 224)} or more")
        if ten_crop and train:
            raise ValueError("DataLoader: ten_crop is for evaluation; pass train=False")
        if int(seed) < 0 or int(epoch) < 0 or int(workers) < 0:
            raise ValueError("DataLoader: seed, epoch and workers must be non-negative")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.input_size = int(input_size)
        self.train = bool(train)
        self.device = as_device(device)
        self.seed = int(seed)
        self.workers = int(workers)
        self.drop_last = self.train if drop_last is None else bool(drop_last)
        self.shuffle = self.train if shuffle is None else bool(shuffle)
        self.ten_crop = bool(ten_crop)
        self.augment = bool(augment) and self.train
        self.lighting_std = float(lighting_std)
        self.scale = float(scale)
        self.stats = dataset.stats if stats is None else stats
        self.rank, self.world = shard or (0, 1)
        self.num_skipped = 0
        if len(self) == 0:
            raise DataError(f"DataLoader: {dataset.name} ({dataset.split}) has {len(dataset)} "
                            f"image(s), not enough for one batch of {self.batch_size} with "
                            f"drop_last={self.drop_last}")
        self.set_epoch(epoch, start_batch)
        self._copy_stream = None

    # -- the plan of an epoch -------------------------------------------------------------------
    def __len__(self) -> int:
        n = len(self.dataset)
        if self.drop_last:
            return n // (self.batch_size * self.world)
        return math.ceil(len(range(self.rank, n, self.world)) / self.batch_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Choose the epoch (its order and random draws) and the first batch to yield."""
        if not 0 <= int(start_batch) <= len(self):
            raise ValueError(f"DataLoader: start_batch {start_batch} outside 0..{len(self)}")
        self.epoch = int(epoch)
        self.start_batch = int(start_batch)
        self._order = None

    def order(self) -> numpy.ndarray:
        """The dataset indices of this epoch, in the order they are served."""
        if self._order is None:
            n = len(self.dataset)
            if self.shuffle:
                self._order = numpy.random.default_rng([self.seed, self.epoch, 0]).permutation(n)
            else:
                self._order = numpy.arange(n)
            if self.world > 1 and not self.drop_last:
                self._order = self._order[self.rank::self.world]
        return self._order

    def batch_indices(self, b: int) -> numpy.ndarray:
        return self.order()[self._span(b)]

    def _span(self, b: int) -> slice:
        """Where batch b lies in the order (global batch b's r-th part under ``shard``)."""
        start = (b * self.world + self.rank) * self.batch_size if self.drop_last else b * self.batch_size
        return slice(start, start + self.batch_size)

    def augmentation(self, b: int) -> Augmentation:
        """The random crops, flips and lighting alphas of batch b (all drawn, even if unused)."""
        n = len(self.batch_indices(b))
        mine = slice(0, n)
        if self.world > 1 and self.drop_last:   # drawn for the global batch: this rank's part
            n, start = n * self.world, self.rank * self.batch_size
            mine = slice(start, start + self.batch_size)
        rng = numpy.random.default_rng([self.seed, self.epoch, 1, b])
        tops, lefts = random_crop_offsets(rng, n, self.dataset.base_size, self.input_size)
        flips = random_flips(rng, n)
        alphas = lighting_alphas(rng, n, self.lighting_std)
        return Augmentation(tops[mine], lefts[mine], flips[mine], alphas[mine])

    # -- building one batch on the host --------------------------------------------------------
    def _empty_host(self, shape) -> numpy.ndarray:
        """uint8 host buffer; page-locked (pinned) when the batch goes to a GPU, so the copy is
        a direct DMA that can run asynchronously."""
        if self.device.is_cuda:
            count = int(numpy.prod(shape))
            memory = cupy.cuda.alloc_pinned_memory(count)
            return numpy.frombuffer(memory, numpy.uint8, count).reshape(shape)
        return numpy.empty(shape, numpy.uint8)

    def host_batch(self, b: int) -> HostBatch:
        """Batch b before normalisation (runs in a worker thread: it changes no loader state)."""
        indices = self.batch_indices(b)
        aug = self.augmentation(b) if self.augment else None
        stack = self.dataset.load_many(indices)
        if stack is None:
            crops, labels, kept = self._crops_one_by_one(indices, aug)
        else:
            crops = self._crops_of_stack(stack, aug)
            labels, kept = self.dataset.labels[indices], numpy.arange(len(indices))
        if aug is not None and self.lighting_std > 0:
            lighting = self.stats.lighting(aug.alphas[kept])
        else:
            lighting = numpy.zeros((len(kept), 3))
        offsets = pixel_offsets(self.stats.mean, lighting)
        return HostBatch(crops, numpy.asarray(labels, dtype=numpy.int64), offsets,
                         len(indices) - len(kept))

    def _crops_one_by_one(self, indices, aug):
        """(crops (n, [10,] S, S, 3), labels, kept): each image loaded, cropped and mirrored in
        turn; an unreadable one is left out (``kept``: the batch positions of those read)."""
        s, base = self.input_size, self.dataset.base_size
        shape = (len(indices),) + ((10,) if self.ten_crop else ()) + (s, s, 3)
        crops = self._empty_host(shape)
        labels, kept = [], []
        for j, i in enumerate(indices):
            try:
                image, label = self.dataset.load(int(i))
            except DataError as e:
                self.dataset.record_skip(int(i), str(e))
                continue
            k = len(kept)
            if self.ten_crop:
                crops[k] = ten_crops(image, s)
            elif aug is not None:
                patch = crop(image, int(aug.tops[j]), int(aug.lefts[j]), s)
                crops[k] = hflip(patch) if aug.flips[j] else patch
            else:
                o = center_offset(base, s)
                crops[k] = crop(image, o, o, s)
            labels.append(label)
            kept.append(j)
        return crops[:len(kept)], labels, numpy.asarray(kept, dtype=numpy.int64)

    def _crops_of_stack(self, stack, aug):
        """The same crops as ``_crops_one_by_one``, (n, [10,] S, S, C), cut at once from a stack
        of images already in memory (n, B, B, C) (``Dataset.load_many``; C = 1 for grey data):
        every S x S window of every image is a view, and one fancy index picks the batch's."""
        n, s, base, c = len(stack), self.input_size, self.dataset.base_size, stack.shape[-1]
        windows = sliding_window_view(stack, (s, s), axis=(1, 2))    # (n, top, left, C, S, S)
        images = numpy.arange(n)
        if self.ten_crop:
            tops, lefts = numpy.array(ten_crop_offsets(base, s)).T
            five = windows[images[:, None], tops, lefts]                # (n, 5, C, S, S)
            patches = numpy.concatenate([five, five[..., ::-1]], axis=1)  # then their mirrors
        elif aug is not None:
            patches = windows[images, aug.tops, aug.lefts]              # (n, C, S, S)
            patches[aug.flips] = patches[aug.flips, ..., ::-1]
        else:
            o = center_offset(base, s)
            patches = windows[:, o, o]
        shape = (n,) + ((10,) if self.ten_crop else ()) + (s, s, c)
        crops = self._empty_host(shape)
        numpy.copyto(crops, numpy.moveaxis(patches, -3, -1))            # channels last again
        return crops

    def _cpu_batch(self, b: int):
        host = self.host_batch(b)
        return normalize_batch(numpy, host.crops, host.offsets, self.scale), host.labels, host.skipped

    # -- iteration -----------------------------------------------------------------------------
    def _produced(self) -> Iterator:
        """Batches start_batch..len-1 as built by ``host_batch`` (GPU) or ``_cpu_batch`` (CPU),
        in order, from the calling thread (workers=0) or a thread pool."""
        build = self.host_batch if self.device.is_cuda else self._cpu_batch
        batches = range(self.start_batch, len(self))
        if self.workers == 0:
            for b in batches:
                yield build(b)
            return
        pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="minialex-data")
        ahead = 2 * self.workers
        futures = {}
        try:
            for b in batches:
                for c in range(b, min(b + ahead + 1, len(self))):
                    if c not in futures:
                        futures[c] = pool.submit(build, c)
                yield futures.pop(b).result()
        finally:
            for f in futures.values():
                f.cancel()
            pool.shutdown(wait=True)

    def __iter__(self):
        if not self.device.is_cuda:
            for images, labels, skipped in self._produced():
                self.num_skipped += skipped
                if len(labels):
                    yield images, labels
            return
        staged = None  # GPU: the copy of batch b+1 is in flight while batch b is used
        for host in self._produced():
            self.num_skipped += host.skipped
            if not len(host.labels):
                continue
            nxt = self._stage(host)
            if staged is not None:
                yield self._finish(staged)
            staged = nxt
        if staged is not None:
            yield self._finish(staged)

    # -- the GPU path (CuPy); the CPU twin is _cpu_batch -------------------------------------
    def _stage(self, host):
        """Start the asynchronous copy of a pinned uint8 batch to the GPU on the copy stream."""
        crops, labels, offsets, _ = host
        with self.device:
            if self._copy_stream is None:
                self._copy_stream = cupy.cuda.Stream(non_blocking=True)
            # Work already queued on the compute stream may still read buffers the pool hands out.
            self._copy_stream.wait_event(cupy.cuda.get_current_stream().record())
            with self._copy_stream:
                pixels = cupy.empty(crops.shape, dtype=cupy.uint8)
                pixels.set(crops, stream=self._copy_stream)
                done = self._copy_stream.record()
        return pixels, labels, offsets, done, crops

    def _finish(self, staged):
        pixels, labels, offsets, done, crops = staged
        with self.device:
            done.synchronize()  # the pinned host buffer may be reused once the copy is over
            images = normalize_batch(cupy, pixels, offsets, self.scale)
            return images, cupy.asarray(labels)

    def __repr__(self) -> str:
        mode = "train" if self.train else ("eval, 10 crops" if self.ten_crop else "eval")
        return (f"DataLoader({self.dataset.name!r} {self.dataset.split}, {len(self)} batches of "
                f"{self.batch_size}, {mode}, input {self.input_size}, device {self.device}, "
                f"seed {self.seed}, epoch {self.epoch}, workers {self.workers})")
