"""How the CPU runs ``conv.Conv2d``: chunks of the batch, threads, GEMM blocks and Winograd.

``conv.py`` says what a convolution computes, for a few images at a time: unfold, one GEMM per
group, bias and ReLU, and back again (dW = dY @ cols.T, dcols = W.T @ dY, dx = fold(dcols)). This
module decides how the CPU runs it fast, as ``kernels/conv_gpu.py`` does for the GPU, and every
number in it was measured (the comments say where):

- ``chunks``: the batch goes through a few images at a time (``CHUNK_BYTES`` of unfolded columns),
  so that the columns, the GEMM's output and the move to NCHW stay in the cache; the chunks go to
  the threads (``cpu.in_parallel``) when the conv is large enough (``SPLIT_MACS``).
- ``keeps_columns``: whether the backward reuses the forward's columns or unfolds them again.
- ``matmul`` and ``matmul_bt``: a GEMM with few kernels takes its columns in blocks (``GEMM_BLOCK``).
- ``winograd_batch``, ``takes_winograd``, ``winograd_forward``/``winograd_backward``: wide 3x3
  and 5x5 stride-1 convolutions (the paper's conv2-conv5) take Winograd's F(3x3, 3x3) and
  F(3x3, 5x5) (``winograd.py``), 25/81 and 49/225 of the multiply-adds, a few images at a time
  (``WINOGRAD_TILES``).

Nothing here changes the result's bits with the thread count: the batch is cut the same way on
any number of threads, the chunks' and parts' gradients are summed in the batch's order
(``summed``), and the column blocks' in the columns' order.
"""

from __future__ import annotations

import numpy

from ..cpu import batch_parts, equal_slices
from . import winograd

#: The CPU conv works through the batch a few images at a time, so that each chunk's unfolded
#: columns (about this many bytes) stay in the cache while the GEMMs and the layout change read them.
CHUNK_BYTES = 4 << 20

#: A convolution whose columns fit one chunk is shared among the threads only when its GEMMs
#: have at least this many multiply-adds (N*OH*OW*weight.size, about 0.2 ms on one core). Waking
#: a thread and passing the GIL back and forth cost tens of microseconds each here, so tiny's
#: conv2-conv5 (1-4 million) ran slower on two threads than on one, and the tiny step took 18%
#: less time once they stopped splitting. No conv of mini, fashion or paper at their batches
#: (64 and up; paper 16) is under the line.
SPLIT_MACS = 8 << 20

#: The CPU computes 3x3 and 5x5 stride-1 convolutions by Winograd's minimal filtering
#: (winograd.py: F(3x3, 3x3) and F(3x3, 5x5)) when each group has at least
#: WINOGRAD_MIN_CHANNELS[r] input and output channels, the output maps are at least
#: WINOGRAD_MIN_SIZE on a side and the batch makes WINOGRAD_MIN_TILES[r] output tiles. The
#: transforms are passes over memory that only many channels repay.
#: - 3x3: the paper's conv3-conv5 (13x13 maps, 192-384 channels a group) took 73, 68 and 53 ms
#:   instead of 103, 88 and 62 by F(2x2, 3x3) (forward + backward in the training step, batch 16,
#:   2 threads), and F(3x3, 3x3) (25 tiles an image) 0.93 of that. mini's conv3 (64 in, 96 out,
#:   5x5 maps) took 17 ms instead of 10, and with those channels even 11x11 maps were slower. The
#:   GEMMs need enough tiles: at batch 8 (200 tiles) conv3-conv5's forward took 0.82-0.95 of
#:   im2col's time and their backward 0.55-0.71; at batch 2 their forwards took up to 1.36 times
#:   as long (the backward still less).
#: - 5x5: the paper's conv2 (27x27 maps: 81 tiles of 3x3 an image, 48 channels in and 128 out a
#:   column) took 12 + 18 ms instead of 18 + 40 (forward + backward, one column, batch 16, 2
#:   threads), and less than im2col from batch 1 on (2.3 + 2.8 ms against 2.6 + 4.8). mini's and
#:   fashion's conv2 (12 in, 32 out, 11x11 maps, batch 128) took 9 + 12 ms instead of 5 + 10.
WINOGRAD, WINOGRAD_MIN_SIZE = True, 6
WINOGRAD_MIN_CHANNELS = {3: 128, 5: 48}
WINOGRAD_MIN_TILES = {3: 200, 5: 1}
#: Winograd takes the batch a few images at a time, at most about this many tiles each, so that
#: its arrays stay nearer the cores: the paper's step at batch 128 took 0.91 of im2col's time so
#: (0.96 with the whole batch at once), and 0.34 GB more memory at its peak instead of 0.67 (by
#: F(2x2, 3x3), 2048 tiles of 2x2). The paper's conv2 at batch 16 took 0.75 of the time in one
#: part of 16 images that it took in two of 8.
WINOGRAD_TILES = {3: 2048, 5: 1296}

#: The forward keeps its unfolded columns for the backward (which otherwise unfolds each chunk
#: again) when they take at most KEEP_BYTES in all: the small presets' convolutions at batch 128
#: (mini's and fashion's conv1, 40 MB, and conv2, 37 MB; all of tiny's, 12 MB), not the paper's
#: conv1 and conv2 (70 and 112 MB at batch 16). The same bits either way. The whole step against
#: unfolding again (2 threads; paired runs of benchmarks/ab_constant.py and cpu_step.py --baseline,
#: 10-40 rounds each, which scattered by several percent): mini 0.90-1.04, median of five runs
#: 0.95; fashion 0.91-0.98; tiny 0.85-1.11 (its step is 12-16 ms); the paper's step, had it kept
#: its conv1 and conv2 columns too, 1.08-1.10: there one image's columns are re-unfolded while
#: they are in the cache, for GEMMs that take five times as long, and kept ones come from memory.
KEEP_BYTES = 64 << 20

#: OpenBLAS packs a GEMM's whole columns operand before it multiplies. With few kernels per
#: group (tiny's 3-6) the product itself is so short that this packing, which outgrows the L2
#: cache, is most of the time, so such GEMMs take GEMM_BLOCK columns at a time: tiny's conv1
#: (6 kernels, 7,200 columns a chunk) then took 0.08 ms instead of 0.14 forward and 0.09 instead
#: of 0.21 for the weights' gradient (one core). From BLOCKED_BELOW kernels (mini's 24 and up,
#: the paper's) blocks were no faster and are not used.
GEMM_BLOCK, BLOCKED_BELOW = 2048, 16


# --------------------------------------------------------------------------------------------
# im2col + GEMM: chunks of the batch and blocks of columns
# --------------------------------------------------------------------------------------------

def chunks(x_shape, weight_shape, out_hw, itemsize):
    """Slices of the batch whose unfolded columns take about ``CHUNK_BYTES`` each; a small conv
    (under ``SPLIT_MACS`` multiply-adds) is one slice. Shapes: x (N, C, H, W), weight (K, C/groups,
    kh, kw), out_hw (OH, OW). The backward adds the slices' dW and db up, so the cut is the same
    whatever the thread count (``summed``): one thread and two give the same bits."""
    n, (oh, ow) = x_shape[0], out_hw
    per_kernel = int(numpy.prod(weight_shape[1:]))                  # C/groups * kh * kw
    return batch_parts(n, per_kernel * oh * ow * itemsize, CHUNK_BYTES, summed=True,
                       small=n * oh * ow * weight_shape[0] * per_kernel < SPLIT_MACS)


def keeps_columns(x_shape, weight_shape, out_hw, itemsize):
    """Whether the forward keeps its columns for the backward: all of them (C*kh*kw rows, N*OH*OW
    columns) take at most KEEP_BYTES."""
    n, c, (oh, ow) = x_shape[0], x_shape[1], out_hw
    return n * c * weight_shape[2] * weight_shape[3] * oh * ow * itemsize <= KEEP_BYTES


def column_blocks(kernels, width):
    """The slices of a GEMM's ``width`` columns that one call takes (see ``GEMM_BLOCK``)."""
    step = GEMM_BLOCK if kernels < BLOCKED_BELOW else width
    return [slice(start, start + step) for start in range(0, width, step)]


def matmul(a, b, out, kernels):
    """out = a @ b for a (R, D), b (D, M), in blocks of b's columns when the conv's group has
    few ``kernels`` (R in the forward's W @ cols, D in the backward's W.T @ dY)."""
    for s in column_blocks(kernels, b.shape[1]):
        numpy.matmul(a, b[:, s], out=out[:, s])
    return out


def matmul_bt(a, b):
    """a @ b.T, a (K, M), b (D, M) -> (K, D), summed over b's column blocks in order.

    Computed as (b @ a.T).T: the same product, faster in OpenBLAS (the weights' gradient,
    dW = dY @ cols.T, with few kernels and many columns). Returns a transposed view."""
    blocks = column_blocks(a.shape[0], b.shape[1])
    out = b[:, blocks[0]] @ a[:, blocks[0]].T
    for s in blocks[1:]:
        out += b[:, s] @ a[:, s].T
    return out.T


def summed(parts):
    """Each part's tuple of gradients summed over the parts, in the batch's order (deterministic)."""
    total = list(parts[0])
    for part in parts[1:]:
        for i, value in enumerate(part):
            total[i] += value
    return total


# --------------------------------------------------------------------------------------------
# Winograd's minimal filtering for the wide 3x3 and 5x5 convolutions
# --------------------------------------------------------------------------------------------

def winograd_tiles(out_hw, m):
    """m x m output tiles per image: ceil(OH / m) * ceil(OW / m)."""
    return -(-out_hw[0] // m) * -(-out_hw[1] // m)


def winograd_batch(kernel_hw, stride, kernels, channels, out_hw):
    """The smallest batch from which a conv (``kernels`` and ``channels`` per group, output
    maps ``out_hw``) takes winograd.py on the CPU, or None if it never does (``WINOGRAD``)."""
    r = kernel_hw[0]
    if not (WINOGRAD and tuple(kernel_hw) in ((3, 3), (5, 5)) and tuple(stride) == (1, 1)
            and min(kernels, channels) >= WINOGRAD_MIN_CHANNELS[r]
            and min(out_hw) >= WINOGRAD_MIN_SIZE):
        return None
    return -(-WINOGRAD_MIN_TILES[r] // winograd_tiles(out_hw, winograd.FILTERS[r].m))


def takes_winograd(x_shape, weight_shape, stride, padding, groups, out_hw):
    """3x3 or 5x5 kernels at stride 1 and equal padding, wide enough for winograd.py to pay."""
    batch = winograd_batch(weight_shape[2:], stride, weight_shape[0] // groups, weight_shape[1],
                           out_hw)
    return padding[0] == padding[1] and batch is not None and x_shape[0] >= batch


def winograd_parts(n, out_hw, r):
    """Equal slices of a batch of ``n`` with at most about WINOGRAD_TILES[r] tiles each."""
    return equal_slices(n, min(n, -(-n * winograd_tiles(out_hw, winograd.FILTERS[r].m)
                                   // WINOGRAD_TILES[r])))


def winograd_forward(x, weight, bias, padding, groups, relu, y):
    """y = conv(x, weight) + bias (then the ReLU) by winograd.py, a few images at a time; returns
    what ``winograd_backward`` needs: U = G w G^T and each part's (slice, V)."""
    f = winograd.FILTERS[weight.shape[2]]
    u = winograd.kernels(weight, f)
    return u, f, [(part, winograd.forward(x[part], u, f, bias, padding, groups, relu, y[part]))
                  for part in winograd_parts(x.shape[0], y.shape[2:], f.r)]


def winograd_backward(saved, gy, x, y, padding, groups, gx):
    """(dW, db) of ``winograd_forward``; dx into ``gx`` unless it is None. ``y``: the ReLU's
    output (its mask), or None without a ReLU."""
    u, f, parts = saved
    du, gb = summed([winograd.backward(gy[part], x[part], u, f, None if y is None else y[part],
                                       v, padding, groups, None if gx is None else gx[part])
                     for part, v in parts])
    return winograd.kernel_gradient(du, f), gb
