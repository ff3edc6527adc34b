"""minialex.gradcheck itself: it passes correct ops, and it catches wrong ones (negative controls)."""

import numpy
import pytest

from minialex import Function, GradcheckError, GradcheckReport, Tensor, gradcheck


def _inputs(device, seed=0):
    rng = numpy.random.default_rng(seed)
    return [Tensor(rng.standard_normal((3, 4)), device=device),
            Tensor(rng.standard_normal((4, 2)), device=device)]


def _correct(a, b):
    return (a @ b).exp() * 0.5 + a.sum(axis=1, keepdims=True)


class _Scaled(Function):
    """y = 3x, with a backward off by ``factor``."""

    def __init__(self, factor):
        self.factor = factor

    def forward(self, x):
        return 3 * x

    def backward(self, gy):
        return 3 * self.factor * gy


class _LeftMultiply(Function):
    """y = A x with a square constant A; the wrong backward uses A instead of A^T."""

    def __init__(self, a, transposed_correctly):
        self.a, self.ok = a, transposed_correctly

    def forward(self, x):
        return self.a @ x

    def backward(self, gy):
        return (self.a.T if self.ok else self.a) @ gy


class _IgnoresUpstream(Function):
    """y = x with a backward that returns ones: right only for an all-ones upstream gradient."""

    def forward(self, x):
        return x.copy()

    def backward(self, gy):
        return gy * 0 + 1


class _OneWrongElement(Function):
    def forward(self, x):
        return x * 2

    def backward(self, gy):
        g = gy * 2
        g[1, 2] += 0.1
        return g


def test_elementwise_and_direction_modes_agree_on_a_correct_op(device):
    xs = _inputs(device)
    ew = gradcheck(_correct, xs, mode="elementwise", name="correct")
    dr = gradcheck(_correct, xs, mode="direction", directions=4, name="correct")
    assert ew.passed and dr.passed
    assert ew.max_rel_error < 1e-7 and dr.max_rel_error < 1e-7
    assert (ew.mode, ew.compared, len(ew.per_input)) == ("elementwise", 12 + 8, 2)
    assert (dr.mode, dr.compared, len(dr.per_input)) == ("direction", 4, 2)


def test_auto_mode_picks_by_size():
    xs = _inputs("cpu")
    assert gradcheck(_correct, xs).mode == "elementwise"
    assert gradcheck(_correct, xs, max_elements=10).mode == "direction"
    with pytest.raises(ValueError, match="unknown mode"):
        gradcheck(_correct, xs, mode="sideways")


@pytest.mark.parametrize("mode", ["elementwise", "direction"])
@pytest.mark.parametrize("factor", [2.0, -1.0, 1.001])
def test_wrong_factor_is_caught(device, mode, factor):
    x = Tensor(numpy.random.default_rng(1).standard_normal((3, 4)), device=device)
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: _Scaled(factor)(t), [x], mode=mode, name="scaled")
    message = str(info.value)
    assert "gradcheck(scaled) failed" in message and mode in message
    assert "analytic" in message and "numeric" in message and "rel.err" in message
    assert len(message.splitlines()) >= 3  # a header and at least one row of the table
    # and the same op with the right backward passes
    assert gradcheck(lambda t: _Scaled(1.0)(t), [x], mode=mode).passed


@pytest.mark.parametrize("mode", ["elementwise", "direction"])
def test_transposed_backward_is_caught(mode):
    rng = numpy.random.default_rng(2)
    a, x = rng.standard_normal((4, 4)), Tensor(rng.standard_normal((4, 3)))
    assert gradcheck(lambda t: _LeftMultiply(a, True)(t), [x], mode=mode).passed
    with pytest.raises(GradcheckError, match="rel.err"):
        gradcheck(lambda t: _LeftMultiply(a, False)(t), [x], mode=mode)


def test_backward_ignoring_the_upstream_gradient_is_caught():
    """The reason the upstream gradient is random: with all ones this backward would pass."""
    x = Tensor(numpy.random.default_rng(3).standard_normal(5))
    with pytest.raises(GradcheckError):
        gradcheck(lambda t: _IgnoresUpstream()(t), [x])


def test_table_points_at_the_wrong_element():
    x = Tensor(numpy.random.default_rng(4).standard_normal((3, 4)))
    with pytest.raises(GradcheckError) as info:
        gradcheck(lambda t: _OneWrongElement()(t), [x], name="one")
    worst_row = str(info.value).splitlines()[2]
    assert worst_row.split()[:3] == ["0", "(1,", "2)"]


def test_report_without_raising():
    x = Tensor(numpy.random.default_rng(5).standard_normal((2, 3)))
    report = gradcheck(lambda t: _Scaled(2.0)(t), [x], raise_on_failure=False, name="half")
    assert isinstance(report, GradcheckReport)
    assert not report.passed and report.rtol == 1e-5 and report.name == "half"
    assert report.max_rel_error == pytest.approx(0.5, rel=1e-6)  # |6 - 3| / 6
    assert report.per_input == [report.max_rel_error]
    assert "FAILED" in str(report) and "half" in str(report)
    good = gradcheck(lambda t: t * 3, [x])
    assert good.passed and "ok" in str(good)


def test_float32_inputs_are_refused():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda t: t * 2, [numpy.ones(3, dtype=numpy.float32)])
    with pytest.raises(TypeError, match="input 1 is float32"):
        gradcheck(lambda a, b: a * b, [numpy.ones(3), Tensor([1.0, 2.0, 3.0])])


def test_wrt_and_non_float_inputs():
    rng = numpy.random.default_rng(6)
    x, idx = rng.standard_normal((4, 3)), numpy.array([3, 0, 0])
    # integer inputs are skipped by default (an index has no gradient)
    report = gradcheck(lambda t, i: t[i] * 2, [x, idx])
    assert report.compared == 12 and len(report.per_input) == 1
    only_b = gradcheck(lambda a, b: a * b, [x, x + 1], wrt=[1])
    assert only_b.compared == 12


def test_tuple_outputs_and_seeds():
    x = Tensor(numpy.random.default_rng(7).standard_normal(6))
    f = lambda t: (t[:2] * 3, t[3:].exp())  # noqa: E731
    first = gradcheck(f, [x], seed=1)
    assert first.passed and first.compared == 6
    assert gradcheck(f, [x], seed=1).max_rel_error == first.max_rel_error
    with pytest.raises(TypeError, match="must return a Tensor"):
        gradcheck(lambda t: t.numpy(), [x])


def test_tiny_gradients_are_compared_at_the_noise_level():
    """A saturated sigmoid has gradients near 1e-8, below what central differences resolve;
    the check must not fail a correct op there, and must still catch a 0.1% error."""
    x = numpy.random.default_rng(8).standard_normal((20, 20)) * 6
    report = gradcheck(lambda t: 1.0 / (1.0 + (-t).exp()), [x], name="sigmoid")
    assert report.passed and 0 < report.noise < 1e-6
    with pytest.raises(GradcheckError):
        gradcheck(lambda t: _Scaled(1.001)(1.0 / (1.0 + (-t).exp())), [x])
