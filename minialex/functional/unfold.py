"""unfold and fold: a batch of images as the columns of a matrix, and back (paper §3.5's
convolutions, computed as matrix products).

``unfold`` (im2col in the transposed layout) copies every kh x kw x C receptive field of a
(N, C, H, W) batch into one column of a (C*kh*kw, N*OH*OW) matrix, so that a convolution becomes
one matrix product, W (K, C*kh*kw) @ cols. ``fold`` (col2im) is its adjoint: every input pixel
receives the sum of the column entries that copied it, which is the convolution's backward pass
for the input. ``conv.py`` builds conv2d on them (and the textbook-layout ``im2col``/``col2im``),
``winograd.py`` its 4x4 tiles. NumPy only; on a GPU CUDA kernels do the same
(``minialex/kernels/conv.cu``).
"""

from __future__ import annotations

import numpy

from .utils import output_size, pair


def _geometry(op, x_shape, kernel_size, stride, padding):
    """((N, C, H, W), (kh, kw, sh, sw, ph, pw) as the kernels take them, (OH, OW))."""
    kh, kw = pair(kernel_size, op, "kernel_size")
    (sh, sw), (ph, pw) = pair(stride, op, "stride"), pair(padding, op, "padding")
    n, c, h, w = (int(s) for s in x_shape)
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    if oh < 1 or ow < 1:
        raise ValueError(f"{op}: kernel {(kh, kw)} is larger than the padded input "
                         f"{(h + 2 * ph, w + 2 * pw)} (input shape {(n, c, h, w)}, padding {(ph, pw)})")
    return (n, c, h, w), (kh, kw, sh, sw, ph, pw), (oh, ow)


def unfold(x, kernel_size, stride, padding, batch_last=False):
    """im2col in the transposed layout: (N, C, H, W) -> (C*kh*kw, N*OH*OW) = ``im2col(x).T``.

    Row (c, i, j) holds xpad[n, c, oy*sh + i, ox*sw + j] for every output position, in the order
    (n, oy, ox), or (oy, ox, n) with ``batch_last``: a strided view of the padded input, then one
    copy. This is the layout conv2d computes in (on the CPU and, with a CUDA kernel, on the GPU):
    W (K, C*kh*kw) @ cols gives the output with kernels in rows. The CPU conv takes the batch-last
    order: with stride 1 every copy here (and add in ``fold``) runs over OW*N contiguous values,
    not OW, and at any stride over N.
    """
    (n, c, h, w), (kh, kw, sh, sw, ph, pw), (oh, ow) = _geometry("im2col", x.shape, kernel_size,
                                                                  stride, padding)
    if batch_last:                      # memory (C, Hp, Wp, N): the padded copy moves the batch
        xpad = (numpy.zeros if ph or pw else numpy.empty)((c, h + 2 * ph, w + 2 * pw, n), x.dtype)
        xpad[:, ph:ph + h, pw:pw + w] = x.transpose(1, 2, 3, 0)
        cols = view = numpy.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)
    else:                               # memory (N, C, Hp, Wp)
        xpad = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw))) if (ph or pw) else x
        xpad = xpad.transpose(1, 2, 3, 0)
        cols = numpy.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
        view = cols.transpose(0, 1, 2, 4, 5, 3)
    # windows[c, i, j, oy, ox, n] = xpad[c, oy*sh + i, ox*sw + j, n]: the same memory read
    # through other strides (a step of oy moves sh rows), no copy yet.
    sc, sy, sx, sn = xpad.strides
    windows = numpy.lib.stride_tricks.as_strided(
        xpad, (c, kh, kw, oh, ow, n), (sc, sy, sx, sy * sh, sx * sw, sn), writeable=False)
    numpy.copyto(view, windows)                                                # the one copy
    return cols.reshape(c * kh * kw, n * oh * ow)


def fold(cols, x_shape, kernel_size, stride, padding, batch_last=False):
    """The adjoint of ``unfold``: (C*kh*kw, N*OH*OW) -> (N, C, H, W), summing overlaps.

    dx[n, c, y, x] = sum of every column entry that ``unfold`` copied from xpad[n, c, y+ph, x+pw]:
    one strided add per kernel offset (i, j), kh*kw adds in all. Returns a (N, C, H, W) view of a
    channels-first array (the caller copies it where it goes).
    """
    (n, c, h, w), (kh, kw, sh, sw, ph, pw), (oh, ow) = _geometry("col2im", x_shape, kernel_size,
                                                                  stride, padding)
    hp, wp = h + 2 * ph, w + 2 * pw
    if batch_last:                      # (C, kh, kw, OH, OW, N) into (C, Hp, Wp, N)
        parts = cols.reshape(c, kh, kw, oh, ow, n)
        xpad = numpy.zeros((c, hp, wp, n), dtype=cols.dtype)
    else:                               # the same views of (C, kh, kw, N, OH, OW), (C, N, Hp, Wp)
        parts = cols.reshape(c, kh, kw, n, oh, ow).transpose(0, 1, 2, 4, 5, 3)
        xpad = numpy.zeros((c, n, hp, wp), dtype=cols.dtype).transpose(0, 2, 3, 1)
    for i in range(kh):                 # overlapping windows: each offset adds its share
        for j in range(kw):
            xpad[:, i:i + sh * oh:sh, j:j + sw * ow:sw] += parts[:, i, j]
    return xpad[:, ph:ph + h, pw:pw + w].transpose(3, 0, 1, 2)
