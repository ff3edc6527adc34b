"""The one-GPU network that §3.2 compares the two-column AlexNet against.

§3.2: the two-GPU scheme "reduces our top-1 and top-5 error rates by 1.7% and 1.2%, respectively,
as compared with a net with half as many kernels in each convolutional layer trained on one GPU".
The English paper adds in a footnote (docs/paper.md, §3.2; some translations leave it out): the one-GPU net
keeps *the same number of kernels as the two-GPU net in the last convolutional layer* (and the
same fully connected layers after it), because most parameters are in fc6 and halving conv5 and
the fc layers would have made it far smaller; the comparison is therefore biased in favour of the
one-GPU net.

So ``OneColumnAlexNet`` is one column of AlexNet on one device, built as the footnote says:

============  ===========================  =====================================
layer         two-column AlexNet (total)   OneColumnAlexNet (paper preset)
============  ===========================  =====================================
conv1..conv4  96, 256, 384, 384            48, 128, 192, 192   (half)
conv5         256                          256                 (not halved)
fc6, fc7      4096, 4096                   4096, 4096          (not halved)
fc8           classes                      classes
============  ===========================  =====================================

With a single column there are no crossings, and conv3 reads all of conv2's (128) maps. At the
paper's size it has 59,798,312 parameters against the two-column net's 60,965,224 (``count_parameters``).
Pass ``halve_all=True`` for the literal reading (every layer half as wide), a much smaller net.
Its forward is written out here, layer after layer: a different network from AlexNet's, so
it is not one of AlexNet's placements.
"""

from __future__ import annotations

from typing import Dict, Optional, Union

import numpy

from .. import nn
from ..autograd import Tensor, to_device
from ..functional.dropout import draw_keep_mask
from ..backend import as_device, default_devices
from .common import (PresetModel, activations_in_test_mode, assign_parameters, network_input,
                     check_without, dropout, dropout_generator, normalise, pool, split_seed,
                     unit)
from .init import INIT_SCHEMES, draw_parameters
from .presets import DROPOUT_P, Preset, get_preset


class OneColumnAlexNet(PresetModel):
    """One column of AlexNet on one device, as in §3.2's comparison (see the module docstring).

    Arguments as ``AlexNet``'s (``without`` too), with one ``device``; ``halve_all`` also halves
    conv5 and the fc layers. Parameters: ``conv1.weight`` ... ``fc8.bias``.
    """

    def __init__(self, num_classes: int = 1000, preset: Union[str, Preset] = "paper",
                 device=None, seed: Optional[int] = None, dtype=numpy.float32,
                 init: Optional[str] = None, dropout_mode: str = "paper", halve_all: bool = False,
                 without=()):
        super().__init__()
        p = get_preset(preset)
        p.check()
        self.init = init or p.init
        if self.init not in INIT_SCHEMES:
            raise ValueError(f"OneColumnAlexNet: unknown init {self.init!r}; choose one of "
                             f"{', '.join(INIT_SCHEMES)}")
        self._preset, self.num_classes, self.seed = p, int(num_classes), seed
        self.dtype, self.dropout_mode, self.halve_all = numpy.dtype(dtype), dropout_mode, bool(halve_all)
        self.device = as_device(device if device is not None else default_devices()[0])
        self.without = check_without(without)
        c1, c2, c3, c4, c5 = p.channels
        w5, f = (c5, p.fc) if halve_all else (2 * c5, 2 * p.fc)   # the footnote: full width
        side = p.spatial_sizes()["pool5"]
        kw = dict(device=self.device, dtype=self.dtype, init=False)
        geometry = {layer.name: layer for layer in p.conv_layers()}

        def conv(name, cin, cout):
            g = geometry[name]
            return nn.Conv2d(cin, cout, g.kernel, stride=g.stride, padding=g.padding, **kw)

        self.conv1 = conv("conv1", geometry["conv1"].inputs, c1)   # 3, or 1 if grey
        self.conv2 = conv("conv2", c1, c2)
        self.conv3 = conv("conv3", c2, c3)     # one column: no crossing, conv2's own maps only
        self.conv4 = conv("conv4", c3, c4)
        self.conv5 = conv("conv5", c4, w5)
        self.fc6 = nn.Linear(w5 * side * side, f, **kw)
        self.fc7 = nn.Linear(f, f, **kw)
        self.fc8 = nn.Linear(f, self.num_classes, **kw)
        init_seed, drop_seed, _ = split_seed(seed, 3)
        shapes = {name: tuple(prm.shape) for name, prm in self.named_parameters()}
        assign_parameters(self, draw_parameters(shapes, self.init,
                                                numpy.random.default_rng(init_seed), self.dtype))
        self.dropout_generator = dropout_generator(drop_seed, self.device)
        self.dropout_masks: Optional[Dict[str, object]] = None

    # facts shared with AlexNet: PresetModel's, and these
    @property
    def devices(self):
        return (self.device, self.device)

    @property
    def dropout_generators(self):
        """The one dropout generator, as a tuple like AlexNet's (the trainer saves their states)."""
        return (self.dropout_generator,)

    @property
    def config(self) -> dict:
        return dict(super().config, halve_all=self.halve_all)

    def to(self, device) -> "OneColumnAlexNet":
        self.device = as_device(device)
        super().to(self.device)
        self.dropout_generator = dropout_generator(split_seed(self.seed, 3)[1], self.device)
        return self

    def set_dropout_masks(self, masks) -> None:
        """Fixed keep-masks {'fc6': (N, width), 'fc7': (N, width)}, or None for random ones."""
        if masks is not None and ("fc6" not in masks or "fc7" not in masks):
            raise ValueError("OneColumnAlexNet.set_dropout_masks: give masks for 'fc6' and 'fc7'")
        self.dropout_masks = masks

    def _dropout(self, x: Tensor, layer: str) -> Tensor:
        def keep_mask():              # the fixed mask, or a draw from the one generator
            if self.dropout_masks is not None:
                return self.device.put(self.dropout_masks[layer])
            return draw_keep_mask(x.shape, DROPOUT_P, self.dropout_generator, x.data)
        return dropout(self, x, keep_mask)

    def forward(self, images, activations: Optional[dict] = None) -> Tensor:
        """Logits (N, num_classes). With a dict ``activations``, stores each stage's output
        ('conv1', 'pool1', ..., 'fc7', 'fc8'), named as in ``AlexNet.forward`` without columns."""
        images = network_input(self, images)        # grey and input_scale (presets.py)

        def keep(stage, h):
            if activations is not None:
                activations[stage] = h
            return h

        x = to_device(images, self.device, label="image -> device")
        x = keep("conv1", unit(self, self.conv1(x)))
        x = keep("pool1", pool(self, normalise(self, x)))
        x = keep("conv2", unit(self, self.conv2(x)))
        x = keep("pool2", pool(self, normalise(self, x)))
        x = keep("conv3", unit(self, self.conv3(x)))
        x = keep("conv4", unit(self, self.conv4(x)))
        x = keep("conv5", unit(self, self.conv5(x)))
        x = keep("pool5", pool(self, x))
        x = x.reshape(x.shape[0], -1)
        x = self._dropout(keep("fc6", unit(self, self.fc6(x))), "fc6")
        x = self._dropout(keep("fc7", unit(self, self.fc7(x))), "fc7")
        return keep("fc8", self.fc8(x))

    def last_hidden(self, images) -> Tensor:
        """fc7 after ReLU, in test mode and without a graph (Figure 4's feature vectors)."""
        return activations_in_test_mode(self, images)["fc7"]
