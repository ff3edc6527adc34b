"""Every source of images: the built-in shapes, an ImageNet-layout folder (written here with
Pillow in every awkward mode), Fashion-MNIST (skipped where not installed), and their bad inputs."""

import gzip
import os

import numpy
import pytest
from PIL import Image

from minialex.data import (DataError, DataFileNotFoundError, base_size_for, open_dataset)
from minialex.data.images import load_image, resize_center_crop, to_rgb
from minialex.data.dataset import balanced_indices

COLOURS = {"cat": (200, 30, 30), "dog": (30, 200, 30), "fish": (30, 30, 200)}


def make_image_folder(root, per_class=4, bad=True):
    """A tiny ImageNet-layout dataset: train/ and val/ with classes cat, dog, fish, each image a
    flat colour of its class (so a loaded image tells its label), saved in a different mode and
    size per index. With ``bad``: a README, a truncated JPEG, a text file named .jpg, a stray file."""
    root = str(root)
    for split, n in (("train", per_class), ("val", 2)):
        for name, colour in COLOURS.items():
            d = os.path.join(root, split, name)
            os.makedirs(d, exist_ok=True)
            for k in range(n):
                rgb = Image.new("RGB", (30 + 7 * k, 20 + 5 * k), colour)
                kind = k % 6
                if kind == 0:
                    rgb.save(os.path.join(d, f"{k}.jpg"), quality=95)
                elif kind == 1:
                    rgb.convert("L").save(os.path.join(d, f"{k}.png"))
                elif kind == 2:
                    rgb.convert("CMYK").save(os.path.join(d, f"{k}.jpg"), quality=95)
                elif kind == 3:
                    rgb.convert("P").save(os.path.join(d, f"{k}.gif"))
                elif kind == 4:
                    rgba = rgb.convert("RGBA")
                    rgba.putalpha(255)
                    rgba.save(os.path.join(d, f"{k}.png"))
                else:
                    rgb.resize((5, 4)).save(os.path.join(d, f"{k}.bmp"))  # smaller than any crop
    if bad:
        with open(os.path.join(root, "train", "cat", "README.txt"), "w") as f:
            f.write("not an image")
        with open(os.path.join(root, "train", "dog", "fake.jpg"), "w") as f:
            f.write("this is text, not a JPEG")
        good = os.path.join(root, "train", "fish", "big.jpg")
        Image.new("RGB", (64, 64), COLOURS["fish"]).save(good, quality=95)
        data = open(good, "rb").read()
        with open(os.path.join(root, "train", "fish", "truncated.jpg"), "wb") as f:
            f.write(data[: len(data) // 2])
        with open(os.path.join(root, "train", "stray.txt"), "w") as f:
            f.write("a file outside any class folder")
    return root


# -- image preprocessing ---------------------------------------------------------------------

def test_modes_become_rgb():
    colour = (200, 100, 50)
    rgb = Image.new("RGB", (4, 4), colour)
    for image in (rgb.convert("P"), rgb.convert("CMYK"), rgb.convert("LA").convert("RGBA")):
        out = numpy.asarray(to_rgb(image))
        assert out.shape == (4, 4, 3)
    assert numpy.abs(numpy.asarray(to_rgb(rgb.convert("CMYK"))).astype(int) - colour).max() <= 2
    gray = numpy.asarray(to_rgb(rgb.convert("L")))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    # transparency is composited over black: alpha 0 -> black, alpha 128 -> about half
    rgba = Image.new("RGBA", (2, 1), colour + (255,))
    rgba.putpixel((0, 0), colour + (0,))
    rgba.putpixel((1, 0), colour + (128,))
    out = numpy.asarray(to_rgb(rgba)).astype(int)
    assert (out[0, 0] == 0).all()
    assert numpy.abs(out[0, 1] - numpy.array(colour) * 128 / 255).max() <= 1
    # 16-bit grayscale keeps its range
    deep = Image.fromarray(numpy.full((2, 2), 65535, dtype=numpy.uint16))
    assert (numpy.asarray(to_rgb(deep)) == 255).all()


def test_shorter_side_scaled_then_centre_crop():
    # a 60x30 image whose columns are numbered in the red channel
    a = numpy.zeros((30, 60, 3), numpy.uint8)
    a[..., 0] = numpy.arange(60, dtype=numpy.uint8) * 4
    out = numpy.asarray(resize_center_crop(Image.fromarray(a), 16))
    assert out.shape == (16, 16, 3)
    # 30 -> 16 scales width 60 -> 32; the centre 16 of 32 are source columns 15..45
    assert 12 * 4 <= out[0, 0, 0] <= 18 * 4 and 42 * 4 <= out[0, -1, 0] <= 48 * 4
    # tall images crop the middle rows; small images are scaled up
    tall = numpy.asarray(resize_center_crop(Image.fromarray(a.transpose(1, 0, 2).copy()), 16))
    assert 12 * 4 <= tall[0, 0, 0] <= 18 * 4
    assert numpy.asarray(resize_center_crop(Image.new("RGB", (3, 2)), 16)).shape == (16, 16, 3)


def test_load_image_errors_name_the_file(tmp_path):
    p = tmp_path / "nope.jpg"
    p.write_text("text")
    with pytest.raises(DataError, match="nope.jpg"):
        load_image(str(p), 16)


def test_base_size_for_keeps_the_papers_ratio():
    assert base_size_for(224) == 256 and base_size_for(64) == 73 and base_size_for(96) == 110


# -- ImageNet-layout folders ---------------------------------------------------------------------

def test_image_folder(tmp_path):
    root = make_image_folder(tmp_path / "ds")
    with open(os.path.join(root, "classes.txt"), "w") as f:
        f.write("cat Felis catus\ndog Canis familiaris\n")
    train = open_dataset(root, "train", base_size=20)
    val = open_dataset(root, "val", base_size=20)
    assert train.classes == ["cat", "dog", "fish"] == val.classes
    assert train.class_names == ["Felis catus", "Canis familiaris", "fish"]
    assert train.num_classes == 3 and train.base_size == 20
    # 12 good + big.jpg, and fake.jpg and truncated.jpg, which are found bad only when loaded
    assert len(train) == 3 * 4 + 3 and len(val) == 6
    skipped = dict(train.skipped)
    assert any(k.endswith("README.txt") for k in skipped) and any(k.endswith("stray.txt") for k in skipped)
    good = 0
    for i in range(len(train)):
        try:
            image, label = train.load(i)
        except DataError as e:
            assert "fake.jpg" in str(e) or "truncated.jpg" in str(e)
            continue
        good += 1
        assert image.shape == (20, 20, 3) and image.dtype == numpy.uint8
        expected = numpy.array(COLOURS[train.classes[label]])
        centre = image[10, 10].astype(int)
        if os.path.basename(train.paths[i]).startswith("1."):  # saved as grayscale
            expected = numpy.full(3, int(Image.new("RGB", (1, 1), tuple(expected)).convert("L").getpixel((0, 0))))
        assert numpy.abs(centre - expected).max() <= 12, (train.paths[i], centre, expected)
    assert good == 13
    assert (val.labels == [0, 0, 1, 1, 2, 2]).all()
    stats = val.stats  # a val set carries the training statistics
    assert stats is train.stats or numpy.allclose(stats.mean, train.stats.mean)
    assert numpy.all(stats.mean > 0.1) and numpy.all(stats.mean < 0.7)


def test_image_folder_limit_keeps_every_class(tmp_path):
    root = make_image_folder(tmp_path / "ds", per_class=6, bad=False)
    sub = open_dataset(root, "train", base_size=16, limit=6)
    assert len(sub) == 6 and set(sub.labels.tolist()) == {0, 1, 2}
    assert sub.stats.mean.shape == (3,)


def test_limit_takes_the_classes_in_turn():
    """The built-in set's labels are i mod 10, so evenly spaced indices would alias onto a few
    classes; --limit / --train-images must still give every class its share."""
    sub = open_dataset("builtin", "train", base_size=16, num_train=200, num_val=10, limit=25)
    assert len(sub) == 25 and sorted(numpy.bincount(sub.labels)) == [2] * 5 + [3] * 5
    assert list(balanced_indices([2, 2, 2, 0, 0, 1], 4)) == [0, 3, 4, 5]   # 3, 5, 0, then 4
    assert list(balanced_indices([1, 0], 5)) == [0, 1]


def test_image_folder_bad_layouts(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="missing"):
        open_dataset(str(tmp_path / "missing"))
    (tmp_path / "flat").mkdir()
    with pytest.raises(DataFileNotFoundError, match="train"):
        open_dataset(str(tmp_path / "flat"))
    (tmp_path / "noclass" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="no class folders"):
        open_dataset(str(tmp_path / "noclass"))
    root = make_image_folder(tmp_path / "empty", bad=False)
    os.makedirs(os.path.join(root, "train", "zebra"))
    with pytest.raises(DataError, match="zebra.*no image files"):
        open_dataset(root, "train")
    root = make_image_folder(tmp_path / "extra", bad=False)
    os.makedirs(os.path.join(root, "val", "unicorn"))
    with pytest.raises(DataError, match="unicorn"):
        open_dataset(root, "val")
    root = make_image_folder(tmp_path / "noval", bad=False)
    with pytest.raises(DataFileNotFoundError, match="class-names"):
        open_dataset(root, "train", class_names_file=str(tmp_path / "none.txt"))
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    with pytest.raises(DataError, match="notes.txt"):
        open_dataset(str(notes))
    with pytest.raises(ValueError, match="split"):
        open_dataset("builtin", "holdout")


# -- the built-in set ----------------------------------------------------------------------------

def test_builtin_is_deterministic_and_balanced():
    a = open_dataset("builtin", "train", seed=3, base_size=32, num_train=40, num_val=20)
    b = open_dataset("builtin", "train", seed=3, base_size=32, num_train=40, num_val=20)
    c = open_dataset("builtin", "train", seed=4, base_size=32, num_train=40, num_val=20)
    v = open_dataset("builtin", "val", seed=3, base_size=32, num_train=40, num_val=20)
    assert len(a) == 40 and len(v) == 20 and a.num_classes == 10 and a.base_size == 32
    assert a.classes == sorted(a.classes)
    assert numpy.bincount(a.labels, minlength=10).tolist() == [4] * 10
    for i in (0, 7, 39):
        x, label = a.load(i)
        assert x.shape == (32, 32, 3) and x.dtype == numpy.uint8 and label == i % 10
        assert (x == b.load(i)[0]).all()
        assert not (x == c.load(i)[0]).all()
    assert not (a.load(0)[0] == v.load(0)[0]).all()
    # images vary: a class is not one picture, and pictures are not flat
    x0, x10 = a.load(0)[0], a.load(10)[0]
    assert numpy.abs(x0.astype(int) - x10).mean() > 20 and x0.std() > 10
    assert numpy.allclose(v.stats.mean, a.stats.mean)  # val carries the training statistics


def test_builtin_sizes_and_errors():
    d = open_dataset("builtin", "val", base_size=base_size_for(64), num_val=5, num_train=10)
    assert d.base_size == 73 and d.load(4)[0].shape == (73, 73, 3)
    with pytest.raises(ValueError):
        open_dataset("builtin", "val", num_val=0)
    with pytest.raises(ValueError, match="num_train"):
        open_dataset("fashion-mnist", num_train=3)
    with pytest.raises(IndexError):
        d.load(5)


# -- Fashion-MNIST ---------------------------------------------------------------------------

FASHION = "/usr/share/datasets/fashion-mnist"
needs_fashion = pytest.mark.skipif(not os.path.isdir(FASHION), reason="Fashion-MNIST not installed")


@needs_fashion
def test_fashion_mnist():
    train = open_dataset("fashion-mnist", "train", base_size=32, limit=300)
    val = open_dataset("fashion-mnist", "val", base_size=32)
    test = open_dataset("fashion-mnist", "test", base_size=32)
    assert len(train) == 300 and len(val) == 5000 and len(test) == 10000 and train.num_classes == 10
    assert numpy.bincount(val.labels).tolist() == [500] * 10   # one in twelve of each class
    assert train.classes[0] == "T-shirt/top" and train.classes[9] == "Ankle boot"
    x, label = train.load(5)
    assert x.shape == (32, 32, 3) and 0 <= label < 10
    assert (x[..., 0] == x[..., 1]).all() and (x[..., 1] == x[..., 2]).all()  # gray replicated
    s = train.stats  # from the 55,000 training-split images; rank one because R = G = B
    assert numpy.allclose(s.mean, s.mean[0]) and 0.2 < s.mean[0] < 0.4
    assert numpy.allclose(numpy.abs(s.pca_eigenvectors[:, 0]), 1 / numpy.sqrt(3))
    assert s.pca_eigenvalues[0] > 0.05 and s.pca_eigenvalues[1] < 1e-9
    same = open_dataset(f"fashion-mnist:{FASHION}", "test", base_size=28)
    raw = same.load(0)[0]
    assert raw.shape == (28, 28, 3)


@needs_fashion
def test_fashion_mnist_validation_is_held_out_of_training_and_apart_from_test():
    """The schedule watches 'val', never the test images: the three splits share no image (byte
    for byte), together hold all 70,000, and 'val' is the same for every seed and process."""
    from minialex.data.fashion_mnist import read_split
    splits = {name: read_split(FASHION, name)[0] for name in ("train", "val", "test")}
    as_bytes = {name: {img.tobytes() for img in images} for name, images in splits.items()}
    assert len(splits["train"]) == 55000 and len(splits["val"]) == 5000
    assert not as_bytes["val"] & as_bytes["train"] and not as_bytes["val"] & as_bytes["test"]
    assert not as_bytes["train"] & as_bytes["test"]
    assert sum(len(b) for b in as_bytes.values()) == 70000        # every image, once
    again = open_dataset("fashion-mnist", "val", seed=7, base_size=28)
    assert numpy.array_equal(numpy.stack([again.load(i)[0][..., 0] for i in range(5)]),
                             splits["val"][:5])


def _idx(path, magic, shape, payload=None):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)
    data = payload if payload is not None else bytes(int(numpy.prod(shape)))
    with gzip.open(path, "wb") as f:
        f.write(header + data)


def test_fashion_mnist_bad_files(tmp_path):
    with pytest.raises(DataFileNotFoundError, match="nowhere"):
        open_dataset(f"fashion-mnist:{tmp_path / 'nowhere'}", "test")
    d = tmp_path / "fm"
    d.mkdir()
    _idx(d / "t10k-images-idx3-ubyte.gz", 2051, (3, 28, 28))
    _idx(d / "t10k-labels-idx1-ubyte.gz", 2049, (3,))
    assert len(open_dataset(f"fashion-mnist:{d}", "test")) == 3
    bad = tmp_path / "magic"
    bad.mkdir()
    _idx(bad / "t10k-images-idx3-ubyte.gz", 2049, (3, 28, 28))
    _idx(bad / "t10k-labels-idx1-ubyte.gz", 2049, (3,))
    with pytest.raises(DataError, match="t10k-images.*magic"):
        open_dataset(f"fashion-mnist:{bad}", "test")
    count = tmp_path / "count"
    count.mkdir()
    _idx(count / "t10k-images-idx3-ubyte.gz", 2051, (3, 28, 28))
    _idx(count / "t10k-labels-idx1-ubyte.gz", 2049, (4,))
    with pytest.raises(DataError, match="3 images but .* 4 labels"):
        open_dataset(f"fashion-mnist:{count}", "test")
    short = tmp_path / "short"
    short.mkdir()
    _idx(short / "t10k-images-idx3-ubyte.gz", 2051, (3, 28, 28), payload=bytes(100))
    _idx(short / "t10k-labels-idx1-ubyte.gz", 2049, (3,))
    with pytest.raises(DataError, match="t10k-images.*bytes"):
        open_dataset(f"fashion-mnist:{short}", "test")


def test_fashion_mnist_keeps_scaled_images_and_gives_the_same_bytes(tmp_path, monkeypatch):
    """The scaled images a split keeps after first use (SCALED_CACHE_BYTES) are the bytes that
    scaling each time gives; a split too large for the limit is scaled each time."""
    from minialex.data import fashion_mnist
    d = tmp_path / "fm"
    d.mkdir()
    pixels = numpy.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=numpy.uint8)
    _idx(d / "t10k-images-idx3-ubyte.gz", 2051, (4, 28, 28), payload=pixels.tobytes())
    _idx(d / "t10k-labels-idx1-ubyte.gz", 2049, (4,), payload=bytes([0, 1, 2, 3]))
    kept = open_dataset(f"fashion-mnist:{d}", "test", base_size=40)
    assert kept.scaled is not None and not kept.have.any()
    first = [kept.load(i)[0] for i in range(4)]
    assert kept.have.all()
    monkeypatch.setattr(fashion_mnist, "SCALED_CACHE_BYTES", 4 * 40 * 40 - 1)
    fresh = open_dataset(f"fashion-mnist:{d}", "test", base_size=40)
    assert fresh.scaled is None
    for i in range(4):
        again, scaled = kept.load(i)[0], fresh.load(i)[0]
        assert again.shape == (40, 40, 3) and numpy.array_equal(again, first[i])
        assert numpy.array_equal(again, scaled) and (again[..., 0] == again[..., 2]).all()
    assert not numpy.array_equal(first[0], first[1])
    assert open_dataset(f"fashion-mnist:{d}", "test", base_size=28).scaled is None   # no scaling
