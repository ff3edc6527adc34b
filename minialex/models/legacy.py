"""Reading checkpoints of model classes that minialex no longer has.

``GroupedAlexNet`` (until November 2026) stored the two-column AlexNet folded onto one device:
each layer's two column tensors stacked along the output axis, column 0 first
(``conv1.weight`` (96, 3, 11, 11), ..., ``fc7.bias`` (4096,), ``fc8.*`` as today). Its
checkpoints are converted on read into today's two-column names (``column0.conv1.weight``
(48, 3, 11, 11), ...): ``minialex.load`` rebuilds them as ``AlexNet``, weights and momentum
alike, and computes the same function (the placement in placement.py runs the columns together
on one device, as the grouped class did).
"""

from __future__ import annotations

from typing import Dict

import numpy

#: Old class name -> the class that reads its checkpoints now.
RENAMED_CLASSES = {"GroupedAlexNet": "AlexNet"}

_COLUMN_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")


def grouped_to_two_column(state: Dict[str, numpy.ndarray]) -> Dict[str, numpy.ndarray]:
    """{'conv1.weight': (2K, ...), ...} -> {'column0.conv1.weight': (K, ...), ...}: each layer
    split along the output axis, the first half to column 0; fc8 unchanged."""
    out = {}
    for col in (0, 1):
        for layer in _COLUMN_LAYERS:
            for kind in ("weight", "bias"):
                a = state[f"{layer}.{kind}"]
                half = a.shape[0] // 2
                out[f"column{col}.{layer}.{kind}"] = numpy.ascontiguousarray(
                    a[:half] if col == 0 else a[half:])
    out["fc8.weight"], out["fc8.bias"] = state["fc8.weight"], state["fc8.bias"]
    return out


def upgrade_state(model_class: str, state: Dict[str, numpy.ndarray]) -> Dict[str, numpy.ndarray]:
    """Parameter (or momentum) arrays of a checkpoint of ``model_class``, in today's names."""
    return grouped_to_two_column(state) if model_class == "GroupedAlexNet" else state
