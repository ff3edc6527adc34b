"""The paper's transforms with fixed seeds (§4.1): crops in range, flips that mirror, lighting that
adds exactly [p1 p2 p3][a1·λ1, a2·λ2, a3·λ3]ᵀ, centre and ten crops, the mean and PCA."""

import numpy
import pytest

import minialex
from minialex.data import DataLoader, DataStats, StatsAccumulator, compute_stats, open_dataset
from minialex.data import transforms as T


def test_random_crop_offsets_cover_exactly_the_valid_range():
    rng = numpy.random.default_rng(0)
    tops, lefts = T.random_crop_offsets(rng, 5000, 256, 224)
    for o in (tops, lefts):
        assert o.min() == 0 and o.max() == 32  # cuda-convnet's 0..32 for 224 of 256
    assert set(T.random_crop_offsets(rng, 10, 8, 8)[0].tolist()) == {0}


def test_crop_and_flip_do_what_they_say():
    image = numpy.arange(6 * 6 * 3, dtype=numpy.uint8).reshape(6, 6, 3)
    patch = T.crop(image, 1, 2, 3)
    assert (patch == image[1:4, 2:5]).all()
    flipped = T.hflip(image)
    for x in range(6):
        assert (flipped[:, x] == image[:, 5 - x]).all()
    assert (T.hflip(flipped) == image).all()
    assert T.center_offset(73, 64) == 4 and (T.center_crop(image, 2) == image[2:4, 2:4]).all()


def test_ten_crops_order():
    image = numpy.random.default_rng(1).integers(0, 256, (9, 9, 3)).astype(numpy.uint8)
    crops = T.ten_crops(image, 5)
    assert crops.shape == (10, 5, 5, 3)
    expected = [image[0:5, 0:5], image[0:5, 4:9], image[4:9, 0:5], image[4:9, 4:9], image[2:7, 2:7]]
    for k in range(5):
        assert (crops[k] == expected[k]).all()
        assert (crops[5 + k] == expected[k][:, ::-1]).all()


def test_lighting_is_the_papers_formula():
    rng = numpy.random.default_rng(2)
    q, _ = numpy.linalg.qr(rng.standard_normal((3, 3)))
    stats = DataStats(mean=[0.5, 0.4, 0.3], pca_eigenvalues=[0.2, 0.02, 0.004], pca_eigenvectors=q)
    alphas = T.lighting_alphas(rng, 4, 0.1)
    got = stats.lighting(alphas)
    for n in range(4):
        want = sum(q[:, i] * alphas[n, i] * stats.pca_eigenvalues[i] for i in range(3))
        assert numpy.allclose(got[n], want, rtol=1e-12, atol=0)
    assert abs(T.lighting_alphas(numpy.random.default_rng(0), 100000).std() - 0.1) < 0.002


def test_stats_match_numpy_covariance():
    rng = numpy.random.default_rng(3)
    images = [rng.integers(0, 256, (5, 7, 3)).astype(numpy.uint8) for _ in range(4)]
    images[0][..., 1] = images[0][..., 0]  # correlated channels
    s = compute_stats(images)
    pixels = numpy.concatenate([im.reshape(-1, 3) for im in images]).astype(numpy.float64) / 255
    assert numpy.allclose(s.mean, pixels.mean(0))
    cov = numpy.cov(pixels.T, bias=True)
    for i in range(3):  # columns are unit eigenvectors, eigenvalues descending
        p = s.pca_eigenvectors[:, i]
        assert numpy.allclose(cov @ p, s.pca_eigenvalues[i] * p, atol=1e-12)
        assert abs(numpy.linalg.norm(p) - 1) < 1e-12 and p.sum() >= 0
    assert (numpy.diff(s.pca_eigenvalues) <= 0).all()
    acc = StatsAccumulator()  # streaming in pieces gives the same
    for im in images:
        acc.add(im[:2]), acc.add(im[2:])
    assert numpy.allclose(acc.result().pca_eigenvalues, s.pca_eigenvalues)
    with pytest.raises(ValueError):
        StatsAccumulator().result()


def test_normalize_batch_layout_and_values(device):
    xp = device.xp
    rng = numpy.random.default_rng(4)
    crops = rng.integers(0, 256, (2, 4, 4, 3)).astype(numpy.uint8)
    offsets = numpy.array([[-10, 0, 5], [1, 2, 3]], numpy.float32)
    with device:
        out = T.normalize_batch(xp, xp.asarray(crops), offsets, 255.0)
        tens = T.normalize_batch(xp, xp.asarray(numpy.stack([crops] * 10, 1)), offsets, 1.0)
    out, tens = minialex.as_numpy(out), minialex.as_numpy(tens)
    assert out.shape == (2, 3, 4, 4) and out.dtype == numpy.float32 and out.flags.c_contiguous
    for n in range(2):
        for c in range(3):
            assert numpy.array_equal(out[n, c], crops[n, :, :, c] + offsets[n, c])
    assert tens.shape == (2, 10, 3, 4, 4)
    assert numpy.allclose(tens[:, 7], out / 255.0, atol=1e-6)


def _dataset():
    return open_dataset("builtin", "train", seed=5, base_size=20, num_train=24, num_val=8)


def test_training_batch_is_crop_flip_lighting_minus_mean():
    ds = _dataset()
    loader = DataLoader(ds, 8, input_size=16, seed=9)
    images, labels = next(iter(loader))
    aug = loader.augmentation(0)
    indices = loader.batch_indices(0)
    mean, stats = ds.stats.mean, ds.stats
    assert aug.tops.min() >= 0 and aug.tops.max() <= 4 and aug.lefts.max() <= 4
    assert aug.flips.any() and not aug.flips.all()  # seed 9 mirrors some, not all
    for j, i in enumerate(indices):
        image, label = ds.load(i)
        assert labels[j] == label
        patch = image[aug.tops[j]:aug.tops[j] + 16, aug.lefts[j]:aug.lefts[j] + 16].astype(numpy.float64)
        if aug.flips[j]:
            patch = patch[:, ::-1]
        shift = sum(stats.pca_eigenvectors[:, k] * aug.alphas[j, k] * stats.pca_eigenvalues[k]
                    for k in range(3))
        want = patch - 255 * mean + 255 * shift  # the 0-255 scale, [0, 1]-scale statistics
        assert numpy.allclose(images[j].transpose(1, 2, 0), want, atol=1e-3)
    # the lighting really moves colours: without it the same batch differs by the shift above
    plain = DataLoader(ds, 8, input_size=16, seed=9, lighting_std=0.0)
    diff = (images - next(iter(plain))[0]).reshape(8, 3, -1)
    assert numpy.allclose(diff, diff[:, :, :1], atol=1e-3) and numpy.abs(diff).max() > 0.01


def test_evaluation_centre_and_ten_crops():
    ds = open_dataset("builtin", "val", seed=5, base_size=20, num_train=24, num_val=8)
    centre = DataLoader(ds, 8, input_size=15, train=False)
    ten = DataLoader(ds, 8, input_size=15, train=False, ten_crop=True)
    (x, y), (x10, y10) = next(iter(centre)), next(iter(ten))
    assert x.shape == (8, 3, 15, 15) and x10.shape == (8, 10, 3, 15, 15)
    assert (y == numpy.arange(8) % 10).all() and (y10 == y).all()  # evaluation keeps the order
    m = (255 * ds.stats.mean).reshape(3, 1, 1)
    for j in range(8):
        image = ds.load(j)[0].transpose(2, 0, 1).astype(numpy.float64)
        assert numpy.allclose(x[j], image[:, 2:17, 2:17] - m, atol=1e-3)  # (20-15)//2 = 2
        assert numpy.allclose(x10[j, 4], x[j], atol=1e-5)                 # crop 5 is the centre
        assert numpy.allclose(x10[j, 0], image[:, :15, :15] - m, atol=1e-3)
        assert numpy.allclose(x10[j, 8], x10[j, 3][:, :, ::-1], atol=1e-5)  # mirrored corner
    with pytest.raises(ValueError, match="ten_crop"):
        DataLoader(ds, 8, input_size=15, ten_crop=True)
