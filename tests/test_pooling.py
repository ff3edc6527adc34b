"""max_pool2d: overlapping windows (§3.4), gradient from every window, ties, fast == naive."""

import numpy
import pytest

import minialex
import minialex.functional as F
from minialex import Tensor, gradcheck

# (N, C, H, W, kernel, stride, padding)
CASES = [
    pytest.param(2, 3, 9, 9, 3, 2, 0, id="3x3-s2-paper"),
    pytest.param(2, 2, 13, 13, 3, 2, 0, id="13-to-6-pool5"),
    pytest.param(1, 3, 8, 11, 3, 2, 1, id="padded-nonsquare-input"),
    pytest.param(2, 2, 8, 8, 2, None, 0, id="2x2-nonoverlapping"),
    pytest.param(1, 2, 9, 7, (3, 2), (2, 1), (1, 1), id="nonsquare-window"),
]


def tie_free(rng, shape, device):
    """Distinct values 0.01 apart, shuffled: no ties within a finite-difference step."""
    values = rng.permutation(int(numpy.prod(shape))).reshape(shape) * 0.01
    return device.put(values.astype(numpy.float64))


def run_with_grad(fn, x, upstream):
    t = Tensor(x, requires_grad=True)
    y = fn(t)
    y.backward(upstream)
    return y.numpy(), minialex.as_numpy(t.grad)


@pytest.mark.parametrize("n,c,h,w,kernel,stride,padding", CASES)
def test_max_pool2d_gradcheck(device, rng, n, c, h, w, kernel, stride, padding):
    x = tie_free(rng, (n, c, h, w), device)
    gradcheck(lambda x: F.max_pool2d(x, kernel, stride, padding), [x], name="max_pool2d")


def test_max_pool2d_naive_gradcheck(rng):
    x = tie_free(rng, (1, 2, 7, 7), minialex.Device("cpu"))
    gradcheck(lambda x: F.max_pool2d_naive(x, 3, 2, 1), [x], name="max_pool2d_naive")


@pytest.mark.parametrize("n,c,h,w,kernel,stride,padding", CASES + [
    pytest.param(2, 3, 27, 27, 3, 2, 0, id="27-to-13-pool2"),
])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "many-ties"])
def test_max_pool2d_fast_matches_naive(device, rng, n, c, h, w, kernel, stride, padding, ties):
    if ties:   # small integers: many windows hold their maximum twice; both paths pick the first
        x = device.put(rng.integers(0, 3, (n, c, h, w)).astype(numpy.float64))
    else:
        x = device.put(rng.standard_normal((n, c, h, w)))
    y = F.max_pool2d(Tensor(x), kernel, stride, padding)
    g = device.put(rng.standard_normal(y.shape))
    y_fast, g_fast = run_with_grad(lambda t: F.max_pool2d(t, kernel, stride, padding), x, g)
    y_naive, g_naive = run_with_grad(lambda t: F.max_pool2d_naive(t, kernel, stride, padding), x, g)
    numpy.testing.assert_array_equal(y_fast, y_naive)
    numpy.testing.assert_allclose(g_fast, g_naive, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n,c,h,w,kernel,stride,padding", CASES + [
    pytest.param(3, 4, 23, 23, 3, 2, 0, id="fashion-pool1"),
    pytest.param(2, 3, 10, 12, (2, 4), (3, 1), 0, id="wide-window-stride-3"),
    pytest.param(2, 2, 6, 6, 1, 1, 0, id="1x1")])
def test_window_max_equals_the_maximum_over_the_views(rng, n, c, h, w, kernel, stride, padding):
    """The forward's two running maxima over flat memory give, bit for bit, the maximum over
    the kh*kw strided views in row-major order (the textbook form): signed zeros (a tie of -0
    and +0), ties and NaN included."""
    x = rng.choice(numpy.array([-0.0, 0.0, 1.0, 2.0, -1.0, numpy.nan], numpy.float32),
                   size=(n, c, h, w), p=[0.25, 0.25, 0.2, 0.1, 0.15, 0.05])
    k, s, p = F.pooling.check_pool_args("test", x, kernel, stride, padding)
    op = F.pooling.MaxPool2d(k, s, p)
    xpad = numpy.pad(x, ((0, 0), (0, 0), (p[0],) * 2, (p[1],) * 2), constant_values=-numpy.inf)
    oh, ow = (xpad.shape[2] - k[0]) // s[0] + 1, (xpad.shape[3] - k[1]) // s[1] + 1
    views = op.views(xpad, oh, ow)
    want = views[0].copy()
    for v in views[1:]:
        numpy.maximum(want, v, out=want)
    got = op.window_max(xpad, oh, ow)
    assert got.shape == want.shape
    assert numpy.array_equal(got.view(numpy.uint32), want.view(numpy.uint32))   # the very bits


def test_gradient_adds_over_every_overlapping_window(device):
    """A maximum in the middle of a 5x5 input wins all four 3x3/2 windows: it gets their sum."""
    x = numpy.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 9.0
    t = Tensor(device.put(x), requires_grad=True)
    y = F.max_pool2d(t, 3, 2)
    assert y.shape == (1, 1, 2, 2)
    g = numpy.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y.backward(device.put(g))
    grad = minialex.as_numpy(t.grad)
    assert grad[0, 0, 2, 2] == 10.0
    assert grad.sum() == 10.0


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("where", [(0, 0), (1, 1), (2, 3), (4, 4)])
def test_a_nan_wins_every_window_that_covers_it(device, rng, where, padding):
    """A NaN must not vanish in the max (x > NaN and NaN > x are both false): every window over
    it outputs NaN, in the fast and the naive versions alike, and its gradient goes to the NaN."""
    x = rng.standard_normal((1, 1, 5, 5))
    x[(0, 0) + where] = numpy.nan
    fast = F.max_pool2d(Tensor(device.put(x)), 3, 2, padding)
    naive = F.max_pool2d_naive(Tensor(device.put(x)), 3, 2, padding)
    covering = sum(1 for oy in range(fast.shape[2]) for ox in range(fast.shape[3])
                   if 0 <= where[0] - (2 * oy - padding) < 3 and 0 <= where[1] - (2 * ox - padding) < 3)
    assert covering >= 1 and numpy.isnan(fast.numpy()).sum() == covering
    numpy.testing.assert_array_equal(fast.numpy(), naive.numpy())    # NaN == NaN here
    g = rng.standard_normal(fast.shape)
    _, grad = run_with_grad(lambda t: F.max_pool2d(t, 3, 2, padding), device.put(x), device.put(g))
    assert grad[(0, 0) + where] == pytest.approx(g[numpy.isnan(fast.numpy())].sum())


def test_ties_go_to_the_first_maximum(device):
    """Constant input: every window's gradient goes to its top-left pixel (row-major first)."""
    t = Tensor(device.put(numpy.ones((1, 1, 5, 5))), requires_grad=True)
    y = F.max_pool2d(t, 3, 2)
    y.backward(device.put(numpy.ones((1, 1, 2, 2))))
    expected = numpy.zeros((5, 5))
    expected[[0, 0, 2, 2], [0, 2, 0, 2]] = 1.0
    numpy.testing.assert_array_equal(minialex.as_numpy(t.grad)[0, 0], expected)


def test_padding_never_wins(device):
    x = -numpy.arange(1, 17, dtype=numpy.float64).reshape(1, 1, 4, 4)   # all negative
    y = F.max_pool2d(Tensor(device.put(x)), 3, 2, padding=1).numpy()
    numpy.testing.assert_array_equal(y[0, 0], [[-1, -2], [-5, -6]])


def test_alexnet_sizes():
    for size, out in [(55, 27), (27, 13), (13, 6)]:
        assert F.max_pool2d(Tensor(numpy.zeros((1, 1, size, size), numpy.float32))).shape == (1, 1, out, out)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_dtype_preserved(device, rng, dtype):
    t = Tensor(device.put(rng.standard_normal((2, 3, 9, 9)), dtype=dtype), requires_grad=True)
    y = F.max_pool2d(t)
    assert y.dtype == dtype
    y.sum().backward()
    assert t.grad.dtype == dtype


def test_errors():
    x = Tensor(numpy.zeros((1, 2, 4, 4), numpy.float32))
    with pytest.raises(ValueError, match=r"max_pool2d: kernel \(5, 5\) is larger than the padded input \(4, 4\)"):
        F.max_pool2d(x, 5, 1)
    with pytest.raises(ValueError, match=r"max_pool2d: padding \(2, 2\) must be between 0 and half"):
        F.max_pool2d(x, 3, 2, padding=2)
    with pytest.raises(ValueError, match=r"max_pool2d: input must be 4-D.*\(2, 4, 4\)"):
        F.max_pool2d(Tensor(numpy.zeros((2, 4, 4), numpy.float32)))
    with pytest.raises(TypeError, match=r"max_pool2d: input must be a floating-point"):
        F.max_pool2d(Tensor(numpy.zeros((1, 2, 4, 4), numpy.int64)))


@pytest.mark.gpu
@pytest.mark.skipif(not minialex.gpu_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 0), (3, 2, 1), (2, 2, 0)])
def test_max_pool2d_cupy_matches_numpy_float32(rng, kernel, stride, padding):
    gpu = minialex.Device("cuda:0")
    x = rng.standard_normal((4, 8, 27, 25)).astype(numpy.float32)
    fn = lambda t: F.max_pool2d(t, kernel, stride, padding)  # noqa: E731
    g = rng.standard_normal(fn(Tensor(x)).shape).astype(numpy.float32)
    y_cpu, g_cpu = run_with_grad(fn, x, g)
    y_gpu, g_gpu = run_with_grad(fn, gpu.put(x), gpu.put(g))
    numpy.testing.assert_array_equal(y_gpu, y_cpu)
    numpy.testing.assert_allclose(g_gpu, g_cpu, rtol=1e-6, atol=1e-6)
