"""The per-layer table of an AlexNet preset: shapes, parameters and crossings, by arithmetic alone.

``describe(preset, num_classes)`` returns one ``LayerRow`` per stage (no arrays are made, so the
paper preset's table costs nothing); ``table(...)`` formats it for ``python cli.py info``. The
numbers match the model: a test builds each preset and compares.
"""

from __future__ import annotations

import dataclasses
from typing import List, Optional, Tuple, Union

import numpy

from .init import describe_init, parameter_shapes
from .presets import (CONV2_KERNEL, CONV2_PADDING, CONV345_KERNEL, CONV345_PADDING, DROPOUT_P,
                      LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, PAPER_INPUT_SIZE, POOL_SIZE,
                      POOL_STRIDE, Preset, get_preset)

#: Where fc8 lives (the paper does not say; cuda-convnet2's two-GPU config puts it on GPU 0).
FC8_HOME = "column 0's device"


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One stage of the network as the table shows it.

    ``output`` is the shape of one column's output for one image, (C, H, W) or (features,);
    fc8's is the whole logits vector. ``params`` counts both columns together.
    """

    layer: str
    kernels: str          # 'per column / total', e.g. '48 / 96'
    geometry: str         # kernel, stride, padding
    reads: str            # 'own column', 'both columns', ...
    output: Tuple[int, ...]
    params: int

    @property
    def neurons(self) -> int:
        """Neurons in this layer's output over both columns (fc8: the classes)."""
        n = int(numpy.prod(self.output))
        return n if self.layer == "fc8" else 2 * n


def count_parameters(preset, num_classes: int = 1000) -> int:
    """Number of learned values (weights and biases): 60,965,224 for ``paper`` at 1000 classes."""
    shapes = parameter_shapes(get_preset(preset), num_classes)
    return int(sum(int(numpy.prod(s)) for s in shapes.values()))


def describe(preset: Union[str, Preset] = "paper", num_classes: int = 1000) -> List[LayerRow]:
    """The rows of the per-layer table (see ``table``)."""
    p = get_preset(preset)
    p.check()
    shapes = parameter_shapes(p, num_classes)

    def params(layer):
        return int(sum(int(numpy.prod(s)) for n, s in shapes.items()
                       if n.split(".")[-2] == layer))

    s = p.spatial_sizes()
    c1, c2, c3, c4, c5 = p.channels
    k1 = p.conv1_kernel
    pool = f"max {POOL_SIZE}x{POOL_SIZE}, s{POOL_STRIDE}"
    rows = [
        LayerRow("conv1", f"{c1} / {2 * c1}",
                 f"{k1}x{k1}x3, s{p.conv1_stride}, p{p.conv1_padding}",
                 "the image (a copy per column)", (c1, s["conv1"], s["conv1"]), params("conv1")),
        LayerRow("relu1, lrn1, pool1", "", pool, "own column", (c1, s["pool1"], s["pool1"]), 0),
        LayerRow("conv2", f"{c2} / {2 * c2}",
                 f"{CONV2_KERNEL}x{CONV2_KERNEL}x{c1}, s1, p{CONV2_PADDING}",
                 "own column", (c2, s["conv2"], s["conv2"]), params("conv2")),
        LayerRow("relu2, lrn2, pool2", "", pool, "own column", (c2, s["pool2"], s["pool2"]), 0),
        LayerRow("conv3", f"{c3} / {2 * c3}",
                 f"{CONV345_KERNEL}x{CONV345_KERNEL}x{2 * c2}, s1, p{CONV345_PADDING}",
                 "BOTH columns (crossing)", (c3, s["conv3"], s["conv3"]), params("conv3")),
        LayerRow("conv4", f"{c4} / {2 * c4}",
                 f"{CONV345_KERNEL}x{CONV345_KERNEL}x{c3}, s1, p{CONV345_PADDING}",
                 "own column", (c4, s["conv4"], s["conv4"]), params("conv4")),
        LayerRow("conv5", f"{c5} / {2 * c5}",
                 f"{CONV345_KERNEL}x{CONV345_KERNEL}x{c4}, s1, p{CONV345_PADDING}",
                 "own column", (c5, s["conv5"], s["conv5"]), params("conv5")),
        LayerRow("relu5, pool5", "", pool, "own column", (c5, s["pool5"], s["pool5"]), 0),
        LayerRow("fc6", f"{p.fc} / {2 * p.fc}", f"{2 * p.pool5_features} ->",
                 "BOTH columns (crossing)", (p.fc,), params("fc6")),
        LayerRow("fc7", f"{p.fc} / {2 * p.fc}", f"{2 * p.fc} ->",
                 "BOTH columns (crossing)", (p.fc,), params("fc7")),
        LayerRow("fc8", f"{num_classes}", f"{2 * p.fc} ->",
                 "BOTH columns (crossing)", (num_classes,), params("fc8")),
    ]
    return rows


def table(preset: Union[str, Preset] = "paper", num_classes: int = 1000,
          init: Optional[str] = None) -> str:
    """The per-layer table as text, with the input size, init scheme and totals."""
    p = get_preset(preset)
    rows = describe(p, num_classes)
    n = p.input_size
    lines = [f"AlexNet preset '{p.name}': {p.description}" if p.description else
             f"AlexNet preset '{p.name}'",
             f"input: {n}x{n}x3 = {3 * n * n:,} values"
             + (" (227, not the paper's 224: (227-11)/4+1 = 55 with no padding, as in Caffe)"
                if p.input_size == PAPER_INPUT_SIZE and p.conv1_kernel == 11 else "")
             + (f", multiplied by {p.input_scale:g} before conv1 (pixels to unit size for He init)"
                if p.input_scale != 1.0 else ""),
             f"init: {describe_init(init or p.init)}",
             f"LRN: size {LRN_SIZE}, alpha {LRN_ALPHA:g}, beta {LRN_BETA:g}, k {LRN_K:g} "
             "(the paper's form: k + alpha * sum); dropout "
             f"{DROPOUT_P:g} after fc6 and fc7; ReLU after every layer but fc8",
             f"the paper's placement: column 0 on GPU 0, column 1 on GPU 1; fc8 (one layer) and "
             f"the logits on {FC8_HOME} (as in cuda-convnet2)",
             ""]
    head = (f"{'layer':<19} {'kernels':>11}  {'kernel, stride, pad':<20} {'reads':<29} "
            f"{'output per column':>17} {'params':>11}")
    lines += [head, "-" * len(head)]
    for r in rows:
        out = "x".join(str(d) for d in r.output)
        if r.layer == "fc8":
            out += " (all)"
        lines.append(f"{r.layer:<19} {r.kernels:>11}  {r.geometry:<20} {r.reads:<29} "
                     f"{out:>17} {r.params:>11,}")
    total = sum(r.params for r in rows)
    lines += ["-" * len(head), f"{'total parameters':<19} {total:>{len(head) - 20},}",
              "neurons per layer (both columns): "
              + "-".join(f"{r.neurons:,}" for r in rows if r.params)]
    return "\n".join(lines)
