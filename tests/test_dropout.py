"""dropout (§4.2): both forms, fixed masks for gradient checks, seeded generators, eval scaling."""

import numpy
import pytest

import minialex
import minialex.functional as F
from minialex import Tensor, gradcheck, nn


def keep_mask(rng, shape, p=0.5):
    return rng.random(shape) >= p


@pytest.mark.parametrize("mode", ["paper", "inverted"])
def test_dropout_gradcheck_with_fixed_mask(device, rng, mode):
    x = device.put(rng.standard_normal((3, 7)))
    mask = device.put(keep_mask(rng, (3, 7), 0.3))
    report = gradcheck(lambda x: F.dropout(x, 0.3, mode=mode, mask=mask), [x], name="dropout")
    assert report.passed


@pytest.mark.parametrize("mode,train_factor,eval_factor", [("paper", 1.0, 0.75), ("inverted", 4 / 3, 1.0)])
def test_dropout_values(device, rng, mode, train_factor, eval_factor):
    x = device.put(rng.standard_normal((4, 5)))
    mask = keep_mask(rng, (4, 5), 0.25)
    y = F.dropout(Tensor(x), 0.25, mode=mode, mask=device.put(mask)).numpy()
    numpy.testing.assert_allclose(y, minialex.as_numpy(x) * mask * train_factor, rtol=1e-15)
    y_eval = F.dropout(Tensor(x), 0.25, training=False, mode=mode).numpy()
    numpy.testing.assert_allclose(y_eval, minialex.as_numpy(x) * eval_factor, rtol=1e-15)


def test_dropout_eval_gradient_is_the_scale():
    t = Tensor(numpy.ones((2, 3)), requires_grad=True)
    F.dropout(t, 0.5, training=False).sum().backward()
    numpy.testing.assert_array_equal(t.grad, numpy.full((2, 3), 0.5))   # paper form: x * (1 - p)


@pytest.mark.parametrize("mode", ["paper", "inverted"])
def test_training_mean_matches_eval(mode):
    """Both forms agree in expectation with the eval-time output (§4.2)."""
    x = Tensor(numpy.ones((400, 500)))
    gen = numpy.random.default_rng(7)
    y_train = F.dropout(x, 0.5, mode=mode, generator=gen).numpy()
    y_eval = F.dropout(x, 0.5, training=False, mode=mode).numpy()
    assert abs(y_train.mean() - y_eval.mean()) < 0.01 * y_eval.mean()
    assert abs((y_train == 0).mean() - 0.5) < 0.01                    # p of the units dropped


def test_seeded_generators_repeat_and_differ():
    x = Tensor(numpy.ones((50, 50), numpy.float32))
    a = F.dropout(x, generator=numpy.random.default_rng(3)).numpy()
    b = F.dropout(x, generator=numpy.random.default_rng(3)).numpy()
    c = F.dropout(x, generator=numpy.random.default_rng(4)).numpy()
    numpy.testing.assert_array_equal(a, b)
    assert not numpy.array_equal(a, c)


def test_backward_uses_the_same_mask(rng):
    t = Tensor(rng.standard_normal((6, 8)), requires_grad=True)
    y = F.dropout(t, 0.5, mode="inverted", generator=numpy.random.default_rng(0))
    y.sum().backward()
    numpy.testing.assert_array_equal(t.grad, (y.numpy() != 0) * 2.0)


@pytest.mark.parametrize("dtype", [numpy.float32, numpy.float64])
def test_dtype_preserved(device, dtype):
    gen = numpy.random.default_rng(0)
    t = Tensor(device.put(numpy.ones((4, 4)), dtype=dtype), requires_grad=True)
    for mode in ("paper", "inverted"):
        y = F.dropout(t, 0.5, mode=mode, generator=gen)
        assert y.dtype == dtype
        assert F.dropout(t, 0.5, training=False, mode=mode).dtype == dtype


def test_errors():
    x = Tensor(numpy.ones((2, 2)))
    with pytest.raises(ValueError, match="dropout: training mode needs generator="):
        F.dropout(x)
    with pytest.raises(ValueError, match=r"dropout: p must be in \[0, 1\)"):
        F.dropout(x, p=1.0, generator=numpy.random.default_rng(0))
    with pytest.raises(ValueError, match="dropout: mode must be one of"):
        F.dropout(x, mode="bogus", generator=numpy.random.default_rng(0))
    with pytest.raises(ValueError, match=r"dropout: mask shape \(3,\) differs from input shape \(2, 2\)"):
        F.dropout(x, mask=numpy.ones(3))


def test_dropout_module_train_and_eval(device):
    layer = nn.Dropout(0.5, generator=numpy.random.default_rng(1))
    x = Tensor(device.put(numpy.ones((20, 30))))
    y = layer(x).numpy()
    assert set(numpy.unique(y)) == {0.0, 1.0}
    layer.eval()
    numpy.testing.assert_array_equal(layer(x).numpy(), numpy.full((20, 30), 0.5))
    inverted = nn.Dropout(0.5, mode="inverted", generator=numpy.random.default_rng(1)).eval()
    assert inverted(x) is x
