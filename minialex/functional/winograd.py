"""The CPU's 3x3 stride-1 convolutions (AlexNet's conv3-conv5, §3.5) by Winograd's minimal
filtering F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).

A 2x2 block of a 3x3 kernel's outputs reads the 4x4 tile of input under it. With the constant
matrices B (4x4), G (4x3) and A (4x2) below, the block is

    Y = A^T [ (G w G^T) * (B^T d B) ] A          * elementwise, over the 16 positions of a tile

16 multiplications for 4 outputs where the plain sum takes 36. Summed over the input channels, the
products at each position p of the 16 are one matrix product over every tile of the batch:

    U[p] = (G w G^T)[p]   (K, C)        V[p] = (B^T d B)[p]   (C, tiles)
    M[p] = U[p] @ V[p]    (K, tiles)    16 GEMMs, 4/9 of im2col's multiply-adds

so the conv is: ``unfold`` into 4x4 tiles at stride 2, the three transforms (each a small
constant matrix: kron(B^T, B^T) maps a flattened tile to its 16 transformed values), 16 GEMMs,
and the 2x2 blocks put back in place. A map of odd size gets tiles that overhang its edge; their
extra outputs are dropped (13x13 maps: 7x7 tiles, 16% more work than exact).

Every step is linear, so the backward runs the transposed matrices in reverse:

    dM = A dY A^T      dU[p] = dM[p] @ V[p].T      dV[p] = U[p].T @ dM[p]
    dw = G^T dU G      dd = B dV B^T, added back over the overlapping tiles (``fold``)

The results equal the im2col conv's up to rounding (float32: about 1e-6 relative; the tests
compare with ``conv2d_naive`` in float64). ``conv.Conv2d`` takes this path on the CPU for 3x3,
stride 1 kernels with many channels on large enough maps and batches
(``conv_cpu.takes_winograd``: the paper's conv3-conv5), a few images at a time; the GPU keeps
im2col.
"""

from __future__ import annotations

import numpy

from .. import cpu
from .activation import relu_backward
from .unfold import fold, unfold

B_T = numpy.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
G = numpy.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
A_T = numpy.array([[1, 1, 1, 0], [0, 1, -1, -1]])
# For a tile flattened row by row, vec(P X Q) = kron(P, Q^T) @ vec(X):
TILE = numpy.kron(B_T, B_T)          # (16, 16): vec(B^T d B) = TILE @ vec(d)
KERNEL = numpy.kron(G, G)            # (16, 9):  vec(G w G^T) = KERNEL @ vec(w)
OUTPUT = numpy.kron(A_T, A_T)        # (4, 16):  vec(A^T M A) = OUTPUT @ vec(M)


def _tiles(x, padding, th, tw):
    """x (N, C, H, W) zero-padded to (2*th + 2, 2*tw + 2) and cut into 4x4 tiles at stride 2:
    (C*16, th*tw*N), rows (c, tile row, tile column), columns in the order (ty, tx, n)."""
    n, c, h, w = x.shape
    xpad = numpy.zeros((n, c, 2 * th + 2, 2 * tw + 2), x.dtype)
    xpad[:, :, padding:padding + h, padding:padding + w] = x
    return unfold(xpad, 4, 2, 0, batch_last=True)


def _gemms(fn, groups):
    """``fn(g, p)`` for every group g and tile position p, shared among the threads."""
    cpu.in_parallel(lambda item: fn(*item), [(g, p) for g in range(groups) for p in range(16)])


def kernels(weight):
    """U = G w G^T of every kernel: weight (K, C/groups, 3, 3) -> (16, K, C/groups)."""
    k, cg = weight.shape[:2]
    return (KERNEL.astype(weight.dtype) @ weight.reshape(k * cg, 9).T).reshape(16, k, cg)


def kernel_gradient(du):
    """dw = G^T dU G: (16, K, C/groups) -> (K, C/groups, 3, 3)."""
    k, cg = du.shape[1:]
    return (KERNEL.T.astype(du.dtype) @ du.reshape(16, -1)).T.reshape(k, cg, 3, 3)


def forward(x, u, bias, padding, groups, relu, y):
    """y = conv(x, w) + bias, then max(0, y) with ``relu``, for 3x3 kernels at stride 1.

    x (N, C, H, W), u = ``kernels(w)`` (16, K, C/groups), bias (K,) or None; writes y (N, K, OH,
    OW), OH = H + 2*padding - 2, and returns what ``backward`` needs: V (C, 16, tiles)."""
    n, c, h, w = x.shape
    k, kg, cg = u.shape[1], u.shape[1] // groups, u.shape[2]
    oh, ow = y.shape[2:]
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    t = th * tw * n
    v = numpy.empty((c, 16, t), x.dtype)
    tile = TILE.astype(x.dtype)
    cpu.in_parallel(lambda s: numpy.matmul(tile, _tiles(x[:, s], padding, th, tw).reshape(
        -1, 16, t), out=v[s]), cpu.equal_slices(c, cpu.THREADS))                                  # V = B^T d B
    m = numpy.empty((16, k, t), x.dtype)
    _gemms(lambda g, p: numpy.matmul(u[p, g * kg:(g + 1) * kg], v[g * cg:(g + 1) * cg, p],
                                     out=m[p, g * kg:(g + 1) * kg]), groups)
    output = OUTPUT.astype(x.dtype)

    def kernel_rows(s):                        # Y = A^T M A for kernels s, then into NCHW
        blocks = (output @ m.reshape(16, -1)[:, s.start * t:s.stop * t]).reshape(
            2, 2, s.stop - s.start, th, tw, n)
        for a in (0, 1):                       # each block's (a, b) output; overhang dropped
            for b in (0, 1):
                part = blocks[a, b, :, :(oh - a + 1) // 2, :(ow - b + 1) // 2]
                out = y[:, s, a::2, b::2]
                numpy.add(part.transpose(3, 0, 1, 2), 0 if bias is None else
                          bias[s, None, None], out=out)
                if relu:
                    numpy.maximum(out, 0, out=out)
    cpu.in_parallel(kernel_rows, cpu.equal_slices(k, cpu.THREADS))
    return v


def backward(gy, x, u, y, v, padding, groups, gx):
    """dU (16, K, C/groups) and db (K,) of ``forward`` for the upstream gradient gy (N, K, OH,
    OW), and dx (N, C, H, W) written into ``gx`` unless it is None. ``y`` is the ReLU's output
    (None without one), ``v`` what ``forward`` returned; dw is ``kernel_gradient(dU)``."""
    n, c, h, w = x.shape
    k, kg, cg = u.shape[1], u.shape[1] // groups, u.shape[2]
    oh, ow = gy.shape[2:]
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    t = th * tw * n
    dm = numpy.empty((16, k, t), gy.dtype)
    gb = numpy.empty(k, gy.dtype)
    output_t = OUTPUT.T.astype(gy.dtype)

    def kernel_rows(s):                        # dY for kernels s in blocks, then dM = A dY A^T
        d_blocks = numpy.zeros((2, 2, s.stop - s.start, th, tw, n), gy.dtype)  # overhang: 0
        for a in (0, 1):
            for b in (0, 1):
                into = d_blocks[a, b, :, :(oh - a + 1) // 2, :(ow - b + 1) // 2]
                into = into.transpose(3, 0, 1, 2)
                if y is None:
                    numpy.copyto(into, gy[:, s, a::2, b::2])
                else:                          # the ReLU's backward: dy where y > 0
                    relu_backward(y[:, s, a::2, b::2], gy[:, s, a::2, b::2], out=into)
        d_blocks = d_blocks.reshape(4, -1)
        gb[s] = d_blocks.reshape(4, -1, t).sum(axis=(0, 2))
        numpy.matmul(output_t, d_blocks, out=dm.reshape(16, -1)[:, s.start * t:s.stop * t])
    cpu.in_parallel(kernel_rows, cpu.equal_slices(k, cpu.THREADS))
    du = numpy.empty(u.shape, gy.dtype)
    _gemms(lambda g, p: numpy.matmul(dm[p, g * kg:(g + 1) * kg], v[g * cg:(g + 1) * cg, p].T,
                                     out=du[p, g * kg:(g + 1) * kg]), groups)
    if gx is None:
        return du, gb
    dv = numpy.empty_like(v)
    _gemms(lambda g, p: numpy.matmul(u[p, g * kg:(g + 1) * kg].T, dm[p, g * kg:(g + 1) * kg],
                                     out=dv[g * cg:(g + 1) * cg, p]), groups)
    tile_t = TILE.T.astype(gy.dtype)

    def channels(s):                           # dd = B dV B^T, tiles added back in place
        dd = numpy.matmul(tile_t, dv[s]).reshape(-1, t)
        part = fold(dd, (n, s.stop - s.start, 2 * th + 2, 2 * tw + 2), 4, 2, 0, batch_last=True)
        gx[:, s] = part[:, :, padding:padding + h, padding:padding + w]
    cpu.in_parallel(channels, cpu.equal_slices(c, cpu.THREADS))
    return du, gb
