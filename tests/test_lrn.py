"""local_response_norm in the paper's literal form (§3.3): formula, gradients, fast == naive."""

import numpy
import pytest

import minialex
import minialex.functional as F
from minialex import Tensor, gradcheck

# (N, C, H, W, size, alpha, beta, k); alpha = 0.1 so that a wrong normaliser term shows
CASES = [
    pytest.param(2, 7, 3, 4, 5, 0.1, 0.75, 2.0, id="paper-constants-alpha0.1"),
    pytest.param(1, 3, 2, 5, 5, 0.1, 0.75, 2.0, id="window-wider-than-channels"),
    pytest.param(2, 8, 3, 3, 3, 0.2, 0.5, 1.0, id="size3-k1"),
    pytest.param(1, 1, 4, 4, 5, 0.1, 0.75, 2.0, id="one-channel"),
    pytest.param(2, 6, 2, 3, 1, 0.3, 1.5, 0.5, id="size1"),
]


def run_with_grad(fn, x, upstream):
    t = Tensor(x, requires_grad=True)
    y = fn(t)
    y.backward(upstream)
    return y.numpy(), minialex.as_numpy(t.grad)


@pytest.mark.parametrize("n,c,h,w,size,alpha,beta,k", CASES)
def test_lrn_gradcheck(device, rng, n, c, h, w, size, alpha, beta, k):
    x = device.put(rng.standard_normal((n, c, h, w)) * 2)
    gradcheck(lambda x: F.local_response_norm(x, size, alpha, beta, k), [x], name="lrn")


def test_lrn_naive_gradcheck(rng):
    x = rng.standard_normal((2, 6, 2, 2)) * 2
    gradcheck(lambda x: F.local_response_norm_naive(x, 5, 0.1, 0.75, 2.0), [x], name="lrn_naive")


@pytest.mark.parametrize("n,c,h,w,size,alpha,beta,k", CASES + [
    pytest.param(2, 48, 5, 5, 5, 1e-4, 0.75, 2.0, id="alexnet-column-48-channels"),
])
def test_lrn_fast_matches_naive(device, rng, n, c, h, w, size, alpha, beta, k):
    x = device.put(rng.standard_normal((n, c, h, w)) * 3)
    g = device.put(rng.standard_normal((n, c, h, w)))
    y_fast, g_fast = run_with_grad(lambda t: F.local_response_norm(t, size, alpha, beta, k), x, g)
    y_naive, g_naive = run_with_grad(lambda t: F.local_response_norm_naive(t, size, alpha, beta, k), x, g)
    numpy.testing.assert_allclose(y_fast, y_naive, rtol=1e-12, atol=1e-12)
    numpy.testing.assert_allclose(g_fast, g_naive, rtol=1e-10, atol=1e-12)


def test_lrn_formula_by_hand():
    """Channel 0 of 6 with n = 5 sums a_0^2 + a_1^2 + a_2^2 (window clipped at the edge), channel
    3 sums a_1..a_5; alpha multiplies the sum itself (NOT alpha / n as in PyTorch and Caffe)."""
    a = numpy.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).reshape(1, 6, 1, 1)
    b = F.local_response_norm(Tensor(a), size=5, alpha=0.01, beta=0.75, k=2.0).numpy().ravel()
    assert b[0] == pytest.approx(1.0 / (2.0 + 0.01 * (1 + 4 + 9)) ** 0.75, rel=1e-14)
    assert b[3] == pytest.approx(4.0 / (2.0 + 0.01 * (4 + 9 + 16 + 25 + 36)) ** 0.75, rel=1e-14)
    assert b[5] == pytest.approx(6.0 / (2.0 + 0.01 * (16 + 25 + 36)) ** 0.75, rel=1e-14)


def test_lrn_normalises_across_channels_only(rng):
    """Changing one pixel of one channel changes only that pixel's neighbours in channel."""
    x = rng.standard_normal((1, 9, 4, 4))
    y = F.local_response_norm(Tensor(x), 5, 0.5).numpy()
    x2 = x.copy()
    x2[0, 4, 1, 2] += 3.0
    y2 = F.local_response_norm(Tensor(x2), 5, 0.5).numpy()
    changed = numpy.argwhere(numpy.abs(y2 - y) > 0)
    assert {(int(p[2]), int(p[3])) for p in changed} == {(1, 2)}
    assert {int(p[1]) for p in changed} == {2, 3, 4, 5, 6}


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_dtype_preserved(device, rng, dtype):
    t = Tensor(device.put(rng.standard_normal((2, 8, 3, 3)), dtype=dtype), requires_grad=True)
    y = F.local_response_norm(t)
    assert y.dtype == dtype
    y.sum().backward()
    assert t.grad.dtype == dtype


def test_errors():
    x = Tensor(numpy.zeros((1, 4, 2, 2), numpy.float32))
    with pytest.raises(ValueError, match="local_response_norm: size must be a positive odd"):
        F.local_response_norm(x, size=4)
    with pytest.raises(ValueError, match=r"local_response_norm: input must be 4-D.*\(4, 2\)"):
        F.local_response_norm(Tensor(numpy.zeros((4, 2), numpy.float32)))
    with pytest.raises(ValueError, match="local_response_norm: need k > 0"):
        F.local_response_norm(x, k=0.0)


@pytest.mark.gpu
@pytest.mark.skipif(not minialex.gpu_available(), reason="needs CuPy and a CUDA GPU")
def test_lrn_cupy_matches_numpy_float32(rng):
    gpu = minialex.Device("cuda:0")
    x = (rng.standard_normal((4, 48, 13, 11)) * 5).astype(numpy.float32)
    g = rng.standard_normal(x.shape).astype(numpy.float32)
    fn = lambda t: F.local_response_norm(t, 5, 1e-3, 0.75, 2.0)  # noqa: E731
    y_cpu, g_cpu = run_with_grad(fn, x, g)
    y_gpu, g_gpu = run_with_grad(fn, gpu.put(x), gpu.put(g))
    numpy.testing.assert_allclose(y_gpu, y_cpu, rtol=1e-5, atol=1e-6)
    numpy.testing.assert_allclose(g_gpu, g_cpu, rtol=1e-4, atol=1e-5)
