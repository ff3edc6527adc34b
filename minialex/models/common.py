"""The pieces every form of AlexNet shares: LRN and pooling with the paper's constants, the
dropout generators, the image check, and putting drawn weights on their devices.

Both placements of the two-column net (placement.py) and the one-column net of §3.2
(one_column.py) import these, so each fact is stated here once.
"""

from __future__ import annotations

from typing import Dict

import numpy

from .. import functional as F, nn
from ..autograd import Tensor, no_grad
from ..backend import Device, cupy
from .presets import (DROPOUT_P, LRN_ALPHA, LRN_BETA, LRN_K, LRN_SIZE, POOL_SIZE, POOL_STRIDE,
                      Preset)


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
        with device:
            return cupy.random.default_rng(int(seed_sequence.generate_state(1)[0]))
    return numpy.random.default_rng(seed_sequence)


#: The paper's tricks that a model or a run can leave out (``without=``), to measure what each is
#: worth (``benchmarks/ablation.py``, docs/ablation.md). The first four change the model, the
#: last two the run: ``augmentation`` the training crops, ``columns`` the model's class.
WITHOUT = {
    "relu": "tanh units instead of ReLU (§3.1)",
    "lrn": "no local response normalisation (§3.3)",
    "overlap": "2x2 pooling with stride 2 instead of overlapping 3x3 windows (§3.4)",
    "dropout": "no dropout on fc6 and fc7 (§4.2)",
    "augmentation": "centre crops, no flips, no PCA lighting (§4.1)",
    "columns": "one column on one device, half the kernels in conv1-conv4 (§3.2)",
}
MODEL_TRICKS = ("relu", "lrn", "overlap", "dropout")


def check_without(without, allowed=MODEL_TRICKS) -> tuple:
    """``without`` as a sorted tuple of names from ``allowed``, or a ValueError naming them."""
    names = tuple(sorted(set(without or ())))
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise ValueError(f"without: unknown trick(s) {', '.join(map(repr, unknown))}; "
                         f"choose from {', '.join(allowed)}")
    return names


def unit(model, x: Tensor, conv: dict = None) -> Tensor:
    """The model's nonlinearity: ReLU (§3.1), or tanh for a model built ``without=('relu',)``.

    With ``conv`` (the arguments of ``F.conv2d``: weight, bias, stride, padding, groups), ``x`` is
    the convolution's input, and the ReLU runs with the convolution as one op
    (``F.conv2d_relu``: the same function, one pass less over the activations)."""
    relu = "relu" not in model.without
    if conv is not None:
        if relu:
            return F.conv2d_relu(x, **conv)
        x = F.conv2d(x, **conv)
    return F.relu(x) if relu else F.tanh(x)


def normalise(model, x: Tensor, groups: int = 1) -> Tensor:
    """LRN within each column (``lrn_in_groups``), or nothing for ``without=('lrn',)``."""
    return x if "lrn" in model.without else lrn_in_groups(x, groups)


def pool(model, x: Tensor) -> Tensor:
    """Overlapping 3x3/2 max pooling (§3.4), or 2x2/2 for ``without=('overlap',)``. Every
    preset's maps have odd sides before pooling, where both give the same output side."""
    if "overlap" in model.without:
        return F.max_pool2d(x, kernel_size=POOL_STRIDE, stride=POOL_STRIDE)
    return max_pool(x)


def dropout(model, x: Tensor, keep_mask) -> Tensor:
    """Dropout after fc6 and fc7 (§4.2), as every form of the network applies it: x itself for a
    model built ``without=('dropout',)``; at test time x * (1 - p), the paper's form (or x in the
    inverted form); in training x times the keep-mask that ``keep_mask()`` returns (each form
    draws it from its own generators, or takes fixed masks: ``set_dropout_masks``)."""
    if "dropout" in model.without:
        return x
    if not model.training:
        return F.dropout(x, p=DROPOUT_P, training=False, mode=model.dropout_mode)
    return F.dropout(x, p=DROPOUT_P, training=True, mode=model.dropout_mode, mask=keep_mask())


def lrn_in_groups(x: Tensor, groups: int = 1) -> Tensor:
    """Local response normalisation with the paper's constants (§3.3) within each of ``groups``
    equal channel blocks: each column normalises only its own channels. (N, G*C, H, W) is viewed
    as (N*G, C, H, W), a reshape without a copy. (Caffe's grouped AlexNet instead runs LRN across
    all 96 channels, so channels 47 and 48, the columns' edges, see each other.)"""
    n, c, h, w = x.shape
    y = x.reshape(n * groups, c // groups, h, w) if groups > 1 else x
    y = F.local_response_norm(y, size=LRN_SIZE, alpha=LRN_ALPHA, beta=LRN_BETA, k=LRN_K)
    return y.reshape(n, c, h, w) if groups > 1 else y


def max_pool(x: Tensor) -> Tensor:
    """Overlapping max pooling, 3x3 windows with stride 2 (§3.4)."""
    return F.max_pool2d(x, kernel_size=POOL_SIZE, stride=POOL_STRIDE)


def network_input(model, images) -> Tensor:
    """What conv1 reads: ``images`` (N, 3, S, S) checked (``check_images``), averaged over the
    channels to (N, 1, S, S) if the preset is ``grey``, then multiplied by its ``input_scale``."""
    images = check_images(model, images)
    p = model.preset_spec
    if p.grey:                           # R = G = B: one channel, a third of conv1's work
        images = images.mean(axis=1, keepdims=True)
    if p.input_scale != 1.0:             # small presets: pixels to unit size (presets.py)
        images = images * p.input_scale
    return images


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


def activations_in_test_mode(model, images) -> Dict[str, Tensor]:
    """Every stage's output of ``model`` (``forward(images, activations=...)``) on ``images``, in
    test mode and without a graph; the model's training flag is restored afterwards."""
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


class PresetModel(nn.Module):
    """What every form of AlexNet tells about itself, read off its preset (``self._preset``) and
    its options; ``devices[0]`` holds the logits."""

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
        """Where the logits (and so the loss and the labels) live."""
        return self.devices[0]

    @property
    def config(self) -> dict:
        """A JSON-able dict that ``minialex.models.build_model`` turns back into this model.

        It holds the preset's name and its full numbers (``preset_spec``), so a checkpoint
        still rebuilds the same network if the named preset is retuned later.
        """
        return {"class": type(self).__name__, "num_classes": self.num_classes,
                "preset": self.preset, "preset_spec": self._preset.to_dict(), "init": self.init,
                "dtype": self.dtype.name, "dropout_mode": self.dropout_mode, "seed": self.seed,
                "without": list(self.without)}
