"""Autograd: every basic op against finite differences, and the engine's promises.

Each op case runs on both backends (the ``device`` fixture): a float64 central-difference check
with a random upstream gradient (minialex.gradcheck), then the same op in float32 (the training
dtype) must give gradients of float32 dtype that agree with the float64 ones.
"""

import gc
import time
import weakref
import zlib

import numpy
import pytest

import minialex
from minialex import Function, Tensor, concat, gradcheck, no_grad, split
from minialex.autograd import enable_grad, is_grad_enabled


def normal(*shape):
    return lambda rng: rng.standard_normal(shape)


def positive(*shape):
    """Values in [0.5, 2]: away from log's and division's pole at 0."""
    return lambda rng: rng.uniform(0.5, 2.0, shape)


def tie_free(*shape):
    """A shuffled 0, 1, 2, ... plus noise below 0.1: every max has a margin of 0.8 >> eps."""
    def make(rng):
        n = int(numpy.prod(shape))
        return (rng.permutation(n) + 0.1 * rng.random(n)).reshape(shape)
    return make


# (id, function of tensors, makers of the float64 inputs)
OP_CASES = [
    ("add", lambda a, b: a + b, [normal(3, 4), normal(3, 4)]),
    ("add-broadcast", lambda a, b: a + b, [normal(3, 1), normal(4)]),
    ("add-broadcast-lead", lambda a, b: a + b, [normal(2, 3, 4), normal(1, 4)]),
    ("sub-broadcast", lambda a, b: a - b, [normal(2, 1, 4), normal(3, 1)]),
    ("mul-broadcast", lambda a, b: a * b, [normal(3, 4), normal(4)]),
    ("mul-self", lambda a: a * a, [normal(3, 4)]),
    ("div-broadcast", lambda a, b: a / b, [normal(3, 4), positive(1, 4)]),
    ("neg", lambda a: -a, [normal(3, 4)]),
    ("pow-3", lambda a: a ** 3, [normal(3, 4)]),
    ("pow-half", lambda a: a ** 0.5, [positive(3, 4)]),
    ("pow-negative", lambda a: a ** -1.5, [positive(3, 4)]),
    ("pow-zero", lambda a: a ** 0 + a, [normal(3, 4)]),
    ("matmul", lambda a, b: a @ b, [normal(3, 4), normal(4, 5)]),
    ("matmul-batched", lambda a, b: a @ b, [normal(2, 3, 4), normal(2, 4, 5)]),
    ("matmul-broadcast", lambda a, b: a @ b, [normal(2, 1, 3, 4), normal(3, 4, 2)]),
    ("matmul-broadcast-2d", lambda a, b: a @ b, [normal(3, 4), normal(2, 4, 5)]),
    ("reshape", lambda a: a.reshape(4, -1), [normal(2, 3, 4)]),
    ("reshape-tuple", lambda a: a.reshape((24,)) * 2, [normal(2, 3, 4)]),
    ("transpose-reverse", lambda a: a.transpose(), [normal(2, 3, 4)]),
    ("transpose-axes", lambda a: a.transpose(1, 2, 0), [normal(2, 3, 4)]),
    ("transpose-negative", lambda a: a.transpose((-1, 0, 1)), [normal(2, 3, 4)]),
    ("T", lambda a: a.T, [normal(3, 4)]),
    ("sum-all", lambda a: a.sum(), [normal(2, 3, 4)]),
    ("sum-axis", lambda a: a.sum(axis=1), [normal(2, 3, 4)]),
    ("sum-tuple-keepdims", lambda a: a.sum(axis=(0, 2), keepdims=True), [normal(2, 3, 4)]),
    ("sum-negative-list", lambda a: a.sum(axis=[-1, 0]), [normal(2, 3, 4)]),
    ("mean-all", lambda a: a.mean(), [normal(2, 3, 4)]),
    ("mean-axis-keepdims", lambda a: a.mean(axis=-1, keepdims=True), [normal(2, 3, 4)]),
    ("mean-tuple", lambda a: a.mean(axis=(0, 1)), [normal(2, 3, 4)]),
    ("max-all", lambda a: a.max(), [tie_free(3, 4, 5)]),
    ("max-all-keepdims", lambda a: a.max(keepdims=True), [tie_free(3, 4, 5)]),
    ("max-axis", lambda a: a.max(axis=1), [tie_free(3, 4, 5)]),
    ("max-negative-axis-keepdims", lambda a: a.max(axis=-1, keepdims=True), [tie_free(3, 4, 5)]),
    ("max-tuple", lambda a: a.max(axis=(0, 2)), [tie_free(3, 4, 5)]),
    ("max-tuple-unsorted-keepdims", lambda a: a.max(axis=(2, 0), keepdims=True), [tie_free(3, 4, 5)]),
    ("exp", lambda a: a.exp(), [normal(3, 4)]),
    ("log", lambda a: a.log(), [positive(3, 4)]),
    ("exp-log-chain", lambda a: (a.exp() * a).log(), [positive(3, 4)]),
    ("concat", lambda a, b, c: concat([a, b, c], axis=1), [normal(2, 1, 3), normal(2, 3, 3), normal(2, 2, 3)]),
    ("concat-negative-axis", lambda a, b: concat([a, b], axis=-1), [normal(2, 3), normal(2, 4)]),
    ("split-some-unused", lambda a: split(a, 3, axis=1)[1] * 2, [normal(2, 6, 2)]),
    ("split-two-outputs", lambda a: tuple(split(a, [1, 4], axis=0)[k] for k in (0, 2)), [normal(6, 3)]),
    ("split-reused", lambda a: (lambda p, q: p * q + p)(*split(a, 2, axis=-1)), [normal(3, 4)]),
    ("getitem-slices", lambda a: a[1:, ::2], [normal(3, 5)]),
    ("getitem-ints-negative", lambda a: a[0, -1], [normal(3, 5)]),
    ("getitem-fancy-repeated", lambda a: a[[0, 0, 2, -1]], [normal(4, 3)]),
    ("getitem-fancy-mixed", lambda a: a[[-1, 0], :, [1, -2]], [normal(3, 2, 4)]),
    ("getitem-bool", lambda a: a[numpy.array([True, False, True])], [normal(3, 4)]),
    ("getitem-ellipsis-newaxis", lambda a: a[..., None, 1], [normal(2, 3, 4)]),
    ("getitem-tensor-index", lambda a: a[Tensor(numpy.array([2, 0, 2]))], [normal(3, 4)]),
    ("astype-float64", lambda a: a.astype("float64") * 2, [normal(3, 4)]),
    ("scalar-left", lambda a: 2.0 + a, [normal(3, 4)]),
    ("scalar-right", lambda a: a + 2, [normal(3, 4)]),
    ("scalar-rsub", lambda a: 2.0 - a, [normal(3, 4)]),
    ("scalar-sub", lambda a: a - 0.5, [normal(3, 4)]),
    ("scalar-rmul", lambda a: 3 * a, [normal(3, 4)]),
    ("scalar-rdiv", lambda a: 2.0 / a, [positive(3, 4)]),
    ("scalar-div", lambda a: a / 4.0, [normal(3, 4)]),
    ("array-constant-left", lambda a: a.xp.arange(4.0) * a, [normal(3, 4)]),  # ndarray.__mul__ defers
    ("composite", lambda a, b: ((a @ b).exp().sum(axis=0) / (1.0 + (a * a).sum())).max(),
     [normal(3, 4), normal(4, 5)]),
]


def _float32_grads(fn, arrays, device, g64):
    """Gradients of the same op in float32 (the training dtype)."""
    xs = [Tensor(a.astype(numpy.float32), requires_grad=True, device=device) for a in arrays]
    ys = fn(*xs)
    ys = ys if isinstance(ys, tuple) else (ys,)
    for k, (y, g) in enumerate(zip(ys, g64)):
        y.backward(g.astype(y.dtype), retain_graph=k < len(ys) - 1)
    return xs


@pytest.mark.parametrize("name,fn,makers", OP_CASES, ids=[c[0] for c in OP_CASES])
def test_op_gradient(name, fn, makers, device):
    rng = numpy.random.default_rng(zlib.crc32(name.encode()))  # fixed per case
    arrays = [make(rng) for make in makers]
    xs = [Tensor(a, device=device) for a in arrays]
    report = gradcheck(fn, xs, name=name)
    assert report.passed and report.mode == "elementwise"
    assert report.compared == sum(a.size for a in arrays)

    # float32: same gradients (to float32 precision), float32 dtype, on the input's device.
    x64 = [Tensor(a, requires_grad=True, device=device) for a in arrays]
    ys = fn(*x64)
    ys = ys if isinstance(ys, tuple) else (ys,)
    gs = [rng.standard_normal(y.shape) for y in ys]
    for k, (y, g) in enumerate(zip(ys, gs)):
        assert y.device == device
        y.backward(g, retain_graph=k < len(ys) - 1)
    x32 = _float32_grads(fn, arrays, device, gs)
    for a, b in zip(x64, x32):
        assert b.grad.dtype == numpy.float32 and b.grad.shape == b.shape
        assert minialex.get_array_module(b.grad) is device.xp
        numpy.testing.assert_allclose(minialex.as_numpy(b.grad), minialex.as_numpy(a.grad),
                                      rtol=1e-3, atol=1e-3)


def test_astype_round_trip_gradient(device):
    x = Tensor(numpy.array([1.5, -2.0, 3.25]), requires_grad=True, device=device)
    y = x.astype(numpy.float32)
    assert y.dtype == numpy.float32
    g = numpy.array([0.5, 2.0, -1.0], dtype=numpy.float32)
    y.backward(g)
    assert x.grad.dtype == numpy.float64
    numpy.testing.assert_array_equal(minialex.as_numpy(x.grad), g.astype(numpy.float64))


def test_scalar_operators_values_and_gradients(device):
    """Python numbers on either side: values as NumPy gives them, exact gradients."""
    a = numpy.array([0.5, -1.5, 2.0])
    cases = [  # (expression, numpy value, d/dx)
        (lambda x: 2 + x, 2 + a, 1 + 0 * a),
        (lambda x: x - 2, a - 2, 1 + 0 * a),
        (lambda x: 2 - x, 2 - a, -1 + 0 * a),
        (lambda x: 3 * x, 3 * a, 3 + 0 * a),
        (lambda x: x * 3, 3 * a, 3 + 0 * a),
        (lambda x: 1 / x, 1 / a, -1 / a ** 2),
        (lambda x: x / 2, a / 2, 0.5 + 0 * a),
        (lambda x: x ** 2, a ** 2, 2 * a),
        (lambda x: -x, -a, -1 + 0 * a),
    ]
    for expr, value, slope in cases:
        x = Tensor(a, requires_grad=True, device=device)
        y = expr(x)
        assert isinstance(y, Tensor) and y.dtype == numpy.float64
        numpy.testing.assert_allclose(y.numpy(), value, rtol=1e-15)
        y.sum().backward()
        numpy.testing.assert_allclose(minialex.as_numpy(x.grad), slope, rtol=1e-15)


def test_constant_dtypes_follow_numpy():
    f32 = Tensor(numpy.ones(3, dtype=numpy.float32))
    assert (f32 * 2.5).dtype == numpy.float32
    assert (2 + f32).dtype == numpy.float32
    ints = Tensor(numpy.arange(3))
    half = ints * 0.5  # as numpy.arange(3) * 0.5: float64, not truncated to [0, 0, 1]
    assert half.dtype == numpy.float64
    numpy.testing.assert_array_equal(half.numpy(), [0.0, 0.5, 1.0])
    assert (ints + 1).dtype == ints.dtype


def test_mixed_dtype_gradients_have_input_dtype():
    """float32 tensor * float64 array: a float64 result, but a float32 gradient for the tensor."""
    x = Tensor(numpy.ones(3, dtype=numpy.float32), requires_grad=True)
    y = x * numpy.array([1.0, 2.0, 3.0])
    assert y.dtype == numpy.float64
    y.sum().backward()
    assert x.grad.dtype == numpy.float32
    numpy.testing.assert_array_equal(x.grad, [1, 2, 3])


def test_ndarray_on_the_left_gives_a_tensor():
    x = Tensor(numpy.ones(3), requires_grad=True)
    for y in (numpy.arange(3.0) * x, numpy.arange(3.0) + x, numpy.float64(2.0) * x,
              numpy.ones((3, 3)) @ x.reshape(3, 1)):
        assert isinstance(y, Tensor) and y.requires_grad


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------

def test_reuse_gives_exact_gradient(device):
    """y = x*x + x uses x three times: dy/dx = 2x + 1 exactly."""
    a = numpy.array([-1.5, 0.0, 0.25, 3.0])
    x = Tensor(a, requires_grad=True, device=device)
    (x * x + x).sum().backward()
    numpy.testing.assert_array_equal(minialex.as_numpy(x.grad), 2 * a + 1)


def test_many_uses_accumulate(device):
    a = numpy.array([1.0, -2.0, 0.5])
    x = Tensor(a, requires_grad=True, device=device)
    h = x * 2  # a non-leaf used by four consumers
    y = h + h * h + h.exp() + split(concat([h, x]), 2)[0]
    y.sum().backward()
    expected = 2 * (1 + 2 * (2 * a) + numpy.exp(2 * a) + 1)
    numpy.testing.assert_allclose(minialex.as_numpy(x.grad), expected, rtol=1e-14)


def test_long_chain_has_no_recursion_limit():
    x = Tensor(numpy.ones(2), requires_grad=True)
    y = x
    start = time.perf_counter()
    for i in range(10_000):
        y = y * 1.0 if i % 2 else y + 1.0
    y.sum().backward()
    elapsed = time.perf_counter() - start
    numpy.testing.assert_array_equal(x.grad, [1.0, 1.0])
    assert elapsed < 10, f"10,000 ops forward and backward took {elapsed:.1f} s"
    del y  # deallocating the (freed) chain must not recurse either


def test_no_grad_records_no_graph():
    x = Tensor(numpy.ones(3), requires_grad=True)
    with no_grad():
        assert not is_grad_enabled()
        y = x * 2 + 1
        with enable_grad():
            z = x * 2
        assert not is_grad_enabled()
    assert is_grad_enabled()
    assert not y.requires_grad and y.creator is None
    assert z.requires_grad and z.creator is not None
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()
    with pytest.raises(ValueError):
        with no_grad():
            raise ValueError("boom")
    assert is_grad_enabled()  # restored after an exception


def test_no_grad_as_decorator():
    @no_grad()
    def evaluate(t):
        return t * 3

    assert not evaluate(Tensor(numpy.ones(2), requires_grad=True)).requires_grad


def test_graph_is_freed_after_backward():
    x = Tensor(numpy.ones((2, 2)), requires_grad=True)
    h = x * 3
    probe = weakref.ref(h)
    y = (h * h).sum()
    fn = y.creator
    del h
    y.backward()
    gc.collect()
    assert probe() is None, "an intermediate tensor outlived backward()"
    assert fn.inputs is None and fn.saved == ()
    grad_before = x.grad.copy()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()
    numpy.testing.assert_array_equal(x.grad, grad_before)  # the failed pass changed nothing


def test_second_backward_through_a_shared_freed_part():
    x = Tensor(numpy.ones(2), requires_grad=True)
    h = x.exp()
    h.sum().backward()
    with pytest.raises(RuntimeError, match="Exp"):
        (h * 2).sum().backward()


def test_retain_graph_allows_a_second_backward():
    x = Tensor(numpy.array([1.0, 2.0]), requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    numpy.testing.assert_array_equal(x.grad, 2 * (2 * numpy.array([1.0, 2.0])))


def test_leaf_gradients_accumulate_across_calls():
    x = Tensor(numpy.array([1.0, 2.0]), requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    numpy.testing.assert_array_equal(x.grad, [3 + 2, 3 + 4])
    x.zero_grad()
    assert x.grad is None


def test_gradients_are_not_aliased():
    """Add hands the same gy to both inputs: in-place updates of one .grad must not leak."""
    a = Tensor(numpy.zeros(3), requires_grad=True)
    b = Tensor(numpy.zeros(3), requires_grad=True)
    g = numpy.ones(3)
    (a + b).backward(g)
    a.grad *= 10
    numpy.testing.assert_array_equal(b.grad, [1, 1, 1])
    numpy.testing.assert_array_equal(g, [1, 1, 1])


def test_backward_on_non_scalar_needs_a_gradient():
    y = Tensor(numpy.ones((2, 3)), requires_grad=True) * 2
    with pytest.raises(RuntimeError, match=r"shape \(2, 3\) needs an upstream gradient"):
        y.backward()
    with pytest.raises(ValueError, match=r"grad has shape \(3,\)"):
        y.backward(numpy.ones(3))
    y.backward(numpy.ones((2, 3)))  # a list or a Tensor would do too


def test_backward_accepts_lists_and_tensors_as_gradient():
    x = Tensor(numpy.ones(2), requires_grad=True)
    (x * 2).backward([1.0, 3.0], retain_graph=True)
    (x * 2).backward(Tensor(numpy.array([1.0, 1.0])))
    numpy.testing.assert_array_equal(x.grad, [4.0, 8.0])


class _WrongShape(Function):
    def forward(self, x):
        return x * 2

    def backward(self, gy):
        return gy.sum(axis=0)


class _WrongDtype(Function):
    def forward(self, x):
        return x * 2

    def backward(self, gy):
        return (2 * gy).astype(numpy.float32)


class _WrongCount(Function):
    name = "TwoGrads"

    def forward(self, x):
        return x * 2

    def backward(self, gy):
        return 2 * gy, 2 * gy


@pytest.mark.parametrize("op,pattern", [
    (_WrongShape, r"_WrongShape.backward returned a gradient of shape \(3,\) and dtype float64 "
                  r"for input 0 of shape \(2, 3\)"),
    (_WrongDtype, r"_WrongDtype.backward returned .* dtype float32 for input 0 .* dtype float64"),
    (_WrongCount, r"TwoGrads.backward returned 2 gradient\(s\) for 1 input\(s\)"),
])
def test_bad_backward_is_reported_with_the_op_name(op, pattern):
    x = Tensor(numpy.ones((2, 3)), requires_grad=True)
    with pytest.raises(RuntimeError, match=pattern):
        op()(x).sum().backward()


class _ReturnsNumber(Function):
    def forward(self, x):
        return float(x.sum())

    def backward(self, gy):
        return gy


def test_forward_must_return_an_array():
    with pytest.raises(TypeError, match="_ReturnsNumber.forward returned a float, not an array"):
        _ReturnsNumber()(Tensor(numpy.ones(2)))


def test_ops_are_reachable_from_autograd_and_ops():
    import minialex.autograd as autograd
    import minialex.ops as ops
    for name in ("add", "matmul", "sum", "max", "getitem", "concat", "split", "sum_to", "Max"):
        assert getattr(autograd, name) is getattr(ops, name)


def test_retain_grad_keeps_intermediate_gradients():
    x = Tensor(numpy.array([1.0, 2.0]), requires_grad=True)
    h = (x * 3).retain_grad()
    k = x * 5
    (h * h + k).sum().backward()
    numpy.testing.assert_array_equal(h.grad, 2 * 3 * numpy.array([1.0, 2.0]))
    assert k.grad is None


def test_unused_output_of_split_gets_zero_gradient():
    x = Tensor(numpy.arange(6.0), requires_grad=True)
    first, second, third = split(x, 3)
    fn = first.creator
    del second  # collected: the Function holds its outputs weakly
    gc.collect()
    assert fn.outputs[1]() is None
    (first * 2 + third).sum().backward()
    numpy.testing.assert_array_equal(x.grad, [2, 2, 0, 0, 1, 1])


def test_zero_dim_results_are_arrays():
    x = Tensor(numpy.array(2.0), requires_grad=True)
    y = x * 3 + x ** 2
    assert isinstance(y.data, numpy.ndarray) and y.shape == ()
    y.backward()
    assert isinstance(x.grad, numpy.ndarray) and x.grad.shape == ()
    assert x.grad == 3 + 4
    assert isinstance(Tensor(numpy.float64(1.5)).data, numpy.ndarray)


def test_tensor_construction_dtype_policy():
    assert Tensor(1.5).dtype == numpy.float32  # Python floats: AlexNet's training dtype
    assert Tensor([1.0, 2.0]).dtype == numpy.float32
    assert Tensor([[1, 2.5]]).dtype == numpy.float32
    assert Tensor(3).dtype == numpy.int64
    assert Tensor(numpy.zeros(2)).dtype == numpy.float64  # arrays keep theirs
    assert Tensor([1.0], dtype=numpy.float64).dtype == numpy.float64
    a = numpy.zeros(2)
    assert Tensor(a).data is a  # no copy, like torch.from_numpy
    assert Tensor(Tensor(a), device="cpu:1").device == minialex.Device("cpu:1")


def test_tensor_basics():
    x = Tensor(numpy.arange(6.0).reshape(2, 3), requires_grad=True, device="cpu:0")
    assert x.shape == (2, 3) and x.ndim == 2 and x.size == 6 and len(x) == 2 and x.is_leaf
    assert (x.sum() * 1).item() == 15.0
    with pytest.raises(ValueError, match="one element"):
        x.item()
    assert isinstance(x.numpy(), numpy.ndarray)
    text = repr(x)
    assert "device='cpu:0'" in text and "float64" in text and "requires_grad=True" in text
    d = x.detach()
    assert d.data is x.data and not d.requires_grad and d.creator is None
    assert not (x * 2).is_leaf
    with pytest.raises(TypeError, match="0-d"):
        len(x.sum())


def test_pow_rejects_tensor_exponent():
    x = Tensor(numpy.ones(2))
    with pytest.raises(TypeError, match="exponent must be a number"):
        x ** x


def test_matmul_shape_errors_name_the_shapes():
    a, b = Tensor(numpy.ones((2, 3))), Tensor(numpy.ones((4, 5)))
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\)"):
        a @ b
    with pytest.raises(ValueError, match="batch axes"):
        Tensor(numpy.ones((2, 2, 3))) @ Tensor(numpy.ones((3, 3, 4)))


class _RecordsCurrentGPU(Function):
    """Remembers which GPU was current in forward and backward."""

    def forward(self, x):
        from minialex.backend import cupy
        self.seen = [cupy.cuda.Device().id]
        return x * 2

    def backward(self, gy):
        from minialex.backend import cupy
        self.seen.append(cupy.cuda.Device().id)
        return gy * 2


@pytest.mark.gpu
def test_cuda0_ops_run_on_cuda0():
    if not minialex.gpu_available():
        pytest.skip("needs CuPy and a CUDA GPU")
    from minialex.backend import cupy
    dev = minialex.Device("cuda:0")
    x = Tensor(numpy.arange(4.0), requires_grad=True, device="cuda:0")
    assert isinstance(x.data, cupy.ndarray) and x.data.device.id == 0 and x.device == dev
    op = _RecordsCurrentGPU()
    y = op(x)
    (y * y).sum().backward()
    assert op.seen == [0, 0]
    assert isinstance(x.grad, cupy.ndarray) and x.grad.device.id == 0
    numpy.testing.assert_allclose(cupy.asnumpy(x.grad), 8 * numpy.arange(4.0))
    # a round trip through the host is logged both ways and the gradient returns to the GPU
    with minialex.transfer_log() as log:
        h = minialex.to_device(x, "cpu", label="to-host")
        assert isinstance(h.data, numpy.ndarray)
        back = minialex.to_device(h * 3, dev, label="to-gpu")
        back.sum().backward()
    assert [(t.label, t.direction) for t in log] == [
        ("to-host", "forward"), ("to-gpu", "forward"), ("to-gpu", "backward"),
        ("to-host", "backward")]
    numpy.testing.assert_allclose(cupy.asnumpy(x.grad), 8 * numpy.arange(4.0) + 3)
