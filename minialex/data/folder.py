"""ImageNet-layout folders: ``ROOT/train/<class>/*`` and ``ROOT/val/<class>/*``.

This is how ILSVRC-2012 is commonly unpacked (one folder per WordNet id such as ``n01440764``).
Classes are the sorted names of the folders under ``train/`` — for both splits, so label k means
the same class in train and val. A val folder may lack classes but may not add any.

An optional mapping file in ROOT gives readable names, one class per line, ``<folder> <name...>``
(ImageNet's ``LOC_synset_mapping.txt`` / ``synset_words.txt`` format); it is looked for under the
names in ``CLASS_NAME_FILES`` or given explicitly. ``ds.classes`` stays the folder names;
``ds.class_names`` holds the readable ones.

Skipped and counted, never fatal (see ``ds.skipped``):
- at scan time, files without an image extension (README.txt, .DS_Store) and stray files lying
  directly in ``train/`` or ``val/``;
- while loading, files Pillow cannot decode (truncated JPEGs, corrupt or mislabelled files).
Fatal, with a one-line DataError naming the path: a missing root or split folder, no class
folders, a class folder with no image files, a val class unknown to train, a class folder (or
the root) whose name is not valid UTF-8 (refused as the folder is opened, before any step: the
class names go into every checkpoint and cache as UTF-8 text). An image *file* whose name is not
UTF-8 is read as any other; messages show its bad bytes as ``\\xe9`` (``images.printable``).

Statistics (mean, PCA) come from up to ``STATS_IMAGES`` training images spread evenly over the
split (decoding all 1.28M ImageNet images would take hours; ``prepare`` computes them from every
image instead).
"""

from __future__ import annotations

import os
import threading
from typing import Dict, List, Optional, Tuple

import numpy

from .dataset import Dataset, spread_indices
from .errors import DataError, DataFileNotFoundError
from .images import is_image_name, load_image, printable
from .stats import DataStats, StatsAccumulator

CLASS_NAME_FILES = ("classes.txt", "LOC_synset_mapping.txt", "synset_words.txt", "class_names.txt")
STATS_IMAGES = 2000
_stats_cache: Dict[Tuple[str, int], DataStats] = {}
_stats_lock = threading.Lock()


def _class_folders(split_dir: str) -> List[str]:
    """The class folders' names, sorted. A name that is not valid UTF-8 is refused at once: it
    would be the class's name in every checkpoint, cache and printout, all UTF-8 text, and the
    first checkpoint would fail on it, an epoch later (on ImageNet, hours)."""
    names = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    for name in names:
        if printable(name) != name:
            raise DataError(
                f"class folder {printable(os.path.join(split_dir, name))}: its name is not valid "
                "UTF-8 (as old zip archives unpack); rename it to a UTF-8 name, e.g. convmv -f "
                f"latin1 -t utf8 --notest -r {printable(os.path.dirname(split_dir))}")
    return names


def read_class_names(path: str, classes: List[str]) -> List[str]:
    """Readable names for ``classes`` from a '<folder> <name...>' file (missing ones keep the id)."""
    if not os.path.isfile(path):
        raise DataFileNotFoundError(f"class-names file {path} does not exist")
    names = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split(None, 1)
            if parts:
                names[parts[0]] = parts[1].strip() if len(parts) > 1 else parts[0]
    return [names.get(c, c) for c in classes]


class ImageFolder(Dataset):
    """An ImageNet-layout folder (see the module docstring)."""

    def __init__(self, root: str, split: str = "train", *, base_size: int = 256,
                 class_names_file: Optional[str] = None):
        root = os.path.abspath(os.path.expanduser(str(root)))
        if printable(root) != root:     # the data spec is stored in checkpoints and caches as text
            raise DataError(f"dataset folder {printable(root)}: its path is not valid UTF-8; "
                            "rename it (or a folder above it) to a UTF-8 name")
        if not os.path.isdir(root):
            raise DataFileNotFoundError(f"dataset folder {root} does not exist")
        train_dir = os.path.join(root, "train")
        if not os.path.isdir(train_dir):
            raise DataFileNotFoundError(
                f"{train_dir} does not exist: an image folder dataset needs train/<class>/ and "
                f"val/<class>/ subfolders")
        classes = _class_folders(train_dir)
        if not classes:
            raise DataError(f"{train_dir} has no class folders (expected train/<class>/<image>)")
        if class_names_file is None:
            found = [os.path.join(root, n) for n in CLASS_NAME_FILES if os.path.isfile(os.path.join(root, n))]
            class_names_file = found[0] if found else None
        names = read_class_names(class_names_file, classes) if class_names_file else None
        super().__init__(name=root, split=split, classes=classes, base_size=base_size, class_names=names)
        self.root = root

        split_dir = os.path.join(root, split)
        if not os.path.isdir(split_dir):
            raise DataFileNotFoundError(f"{split_dir} does not exist (expected {split}/<class>/<image>)")
        present = _class_folders(split_dir)
        unknown = sorted(set(present) - set(classes))
        if unknown:
            raise DataError(f"{os.path.join(split_dir, unknown[0])}: class folder not found in "
                            f"{train_dir} ({len(unknown)} unknown class(es))")
        if not present:
            raise DataError(f"{split_dir} has no class folders (expected {split}/<class>/<image>)")

        label_of = {c: k for k, c in enumerate(classes)}
        paths: List[str] = []
        labels: List[int] = []
        for entry in os.scandir(split_dir):
            if entry.is_file():
                self._skipped[printable(entry.path)] = "not inside a class folder"
        for name in present:
            class_dir = os.path.join(split_dir, name)
            found = 0
            for entry in sorted(os.scandir(class_dir), key=lambda e: e.name):
                if not entry.is_file():
                    continue
                if not is_image_name(entry.name):
                    self._skipped[printable(entry.path)] = "not an image file (extension)"
                    continue
                paths.append(entry.path)
                labels.append(label_of[name])
                found += 1
            if found == 0:
                raise DataError(f"class folder {class_dir} has no image files")
        self.paths = paths
        self.labels = numpy.asarray(labels, dtype=numpy.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, i: int) -> numpy.ndarray:
        return load_image(self.paths[i], self.base_size)

    def describe(self, i: int) -> str:
        return printable(self.paths[i])     # a file name that is not UTF-8: shown by its bytes

    def _compute_stats(self) -> DataStats:
        key = (self.root, self.base_size)
        with _stats_lock:
            if key in _stats_cache:
                return _stats_cache[key]
        train = self if self.split == "train" else ImageFolder(self.root, "train", base_size=self.base_size)
        acc = StatsAccumulator()
        for i in spread_indices(len(train), STATS_IMAGES):
            try:
                acc.add(train._load(int(i)))
            except DataError as e:
                train.record_skip(int(i), str(e))
        stats = acc.result()
        with _stats_lock:
            _stats_cache[key] = stats
        return stats
