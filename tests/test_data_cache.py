"""The HDF5 cache: prepare writes what the source holds, training reads it back the same, an
interrupted prepare resumes, skipped files are reported, foreign and incomplete files are refused."""

import h5py
import numpy
import pytest

import minialex.data.builtin as builtin
from minialex.data import DataError, DataFileNotFoundError, DataLoader, open_dataset
from minialex.tools.prepare import prepare_cache
from minialex.data.stats import compute_stats

from test_data_sources import make_image_folder

SMALL = dict(seed=2, num_train=30, num_val=10)


def test_prepare_builtin_round_trip(tmp_path):
    out = tmp_path / "shapes.h5"
    said = []
    report = prepare_cache("builtin", str(out), base_size=20, progress=False, echo=said.append,
                           **SMALL)
    assert report.images == {"train": 30, "val": 10} and report.skipped == [] and not report.resumed
    assert said == ["40 images at 20x20: about 48 kB of pixels"]     # 40 * 20 * 20 * 3 bytes
    for split in ("train", "val"):
        source = open_dataset("builtin", split, base_size=20, **SMALL)
        cached = open_dataset(str(out), split)
        assert cached.base_size == 20 and cached.classes == source.classes and len(cached) == len(source)
        assert (cached.labels == source.labels).all()
        for i in (0, 9):
            assert (cached.load(i)[0] == source.load(i)[0]).all()
    # the cache's statistics come from every training image
    every = compute_stats(open_dataset("builtin", "train", base_size=20, **SMALL).load(i)[0] for i in range(30))
    cached = open_dataset(str(out), "val")
    assert numpy.allclose(cached.stats.mean, every.mean) and numpy.allclose(
        cached.stats.pca_eigenvalues, every.pca_eigenvalues)
    # plain h5py reads it, and a smaller base size resizes on load
    with h5py.File(out) as f:
        assert f["train/images"].shape == (30, 20, 20, 3) and f.attrs["complete"]
    small = open_dataset(str(out), "train", base_size=12)
    assert small.load(3)[0].shape == (12, 12, 3)
    x, y = next(iter(DataLoader(cached, 4, input_size=16, train=False)))
    assert x.shape == (4, 3, 16, 16)
    again = prepare_cache("builtin", str(out), base_size=20, progress=False, **SMALL)
    assert again.resumed and again.images == report.images  # complete: nothing to redo
    assert again.already_complete and "already complete" in again.summary()


def test_prepare_refuses_a_cache_the_disk_cannot_hold(tmp_path, monkeypatch):
    import collections
    import shutil
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 1000, 1000))
    with pytest.raises(DataError, match=r"need about 48 kB, but only 1 kB is free.*--base-size"):
        prepare_cache("builtin", str(tmp_path / "big.h5"), base_size=20, progress=False, **SMALL)
    assert not (tmp_path / "big.h5").exists()


def test_prepare_folder_reports_skipped_files(tmp_path):
    root = make_image_folder(tmp_path / "ds")
    report = prepare_cache(root, str(tmp_path / "f.h5"), base_size=16, progress=False)
    names = sorted(what.rsplit("/", 1)[-1] for what, _ in report.skipped)
    assert names == ["README.txt", "fake.jpg", "stray.txt", "truncated.jpg"]
    assert report.images == {"train": 13, "val": 6}
    assert "4 file(s) skipped" in report.summary()
    ds = open_dataset(str(tmp_path / "f.h5"), "train")
    assert len(ds) == 13 and ds.classes == ["cat", "dog", "fish"] and len(ds.skipped) == 4


def test_interrupted_prepare_resumes(tmp_path, monkeypatch):
    full = tmp_path / "full.h5"
    prepare_cache("builtin", str(full), base_size=16, progress=False, **SMALL)
    out = tmp_path / "part.h5"
    real = builtin.BuiltinDataset._load
    calls = []

    def interrupted(self, i):
        calls.append(i)
        if len(calls) == 13:
            raise KeyboardInterrupt
        return real(self, i)

    monkeypatch.setattr(builtin.BuiltinDataset, "_load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_cache("builtin", str(out), base_size=16, progress=False, checkpoint_every=5, **SMALL)
    with pytest.raises(DataError, match="incomplete.*train 10/30"):
        open_dataset(str(out), "train")
    monkeypatch.setattr(builtin.BuiltinDataset, "_load", real)
    calls.clear()
    monkeypatch.setattr(builtin.BuiltinDataset, "_load", lambda self, i: calls.append(i) or real(self, i))
    report = prepare_cache("builtin", str(out), base_size=16, progress=False, checkpoint_every=5, **SMALL)
    assert report.resumed and calls[0] == 10 and len(calls) == 20 + 10  # rest of train, all of val
    with h5py.File(full) as a, h5py.File(out) as b:
        for name in ("train/images", "train/labels", "val/images", "stats/mean", "stats/pca_eigenvectors"):
            assert numpy.array_equal(a[name][()], b[name][()]), name


def test_bad_cache_files(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="none.h5"):
        open_dataset(str(tmp_path / "none.h5"))
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(DataError, match="text.h5.*HDF5"):
        open_dataset(str(text))
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = numpy.zeros(3)
    with pytest.raises(DataError, match="foreign.h5 was not written by"):
        open_dataset(str(foreign))
    with pytest.raises(DataError, match="foreign.h5 was not written by"):
        prepare_cache("builtin", str(foreign), base_size=16, progress=False, **SMALL)
    out = tmp_path / "c.h5"
    prepare_cache("builtin", str(out), base_size=16, progress=False, **SMALL)
    with pytest.raises(DataError, match="base size"):
        prepare_cache("builtin", str(out), base_size=20, progress=False, **SMALL)


def test_prepare_command(tmp_path):
    from click.testing import CliRunner

    from minialex.tools.cli import main
    out = tmp_path / "cli.h5"
    r = CliRunner().invoke(main, ["prepare", "builtin", "--out", str(out), "--base-size", "16",
                                  "--limit", "20", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "20 train, 20 val images of 16x16; 0 file(s) skipped" in r.output
    assert len(open_dataset(str(out), "val")) == 20
    r = CliRunner().invoke(main, ["prepare", str(tmp_path / "missing"), "--out", str(out)])
    assert r.exit_code == 1 and "missing" in r.output and "Traceback" not in r.output


def test_a_folder_source_is_recognised_however_it_is_written(tmp_path, monkeypatch):
    root = make_image_folder(tmp_path / "ds", bad=False)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    first = prepare_cache("../ds", "c.h5", base_size=12, progress=False)
    with h5py.File(tmp_path / "work" / "c.h5") as f:
        assert f.attrs["source"] == str(root)                 # stored absolute
    monkeypatch.chdir(tmp_path)
    again = prepare_cache("ds", "work/c.h5", base_size=12, progress=False)
    assert again.already_complete and again.images == first.images
    with pytest.raises(DataError, match=r"holds .*ds at base size 12, not .*ds at 16;"):
        prepare_cache("ds", "work/c.h5", base_size=16, progress=False)
