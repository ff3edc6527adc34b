"""AlexNet on one device, the two columns folded into grouped convolutions (Caffe's ``group: 2``).

The two-column net (alexnet.py) and this one are the same function with the same weights:

============  =====================================  =========================================
layer         two columns                            one device, grouped
============  =====================================  =========================================
conv1         48 kernels per column, same input      96 kernels (column 0's first)
conv2/4/5     each column reads its own half         ``groups=2``: group g reads half g
conv3         both columns read both halves          one full conv, 384 kernels
fc6/fc7/fc8   both columns read both halves          one full layer (column 0's rows first)
LRN           over each column's own channels        over each half separately (see below)
============  =====================================  =========================================

A weight of the grouped form is the two columns' weights stacked along the output axis, column 0
first; because every crossing concatenates column 0's channels first, the inputs line up too.
``two_column_to_grouped`` and ``grouped_to_two_column`` convert state dicts both ways.

LRN (§3.3) sums over neighbouring channels of *one column* (48 or 128 of them). Run over all 96
channels at once, channels 47 and 48 (the two columns' edges) would see each other and the
outputs would differ slightly, so the grouped form normalises each half on its own. (Caffe's
grouped AlexNet does not; its LRN runs across the 96 channels.)
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Optional, Union

import numpy

from .. import functional as F
from .. import nn
from ..autograd import Tensor, to_device
from ..backend import Device, as_device, default_devices
from .alexnet import (DROPOUT_SITES, AlexNet, activations_in_test_mode, assign_parameters,
                      check_images, dropout_generator, lrn_in_groups, max_pool, split_seed)
from .init import COLUMN_LAYERS, INIT_SCHEMES, initial_parameters
from .presets import (CONV2_KERNEL, CONV2_PADDING, CONV345_KERNEL, CONV345_PADDING, DROPOUT_P,
                      Preset, get_preset)


def two_column_to_grouped(state: Dict[str, numpy.ndarray]) -> "OrderedDict[str, numpy.ndarray]":
    """{'column0.conv1.weight': ..., 'column1.conv1.weight': ...} -> {'conv1.weight': ...}:
    each layer's two column tensors stacked along the output axis (column 0 first)."""
    out = OrderedDict()
    for layer in COLUMN_LAYERS:
        for kind in ("weight", "bias"):
            a, b = state[f"column0.{layer}.{kind}"], state[f"column1.{layer}.{kind}"]
            out[f"{layer}.{kind}"] = numpy.concatenate([a, b], axis=0)
    out["fc8.weight"], out["fc8.bias"] = state["fc8.weight"], state["fc8.bias"]
    return out


def grouped_to_two_column(state: Dict[str, numpy.ndarray]) -> "OrderedDict[str, numpy.ndarray]":
    """The inverse of ``two_column_to_grouped``: split each layer along the output axis."""
    out = OrderedDict()
    for col in (0, 1):
        for layer in COLUMN_LAYERS:
            for kind in ("weight", "bias"):
                a = state[f"{layer}.{kind}"]
                half = a.shape[0] // 2
                out[f"column{col}.{layer}.{kind}"] = numpy.ascontiguousarray(
                    a[:half] if col == 0 else a[half:])
    out["fc8.weight"], out["fc8.bias"] = state["fc8.weight"], state["fc8.bias"]
    return out


class SingleDeviceAlexNet(nn.Module):
    """AlexNet's layer sequence on one device, with per-layer widths and conv2/4/5 ``groups``.

    The base of ``GroupedAlexNet`` (groups=2, the two-column net folded) and ``OneColumnAlexNet``
    (groups=1, the §3.2 baseline). ``widths`` = kernels in conv1..conv5 and neurons in fc6, fc7.
    """

    def __init__(self, num_classes, preset, device, dtype, init, dropout_mode, seed, widths, groups):
        super().__init__()
        p = get_preset(preset)
        p.check()
        init = init or p.init
        if init not in INIT_SCHEMES:
            raise ValueError(f"{type(self).__name__}: unknown init {init!r}; choose one of "
                             f"{', '.join(INIT_SCHEMES)}")
        device = as_device(device if device is not None else default_devices()[0])
        self._preset, self.device, self.num_classes = p, device, int(num_classes)
        self.dtype, self.init, self.dropout_mode, self.seed = numpy.dtype(dtype), init, dropout_mode, seed
        self.groups = groups
        w1, w2, w3, w4, w5, w6, w7 = widths
        side = p.spatial_sizes()["pool5"]
        kw = dict(device=device, dtype=self.dtype)
        self.conv1 = nn.Conv2d(3, w1, p.conv1_kernel, stride=p.conv1_stride,
                               padding=p.conv1_padding, **kw)
        self.conv2 = nn.Conv2d(w1, w2, CONV2_KERNEL, padding=CONV2_PADDING, groups=groups, **kw)
        self.conv3 = nn.Conv2d(w2, w3, CONV345_KERNEL, padding=CONV345_PADDING, **kw)
        self.conv4 = nn.Conv2d(w3, w4, CONV345_KERNEL, padding=CONV345_PADDING, groups=groups, **kw)
        self.conv5 = nn.Conv2d(w4, w5, CONV345_KERNEL, padding=CONV345_PADDING, groups=groups, **kw)
        self.fc6 = nn.Linear(w5 * side * side, w6, **kw)
        self.fc7 = nn.Linear(w6, w7, **kw)
        self.fc8 = nn.Linear(w7, self.num_classes, **kw)
        self.dropout_masks = None

    # facts shared with AlexNet
    preset = AlexNet.preset
    preset_spec = AlexNet.preset_spec
    input_size = AlexNet.input_size

    @property
    def devices(self):
        return (self.device, self.device)

    @property
    def output_device(self) -> Device:
        return self.device

    @property
    def config(self) -> dict:
        return AlexNet.config.fget(self)

    def to(self, device) -> "SingleDeviceAlexNet":
        device = as_device(device)
        super().to(device)
        self.device = device
        self.dropout_generator = dropout_generator(split_seed(self.seed, 3)[1], device)
        return self

    @property
    def dropout_generators(self):
        """The one dropout generator, as a tuple like AlexNet's (the trainer saves their states)."""
        return (self.dropout_generator,)

    def set_dropout_masks(self, masks: Optional[Dict[str, object]]) -> None:
        """Fixed keep-masks: keys 'fc6' and 'fc7' with shape (N, width), or the two-column form's
        keys ('column0.fc6', 'column1.fc6', ...), which are joined column 0 first."""
        if masks is not None and "fc6" not in masks:
            missing = [s for s in DROPOUT_SITES if s not in masks]
            if missing:
                raise ValueError(f"{type(self).__name__}.set_dropout_masks: missing masks for "
                                 f"{missing} (or give 'fc6' and 'fc7')")
            masks = {layer: numpy.concatenate([numpy.asarray(masks[f"column0.{layer}"]),
                                               numpy.asarray(masks[f"column1.{layer}"])], axis=1)
                     for layer in ("fc6", "fc7")}
        self.dropout_masks = masks

    def _dropout(self, x: Tensor, layer: str) -> Tensor:
        mask = None
        if self.dropout_masks is not None and self.training:
            mask = self.device.put(self.dropout_masks[layer])
        return F.dropout(x, p=DROPOUT_P, training=self.training, mode=self.dropout_mode,
                         mask=mask, generator=self.dropout_generator)

    def forward(self, images, activations: Optional[dict] = None) -> Tensor:
        """Logits (N, num_classes). With a dict ``activations``, stores each stage's output
        ('conv1', 'pool1', ..., 'fc7', 'fc8'), named as in ``AlexNet.forward`` without columns."""
        images = check_images(self, images)
        acts = activations if activations is not None else {}

        def keep(stage, h):
            if activations is not None:
                acts[stage] = h
            return h

        if self._preset.input_scale != 1.0:  # small presets: pixels to unit size (presets.py)
            images = images * self._preset.input_scale
        x = to_device(images, self.device, label="image -> device")
        x = keep("conv1", F.relu(self.conv1(x)))
        x = keep("pool1", max_pool(lrn_in_groups(x, self.groups)))
        x = keep("conv2", F.relu(self.conv2(x)))
        x = keep("pool2", max_pool(lrn_in_groups(x, self.groups)))
        x = keep("conv3", F.relu(self.conv3(x)))
        x = keep("conv4", F.relu(self.conv4(x)))
        x = keep("conv5", F.relu(self.conv5(x)))
        x = keep("pool5", max_pool(x))
        x = x.reshape(x.shape[0], -1)
        x = self._dropout(keep("fc6", F.relu(self.fc6(x))), "fc6")
        x = self._dropout(keep("fc7", F.relu(self.fc7(x))), "fc7")
        return keep("fc8", self.fc8(x))

    def last_hidden(self, images) -> Tensor:
        """fc7 after ReLU, in test mode and without a graph (Figure 4's feature vectors)."""
        return activations_in_test_mode(self, images)["fc7"]


class GroupedAlexNet(SingleDeviceAlexNet):
    """The two-column AlexNet folded onto one ``device``: conv2, conv4, conv5 with groups=2.

    Same arguments as ``AlexNet`` but one device. The same seed gives the same weights as the
    two-column form (they are drawn as two columns and stacked), so both compute the same logits.
    Parameters: ``conv1.weight`` (96, 3, 11, 11), ``conv2.weight`` (256, 48, 5, 5), ...
    """

    def __init__(self, num_classes: int = 1000, preset: Union[str, Preset] = "paper",
                 device=None, seed: Optional[int] = None, dtype=numpy.float32,
                 init: Optional[str] = None, dropout_mode: str = "paper"):
        p = get_preset(preset)
        c1, c2, c3, c4, c5 = p.channels
        widths = (2 * c1, 2 * c2, 2 * c3, 2 * c4, 2 * c5, 2 * p.fc, 2 * p.fc)
        super().__init__(num_classes, p, device, dtype, init, dropout_mode, seed, widths, groups=2)
        init_seed, drop_seed, _ = split_seed(seed, 3)
        columns = initial_parameters(p, self.num_classes, self.init,
                                     numpy.random.default_rng(init_seed), self.dtype)
        assign_parameters(self, two_column_to_grouped(columns))
        self.dropout_generator = dropout_generator(drop_seed, self.device)

    @classmethod
    def from_two_column(cls, model: AlexNet, device=None) -> "GroupedAlexNet":
        """A grouped copy of a two-column model (on ``device``, default column 0's device)."""
        cfg = model.config
        out = cls(cfg["num_classes"], model.preset_spec, device or model.devices[0],
                  seed=model.seed, dtype=model.dtype, init=model.init, dropout_mode=model.dropout_mode)
        assign_parameters(out, two_column_to_grouped(model.state_dict()))
        return out

    def to_two_column(self, devices=None) -> AlexNet:
        """A two-column copy of this model (on ``devices``, default both on this device)."""
        out = AlexNet(self.num_classes, self._preset, devices or (self.device, self.device),
                      seed=self.seed, dtype=self.dtype, init=self.init,
                      dropout_mode=self.dropout_mode)
        assign_parameters(out, grouped_to_two_column(self.state_dict()))
        return out
