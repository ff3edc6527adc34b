"""The paper's Figure 2, drawn from the layer table instead of by hand.

Figure 2 of Krizhevsky, Sutskever and Hinton (2012) shows AlexNet as two columns, one per GPU,
with the size of every layer's output and the places where the columns talk to each other. This
module draws the same picture for any preset ('paper', 'mini', 'fashion', 'tiny' or your own
``Preset``), reading every number from the one layer table the model is built from
(``Preset.layers`` and ``minialex.models.describe``), so the drawing cannot disagree with the
network.

    stages = figure2_stages("paper")          # the boxes: name, shape per column, crossing?
    fig = draw_figure2("paper")                # a matplotlib Figure
    draw_figure2("mini", path="figure2.png")   # ... also written as a PNG

Reading the picture (§3.2, §3.5):

- the top row is column 0 (the paper's GPU 0), the bottom row column 1 (GPU 1);
- each box is one stage's output for one image, per column: C x H x W for the convolution and
  pooling stages, a vector of features for the fully connected ones;
- a plain arrow stays inside its column; a red arrow crosses to the other column. The columns
  cross only into conv3, fc6, fc7 and fc8 ("the GPUs communicate only in certain layers"), so
  each of those reads the maps of *both* columns;
- fc8 is one layer (the logits, on column 0's device in minialex; the paper does not say).

Like ``minialex.tools.viz`` it uses matplotlib's object API (``Figure`` and the Agg canvas), never
``pyplot``: no window opens and no global state is touched.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from typing import List, Optional, Tuple, Union

from ..files import WriteError, write_atomic
from ..models.presets import POOL_SIZE, POOL_STRIDE, Preset, get_preset
from ..models.summary import describe

#: Colour of the arrows that cross from one column to the other.
CROSSING_COLOUR = "#c0392b"
#: Fill of each column's boxes (column 0, column 1) and of the shared ones (input, fc8).
COLUMN_COLOURS = ("#d6e6f5", "#fde3c8")
SHARED_COLOUR = "#e8e8e8"


@dataclasses.dataclass(frozen=True)
class Stage:
    """One box of Figure 2 in each column (or one shared box for the input and fc8).

    ``shape``: the stage's output for one image in one column, (C, H, W) or (features,);
    fc8's is the whole logits vector and the input's the whole image. ``detail``: what makes it,
    e.g. '11x11, stride 4' or 'max 3x3, stride 2'. ``crossing``: the stage reads both columns.
    ``shared``: one box for both columns (the input image and fc8).
    """

    name: str
    shape: Tuple[int, ...]
    detail: str
    crossing: bool = False
    shared: bool = False

    @property
    def label(self) -> str:
        """The shape as Figure 2 writes it: '48x55x55' or '2048'."""
        return "x".join(str(d) for d in self.shape)


def figure2_stages(preset: Union[str, Preset] = "paper", num_classes: int = 1000) -> List[Stage]:
    """The boxes of Figure 2, left to right: the input, conv1, pool1, ..., fc7, fc8.

    Read off ``describe(preset, num_classes)`` (the rows of ``python cli.py info``) and
    ``Preset.layers`` (which layers cross). For the paper preset the shapes per column are
    3x227x227 (the image), 48x55x55, 48x27x27, 128x27x27, 128x13x13, 192x13x13, 192x13x13,
    128x13x13, 128x6x6, 2048, 2048 and 1000 logits (§3.5); conv3, fc6, fc7 and fc8 cross.
    """
    p = get_preset(preset)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"figure2: num_classes must be a positive integer, got {num_classes!r}")
    crossing = {layer.name: layer.crossing for layer in p.layers(num_classes)}
    geometry = {layer.name: layer for layer in p.layers(num_classes)}
    n = p.input_size
    stages = [Stage("input", (3, n, n), "the image,\na copy per column", shared=True)]
    for row in describe(p, num_classes):
        if row.layer in geometry:
            layer = geometry[row.layer]
            if layer.kernel:
                detail = f"{layer.kernel}x{layer.kernel}, stride {layer.stride}"
            else:
                detail = "fully\nconnected" + (",\nthe logits" if layer.name == "fc8" else "")
            stages.append(Stage(row.layer, tuple(row.output), detail,
                                crossing=crossing[row.layer], shared=row.layer == "fc8"))
        else:                      # 'relu1, lrn1, pool1': the stage after conv1, conv2 or conv5
            pool = [part.strip() for part in row.layer.split(",") if "pool" in part][0]
            extra = "LRN, then\n" if "lrn" in row.layer else ""
            stages.append(Stage(pool, tuple(row.output),
                                f"{extra}max {POOL_SIZE}x{POOL_SIZE}, stride {POOL_STRIDE}"))
    return stages


def _box_size(stage: Stage, max_side: int, max_channels: int) -> Tuple[float, float]:
    """Width and height of a stage's box: height follows the map's side, width its depth."""
    if len(stage.shape) == 3:
        channels, side = stage.shape[0], stage.shape[1]
        height = 0.35 + 0.9 * side / max_side
        width = 0.18 + 0.32 * channels / max_channels
    else:                          # a vector: a tall thin bar
        height, width = 0.55, 0.12
    return width, height


def draw_figure2(preset: Union[str, Preset] = "paper", num_classes: int = 1000,
                 path: Optional[Union[str, os.PathLike]] = None, dpi: int = 100):
    """Figure 2 for ``preset``: both columns, every stage's shape, the crossings in red.

    Returns the ``matplotlib.figure.Figure``. Raises ``ValueError`` naming the problem for an
    unknown preset, a preset whose maps shrink below one pixel, or a bad ``num_classes``.

    Parameters
    ----------
    preset
        a preset's name ('paper', 'mini', 'fashion', 'tiny') or a ``Preset``
    num_classes
        width of fc8 (the paper: 1000)
    path
        if given, the figure is also written there as a PNG, whole (``files.write_atomic``;
        folders are made)
    dpi
        resolution of the PNG
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    p = get_preset(preset)
    stages = figure2_stages(p, num_classes)
    fig = Figure(figsize=(14, 5.4))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.01, 0.02, 0.98, 0.86))
    ax.set_xlim(-0.7, len(stages) - 0.3)
    ax.set_ylim(-2.35, 2.35)
    ax.axis("off")
    _connect(ax, stages, _place_boxes(ax, stages, p.input_size))
    for column, y in enumerate(ROW_Y):
        ax.text(-0.65, 2.2 if column == 0 else -2.2, f"column {column} (GPU {column})",
                fontsize=10.5, ha="left", va="center",
                color="#1f4e79" if column == 0 else "#8a4b08", fontweight="bold")
    fig.suptitle(f"AlexNet preset '{p.name}': Figure 2 from the layer table "
                 f"(shapes per column; red arrows cross between the columns, §3.2)", fontsize=12)
    if path is not None:
        _write_png(fig, os.fspath(path), dpi)
    return fig


#: The rows' heights: column 0 on top, column 1 below.
ROW_Y = (1.15, -1.15)


def _place_boxes(ax, stages: List[Stage], input_size: int) -> list:
    """Draw every stage's box (one per column, or one shared); returns, per stage, the places of
    its boxes as (x, y, half width), where the arrows end."""
    maps = [s for s in stages[1:] if len(s.shape) == 3]
    max_side = max(max(s.shape[1] for s in maps), input_size)
    max_channels = max(s.shape[0] for s in maps)
    places = []
    for x, stage in enumerate(stages):
        rows = [(0.0, SHARED_COLOUR)] if stage.shared else list(zip(ROW_Y, COLUMN_COLOURS))
        places.append([(x, y, _box(ax, x, y, stage, colour, max_side, max_channels) / 2)
                       for y, colour in rows])
    return places


def _box(ax, x: float, y: float, stage: Stage, colour: str, max_side: int,
         max_channels: int) -> float:
    """One stage's box for one column, its name above and its shape below; returns its width."""
    from matplotlib.patches import Rectangle
    w, h = (0.5, 1.3) if stage.name == "input" else _box_size(stage, max_side, max_channels)
    ax.add_patch(Rectangle((x - w / 2, y - h / 2), w, h, facecolor=colour,
                           edgecolor="#333333", linewidth=1.0))
    ax.text(x, y + h / 2 + 0.06, stage.name, ha="center", va="bottom", fontsize=10.5,
            fontweight="bold")
    ax.text(x, y - h / 2 - 0.06, re.sub(r"(?<=\d)x(?=\d)", "\u00d7",
                                        stage.label + "\n" + stage.detail),
            ha="center", va="top", fontsize=8.5, color="#222222", linespacing=1.35)
    return w


def _connect(ax, stages: List[Stage], places: list) -> None:
    """Arrows inside each column, and across (red) into the stages that read both columns."""
    from matplotlib.patches import FancyArrowPatch
    for i in range(1, len(stages)):
        for (x1, y1, w1) in places[i]:
            sources = places[i - 1]
            if not stages[i].crossing and len(sources) == len(places[i]):
                sources = [s for s in sources if s[1] == y1]
            for (x0, y0, w0) in sources:
                crossing = stages[i].crossing and y0 != y1
                ax.add_patch(FancyArrowPatch(
                    (x0 + w0, y0), (x1 - w1, y1), arrowstyle="-|>", mutation_scale=10,
                    color=CROSSING_COLOUR if crossing else "#555555",
                    linewidth=1.4 if crossing else 1.0, shrinkA=0, shrinkB=0,
                    gid="crossing" if crossing else None))


def _write_png(fig, path: str, dpi: int) -> None:
    """The figure as a PNG at ``path``, written whole; ValueError naming the path if it cannot be."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = buffer.getbuffer()
    try:
        write_atomic(path, lambda fh: fh.write(data), len(data), "the figure")
    except WriteError as e:
        raise ValueError(f"figure2: cannot write {path!r}: {e}") from None


def crossing_arrows(fig) -> int:
    """How many arrows of a figure from ``draw_figure2`` cross between the columns."""
    return sum(1 for ax in fig.axes for patch in ax.patches if patch.get_gid() == "crossing")
