"""ImageNet from the official ILSVRC-2012 archives (data/imagenet_archives.py): small archives in
exactly the real layout (a tar of class tars, a flat val tar, the devkit's meta.mat written with
SciPy and its ground-truth file); labels checked end to end through prepare's cache."""

import io
import os
import sys
import tarfile

import numpy
import pytest
from click.testing import CliRunner
from PIL import Image

from minialex.tools.cli import main
from minialex.data import open_dataset
from minialex.tools.prepare import prepare_cache
from minialex.tools import imagenet_archives as ia

scipy_io = pytest.importorskip("scipy.io")

# WNID -> (ILSVRC2012_ID, words, colour). The ids are deliberately not in WNID order.
CLASSES = {"n01484850": (1, "great white shark, white shark", (200, 30, 30)),
           "n01440764": (2, "tench, Tinca tinca", (30, 200, 30)),
           "n01443537": (3, "goldfish, Carassius auratus", (30, 30, 200))}
TRAIN_PER_CLASS, VAL_IDS = 4, [3, 1, 2, 2, 1, 3, 3]


def jpeg(colour, size=(20, 14)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def add(tar, name, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def tar_bytes(files, mode="w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in files:
            add(tar, name, data)
    return buf.getvalue()


def meta_mat(classes, extra_leaf=None) -> bytes:
    """The devkit's synsets struct array: the leaves, then one inner synset (ID 1000+)."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]
    rows = [(float(i), w, words, "a gloss", 0.0, numpy.zeros((1, 0)), 0.0, float(TRAIN_PER_CLASS))
            for w, (i, words, _) in classes.items()]
    if extra_leaf:
        rows.append((float(len(rows) + 1), extra_leaf, "extra", "", 0.0, numpy.zeros((1, 0)),
                     0.0, 1.0))
    rows.append((float(len(rows) + 1000), "n00001740", "entity", "", float(len(rows)),
                 numpy.arange(1, len(rows) + 1, dtype=float)[None], 18.0, 0.0))
    synsets = numpy.zeros((len(rows), 1), dtype=[(f, "O") for f in fields])
    for k, row in enumerate(rows):
        synsets[k, 0] = row
    buf = io.BytesIO()
    scipy_io.savemat(buf, {"synsets": synsets})
    return buf.getvalue()


def write_archives(root, classes=CLASSES, train=None, truth=VAL_IDS, extra_leaf=None):
    """The three archives in ``root``; ``train`` overrides the class tars {wnid: bytes}."""
    os.makedirs(root, exist_ok=True)
    inner = train or {w: tar_bytes([(f"{w}_{j}.JPEG", jpeg(c)) for j in range(TRAIN_PER_CLASS)])
                      for w, (_, _, c) in classes.items()}
    with open(os.path.join(root, ia.TRAIN_TAR), "wb") as f:
        f.write(tar_bytes([(f"{w}.tar", data) for w, data in inner.items()]))
    colour = {i: c for i, _, c in classes.values()}
    val = [(f"ILSVRC2012_val_{n + 1:08d}.JPEG", jpeg(colour.get(i, (9, 9, 9))))
           for n, i in enumerate(truth)]
    with open(os.path.join(root, ia.VAL_TAR), "wb") as f:
        f.write(tar_bytes(val[::-1]))                     # the tar's order is not the file order
    text = "".join(f"{i}\n" for i in truth).encode()
    with open(os.path.join(root, ia.DEVKIT), "wb") as f:
        f.write(tar_bytes([("ILSVRC2012_devkit_t12/data/meta.mat", meta_mat(classes, extra_leaf)),
                           ("ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt",
                            text)], mode="w:gz"))
    ia.read_devkit.cache_clear()
    return str(root)


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def colour_label(image) -> int:
    """The class whose colour an image shows (the label it must carry)."""
    wnids = sorted(CLASSES)
    means = image.reshape(-1, 3).mean(axis=0)
    return min(range(3), key=lambda k: numpy.abs(means - CLASSES[wnids[k]][2]).sum())


def test_prepare_from_the_archives_labels_every_image_by_its_wnid(tmp_path):
    root = write_archives(tmp_path / "ilsvrc")
    out = tmp_path / "imagenet.h5"
    result = cli("prepare", "--imagenet", root, "--out", out, "--base-size", "16", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "12 train, 7 val images of 16x16" in result.output
    for split, count in (("train", 12), ("val", 7)):
        ds = open_dataset(str(out), split)
        assert ds.classes == sorted(CLASSES)               # label k: the k-th WNID, sorted
        assert ds.class_names[ds.classes.index("n01440764")] == "tench, Tinca tinca"
        assert len(ds) == count
        for i in range(count):
            image, label = ds.load(i)
            assert label == colour_label(image), (split, i)
    wnids = sorted(CLASSES)
    val = open_dataset(str(out), "val")     # lines follow the sorted names: ILSVRC ids 3, 1, 2..
    by_id = {i: wnids.index(w) for w, (i, _, _) in CLASSES.items()}
    assert sorted(val.labels.tolist()) == sorted(by_id[i] for i in VAL_IDS)


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    inner = {w: tar_bytes([(f"{w}_{j}.JPEG", jpeg(c) if j else b"not a jpeg")
                           for j in range(TRAIN_PER_CLASS)]) for w, (_, _, c) in CLASSES.items()}
    root = write_archives(tmp_path / "ilsvrc", train=inner)
    report = prepare_cache("ilsvrc2012:" + root, str(tmp_path / "c.h5"), base_size=16,
                           progress=False)
    assert report.images == {"train": 9, "val": 7} and len(report.skipped) == 3
    assert any(what.endswith(f"{ia.TRAIN_TAR}/n01440764.tar/n01440764_0.JPEG")
               for what, _ in report.skipped)


def test_an_interrupted_prepare_resumes_to_the_same_cache(tmp_path, monkeypatch):
    root = write_archives(tmp_path / "ilsvrc")
    whole = tmp_path / "whole.h5"
    prepare_cache("ilsvrc2012:" + root, str(whole), base_size=16, progress=False)
    real, calls = ia.ArchiveImageNet._load, []

    def stop_at_seven(self, i):
        calls.append(i)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(self, i)
    monkeypatch.setattr(ia.ArchiveImageNet, "_load", stop_at_seven)
    part = tmp_path / "part.h5"
    with pytest.raises(KeyboardInterrupt):
        prepare_cache("ilsvrc2012:" + root, str(part), base_size=16, progress=False,
                      checkpoint_every=2)
    monkeypatch.setattr(ia.ArchiveImageNet, "_load", real)
    report = prepare_cache("ilsvrc2012:" + root, str(part), base_size=16, progress=False,
                           checkpoint_every=2)
    assert report.resumed
    for split in ("train", "val"):
        a, b = open_dataset(str(whole), split), open_dataset(str(part), split)
        assert numpy.array_equal(a.labels, b.labels)
        assert all(numpy.array_equal(a.load(i)[0], b.load(i)[0]) for i in range(len(a)))


def test_out_of_order_reads_reach_the_same_images(tmp_path):
    from minialex.data.dataset import Subset, balanced_indices
    full = ia.ArchiveImageNet(write_archives(tmp_path / "a"), "train", base_size=8)
    ds = Subset(full, balanced_indices(full.labels, 5))    # the first image of each class, ...
    assert [colour_label(ds.load(i)[0]) for i in range(5)] == ds.labels.tolist()


def one_line_error(root, *fragments):
    result = cli("prepare", "--imagenet", root, "--out", os.path.join(root, "x.h5"),
                 "--base-size", "8", "--no-progress")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()     # (a mid-run one follows the size line)
    errors = [line for line in lines if line.startswith("error: ")]
    assert errors == lines[-1:] and "Traceback" not in result.output, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_a_missing_archive(tmp_path):
    root = write_archives(tmp_path / "a")
    os.remove(os.path.join(root, ia.VAL_TAR))
    one_line_error(root, "ILSVRC2012_img_val.tar not found")


@pytest.mark.parametrize("name", [ia.TRAIN_TAR, ia.VAL_TAR, ia.DEVKIT])
def test_a_truncated_archive(tmp_path, name):
    root = write_archives(tmp_path / "a")
    path = os.path.join(root, name)
    data = open(path, "rb").read()
    with tarfile.open(path) as tar:       # where the last member's data ends
        last = tar.getmembers()[-1]
        end = last.offset_data + -(-last.size // 512) * 512
    if name == ia.DEVKIT:
        end = len(data) - 8               # the gzip trailer (its CRC and size) missing
    for cut in (len(data) // 2, end):     # mid-member, and exactly at a member's end
        open(path, "wb").write(data[:cut])
        ia.read_devkit.cache_clear()
        one_line_error(root, name, "truncated or damaged")


def test_a_corrupt_class_tar(tmp_path):
    inner = {w: tar_bytes([(f"{w}_{j}.JPEG", jpeg(c)) for j in range(TRAIN_PER_CLASS)])
             for w, (_, _, c) in CLASSES.items()}
    inner["n01443537"] = b"\x13" * 4096
    one_line_error(write_archives(tmp_path / "a", train=inner), "n01443537.tar",
                   "truncated or damaged")


def test_a_class_tar_with_fewer_images_than_the_devkit_says(tmp_path):
    inner = {w: tar_bytes([(f"{w}_{j}.JPEG", jpeg(c)) for j in range(TRAIN_PER_CLASS)])
             for w, (_, _, c) in CLASSES.items()}
    inner["n01443537"] = tar_bytes([("n01443537_0.JPEG", jpeg((1, 2, 3)))])
    one_line_error(write_archives(tmp_path / "a", train=inner), "n01443537.tar holds 1 images",
                   "num_train_images says 4")


def test_a_class_tar_with_more_images_than_the_devkit_says(tmp_path):
    inner = {w: tar_bytes([(f"{w}_{j}.JPEG", jpeg(c)) for j in range(TRAIN_PER_CLASS + 1)])
             for w, (_, _, c) in CLASSES.items()}
    one_line_error(write_archives(tmp_path / "a", train=inner), "n01484850.tar holds more images",
                   "num_train_images (4)")


def test_a_devkit_that_does_not_match(tmp_path):
    one_line_error(write_archives(tmp_path / "a", extra_leaf="n09999999"),
                   "holds 3 class tars, the devkit lists 4 classes")
    inner = {w: tar_bytes([(f"{w}_0.JPEG", jpeg(c))]) for w, (_, _, c) in CLASSES.items()}
    inner["n01443538"] = inner.pop("n01443537")
    one_line_error(write_archives(tmp_path / "b", train=inner), "n01443538.tar, a class the "
                   "devkit does not list")
    one_line_error(write_archives(tmp_path / "c", truth=VAL_IDS[:-1] + [7]),
                   "ILSVRC2012_ID 7, which meta.mat does not list")
    root = write_archives(tmp_path / "d")
    with open(os.path.join(root, ia.VAL_TAR), "wb") as f:      # one image more than the lines
        f.write(tar_bytes([(f"ILSVRC2012_val_{n + 1:08d}.JPEG", jpeg((9, 9, 9)))
                           for n in range(len(VAL_IDS) + 1)]))
    one_line_error(root, "8 images but", "7 lines")


def test_without_scipy_the_error_names_the_extra(tmp_path, monkeypatch):
    root = write_archives(tmp_path / "a")
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    ia.read_devkit.cache_clear()
    one_line_error(root, "minialex[imagenet]")
    ia.read_devkit.cache_clear()


def test_source_and_imagenet_are_exclusive(tmp_path):
    result = cli("prepare", "builtin", "--imagenet", tmp_path, "--out", tmp_path / "x.h5")
    assert result.exit_code == 1 and "either SOURCE or --imagenet" in result.output
