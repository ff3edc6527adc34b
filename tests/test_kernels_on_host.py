"""The CUDA kernels themselves, run on the CPU (minialex/tools/cuda_host.py), against their NumPy twins.

Without a GPU the ``.cu`` files would otherwise only be compiled (test_conv.py). Here each kernel's
own source runs: compiled by g++, every GPU thread of the launch emulated in turn, called through
the real launchers in ``minialex.kernels``, whose argument order and argument widths are checked
as CuPy would pack them. Speed, coalescing and races are left to the gpu-marked tests.
"""

import numpy
import pytest

import minialex.functional as F
from minialex import Tensor, gradcheck, kernels
from minialex.kernels import conv_gpu
from minialex.functional.conv import col2im, im2col
from minialex.tools import cuda_host as host

pytestmark = pytest.mark.skipif(not host.compiler(), reason="needs a C++ compiler (g++)")

# (kernel, stride, padding) as (height, width) pairs; the last is not square, so a kernel that
# mixes up a height and a width fails.
GEOMETRIES = [((11, 11), (4, 4), (0, 0)), ((5, 5), (1, 1), (2, 2)), ((3, 3), (1, 1), (1, 1)),
              ((3, 3), (2, 2), (1, 1)), ((3, 2), (2, 1), (1, 0))]
DTYPES = [numpy.float32, numpy.float64]


@pytest.fixture(autouse=True)
def emulated():
    with host.emulate():
        yield


def output_hw(h, w, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def flat(kernel, stride, padding):
    """The kernels' argument order: kh, kw, sh, sw, ph, pw."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    return kh, kw, sh, sw, ph, pw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel,stride,padding", GEOMETRIES)
def test_im2col_and_col2im_kernels(rng, dtype, kernel, stride, padding):
    x = rng.standard_normal((2, 3, 23, 19)).astype(dtype)
    oh, ow = output_hw(23, 19, kernel, stride, padding)
    cols = kernels.im2col(x, *flat(kernel, stride, padding), oh, ow)
    expected = im2col(x, kernel, stride, padding)
    assert cols.dtype == dtype
    numpy.testing.assert_array_equal(cols, expected)
    d = rng.standard_normal(expected.shape).astype(dtype)
    back = kernels.col2im(d, 2, 3, 23, 19, *flat(kernel, stride, padding), oh, ow)
    numpy.testing.assert_allclose(back, col2im(d, x.shape, kernel, stride, padding),
                                  rtol=1e-5 if dtype == numpy.float32 else 1e-12, atol=1e-5)


@pytest.mark.parametrize("kernel,stride,padding", GEOMETRIES)
def test_transposed_column_kernels_touch_only_their_group(rng, kernel, stride, padding):
    n, c, h, w, cg, off = 3, 6, 23, 19, 2, 4
    x = rng.standard_normal((n, c, h, w))
    oh, ow = output_hw(h, w, kernel, stride, padding)
    cols = kernels.im2col_t(x, off, cg, *flat(kernel, stride, padding), oh, ow)
    expected = im2col(x[:, off:off + cg], kernel, stride, padding).T
    numpy.testing.assert_array_equal(cols, expected)

    d = rng.standard_normal(expected.shape)
    sentinel = rng.standard_normal((n, c, h, w))
    out = kernels.col2im_t(d, sentinel.copy(), off, cg, *flat(kernel, stride, padding), oh, ow)
    numpy.testing.assert_allclose(out[:, off:off + cg],
                                  col2im(numpy.ascontiguousarray(d.T), (n, cg, h, w), kernel,
                                         stride, padding), rtol=1e-12, atol=1e-12)
    numpy.testing.assert_array_equal(out[:, :off], sentinel[:, :off])


def test_im2col_t_pads_with_zero_rows(rng):
    x = rng.standard_normal((2, 3, 9, 9))
    cols = kernels.im2col_t(x, 0, 3, 3, 3, 1, 1, 0, 0, 7, 7, rows=32)
    assert cols.shape == (32, 98)
    numpy.testing.assert_array_equal(cols[:27], im2col(x, 3).T)
    assert not cols[27:].any()
    with pytest.raises(ValueError, match=r"rows=20 < 27"):
        kernels.im2col_t(x, 0, 3, 3, 3, 1, 1, 0, 0, 7, 7, rows=20)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("values", ["normal", "ties", "nan"])
@pytest.mark.parametrize("kernel,stride,padding", [((3, 3), (2, 2), (0, 0)), ((2, 2), (2, 2), (0, 0)),
                                                   ((3, 3), (1, 1), (1, 1)), ((3, 2), (2, 1), (1, 0))])
def test_max_pool_kernels(rng, dtype, values, kernel, stride, padding):
    """Overlapping pooling (3x3/2, §3.4), forward with argmax and the gather backward, against
    the NumPy twin: non-square windows (height and width must not be swapped), ties (the first
    maximum wins) and NaNs (a NaN wins its windows)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    x = (rng.integers(0, 3, (2, 3, 13, 11)) if values == "ties" else
         rng.standard_normal((2, 3, 13, 11))).astype(dtype)
    if values == "nan":
        x[0, 1, 4, 5] = x[1, 2, 0, 0] = x[1, 0, 12, 10] = numpy.nan
    oh, ow = (13 + 2 * ph - kh) // sh + 1, (11 + 2 * pw - kw) // sw + 1
    y, argmax = kernels.max_pool_forward(x, kh, kw, sh, sw, ph, pw, oh, ow)
    gy = rng.standard_normal(y.shape).astype(dtype)
    gx = kernels.max_pool_backward(gy, argmax, 2, 3, 13, 11, kh, kw, sh, sw, ph, pw)
    xt = Tensor(x, requires_grad=True)
    ref = F.max_pool2d(xt, kernel, stride, padding)
    ref.backward(gy)
    numpy.testing.assert_array_equal(y, ref.data)
    assert (values == "nan") == bool(numpy.isnan(y).any())
    assert argmax.dtype == numpy.int32 and argmax.min() >= 0 and argmax.max() < kh * kw
    numpy.testing.assert_allclose(gx, xt.grad, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_lrn_kernels(rng, dtype):
    """Paper-literal LRN (§3.3) with a large alpha, so the neighbours' terms matter."""
    x = rng.standard_normal((2, 7, 4, 5)).astype(dtype)
    y, scale = kernels.lrn_forward(x, 5, 0.2, 0.75, 2.0)
    gy = rng.standard_normal(x.shape).astype(dtype)
    gx = kernels.lrn_backward(gy, x, y, scale, 5, 0.2, 0.75)
    xt = Tensor(x, requires_grad=True)
    ref = F.local_response_norm(xt, 5, 0.2, 0.75, 2.0)
    ref.backward(gy)
    tol = 1e-5 if dtype == numpy.float32 else 1e-12
    numpy.testing.assert_allclose(y, ref.data, rtol=tol, atol=tol)
    numpy.testing.assert_allclose(gx, xt.grad, rtol=tol, atol=tol)


def test_layout_kernels_with_and_without_the_relu(rng):
    n, k, p = 3, 5, 7
    src = rng.standard_normal((k, n * p)).astype(numpy.float32)
    src[2, 4] = numpy.nan
    bias = rng.standard_normal(k).astype(numpy.float32)
    plain = src.reshape(k, n, p).transpose(1, 0, 2) + bias[None, :, None]
    y = kernels.knp_to_nchw(src, bias, n, k, p)
    numpy.testing.assert_array_equal(y, plain)
    yr = kernels.knp_to_nchw(src, bias, n, k, p, relu=True)
    numpy.testing.assert_array_equal(yr, numpy.maximum(plain, 0))     # NaN stays NaN
    assert numpy.isnan(yr).sum() == 1

    gy = rng.standard_normal((n, k, p)).astype(numpy.float32)
    numpy.testing.assert_array_equal(kernels.nchw_to_knp(gy), gy.transpose(1, 0, 2).reshape(k, n * p))
    masked = kernels.nchw_to_knp(gy, relu_output=yr)
    numpy.testing.assert_array_equal(masked, numpy.where(yr > 0, gy, 0).transpose(1, 0, 2)
                                     .reshape(k, n * p))
    with pytest.raises(ValueError, match=r"knp_to_nchw: src \(5, 21\) and bias \(4,\)"):
        kernels.knp_to_nchw(src, bias[:4], n, k, p)
    with pytest.raises(ValueError, match=r"nchw_to_knp: relu_output \(3, 5, 6\)"):
        kernels.nchw_to_knp(gy, relu_output=yr[:, :, :6])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(5, 7), (3, 600), (2, 1), (0, 4)])   # 600 > a block's threads
def test_cross_entropy_kernels(rng, dtype, n, c):
    """loss.cu against the NumPy formulas: the row losses, the log-sum-exp, and the gradient
    (softmax - onehot) * dloss / N, with logits large enough that an unshifted exp overflows."""
    x = (rng.standard_normal((n, c)) * 30).astype(dtype)
    x[numpy.arange(n), rng.integers(0, c, n)] += 200   # exp(200) overflows float32; the spike
    labels = rng.integers(0, c, n)                     # sits anywhere, so the max must be found
    loss, lse = kernels.cross_entropy_forward(x, labels)
    dloss = numpy.asarray(0.7, dtype=dtype)
    dx = kernels.cross_entropy_backward(x, labels, lse, dloss)
    x64 = x.astype(numpy.float64)
    m = x64.max(axis=1, keepdims=True) if n else numpy.zeros((0, 1))
    ref_lse = (m + numpy.log(numpy.exp(x64 - m).sum(axis=1, keepdims=True)))[:, 0]
    ref_dx = numpy.exp(x64 - ref_lse[:, None])
    ref_dx[numpy.arange(n), labels] -= 1
    ref_dx *= 0.7 / max(n, 1)
    tol = 1e-5 if dtype == numpy.float32 else 1e-12
    assert loss.dtype == lse.dtype == dx.dtype == dtype and dx.shape == (n, c)
    numpy.testing.assert_allclose(lse, ref_lse, rtol=tol)
    numpy.testing.assert_allclose(loss, ref_lse - x64[numpy.arange(n), labels], rtol=tol,
                                  atol=tol * 200)
    numpy.testing.assert_allclose(dx, ref_dx, rtol=tol, atol=tol)
    if n:      # an unchecked label outside [0, C): a NaN loss, not a read past the row
        bad = labels.copy()
        bad[0] = c
        loss, _ = kernels.cross_entropy_forward(x, bad)
        assert numpy.isnan(loss[0]) and numpy.isfinite(loss[1:]).all()


def test_fused_cross_entropy_gradcheck_and_nan(rng, monkeypatch):
    """F.cross_entropy through its GPU branch (the fused kernels, run here on the CPU) passes the
    float64 finite-difference check, equals the NumPy branch, and a NaN logit gives a NaN loss
    (which the training loop's guard needs to see)."""
    from minialex import autograd
    from minialex.functional import loss as loss_module
    monkeypatch.setattr(autograd, "runs_on_gpu", lambda device: True)   # forward_gpu on NumPy
    logits = rng.standard_normal((4, 300)) * 3
    labels = rng.integers(0, 300, 4)
    # directional derivatives: each forward here runs 256 CPU threads per row with barriers
    report = gradcheck(lambda z: F.cross_entropy(z, labels), [logits], mode="direction",
                       directions=4, name="fused cross_entropy")
    assert report.passed and report.compared > 0
    fused = F.cross_entropy(Tensor(logits), labels).item()
    monkeypatch.setattr(loss_module, "FUSED_ON_GPU", False)
    assert fused == pytest.approx(F.cross_entropy(Tensor(logits), labels).item(), rel=1e-13)
    monkeypatch.setattr(loss_module, "FUSED_ON_GPU", True)
    logits[2, 7] = numpy.nan
    assert numpy.isnan(F.cross_entropy(Tensor(logits), labels).item())


@pytest.mark.parametrize("pad_k", [8, 1], ids=["K-padded", "K-as-is"])
@pytest.mark.parametrize("relu", [False, True], ids=["conv2d", "conv2d_relu"])
@pytest.mark.parametrize("shape,wshape,stride,padding,groups", [
    ((2, 3, 23, 23), (4, 3, 11, 11), (4, 4), (0, 0), 1),     # conv1's geometry, small
    ((2, 4, 9, 7), (6, 2, 5, 5), (1, 1), (2, 2), 2),         # conv2: 5x5, pad 2, two groups
    ((2, 4, 9, 8), (4, 2, 3, 2), (2, 1), (1, 0), 2),         # nothing square: h and w kept apart
])
def test_the_gpu_conv2d_on_its_own_kernels(rng, monkeypatch, shape, wshape, stride, padding,
                                           groups, relu, pad_k):
    """conv_gpu.py end to end, every CUDA kernel it launches running its real source, with the
    GEMMs' shared dimension padded (363 -> 368 for conv1, 50 -> 56 here for conv2) or not."""
    monkeypatch.setattr(conv_gpu, "PAD_K", pad_k)
    x, w, b = rng.standard_normal(shape), rng.standard_normal(wshape), rng.standard_normal(wshape[0])
    y = conv_gpu.conv2d_forward(x, w, b, stride, padding, groups, relu)
    gy = rng.standard_normal(y.shape)
    gx, gw, gb = conv_gpu.conv2d_backward(x, w, gy, stride, padding, groups, True, True,
                                          y if relu else None)
    ts = [Tensor(a, requires_grad=True) for a in (x, w, b)]
    ref = (F.conv2d_relu if relu else F.conv2d)(*ts, stride, padding, groups)
    ref.backward(gy)
    numpy.testing.assert_allclose(y, ref.data, rtol=1e-12, atol=1e-12)
    for got, t in zip((gx, gw, gb), ts):
        numpy.testing.assert_allclose(got, t.grad, rtol=1e-10, atol=1e-12)


OPS = {   # name: (op, input shapes); every Function with a forward_gpu or backward_gpu
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, 2, 1, 2), [(2, 4, 9, 8), (6, 2, 3, 3), (6,)]),
    "conv2d_relu": (lambda x, w, b: F.conv2d_relu(x, w, b, 1, 2, 1), [(2, 3, 7, 6), (4, 3, 5, 5), (4,)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 3, 2, 1), [(2, 3, 9, 8)]),
    "lrn": (lambda x: F.local_response_norm(x, 5, 0.2, 0.75, 2.0), [(2, 7, 3, 4)]),
    "relu": (F.relu, [(3, 5)]),
    "linear": (F.linear, [(3, 5), (4, 5), (4,)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, numpy.array([1, 0, 3])), [(3, 4)]),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_s_gpu_methods_equal_its_numpy_methods(rng, monkeypatch, name):
    """Function dispatches to forward_gpu/backward_gpu on a GPU; here that dispatch is forced on
    NumPy arrays, so each op's GPU methods (their calls into the launchers included) run on the
    emulated kernels and must give the NumPy methods' output and gradients."""
    from minialex import autograd
    op, shapes = OPS[name]
    arrays = [rng.standard_normal(s) for s in shapes]
    results = []
    for gpu in (False, True):
        monkeypatch.setattr(autograd, "runs_on_gpu", lambda device: gpu)
        ts = [Tensor(a, requires_grad=True) for a in arrays]
        y = op(*ts)
        y.backward(numpy.random.default_rng(5).standard_normal(y.shape))
        results.append([y.data] + [t.grad for t in ts])
    for cpu, gpu in zip(*results):
        numpy.testing.assert_allclose(gpu, cpu, rtol=1e-12, atol=1e-12)


def test_argument_types_are_checked_as_cupy_would_pack_them():
    """A numpy.int64 where the kernel takes an int would be silent garbage on a GPU; here it is
    a TypeError naming the parameter."""
    fn = host.get_function("knp_to_nchw", numpy.float32)
    src, bias, y = (numpy.zeros(s, numpy.float32) for s in (6, 2, 6))
    fn((1,), (32,), (src, bias, y, numpy.int64(6), numpy.int32(2), numpy.int32(3), numpy.int32(0)))
    with pytest.raises(TypeError, match=r"knp_to_nchw<float> parameter 'K' \(int\) needs a numpy.int32"):
        fn((1,), (32,), (src, bias, y, numpy.int64(6), numpy.int64(2), numpy.int32(3), numpy.int32(0)))
    with pytest.raises(TypeError, match=r"parameter 'bias' \(float\*\) needs a C-contiguous float32"):
        fn((1,), (32,), (src, bias.astype(numpy.float64), y, numpy.int64(6), numpy.int32(2),
                         numpy.int32(3), numpy.int32(0)))
    with pytest.raises(TypeError, match="takes 7 arguments"):
        fn((1,), (32,), (src, bias, y))


def test_a_wrong_index_in_a_kernel_is_caught(rng):
    """The negative control: im2col_t with the column offset j replaced by the row offset i
    compiles and runs, and gives columns that differ from the NumPy twin's."""
    source = kernels.source("conv.cu")
    line = "const int ix = ox * SW - PW + j;"
    assert source.count(line) == 2
    broken = host.HostModule(source.replace(line, "const int ix = ox * SW - PW + i;"), "broken conv.cu")
    x = rng.standard_normal((2, 2, 9, 9))
    cols = numpy.empty((2 * 9, 2 * 7 * 7))
    args = (x, cols) + tuple(numpy.int32(v) for v in (2, 0, 18, 98, 9, 9, 3, 3, 1, 1, 0, 0, 7, 7))
    broken.get_function("im2col_t", numpy.float64)((1, 18), (64,), args)
    assert not numpy.array_equal(cols, im2col(x, 3).T)
    host.get_function("im2col_t", numpy.float64)((1, 18), (64,), args)
    numpy.testing.assert_array_equal(cols, im2col(x, 3).T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_backward_and_sgd_update_kernels(rng, dtype):
    y = numpy.maximum(rng.standard_normal((3, 5, 7)), 0).astype(dtype)
    gy = rng.standard_normal(y.shape).astype(dtype)
    numpy.testing.assert_array_equal(kernels.relu_backward(y, gy), numpy.where(y > 0, gy, 0))
    numpy.testing.assert_array_equal(kernels.relu_backward(y, gy.T.copy().T), numpy.where(y > 0, gy, 0))

    w, v, g = (rng.standard_normal((4, 9)).astype(dtype) for _ in range(3))
    v_ref = 0.9 * v - 5e-4 * 0.01 * w - 0.01 * g
    w_ref = w + v_ref
    kernels.sgd_update(w, v, g, 0.01, 0.9, 5e-4)
    tol = 1e-6 if dtype == numpy.float32 else 1e-14
    numpy.testing.assert_allclose(v, v_ref, rtol=tol, atol=tol)
    numpy.testing.assert_allclose(w, w_ref, rtol=tol, atol=tol)
    with pytest.raises(ValueError, match=r"sgd_update: gradient \(9, 4\)"):
        kernels.sgd_update(w, v, g.T, 0.01, 0.9, 5e-4)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        kernels.sgd_update(w.T, v.T, g.T, 0.01, 0.9, 5e-4)


def test_sgd_on_emulated_kernels_equals_the_numpy_update(rng):
    """optim.SGD's GPU branch (the fused kernel) against its CPU branch (three NumPy lines), over
    three steps with momentum, weight decay and an undecayed bias."""
    from minialex import nn
    from minialex.optim import SGD

    results = []
    for fused in (False, True):
        params = {"w": nn.Parameter(numpy.arange(12.0).reshape(3, 4) / 7),
                  "bias": nn.Parameter(numpy.linspace(-1, 1, 3))}
        opt = SGD(list(params.items()), lr=0.1, momentum=0.9, weight_decay=5e-4)
        for step in range(3):
            for p in params.values():
                p.grad = numpy.sin(p.data * (step + 1))
            if fused:      # the branch optim.py takes for parameters on a GPU
                for name, p in params.items():
                    kernels.sgd_update(p.data, opt.velocity[name], p.grad, opt.lr, 0.9,
                                       opt.decay_for(name, p))
            else:
                opt.step()
        results.append({n: p.data.copy() for n, p in params.items()})
    for name in results[0]:
        numpy.testing.assert_allclose(results[1][name], results[0][name], rtol=1e-13, err_msg=name)
    assert not numpy.array_equal(results[0]["w"], numpy.arange(12.0).reshape(3, 4) / 7)


BLOCK_SUM = r"""
template <typename T>
__global__ void block_sum(const T* __restrict__ x, T* __restrict__ out, const long long n) {
    __shared__ T partial[64];                      // one slot per thread of the block
    const int t = threadIdx.x;
    T s = T(0);
    for (long long i = (long long)blockIdx.x * blockDim.x + t; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        s += x[i];
    }
    partial[t] = s;
    __syncthreads();
    for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {   // tree reduction
        if (t < stride) partial[t] += partial[t + stride];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}
"""


def test_shared_memory_and_syncthreads_run_as_on_a_gpu(rng):
    """A kernel whose threads meet at barriers (a shared-memory tree reduction) runs on CPU
    threads with a real barrier, so each block's sum is right; run one thread after another,
    thread 0 would add its neighbours' slots before they were written."""
    x = rng.standard_normal(1000)
    owner = (numpy.arange(x.size) // 64) % 4                 # grid-stride: 4 blocks of 64
    expected = [x[owner == b].sum() for b in range(4)]
    for threaded in (None, False):
        module = host.HostModule(BLOCK_SUM, "block_sum.cu", threaded=threaded)
        out = numpy.full(4, numpy.nan)
        module.get_function("block_sum", numpy.float64)((4,), (64,), (x, out, numpy.int64(x.size)))
        if threaded is None:
            numpy.testing.assert_allclose(out, expected, rtol=1e-12)
        else:
            assert not numpy.allclose(out, expected)
