"""How AlexNet's weights start: the paper's scheme and two others.

The parameters are drawn on the host with a NumPy Generator, in the fixed order of
``parameter_shapes``, and only then put on their device, so the same seed gives bit-identical
weights on a CPU and on a GPU, whichever placement runs the columns.

Schemes (``fan_in`` = inputs to one neuron, e.g. 5*5*48 for the paper's conv2):

=========  ===========================================  =======================================
scheme     weights                                      biases
=========  ===========================================  =======================================
``paper``  N(0, 0.01^2) everywhere (§5)                 1 in conv2, conv4, conv5, fc6, fc7; else 0
``caffe``  N(0, 0.01^2); fc6, fc7 N(0, 0.005^2)         0.1 in conv2, conv4, conv5, fc6, fc7; else 0
``he``     N(0, 2/fan_in); fc8 N(0, 1/fan_in)           0.1 in conv2, conv4, conv5, fc6, fc7; else 0
=========  ===========================================  =======================================

Why more than one: §5's biases of 1 feed the ReLUs positive inputs from the start, but with
std 0.01 the signal shrinks by a large factor at every layer, so a small net (``mini``, ``tiny``)
barely learns in a few epochs; Caffe reports a flat loss with bias 1 even for the full net and used
0.1 and std 0.005 in fc6/fc7. ``he`` (He et al., 2015) scales each layer's std to its fan-in so
the signal keeps its size through the ReLUs: the default of the small presets, where it trains
reliably. He init assumes inputs of unit size, so those presets also multiply the 0-255 pixels
(minus the mean, standard deviation ~60) by 1/64 before conv1 (``Preset.input_scale``); with raw
pixels conv1 starts ~60x too large and training stayed at chance on the built-in data.
``init="paper"`` is always available.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, Tuple

import numpy

from .presets import Preset

INIT_SCHEMES = ("paper", "caffe", "he")

#: Layers whose biases the paper sets to 1 (§5): the ones whose inputs are ReLU outputs that
#: should start positive. Everything else starts at 0.
POSITIVE_BIAS_LAYERS = ("conv2", "conv4", "conv5", "fc6", "fc7")


def parameter_shapes(preset: Preset, num_classes: int) -> "OrderedDict[str, Tuple[int, ...]]":
    """Name -> shape of every parameter of the two-column AlexNet, read off ``preset.layers``.

    PyTorch layout: conv weights (K, C_in, kh, kw), linear weights (out, in). Column 0's layers,
    then column 1's, then fc8 (one layer, kept with column 0 as in cuda-convnet2's two-GPU
    configuration). conv3, fc6, fc7 and fc8 read both columns, column 0's channels first.
    """
    *column, fc8 = preset.layers(num_classes)
    shapes = OrderedDict()
    for col in (0, 1):
        for layer in column:
            shapes[f"column{col}.{layer.name}.weight"] = layer.weight_shape
            shapes[f"column{col}.{layer.name}.bias"] = (layer.outputs,)
    shapes["fc8.weight"], shapes["fc8.bias"] = fc8.weight_shape, (fc8.outputs,)
    return shapes


def layer_of(name: str) -> str:
    """'column1.conv4.weight' -> 'conv4'; 'fc8.bias' -> 'fc8'."""
    return name.split(".")[-2]


def _weight_std(scheme: str, layer: str, shape: Tuple[int, ...]) -> float:
    if scheme == "paper":
        return 0.01
    if scheme == "caffe":
        return 0.005 if layer in ("fc6", "fc7") else 0.01
    if scheme == "he":
        fan_in = int(numpy.prod(shape[1:]))
        gain = 1.0 if layer == "fc8" else 2.0  # fc8 feeds the softmax, not a ReLU
        return math.sqrt(gain / fan_in)
    raise ValueError(f"unknown init scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")


def _bias_value(scheme: str, layer: str) -> float:
    if layer not in POSITIVE_BIAS_LAYERS:
        return 0.0
    return 1.0 if scheme == "paper" else 0.1


def initial_parameters(preset: Preset, num_classes: int, scheme: str, seed,
                       dtype=numpy.float32) -> Dict[str, numpy.ndarray]:
    """Host (NumPy) arrays for every parameter of the two-column AlexNet (``parameter_shapes``).

    ``seed`` is an int or a ``numpy.random.Generator``.
    """
    return draw_parameters(parameter_shapes(preset, num_classes), scheme, seed, dtype)


def draw_parameters(shapes: Dict[str, Tuple[int, ...]], scheme: str, seed,
                    dtype=numpy.float32) -> Dict[str, numpy.ndarray]:
    """Draw every parameter named in ``shapes`` (names end in '<layer>.weight' / '<layer>.bias').

    Weights are drawn in float64 in the order of ``shapes`` and then cast, so float32 and float64
    models from one seed hold the same values up to rounding.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
    rng = seed if isinstance(seed, numpy.random.Generator) else numpy.random.default_rng(seed)
    params = OrderedDict()
    for name, shape in shapes.items():
        layer = layer_of(name)
        if name.endswith(".weight"):
            w = rng.standard_normal(shape) * _weight_std(scheme, layer, shape)
        else:
            w = numpy.full(shape, _bias_value(scheme, layer))
        params[name] = w.astype(dtype)
    return params


def describe_init(scheme: str) -> str:
    """One line for ``info`` and the per-layer table."""
    return {
        "paper": "paper (§5): weights N(0, 0.01^2); biases 1 in conv2, conv4, conv5, fc6, fc7, else 0",
        "caffe": "caffe: weights N(0, 0.01^2), fc6/fc7 N(0, 0.005^2); biases 0.1 in conv2, conv4, "
                 "conv5, fc6, fc7, else 0",
        "he": "he: weights N(0, 2/fan_in) (fc8: 1/fan_in); biases 0.1 in conv2, conv4, conv5, "
              "fc6, fc7, else 0",
    }[scheme]
