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
from .presets import (DROPOUT_P, LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, PAPER_INPUT_SIZE,
                      POOL_SIZE, POOL_STRIDE, Preset, get_preset)

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
    """The rows of the per-layer table (see ``table``), read off the preset's layer table."""
    p = get_preset(preset)
    p.check()
    shapes = parameter_shapes(p, num_classes)
    sides = p.spatial_sizes()
    pool = f"max {POOL_SIZE}x{POOL_SIZE}, s{POOL_STRIDE}"
    after = {"conv1": "relu1, lrn1, pool1", "conv2": "relu2, lrn2, pool2", "conv5": "relu5, pool5"}
    rows = []
    for layer in p.layers(num_classes):
        params = int(sum(int(numpy.prod(s)) for n, s in shapes.items()
                         if n.split(".")[-2] == layer.name))
        reads = ("BOTH columns (crossing)" if layer.crossing else
                 "the image (a copy per column)" if layer.name == "conv1" else "own column")
        if layer.kernel:
            k, side = layer.kernel, sides[layer.name]
            rows.append(LayerRow(layer.name, f"{layer.outputs} / {2 * layer.outputs}",
                                 f"{k}x{k}x{layer.inputs}, s{layer.stride}, p{layer.padding}",
                                 reads, (layer.outputs, side, side), params))
            if layer.name in after:
                side = sides["pool" + layer.name[-1]]
                rows.append(LayerRow(after[layer.name], "", pool, "own column",
                                     (layer.outputs, side, side), 0))
        else:
            kernels = (f"{layer.outputs}" if layer.name == "fc8"
                       else f"{layer.outputs} / {2 * layer.outputs}")
            rows.append(LayerRow(layer.name, kernels, f"{layer.inputs} ->", reads,
                                 (layer.outputs,), params))
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
             + (", averaged over the three channels before conv1 (grey: one input channel)"
                if p.grey else "")
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
