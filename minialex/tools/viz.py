"""Pictures: the paper's Figure 3 (conv1 kernels), Figure 4 (top-5 predictions and nearest
neighbours in feature space) and training curves.

Everything here works on plain NumPy arrays and writes PNG files; nothing needs a model. The
figures are drawn with matplotlib's object API (``Figure`` + Agg canvas), never ``pyplot``, so no
window opens and no global state is touched.
"""

from __future__ import annotations

import io
import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy
from PIL import Image, ImageDraw

from ..files import write_atomic


def _picture_format(path: str, formats: Dict[str, str]) -> str:
    """The file format a picture's name asks for (its extension; PNG when it has none)."""
    ext = os.path.splitext(path)[1].lower()
    if not ext:
        return "png"
    if ext not in formats:
        raise ValueError(f"{path}: cannot write a picture as '{ext}'; give a file name ending in "
                         ".png")
    return formats[ext]


def _write_picture(path: str, render, formats: Dict[str, str]) -> str:
    """``render(buffer, format)`` draws the picture into memory; the file is then written whole
    (``files.write_atomic``): a full disk or a kill leaves the old file as it was, never a cut one.
    ``formats`` maps the extensions the drawing library writes to its format names."""
    buffer = io.BytesIO()
    render(buffer, _picture_format(path, formats))
    data = buffer.getbuffer()
    write_atomic(path, lambda fh: fh.write(data), len(data), "the picture")
    return path


def _save_png(image: numpy.ndarray, path) -> str:
    def pil(buffer, fmt):
        Image.fromarray(image).save(buffer, format=fmt)
    return _write_picture(os.fspath(path), pil, _PIL_FORMATS)


def save_figure(fig, path) -> str:
    """A matplotlib Figure written whole to ``path`` (PNG, SVG or PDF by its extension)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)

    def mpl(buffer, fmt):
        fig.savefig(buffer, format=fmt, dpi=100, bbox_inches="tight")  # long class names inside
    return _write_picture(os.fspath(path), mpl, _MPL_FORMATS)


_PIL_FORMATS = {ext: fmt for ext, fmt in Image.registered_extensions().items()
                if fmt in Image.SAVE}
_MPL_FORMATS = {f".{ext}": ext for ext in ("png", "pdf", "svg", "jpg", "jpeg", "eps", "ps",
                                           "tif", "tiff", "webp")}


# --------------------------------------------------------------------------------------------
# Figure 3: the first layer's kernels, one block per column
# --------------------------------------------------------------------------------------------

def kernel_to_rgb(kernel: numpy.ndarray) -> numpy.ndarray:
    """A (3, kh, kw) kernel as a (kh, kw, 3) float image in [0, 1].

    Each kernel is stretched to the full range on its own (min -> 0, max -> 1), as Figure 3 and
    most filter pictures do, so that weak kernels still show their pattern. A one-channel kernel
    is shown grey.
    """
    k = numpy.asarray(kernel, dtype=numpy.float64)
    if k.ndim != 3:
        raise ValueError(f"kernel_to_rgb: expected a (C, kh, kw) kernel, got shape {k.shape}")
    if k.shape[0] == 1:
        k = numpy.repeat(k, 3, axis=0)
    if k.shape[0] != 3:
        raise ValueError(f"kernel_to_rgb: expected 1 or 3 input channels, got {k.shape[0]}")
    lo, hi = k.min(), k.max()
    k = (k - lo) / (hi - lo) if hi > lo else numpy.full_like(k, 0.5)
    return k.transpose(1, 2, 0)


def filters_grid(columns: Sequence[numpy.ndarray], per_row: int = 16, zoom: int = 4,
                 gap: int = 2, column_gap: int = 10) -> numpy.ndarray:
    """Figure 3 as an image: the kernels of each column in a block, blocks stacked top to bottom.

    Returns a uint8 (H, W, 3) image.

    Parameters
    ----------
    columns
        one array per column, each (K, 3, kh, kw) (conv1's weights, PyTorch layout)
    per_row
        kernels per row of a block (16 gives the paper's 3 rows of 16 per column)
    zoom
        each kernel pixel becomes zoom x zoom pixels
    gap, column_gap
        white pixels between kernels, and between the columns' blocks
    """
    if not columns:
        raise ValueError("filters_grid: no kernels given")
    blocks = []
    for c, weight in enumerate(columns):
        w = numpy.asarray(weight)
        if w.ndim != 4:
            raise ValueError(f"filters_grid: column {c} has shape {w.shape}, expected (K, C, kh, kw)")
        k, _, kh, kw = w.shape
        cols = min(per_row, k)
        rows = math.ceil(k / cols)
        ch, cw = kh * zoom, kw * zoom
        block = numpy.ones((rows * (ch + gap) - gap, cols * (cw + gap) - gap, 3))
        for i in range(k):
            r, q = divmod(i, cols)
            tile = numpy.kron(kernel_to_rgb(w[i]), numpy.ones((zoom, zoom, 1)))
            block[r * (ch + gap): r * (ch + gap) + ch, q * (cw + gap): q * (cw + gap) + cw] = tile
        blocks.append(block)
    width = max(b.shape[1] for b in blocks)
    parts = []
    for i, b in enumerate(blocks):
        if i:
            parts.append(numpy.ones((column_gap, width, 3)))
        pad = numpy.ones((b.shape[0], width - b.shape[1], 3))
        parts.append(numpy.concatenate([b, pad], axis=1))
    image = numpy.concatenate(parts, axis=0)
    return (image * 255).round().astype(numpy.uint8)


def save_filters(columns: Sequence[numpy.ndarray], path, caption: str = "", **options) -> str:
    """Write ``filters_grid(columns)`` to a PNG, with ``caption`` in a strip below; returns the path."""
    image = filters_grid(columns, **options)
    if caption:
        strip = Image.new("RGB", (max(image.shape[1], 6 * len(caption) + 8), 16), "white")
        ImageDraw.Draw(strip).text((4, 2), caption, fill="black")
        wide = numpy.full((image.shape[0], strip.width, 3), 255, numpy.uint8)
        wide[:, :image.shape[1]] = image
        image = numpy.concatenate([wide, numpy.asarray(strip)], axis=0)
    return _save_png(image, path)


# --------------------------------------------------------------------------------------------
# Figure 4: nearest neighbours (right) and top-5 predictions (left)
# --------------------------------------------------------------------------------------------

def _cell(image: numpy.ndarray, size: int) -> numpy.ndarray:
    img = numpy.asarray(image)
    if img.ndim == 2:
        img = numpy.repeat(img[:, :, None], 3, axis=2)
    if img.dtype != numpy.uint8:
        img = numpy.clip(img, 0, 255).astype(numpy.uint8)
    return numpy.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR))


def neighbours_grid(queries: Sequence[numpy.ndarray], neighbours: Sequence[Sequence[numpy.ndarray]],
                    size: int = 96, gap: int = 4, border: int = 3) -> numpy.ndarray:
    """Figure 4 (right): one row per query, the query first (framed in red), then its nearest
    training images, nearest first. Images are uint8 (H, W, 3) of any size; each becomes
    ``size`` x ``size``. Returns a uint8 image."""
    if len(queries) != len(neighbours) or not queries:
        raise ValueError(f"neighbours_grid: {len(queries)} queries but {len(neighbours)} rows of neighbours")
    cols = 1 + max(len(n) for n in neighbours)
    step = size + 2 * border + gap
    canvas = numpy.full((len(queries) * step - gap, cols * step + gap, 3), 255, numpy.uint8)
    for r, (q, row) in enumerate(zip(queries, neighbours)):
        y = r * step
        for c, img in enumerate([q] + list(row)):
            x = c * step + (gap if c else 0)
            if c == 0:  # frame the query
                canvas[y:y + size + 2 * border, x:x + size + 2 * border] = (200, 30, 30)
            canvas[y + border:y + border + size, x + border:x + border + size] = _cell(img, size)
    return canvas


def save_neighbours(queries, neighbours, path, **options) -> str:
    return _save_png(neighbours_grid(queries, neighbours, **options), path)


def save_top5(images: Sequence[numpy.ndarray], predictions: Sequence[Sequence[Tuple[str, float]]],
              path, true_labels: Optional[Sequence[Optional[str]]] = None,
              titles: Optional[Sequence[str]] = None) -> str:
    """Figure 4 (left): each image above a bar chart of its five most probable classes.

    ``predictions[i]`` is a list of (class name, probability), most probable first. The bar of the
    true class (when ``true_labels`` gives it) is red, the others blue, as in the paper.
    """
    from matplotlib.figure import Figure
    n = len(images)
    if n == 0 or len(predictions) != n:
        raise ValueError(f"save_top5: {n} images but {len(predictions)} prediction lists")
    fig = Figure(figsize=(2.6 * n, 4.6))
    grid = fig.add_gridspec(2, n, height_ratios=[1.3, 1.0], hspace=0.25, wspace=0.6)
    for i, (img, preds) in enumerate(zip(images, predictions)):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(_cell(img, 128))
        ax.set_xticks([]), ax.set_yticks([])
        truth = true_labels[i] if true_labels else None
        title = titles[i] if titles else (truth or "")
        ax.set_title(_short(title, 22), fontsize=9)
        bx = fig.add_subplot(grid[1, i])
        names = [_short(name, 18) for name, _ in preds][::-1]
        probs = [p for _, p in preds][::-1]
        colours = ["#c0392b" if truth is not None and name == truth else "#2e86c1"
                   for name, _ in preds][::-1]
        bx.barh(range(len(probs)), probs, color=colours)
        bx.set_yticks(range(len(probs)))
        bx.set_yticklabels(names, fontsize=8)
        bx.set_xlim(0, 1)
        bx.tick_params(axis="x", labelsize=7)
    fig.subplots_adjust(left=0.12, right=0.97, top=0.93, bottom=0.07)
    return save_figure(fig, path)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


# --------------------------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------------------------

def save_training_curves(records: List[Dict], path, title: str = "") -> str:
    """Loss, top-1/top-5 error and learning rate against epochs, from a run's metrics log.

    ``records`` are the lines of ``metrics.jsonl`` (see ``minialex.train``): ``event == 'step'``
    lines (``epoch_float``, ``loss``) and ``event == 'epoch'`` lines (``epoch``, ``train_loss``,
    ``train_top1_error``, ``val_loss``, ``val_top1_error``, ``val_top5_error``, ``lr``).
    """
    from matplotlib.figure import Figure
    steps = [r for r in records if r.get("event") == "step"]
    epochs = [r for r in records if r.get("event") == "epoch"]
    if not steps and not epochs:
        raise ValueError("save_training_curves: the metrics log has no step or epoch records")
    fig = Figure(figsize=(13, 3.8))
    ax_loss, ax_err, ax_lr = (fig.add_subplot(1, 3, i) for i in (1, 2, 3))

    def series(rows, key, x="epoch"):
        pts = [(r[x], r[key]) for r in rows if r.get(key) is not None]
        return ([p[0] for p in pts], [p[1] for p in pts])

    if steps:
        ax_loss.plot(*series(steps, "loss", "epoch_float"), color="#aab7b8", lw=0.8,
                     label="training (batches)")
    for key, label, style in (("train_loss", "training (epoch mean)", "o-"), ("val_loss", "validation", "s-")):
        xs, ys = series(epochs, key)
        if xs:
            ax_loss.plot(xs, ys, style, ms=3, label=label)
    ax_loss.set(title="cross-entropy loss", xlabel="epoch")
    if ax_loss.get_legend_handles_labels()[0]:
        ax_loss.legend(fontsize=8)

    for key, label, style in (("train_top1_error", "training top-1", "o--"),
                              ("val_top1_error", "validation top-1", "o-"),
                              ("val_top5_error", "validation top-5", "s-")):
        xs, ys = series(epochs, key)
        if xs:
            ax_err.plot(xs, [100 * y for y in ys], style, ms=3, label=label)
    ax_err.set(title="error rate (%)", xlabel="epoch", ylim=(0, 100))
    if ax_err.get_legend_handles_labels()[0]:
        ax_err.legend(fontsize=8)
    elif not epochs:          # a run still in its first epoch: say so rather than draw empty axes
        ax_err.text(0.5, 0.5, "no epoch finished yet", ha="center", va="center",
                    transform=ax_err.transAxes, color="#7f8c8d")

    xs, ys = series(epochs or steps, "lr", "epoch" if epochs else "epoch_float")
    if xs:
        ax_lr.step(xs, ys, where="post")
        ax_lr.set_yscale("log")
    ax_lr.set(title="learning rate", xlabel="epoch")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.05, right=0.98, top=0.85 if title else 0.9, bottom=0.14, wspace=0.25)
    return save_figure(fig, path)
