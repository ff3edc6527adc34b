"""Winograd's minimal filtering for the CPU's wide 3x3 and 5x5 convolutions (functional/winograd.py):
its matrices, the same function as the naive conv, forward and backward, and taken only where it
pays."""

import numpy
import pytest

import minialex.functional as F
from minialex import Tensor, gradcheck
from minialex import cpu as utils
from minialex.functional import conv, conv_cpu, winograd


@pytest.mark.parametrize("m,r", [(2, 3), (3, 3), (4, 3), (2, 5), (3, 5), (4, 5), (1, 3), (3, 1)])
def test_minimal_filter_gives_the_correlation(rng, m, r):
    """A^T [(G w) * (B^T d)] = the m outputs of w slid over d, in float64 to rounding, with
    m + r - 1 multiplications; B^T holds integers for integer points (F(2, 3), F(2, 5))."""
    a_t, g, b_t = winograd.minimal_filter(m, r)
    assert a_t.shape == (m, m + r - 1) and g.shape == (m + r - 1, r) and b_t.shape == (m + r - 1,) * 2
    for _ in range(5):
        d, w = rng.standard_normal(m + r - 1), rng.standard_normal(r)
        want = [d[i:i + r] @ w for i in range(m)]
        numpy.testing.assert_allclose(a_t @ ((g @ w) * (b_t @ d)), want, rtol=1e-12, atol=1e-12)
    if m + r - 1 <= 6:
        assert numpy.array_equal(b_t, numpy.round(b_t))


def test_the_lessons_f23_matrices_are_lavin_and_grays():
    """F(2, 3) from the points 0, 1, -1 and infinity: the matrices of Lavin & Gray's paper,
    up to the sign of the last product (A^T's last column and B^T's last row both flipped)."""
    assert numpy.array_equal(winograd.B_T, [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0],
                                            [0, -1, 0, 1]])
    assert numpy.array_equal(winograd.G, [[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
    assert numpy.array_equal(winograd.A_T, [[1, 1, 1, 0], [0, 1, -1, 1]])


@pytest.fixture
def every_wide(monkeypatch):
    """Winograd for every 3x3 and 5x5 stride-1 conv, however small (the tests' shapes are)."""
    monkeypatch.setattr(conv_cpu, "WINOGRAD_MIN_CHANNELS", {3: 1, 5: 1})
    monkeypatch.setattr(conv_cpu, "WINOGRAD_MIN_SIZE", 1)
    monkeypatch.setattr(conv_cpu, "WINOGRAD_MIN_TILES", {3: 1, 5: 1})
    calls = []
    forward = winograd.forward
    monkeypatch.setattr(winograd, "forward", lambda *a: calls.append(a[0].shape) or forward(*a))
    return calls


# (N, C, H, W, K, kernel, padding, groups): maps that tiles fit and overhang (3x3: 2x2 tiles,
# odd maps; 5x5: 3x3 tiles, maps that are no multiple of 3), padding 0-2, groups
CASES = [(2, 4, 8, 8, 6, 3, 1, 1), (3, 4, 9, 7, 6, 3, 1, 2), (1, 2, 10, 10, 4, 3, 0, 1),
         (2, 4, 7, 8, 4, 3, 2, 2), (1, 3, 3, 3, 2, 3, 0, 1),
         (2, 4, 9, 9, 6, 5, 2, 1), (3, 4, 10, 8, 6, 5, 2, 2), (1, 2, 11, 7, 4, 5, 0, 1),
         (2, 3, 5, 5, 2, 5, 1, 1)]


@pytest.mark.parametrize("n,c,h,w,k,kernel,padding,groups", CASES)
@pytest.mark.parametrize("relu", [False, True])
def test_winograd_equals_the_naive_conv(every_wide, rng, n, c, h, w, k, kernel, padding, groups,
                                        relu):
    """y, dx, dw and db of conv2d (and conv2d_relu) against the loops, float64."""
    arrays = [rng.standard_normal((n, c, h, w)),
              rng.standard_normal((k, c // groups, kernel, kernel)), rng.standard_normal(k)]
    upstream = None
    results = []
    for fast in (True, False):
        ts = [Tensor(a, requires_grad=True) for a in arrays]
        if fast:
            y = (F.conv2d_relu if relu else F.conv2d)(*ts, 1, padding, groups)
        else:
            y = F.conv2d_naive(*ts, 1, padding, groups)
            y = F.relu(y) if relu else y
        upstream = rng.standard_normal(y.shape) if upstream is None else upstream
        y.backward(upstream)
        results.append([y.data] + [t.grad for t in ts])
    assert every_wide == [(n, c, h, w)]                  # the fast conv went through winograd.py
    for name, got, want in zip(["y", "dx", "dw", "db"], *results):
        numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=name)


def test_winograd_takes_a_large_batch_a_few_images_at_a_time(every_wide, rng, monkeypatch):
    """WINOGRAD_TILES: three pieces of the batch, and the same function as the loops."""
    monkeypatch.setattr(conv_cpu, "WINOGRAD_TILES", {3: 25, 5: 25})       # 9 tiles an image
    arrays = [rng.standard_normal((7, 4, 9, 7)), rng.standard_normal((6, 2, 3, 3)),
              rng.standard_normal(6)]
    upstream = rng.standard_normal((7, 6, 9, 7))
    results = []
    for op in (F.conv2d_relu, lambda *a: F.relu(F.conv2d_naive(*a))):
        ts = [Tensor(a, requires_grad=True) for a in arrays]
        y = op(*ts, 1, 1, 2)
        y.backward(upstream)
        results.append([y.data] + [t.grad for t in ts])
    assert [shape[0] for shape in every_wide] == [2, 2, 3]
    for name, got, want in zip(["y", "dx", "dw", "db"], *results):
        numpy.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("kernel", [3, 5])
def test_winograd_gradcheck(every_wide, rng, kernel):
    x, w = rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, kernel, kernel))
    b = rng.standard_normal(6)
    gradcheck(lambda x, w, b: F.conv2d_relu(x, w, b, 1, kernel // 2, 2), [x, w, b],
              name=f"winograd conv {kernel}x{kernel}")
    assert every_wide


def test_winograd_skips_dx_of_an_input_without_gradient(every_wide, rng):
    x = Tensor(rng.standard_normal((2, 3, 6, 6)))
    w = Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    F.conv2d(x, w, None, 1, 1).backward(rng.standard_normal((2, 4, 6, 6)))
    assert x.grad is None and w.grad.shape == (4, 3, 3, 3)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("kernel", [3, 5])
def test_winograd_gives_the_same_bits_on_any_threads(every_wide, rng, monkeypatch, threads, kernel):
    """No sum crosses the threads' shares, and each GEMM is cut the same way on any count
    (cpu.pieces), so the result does not depend on their number."""
    x = rng.standard_normal((3, 8, 9, 9)).astype(numpy.float32)
    w = rng.standard_normal((24, 4, kernel, kernel))
    runs = []
    for count in (1, threads):
        monkeypatch.setattr(utils, "THREADS", count)
        ts = [Tensor(x, requires_grad=True), Tensor(w.astype(numpy.float32), requires_grad=True)]
        y = F.conv2d_relu(*ts, None, 1, kernel // 2, 2)
        y.backward(numpy.ones(y.shape, numpy.float32))
        runs.append([y.data] + [t.grad for t in ts])
    for one, many in zip(*runs):
        numpy.testing.assert_array_equal(one, many)


@pytest.mark.parametrize("c,size,k,kernel", [(256, 7, 384, 3), (48, 27, 128, 5)])
def test_float32_winograd_is_close_to_im2col(rng, monkeypatch, c, size, k, kernel):
    """At the paper's conv3 and conv2 channel counts (fewer images, conv3 on a smaller map):
    rounding only, though F(3x3, 5x5)'s G holds 1/6 and 1/24."""
    monkeypatch.setattr(conv_cpu, "WINOGRAD_MIN_TILES", {3: 1, 5: 1})
    x = rng.standard_normal((2, c, size, size)).astype(numpy.float32)
    w = (rng.standard_normal((k, c, kernel, kernel)) * 0.02).astype(numpy.float32)
    ys = []
    for on in (True, False):
        monkeypatch.setattr(conv_cpu, "WINOGRAD", on)
        op = conv.Conv2d((1, 1), (kernel // 2,) * 2, 1)
        ys.append(op.forward(x, w))
        assert (op.winograd is not None) == on
    numpy.testing.assert_allclose(ys[0], ys[1], rtol=1e-4, atol=1e-5 * numpy.abs(ys[1]).max())


def test_only_wide_3x3_and_5x5_convs_take_winograd():
    """The paper's conv3-conv5 do at batch 8 and up, its conv2 at any batch; mini's conv2 and
    conv3, other kernel sizes and strided convs do not."""
    def takes(n, c, size, k, kernel=3, stride=1, groups=1):
        x = numpy.zeros((n, c, size, size), numpy.float32)
        w = numpy.zeros((k, c // groups, kernel, kernel), numpy.float32)
        op = conv.Conv2d((stride, stride), (kernel // 2,) * 2, groups)
        return conv_cpu.takes_winograd(x.shape, w.shape, op.stride, op.padding, groups,
                                       op.out_hw(x, w))
    assert takes(16, 256, 13, 384) and takes(16, 384, 13, 384, groups=2)
    assert takes(8, 384, 13, 256, groups=2)             # 8 images of 5x5 tiles: 200
    assert not takes(7, 384, 13, 256, groups=2)         # 175 tiles
    assert not takes(128, 64, 5, 96)                    # mini's conv3: too few channels
    assert not takes(16, 256, 5, 384)                   # too small a map
    assert takes(1, 96, 27, 256, kernel=5, groups=2)     # the paper's conv2 (48 in, 128 out)
    assert not takes(128, 24, 11, 64, kernel=5, groups=2)   # mini's conv2: too few channels
    assert not takes(16, 256, 13, 384, stride=2)
    assert not takes(16, 256, 13, 384, kernel=7) and not takes(16, 256, 13, 384, kernel=1)
