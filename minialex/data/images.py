"""Reading one image file and bringing it to the stored square size (paper §2).

The paper: "we down-sampled the images to a fixed resolution of 256 × 256. Given a rectangular
image, we first rescaled the image such that the shorter side was of length 256, and then cropped
out the central 256×256 patch". ``base_size`` plays the role of 256 (smaller for small presets).

Every Pillow mode becomes RGB first: grayscale ('L', 'I', 'F', '1') is replicated into three
channels, palette ('P') is expanded, CMYK is converted by Pillow's formula, and transparency
('RGBA', 'LA', 'PA', palette with a transparent index) is composited over a black background —
black because that is what a zero alpha "means" in most datasets and it keeps the conversion
independent of any colour choice.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy
from PIL import Image, UnidentifiedImageError

from .errors import DataError

# Pillow warns of an image over ``Image.MAX_IMAGE_PIXELS`` (89 million pixels) as a possible
# "decompression bomb", in two raw lines that do not name the file; ``load_image`` says it in one
# line that does. (Over twice that, Pillow refuses the image, and it is skipped as unreadable.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Extensions that the folder scanner accepts as images. Anything else (README.txt, .DS_Store,
# labels.csv) is skipped at scan time and counted; see ImageFolder.skipped.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
    ".pbm", ".pnm", ".tga", ".ico", ".jfif",
})


def printable(path: str) -> str:
    """A path as it can be printed and stored as UTF-8 text. A name that is not valid UTF-8 (as
    old zip archives unpack: Latin-1 or CP437 bytes) reaches Python with its bad bytes as
    surrogates ('caf\\udce9'), which no UTF-8 output or HDF5 string accepts; here they are
    shown as their bytes, 'caf\\xe9'. The path itself still opens the file. (A file object, as
    an archive member is read, is shown as Python shows it.)"""
    if not isinstance(path, str):
        return str(path)
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")


def is_image_name(path: str) -> bool:
    return os.path.splitext(path)[1].lower() in IMAGE_EXTENSIONS


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as mode 'RGB' (see the module docstring for the conventions)."""
    if image.mode == "RGB":
        return image
    if image.mode == "P":
        # A palette image may carry transparency; expand it so the alpha rule below applies.
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit or float grayscale: scale the full range of the file to 0..255.
        a = numpy.asarray(image, dtype=numpy.float64)
        hi = 65535.0 if image.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = numpy.clip(a / hi * 255.0 + 0.5, 0, 255).astype(numpy.uint8)
        image = Image.fromarray(a)
    return image.convert("RGB")  # 'L', '1', 'CMYK', 'YCbCr', 'LAB', 'HSV'


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is ``size`` (up or down), then crop the central size×size square.

    Images smaller than ``size`` are scaled *up*, so an image smaller than the training crop still
    yields a full-size patch (blurred) instead of an error. Bilinear with Pillow's antialiasing
    filter support on down-scaling (``reducing_gap`` off to keep results exact and simple).
    """
    w, h = image.size
    if w <= 0 or h <= 0:
        raise ValueError(f"empty image {w}x{h}")
    if min(w, h) != size:
        if w <= h:
            new_w, new_h = size, max(size, round(h * size / w))
        else:
            new_w, new_h = max(size, round(w * size / h)), size
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        w, h = new_w, new_h
    left, top = (w - size) // 2, (h - size) // 2
    if (w, h) != (size, size):
        image = image.crop((left, top, left + size, top + size))
    return image


def load_image(path: str, size: int) -> numpy.ndarray:
    """Read ``path`` and return the preprocessed (size, size, 3) uint8 RGB array.

    Raises DataError naming the file if it cannot be used: not an image, truncated, corrupt, or
    gone since the folder was scanned (the loader then skips it instead of stopping the epoch).
    """
    try:
        with Image.open(path) as image:
            _note_if_huge(path, image)
            image.load()  # decode now: a truncated JPEG fails here, not later
            rgb = to_rgb(image)
            out = resize_center_crop(rgb, size)
            return numpy.asarray(out, dtype=numpy.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read image {printable(path)}: {reason}") from None


_noted = set()       # the huge images already named: once each, however often they are read


def _note_if_huge(path: str, image: Image.Image) -> None:
    """One line on stderr, once per file, for an image Pillow would warn of as a possible
    decompression bomb."""
    w, h = image.size
    limit = Image.MAX_IMAGE_PIXELS
    if limit and w * h > limit and path not in _noted:
        _noted.add(path)
        sys.stderr.write(f"note: {printable(path)} is {w}x{h}, {w * h:,} pixels, over Pillow's "
                         f"limit of {limit:,} (a guard against decompression bombs): read all the "
                         "same; twice the limit is refused\n")
        sys.stderr.flush()


def resize_array(array: numpy.ndarray, size: int) -> numpy.ndarray:
    """A (H, W, 3) uint8 array brought to (size, size, 3) by ``resize_center_crop``."""
    if array.shape[0] == size and array.shape[1] == size:
        return array
    image = Image.fromarray(numpy.ascontiguousarray(array))
    return numpy.asarray(resize_center_crop(image, size), dtype=numpy.uint8).copy()

