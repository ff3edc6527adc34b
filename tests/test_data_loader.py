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
