"""The built-in dataset: ten classes of procedurally drawn shapes, no download needed.

Each image is one shape — arrow, bar, circle, crescent, cross, ring, square, star, tee or
triangle — drawn at a random position, size, rotation, aspect ratio and hue, brighter than a dark
random colour gradient cluttered with lines and blobs, sometimes crossed by a thin line, with
Gaussian pixel noise on top. Position and clutter make a convolutional net (local,
translation-equivariant features) the right tool; random crops and flips (§4.1) help because the
shapes move and turn. The hue of a shape says nothing about its class.

How hard: ``STYLE`` holds every range. They were tuned on the CPU preset ('mini', 51-pixel
crops): with the shape free to wander over the whole image the net stayed at chance for its first
several epochs, so the centre moves over 35% of the free room (plus the crop's own jitter), and
the shape is always brighter than the background (any hue) — with both polarities the net needed
many more steps to leave chance. On 2,000 images the mini net reaches about 40% validation
accuracy after 4 epochs of 64-image batches (chance: 10%).

Determinism: image i of a split is a pure function of (seed, split, i, base_size): it is drawn
with its own generator ``numpy.random.default_rng([seed, split_code, i])``, so any subset, in any
order, on any number of threads, comes out the same. Labels are balanced: label = i mod 10.

Speed: shapes are rasterised by Pillow into a 2× supersampled mask (anti-aliased edges) and
composited with Pillow and NumPy; a few thousand 73-pixel images take a few seconds. Generated
images are kept in memory (shared by every Dataset object with the same parameters) when the
split fits in ``MEMORY_LIMIT_BYTES``; larger ones are drawn again on every ``load``.
"""

from __future__ import annotations

import math
import threading
from typing import Dict, Optional, Tuple

import numpy
from PIL import Image, ImageDraw

from .dataset import Dataset
from .stats import DataStats, compute_stats

CLASSES = ["arrow", "bar", "circle", "crescent", "cross", "ring", "square", "star", "tee",
           "triangle"]
DEFAULT_BASE_SIZE = 73        # base_size_for(64); train asks for its preset's size (mini: 58)
DEFAULT_NUM_TRAIN = 5000
DEFAULT_NUM_VAL = 1000
MEMORY_LIMIT_BYTES = 1 << 30  # keep a split in memory up to 1 GiB of uint8 pixels
STATS_IMAGES = 2000           # training images the mean/PCA is computed from
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}

# How hard the pictures are. Tuned so that the CPU preset of AlexNet leaves chance level within
# its first epochs while position, size, rotation, colour, clutter and noise all still vary.
STYLE = dict(
    radius=(0.22, 0.42),      # shape size, as a fraction of the image side
    shift=0.35,               # fraction of the free room the shape's centre may move
    background=(0.0, 130.0),  # range of the background's channel values (dark: shapes stand out)
    gradient=60.0,            # largest difference (per channel) between the background's two ends
    contrast=70.0,            # least luminance by which the shape is brighter than the background
    clutter=(1, 5),           # lines and blobs under the shape (min, max exclusive)
    occluders=(0, 2),         # thin lines over the shape
    noise=(2.0, 8.0),         # standard deviation of the pixel noise, grey levels
)


def _regular(n: int, radius: float, phase: float = math.pi / 2) -> numpy.ndarray:
    a = phase + 2 * math.pi * numpy.arange(n) / n
    return radius * numpy.stack([numpy.cos(a), numpy.sin(a)], axis=1)


def _rect(x0, x1, y0, y1) -> numpy.ndarray:
    return numpy.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def _star(points=5, outer=1.0, inner=0.42) -> numpy.ndarray:
    radii = numpy.where(numpy.arange(2 * points) % 2 == 0, outer, inner)
    a = math.pi / 2 + math.pi * numpy.arange(2 * points) / points
    return numpy.stack([radii * numpy.cos(a), radii * numpy.sin(a)], axis=1)


def _plus(half_width=0.28) -> numpy.ndarray:
    w = half_width
    return numpy.array([[-w, -1], [w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1], [-w, 1],
                        [-w, w], [-1, w], [-1, -w], [-w, -w]], dtype=float)


# Each class is a list of (polygon in unit coordinates, value): value 1 paints, 0 cuts a hole.
# Polygons fit in the unit disk so that "radius" below is the shape's size in pixels.
SHAPES: Dict[str, list] = {
    "arrow": [(numpy.array([[-1, -0.22], [0.15, -0.22], [0.15, -0.65], [1, 0], [0.15, 0.65],
                            [0.15, 0.22], [-1, 0.22]], dtype=float), 1)],
    "bar": [(_rect(-1, 1, -0.25, 0.25), 1)],
    "circle": [(_regular(48, 0.9), 1)],
    "crescent": [(_regular(48, 0.95), 1), (_regular(48, 0.8) + [0.42, 0.0], 0)],
    "cross": [(_plus(), 1)],
    "ring": [(_regular(48, 0.95), 1), (_regular(48, 0.55), 0)],
    "square": [(_regular(4, 0.95, math.pi / 4), 1)],
    "star": [(_star(), 1)],
    "tee": [(_rect(-0.9, 0.9, 0.4, 0.9), 1), (_rect(-0.24, 0.24, -0.95, 0.45), 1)],
    "triangle": [(_regular(3, 1.0), 1)],
}


_grids: Dict[int, Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]] = {}


def _grid_and_noise(size: int):
    """Per-size constants: pixel coordinates in [0, 1], and a (2·size, 2·size, 3) bank of
    standard normals from a fixed seed; each image takes a random window of it (drawing fresh
    normals for every pixel of every image would be the slowest step of generation)."""
    if size not in _grids:
        yy, xx = numpy.mgrid[0:size, 0:size].astype(numpy.float32) / max(size - 1, 1)
        bank = numpy.random.default_rng(2012).standard_normal((2 * size, 2 * size, 3), numpy.float32)
        _grids[size] = (xx, yy, bank)
    return _grids[size]


def draw_image(rng: numpy.random.Generator, label: int, size: int) -> numpy.ndarray:
    """One (size, size, 3) uint8 image of class ``CLASSES[label]``, all choices from ``rng``:
    a gradient background, clutter, the shape in a bright colour, occluders, pixel noise."""
    xx, yy, bank = _grid_and_noise(size)
    image, ends = _background(rng, size, xx, yy)
    width = max(1, round(size / 48))              # the lines' width
    _clutter(rng, image, size, width)
    mask = _shape_mask(rng, label, size)
    image = Image.composite(Image.new("RGB", (size, size), _rgb(_fill_colour(rng, ends))),
                            image, mask)
    draw = ImageDraw.Draw(image)    # occluders: one or two thin lines across, over the shape
    for _ in range(rng.integers(*STYLE["occluders"])):
        x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, size, 4))
        draw.line([x0, y0, x1, y1], fill=_rgb(rng.integers(0, 256, 3)), width=width)
    sigma = rng.uniform(*STYLE["noise"])          # Gaussian pixel noise
    top, left = (int(v) for v in rng.integers(0, size + 1, 2))
    pixels = numpy.asarray(image, dtype=numpy.float32)
    pixels += sigma * bank[top:top + size, left:left + size]
    return numpy.clip(pixels, 0, 255, out=pixels).astype(numpy.uint8)


def _background(rng, size: int, xx, yy):
    """A linear gradient between two random colours in a random direction: (image, (c0, c1))."""
    c0 = rng.uniform(*STYLE["background"], 3)
    c1 = numpy.clip(c0 + rng.uniform(-1, 1, 3) * STYLE["gradient"], 0, 255)
    theta = rng.uniform(0, 2 * math.pi)
    t = xx * math.cos(theta) + yy * math.sin(theta)
    t -= t.min()
    t *= 255.0 / max(float(t.max()), 1e-6)
    ramp = Image.fromarray(t.astype(numpy.uint8))
    return Image.composite(Image.new("RGB", (size, size), _rgb(c1)),
                           Image.new("RGB", (size, size), _rgb(c0)), ramp), (c0, c1)


def _clutter(rng, image, size: int, width: int) -> None:
    """Thin lines and small blobs under the shape (smaller than any shape), drawn in place."""
    draw, s = ImageDraw.Draw(image), float(size)
    for _ in range(rng.integers(*STYLE["clutter"])):
        colour = _rgb(rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            x0, y0, x1, y1 = (float(v) for v in rng.uniform(0, s, 4))
            draw.line([x0, y0, x1, y1], fill=colour, width=width)
        else:
            r = rng.uniform(0.02, 0.06) * s
            cx, cy = (float(v) for v in rng.uniform(0, s, 2))
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)


def _shape_mask(rng, label: int, size: int):
    """The class's shape at a random size, aspect, rotation and position: an 'L' mask, drawn
    supersampled and box-filtered (anti-aliased edges) below 128 pixels."""
    s = float(size)
    radius = rng.uniform(*STYLE["radius"]) * s
    aspect = math.exp(rng.uniform(-0.2, 0.2))
    angle = rng.uniform(0, 2 * math.pi)
    room = max(s / 2 - 0.8 * radius, 0.0)  # how far the centre may move and keep the shape in
    centre = s / 2 + rng.uniform(-1, 1, 2) * STYLE["shift"] * room
    rotation = numpy.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    factor = 2 if size < 128 else 1
    mask = Image.new("L", (size * factor, size * factor), 0)
    mask_draw = ImageDraw.Draw(mask)
    for polygon, value in SHAPES[CLASSES[label]]:
        points = ((polygon * [aspect, 1 / aspect]) @ rotation.T * radius + centre) * factor
        mask_draw.polygon(points.ravel().tolist(), fill=255 * value)
    return mask.reduce(factor) if factor != 1 else mask


def _fill_colour(rng, ends):
    """A fill colour of any hue, brighter than both ends of the gradient (colour carries no
    class): up to 20 draws, then the last one lifted towards white."""
    floor = max(_luminance(ends[0]), _luminance(ends[1])) + STYLE["contrast"]
    for _ in range(20):
        fill = rng.uniform(0, 255, 3)
        if _luminance(fill) > floor:
            return fill
    return fill + (255.0 - fill) * min(1.0, (floor - _luminance(fill))
                                       / max(255.0 - _luminance(fill), 1e-6))


def _luminance(rgb) -> float:
    return float(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])  # ITU-R 601, as Pillow's 'L'


def _rgb(values) -> Tuple[int, int, int]:
    return tuple(int(v) for v in values)


class _Store:
    """Generated images of one (seed, split, count, size), filled lazily, shared between datasets."""

    def __init__(self, seed: int, split: str, count: int, size: int):
        self.seed, self.split, self.count, self.size = seed, split, count, size
        self.keep = count * size * size * 3 <= MEMORY_LIMIT_BYTES
        self.images = numpy.zeros((count, size, size, 3), numpy.uint8) if self.keep else None
        self.ready = numpy.zeros(count, dtype=bool)

    def get(self, i: int) -> numpy.ndarray:
        if self.keep and self.ready[i]:
            return self.images[i]
        rng = numpy.random.default_rng([self.seed, _SPLIT_CODES[self.split], i])
        image = draw_image(rng, i % len(CLASSES), self.size)
        if self.keep:  # two threads drawing the same i write the same pixels: harmless
            self.images[i] = image
            self.ready[i] = True
        return image

    def get_many(self, indices: numpy.ndarray) -> Optional[numpy.ndarray]:
        """Images ``indices`` (n, size, size, 3), drawing those not drawn yet; None if not kept."""
        if not self.keep:
            return None
        for i in indices[~self.ready[indices]]:
            self.get(int(i))
        return self.images[indices]


_stores: Dict[Tuple[int, str, int, int], _Store] = {}
_stats: Dict[Tuple[int, int, int], DataStats] = {}
_lock = threading.Lock()


def _store(seed: int, split: str, count: int, size: int) -> _Store:
    key = (seed, split, count, size)
    with _lock:
        if key not in _stores:
            _stores[key] = _Store(seed, split, count, size)
        return _stores[key]


class BuiltinDataset(Dataset):
    """The procedural shapes dataset (see the module docstring). Spec: ``"builtin"``."""

    def __init__(self, split: str = "train", *, seed: int = 0, base_size: int = None,
                 num_train: int = None, num_val: int = None):
        self.seed = int(seed)
        self.num_train = DEFAULT_NUM_TRAIN if num_train is None else int(num_train)
        self.num_val = DEFAULT_NUM_VAL if num_val is None else int(num_val)
        count = self.num_train if split == "train" else self.num_val
        if count < 1:
            raise ValueError(f"builtin dataset: the {split} split needs at least one image, got {count}")
        size = DEFAULT_BASE_SIZE if base_size is None else int(base_size)
        super().__init__(name="builtin", split=split, classes=list(CLASSES), base_size=size)
        self._store = _store(self.seed, split, count, size)
        self.labels = numpy.arange(count, dtype=numpy.int64) % len(CLASSES)

    def __len__(self) -> int:
        return self._store.count

    def _load(self, i: int) -> numpy.ndarray:
        return self._store.get(i)

    def _load_many(self, indices: numpy.ndarray) -> Optional[numpy.ndarray]:
        return self._store.get_many(indices)

    def describe(self, i: int) -> str:
        return f"builtin {self.split} image {i} (seed {self.seed})"

    def _compute_stats(self) -> DataStats:
        key = (self.seed, self.num_train, self.base_size)
        with _lock:
            cached = _stats.get(key)
        if cached is None:
            train = _store(self.seed, "train", self.num_train, self.base_size)
            n = min(train.count, STATS_IMAGES)
            indices = (numpy.arange(n) * train.count) // n  # spread over the split, every class
            cached = compute_stats(train.get(int(i)) for i in indices)
            with _lock:
                _stats[key] = cached
        return cached
