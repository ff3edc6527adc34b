"""ImageNet (ILSVRC-2012) read straight from the three archives image-net.org hands out (§2).

    DIR/ILSVRC2012_img_train.tar       one tar per class (n01440764.tar, ...) inside one tar
    DIR/ILSVRC2012_img_val.tar         50,000 JPEGs in one flat folder
    DIR/ILSVRC2012_devkit_t12.tar.gz   data/meta.mat (the synsets) and
                                       data/ILSVRC2012_validation_ground_truth.txt

``python cli.py prepare --imagenet DIR --out imagenet.h5`` opens these as the data spec
``ilsvrc2012:DIR`` and writes the usual cache with prepare.py's writer (resume, progress, skipped
images), nothing extracted to disk. Meant for prepare only: the images are read in archive order.

Classes: the devkit's ``synsets`` struct (meta.mat, read with SciPy's loadmat: the ``[imagenet]``
extra) lists 1,860 WordNet synsets; the 1,000 leaves (``num_children == 0``) are the classes, with
ILSVRC2012_ID 1-1000, WNID, words (the human names kept for predict and evaluate) and
num_train_images. Label k is the k-th WNID in sorted order in both splits, as for an extracted
folder (folder.py) and in Caffe and torchvision. A validation image's label is the WNID of the
ILSVRC2012_ID on its line of the ground-truth file, the lines following the sorted file names.

Reading: the outer tars are indexed by their headers (a seek per member, no image data read);
each class tar is then read in tarfile's streaming mode, in order. The devkit gives the number of
training images before any is read (prepare sizes its file from it); a class tar holding another
number stops the run. Corrupt images are skipped and counted (DataError from ``load``); a damaged
archive is fatal, one line: ``ArchiveError``.
"""

from __future__ import annotations

import bisect
import functools
import io
import os
import tarfile
import threading
import zlib
from typing import List, NamedTuple

import numpy

from ..data.dataset import Dataset
from ..data.errors import DataError, DataFileNotFoundError
from ..data.images import load_image

TRAIN_TAR, VAL_TAR = "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
SPEC_PREFIX = "ilsvrc2012:"
_BROKEN = (tarfile.TarError, EOFError, OSError, zlib.error)   # what a damaged archive raises


class ArchiveError(ValueError):
    """A damaged or mismatched archive met while reading images: the run must stop. Not a
    DataError on purpose: ``load`` raising DataError means 'skip this image' to prepare."""


class Devkit(NamedTuple):
    wnids: List[str]               # the classes, sorted: label k is wnids[k]
    names: List[str]               # their human names ('tench, Tinca tinca')
    train_counts: dict             # WNID -> num_train_images
    val_labels: numpy.ndarray      # label of the i-th validation image in sorted file order


def _broken(path: str, e: BaseException) -> str:
    why = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{path}: truncated or damaged archive ({why}); download it again"


def _check_complete(path: str, members) -> None:
    """A tar ends with two zero blocks after its last member's padded data. tarfile stops quietly
    at a truncated or garbled header, so an archive cut short is caught here instead."""
    end = 0
    if members:
        last = members[-1]
        end = last.offset_data + -(-last.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    with open(path, "rb") as f:
        f.seek(end)
        tail = f.read(2 * tarfile.BLOCKSIZE)
    if tail != bytes(2 * tarfile.BLOCKSIZE):
        raise DataError(_broken(path, EOFError("it ends before its end-of-archive marker")))


def _index(path: str):
    """(open TarFile, its regular members) of an uncompressed tar, checked to be whole."""
    try:
        tar = tarfile.open(path, "r:")
        members = [m for m in tar.getmembers() if m.isfile()]
    except _BROKEN as e:
        raise DataError(_broken(path, e)) from None
    _check_complete(path, members)
    return tar, members


@functools.lru_cache(maxsize=4)
def read_devkit(path: str) -> Devkit:
    """The classes and validation labels of ``ILSVRC2012_devkit_t12.tar.gz`` (module docstring)."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("reading the devkit's meta.mat needs SciPy: pip install "
                        "'minialex[imagenet]' (or pip install scipy)") from None
    found = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar:
                for key in ("data/meta.mat", "data/ILSVRC2012_validation_ground_truth.txt"):
                    if m.isfile() and m.name.endswith(key):
                        found[key] = tar.extractfile(m).read()
            tar.fileobj.read()              # to the end: a cut gzip trailer raises here
    except _BROKEN as e:
        raise DataError(_broken(path, e)) from None
    if len(found) < 2:
        raise DataError(f"{path}: no data/meta.mat or data/ILSVRC2012_validation_ground_truth.txt"
                        " inside: not the ILSVRC-2012 devkit")
    try:
        synsets = loadmat(io.BytesIO(found["data/meta.mat"]), squeeze_me=True)["synsets"]
        leaves = [s for s in numpy.atleast_1d(synsets) if int(s["num_children"]) == 0]
        by_id = {int(s["ILSVRC2012_ID"]): (str(s["WNID"]), str(s["words"]),
                                           int(s["num_train_images"])) for s in leaves}
        truth = [int(t) for t in found["data/ILSVRC2012_validation_ground_truth.txt"].split()]
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise DataError(f"{path}: data/meta.mat is not the devkit's synsets struct ({e})") from None
    if sorted(by_id) != list(range(1, len(by_id) + 1)) or not by_id:
        raise DataError(f"{path}: the {len(by_id)} leaf synsets of meta.mat do not have the "
                        f"ILSVRC2012_IDs 1..{len(by_id)}")
    wnids = sorted(w for w, _, _ in by_id.values())
    label = {w: k for k, w in enumerate(wnids)}
    unknown = sorted(set(truth) - set(by_id))
    if unknown:
        raise DataError(f"{path}: the ground-truth file names ILSVRC2012_ID {unknown[0]}, which "
                        f"meta.mat does not list ({len(unknown)} unknown id(s))")
    names = {w: n for w, n, _ in by_id.values()}
    return Devkit(wnids, [names[w] for w in wnids], {w: c for w, _, c in by_id.values()},
                  numpy.array([label[by_id[t][0]] for t in truth], dtype=numpy.int64))


class ArchiveImageNet(Dataset):
    """One split of ILSVRC-2012 read from the official archives in ``root`` (module docstring)."""

    def __init__(self, root: str, split: str = "train", *, base_size: int = 256):
        root = os.path.abspath(os.path.expanduser(str(root)))
        for name in (TRAIN_TAR, VAL_TAR, DEVKIT):
            if not os.path.isfile(os.path.join(root, name)):
                raise DataFileNotFoundError(f"{os.path.join(root, name)} not found: --imagenet "
                                            f"needs {TRAIN_TAR}, {VAL_TAR} and {DEVKIT} in {root}")
        if split not in ("train", "val"):
            raise DataError(f"ILSVRC-2012 has train and val splits here (its test labels were "
                            f"never published; papers report val), not {split!r}")
        kit = read_devkit(os.path.join(root, DEVKIT))
        super().__init__(name=SPEC_PREFIX + root, split=split, classes=kit.wnids,
                         base_size=base_size, class_names=kit.names)
        self.path = os.path.join(root, TRAIN_TAR if split == "train" else VAL_TAR)
        self.tar, self.members = _index(self.path)
        self._lock = threading.Lock()
        self._cursor = None          # train: (class position, next index, streaming TarFile)
        self._names = {}             # index -> member name, for messages
        if split == "train":
            self._index_train(kit)
        else:
            self._index_val(kit)

    def _index_train(self, kit: Devkit) -> None:
        wnids = [os.path.basename(m.name)[:-4] for m in self.members]
        stray = [w for w in wnids if w not in kit.train_counts]
        if stray or len(wnids) != len(kit.wnids):
            what = (f"holds {stray[0]}.tar, a class the devkit does not list" if stray else
                    f"holds {len(wnids)} class tars, the devkit lists {len(kit.wnids)} classes")
            raise DataError(f"{self.path} {what}: archive and devkit do not match")
        for m in self.members:          # the first header of every class tar, read up front
            try:
                tarfile.TarInfo.frombuf(self.tar.extractfile(m).read(tarfile.BLOCKSIZE),
                                        "utf-8", "surrogateescape")
            except _BROKEN as e:
                raise DataError(_broken(f"{self.path}: member {m.name}", e)) from None
        counts = [kit.train_counts[w] for w in wnids]
        self.starts = numpy.concatenate([[0], numpy.cumsum(counts)]).astype(numpy.int64)
        self.labels = numpy.repeat([kit.wnids.index(w) for w in wnids], counts).astype(numpy.int64)

    def _index_val(self, kit: Devkit) -> None:
        if len(self.members) != len(kit.val_labels):
            raise DataError(f"{self.path} holds {len(self.members):,} images but the devkit's "
                            f"ground truth has {len(kit.val_labels):,} lines: they do not match")
        rank = {m.name: r for r, m in enumerate(sorted(self.members, key=lambda m: m.name))}
        self.labels = kit.val_labels[[rank[m.name] for m in self.members]]

    def __len__(self) -> int:
        return len(self.labels)

    def describe(self, i: int) -> str:
        return f"{self.path}/{self._names.get(i, f'image {i}')}"

    def _compute_stats(self):
        raise DataError(f"{self.name}: read the archives once with prepare --imagenet, then use "
                        "the cache")

    def _load(self, i: int) -> numpy.ndarray:
        with self._lock:
            data = self._read_train(i) if self.split == "train" else self._read_val(i)
        try:
            return load_image(io.BytesIO(data), self.base_size)
        except DataError as e:
            raise DataError(f"cannot read image {self.describe(i)}: "
                            f"{str(e).split(': ', 2)[-1]}") from None

    def _read_val(self, i: int) -> bytes:
        self._names = {i: self.members[i].name}
        try:
            return self.tar.extractfile(self.members[i]).read()
        except _BROKEN as e:
            raise ArchiveError(_broken(self.path, e)) from None

    def _read_train(self, i: int) -> bytes:
        c = bisect.bisect_right(self.starts, i) - 1
        member = self.members[c]
        where = f"{self.path}: {member.name}"
        try:
            if self._cursor is None or self._cursor[0] != c or self._cursor[1] > i:
                self._finish_class()
                self._cursor = [c, int(self.starts[c]), tarfile.open(
                    fileobj=self.tar.extractfile(member), mode="r|")]
            while self._cursor[1] <= i:     # to image i (skipping only if not read in order)
                info = _next_image(self._cursor[2])
                if info is None:
                    raise ArchiveError(f"{where} holds {self._cursor[1] - self.starts[c]} images, "
                                       f"the devkit's num_train_images says "
                                       f"{self.starts[c + 1] - self.starts[c]}: they do not match")
                self._cursor[1] += 1
            self._names = {i: f"{member.name}/{info.name}"}
            data = self._cursor[2].extractfile(info).read()
        except _BROKEN as e:
            raise ArchiveError(_broken(where, e)) from None
        if i + 1 == self.starts[c + 1]:
            self._finish_class()
        return data

    def _finish_class(self) -> None:
        """After a class tar's last image: one with more images than the devkit says stops."""
        if self._cursor is None:
            return
        c, at, stream = self._cursor
        self._cursor = None
        if at == self.starts[c + 1] and _next_image(stream) is not None:
            raise ArchiveError(f"{self.path}: {self.members[c].name} holds more images than the "
                               f"devkit's num_train_images ({at - self.starts[c]}): they do not "
                               "match")


def _next_image(stream):
    """The next regular file of a streaming TarFile, or None at its end (``TarFile.next``: a new
    ``iter()`` would start again from the members already passed)."""
    info = stream.next()
    while info is not None and not info.isfile():
        info = stream.next()
    return info
