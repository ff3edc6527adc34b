"""``prepare``: preprocess a dataset once into one HDF5 file (layout in cache.py).

Every image is decoded, converted to RGB and brought to base_size × base_size (shorter side
scaled, central crop: §2) exactly once, so training reads fixed-size uint8 arrays instead of
decoding JPEGs every epoch. The training set's mean and PCA (§2, §4.1) are accumulated on the way
from *every* training image.

Streaming: images are written one by one into chunked datasets (one chunk per image), so memory
does not grow with the dataset.

Resumable: every ``checkpoint_every`` source images the split's ``done`` (source images
processed), ``written`` (images stored) and the running statistics sums are saved as attributes
and the file is flushed. Run the same command again after an interruption and it continues from
the last checkpoint (at most ``checkpoint_every`` images are redone). ``complete`` is set last;
readers refuse an incomplete file.

Skipped: files that cannot be decoded, and non-image files found while scanning, are listed in
``/skipped`` with the reason and reported at the end; they are not fatal.

A full disk: HDF5 cannot close a file after one of its writes failed (the process then crashes at
exit), so HDF5 must never meet a full disk. The new file's first bytes are built in memory and
written whole; then, before each split and each flush, the room of the next ``checkpoint_every``
images is reserved on disk past the file's end (``_reserve``: fallocate, the size unchanged).
When it cannot be, the run stops at the last flush with a one-line WriteError, and the cache
stays resumable. One writer at a time: ``.NAME.lock`` beside the cache (run_lock.py).
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import io
import json
import os
import shutil
from typing import Callable, List, Optional, Sequence, Tuple

import h5py
import numpy

from ..data.cache import FORMAT, FORMAT_VERSION, open_cache_file
from ..data.errors import DataError
from ..data.sources import PAPER_BASE_SIZE, absolute_spec, open_dataset, same_spec
from ..data.stats import StatsAccumulator
from ..files import (acquire_file_lock, cache_lock_path, size_text as _size, write_atomic,
                     write_error)
from .imagenet_archives import ArchiveImageNet


_str = h5py.string_dtype("utf-8")


@dataclasses.dataclass
class PrepareReport:
    """What ``prepare_cache`` did: the file, images per split, and the files it skipped."""

    path: str
    base_size: int
    images: dict
    skipped: List[Tuple[str, str]]
    resumed: bool                 # the file was there already (complete or not)
    already_complete: bool = False

    def summary(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in self.images.items())
        how = (" (already complete: nothing to do)" if self.already_complete else
               " (resumed)" if self.resumed else "")
        lines = [f"{self.path}: {counts} images of {self.base_size}x{self.base_size}"
                 f"{how}; {len(self.skipped)} file(s) skipped"]
        lines += [f"  skipped {what}: {why}" for what, why in self.skipped]
        return "\n".join(lines)


def _shown(options: str) -> str:
    """The options a cache was made with, for a message ('' when there were none)."""
    return "" if options in ("{}", "") else f" ({options})"


def _check_room(out: str, datasets, base_size: int, echo) -> None:
    """Say how large the cache will be, and refuse to start one the disk cannot hold (the
    pixels, uint8 B x B x 3 each; HDF5's own overhead is small beside them)."""
    count = sum(len(ds) for ds in datasets.values())
    needed = count * base_size * base_size * 3
    free = shutil.disk_usage(os.path.dirname(out) or ".").free
    if echo is not None:
        echo(f"{count:,} images at {base_size}x{base_size}: about {_size(needed)} of pixels")
    if needed > free:
        raise DataError(f"{out}: {count:,} images at {base_size}x{base_size} need about "
                        f"{_size(needed)}, but only {_size(free)} is free there; choose a smaller "
                        f"--base-size (the size train uses: 259 for 'paper', 58 for 'mini', 38 "
                        f"for 'tiny') or --limit")


def _reserve(path: str, nbytes: int) -> None:
    """Allocate ``nbytes`` on disk past the end of ``path`` without changing its size (Linux
    fallocate, FALLOC_FL_KEEP_SIZE), so that HDF5's next writes land on space already held.
    Where that call does not exist, check the free space instead. WriteError if there is no room."""
    fd = os.open(path, os.O_WRONLY)
    try:
        fallocate = getattr(ctypes.CDLL(None, use_errno=True), "fallocate", None)
        if fallocate is None:
            raise OSError(errno.ENOSYS, "no fallocate")
        fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        if fallocate(fd, 1, os.fstat(fd).st_size, nbytes) != 0:      # 1: FALLOC_FL_KEEP_SIZE
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
    except OSError as e:
        kept = ("the cache keeps the images written so far: run the same command again once "
                "there is room, and it resumes")
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise write_error(e, path, "the next images", nbytes, kept) from None
        if shutil.disk_usage(os.path.dirname(path)).free < nbytes:
            raise write_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path,
                              "the next images", nbytes, kept) from None
    finally:
        os.close(fd)


def _new_file(out: str, source: str, base_size: int, options: str, classes, class_names) -> h5py.File:
    """The cache's first bytes are built in memory and written whole (a full disk then leaves no
    half-made HDF5 file); the images go into it opened for writing, after each reservation."""
    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, base_size=base_size,
                       source=source, options=options, complete=False,
                       created_by="minialex prepare")
        f.create_dataset("classes", data=numpy.array(classes, dtype=object), dtype=_str)
        f.create_dataset("class_names", data=numpy.array(class_names, dtype=object), dtype=_str)
        f.create_dataset("skipped", shape=(0,), maxshape=(None,), dtype=_str, chunks=(256,))
    data = image.getbuffer()
    write_atomic(out, lambda fh: fh.write(data), len(data), "the new cache")
    return h5py.File(out, "r+")


def _append_skipped(f: h5py.File, items: Sequence[Tuple[str, str]]) -> None:
    if items:
        d = f["skipped"]
        n = d.shape[0]
        d.resize((n + len(items),))
        d[n:] = numpy.array([f"{what}\t{why}" for what, why in items], dtype=object)


def _prepare_split(f: h5py.File, ds, split: str, checkpoint_every: int, progress: bool):
    from tqdm.auto import tqdm

    b = ds.base_size
    _reserve(f.filename, min(checkpoint_every, len(ds)) * (b * b * 3 + 256) + 65536)
    if split not in f:            # (the reservation first: HDF5 writes nothing before it)
        g = f.create_group(split)
        g.create_dataset("images", shape=(len(ds), b, b, 3), maxshape=(None, b, b, 3),
                         dtype=numpy.uint8, chunks=(1, b, b, 3))
        g.create_dataset("labels", shape=(len(ds),), maxshape=(None,), dtype=numpy.int64)
        g.attrs.update(done=0, written=0, total=len(ds), count=0, sum=numpy.zeros(3),
                       outer=numpy.zeros((3, 3)), finished=False)
    g = f[split]
    if int(g.attrs["total"]) != len(ds):
        raise DataError(f"{f.filename}: the {split} split was started with {g.attrs['total']} "
                        f"images but the source now has {len(ds)}; delete the file to start over")
    if g.attrs["finished"]:
        return
    done, written = int(g.attrs["done"]), int(g.attrs["written"])
    acc = StatsAccumulator(g.attrs["count"], g.attrs["sum"], g.attrs["outer"])
    pending = list(ds.skipped) if done == 0 else []  # scan-time skips, recorded once
    images, labels = g["images"], g["labels"]

    def checkpoint():
        _append_skipped(f, pending)
        pending.clear()
        g.attrs.update(done=done, written=written, count=acc.count, sum=acc.total, outer=acc.outer)
        # Room for this flush and the next images (at most checkpoint_every), then the flush.
        _reserve(f.filename, min(checkpoint_every, len(ds) - done) * (b * b * 3 + 256) + 65536)
        f.flush()

    checkpoint()

    with tqdm(total=len(ds), initial=done, desc=f"prepare {split}", unit="img",
              disable=None if progress else True) as bar:   # None: off when not a terminal
        for i in range(done, len(ds)):
            try:
                image, label = ds.load(i)
            except DataError as e:
                pending.append((ds.describe(i), str(e)))
            else:
                images[written] = image
                labels[written] = label
                if split == "train":
                    acc.add(image)
                written += 1
            done = i + 1
            bar.update(1)
            if done % checkpoint_every == 0:
                checkpoint()
    if written == 0:
        raise DataError(f"{ds.name}: no readable image in the {split} split")
    images.resize((written, b, b, 3))
    labels.resize((written,))
    checkpoint()
    g.attrs["finished"] = True
    f.flush()


def _prepare_all(f: h5py.File, datasets, splits, checkpoint_every: int, progress: bool) -> None:
    for split in splits:
        _prepare_split(f, datasets[split], split, checkpoint_every, progress)
    g = f["train"]
    stats = StatsAccumulator(g.attrs["count"], g.attrs["sum"], g.attrs["outer"]).result()
    for name, value in stats.to_dict().items():
        if f"stats/{name}" in f:
            del f[f"stats/{name}"]
        f.create_dataset(f"stats/{name}", data=value)
    f.attrs["complete"] = True


def prepare_cache(source: str, out: str, *, base_size: int = 256, splits=("train", "val"),
                  checkpoint_every: int = 256, progress: bool = True,
                  echo: Optional[Callable[[str], None]] = None, **open_options) -> PrepareReport:
    """Write the dataset ``source`` (any ``open_dataset`` spec) to the HDF5 cache ``out``.

    base_size: the side of the stored squares (256 in the paper, §2). open_options go to
    ``open_dataset`` (seed, num_train, num_val, limit, class_names_file, ...). Resumes an
    interrupted run if ``out`` exists and was started with the same source and base size.
    ``echo``, if given, is told the images to write and their size before the work starts.
    Returns a PrepareReport; raises DataError for unusable sources, a foreign ``out`` file, or a
    disk without room for the images; WriteError when the disk fills on the way; LockedError when
    another process is writing ``out``.
    """
    out = os.path.abspath(os.path.expanduser(str(out)))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with acquire_file_lock(cache_lock_path(out), out):      # one writer per cache
        try:
            return _prepare(source, out, base_size, splits, checkpoint_every, progress, echo,
                            open_options)
        finally:        # free the space reserved past the file's end and not used
            if os.path.exists(out):
                os.truncate(out, os.path.getsize(out))


def _prepare(source, out, base_size, splits, checkpoint_every, progress, echo, open_options):
    source = absolute_spec(source)      # stored absolute: a resume finds it from anywhere
    if "train" not in splits:
        raise ValueError("prepare_cache: the train split is needed for the mean and PCA")
    datasets = {s: _open(source, s, base_size, open_options) for s in splits}
    train = datasets["train"]
    options = json.dumps(open_options, sort_keys=True)  # seed, sizes...: must match to resume
    resumed = os.path.exists(out)
    if resumed:
        with open_cache_file(out, "r") as f:  # read-only first: a complete cache is left alone
            held = (str(f.attrs["source"]), int(f.attrs["base_size"]), str(f.attrs["options"]))
            if not (same_spec(held[0], source) and held[1:] == (base_size, options)):
                raise DataError(f"{out} holds {held[0]} at base size {held[1]}{_shown(held[2])}, "
                                f"not {source} at {base_size}{_shown(options)}; delete it or "
                                "choose another --out")
            complete = bool(f.attrs["complete"])
        if not complete:
            with open_cache_file(out, "r+") as f:
                _prepare_all(f, datasets, splits, checkpoint_every, progress)
    else:
        _check_room(out, datasets, base_size, echo)
        with _new_file(out, str(source), base_size, options, train.classes, train.class_names) as f:
            _prepare_all(f, datasets, splits, checkpoint_every, progress)
    with open_cache_file(out, "r") as f:
        images = {s: int(f[s].attrs["written"]) for s in splits if s in f}
        skipped = [tuple(s.split("\t", 1)) for s in
                   (x.decode() if isinstance(x, bytes) else x for x in f["skipped"][()])]
    return PrepareReport(out, base_size, images, skipped, resumed, resumed and complete)


def _open(source: str, split: str, base_size, open_options):
    """``open_dataset``, and the official ILSVRC-2012 archives ('ilsvrc2012:DIR'), which only
    ``prepare`` reads (imagenet_archives.py): training reads the cache it writes."""
    if source.startswith("ilsvrc2012:"):
        return ArchiveImageNet(source.partition(":")[2], split,
                               base_size=base_size or PAPER_BASE_SIZE)
    return open_dataset(source, split, base_size=base_size, **open_options)
