"""conv2d on a GPU: im2col in the *transposed* layout, cuBLAS GEMMs, and col2im as a gather.

The same convolution as the CPU path in functional/conv.py (and the same formula), arranged for a GPU:

    colsT_g = im2col_t(x, group g)          (C/groups*kh*kw, N*OH*OW)    = cols_g.T
    Y^T[g]  = W_g @ colsT_g                 (K/groups, N*OH*OW)          one 2-D GEMM per group
    y       = knp_to_nchw(Y^T) + bias       (N, K, OH, OW)               one pass
    y       = max(0, y)                     in the same pass, for conv2d_relu

and backward, with dY^T = nchw_to_knp(dy) (K, N*OH*OW) (for conv2d_relu, dy * [y > 0] in the same
pass):

    dW_g     = dY^T[g] @ colsT_g.T          (K/groups, C/groups*kh*kw)
    dcolsT_g = W_g.T @ dY^T[g]              (C/groups*kh*kw, N*OH*OW)
    dx[:, g] = col2im_t(dcolsT_g)           summed over overlapping windows, no atomics
    db       = dY^T summed over its rows

Why this layout: in colsT neighbouring GPU threads handle neighbouring output positions, so the
im2col reads and writes and the col2im reads are coalesced, and every GEMM reads its operands
as they lie (a transposed operand is a flag to cuBLAS, not a copy). All GEMMs are 2-D, where
CuPy applies TF32 when asked (docs/performance.md); the shared dimension C/groups*kh*kw is padded to a
multiple of 8 (``PAD_K``) so that the operands' rows are aligned. The columns are *recomputed* in
the backward pass instead of being kept from the forward: for AlexNet at batch 128 they would hold about 2.4 GB
(conv1's alone are 560 MB), and unfolding again costs a fraction of a millisecond.
"""

from __future__ import annotations

from . import launch as kernels
from .launch import output_size
from ..backend import cupy


#: The GEMMs' shared dimension C/groups*kh*kw is padded with zero rows (in the columns) and zero
#: columns (in the weights) up to a multiple of this many elements, so that every row of every
#: GEMM operand starts on a 32-byte boundary, as cuBLAS's fastest kernels (and its TF32
#: tensor-core kernels) want. Only conv1 needs it (3*11*11 = 363 -> 368); conv2..conv5 are
#: multiples of 8 already. The zeros add nothing to any product. 1 turns padding off
#: (``python benchmarks/gpu_step.py --compare no-pad-k`` times both).
PAD_K = 8


def padded_k(ckk: int) -> int:
    """ckk rounded up to a multiple of PAD_K."""
    return -(-ckk // PAD_K) * PAD_K if PAD_K > 1 else ckk


def weight_matrix(weight, g, kg, kp):
    """Group g's kernels as a (K/groups, kp) matrix: weight rows flattened, zero columns after
    C/groups*kh*kw (a view when there is nothing to pad)."""
    wg = weight[g * kg:(g + 1) * kg].reshape(kg, -1)
    if wg.shape[1] == kp:
        return wg
    out = cupy.zeros((kg, kp), dtype=weight.dtype)
    out[:, :wg.shape[1]] = wg
    return out


def conv2d_forward(x, weight, bias, stride, padding, groups, relu=False):
    """y (N, K, OH, OW) for x (N, C, H, W) and weight (K, C/groups, kh, kw), on CuPy arrays;
    max(0, y) if ``relu``."""
    n, c, h, w = x.shape
    k, cg, kh, kw = weight.shape
    kg, kp = k // groups, padded_k(cg * kh * kw)
    (sh, sw), (ph, pw) = stride, padding
    oh, ow = output_size(h, kh, sh, ph), output_size(w, kw, sw, pw)
    x = cupy.ascontiguousarray(x)
    yt = cupy.empty((k, n * oh * ow), dtype=x.dtype)
    for g in range(groups):
        cols = kernels.im2col_t(x, g * cg, cg, kh, kw, sh, sw, ph, pw, oh, ow, rows=kp)
        cupy.matmul(weight_matrix(weight, g, kg, kp), cols, out=yt[g * kg:(g + 1) * kg])  # the GEMM
        del cols
    b = bias if bias is not None else cupy.zeros((k,), dtype=x.dtype)
    return kernels.knp_to_nchw(yt, b, n, k, oh * ow, relu).reshape(n, k, oh, ow)


def conv2d_backward(x, weight, gy, stride, padding, groups, need_gx, need_bias, relu_output=None):
    """(dx or None, dW, db or None) for the forward above; x is the saved input, and
    ``relu_output`` the saved output y when the forward applied the ReLU (dy counts where y > 0)."""
    n, c, h, w = x.shape
    k, cg, kh, kw = weight.shape
    ckk = cg * kh * kw
    kg, kp = k // groups, padded_k(ckk)
    (sh, sw), (ph, pw) = stride, padding
    oh, ow = gy.shape[2], gy.shape[3]
    mask = None if relu_output is None else relu_output.reshape(n, k, oh * ow)
    gyt = kernels.nchw_to_knp(gy.reshape(n, k, oh * ow), mask)    # (K, N*OH*OW)
    gw = cupy.empty_like(weight)
    gx = cupy.empty_like(x) if need_gx else None
    for g in range(groups):
        gyt_g = gyt[g * kg:(g + 1) * kg]
        cols = kernels.im2col_t(x, g * cg, cg, kh, kw, sh, sw, ph, pw, oh, ow, rows=kp)  # again
        gw_g = gw[g * kg:(g + 1) * kg].reshape(kg, ckk)
        if kp == ckk:
            cupy.matmul(gyt_g, cols.T, out=gw_g)                  # straight into dW
        else:
            gw_g[...] = (gyt_g @ cols.T)[:, :ckk]                 # the padded columns are 0
        del cols
        if need_gx:
            dcols = weight_matrix(weight, g, kg, kp).T @ gyt_g     # (kp, N*OH*OW)
            kernels.col2im_t(dcols[:ckk], gx, g * cg, cg, kh, kw, sh, sw, ph, pw, oh, ow)
            del dcols
    gb = gyt.sum(axis=1) if need_bias else None
    return gx, gw, gb
