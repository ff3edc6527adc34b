"""The paper's image transforms, one small function each (§2, §4.1, and §4.1's ten test-time patches).

Images here are (H, W, 3) uint8 arrays, H = W = base_size; a crop of side S is taken at
(top, left). The loader draws every random number for a batch from one generator, in this order:
tops (N,), lefts (N,), flips (N,), standard normals for lighting (N, 3) — so a batch is a pure
function of (seed, epoch, batch index).

Float conversion, mean subtraction and lighting happen once per batch in ``normalize_batch``,
which takes the array module ``xp`` (numpy or cupy) so that the GPU path is the same code.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy


# -- random parameters -------------------------------------------------------------------------

def random_crop_offsets(rng: numpy.random.Generator, n: int, base_size: int, size: int):
    """(tops, lefts), each (n,) int in [0, base_size - size]: uniform crop positions (§4.1:
    "extracting random 224 × 224 patches ... from the 256×256 images"; 0..32 for the paper)."""
    tops = rng.integers(0, base_size - size + 1, size=n)
    lefts = rng.integers(0, base_size - size + 1, size=n)
    return tops, lefts


def random_flips(rng: numpy.random.Generator, n: int) -> numpy.ndarray:
    """(n,) bool: mirror image i horizontally with probability 1/2 (§4.1 "horizontal reflections")."""
    return rng.random(n) < 0.5


def lighting_alphas(rng: numpy.random.Generator, n: int, std: float = 0.1) -> numpy.ndarray:
    """(n, 3) alphas ~ N(0, std): one draw per image per presentation (§4.1, std 0.1)."""
    return std * rng.standard_normal((n, 3))


# -- crops and flips ---------------------------------------------------------------------------

def crop(image: numpy.ndarray, top: int, left: int, size: int) -> numpy.ndarray:
    """The size×size patch of ``image`` whose top-left pixel is (top, left)."""
    return image[top:top + size, left:left + size]


def hflip(image: numpy.ndarray) -> numpy.ndarray:
    """Mirror left-right: column x becomes column W-1-x (axis 1 of an (H, W, 3) image)."""
    return image[:, ::-1]


def center_offset(base_size: int, size: int) -> int:
    """The top (= left) of the central crop; rounds down when base_size - size is odd."""
    return (base_size - size) // 2


def center_crop(image: numpy.ndarray, size: int) -> numpy.ndarray:
    o = center_offset(image.shape[0], size)
    return crop(image, o, o, size)


def ten_crop_offsets(base_size: int, size: int) -> List[Tuple[int, int]]:
    """(top, left) of the paper's five test patches (§4.1): top-left, top-right, bottom-left,
    bottom-right corners, then the centre."""
    far, c = base_size - size, center_offset(base_size, size)
    return [(0, 0), (0, far), (far, 0), (far, far), (c, c)]


def ten_crops(image: numpy.ndarray, size: int) -> numpy.ndarray:
    """(10, size, size, 3): the five patches of ``ten_crop_offsets``, then their mirror images in
    the same order. The paper averages the softmax over these ten (§4.1)."""
    patches = [crop(image, t, l, size) for t, l in ten_crop_offsets(image.shape[0], size)]
    return numpy.stack(patches + [hflip(p) for p in patches])


# -- per-batch arithmetic ------------------------------------------------------------------------

def pixel_offsets(mean: numpy.ndarray, lighting: numpy.ndarray) -> numpy.ndarray:
    """(N, 3) float32 added to every 0–255 pixel of image n: 255·(lighting_n − mean).

    mean (3,) and lighting (N, 3) are on the [0, 1] scale (stats.py); lighting is
    ``DataStats.lighting(alphas)`` or zeros.
    """
    return (255.0 * (numpy.asarray(lighting, dtype=numpy.float64) - mean)).astype(numpy.float32)


def normalize_batch(xp, crops, offsets, scale: float = 255.0):
    """uint8 crops (N, [10,] S, S, C) -> float32 (N, [10,] 3, S, S) ready for the net.

    out = (pixel + offsets[n]) · scale/255, pixel in 0..255, offsets from ``pixel_offsets``. With
    the default scale 255 the values are the 0–255 pixels minus the training mean plus the PCA
    colour shift — the units of the paper's own code (cuda-convnet) and Caffe; scale=1 gives
    the [0, 1] units. C = 3, or C = 1 for grey images (R = G = B: their one plane is read for
    each channel, each with its own offset). ``xp`` is numpy or cupy: the one place where the
    GPU path and the CPU path share code.
    """
    d = crops.ndim  # (..., H, W, C) -> (..., C, H, W)
    channels_first = tuple(range(d - 3)) + (d - 1, d - 3, d - 2)
    shape = (offsets.shape[0],) + (1,) * (crops.ndim - 4) + (3, 1, 1)
    offsets = xp.asarray(offsets, dtype=xp.float32).reshape(shape)
    if crops.shape[-1] == 1:        # one pass: float32(pixel) + offset, as the two passes below
        x = xp.empty(crops.shape[:-3] + (3,) + crops.shape[-3:-1], dtype=xp.float32)
        xp.add(crops.transpose(channels_first), offsets, out=x)
    else:
        x = xp.ascontiguousarray(crops.transpose(channels_first)).astype(xp.float32)
        x += offsets
    if scale != 255.0:
        x *= xp.float32(scale / 255.0)
    return x
