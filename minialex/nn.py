"""Layers as objects that own their parameters: ``Module``, ``Parameter`` and AlexNet's layers.

A ``Module`` registers every ``Parameter`` and sub-``Module`` assigned to it as an attribute, in
assignment order, so ``named_parameters()`` always lists them in the same order (checkpoints and
optimizers rely on that). Calling a module runs its ``forward``. ``train()``/``eval()`` switch the
layers that behave differently at test time (Dropout, §4.2). ``to(device)`` moves the parameters
in place, so an optimizer built before the move still holds the same Parameter objects.

A child module is named after the attribute that holds it (``self.conv3 = Conv2d(...)`` names it
'conv3'), and its errors say so: "Conv2d(conv3): expected 256 input channels, got 128 ...".

Default initialisation (for layers built outside AlexNet): weights from He et al.'s normal,
N(0, 2 / fan_in), which keeps activations from shrinking or growing through stacks of ReLUs;
biases 0. AlexNet sets its preset's initialisation explicitly: the paper's for 'paper' (§5:
N(0, 0.01^2), biases 0 or 1), He's for the small presets (see minialex.models.presets).
Pass ``generator=`` (a seeded ``numpy.random.Generator``) for reproducible weights; without one
a fresh, unseeded generator is used. ``init=False`` skips the draw (weights start at zero) for a
caller that sets every weight itself, as AlexNet does: no 61 million normals drawn for nothing.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Dict, Iterator, Tuple

import numpy

from . import functional as F
from .autograd import Tensor
from .backend import as_device, as_numpy, copy_array, cupy, is_cupy_array
from .functional.dropout import MODES as DROPOUT_MODES
from .functional.utils import pair, shape_of


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (``requires_grad`` is always True)."""

    def __init__(self, data, device=None, dtype=None, name=None):
        super().__init__(data, requires_grad=True, device=device, dtype=dtype, name=name)

    def __repr__(self) -> str:
        return "Parameter" + super().__repr__()[len("Tensor"):]


class Module:
    """Base class of layers and networks. Subclasses call ``super().__init__()`` first, assign
    parameters and sub-modules as attributes, and define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "name", None)

    # -- registration ------------------------------------------------------------------------
    def __setattr__(self, key, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning "
                                 f"attributes (assigning {key!r})")
        params, modules = self.__dict__["_parameters"], self.__dict__["_modules"]
        if isinstance(value, Parameter):
            modules.pop(key, None)
            params[key] = value
            if value.name is None:
                value.name = key
        elif isinstance(value, Module):
            params.pop(key, None)
            modules[key] = value
            if value.name is None:
                value.name = key
        elif value is None and key in params:     # e.g. bias=None: remembered as "no bias"
            params[key] = None
        else:
            params.pop(key, None)
            modules.pop(key, None)
            object.__setattr__(self, key, value)

    def __getattr__(self, key):    # only called when normal lookup fails
        d = self.__dict__
        if "_parameters" in d and key in d["_parameters"]:
            return d["_parameters"][key]
        if "_modules" in d and key in d["_modules"]:
            return d["_modules"][key]
        raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")

    def __delattr__(self, key):
        if key in self._parameters:
            del self._parameters[key]
        elif key in self._modules:
            del self._modules[key]
        else:
            object.__delattr__(self, key)

    # -- walking the tree --------------------------------------------------------------------
    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        return iter(self._modules.items())

    def children(self) -> Iterator["Module"]:
        return iter(self._modules.values())

    def named_modules(self, prefix: str = "") -> Iterator[Tuple[str, "Module"]]:
        """This module and every descendant, depth first, with dotted names ('' for self)."""
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        return (m for _, m in self.named_modules())

    def named_parameters(self, prefix: str = "") -> Iterator[Tuple[str, Parameter]]:
        """(dotted name, Parameter): own parameters first, then each child's, in assignment order.
        A parameter shared by two modules is listed once."""
        seen = set()
        for mod_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self):
        """A list of every Parameter (same order as ``named_parameters``)."""
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # -- modes, devices, gradients -----------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active) for this module and all its children; returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Test mode (§4.2: dropout off, outputs scaled); returns self."""
        return self.train(False)

    def to(self, device) -> "Module":
        """Move every parameter (and gradient) to ``device`` in place; returns self."""
        device = as_device(device)
        for p in self.parameters():
            if p.device != device:
                p.data = copy_array(p.data, p.device, device)
                if p.grad is not None:
                    p.grad = copy_array(p.grad, p.device, device)
                p.device = device
        for m in self.modules():
            m._moved_to(device)
        return self

    def _moved_to(self, device) -> None:
        """Hook for layers that keep per-device state (Dropout's GPU generator)."""

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, numpy.ndarray]":
        """Parameter values as NumPy copies, keyed by dotted name."""
        return OrderedDict((k, as_numpy(p.data).copy()) for k, p in self.named_parameters())

    def load_state_dict(self, state: Dict[str, numpy.ndarray], strict: bool = True) -> None:
        """Copy values into the parameters (on their devices); shapes must match."""
        params = dict(self.named_parameters())
        if strict:
            missing, extra = set(params) - set(state), set(state) - set(params)
            if missing or extra:
                raise KeyError(f"{self._label()}.load_state_dict: missing {sorted(missing)}, "
                               f"unexpected {sorted(extra)}")
        for k, value in state.items():
            if k not in params:
                continue
            p = params[k]
            if tuple(numpy.shape(value)) != p.shape:
                raise ValueError(f"{self._label()}.load_state_dict: {k} has shape {p.shape}, "
                                 f"the state gives {tuple(numpy.shape(value))}")
            p.data = p.device.put(as_numpy(value), dtype=p.dtype)

    # -- calling -----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def _label(self) -> str:
        """'Conv2d(conv3)' or 'Conv2d': how errors name this layer."""
        return f"{type(self).__name__}({self.name})" if self.name else type(self).__name__

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if not self._modules:
            return lines[0] + ")"
        for name, child in self._modules.items():
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return "\n".join(lines) + "\n)"


# --------------------------------------------------------------------------------------------
# Helpers for building parameters
# --------------------------------------------------------------------------------------------

def he_normal(shape, fan_in, generator, dtype, device, init=True):
    """N(0, 2/fan_in) drawn in float64 from ``generator``, then cast (the default init); zeros,
    with no draw, when ``init`` is False."""
    if not init:
        return zeros_parameter(shape, dtype, device)
    rng = generator if generator is not None else numpy.random.default_rng()
    values = rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)
    return Parameter(values.astype(dtype), device=device)


def zeros_parameter(shape, dtype, device):
    return Parameter(numpy.zeros(shape, dtype=dtype), device=device)


def _check_input(layer: Module, x, ndim: int, layout: str) -> None:
    if x.ndim != ndim:
        raise ValueError(f"{layer._label()}: expected a {ndim}-D input {layout}, got shape {shape_of(x)}")


# --------------------------------------------------------------------------------------------
# The layers
# --------------------------------------------------------------------------------------------

class Conv2d(Module):
    """Convolution (§3.5). weight (out_channels, in_channels/groups, kh, kw), bias (out_channels,).
    See ``minialex.functional.conv2d``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, groups=1,
                 bias=True, device=None, dtype=numpy.float32, generator=None, init=True):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: groups={groups} must divide in_channels={in_channels} and "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = pair(kernel_size, "Conv2d", "kernel_size")
        self.stride = pair(stride, "Conv2d", "stride")
        self.padding = pair(padding, "Conv2d", "padding")
        kh, kw = self.kernel_size
        fan_in = in_channels // groups * kh * kw
        device = as_device(device)
        self.weight = he_normal((out_channels, in_channels // groups, kh, kw), fan_in, generator,
                                dtype, device, init)
        self.bias = zeros_parameter((out_channels,), dtype, device) if bias else None

    def forward(self, x):
        _check_input(self, x, 4, "(N, C, H, W)")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"{self._label()}: expected {self.in_channels} input channels, got "
                             f"{x.shape[1]} (input shape {shape_of(x)})")
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class Linear(Module):
    """Fully connected layer (§3.5): weight (out_features, in_features), bias (out_features,)."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=numpy.float32,
                 generator=None, init=True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        device = as_device(device)
        self.weight = he_normal((out_features, in_features), in_features, generator, dtype,
                                device, init)
        self.bias = zeros_parameter((out_features,), dtype, device) if bias else None

    def forward(self, x):
        _check_input(self, x, 2, "(N, in_features)")
        if x.shape[1] != self.in_features:
            raise ValueError(f"{self._label()}: expected {self.in_features} input features, got "
                             f"{x.shape[1]} (input shape {shape_of(x)})")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}" + (
            "" if self.bias is not None else ", bias=False")


class MaxPool2d(Module):
    """Overlapping max pooling (§3.4): defaults 3x3 windows, stride 2."""

    def __init__(self, kernel_size=3, stride=2, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        _check_input(self, x, 4, "(N, C, H, W)")
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}" + (
            f", padding={self.padding}" if self.padding else "")


class LocalResponseNorm(Module):
    """Paper-literal LRN (§3.3): b = a / (k + alpha * sum a^2)^beta; alpha NOT divided by size."""

    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        _check_input(self, x, 4, "(N, C, H, W)")
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class Dropout(Module):
    """Dropout (§4.2). ``mode='paper'``: zero units with probability p in training and multiply by
    1 - p in eval; ``mode='inverted'``: divide by 1 - p in training, identity in eval.

    ``generator``: a seeded numpy.random.Generator; pass one for runs that repeat. The default is a
    fresh unseeded generator per layer (one fixed default seed would give two Dropout layers of
    the same shape identical masks). On a CuPy input the masks come from a cupy.random.Generator
    seeded once from it, so they are drawn on the GPU.
    """

    def __init__(self, p=0.5, mode="paper", generator=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        if mode not in DROPOUT_MODES:
            raise ValueError(f"Dropout: mode must be 'paper' or 'inverted', got {mode!r}")
        self.p, self.mode = p, mode
        self.generator = generator if generator is not None else numpy.random.default_rng()
        self._gpu_generators = {}

    def _generator_for(self, x):
        if not is_cupy_array(x.data if isinstance(x, Tensor) else x):
            return self.generator
        dev = x.data.device.id
        if dev not in self._gpu_generators:
            seed = int(self.generator.integers(2 ** 63))
            with cupy.cuda.Device(dev):
                self._gpu_generators[dev] = cupy.random.default_rng(seed)
        return self._gpu_generators[dev]

    def forward(self, x):
        generator = self._generator_for(x) if self.training else None
        return F.dropout(x, self.p, training=self.training, mode=self.mode, generator=generator)

    def extra_repr(self):
        return f"p={self.p}, mode={self.mode!r}"


class ReLU(Module):
    """f(x) = max(0, x) (§3.1)."""

    def forward(self, x):
        return F.relu(x)


class Tanh(Module):
    """tanh, the saturating baseline of §3.1."""

    def forward(self, x):
        return F.tanh(x)


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W): conv features into fc6 (§3.5: 6*6*256 = 9216)."""

    def forward(self, x):
        if x.ndim < 2:
            raise ValueError(f"{self._label()}: needs at least 2-D input (N, ...), got shape {shape_of(x)}")
        if not isinstance(x, Tensor):
            x = Tensor(x)
        return x.reshape(x.shape[0], -1)


class Sequential(Module):
    """Modules applied in order. ``Sequential(a, b, c)`` names them '0', '1', '2';
    ``Sequential(OrderedDict(conv1=..., relu1=...))`` keeps the given names."""

    def __init__(self, *layers):
        super().__init__()
        if len(layers) == 1 and isinstance(layers[0], dict):
            items = list(layers[0].items())
        else:
            items = [(str(i), m) for i, m in enumerate(layers)]
        for name, module in items:
            if not isinstance(module, Module):
                raise TypeError(f"Sequential: item {name!r} is a {type(module).__name__}, not a Module")
            setattr(self, name, module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            return Sequential(OrderedDict(list(self._modules.items())[index]))
        return layers[index]

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x
