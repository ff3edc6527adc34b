"""Both columns of AlexNet on ONE device, computed together: the fast path of ``AlexNet.forward``.

When the two columns share a device (one GPU, or plain 'cpu'), the crossings are no-ops, and the
two columns can run as one set of larger, grouped operations over the *same* parameters:

============  ==========================================  =====================================
layer         two columns (alexnet.py)                    together (here)
============  ==========================================  =====================================
conv1         each column unfolds the image (im2col)      one conv, the image unfolded once,
              and applies its 48 kernels                  96 kernels (column 0's first)
ReLU          after every conv                            inside the conv (``conv2d_relu``)
LRN           over each column's own channels             the same: (N, 2C, H, W) is viewed as
                                                          (2N, C, H, W), no copy
conv2/4/5     each column reads its own half              ``groups=2``: group g reads half g
conv3         each column unfolds both columns' pool2     one conv, both halves unfolded once
fc6/fc7       each column reads both columns              each column's GEMM on the same input,
                                                          outputs side by side (column 0 first)
dropout       a mask per column from its own generator    the same two masks, side by side
============  ==========================================  =====================================

The conv weights are ``concat``-ed from the two columns' parameters on every call (they are small:
conv2's are 1.2 MB), so the gradients flow back into each column's own parameters; the optimizer,
checkpoints and everything else see the two-column model unchanged. fc6's and fc7's weights are
the largest arrays in the net (fc6: 4096 x 9216, 151 MB in float32), so they are not copied: each
column multiplies the same input by its own weights and the two outputs (128 x 2048 each) are
concatenated instead. Because every crossing concatenates column 0's channels first, the stacked
layers see their inputs in the same order as in the two-column net, and the result is the same
function (tested in float64 against the two-column path on 'cpu:0'/'cpu:1'). What is saved:
conv1 and conv3 unfold their input once instead of twice, every conv GEMM is twice as large
(better use of a GPU), and each ReLU costs no pass of its own over the activations. See grouped.py for the same folding as a model with its own
weights (Caffe's ``group: 2``).
"""

from __future__ import annotations

from .. import functional as F
from ..autograd import Tensor, concat, to_device
from ..functional.dropout import draw_keep_mask
from .alexnet import lrn_in_groups, max_pool
from .presets import CONV2_PADDING, CONV345_PADDING, DROPOUT_P


def _stacked(model, layer: str):
    """(weight, bias) of ``layer`` with column 0's rows first, differentiable back to both."""
    a, b = getattr(model.column0, layer), getattr(model.column1, layer)
    return concat([a.weight, b.weight], axis=0), concat([a.bias, b.bias], axis=0)


def _fc_by_column(model, x: Tensor, layer: str) -> Tensor:
    """fc6 or fc7 with ReLU: both columns' neurons on the same input x, column 0's outputs first."""
    a, b = getattr(model.column0, layer), getattr(model.column1, layer)
    return F.relu(concat([F.linear(x, a.weight, a.bias), F.linear(x, b.weight, b.bias)], axis=1))


def _dropout(model, x: Tensor, layer: str) -> Tensor:
    """Dropout after fc6/fc7 with each column's own mask: drawn from that column's generator
    (or taken from ``set_dropout_masks``) exactly as the two-column forward draws it."""
    if not model.training:
        return F.dropout(x, p=DROPOUT_P, training=False, mode=model.dropout_mode)
    half = x.shape[1] // 2
    masks = []
    for column in (0, 1):
        site = f"column{column}.{layer}"
        if model.dropout_masks is not None:
            masks.append(model.devices[column].put(model.dropout_masks[site]))
        else:
            masks.append(draw_keep_mask((x.shape[0], half), DROPOUT_P,
                                        model.dropout_generators[column], x.data))
    xp = x.xp
    with x.device:
        mask = xp.concatenate([xp.asarray(m) for m in masks], axis=1)
    return F.dropout(x, p=DROPOUT_P, training=True, mode=model.dropout_mode, mask=mask)


def forward_one_device(model, images: Tensor) -> Tensor:
    """Logits (N, num_classes) of the two-column ``model`` whose columns share one device."""
    device = model.devices[0]
    x = to_device(images, device, label="image -> column0")
    w, b = _stacked(model, "conv1")
    h = F.conv2d_relu(x, w, b, stride=model.preset_spec.conv1_stride,
                      padding=model.preset_spec.conv1_padding)
    h = max_pool(lrn_in_groups(h, 2))
    w, b = _stacked(model, "conv2")
    h = F.conv2d_relu(h, w, b, padding=CONV2_PADDING, groups=2)
    h = max_pool(lrn_in_groups(h, 2))
    w, b = _stacked(model, "conv3")                          # crossing 1: reads both halves
    h = F.conv2d_relu(h, w, b, padding=CONV345_PADDING)
    w, b = _stacked(model, "conv4")
    h = F.conv2d_relu(h, w, b, padding=CONV345_PADDING, groups=2)
    w, b = _stacked(model, "conv5")
    h = max_pool(F.conv2d_relu(h, w, b, padding=CONV345_PADDING, groups=2))
    h = h.reshape(h.shape[0], -1)                            # crossing 2: column 0's channels first
    h = _dropout(model, _fc_by_column(model, h, "fc6"), "fc6")
    h = _dropout(model, _fc_by_column(model, h, "fc7"), "fc7")   # crossing 3
    return model.fc8(h)                                      # crossing 4: fc8 reads both
