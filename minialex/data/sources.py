"""``open_dataset``: one entry point for every source of images.

    open_dataset("builtin", "train")                 procedural shapes (builtin.py)
    open_dataset("fashion-mnist", "val")             Fashion-MNIST from /usr/share/datasets/...
    open_dataset("fashion-mnist:/data/fmnist")       ... or from another folder
    open_dataset("/data/imagenet", "train")          an ImageNet-layout folder (folder.py)
    open_dataset("cache.h5", "val")                  a file written by ``prepare`` (cache.py)
"""

from __future__ import annotations

import os
from typing import Optional

from .builtin import BuiltinDataset
from .cache import CacheDataset
from .dataset import SPLITS, Dataset, Subset, balanced_indices
from .errors import DataError, DataFileNotFoundError
from .fashion_mnist import DEFAULT_DIR, FashionMNIST
from .folder import ImageFolder


PAPER_BASE_SIZE, PAPER_INPUT_SIZE = 256, 224  # §2 and §4.1: store 256×256, crop 224×224


def base_size_for(input_size: int) -> int:
    """The stored image side that keeps the paper's 256:224 ratio for a crop of ``input_size``.

    base_size_for(224) == 256; base_size_for(64) == 73; base_size_for(96) == 110. Random crops
    then move by up to 12.5% of the image, as in the paper (0..32 pixels of 256).
    """
    return int(round(int(input_size) * PAPER_BASE_SIZE / PAPER_INPUT_SIZE))


def absolute_spec(spec: str) -> str:
    """A data spec with its path made absolute (a folder, a cache, or fashion-mnist:DIR), so a
    run or a cache that records it finds the data again from any working folder."""
    spec = str(spec)
    head, sep, rest = spec.partition(":")
    if head in ("fashion-mnist", "ilsvrc2012") and sep and os.path.isdir(rest):
        return f"{head}:{os.path.abspath(rest)}"
    return os.path.abspath(spec) if os.path.exists(spec) else spec


def same_spec(a: str, b: str) -> bool:
    """The same data spec, or the same folder or file however it is written."""
    a, b = str(a), str(b)
    if a == b:
        return True
    a, b = absolute_spec(a), absolute_spec(b)
    if a == b:
        return True
    return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)


def open_dataset(spec: str, split: str = "train", *, seed: int = 0, base_size: Optional[int] = None,
                 num_train: Optional[int] = None, num_val: Optional[int] = None,
                 limit: Optional[int] = None, class_names_file: Optional[str] = None) -> Dataset:
    """The ``split`` ('train', 'val' or 'test') of the dataset named by ``spec``.

    'val' is what training watches (the schedule, the best checkpoint); 'test' is reported once
    at the end, where the source has one: Fashion-MNIST (its 10,000 test images; its 'val' is
    held out of the training images), a folder with a test/ split, a cache prepared with one,
    and the built-in set (drawn like 'val', from its own random stream).

    spec: "builtin"; "fashion-mnist" or "fashion-mnist:DIR"; a folder with train/<class>/ and
    val/<class>/; or a cache file ending in .h5 / .hdf5 written by ``prepare``.
    base_size: side of the stored squares. Default: 256 (the paper) for folders and Fashion-MNIST,
    the stored size for a cache, and 73 (= base_size_for(64)) for the built-in set, which is meant
    for small presets (train passes its preset's size: 58 for 'mini', whose crops are 51). Pass
    ``base_size_for(model.input_size)`` to match a model.
    seed, num_train, num_val: the built-in set only (which images are drawn, how many).
    limit: keep only ``limit`` images, taking the classes in turn so each is about equally
    represented (quick runs and tests); the statistics still describe the whole training split.
    class_names_file: folders only; a '<folder> <readable name>' file (see folder.py).
    """
    if split not in SPLITS:
        raise ValueError(f"open_dataset: split must be one of {', '.join(SPLITS)}, got {split!r}")
    spec = str(spec)
    builtin_only = {"num_train": num_train, "num_val": num_val}
    if spec != "builtin" and any(v is not None for v in builtin_only.values()):
        raise ValueError("open_dataset: num_train/num_val apply to the built-in dataset only; "
                         "use limit= for other sources")
    if spec == "builtin":
        ds = BuiltinDataset(split, seed=seed, base_size=base_size, num_train=num_train, num_val=num_val)
    elif spec == "fashion-mnist" or spec.startswith("fashion-mnist:"):
        folder = spec.partition(":")[2] or DEFAULT_DIR
        ds = FashionMNIST(split, folder=folder, base_size=base_size or PAPER_BASE_SIZE)
    elif spec.startswith("ilsvrc2012:"):     # the official archives: prepare reads them
        raise DataError(f"{spec}: the official ILSVRC-2012 archives are read once by prepare: "
                        f"python cli.py prepare --imagenet {spec.partition(':')[2]} --out "
                        "imagenet.h5, then train with --data imagenet.h5")
    elif spec.lower().endswith((".h5", ".hdf5")):
        ds = CacheDataset(spec, split, base_size=base_size)
    elif os.path.isdir(spec):
        ds = ImageFolder(spec, split, base_size=base_size or PAPER_BASE_SIZE,
                         class_names_file=class_names_file)
    elif os.path.exists(spec):
        raise DataError(f"{spec} is neither a dataset folder nor a .h5 cache written by prepare")
    else:
        raise DataFileNotFoundError(f"dataset {spec} not found: use 'builtin', 'fashion-mnist[:DIR]',"
                                    f" a folder with train/ and val/, or a .h5 cache")
    if limit is not None:
        if int(limit) < 1:
            raise ValueError(f"open_dataset: limit must be positive, got {limit}")
        if int(limit) < len(ds):
            ds = Subset(ds, balanced_indices(ds.labels, int(limit)))
    return ds
