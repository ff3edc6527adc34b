"""AlexNet as the paper drew it (§3.2, §3.5, Figure 2): two columns on two devices.

Each column holds half of every layer's kernels and lives on its own device. The columns work
alone except at four places, where one column's output is copied to the other's device with
``minialex.to_device`` (the only way across, logged in ``minialex.transfer_log()``):

    image ──copy──> column 0 (device 0)              image ──copy──> column 1 (device 1)
    conv1 → ReLU → LRN → pool                          conv1 → ReLU → LRN → pool
    conv2 → ReLU → LRN → pool                          conv2 → ReLU → LRN → pool
            ╲_________ crossing 1: conv3 reads both columns' pool2 _________╱
    conv3 → ReLU → conv4 → ReLU                        conv3 → ReLU → conv4 → ReLU
    conv5 → ReLU → pool                                conv5 → ReLU → pool
            ╲_________ crossing 2: fc6 reads both columns' pool5 ___________╱
    fc6 → ReLU → dropout                               fc6 → ReLU → dropout
            ╲_________ crossing 3: fc7 reads both columns' fc6 _____________╱
    fc7 → ReLU → dropout                               fc7 → ReLU → dropout
            ╲_________ crossing 4: fc8 reads both columns' fc7 _____________╱
    fc8 → logits (on device 0)

Where a layer reads both columns, each device concatenates the two columns' outputs along the
channel axis, **column 0 first**, so every weight sees its inputs in the same order on either
device. fc8 is one layer kept with column 0, as in cuda-convnet2's two-GPU configuration (the
paper does not say where it ran); the logits and the loss are on device 0.

In the backward pass the same four crossings carry the gradients back (one copy back per forward
copy). ``forward`` below states this network once; *how* the columns run is a placement
(placement.py): column by column on two devices, or both together on one device (one GPU, or
plain 'cpu'), where the copies would be no-ops and the columns run as grouped operations.

Input: a float (N, 3, S, S) batch, S = ``model.input_size`` (227 for ``paper``: see presets.py
for 224 versus 227). Output: logits (N, num_classes) on ``model.output_device``.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy

from .. import nn
from ..autograd import Tensor, concat, to_device
from ..backend import Device, as_device, default_devices
from ..functional.dropout import draw_keep_mask
from .common import (PresetModel, activations_in_test_mode, assign_parameters, network_input,
                     check_without, dropout, dropout_generator, split_seed)
from .init import INIT_SCHEMES, initial_parameters, parameter_shapes
from .placement import ColumnByColumn, ColumnsTogether
from .presets import DROPOUT_P, Preset, get_preset

#: Names of the dropout sites, the keys of ``set_dropout_masks``: fc6 and fc7 in each column.
DROPOUT_SITES = ("column0.fc6", "column1.fc6", "column0.fc7", "column1.fc7")


def build_layer(shape, device: Device, dtype) -> nn.Module:
    """An nn.Conv2d or nn.Linear of a ``LayerShape``, its weights left for the initialiser."""
    kw = dict(device=device, dtype=dtype, init=False)
    if shape.kernel:
        return nn.Conv2d(shape.inputs, shape.outputs, shape.kernel, stride=shape.stride,
                         padding=shape.padding, **kw)
    return nn.Linear(shape.inputs, shape.outputs, **kw)


class Column(nn.Module):
    """One column of AlexNet: half of every layer's kernels, all on one device (§3.2), built from
    the preset's layer table. conv3, fc6 and fc7 read both columns (twice the inputs)."""

    def __init__(self, preset: Preset, device: Device, dtype):
        super().__init__()
        for shape in preset.layers(num_classes=1)[:-1]:       # conv1..fc7 (fc8 is not a column's)
            setattr(self, shape.name, build_layer(shape, device, dtype))


class AlexNet(PresetModel):
    """The two-column AlexNet of §3.5 (see the module docstring for the picture).

    Parameters
    ----------
    num_classes
        outputs of fc8 (1000 for ImageNet)
    preset
        'paper', 'mini', 'fashion', 'tiny' (see ``minialex.models.PRESETS``) or a ``Preset``
    devices
        (device of column 0, device of column 1); default ``minialex.default_devices()``:
        cuda:0/cuda:1 with two GPUs, both cuda:0 with one, both 'cpu' without
    seed
        the same seed gives the same weights on every device, and the same dropout masks
    dtype
        numpy.float32 for training, numpy.float64 for gradient checks
    init
        'paper', 'caffe' or 'he' (see init.py); default: the preset's own
    dropout_mode
        'paper' (§4.2: keep-mask at training, x0.5 at test) or 'inverted'
    fuse_columns
        when both columns share one device, run them together (placement.py:
        ``ColumnsTogether``, the same function with fewer, larger operations); False runs them
        column by column everywhere. Two devices always run column by column.
    without
        tricks of the paper to leave out, to measure them (any of 'relu' for tanh units,
        'lrn', 'overlap' for 2x2/2 pooling, 'dropout'; ``common.WITHOUT``); default none

    Notes
    -----
    Parameters are named ``column0.conv1.weight`` ... ``column1.fc7.bias``, ``fc8.weight``,
    ``fc8.bias`` (conv weights (K, C, kh, kw), linear weights (out, in), as in PyTorch).
    """

    def __init__(self, num_classes: int = 1000, preset: Union[str, Preset] = "paper",
                 devices: Optional[Sequence] = None, seed: Optional[int] = None,
                 dtype=numpy.float32, init: Optional[str] = None, dropout_mode: str = "paper",
                 fuse_columns: bool = True, without=()):
        super().__init__()
        p = get_preset(preset)
        p.check()
        init = init or p.init
        if init not in INIT_SCHEMES:
            raise ValueError(f"AlexNet: unknown init {init!r}; choose one of {', '.join(INIT_SCHEMES)}")
        if num_classes < 1:
            raise ValueError(f"AlexNet: num_classes must be at least 1, got {num_classes}")
        d0, d1 = _device_pair(default_devices() if devices is None else devices)
        self._preset = p
        self.num_classes = int(num_classes)
        self.dtype = numpy.dtype(dtype)
        self.init = init
        self.dropout_mode = dropout_mode
        self.seed = seed
        self.fuse_columns = fuse_columns
        self.without = check_without(without)

        self.column0 = Column(p, d0, self.dtype)
        self.column1 = Column(p, d1, self.dtype)
        #: The preset's layer table by name (placement.py reads each conv's geometry from it).
        self.layer_shapes = {shape.name: shape for shape in p.layers(self.num_classes)}
        self.fc8 = build_layer(self.layer_shapes["fc8"], d0, self.dtype)   # on device 0
        self.devices = (d0, d1)
        self.seeds = split_seed(seed, 3)      # init, dropout of column 0, dropout of column 1
        assign_parameters(self, initial_parameters(p, self.num_classes, init,
                                                   numpy.random.default_rng(self.seeds[0]),
                                                   self.dtype))
        self._new_dropout_generators()
        self.dropout_masks: Optional[Dict[str, object]] = None

    # -- facts about the model (and PresetModel's: preset, input_size, config, ...) ---------
    def parameter_shapes(self):
        return parameter_shapes(self._preset, self.num_classes)

    def placement(self):
        """The strategy that runs the columns (placement.py) for the current devices."""
        together = self.fuse_columns and self.devices[0] == self.devices[1]
        return ColumnsTogether(self) if together else ColumnByColumn(self)

    def to(self, devices) -> "AlexNet":
        """Move the columns: ``devices`` is a pair (column 0, column 1) or one device for both.

        fc8 follows column 0. The dropout generators start again from the model's seed.
        """
        d0, d1 = _device_pair(devices)
        self.column0.to(d0)
        self.column1.to(d1)
        self.fc8.to(d0)
        self.devices = (d0, d1)
        self._new_dropout_generators()
        return self

    # -- dropout ---------------------------------------------------------------------------
    def _new_dropout_generators(self) -> None:
        self.dropout_generators = tuple(dropout_generator(self.seeds[1 + c], self.devices[c])
                                        for c in (0, 1))

    def set_dropout_masks(self, masks: Optional[Dict[str, object]]) -> None:
        """Use fixed keep-masks (1 keep, 0 drop) instead of random ones, e.g. for gradient checks.

        ``masks`` maps each of DROPOUT_SITES ('column0.fc6', 'column1.fc6', 'column0.fc7',
        'column1.fc7') to an array of shape (N, fc). ``None`` goes back to random masks.
        """
        if masks is not None:
            missing = [s for s in DROPOUT_SITES if s not in masks]
            if missing:
                raise ValueError(f"AlexNet.set_dropout_masks: missing masks for {missing}")
        self.dropout_masks = masks

    def keep_mask(self, column: int, layer: str, shape, like):
        """Column ``column``'s keep-mask after ``layer`` (§4.2): the fixed one, or a fresh draw
        from that column's own generator (so both placements draw the same masks)."""
        if self.dropout_masks is not None:
            return self.devices[column].put(self.dropout_masks[f"column{column}.{layer}"])
        return draw_keep_mask(shape, DROPOUT_P, self.dropout_generators[column], like)

    def dropout_column(self, x: Tensor, column: int, layer: str) -> Tensor:
        """Dropout (§4.2) of one column's ``layer`` output (training: its keep-mask; test: x0.5)."""
        return dropout(self, x, lambda: self.keep_mask(column, layer, x.shape, x.data))

    # -- forward ---------------------------------------------------------------------------
    def forward(self, images, activations: Optional[dict] = None) -> Tensor:
        """Logits (N, num_classes) on device 0 for images (N, 3, S, S).

        If ``activations`` is a dict, every stage's output is stored in it: 'column0.conv1' ...
        'column1.pool5' (conv stages after their ReLU; pool stages after LRN and pooling),
        'column0.fc6' ... 'column1.fc7' (after ReLU, before dropout) and 'fc8' (the logits).
        """
        images = network_input(self, images)        # grey and input_scale (presets.py)
        run = self.placement()

        def keep(stage, h):  # note both columns' outputs of one stage, if asked to
            if activations is not None:
                activations[f"column0.{stage}"], activations[f"column1.{stage}"] = run.halves(h)
            return h

        h = run.enter(images)                                   # the image goes to both columns
        # Layers 1 and 2: each column sees only itself.
        h = keep("conv1", run.conv(h, "conv1"))
        h = keep("pool1", run.pool(run.lrn(h)))
        h = keep("conv2", run.conv(h, "conv2"))
        h = keep("pool2", run.pool(run.lrn(h)))
        # Crossing 1: conv3 reads both columns' pool2.
        h = keep("conv3", run.conv(run.cross(h, "conv3"), "conv3"))
        # Layers 4 and 5: each column sees only itself again.
        h = keep("conv4", run.conv(h, "conv4"))
        h = keep("conv5", run.conv(h, "conv5"))
        h = keep("pool5", run.pool(h))
        # Crossing 2: fc6 reads both columns' pool5, flattened (channel, row, column order).
        h = run.dropout(keep("fc6", run.fc(run.cross(run.flatten(h), "fc6"), "fc6")), "fc6")
        # Crossing 3: fc7 reads both columns' fc6.
        h = run.dropout(keep("fc7", run.fc(run.cross(h, "fc7"), "fc7")), "fc7")
        # Crossing 4: fc8 (on device 0) reads both columns' fc7. No ReLU: these are the logits.
        logits = self.fc8(run.join(h))
        if activations is not None:
            activations["fc8"] = logits
        return logits

    def last_hidden(self, images) -> Tensor:
        """The 2*fc-long last hidden layer (fc7 after ReLU, both columns, column 0 first) on
        device 0, in test mode and without a graph: the vectors §6.1 compares (Figure 4)."""
        acts = activations_in_test_mode(self, images)
        h1 = to_device(acts["column1.fc7"], self.devices[0], label="fc7 features -> column0")
        return concat([acts["column0.fc7"], h1], axis=1)


def _device_pair(devices):
    """(column 0's device, column 1's device) from a pair or one device for both."""
    if isinstance(devices, (str, Device)):
        devices = (devices, devices)
    if len(devices) != 2:
        raise ValueError(f"AlexNet: devices must be a pair (column 0, column 1), got {devices!r}")
    return as_device(devices[0]), as_device(devices[1])
