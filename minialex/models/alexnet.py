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
copy). When both columns share a device (one GPU, or plain 'cpu') the copies are no-ops.

Input: a float (N, 3, S, S) batch, S = ``model.input_size`` (227 for ``paper``: see presets.py
for 224 versus 227). Output: logits (N, num_classes) on ``model.output_device``.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Union

import numpy

from .. import functional as F
from .. import nn
from ..autograd import Tensor, concat, to_device
from ..backend import Device, as_device, default_devices
from .init import INIT_SCHEMES, initial_parameters, parameter_shapes
from .presets import (CONV2_KERNEL, CONV2_PADDING, CONV345_KERNEL, CONV345_PADDING, DROPOUT_P,
                      LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, POOL_SIZE, POOL_STRIDE, Preset,
                      get_preset)

#: Names of the dropout sites, the keys of ``set_dropout_masks``: fc6 and fc7 in each column.
DROPOUT_SITES = ("column0.fc6", "column1.fc6", "column0.fc7", "column1.fc7")


# --------------------------------------------------------------------------------------------
# Helpers shared by every form of the network (also used by grouped.py and one_column.py)
# --------------------------------------------------------------------------------------------

def split_seed(seed, count: int):
    """Independent child seeds for init and each dropout generator, from one user seed.

    ``seed=None`` means 0: a model built without a seed is still reproducible.
    """
    root = numpy.random.SeedSequence(0 if seed is None else seed)
    return root.spawn(count)


def dropout_generator(seed_sequence, device: Device):
    """A generator for dropout masks on ``device``: NumPy's on the CPU, CuPy's on a GPU (so that
    masks are drawn where the activations are, without a host copy)."""
    if device.is_cuda:
        from ..backend import cupy
        with device:
            return cupy.random.default_rng(int(seed_sequence.generate_state(1)[0]))
    return numpy.random.default_rng(seed_sequence)


def lrn(x: Tensor) -> Tensor:
    """Local response normalisation with the paper's constants (§3.3), over one column's channels."""
    return F.local_response_norm(x, size=LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K)


def lrn_in_groups(x: Tensor, groups: int) -> Tensor:
    """LRN (§3.3) within each of ``groups`` equal channel blocks, as each column normalises only
    its own channels: (N, G*C, H, W) is viewed as (N*G, C, H, W), a reshape without a copy."""
    if groups == 1:
        return lrn(x)
    n, c, h, w = x.shape
    return lrn(x.reshape(n * groups, c // groups, h, w)).reshape(n, c, h, w)


def check_images(model, images) -> Tensor:
    """``images`` as a Tensor of shape (N, 3, S, S) and the model's dtype, or a clear error."""
    if not isinstance(images, Tensor):
        images = Tensor(images)
    s, name = model.input_size, f"{type(model).__name__} ({model.preset})"
    if images.ndim != 4 or images.shape[1:] != (3, s, s):
        raise ValueError(f"{name}: expected images of shape (N, 3, {s}, {s}), got {images.shape}")
    if images.dtype != model.dtype:
        raise TypeError(f"{name}: images are {images.dtype} but the model is {model.dtype}; "
                        "convert with .astype")
    return images


def max_pool(x: Tensor) -> Tensor:
    """Overlapping max pooling, 3x3 windows with stride 2 (§3.4)."""
    return F.max_pool2d(x, kernel_size=POOL_SIZE, stride=POOL_STRIDE)


def activations_in_test_mode(model, images) -> Dict[str, Tensor]:
    """Every stage's output of ``model`` (``forward(images, activations=...)``) on ``images``, in
    test mode and without a graph; the model's training flag is restored afterwards."""
    from ..autograd import no_grad
    was_training = model.training
    model.eval()
    try:
        with no_grad():
            acts: Dict[str, Tensor] = {}
            model.forward(images, activations=acts)
            return acts
    finally:
        model.train(was_training)


def assign_parameters(module: nn.Module, arrays: Dict[str, numpy.ndarray]) -> None:
    """Put host arrays into a module's parameters, each on that parameter's device."""
    for name, p in module.named_parameters():
        p.data = p.device.put(arrays[name], dtype=p.data.dtype)


class Column(nn.Module):
    """One column of AlexNet: half of every layer's kernels, all on one device (§3.2).

    conv3, fc6 and fc7 take both columns' outputs as input (twice the channels of the layer
    before); conv2, conv4 and conv5 read only this column.
    """

    def __init__(self, preset: Preset, device: Device, dtype):
        super().__init__()
        c1, c2, c3, c4, c5 = preset.channels
        f = preset.fc
        kw = dict(device=device, dtype=dtype)
        self.conv1 = nn.Conv2d(3, c1, preset.conv1_kernel, stride=preset.conv1_stride,
                               padding=preset.conv1_padding, **kw)
        self.conv2 = nn.Conv2d(c1, c2, CONV2_KERNEL, padding=CONV2_PADDING, **kw)
        self.conv3 = nn.Conv2d(2 * c2, c3, CONV345_KERNEL, padding=CONV345_PADDING, **kw)
        self.conv4 = nn.Conv2d(c3, c4, CONV345_KERNEL, padding=CONV345_PADDING, **kw)
        self.conv5 = nn.Conv2d(c4, c5, CONV345_KERNEL, padding=CONV345_PADDING, **kw)
        self.fc6 = nn.Linear(2 * preset.pool5_features, f, **kw)
        self.fc7 = nn.Linear(2 * f, f, **kw)


class AlexNet(nn.Module):
    """The two-column AlexNet of §3.5 (see the module docstring for the picture).

    Parameters
    ----------
    num_classes : outputs of fc8 (1000 for ImageNet)
    preset : 'paper', 'mini', 'tiny' (see ``minialex.models.PRESETS``) or a ``Preset``
    devices : (device of column 0, device of column 1); default ``minialex.default_devices()``:
        cuda:0/cuda:1 with two GPUs, both cuda:0 with one, both 'cpu' without
    seed : int; the same seed gives the same weights on every device, and the same dropout masks
    dtype : numpy.float32 for training, numpy.float64 for gradient checks
    init : 'paper', 'caffe' or 'he' (see init.py); default: the preset's own
    dropout_mode : 'paper' (§4.2: keep-mask at training, x0.5 at test) or 'inverted'
    fuse_columns : when both columns share one device, compute them together as grouped layers
        over the same parameters (fused.py: the same function, fewer and larger operations).
        The column-by-column path below runs whenever the columns are on two devices, when
        ``activations`` are asked for, or with ``fuse_columns=False``.

    Parameters are named ``column0.conv1.weight`` ... ``column1.fc7.bias``, ``fc8.weight``,
    ``fc8.bias`` (conv weights (K, C, kh, kw), linear weights (out, in), as in PyTorch).
    """

    def __init__(self, num_classes: int = 1000, preset: Union[str, Preset] = "paper",
                 devices: Optional[Sequence] = None, seed: Optional[int] = None,
                 dtype=numpy.float32, init: Optional[str] = None, dropout_mode: str = "paper",
                 fuse_columns: bool = True):
        super().__init__()
        p = get_preset(preset)
        p.check()
        init = init or p.init
        if init not in INIT_SCHEMES:
            raise ValueError(f"AlexNet: unknown init {init!r}; choose one of {', '.join(INIT_SCHEMES)}")
        if num_classes < 1:
            raise ValueError(f"AlexNet: num_classes must be at least 1, got {num_classes}")
        if devices is None:
            devices = default_devices()
        if isinstance(devices, (str, Device)):
            devices = (devices, devices)
        if len(devices) != 2:
            raise ValueError(f"AlexNet: devices must be a pair (column 0, column 1), got {devices!r}")
        d0, d1 = as_device(devices[0]), as_device(devices[1])
        self._preset = p
        self.devices = (d0, d1)
        self.num_classes = int(num_classes)
        self.dtype = numpy.dtype(dtype)
        self.init = init
        self.dropout_mode = dropout_mode
        self.seed = seed
        self.fuse_columns = fuse_columns

        self.column0 = Column(p, d0, self.dtype)
        self.column1 = Column(p, d1, self.dtype)
        self.fc8 = nn.Linear(2 * p.fc, self.num_classes, device=d0, dtype=self.dtype)  # on device 0

        init_seed, drop0, drop1 = split_seed(seed, 3)
        assign_parameters(self, initial_parameters(p, self.num_classes, init,
                                                   numpy.random.default_rng(init_seed), self.dtype))
        self.dropout_generators = (dropout_generator(drop0, d0), dropout_generator(drop1, d1))
        self.dropout_masks: Optional[Dict[str, object]] = None

    # -- facts about the model -------------------------------------------------------------
    @property
    def preset(self) -> str:
        """The preset's name, e.g. 'paper'."""
        return self._preset.name

    @property
    def preset_spec(self) -> Preset:
        return self._preset

    @property
    def input_size(self) -> int:
        """Side of the square input images (227 for 'paper')."""
        return self._preset.input_size

    @property
    def output_device(self) -> Device:
        """Where the logits (and so the loss and the labels) live: column 0's device."""
        return self.devices[0]

    @property
    def config(self) -> dict:
        """A JSON-able dict that ``minialex.models.build_model`` turns back into this model.

        It holds the preset's name and its full numbers (``preset_spec``), so a checkpoint
        still rebuilds the same network if the named preset is retuned later.
        """
        return {"class": type(self).__name__, "num_classes": self.num_classes,
                "preset": self.preset, "preset_spec": self._preset.to_dict(), "init": self.init,
                "dtype": self.dtype.name, "dropout_mode": self.dropout_mode, "seed": self.seed}

    def parameter_shapes(self):
        return parameter_shapes(self._preset, self.num_classes)

    def to(self, devices) -> "AlexNet":
        """Move the columns: ``devices`` is a pair (column 0, column 1) or one device for both.

        fc8 follows column 0. The dropout generators start again from the model's seed.
        """
        if isinstance(devices, (str, Device)):
            devices = (devices, devices)
        d0, d1 = as_device(devices[0]), as_device(devices[1])
        self.column0.to(d0)
        self.column1.to(d1)
        self.fc8.to(d0)
        self.devices = (d0, d1)
        _, drop0, drop1 = split_seed(self.seed, 3)
        self.dropout_generators = (dropout_generator(drop0, d0), dropout_generator(drop1, d1))
        return self

    # -- dropout ---------------------------------------------------------------------------
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

    def _dropout(self, x: Tensor, site: str, column: int) -> Tensor:
        mask = None
        if self.dropout_masks is not None and self.training:
            mask = self.devices[column].put(self.dropout_masks[site])
        return F.dropout(x, p=DROPOUT_P, training=self.training, mode=self.dropout_mode,
                         mask=mask, generator=self.dropout_generators[column])

    # -- the crossings ---------------------------------------------------------------------
    def exchange(self, a0: Tensor, a1: Tensor, layer: str):
        """Give each device both columns' outputs, column 0's first: the input of ``layer``.

        Two copies: column 1's output to device 0 and column 0's output to device 1.
        """
        d0, d1 = self.devices
        both0 = concat([a0, to_device(a1, d0, label=f"{layer} input: column1 -> column0")], axis=1)
        both1 = concat([to_device(a0, d1, label=f"{layer} input: column0 -> column1"), a1], axis=1)
        return both0, both1

    # -- forward ---------------------------------------------------------------------------
    def forward(self, images, activations: Optional[dict] = None) -> Tensor:
        """Logits (N, num_classes) on device 0 for images (N, 3, S, S).

        If ``activations`` is a dict, every stage's output is stored in it: 'column0.conv1' ...
        'column1.pool5' (conv stages after their ReLU; pool stages after LRN and pooling),
        'column0.fc6' ... 'column1.fc7' (after ReLU, before dropout) and 'fc8' (the logits).
        """
        images = check_images(self, images)
        d0, d1 = self.devices
        col0, col1 = self.column0, self.column1
        n = images.shape[0]

        def keep(stage, h0, h1):  # note both columns' outputs of one stage, if asked to
            if activations is not None:
                activations[f"column0.{stage}"], activations[f"column1.{stage}"] = h0, h1
            return h0, h1

        if self._preset.input_scale != 1.0:  # small presets: pixels to unit size (presets.py)
            images = images * self._preset.input_scale
        if self.fuse_columns and d0 == d1 and activations is None:
            from .fused import forward_one_device      # one device: the columns run together
            return forward_one_device(self, images)
        # The image goes to both columns.
        x0 = to_device(images, d0, label="image -> column0")
        x1 = to_device(images, d1, label="image -> column1")

        # Layers 1 and 2: each column sees only itself.
        h0, h1 = keep("conv1", F.relu(col0.conv1(x0)), F.relu(col1.conv1(x1)))
        h0, h1 = keep("pool1", max_pool(lrn(h0)), max_pool(lrn(h1)))
        h0, h1 = keep("conv2", F.relu(col0.conv2(h0)), F.relu(col1.conv2(h1)))
        h0, h1 = keep("pool2", max_pool(lrn(h0)), max_pool(lrn(h1)))

        # Crossing 1: conv3 reads both columns' pool2.
        h0, h1 = self.exchange(h0, h1, "conv3")
        h0, h1 = keep("conv3", F.relu(col0.conv3(h0)), F.relu(col1.conv3(h1)))

        # Layers 4 and 5: each column sees only itself again.
        h0, h1 = keep("conv4", F.relu(col0.conv4(h0)), F.relu(col1.conv4(h1)))
        h0, h1 = keep("conv5", F.relu(col0.conv5(h0)), F.relu(col1.conv5(h1)))
        h0, h1 = keep("pool5", max_pool(h0), max_pool(h1))

        # Crossing 2: fc6 reads both columns' pool5, flattened (channel, row, column order).
        h0, h1 = self.exchange(h0.reshape(n, -1), h1.reshape(n, -1), "fc6")
        h0, h1 = keep("fc6", F.relu(col0.fc6(h0)), F.relu(col1.fc6(h1)))
        h0, h1 = self._dropout(h0, "column0.fc6", 0), self._dropout(h1, "column1.fc6", 1)

        # Crossing 3: fc7 reads both columns' fc6.
        h0, h1 = self.exchange(h0, h1, "fc7")
        h0, h1 = keep("fc7", F.relu(col0.fc7(h0)), F.relu(col1.fc7(h1)))
        h0, h1 = self._dropout(h0, "column0.fc7", 0), self._dropout(h1, "column1.fc7", 1)

        # Crossing 4: fc8 (on device 0) reads both columns' fc7. No ReLU: these are the logits.
        both = concat([h0, to_device(h1, d0, label="fc8 input: column1 -> column0")], axis=1)
        logits = self.fc8(both)
        if activations is not None:
            activations["fc8"] = logits
        return logits

    def last_hidden(self, images) -> Tensor:
        """The 2*fc-long last hidden layer (fc7 after ReLU, both columns, column 0 first) on
        device 0, in test mode and without a graph: the vectors §6.1 compares (Figure 4)."""
        acts = activations_in_test_mode(self, images)
        h1 = to_device(acts["column1.fc7"], self.devices[0], label="fc7 features -> column0")
        return concat([acts["column0.fc7"], h1], axis=1)
