"""How AlexNet's two columns are executed: the verbs of the one forward pass in alexnet.py.

``AlexNet.forward`` states the network once: conv1, LRN, pool, conv2, ..., the four crossings,
fc8. What a verb does depends on where the columns live:

``ColumnByColumn`` (the paper's placement, columns on two devices): a stage's output is a pair
(column 0's tensor, column 1's tensor), each on its column's device, and each layer runs once per
column with that column's parameters. A crossing copies each column's output to the other device
with ``minialex.to_device`` (logged in ``minialex.transfer_log()``) and concatenates the two,
**column 0's channels first**, so every weight sees its inputs in the same order on either device.

``ColumnsTogether`` (both columns on one device, where the copies would be no-ops): a stage's
output is ONE tensor holding both columns' channels side by side (column 0's first), and the two
columns run as one set of larger operations over the *same* parameters:

============  ===========================================  ====================================
layer         column by column                             together
============  ===========================================  ====================================
conv1         each column unfolds the image and applies    one conv, the image unfolded once,
              its kernels                                  both columns' kernels stacked
conv2/4/5     each column reads its own half               ``groups=2``: group g reads half g
conv3         each column reads both columns' pool2        one conv over both halves
fc6/fc7       each column reads both columns               each column's GEMM on the same input,
                                                           outputs side by side (no weight copy)
LRN           over each column's own channels              the same: ``lrn_in_groups(h, 2)``
dropout       a mask per column from its own generator     the same two masks, side by side
============  ===========================================  ====================================

The conv weights are concatenated from the two columns' parameters on every call (small: the
paper's conv2 is 1.2 MB), so gradients flow back into each column's own parameters; fc6's and
fc7's (151 MB for fc6) are not copied. The ReLU runs inside the conv (``F.conv2d_relu``). Both
placements compute the same function (tested in float64 on 'cpu:0'/'cpu:1' against 'cpu').
Seen on one device, a column pair is a *grouped convolution*: lesson 10 shows it.
"""

from __future__ import annotations

from .. import functional as F
from ..autograd import Tensor, concat, to_device
from .common import dropout, normalise, pool, unit


class ColumnByColumn:
    """Each column on its own device; a stage's output is a pair (column 0, column 1)."""

    def __init__(self, model):
        self.model = model
        self.columns = (model.column0, model.column1)
        self.devices = model.devices

    def enter(self, images: Tensor):
        return tuple(to_device(images, d, label=f"image -> column{c}")
                     for c, d in enumerate(self.devices))

    def conv(self, h, layer: str):
        return tuple(unit(self.model, getattr(col, layer)(x)) for col, x in zip(self.columns, h))

    def lrn(self, h):
        return tuple(normalise(self.model, x) for x in h)

    def pool(self, h):
        return tuple(pool(self.model, x) for x in h)

    def flatten(self, h):
        return tuple(x.reshape(x.shape[0], -1) for x in h)

    def cross(self, h, layer: str):
        """Give each device both columns' outputs, column 0's first: the input of ``layer``."""
        (a0, a1), (d0, d1) = h, self.devices
        return (concat([a0, to_device(a1, d0, label=f"{layer} input: column1 -> column0")], 1),
                concat([to_device(a0, d1, label=f"{layer} input: column0 -> column1"), a1], 1))

    fc = conv     # a column's fc6/fc7 with its ReLU: the same call as a conv layer

    def dropout(self, h, layer: str):
        return tuple(self.model.dropout_column(x, c, layer) for c, x in enumerate(h))

    def join(self, h) -> Tensor:
        """Crossing 4: fc8 (on device 0) reads both columns' fc7."""
        h0, h1 = h
        return concat([h0, to_device(h1, self.devices[0],
                                     label="fc8 input: column1 -> column0")], axis=1)

    def halves(self, h):
        return h


class ColumnsTogether:
    """Both columns on one device; a stage's output is one tensor, column 0's channels first."""

    def __init__(self, model):
        self.model = model
        self.shapes = model.layer_shapes

    def enter(self, images: Tensor) -> Tensor:
        return to_device(images, self.model.devices[0], label="image -> column0")

    def _both(self, layer: str):
        return getattr(self.model.column0, layer), getattr(self.model.column1, layer)

    def conv(self, h: Tensor, layer: str) -> Tensor:
        a, b = self._both(layer)
        w, bias = concat([a.weight, b.weight], axis=0), concat([a.bias, b.bias], axis=0)
        s = self.shapes[layer]
        # A layer that reads its own column sees twice its per-column inputs here: two groups.
        # conv1 (the shared image) and conv3 (a crossing) read every channel: one group.
        groups = 2 if h.shape[1] == 2 * s.inputs else 1
        return unit(self.model, h, conv=dict(weight=w, bias=bias, stride=s.stride,
                                             padding=s.padding, groups=groups))

    def lrn(self, h: Tensor) -> Tensor:
        return normalise(self.model, h, 2)

    def pool(self, h: Tensor) -> Tensor:
        return pool(self.model, h)

    def flatten(self, h: Tensor) -> Tensor:
        return h.reshape(h.shape[0], -1)      # channel-major: column 0's features first

    def cross(self, h: Tensor, layer: str) -> Tensor:
        return h                              # both columns are already here, column 0 first

    def fc(self, h: Tensor, layer: str) -> Tensor:
        a, b = self._both(layer)
        return unit(self.model, concat([F.linear(h, a.weight, a.bias),
                                        F.linear(h, b.weight, b.bias)], 1))

    def dropout(self, h: Tensor, layer: str) -> Tensor:
        def both_columns_masks():     # each column's own draw, column 0's units first
            n, half = h.shape[0], h.shape[1] // 2
            with h.device:
                return h.xp.concatenate([h.xp.asarray(self.model.keep_mask(c, layer, (n, half),
                                                                           h.data))
                                         for c in (0, 1)], axis=1)
        return dropout(self.model, h, both_columns_masks)

    def join(self, h: Tensor) -> Tensor:
        return h

    def halves(self, h: Tensor):
        half = h.shape[1] // 2
        return h[:, :half], h[:, half:]
