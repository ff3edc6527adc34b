"""The pictures, on synthetic arrays: layout of Figure 3's grid, kernel normalisation, the
neighbours grid and the curves."""

import numpy
import pytest
from PIL import Image

from minialex.tools import viz


def test_kernel_to_rgb_stretches_each_kernel_and_keeps_its_pattern(rng):
    k = rng.standard_normal((3, 5, 4))
    img = viz.kernel_to_rgb(k)
    assert img.shape == (5, 4, 3) and img.min() == 0 and img.max() == 1
    order = numpy.argsort(k.transpose(1, 2, 0), axis=None)
    assert numpy.all(numpy.diff(img.reshape(-1)[order]) >= 0)  # monotone: the pattern survives
    assert numpy.all(viz.kernel_to_rgb(numpy.zeros((3, 2, 2))) == 0.5)
    with pytest.raises(ValueError, match="input channels"):
        viz.kernel_to_rgb(numpy.zeros((2, 3, 3)))


def test_filters_grid_has_one_block_per_column(rng):
    cols = [rng.standard_normal((48, 3, 11, 11)), rng.standard_normal((48, 3, 11, 11))]
    grid = viz.filters_grid(cols, per_row=16, zoom=4, gap=2, column_gap=10)
    block_h = 3 * (44 + 2) - 2                    # 48 kernels as 3 rows of 16
    assert grid.shape == (2 * block_h + 10, 16 * 46 - 2, 3) and grid.dtype == numpy.uint8
    assert numpy.all(grid[block_h:block_h + 10] == 255)          # the white band between columns
    # the first kernel's top-left pixel, zoomed 4x, is the stretched value of the kernel
    k0 = viz.kernel_to_rgb(cols[0][0])
    numpy.testing.assert_array_equal(grid[:4, :4], numpy.broadcast_to(
        (k0[0, 0] * 255).round().astype(numpy.uint8), (4, 4, 3)))


def test_neighbours_grid_and_pictures_are_written(rng, tmp_path):
    imgs = [rng.integers(0, 255, (40, 30, 3), dtype=numpy.uint8) for _ in range(2)]
    grid = viz.neighbours_grid(imgs, [imgs * 2, imgs], size=32, gap=4, border=3)
    assert grid.shape == (2 * (32 + 6 + 4) - 4, 5 * (32 + 6 + 4) + 4, 3)
    assert tuple(grid[0, 0]) == (200, 30, 30)     # the query's red frame
    viz.save_top5(imgs, [[("a", 0.7), ("b", 0.2)]] * 2, tmp_path / "t.png", true_labels=["a", None])
    records = [{"event": "step", "epoch_float": 0.5, "loss": 2.0, "lr": 0.01},
               {"event": "epoch", "epoch": 1, "train_loss": 1.9, "val_loss": 1.8,
                "train_top1_error": 0.7, "val_top1_error": 0.6, "val_top5_error": 0.2, "lr": 0.01}]
    viz.save_training_curves(records, tmp_path / "c.png")
    for name in ("t.png", "c.png"):
        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 200 and im.size[1] > 100
    with pytest.raises(ValueError, match="no step or epoch"):
        viz.save_training_curves([], tmp_path / "x.png")
