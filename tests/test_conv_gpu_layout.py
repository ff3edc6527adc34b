"""The GPU conv2d's algebra (minialex/kernels/conv_gpu.py), checked on any machine.

conv_gpu.py arranges the convolution as transposed columns, kernel-major GEMM outputs and layout
changes done by CUDA kernels. Here each kernel is replaced by its NumPy definition (im2col_t is
im2col(...).T, and so on) and CuPy by NumPy, so the orchestration (group offsets, which GEMM
reads which operand, the layout changes, the bias) is tested in CI without a GPU; the CUDA kernels
themselves are compared with the same definitions by the gpu-marked tests in test_conv.py.
"""

import types

import numpy
import pytest

import minialex.functional as F
from minialex import Tensor
from minialex.kernels import conv_gpu
from minialex.functional.conv import col2im, im2col


def im2col_t(x, c_offset, cg, kh, kw, sh, sw, ph, pw, oh, ow, rows=None):
    cols = im2col(x[:, c_offset:c_offset + cg], (kh, kw), (sh, sw), (ph, pw)).T
    rows = cols.shape[0] if rows is None else rows
    return numpy.concatenate([cols, numpy.zeros((rows - cols.shape[0], cols.shape[1]))])


def col2im_t(cols, out, c_offset, cg, kh, kw, sh, sw, ph, pw, oh, ow):
    n, _, h, w = out.shape
    out[:, c_offset:c_offset + cg] = col2im(numpy.ascontiguousarray(cols.T), (n, cg, h, w),
                                            (kh, kw), (sh, sw), (ph, pw))
    return out


def knp_to_nchw(src, bias, n, k, p, relu=False):
    y = src.reshape(k, n, p).transpose(1, 0, 2) + bias[None, :, None]
    return numpy.maximum(y, 0) if relu else y


def nchw_to_knp(src, relu_output=None):
    n, k, p = src.shape
    if relu_output is not None:
        src = numpy.where(relu_output > 0, src, 0)
    return numpy.ascontiguousarray(src.transpose(1, 0, 2).reshape(k, n * p))


@pytest.fixture
def numpy_standins(monkeypatch):
    fake = types.SimpleNamespace(im2col_t=im2col_t, col2im_t=col2im_t, knp_to_nchw=knp_to_nchw,
                                 nchw_to_knp=nchw_to_knp)
    monkeypatch.setattr(conv_gpu, "kernels", fake)
    monkeypatch.setattr(conv_gpu, "cupy", numpy)


@pytest.mark.parametrize("shape,wshape,stride,padding,groups", [
    ((2, 3, 23, 23), (4, 3, 11, 11), (4, 4), (0, 0), 1),     # conv1's geometry, small: K 363 -> 368
    ((2, 4, 9, 7), (6, 2, 5, 5), (1, 1), (2, 2), 2),         # conv2: 5x5, pad 2, two groups: K 50 -> 56
    ((3, 6, 5, 6), (4, 3, 3, 3), (2, 1), (1, 0), 2),         # odd strides and paddings: K 27 -> 32
    ((2, 8, 6, 6), (4, 4, 2, 2), (1, 1), (0, 0), 2),         # K = 16: nothing to pad
])
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("relu", [False, True], ids=["conv2d", "conv2d_relu"])
def test_gpu_arrangement_equals_cpu_conv(numpy_standins, shape, wshape, stride, padding, groups,
                                         with_bias, relu):
    rng = numpy.random.default_rng(7)
    x = rng.standard_normal(shape)
    w = rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[0]) if with_bias else None

    y_gpu = conv_gpu.conv2d_forward(x, w, b, stride, padding, groups, relu)
    xt, wt = Tensor(x, requires_grad=True), Tensor(w, requires_grad=True)
    bt = Tensor(b, requires_grad=True) if with_bias else None
    y = (F.conv2d_relu if relu else F.conv2d)(xt, wt, bt, stride, padding, groups)
    mask = y.data if relu else None
    numpy.testing.assert_allclose(y_gpu, y.data, rtol=1e-12, atol=1e-12)

    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    gx, gw, gb = conv_gpu.conv2d_backward(x, w, gy, stride, padding, groups, True, with_bias, mask)
    numpy.testing.assert_allclose(gx, xt.grad, rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(gw, wt.grad, rtol=1e-12, atol=1e-12)
    if with_bias:
        numpy.testing.assert_allclose(gb, bt.grad, rtol=1e-12, atol=1e-12)
    else:
        assert gb is None
    gx_none, _, _ = conv_gpu.conv2d_backward(x, w, gy, stride, padding, groups, False, with_bias,
                                             mask)
    assert gx_none is None
