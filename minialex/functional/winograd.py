"""The CPU's wide stride-1 convolutions (AlexNet's conv2 at 5x5 and conv3-conv5 at 3x3, §3.5) by
Winograd's minimal filtering F(m x m, r x r) (Lavin & Gray, "Fast Algorithms for Convolutional
Neural Networks", 2016): F(3x3, 3x3) for 3x3 kernels, F(3x3, 5x5) for 5x5.

An m x m block of an r x r kernel's outputs reads the a x a tile of input under it, a = m + r - 1.
With constant matrices B (a x a), G (a x r) and A (a x m), the block is

    Y = A^T [ (G w G^T) * (B^T d B) ] A          * elementwise, over the a*a positions of a tile

a*a multiplications for m*m outputs where the plain sum takes m*m*r*r: 16 instead of 36 for
F(2x2, 3x3), 25 instead of 81 for F(3x3, 3x3), 49 instead of 225 for F(3x3, 5x5). Summed over the input channels, the products at
each position p are one matrix product over every tile of the batch:

    U[p] = (G w G^T)[p]   (K, C)        V[p] = (B^T d B)[p]   (C, tiles)
    M[p] = U[p] @ V[p]    (K, tiles)    a*a GEMMs: 25/81 of im2col's multiply-adds, or 49/225

so the conv is: ``unfold`` into a x a tiles at stride m, the three transforms (each a small
constant matrix: kron(B^T, B^T) maps a flattened tile to its a*a transformed values), the GEMMs,
and the m x m blocks put back in place. Where m does not divide a map's side, the last tiles
overhang its edge and their extra outputs are dropped (the paper's 13x13 maps at m = 3: 5x5
tiles, 33% more outputs than the map's; its 27x27 conv2 maps: 9x9 tiles, none).

Every step is linear, so the backward runs the transposed matrices in reverse:

    dM = A dY A^T      dU[p] = dM[p] @ V[p].T      dV[p] = U[p].T @ dM[p]
    dw = G^T dU G      dd = B dV B^T, added back over the overlapping tiles (``fold``)

``minimal_filter`` builds A, G and B from interpolation points (Toom-Cook): where the matrices
come from is the one idea of the method. Larger tiles save more multiplications but need more
points, and points further from 0 (2, 1/2) make the transforms' entries larger and the rounding
worse: float32 results differ from the im2col conv's by about 1e-6 of the largest output with
F(2x2, 3x3) and 5e-6 with F(3x3, 3x3) and F(3x3, 5x5) (the tests compare with ``conv2d_naive``
in float64).
``conv.Conv2d`` takes this path on the CPU for 3x3 and 5x5 stride-1 kernels with many channels
on large enough maps and batches (``conv_cpu.takes_winograd``: the paper's conv2-conv5), a few
images at a time; the GPU keeps im2col.
"""

from __future__ import annotations

import math

import numpy

from .. import cpu
from .activation import relu_backward
from .unfold import fold, unfold

#: The interpolation points, the first m + r - 2 of them, then infinity. Small numbers keep the
#: transforms' entries small: B's integers for F(2, 3) and G's 1/2; F(3, 5) adds 2, -2 and 1/2.
POINTS = (0, 1, -1, 2, -2, 0.5, -0.5)


def minimal_filter(m, r):
    """A^T (m, a), G (a, r) and B^T (a, a) of Winograd's F(m, r), a = m + r - 1 (Toom-Cook):
    for a tile d (a,) and a kernel w (r,), y = A^T [(G w) * (B^T d)] gives the m outputs
    y[i] = sum_k w[k] d[i + k].

    Why: y is the transpose of the polynomial product s(x) = u(x) w(x) (deg u = m - 1), which
    Toom-Cook computes by evaluating u and w at a points p_j (A^T's columns and G's rows are
    their powers, p_j^i), multiplying the values, and interpolating s back. Interpolation is
    B^T's transpose: by Lagrange, row j of B^T holds the coefficients of prod_{l != j} (x - p_l),
    and G's row j is divided by N_j = prod_{l != j} (p_j - p_l) to match (by its size, B^T's row
    taking its sign, so that G's entries are positive). Infinity stands for the leading
    coefficient: A^T's last column and G's last row pick the top coefficients, and B^T's last
    row is prod_l (x - p_l)."""
    a = m + r - 1
    points = POINTS[:a - 1]
    a_t, g, b_t = numpy.zeros((m, a)), numpy.zeros((a, r)), numpy.zeros((a, a))
    for j, p in enumerate(points):
        others = [q for q in points if q != p]
        norm = math.prod(p - q for q in others)
        a_t[:, j] = [p ** i for i in range(m)]
        g[j] = [p ** k / abs(norm) for k in range(r)]
        b_t[j, :a - 1] = numpy.sign(norm) * numpy.polynomial.polynomial.polyfromroots(others)
    b_t += 0.0                                               # -0 entries (0 times -1) as 0
    a_t[m - 1, a - 1] = g[a - 1, r - 1] = 1
    b_t[a - 1] = numpy.polynomial.polynomial.polyfromroots(points)
    return a_t, g, b_t


class Filter:
    """F(mxm, rxr): its 1-D matrices and the 2-D ones that act on flattened tiles and kernels,
    vec(P X Q) = kron(P, Q^T) @ vec(X) for X flattened row by row."""

    def __init__(self, m, r):
        self.m, self.r, self.a = m, r, m + r - 1
        self.A_T, self.G, self.B_T = minimal_filter(m, r)
        self.tile = numpy.kron(self.B_T, self.B_T)       # (a*a, a*a): vec(B^T d B)
        self.kernel = numpy.kron(self.G, self.G)         # (a*a, r*r): vec(G w G^T)
        self.output = numpy.kron(self.A_T, self.A_T)     # (m*m, a*a): vec(A^T M A)


#: The filters the CPU conv uses, by kernel size. Chosen by timing the paper's layers at batch 16,
#: forward + backward, 2 threads: conv2 took 0.52 of im2col's time by F(3x3, 5x5) and 0.78 by
#: F(2x2, 5x5); conv3-conv5 (13x13 maps: 5x5 tiles of 3x3, 33% more outputs than the map's) 0.93
#: of F(2x2, 3x3)'s time by F(3x3, 3x3), and 1.3-1.6 times as long by F(4x4, 3x3) (4x4 tiles of
#: 4x4: 51% more).
FILTERS = {3: Filter(3, 3), 5: Filter(3, 5)}
#: F(2, 3)'s matrices, the smallest example, as lesson 4 shows them.
A_T, G, B_T = minimal_filter(2, 3)


def _tiles(x, padding, th, tw, f):
    """x (N, C, H, W) zero-padded to (m*th + r - 1, m*tw + r - 1) and cut into a x a tiles at
    stride m: (C*a*a, th*tw*N), rows (c, tile row, tile column), columns in the order (ty, tx, n)."""
    n, c, h, w = x.shape
    xpad = numpy.zeros((n, c, f.m * th + f.r - 1, f.m * tw + f.r - 1), x.dtype)
    xpad[:, :, padding:padding + h, padding:padding + w] = x
    return unfold(xpad, f.a, f.m, 0, batch_last=True)


def _gemms(fn, groups, positions):
    """``fn(g, p)`` for every group g and tile position p, shared among the threads."""
    cpu.in_parallel(lambda item: fn(*item), [(g, p) for g in range(groups)
                                              for p in range(positions)])


def kernels(weight, f):
    """U = G w G^T of every kernel: weight (K, C/groups, r, r) -> (a*a, K, C/groups)."""
    k, cg = weight.shape[:2]
    return (f.kernel.astype(weight.dtype) @ weight.reshape(k * cg, -1).T).reshape(-1, k, cg)


def kernel_gradient(du, f):
    """dw = G^T dU G: (a*a, K, C/groups) -> (K, C/groups, r, r)."""
    k, cg = du.shape[1:]
    return (f.kernel.T.astype(du.dtype) @ du.reshape(len(du), -1)).T.reshape(k, cg, f.r, f.r)


def _blocks(f, oh, ow):
    """Each output offset (i, j) of an m x m block and the rows and columns of tiles that have
    it inside the map: (i, j, rows, columns); the rest overhangs and is dropped."""
    return [(i, j, (oh - i + f.m - 1) // f.m, (ow - j + f.m - 1) // f.m)
            for i in range(f.m) for j in range(f.m)]


def forward(x, u, f, bias, padding, groups, relu, y):
    """y = conv(x, w) + bias, then max(0, y) with ``relu``, for r x r kernels at stride 1.

    x (N, C, H, W), u = ``kernels(w, f)`` (a*a, K, C/groups), bias (K,) or None; writes y (N, K,
    OH, OW), OH = H + 2*padding - r + 1, and returns what ``backward`` needs: V (C, a*a, tiles)."""
    n, c, h, w = x.shape
    positions, k, cg = u.shape
    kg, (oh, ow) = k // groups, y.shape[2:]
    th, tw = -(-oh // f.m), -(-ow // f.m)
    t = th * tw * n
    v = numpy.empty((c, positions, t), x.dtype)
    tile = f.tile.astype(x.dtype)
    cpu.in_parallel(lambda s: numpy.matmul(tile, _tiles(x[:, s], padding, th, tw, f).reshape(
        -1, positions, t), out=v[s]), cpu.equal_slices(c, cpu.THREADS))                # V = B^T d B
    m = numpy.empty((positions, k, t), x.dtype)
    _gemms(lambda g, p: numpy.matmul(u[p, g * kg:(g + 1) * kg], v[g * cg:(g + 1) * cg, p],
                                     out=m[p, g * kg:(g + 1) * kg]), groups, positions)
    output = f.output.astype(x.dtype)

    def kernel_rows(s):                        # Y = A^T M A for kernels s, then into NCHW
        blocks = (output @ m.reshape(positions, -1)[:, s.start * t:s.stop * t]).reshape(
            f.m, f.m, s.stop - s.start, th, tw, n)
        if bias is not None:                   # bias and ReLU while the blocks are contiguous,
            blocks += bias[s, None, None, None]    # then one strided copy each
        if relu:
            numpy.maximum(blocks, 0, out=blocks)
        for i, j, rows, cols in _blocks(f, oh, ow):
            numpy.copyto(y[:, s, i::f.m, j::f.m],
                         blocks[i, j, :, :rows, :cols].transpose(3, 0, 1, 2))
    cpu.in_parallel(kernel_rows, cpu.pieces(k))
    return v


def backward(gy, x, u, f, y, v, padding, groups, gx):
    """dU (a*a, K, C/groups) and db (K,) of ``forward`` for the upstream gradient gy (N, K, OH,
    OW), and dx (N, C, H, W) written into ``gx`` unless it is None. ``y`` is the ReLU's output
    (None without one), ``v`` what ``forward`` returned; dw is ``kernel_gradient(dU, f)``."""
    n, c, h, w = x.shape
    positions, k, cg = u.shape
    kg, (oh, ow) = k // groups, gy.shape[2:]
    th, tw = -(-oh // f.m), -(-ow // f.m)
    t = th * tw * n
    dm = numpy.empty((positions, k, t), gy.dtype)
    gb = numpy.empty(k, gy.dtype)
    output_t = f.output.T.astype(gy.dtype)

    def kernel_rows(s):                        # dY for kernels s in blocks, then dM = A dY A^T
        # the ReLU's backward (dy where y > 0) over whole maps, then one strided copy per offset
        dy = gy[:, s] if y is None else relu_backward(y[:, s], gy[:, s])
        d_blocks = numpy.zeros((f.m, f.m, s.stop - s.start, th, tw, n), gy.dtype)  # overhang: 0
        for i, j, rows, cols in _blocks(f, oh, ow):
            numpy.copyto(d_blocks[i, j, :, :rows, :cols].transpose(3, 0, 1, 2),
                         dy[:, :, i::f.m, j::f.m])
        d_blocks = d_blocks.reshape(f.m * f.m, -1)
        gb[s] = d_blocks.reshape(f.m * f.m, -1, t).sum(axis=(0, 2))
        numpy.matmul(output_t, d_blocks, out=dm.reshape(positions, -1)[:, s.start * t:s.stop * t])
    cpu.in_parallel(kernel_rows, cpu.pieces(k))
    du = numpy.empty(u.shape, gy.dtype)
    _gemms(lambda g, p: numpy.matmul(dm[p, g * kg:(g + 1) * kg], v[g * cg:(g + 1) * cg, p].T,
                                     out=du[p, g * kg:(g + 1) * kg]), groups, positions)
    if gx is None:
        return du, gb
    dv = numpy.empty_like(v)
    _gemms(lambda g, p: numpy.matmul(u[p, g * kg:(g + 1) * kg].T, dm[p, g * kg:(g + 1) * kg],
                                     out=dv[g * cg:(g + 1) * cg, p]), groups, positions)
    tile_t = f.tile.T.astype(gy.dtype)

    def channels(s):                           # dd = B dV B^T, tiles added back in place
        dd = numpy.matmul(tile_t, dv[s]).reshape(-1, t)
        part = fold(dd, (n, s.stop - s.start, f.m * th + f.r - 1, f.m * tw + f.r - 1), f.a,
                    f.m, 0, batch_last=True)
        gx[:, s] = part[:, :, padding:padding + h, padding:padding + w]
    cpu.in_parallel(channels, cpu.equal_slices(c, cpu.THREADS))
    return du, gb
