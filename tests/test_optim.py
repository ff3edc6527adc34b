"""SGD as §5 writes it, checked against the formula by hand; the schedules and their state."""

import numpy
import pytest

import minialex
from minialex.optim import (BLOCK, SGD, SHARED, OptimizerError, ReduceOnPlateau, StepSchedule,
                            make_schedule, update_in_blocks)


def _param(array, device):
    return minialex.Tensor(device.put(array), requires_grad=True, device=device)


def test_sgd_matches_the_paper_formula(device, rng):
    w0 = rng.standard_normal((4, 3))
    b0 = rng.standard_normal(4)
    w, b = _param(w0, device), _param(b0, device)
    opt = SGD([("fc.weight", w), ("fc.bias", b)], lr=0.1, momentum=0.9, weight_decay=0.01)
    v_w, v_b = numpy.zeros_like(w0), numpy.zeros_like(b0)
    ww, bb = w0.copy(), b0.copy()
    for _ in range(3):
        gw, gb = rng.standard_normal(w0.shape), rng.standard_normal(b0.shape)
        w.grad, b.grad = device.put(gw), device.put(gb)
        opt.step()
        # v <- 0.9 v - 0.0005 eps w - eps grad ; w <- w + v   (here with decay 0.01, eps 0.1)
        v_w = 0.9 * v_w - 0.01 * 0.1 * ww - 0.1 * gw
        ww = ww + v_w
        v_b = 0.9 * v_b - 0.1 * gb          # biases are not decayed by default
        bb = bb + v_b
        numpy.testing.assert_allclose(w.numpy(), ww, rtol=1e-12)
        numpy.testing.assert_allclose(b.numpy(), bb, rtol=1e-12)
    assert opt.steps == 3
    # the update happened in place: the tensor still holds the same array object
    assert w.data is opt.params[0][1].data


@pytest.mark.parametrize("shape,order,threads", [
    ((3 * BLOCK + 5,), "C", 1), ((7, 5), "F", 2), ((4, 3), "C", 2),
    ((SHARED + 3 * BLOCK + 5,), "C", 2), ((3, SHARED // 3 + 7), "C", 3)])
def test_the_blocked_update_is_bit_for_bit_the_four_lines(rng, monkeypatch, shape, order, threads):
    """Also when a large parameter's blocks are shared among the threads (optim.SHARED)."""
    from minialex import cpu as utils
    monkeypatch.setattr(utils, "THREADS", threads)
    w, v, g = (numpy.asarray(rng.standard_normal(shape), numpy.float32, order=order) for _ in range(3))
    w0, v0 = w.copy(), v.copy()
    v0 *= 0.9
    v0 -= (5e-4 * 0.01) * w0
    v0 -= 0.01 * g
    w0 += v0
    update_in_blocks(w, v, g, 0.01, 0.9, 5e-4 * 0.01)
    assert numpy.array_equal(w, w0) and numpy.array_equal(v, v0)


def test_decay_biases_option_and_unnamed_parameters(rng):
    b0 = rng.standard_normal(5)
    for decay_biases, expected in ((False, b0 - 0.1 * 1.0), (True, b0 - 0.5 * 0.1 * b0 - 0.1 * 1.0)):
        b = minialex.Tensor(b0.copy(), requires_grad=True)
        opt = SGD([b], lr=0.1, momentum=0.0, weight_decay=0.5, decay_biases=decay_biases)
        b.grad = numpy.ones(5)
        opt.step()
        numpy.testing.assert_allclose(b.numpy(), expected)
    # a 2-D unnamed parameter is a weight: always decayed
    w = minialex.Tensor(numpy.ones((2, 2)), requires_grad=True)
    opt = SGD([w], lr=0.1, momentum=0.0, weight_decay=0.5)
    w.grad = numpy.zeros((2, 2))
    opt.step()
    numpy.testing.assert_allclose(w.numpy(), 1 - 0.5 * 0.1)


def test_parameters_without_gradient_are_left_alone(rng):
    w = minialex.Tensor(numpy.ones(3), requires_grad=True)
    opt = SGD([("w", w)])
    opt.step()
    numpy.testing.assert_array_equal(w.numpy(), 1.0)


def test_state_dict_round_trip_continues_identically(rng):
    def run(opt, w, grads):
        for g in grads:
            w.grad = g
            opt.step()
        return w.numpy().copy()

    grads = [rng.standard_normal(6) for _ in range(4)]
    w = minialex.Tensor(numpy.arange(6.0), requires_grad=True)
    opt = SGD([("x.weight", w)], lr=0.05)
    full = run(opt, w, grads)

    w1 = minialex.Tensor(numpy.arange(6.0), requires_grad=True)
    opt1 = SGD([("x.weight", w1)], lr=0.05)
    run(opt1, w1, grads[:2])
    state = opt1.state_dict()
    assert set(state["velocity"]) == {"x.weight"} and state["lr"] == 0.05 and state["steps"] == 2
    w2 = minialex.Tensor(w1.numpy().copy(), requires_grad=True)
    opt2 = SGD([("x.weight", w2)], lr=1.0)
    opt2.load_state_dict(state)
    assert opt2.lr == 0.05
    numpy.testing.assert_array_equal(run(opt2, w2, grads[2:]), full)

    with pytest.raises(OptimizerError, match="missing"):
        SGD([("other", minialex.Tensor(numpy.zeros(6), requires_grad=True))]).load_state_dict(state)


def test_bad_arguments():
    w = minialex.Tensor(numpy.zeros(2), requires_grad=True)
    with pytest.raises(ValueError, match="learning rate"):
        SGD([w], lr=0)
    for bad in (float("nan"), float("inf")):   # NaN passes "lr <= 0"; it must still be refused
        with pytest.raises(ValueError, match="learning rate must be a positive number"):
            SGD([w], lr=bad)
        with pytest.raises(ValueError, match="weight decay must be a number"):
            SGD([w], weight_decay=bad)
        with pytest.raises(ValueError, match="momentum"):
            SGD([w], momentum=bad)
    with pytest.raises(ValueError, match="no parameters"):
        SGD([])
    opt = SGD([("w", w)])
    w.grad = numpy.zeros(3)
    with pytest.raises(ValueError, match="shape"):
        opt.step()


def test_reduce_on_plateau_divides_by_ten_at_most_three_times():
    w = minialex.Tensor(numpy.zeros(2), requires_grad=True)
    opt = SGD([w], lr=0.01)
    sched = ReduceOnPlateau(opt, patience=2)
    errors = [0.9, 0.8, 0.8, 0.8,      # two epochs without improvement -> 0.001
              0.7, 0.75, 0.71,         # -> 0.0001
              0.72, 0.73,              # -> 0.00001 (third reduction)
              0.8, 0.8]                # a fourth plateau: finished, lr unchanged
    lrs = []
    for e in errors:
        sched.step(e)
        lrs.append(opt.lr)
    expected = [0.01, 0.01, 0.01, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5]
    numpy.testing.assert_allclose(lrs, expected)
    assert sched.reductions == 3 and sched.finished

    # state round trip: a fresh schedule continues where the old one was
    sched2 = ReduceOnPlateau(SGD([w], lr=1e-3), patience=2)
    state = ReduceOnPlateau(opt, patience=2)
    for e in errors[:3]:
        state.step(e)
    sched2.load_state_dict(state.state_dict())
    assert sched2.best == 0.8 and sched2.bad_epochs == 1
    assert sched2.step(0.8) is True and numpy.isclose(sched2.optimizer.lr, 1e-4)


def test_step_schedule_and_factory():
    w = minialex.Tensor(numpy.zeros(2), requires_grad=True)
    opt = SGD([w], lr=0.01)
    sched = make_schedule("step", opt, step_size=2, patience=5)  # patience ignored for 'step'
    assert isinstance(sched, StepSchedule)
    lrs = []
    for _ in range(10):
        sched.step(0.5)
        lrs.append(opt.lr)
    numpy.testing.assert_allclose(lrs, [0.01, 1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5, 1e-5, 1e-5, 1e-5])
    restored = StepSchedule(SGD([w], lr=0.01), step_size=2)
    restored.load_state_dict(sched.state_dict())
    assert restored.epochs == 10 and restored.reductions == 3
    with pytest.raises(OptimizerError):
        ReduceOnPlateau(opt).load_state_dict(sched.state_dict())
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("cosine", opt)
