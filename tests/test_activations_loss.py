"""relu, tanh (§3.1), linear (§3.5), log_softmax, softmax and cross_entropy (§5)."""

import numpy
import pytest

import minialex
import minialex.functional as F
from minialex import Tensor, gradcheck


def away_from_zero(rng, shape):
    """Values in +-[0.1, 1]: no input within a finite-difference step of ReLU's kink."""
    return rng.uniform(0.1, 1.0, shape) * rng.choice([-1.0, 1.0], shape)


@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 4, 5)])
def test_relu_and_tanh_gradcheck(device, rng, shape):
    x = device.put(away_from_zero(rng, shape))
    gradcheck(F.relu, [x], name="relu")
    gradcheck(F.tanh, [device.put(rng.standard_normal(shape))], name="tanh")


def test_relu_values_and_kink(device):
    t = Tensor(device.put(numpy.array([-2.0, 0.0, 3.0])), requires_grad=True)
    y = F.relu(t)
    numpy.testing.assert_array_equal(y.numpy(), [0.0, 0.0, 3.0])
    y.backward(device.put(numpy.array([5.0, 6.0, 7.0])))
    numpy.testing.assert_array_equal(minialex.as_numpy(t.grad), [0.0, 0.0, 7.0])   # 0 at the kink


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_relu_backward_is_bit_for_bit_where(rng, dtype):
    """The branch-free ReLU backward (dy AND an all-bits mask) is numpy.where(y > 0, dy, 0), the
    readable rule, bit for bit: infinities, NaN and -0.0 in dy, NaN in y, and into a strided out."""
    from minialex.functional.activation import relu_backward
    y = numpy.maximum(rng.standard_normal((4, 5, 6)), 0).astype(dtype)
    gy = rng.standard_normal((4, 5, 6)).astype(dtype)
    gy.flat[:6] = [numpy.inf, -numpy.inf, numpy.nan, -0.0, numpy.inf, numpy.nan]
    y.flat[:6] = [1.0, 0.0, 2.0, 3.0, numpy.nan, 0.0]
    expected = numpy.where(y > 0, gy, dtype(0))
    out = numpy.full((6, 5, 4), 7.0, dtype).transpose(2, 1, 0)         # a strided view
    for got in (relu_backward(y, gy), relu_backward(y, gy, out=out)):
        assert got.dtype == dtype and got.shape == gy.shape
        assert numpy.array_equal(got.view(f"i{got.itemsize}"), expected.view(f"i{got.itemsize}"))
    assert numpy.array_equal(out, expected, equal_nan=True)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_dtypes_preserved(device, rng, dtype):
    x = Tensor(device.put(rng.standard_normal((4, 6)), dtype=dtype), requires_grad=True)
    w = Tensor(device.put(rng.standard_normal((3, 6)), dtype=dtype), requires_grad=True)
    outs = [F.relu(x), F.tanh(x), F.log_softmax(x), F.softmax(x), F.linear(x, w),
            F.cross_entropy(x, numpy.array([0, 1, 2, 5]))]
    for y in outs:
        assert y.dtype == dtype
    sum(y.sum() for y in outs).backward()
    assert x.grad.dtype == w.grad.dtype == dtype


def test_linear_gradcheck_and_values(device, rng):
    x, w, b = (device.put(rng.standard_normal(s)) for s in [(4, 5), (3, 5), (3,)])
    gradcheck(lambda x, w, b: F.linear(x, w, b), [x, w, b], name="linear")
    gradcheck(lambda x, w: F.linear(x, w), [x, w], name="linear no bias")
    y = F.linear(Tensor(x), Tensor(w), Tensor(b)).numpy()
    xs, ws, bs = (minialex.as_numpy(a) for a in (x, w, b))
    numpy.testing.assert_allclose(y, xs @ ws.T + bs, rtol=1e-13)


def test_linear_errors():
    x = Tensor(numpy.zeros((2, 9216), numpy.float32))
    with pytest.raises(ValueError, match=r"linear: input has 9216 features but weight expects 4096 "
                                         r"\(input shape \(2, 9216\), weight shape \(10, 4096\)\)"):
        F.linear(x, Tensor(numpy.zeros((10, 4096), numpy.float32)))
    with pytest.raises(ValueError, match=r"linear: input must be 2-D"):
        F.linear(Tensor(numpy.zeros((2, 3, 4), numpy.float32)), Tensor(numpy.zeros((5, 4), numpy.float32)))
    with pytest.raises(ValueError, match=r"linear: bias must have shape \(10,\)"):
        F.linear(x, Tensor(numpy.zeros((10, 9216), numpy.float32)), Tensor(numpy.zeros(9, numpy.float32)))


@pytest.mark.parametrize("axis", [1, 0, -1])
def test_log_softmax_and_softmax_gradcheck(device, rng, axis):
    x = device.put(rng.standard_normal((3, 5)))
    gradcheck(lambda x: F.log_softmax(x, axis=axis), [x], name="log_softmax")
    gradcheck(lambda x: F.softmax(x, axis=axis), [x], name="softmax")


def test_softmax_sums_to_one_and_is_stable(device):
    x = device.put(numpy.array([[1000.0, 1001.0, 999.0], [-1e4, 0.0, 1e4]]))
    p = F.softmax(Tensor(x)).numpy()
    assert numpy.all(numpy.isfinite(p))
    numpy.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-14)
    logp = F.log_softmax(Tensor(x)).numpy()
    e = numpy.exp([1.0, 2.0, 0.0])
    numpy.testing.assert_allclose(logp[0], numpy.log(e / e.sum()), rtol=1e-12)
    assert logp[1, 0] == pytest.approx(-2e4)


def test_cross_entropy_gradcheck_and_value(device, rng):
    logits = device.put(rng.standard_normal((5, 4)) * 2)
    labels = numpy.array([0, 3, 1, 1, 2])
    gradcheck(lambda z: F.cross_entropy(z, labels), [logits], name="cross_entropy")
    loss = F.cross_entropy(Tensor(logits), labels)
    z = minialex.as_numpy(logits)
    expected = -numpy.mean([z[i, l] - numpy.log(numpy.exp(z[i]).sum()) for i, l in enumerate(labels)])
    assert loss.shape == () and loss.item() == pytest.approx(expected, rel=1e-13)


@pytest.mark.gpu
def test_fused_cross_entropy_on_the_gpu_equals_the_formulas(rng, monkeypatch):
    """kernels/loss.cu at AlexNet's size (128 x 1000, float32) against the NumPy formulas run on
    CuPy (FUSED_ON_GPU = False): the loss and the logits' gradient."""
    if not minialex.gpu_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    from minialex.functional import loss as loss_module
    device = minialex.Device("cuda:0")
    logits = device.put((rng.standard_normal((128, 1000)) * 4).astype(numpy.float32))
    labels = device.put(rng.integers(0, 1000, 128))
    results = []
    for fused in (True, False):
        monkeypatch.setattr(loss_module, "FUSED_ON_GPU", fused)
        z = Tensor(logits, requires_grad=True)
        loss = F.cross_entropy(z, labels, check_labels=False)
        loss.backward()
        results.append((loss.item(), minialex.as_numpy(z.grad)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    numpy.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-8)


def test_cross_entropy_of_uniform_logits_is_log_classes():
    loss = F.cross_entropy(Tensor(numpy.zeros((8, 1000), numpy.float32)), numpy.arange(8) * 100)
    assert loss.item() == pytest.approx(numpy.log(1000), rel=1e-6)


def test_cross_entropy_large_logits_finite(device):
    logits = Tensor(device.put(numpy.array([[1e4, -1e4, 0.0], [0.0, 5e3, -5e3]], numpy.float32)),
                    requires_grad=True)
    loss = F.cross_entropy(logits, [1, 1])
    assert loss.item() == pytest.approx(1e4, rel=1e-6)     # (2e4 + 0) / 2
    loss.backward()
    assert numpy.all(numpy.isfinite(minialex.as_numpy(logits.grad)))


def test_cross_entropy_errors():
    z = Tensor(numpy.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"cross_entropy: labels must be in \[0, 4\) for logits "
                                         r"shape \(3, 4\), got values from 0 to 4"):
        F.cross_entropy(z, [0, 4, 1])
    with pytest.raises(ValueError, match=r"cross_entropy: labels must be in \[0, 4\).*from -1"):
        F.cross_entropy(z, numpy.array([-1, 0, 1]))
    with pytest.raises(ValueError, match=r"cross_entropy: labels must have shape \(3,\)"):
        F.cross_entropy(z, [0, 1])
    with pytest.raises(ValueError, match="cross_entropy: labels must be integers"):
        F.cross_entropy(z, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="cross_entropy: logits must be 2-D"):
        F.cross_entropy(Tensor(numpy.zeros(4)), [0])
