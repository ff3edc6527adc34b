"""benchmarks/cpu_step.py's roofline (issue 29): the work it counts per op is the direct
algorithm's, and the floor is the larger of the two limits."""

import dataclasses
import importlib.util
import os

import numpy
import pytest

import minialex
import minialex.functional as F
from minialex import Tensor
from minialex.models import build_network
from minialex.models.presets import get_preset

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def cpu_step():
    path = os.path.join(os.path.dirname(HERE), "benchmarks", "cpu_step.py")
    spec = importlib.util.spec_from_file_location("cpu_step_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_alexnet_step_counts_the_direct_multiply_adds(cpu_step):
    """tiny at batch 2: conv1 reads the image, so its backward is dW only (the forward's work
    once); every other conv and linear computes dW and dx (twice the forward's)."""
    step = cpu_step.Steps("minialex", "tiny", 10, 2)
    totals, work = cpu_step.minialex_layer_times(step, 1)
    convs = [label for label in work if label.startswith("conv2d")]
    linears = [label for label in work if label.startswith("linear")]
    assert len(convs) == 5 and len(linears) >= 3
    conv1 = work[convs[0]]
    weight = dict(step.model.named_parameters())["column0.conv1.weight"].data
    out_hw = cpu_step.PRESETS["tiny"].spatial_sizes()["conv1"]
    direct = 2.0 * 2 * out_hw ** 2 * (2 * weight.shape[0]) * weight[0].size   # both columns
    assert conv1[0][0] == pytest.approx(direct)
    assert conv1[1][0] == pytest.approx(direct)                 # dW only
    for label in convs[1:] + linears:
        forward, backward = work[label]
        assert forward[0] > 0 and backward[0] == pytest.approx(2 * forward[0]), label
    sgd = work["SGD step"][0][1]
    assert sgd == 5 * sum(p.data.nbytes for _, p in step.model.named_parameters())
    assert set(totals) == set(work)


def test_the_floor_is_the_larger_limit_and_winograd_counts_as_direct(cpu_step, capsys):
    x = numpy.zeros((4, 8, 9, 9), numpy.float32)
    w = numpy.zeros((6, 8, 3, 3), numpy.float32)
    out = F.conv2d(Tensor(x), Tensor(w), None, 1, 1).data
    assert cpu_step.direct_flops(type("Op", (), {"name": "conv2d"})(), (x, w), out) == \
        2.0 * 4 * 9 * 9 * 6 * 8 * 3 * 3
    totals = {"a": [0.002, 0.0], "b": [0.001, 0.004]}
    work = {"a": [(1e9, 1e6), (0.0, 0)], "b": [(0.0, 1e9), (2e8, 1e6)]}
    rates = (1e12, 1e10)           # 1 TFLOP/s, 10 GB/s
    step_time, floor = cpu_step.print_roofline("test", totals, work, 1, rates)
    # a fwd: max(1 ms, 0.1 ms); b fwd: max(0, 100 ms); b bwd: max(0.2 ms, 0.1 ms)
    assert step_time == pytest.approx(0.007)
    assert floor == pytest.approx(0.001 + 0.1 + 0.0002)
    assert "50%" in capsys.readouterr().out                     # a: 1 ms floor in 2 ms


def test_the_bit_for_bit_check_names_a_parameter_that_differs_in_shape(cpu_step):
    """Two checkouts may build different networks for one preset name (fashion went grey): the
    check then says which parameter differs rather than a bare NO."""
    devices = minialex.default_devices()
    grey = get_preset("fashion")
    colour = dataclasses.replace(grey, grey=False)
    a = build_network(10, grey, devices, seed=0)
    assert cpu_step.same_weights(a, build_network(10, grey, devices, seed=0)) == "yes"
    moved = build_network(10, grey, devices, seed=0)
    next(iter(moved.parameters())).data[...] += 1
    assert cpu_step.same_weights(a, moved) == "NO"
    said = cpu_step.same_weights(a, build_network(10, colour, devices, seed=0))
    assert said.startswith("NO (a different network") and "conv1.weight" in said
    assert "(12, 1, 7, 7)" in said and "(12, 3, 7, 7)" in said
