"""The sizes of AlexNet: the paper's network and smaller ones with the same shape.

Every preset has the same eight learned layers, the same two columns, the same crossings (conv3,
fc6, fc7 and fc8 read both columns), LRN after conv1 and conv2, overlapping 3x3/2 max pooling after
LRN1, LRN2 and conv5, and dropout 0.5 on fc6 and fc7 (§3.3-§3.5, §4.2). Only the numbers change:
input side, conv1's kernel and stride, kernels per column, and fully connected width.

All counts below are *per column*: the paper's conv1 has 48 kernels in each column, 96 in all.
Every preset's maps have sides n with n - 3 even before each 3x3 stride-2 pooling (paper:
55 -> 27 -> 13 -> 6), so the pooling windows cover the whole map and no row is silently dropped.

224 or 227?  (the one place this is settled)
--------------------------------------------
The paper says 224x224 inputs, but (224 - 11) / 4 + 1 = 54.25, so an 11x11 stride-4 convolution
cannot give the 55x55 maps of Figure 2 from 224 pixels without padding. minialex takes Caffe's
answer: the ``paper`` preset reads **227x227** crops and conv1 uses no padding, so
(227 - 11) / 4 + 1 = 55 exactly. (torchvision instead pads a 224 input by 2 on every side; that
gives (228 - 11) // 4 + 1 = 55 too, with a slightly different border.) 227 is also what the GPU
benchmark's PyTorch reference uses, so the two can be compared layer by layer.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Tuple, Union

from ..functional.utils import output_size

#: Input side of the ``paper`` preset; see the module docstring for why 227 and not 224.
PAPER_INPUT_SIZE = 227
#: conv1 padding of the ``paper`` preset: none, as in Caffe (227 -> 55).
PAPER_CONV1_PADDING = 0

# Constants shared by every preset (the paper's values).
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 2.0   # §3.3, literal form (alpha not / n)
POOL_SIZE, POOL_STRIDE = 3, 2                                # §3.4, overlapping: stride < window
DROPOUT_P = 0.5                                              # §4.2, on fc6 and fc7
CONV2_KERNEL, CONV2_PADDING = 5, 2                           # §3.5: 5x5, keeps 27x27
CONV345_KERNEL, CONV345_PADDING = 3, 1                       # §3.5: 3x3, keeps 13x13


@dataclasses.dataclass(frozen=True)
class Preset:
    """One size of AlexNet. Counts are per column (each column has half of every layer)."""

    name: str
    input_size: int                 # square input side in pixels
    conv1_kernel: int               # conv1 kernel side (paper: 11)
    conv1_stride: int               # conv1 stride (paper: 4)
    conv1_padding: int              # conv1 zero padding (paper preset: 0, with 227 inputs)
    channels: Tuple[int, int, int, int, int]  # kernels per column in conv1..conv5
    fc: int                         # neurons per column in fc6 and fc7 (paper: 2048)
    init: str                       # the default initialisation scheme (see minialex.models.init)
    description: str = ""
    input_scale: float = 1.0        # images are multiplied by this before conv1 (see below)
    grey: bool = False              # conv1 reads one channel, the mean of R, G and B (see below)

    # input_scale: the loader feeds the paper's units, 0-255 pixels minus the mean (standard
    # deviation about 60). The paper's init (std 0.01) is made for those; He init assumes inputs
    # of unit size, so the small presets scale the pixels by 1/64 before conv1. Without it
    # conv1's outputs start ~60x too large and its gradients (proportional to the pixels) make
    # the first steps blow up.
    #
    # grey: for data without colour, whose three channels are equal (Fashion-MNIST). The model
    # still takes (N, 3, S, S) images, as every dataset gives them, and averages the channels
    # before conv1, whose kernels then have one input channel instead of three. On R = G = B a
    # three-channel conv1 computes sum_c W_c * g = (sum_c W_c) * g, so it can learn nothing a
    # grey one cannot: the three copies only triple conv1's multiply-adds (the fashion step at
    # batch 128: conv1's forward and backward 17 ms instead of 8, a tenth of the step) and its
    # learning rate (every W_c gets the same gradient). He init gives the same spread either
    # way: sum_c W_c over 3 x 49 inputs has the variance of one kernel over 49.

    def to_dict(self) -> Dict:
        """A JSON-able dict; ``Preset(**d)`` rebuilds it (lists become tuples)."""
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: Dict) -> "Preset":
        d = dict(d)
        d["channels"] = tuple(int(c) for c in d["channels"])
        return cls(**d)

    # -- the layer table (pure arithmetic, no arrays) ----------------------------------------
    def layers(self, num_classes: int) -> Tuple["LayerShape", ...]:
        """The learned layers of one column (conv1..fc7), then fc8: the one table that the model,
        the initialiser and ``info`` read. Counts are per column; fc8 is one layer (column 0)."""
        f = self.fc
        return self.conv_layers() + (
            LayerShape("fc6", 2 * self.pool5_features, f, crossing=True),
            LayerShape("fc7", 2 * f, f, crossing=True),
            LayerShape("fc8", 2 * f, num_classes, crossing=True))

    def conv_layers(self) -> Tuple["LayerShape", ...]:
        """conv1..conv5 of one column (the first rows of ``layers``)."""
        c1, c2, c3, c4, c5 = self.channels
        return (
            LayerShape("conv1", 1 if self.grey else 3, c1, self.conv1_kernel, self.conv1_stride,
                       self.conv1_padding),
            LayerShape("conv2", c1, c2, CONV2_KERNEL, 1, CONV2_PADDING),
            LayerShape("conv3", 2 * c2, c3, CONV345_KERNEL, 1, CONV345_PADDING, crossing=True),
            LayerShape("conv4", c3, c4, CONV345_KERNEL, 1, CONV345_PADDING),
            LayerShape("conv5", c4, c5, CONV345_KERNEL, 1, CONV345_PADDING))

    def spatial_sizes(self) -> Dict[str, int]:
        """Side of the feature maps after each layer, e.g. {'conv1': 55, 'pool1': 27, ...}."""
        convs = {layer.name: layer for layer in self.conv_layers()}
        s, n = {}, self.input_size
        for name in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"):
            c = convs.get(name)
            n = output_size(n, POOL_SIZE, POOL_STRIDE, 0) if c is None else output_size(
                n, c.kernel, c.stride, c.padding)
            s[name] = n
        return s

    def check(self) -> None:
        """Raise ValueError if the input is too small for the layers (a map shrinks below 1)."""
        n = self.input_size
        if n + 2 * self.conv1_padding < self.conv1_kernel:
            raise ValueError(f"preset {self.name!r}: input {n}x{n} is smaller than conv1's "
                             f"{self.conv1_kernel}x{self.conv1_kernel} kernel")
        for layer, side in self.spatial_sizes().items():
            if side < 1:
                raise ValueError(f"preset {self.name!r}: input {n}x{n} is too small; the maps "
                                 f"after {layer} would be {side}x{side}")
        if any(c < 1 for c in self.channels) or self.fc < 1:
            raise ValueError(f"preset {self.name!r}: every layer needs at least one kernel")

    @property
    def pool5_features(self) -> int:
        """Length of one column's flattened pool5 output (paper: 128*6*6 = 4608)."""
        side = self.spatial_sizes()["pool5"]
        return self.channels[4] * side * side


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """One learned layer of a column: a convolution (``kernel`` > 0) or a fully connected layer.

    ``inputs``: input channels (conv) or features (fc) of one column's layer; ``outputs``:
    kernels or neurons per column (fc8: the classes); ``crossing``: reads both columns (§3.2).
    """

    name: str
    inputs: int
    outputs: int
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    crossing: bool = False

    @property
    def weight_shape(self) -> Tuple[int, ...]:
        """PyTorch layout: conv (K, C, kh, kw), linear (out, in)."""
        if self.kernel:
            return (self.outputs, self.inputs, self.kernel, self.kernel)
        return (self.outputs, self.inputs)


PRESETS: Dict[str, Preset] = {
    # The paper's network (§3.5, Figure 2), exactly: 60,965,224 parameters at 1000 classes.
    "paper": Preset(
        name="paper", input_size=PAPER_INPUT_SIZE, conv1_kernel=11, conv1_stride=4,
        conv1_padding=PAPER_CONV1_PADDING, channels=(48, 128, 192, 192, 128), fc=2048,
        init="paper",
        description="the paper's network: 227x227 input, 96-256-384-384-256 kernels, fc 4096"),
    # For CPUs and lessons: a 51x51 input, a quarter of the kernels, an eighth of the fc width.
    # conv1 is 7x7 stride 2, and 51 = 7 + 2*22 gives 23x23 maps, then 23 -> 11 -> 11 -> 5 -> 5
    # -> 2: every pooling window fits its map exactly, as in the paper. Chosen by measurement
    # on the 2-core CPU (batch 128, training step): fast enough for hundreds of images/s, and
    # it leaves chance level on the built-in shapes within two epochs, where a 67x67 input
    # with the paper's 11x11/4 conv1 (15x15 maps, 1x1 pool5) stayed at chance. The paper's init
    # barely moves a net this small, so the default is He-scaled normal weights with the
    # pixels scaled to unit size (``input_scale``; see init.py).
    "mini": Preset(
        name="mini", input_size=51, conv1_kernel=7, conv1_stride=2, conv1_padding=0,
        channels=(12, 32, 48, 48, 32), fc=256, init="he", input_scale=1 / 64,
        description="for CPUs and lessons: 51x51 input, 1/4 of the kernels, fc 512"),
    # For Fashion-MNIST (the preset ``train --data fashion-mnist`` takes; minialex/train/setup.py):
    # mini's convolutions, conv1 on one grey channel (``grey``), and fc6 and fc7 twice as wide.
    # With the paper's dropout on them, mini's 512 fc neurons underfit 55,000 grey images
    # (training error above validation error after 20 epochs); 1,024 lowered validation error by
    # 0.4-0.7 points in every epoch of a 5-epoch trial for about 2% more time per step
    # (docs/training.md).
    "fashion": Preset(
        name="fashion", input_size=51, conv1_kernel=7, conv1_stride=2, conv1_padding=0,
        channels=(12, 32, 48, 48, 32), fc=512, init="he", input_scale=1 / 64, grey=True,
        description="for Fashion-MNIST: mini's convolutions on grey, fc 1024"),
    # For whole-network gradient checks: a few kernels, a 33x33 input (33 -> 15 -> 7 -> 7 -> 3
    # -> 3 -> 1), small enough for finite differences in float64.
    "tiny": Preset(
        name="tiny", input_size=33, conv1_kernel=5, conv1_stride=2, conv1_padding=0,
        channels=(3, 4, 6, 6, 4), fc=8, init="he", input_scale=1 / 64,
        description="for gradient checks: 33x33 input, a few kernels per layer"),
}


def get_preset(preset: Union[str, Preset, Dict]) -> Preset:
    """A Preset from its name, a Preset, or a dict made by ``Preset.to_dict``."""
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, dict):
        return Preset.from_dict(preset)
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(f"unknown AlexNet preset {preset!r}; choose one of "
                         f"{', '.join(PRESETS)}") from None
