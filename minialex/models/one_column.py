"""The one-GPU network that §3.2 compares the two-column AlexNet against.

§3.2: the two-GPU scheme "reduces our top-1 and top-5 error rates by 1.7% and 1.2%, respectively,
as compared with a net with half as many kernels in each convolutional layer trained on one GPU".
The English paper adds in a footnote (not in the Chinese translation in shared/): the one-GPU net
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
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional, Union

import numpy

from .alexnet import assign_parameters, dropout_generator, split_seed
from .grouped import SingleDeviceAlexNet
from .init import draw_parameters
from .presets import Preset, get_preset


class OneColumnAlexNet(SingleDeviceAlexNet):
    """One column of AlexNet on one device, as in §3.2's comparison (see the module docstring).

    Parameters as ``GroupedAlexNet``; ``halve_all`` also halves conv5 and the fc layers.
    """

    def __init__(self, num_classes: int = 1000, preset: Union[str, Preset] = "paper",
                 device=None, seed: Optional[int] = None, dtype=numpy.float32,
                 init: Optional[str] = None, dropout_mode: str = "paper", halve_all: bool = False):
        p = get_preset(preset)
        c1, c2, c3, c4, c5 = p.channels
        if halve_all:
            widths = (c1, c2, c3, c4, c5, p.fc, p.fc)
        else:  # the footnote: conv5 and the fc layers keep the two-column net's full width
            widths = (c1, c2, c3, c4, 2 * c5, 2 * p.fc, 2 * p.fc)
        super().__init__(num_classes, p, device, dtype, init, dropout_mode, seed, widths, groups=1)
        self.halve_all = bool(halve_all)
        init_seed, drop_seed, _ = split_seed(seed, 3)
        shapes = OrderedDict((name, tuple(prm.shape)) for name, prm in self.named_parameters())
        assign_parameters(self, draw_parameters(shapes, self.init,
                                                numpy.random.default_rng(init_seed), self.dtype))
        self.dropout_generator = dropout_generator(drop_seed, self.device)

    @property
    def config(self) -> dict:
        cfg = super().config
        cfg["halve_all"] = self.halve_all
        return cfg

    def set_dropout_masks(self, masks) -> None:
        """Fixed keep-masks {'fc6': (N, width), 'fc7': (N, width)}, or None for random ones."""
        if masks is not None and ("fc6" not in masks or "fc7" not in masks):
            raise ValueError("OneColumnAlexNet.set_dropout_masks: give masks for 'fc6' and 'fc7'")
        self.dropout_masks = masks
