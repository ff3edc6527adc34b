"""minialex.nn: Module bookkeeping (parameters, names, modes, devices) and the layer classes."""

from collections import OrderedDict

import numpy
import pytest

import minialex
import minialex.functional as F
from minialex import Tensor, gradcheck, nn


class TwoColumns(nn.Module):
    """A toy two-column block: conv per column, then a layer reading both (like conv3, §3.5)."""

    def __init__(self, generator=None, dtype=numpy.float32):
        super().__init__()
        self.conv_a = nn.Conv2d(3, 4, 3, padding=1, generator=generator, dtype=dtype)
        self.conv_b = nn.Conv2d(3, 4, 3, padding=1, generator=generator, dtype=dtype)
        self.scale = nn.Parameter(numpy.ones(1, dtype=dtype))
        self.head = nn.Sequential(nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(),
                                  nn.Linear(8 * 2 * 2, 5, generator=generator, dtype=dtype))

    def forward(self, x):
        both = minialex.concat([self.conv_a(x), self.conv_b(x)], axis=1)
        return self.head(both * self.scale)


def test_named_parameters_in_registration_order():
    net = TwoColumns(numpy.random.default_rng(0))
    names = [n for n, _ in net.named_parameters()]
    assert names == ["scale", "conv_a.weight", "conv_a.bias", "conv_b.weight", "conv_b.bias",
                     "head.3.weight", "head.3.bias"]
    assert [p.shape for p in net.parameters()][1] == (4, 3, 3, 3)
    assert net.num_parameters() == 1 + 2 * (4 * 27 + 4) + 32 * 5 + 5
    assert all(p.requires_grad for p in net.parameters())


def test_child_names_and_layer_errors():
    net = nn.Module()
    net.conv3 = nn.Conv2d(256, 384, 3, padding=1)
    assert net.conv3.name == "conv3"
    with pytest.raises(ValueError, match=r"Conv2d\(conv3\): expected 256 input channels, got 128 "
                                         r"\(input shape \(2, 128, 13, 13\)\)"):
        net.conv3(Tensor(numpy.zeros((2, 128, 13, 13), numpy.float32)))
    fc = nn.Sequential(OrderedDict(fc6=nn.Linear(9216, 8)))
    with pytest.raises(ValueError, match=r"Linear\(fc6\): expected 9216 input features, got 4608"):
        fc(Tensor(numpy.zeros((2, 4608), numpy.float32)))
    with pytest.raises(ValueError, match=r"MaxPool2d: expected a 4-D input"):
        nn.MaxPool2d()(Tensor(numpy.zeros((2, 5), numpy.float32)))


def test_train_eval_propagate_and_zero_grad(rng):
    net = TwoColumns(numpy.random.default_rng(0))
    net.head.drop = nn.Dropout()
    assert all(m.training for m in net.modules())
    assert net.eval() is net and not any(m.training for m in net.modules())
    net.train()
    assert net.head.drop.training
    x = Tensor(rng.standard_normal((2, 3, 5, 5)).astype(numpy.float32))
    net.eval()
    F.cross_entropy(net(x), [0, 4]).backward()
    assert all(p.grad is not None for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_to_moves_parameters_in_place():
    net = TwoColumns(numpy.random.default_rng(0))
    params = net.parameters()
    assert net.to("cpu:1") is net
    assert all(p.device == minialex.Device("cpu:1") for p in net.parameters())
    assert all(a is b for a, b in zip(params, net.parameters()))   # same objects: optimizers keep working
    with pytest.raises(minialex.DeviceError):
        net(Tensor(numpy.zeros((1, 3, 5, 5), numpy.float32), device="cpu:0"))
    y = net(Tensor(numpy.zeros((1, 3, 5, 5), numpy.float32), device="cpu:1"))
    assert y.device == minialex.Device("cpu:1")


def test_seeded_init_repeats_and_has_he_scale():
    a = nn.Conv2d(64, 32, 3, generator=numpy.random.default_rng(5))
    b = nn.Conv2d(64, 32, 3, generator=numpy.random.default_rng(5))
    numpy.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    assert a.weight.dtype == numpy.float32 and numpy.all(a.bias.numpy() == 0)
    assert a.weight.numpy().std() == pytest.approx(numpy.sqrt(2 / (64 * 9)), rel=0.05)
    lin = nn.Linear(10, 3, bias=False, dtype=numpy.float64)
    assert lin.bias is None and lin.weight.dtype == numpy.float64
    assert [n for n, _ in lin.named_parameters()] == ["weight"]


def test_state_dict_round_trip():
    a, b = TwoColumns(numpy.random.default_rng(1)), TwoColumns(numpy.random.default_rng(2))
    b.load_state_dict(a.state_dict())
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        numpy.testing.assert_array_equal(pa.numpy(), pb.numpy())
    with pytest.raises(KeyError, match="missing"):
        b.load_state_dict({"scale": numpy.ones(1)})
    bad = a.state_dict()
    bad["scale"] = numpy.ones(2)
    with pytest.raises(ValueError, match=r"scale has shape \(1,\)"):
        b.load_state_dict(bad)


def test_repr_reads_like_the_architecture():
    net = nn.Sequential(nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.LocalResponseNorm(),
                        nn.MaxPool2d(), nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.Dropout())
    text = repr(net)
    assert "(0): Conv2d(3, 96, kernel_size=(11, 11), stride=(4, 4))" in text
    assert "LocalResponseNorm(size=5, alpha=0.0001, beta=0.75, k=2.0)" in text
    assert "groups=2" in text and "Dropout(p=0.5, mode='paper')" in text
    assert len(net) == 6 and isinstance(net[1], nn.ReLU)


def test_module_needs_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(numpy.zeros(2))

    with pytest.raises(AttributeError, match=r"call super\(\).__init__\(\) first|before assigning"):
        Broken()


def test_whole_block_gradcheck(rng):
    """The layers composed, float64, every parameter: the module plumbing loses no gradient."""
    net = TwoColumns(numpy.random.default_rng(3), dtype=numpy.float64)
    x = rng.standard_normal((2, 3, 5, 5))
    values = [p.data.copy() for p in net.parameters()]
    report = gradcheck(lambda x, *ps: functional_net(net, x, ps), [x] + values,
                       mode="direction", directions=3, name="TwoColumns")
    assert report.passed


def functional_net(net, x, ps):
    """Run ``net`` with its parameters replaced by the tensors ``ps`` (same order)."""
    names = [n for n, _ in net.named_parameters()]
    owners = []
    for name, p in zip(names, ps):
        *path, leaf = name.split(".")
        owner = net
        for part in path:
            owner = getattr(owner, part)
        owners.append((owner, leaf, owner._parameters[leaf]))
        owner._parameters[leaf] = p
    try:
        return net(x)
    finally:
        for owner, leaf, original in owners:
            owner._parameters[leaf] = original


@pytest.mark.parametrize("module,reference", [
    (nn.LocalResponseNorm(size=3, alpha=0.2, beta=0.6, k=1.5),
     lambda x: F.local_response_norm(x, 3, 0.2, 0.6, 1.5)),
    (nn.Tanh(), F.tanh),
    (nn.MaxPool2d(3, 2, padding=1), lambda x: F.max_pool2d(x, 3, 2, 1)),
], ids=["LocalResponseNorm", "Tanh", "MaxPool2d"])
def test_parameter_free_layers_pass_their_constants_through(rng, module, reference):
    """Each layer class equals its function with the same constants (alpha, beta, k, size are
    all different here, so a swapped pair shows) and passes the float64 gradient check."""
    x = rng.permutation(2 * 5 * 4 * 4).reshape(2, 5, 4, 4) * 0.05 - 2.0   # distinct: no pool ties
    numpy.testing.assert_allclose(module(Tensor(x)).numpy(), reference(Tensor(x)).numpy(),
                                  rtol=1e-13)
    assert gradcheck(module, [x], name=type(module).__name__).passed


def test_init_false_skips_the_draw():
    """A caller that sets every weight itself (AlexNet) builds its layers with init=False: zeros,
    and the generator is not touched."""
    gen = numpy.random.default_rng(0)
    conv, fc = nn.Conv2d(3, 4, 3, generator=gen, init=False), nn.Linear(5, 2, generator=gen, init=False)
    assert not conv.weight.data.any() and not fc.weight.data.any() and fc.weight.shape == (2, 5)
    assert gen.random() == numpy.random.default_rng(0).random()
