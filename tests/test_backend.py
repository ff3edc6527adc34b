"""Devices, the placement discipline, and the transfer log (minialex.backend, minialex.to_device)."""

import numpy
import pytest

import minialex
from minialex import Device, DeviceError, Tensor, concat, to_device, transfer_log
from minialex.backend import array_device, as_numpy, copy_array, get_array_module


@pytest.mark.parametrize("spec,kind,index", [
    ("cpu", "cpu", None), ("cpu:0", "cpu", 0), ("cpu:1", "cpu", 1), ("cuda:1", "cuda", 1),
    ("cuda", "cuda", 0), ("gpu:1", "cuda", 1), (" CPU:1 ", "cpu", 1),
])
def test_device_parsing(spec, kind, index):
    d = Device(spec)
    assert (d.kind, d.index) == (kind, index)
    assert Device(str(d)) == d and Device(d) == d
    assert repr(d) == f"Device('{d}')"


@pytest.mark.parametrize("spec", ["tpu", "cpu:", "cpu:x", "cuda:-1", ":0", "", "cuda:1:2"])
def test_bad_device_strings(spec):
    with pytest.raises(ValueError, match="device"):
        Device(spec)


def test_device_equality_and_hashing():
    assert Device("cpu") != Device("cpu:0")  # plain CPU is not logical column 0
    assert Device("cpu:0") != Device("cpu:1")
    assert Device("cuda") == Device("cuda:0") != Device("cpu:0")
    assert len({Device("cpu:0"), Device("cpu:0"), Device("cpu")}) == 2
    assert not Device("cpu:1").is_cuda and Device("cuda:3").is_cuda
    assert Device("cpu:1").xp is numpy


def test_missing_gpu_is_a_clear_error():
    missing = Device(f"cuda:{minialex.gpu_count()}")  # one past the last GPU there is
    with pytest.raises(DeviceError, match=str(missing)):
        missing.put(numpy.zeros(2))
    with pytest.raises(DeviceError):
        Tensor(numpy.zeros(2), device=missing)


def test_default_devices_match_the_gpus():
    n = minialex.gpu_count()
    expected = {0: ("cpu", "cpu"), 1: ("cuda:0", "cuda:0")}.get(n, ("cuda:0", "cuda:1"))
    assert minialex.default_devices() == tuple(Device(d) for d in expected)
    assert minialex.default_device() == Device(expected[0])


def test_array_module_and_device_of_raw_arrays(device):
    a = device.put(numpy.arange(3.0))
    assert get_array_module(a) is device.xp
    assert get_array_module(numpy.ones(1), a) is device.xp
    assert array_device(a) == (device if device.is_cuda else Device("cpu"))
    numpy.testing.assert_array_equal(as_numpy(a), [0, 1, 2])


def test_tensors_know_their_device(device):
    t = Tensor(numpy.ones(3), device=device)
    assert t.device == device and (t * 2).device == device and (t.reshape(1, 3) @ t.reshape(3, 1)).device == device
    assert get_array_module(t.data) is device.xp


@pytest.mark.parametrize("op,name", [
    (lambda a, b: a + b, "Add"),
    (lambda a, b: a * b, "Mul"),
    (lambda a, b: a.reshape(1, 3) @ b.reshape(3, 1), "MatMul"),
    (lambda a, b: concat([a, a, b]), "Concat"),
])
def test_mixed_devices_raise_naming_op_and_devices(op, name):
    a = Tensor(numpy.ones(3), device="cpu:0")
    b = Tensor(numpy.ones(3), device="cpu:1")
    with pytest.raises(DeviceError, match=rf"{name}: inputs live on different devices "
                                          r"\(cpu:0 and cpu:1\)"):
        op(a, b)


def test_plain_cpu_and_logical_cpu_do_not_mix():
    with pytest.raises(DeviceError, match=r"cpu and cpu:0"):
        Tensor(numpy.ones(2)) + Tensor(numpy.ones(2), device="cpu:0")


def test_numbers_and_host_arrays_join_a_logical_device():
    a = Tensor(numpy.ones(3), device="cpu:1")
    assert (a * 2 + numpy.arange(3.0)).device == Device("cpu:1")


def _other(device):
    """A device to cross to from ``device``: a logical CPU from 'cpu', the host from a GPU."""
    return Device("cpu:1") if not device.is_cuda else Device("cpu")


def test_to_device_is_differentiable_and_logged(device):
    dst = _other(device)
    a = numpy.arange(6.0).reshape(2, 3)
    x = Tensor(a, requires_grad=True, device=device)
    w = Tensor(numpy.array([1.0, -2.0, 0.5]), device=dst)
    with transfer_log() as log:
        y = to_device(x, dst, label="conv3-cross")
        assert y.device == dst and get_array_module(y.data) is dst.xp
        numpy.testing.assert_array_equal(y.numpy(), a)
        (y * w).sum().backward()
    assert x.grad is not None and get_array_module(x.grad) is device.xp  # back on the source
    numpy.testing.assert_array_equal(as_numpy(x.grad), numpy.tile([1.0, -2.0, 0.5], (2, 1)))
    assert [(t.label, t.source, t.destination, t.nbytes, t.direction) for t in log] == [
        ("conv3-cross", str(device), str(dst), 48, "forward"),
        ("conv3-cross", str(dst), str(device), 48, "backward"),
    ]
    assert log.total_bytes() == 96 and log.total_bytes("backward") == 48
    assert log.labels("forward") == ["conv3-cross"] and len(log) == 2
    table = log.table()
    assert "conv3-cross" in table and "backward" in table and "96" in table


def test_to_device_copies_rather_than_aliases():
    x = Tensor(numpy.zeros(3), device="cpu:0")
    y = to_device(x, "cpu:1")
    y.data[0] = 5.0
    assert x.data[0] == 0.0


def test_to_device_same_device_is_a_no_op():
    x = Tensor(numpy.ones(4), device="cpu:1", requires_grad=True)
    with transfer_log() as log:
        assert to_device(x, "cpu:1") is x
        assert x.to(Device("cpu:1")) is x
    assert len(log) == 0


def test_to_device_under_no_grad_is_logged_without_graph():
    x = Tensor(numpy.ones(4, dtype=numpy.float32), device="cpu:0", requires_grad=True)
    with transfer_log() as log, minialex.no_grad():
        y = x.to("cpu:1", label="eval")
    assert not y.requires_grad and y.creator is None
    assert [(t.label, t.direction, t.nbytes) for t in log] == [("eval", "forward", 16)]


def test_nested_transfer_logs():
    x = Tensor(numpy.ones(2), device="cpu:0")
    with transfer_log() as outer:
        to_device(x, "cpu:1", label="a")
        with transfer_log() as inner:
            to_device(x, "cpu:1", label="b")
        to_device(x, "cpu:1", label="c")
    to_device(x, "cpu:1", label="after")  # no log open: recorded nowhere
    assert outer.labels() == ["a", "b", "c"]
    assert inner.labels() == ["b"]


def test_transfer_log_closes_on_error():
    x = Tensor(numpy.ones(2), device="cpu:0")
    with pytest.raises(RuntimeError):
        with transfer_log() as log:
            raise RuntimeError
    to_device(x, "cpu:1")
    assert len(log) == 0


def test_copy_array_makes_a_new_array():
    a = numpy.arange(3.0)
    b = copy_array(a, Device("cpu:0"), Device("cpu:1"))
    assert b is not a and not numpy.shares_memory(a, b)
    numpy.testing.assert_array_equal(a, b)


@pytest.mark.gpu
def test_cuda_copies_keep_values_and_layout():
    if not minialex.gpu_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    from minialex.backend import cupy
    host = numpy.arange(12.0).reshape(3, 4)
    gpu = copy_array(host.T, Device("cpu"), Device("cuda:0"))  # a non-contiguous source
    assert isinstance(gpu, cupy.ndarray) and gpu.device.id == 0
    numpy.testing.assert_array_equal(cupy.asnumpy(gpu), host.T)
    again = copy_array(gpu.T, Device("cuda:0"), Device(f"cuda:{minialex.gpu_count() - 1}"))
    numpy.testing.assert_array_equal(cupy.asnumpy(again), host)
    with pytest.raises(DeviceError, match="cuda:0"):
        Tensor(numpy.ones(2), device="cuda:0") + Tensor(numpy.ones(2))
