"""The loader: same seed same batches, start_batch is exact resume, workers change nothing,
the last partial batch, unreadable files skipped mid-epoch, and the GPU path equal to the CPU one."""

import os

import numpy
import pytest

import minialex
from minialex.data import DataError, DataLoader, base_size_for, open_dataset

from test_data_sources import make_image_folder


def _ds(n=40):
    return open_dataset("builtin", "train", seed=1, base_size=18, num_train=n, num_val=10)


def _batches(loader):
    return [(minialex.as_numpy(x), minialex.as_numpy(y)) for x, y in loader]


def _same(a, b):
    return len(a) == len(b) and all(numpy.array_equal(x1, x2) and numpy.array_equal(y1, y2)
                                    for (x1, y1), (x2, y2) in zip(a, b))


def test_same_seed_same_batches_and_each_image_once_per_epoch():
    ds = _ds()
    a = _batches(DataLoader(ds, 8, input_size=16, seed=7))
    b = _batches(DataLoader(ds, 8, input_size=16, seed=7))
    c = _batches(DataLoader(ds, 8, input_size=16, seed=8))
    e1 = DataLoader(ds, 8, input_size=16, seed=7, epoch=1)
    assert _same(a, b) and not _same(a, c) and not _same(a, _batches(e1))
    loader = DataLoader(ds, 8, input_size=16, seed=7)
    seen = numpy.concatenate([loader.batch_indices(k) for k in range(len(loader))])
    assert sorted(seen.tolist()) == list(range(40))  # a permutation: every image once
    assert not (loader.order() == numpy.arange(40)).all()
    labels = numpy.concatenate([y for _, y in a])
    assert (labels == ds.labels[seen]).all()
    loader.set_epoch(1)
    assert _same(_batches(loader), _batches(e1))


def test_start_batch_equals_skipping():
    ds = _ds()
    full = _batches(DataLoader(ds, 8, input_size=16, seed=3, epoch=2))
    resumed = DataLoader(ds, 8, input_size=16, seed=3, epoch=2, start_batch=3)
    assert len(resumed) == len(full) == 5
    assert _same(_batches(resumed), full[3:])
    assert _batches(DataLoader(ds, 8, input_size=16, seed=3, start_batch=5)) == []
    with pytest.raises(ValueError, match="start_batch"):
        DataLoader(ds, 8, input_size=16, start_batch=6)


def test_workers_give_identical_batches():
    ds = _ds(60)
    base = _batches(DataLoader(ds, 7, input_size=14, seed=4))
    for workers in (1, 3):
        assert _same(base, _batches(DataLoader(ds, 7, input_size=14, seed=4, workers=workers)))
    # leaving early shuts the pool down cleanly
    it = iter(DataLoader(ds, 7, input_size=14, seed=4, workers=2))
    next(it)
    it.close()


def test_last_partial_batch():
    ds = _ds(20)
    train = DataLoader(ds, 8, input_size=16)
    assert len(train) == 2 and [len(y) for _, y in train] == [8, 8]  # dropped in training
    ev = DataLoader(ds, 8, input_size=16, train=False)
    batches = _batches(ev)
    assert len(ev) == 3 and [len(y) for _, y in batches] == [8, 8, 4]  # kept in evaluation
    assert (numpy.concatenate([y for _, y in batches]) == ds.labels).all()
    assert len(DataLoader(ds, 8, input_size=16, drop_last=False)) == 3
    with pytest.raises(DataError, match="one batch"):
        DataLoader(ds, 32, input_size=16)


def test_bad_arguments():
    ds = _ds(20)
    with pytest.raises(DataError, match=r"base_size_for\(24\)"):
        DataLoader(ds, 4, input_size=24)
    for bad in (dict(batch_size=0), dict(input_size=0), dict(seed=-1)):
        kwargs = dict(batch_size=4, input_size=16)
        kwargs.update(bad)
        with pytest.raises(ValueError):
            DataLoader(ds, **kwargs)


def test_unreadable_files_are_skipped_mid_epoch(tmp_path):
    root = make_image_folder(tmp_path / "ds")
    ds = open_dataset(root, "train", base_size=base_size_for(16))
    for workers in (0, 2):
        loader = DataLoader(ds, 5, input_size=16, train=False, workers=workers)
        sizes = [len(y) for _, y in loader]
        assert sum(sizes) == len(ds) - 2 and loader.num_skipped == 2  # fake.jpg, truncated.jpg
    skipped = dict(ds.skipped)
    assert any(k.endswith("truncated.jpg") for k in skipped)
    assert any(k.endswith("fake.jpg") for k in skipped)
    gone = open_dataset(root, "val", base_size=16)
    os.remove(gone.paths[0])  # deleted after the scan: skipped too, not a crash
    assert sum(len(y) for _, y in DataLoader(gone, 4, input_size=16, train=False)) == len(gone) - 1
    train = DataLoader(ds, 5, input_size=16, seed=0)
    assert sum(len(y) for _, y in train) == 15 - sum(
        1 for k in range(3) for i in train.batch_indices(k) if "truncated" in ds.paths[i] or "fake" in ds.paths[i])


def test_scale_option():
    ds = _ds(16)
    a = next(iter(DataLoader(ds, 8, input_size=16, seed=2)))[0]
    b = next(iter(DataLoader(ds, 8, input_size=16, seed=2, scale=1.0)))[0]
    assert numpy.allclose(a / 255.0, b, atol=1e-6)


def test_device_batches_equal_cpu_batches(device):
    ds = _ds(24)
    cpu = _batches(DataLoader(ds, 8, input_size=16, seed=6, workers=1))
    loader = DataLoader(ds, 8, input_size=16, seed=6, device=device, workers=1)
    out = list(loader)
    xp = device.xp
    assert all(isinstance(x, xp.ndarray) and isinstance(y, xp.ndarray) for x, y in out)
    assert all(x.dtype == xp.float32 and y.dtype == xp.int64 for x, y in out)
    for (x, y), (cx, cy) in zip(_batches(out), cpu):
        assert numpy.allclose(x, cx, atol=1e-4) and (y == cy).all()
    ten = DataLoader(ds, 8, input_size=16, train=False, ten_crop=True, device=device)
    cten = DataLoader(ds, 8, input_size=16, train=False, ten_crop=True)
    for (x, _), (cx, _) in zip(_batches(ten), _batches(cten)):
        assert numpy.allclose(x, cx, atol=1e-4)


class OneByOne:
    """A dataset as one that cannot give its images at once: the loader loads them one by one."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __getattr__(self, name):
        return getattr(self.dataset, name)

    def __len__(self):
        return len(self.dataset)

    def load_many(self, indices):
        return None


def _fashion(tmp_path, n=40, base_size=32):
    """A small Fashion-MNIST folder of random grey images, opened at ``base_size``."""
    from test_data_sources import _idx
    d = tmp_path / "fm"
    if not d.exists():
        d.mkdir()
        rng = numpy.random.default_rng(5)
        for files in ("t10k", "train"):                 # the training files give the statistics
            _idx(d / f"{files}-images-idx3-ubyte.gz", 2051, (n, 28, 28),
                 payload=rng.integers(0, 256, (n, 28, 28), dtype=numpy.uint8).tobytes())
            _idx(d / f"{files}-labels-idx1-ubyte.gz", 2049, (n,),
                 payload=rng.integers(0, 10, n, dtype=numpy.uint8).tobytes())
    return open_dataset(f"fashion-mnist:{d}", "test", base_size=base_size)


@pytest.mark.parametrize("source", ["builtin", "grey", "grey unscaled", "grey subset"])
def test_images_at_once_give_the_batches_of_images_one_by_one(tmp_path, source):
    """Datasets held in memory give a batch's images at once (``load_many``; grey ones as one
    plane) and the loader cuts every crop in one step: the same batches, bit for bit, as loading,
    cropping and mirroring image by image, in every mode."""
    from minialex.data.dataset import Subset
    ds = {"builtin": lambda: _ds(40), "grey": lambda: _fashion(tmp_path),
          "grey unscaled": lambda: _fashion(tmp_path, base_size=28),
          "grey subset": lambda: Subset(_fashion(tmp_path), numpy.arange(3, 39))}[source]()
    stack = ds.load_many(numpy.array([4, 0, 4]))
    channels = 3 if source == "builtin" else 1
    assert stack.shape == (3, ds.base_size, ds.base_size, channels)
    assert numpy.array_equal(stack[0], stack[2]) and numpy.array_equal(
        stack[1], ds.load(0)[0][..., :channels])
    size = ds.base_size - 3
    for mode in (dict(), dict(augment=False), dict(train=False), dict(train=False, ten_crop=True)):
        at_once = _batches(DataLoader(ds, 8, input_size=size, seed=2, epoch=1, scale=3.0, **mode))
        by_one = _batches(DataLoader(OneByOne(ds), 8, input_size=size, seed=2, epoch=1,
                                     scale=3.0, **mode))
        assert len(at_once) >= 4 and _same(at_once, by_one), mode
    with pytest.raises(IndexError, match="out of range"):
        ds.load_many(numpy.array([0, len(ds)]))


def test_grey_images_are_read_for_every_channel(tmp_path):
    """A grey batch (one plane) becomes three channels, each with its own offset."""
    from minialex.data.transforms import normalize_batch
    crops = numpy.arange(2 * 3 * 3, dtype=numpy.uint8).reshape(2, 3, 3, 1)
    offsets = numpy.array([[1, 2, 3], [-4, -5, -6]], numpy.float32)
    x = normalize_batch(numpy, crops, offsets, scale=127.5)
    rgb = normalize_batch(numpy, numpy.repeat(crops, 3, axis=3), offsets, scale=127.5)
    assert x.shape == (2, 3, 3, 3) and x.dtype == numpy.float32 and numpy.array_equal(x, rgb)
    assert x[1, 2, 0, 1] == (crops[1, 0, 1, 0] - 6) / 2


def test_device_grey_batches_equal_cpu_batches(tmp_path, device):
    ds = _fashion(tmp_path)
    for mode in (dict(), dict(train=False, ten_crop=True)):
        cpu = _batches(DataLoader(ds, 8, input_size=29, seed=6, **mode))
        on_device = _batches(DataLoader(ds, 8, input_size=29, seed=6, device=device, **mode))
        assert len(cpu) == len(on_device) >= 4
        for (x, y), (cx, cy) in zip(on_device, cpu):
            assert numpy.allclose(x, cx, atol=1e-4) and (y == cy).all()
