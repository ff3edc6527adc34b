"""Stochastic gradient descent as the paper writes it (§5), and learning-rate schedules.

The update (§5), for every weight w with gradient g = <dL/dw> averaged over the batch:

    v <- momentum * v - weight_decay * lr * w - lr * g
    w <- w + v

with momentum 0.9, weight decay 0.0005 and lr (the paper's epsilon) starting at 0.01. Note where
the learning rate sits: the weight decay term is multiplied by lr, and the velocity v already
carries lr (unlike PyTorch's SGD, where v accumulates raw gradients and lr multiplies v). The two
agree while lr is constant and differ right after a learning-rate drop.

Biases and weight decay: the paper does not say. cuda-convnet2 and Caffe do not decay biases
(weight decay is a prior on weights; a bias does not grow with the input), so neither do we by
default; ``decay_biases=True`` decays every parameter. A parameter counts as a bias when its name
ends in ``bias`` (or, for unnamed parameters, when it is one-dimensional).

Schedules (§5): "divide the learning rate by 10 when the validation error rate stopped improving
with the current learning rate ... reduced three times prior to termination":
``ReduceOnPlateau``. ``StepSchedule`` divides by 10 every ``step_size`` epochs instead.
Both keep their state in ``state_dict()`` so that a resumed run continues exactly.
"""

from __future__ import annotations

import inspect
import math
from typing import Dict, List, Optional, Tuple

import numpy

from . import cpu, kernels
from .backend import as_numpy, get_array_module


class OptimizerError(ValueError):
    """A state dict that does not match the optimizer's parameters."""


def _named(params) -> List[Tuple[str, object]]:
    """Accept ``model.named_parameters()`` (pairs) or ``model.parameters()`` (tensors)."""
    items = list(params.items()) if isinstance(params, dict) else list(params)
    if not items:
        raise ValueError("SGD: got no parameters to optimise")
    named = []
    for i, item in enumerate(items):
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            named.append(item)
        else:
            named.append((f"param{i}", item))
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise ValueError("SGD: parameter names must be unique")
    return named


#: elements per block of ``update_in_blocks``: a block of w, v and g stays in the cache while
#: the update's lines run over it. Each line is a NumPy call, and two threads take turns at the
#: GIL between calls: the paper's update took 34 ms at 2**17 (512 KB of each array) and 44 ms
#: at 2**15 (2 threads; 51 and 62 ms on one).
BLOCK = 1 << 17
#: Parameters of at least this many elements are updated by every thread, a share of the blocks
#: each (``in_parallel``): the paper's 61 million took 57 ms per step on one core of two.
SHARED = 1 << 18


def update_in_blocks(w, v, g, lr: float, momentum: float, decay_lr: float) -> None:
    """The update of §5 on NumPy arrays, in place (the Tensor keeps its array):

        v *= momentum                  # momentum * v
        v -= decay_lr * w              # - weight_decay * lr * w   (decay_lr = weight_decay * lr)
        v -= lr * g                    # - lr * grad
        w += v                         # w <- w + v

    written exactly so, one cache-sized block at a time, with one scratch block for the products:
    the same operations in the same order, so the result is bit for bit the four lines above,
    without two weight-sized temporaries and four passes over memory. Every element's update is
    independent of the others', so a large parameter's blocks are shared among the threads.
    """
    if not (w.flags.c_contiguous and v.flags.c_contiguous):
        _update(w, v, g, [...], lr, momentum, decay_lr)   # a strided parameter: one block, all of it
        return
    w, v, g = w.reshape(-1), v.reshape(-1), g.reshape(-1)       # views of w and v
    blocks = [slice(start, start + BLOCK) for start in range(0, w.size, BLOCK)]
    shares = min(cpu.THREADS, len(blocks)) if w.size >= SHARED else 1
    cpu.in_parallel(lambda share: _update(w, v, g, blocks[share], lr, momentum, decay_lr),
                      cpu.equal_slices(len(blocks), shares))


def _update(w, v, g, blocks, lr, momentum, decay_lr):
    """The four lines on each of ``blocks`` (slices of w, v and g) in turn."""
    scratch = numpy.empty_like(w[blocks[0]])
    for part in blocks:
        wb, vb, gb = w[part], v[part], g[part]
        tmp = scratch[:wb.shape[0]]
        vb *= momentum
        if decay_lr:
            vb -= numpy.multiply(wb, decay_lr, out=tmp)
        vb -= numpy.multiply(gb, lr, out=tmp)
        wb += vb


class SGD:
    """SGD with momentum and weight decay, exactly the update of §5 (see the module docstring).

    The update runs on each parameter's own device, in place, with the array module taken from
    the parameter's array (NumPy or CuPy); the momentum buffer lives beside the weight.

    Parameters
    ----------
    params
        ``model.named_parameters()`` (preferred: momentum buffers are saved under these
        names) or an iterable of tensors with ``requires_grad`` (named param0, param1, ...)
    lr
        the learning rate epsilon (0.01 in the paper)
    momentum
        0.9 in the paper
    weight_decay
        0.0005 in the paper
    decay_biases
        False (cuda-convnet2, Caffe) or True (decay every parameter)
    """

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 5e-4, decay_biases: bool = False):
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"SGD: the learning rate must be a positive number, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        if not (math.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"SGD: weight decay must be a number >= 0, got {weight_decay}")
        self.params = _named(params)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.decay_biases = bool(decay_biases)
        self.steps = 0
        #: Functions ``hook(optimizer)`` run by ``step`` before the update, once the gradients are
        #: in: data-parallel training averages them over the processes here (minialex.train.world).
        self.hooks: List = []
        self.velocity: Dict[str, object] = {}
        for name, p in self.params:
            xp = get_array_module(p.data)
            with p.device:
                self.velocity[name] = xp.zeros_like(p.data)

    def is_bias(self, name: str, param) -> bool:
        if name.startswith("param") and name[5:].isdigit():
            return param.ndim == 1
        return name.split(".")[-1].split("/")[-1].endswith("bias")

    def decay_for(self, name: str, param) -> float:
        """The weight decay applied to this parameter (0 for biases unless decay_biases)."""
        if self.is_bias(name, param) and not self.decay_biases:
            return 0.0
        return self.weight_decay

    def zero_grad(self) -> None:
        for _, p in self.params:
            p.grad = None

    def step(self) -> None:
        """One update of every parameter that has a gradient (after the ``hooks``)."""
        for hook in self.hooks:
            hook(self)
        lr, mu = self.lr, self.momentum
        for name, p in self.params:
            g = p.grad
            if g is None:
                continue
            v, w = self.velocity[name], p.data
            if g.shape != w.shape:
                raise ValueError(f"SGD: gradient of {name} has shape {tuple(g.shape)} but the "
                                 f"parameter has shape {tuple(w.shape)}")
            decay = self.decay_for(name, p)
            with p.device:  # on CuPy, run on the parameter's own GPU
                if p.device.is_cuda:   # the same lines as one fused CUDA pass
                    kernels.sgd_update(w, v, g, lr, mu, decay)
                else:
                    update_in_blocks(w, v, g, lr, mu, decay * lr)
        self.steps += 1

    # -- state for checkpoints -----------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{'lr', 'momentum', 'weight_decay', 'decay_biases', 'steps', 'velocity': {name: array}}``.

        The velocity arrays are NumPy copies (host memory), keyed by parameter name.
        """
        return {
            "lr": self.lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
            "decay_biases": self.decay_biases, "steps": self.steps,
            "velocity": {name: as_numpy(v).copy() for name, v in self.velocity.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        velocity = state.get("velocity", {})
        missing = [n for n, _ in self.params if n not in velocity]
        extra = [n for n in velocity if n not in self.velocity]
        if missing or extra:
            raise OptimizerError("SGD state does not match the parameters: "
                                 f"missing {missing[:5]}, unexpected {extra[:5]}")
        for name, p in self.params:
            v = velocity[name]
            if tuple(v.shape) != tuple(p.shape):
                raise OptimizerError(f"SGD state: momentum of {name} has shape {tuple(v.shape)}, "
                                     f"parameter has shape {tuple(p.shape)}")
            xp = get_array_module(p.data)
            with p.device:
                self.velocity[name][...] = xp.asarray(v, dtype=p.data.dtype)
        for key in ("lr", "momentum", "weight_decay"):
            if key in state:
                setattr(self, key, float(state[key]))
        if "decay_biases" in state:
            self.decay_biases = bool(state["decay_biases"])
        self.steps = int(state.get("steps", 0))


# --------------------------------------------------------------------------------------------
# Learning-rate schedules (called once per epoch with the validation error)
# --------------------------------------------------------------------------------------------

class ReduceOnPlateau:
    """Divide the learning rate by 10 when the validation error stops improving (§5).

    ``step(val_error)`` after every epoch. An epoch "improves" when the error falls below the best
    so far by more than ``threshold``. After ``patience`` epochs without improvement the learning
    rate is multiplied by ``factor`` (and the count restarts). The paper reduced it three times
    before stopping, so after ``max_reductions`` reductions a further plateau sets ``finished``
    (the training loop then stops) instead of reducing again.
    """

    name = "plateau"

    def __init__(self, optimizer: SGD, patience: int = 2, factor: float = 0.1,
                 max_reductions: int = 3, threshold: float = 1e-4):
        if patience < 1:
            raise ValueError(f"ReduceOnPlateau: patience must be at least 1, got {patience}")
        self.optimizer = optimizer
        self.patience, self.factor = int(patience), float(factor)
        self.max_reductions, self.threshold = int(max_reductions), float(threshold)
        self.best: Optional[float] = None
        self.bad_epochs = 0
        self.reductions = 0
        self.finished = False

    def step(self, val_error: float) -> bool:
        """Record one epoch's validation error; True when the learning rate was reduced."""
        if self.best is None or val_error < self.best - self.threshold:
            self.best, self.bad_epochs = float(val_error), 0
            return False
        self.bad_epochs += 1
        if self.bad_epochs < self.patience:
            return False
        self.bad_epochs = 0
        if self.reductions >= self.max_reductions:
            self.finished = True
            return False
        self.optimizer.lr *= self.factor
        self.reductions += 1
        return True

    def state_dict(self) -> dict:
        return {"name": self.name, "best": self.best, "bad_epochs": self.bad_epochs,
                "reductions": self.reductions, "finished": self.finished,
                "patience": self.patience, "factor": self.factor,
                "max_reductions": self.max_reductions, "threshold": self.threshold}

    def load_state_dict(self, state: dict) -> None:
        _check_name(self, state)
        self.best = None if state.get("best") is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.reductions = int(state["reductions"])
        self.finished = bool(state["finished"])


class StepSchedule:
    """Multiply the learning rate by ``factor`` every ``step_size`` epochs, at most
    ``max_reductions`` times: a fixed alternative to ``ReduceOnPlateau``.

    ``step(val_error)`` after every epoch (the error is ignored; the argument keeps the two
    schedules interchangeable).
    """

    name = "step"

    def __init__(self, optimizer: SGD, step_size: int = 30, factor: float = 0.1,
                 max_reductions: int = 3):
        if step_size < 1:
            raise ValueError(f"StepSchedule: step_size must be at least 1, got {step_size}")
        self.optimizer = optimizer
        self.step_size, self.factor, self.max_reductions = int(step_size), float(factor), int(max_reductions)
        self.epochs = 0
        self.reductions = 0
        self.finished = False  # a fixed schedule never stops training early

    def step(self, val_error: Optional[float] = None) -> bool:
        self.epochs += 1
        if self.epochs % self.step_size == 0 and self.reductions < self.max_reductions:
            self.optimizer.lr *= self.factor
            self.reductions += 1
            return True
        return False

    def state_dict(self) -> dict:
        return {"name": self.name, "epochs": self.epochs, "reductions": self.reductions,
                "step_size": self.step_size, "factor": self.factor,
                "max_reductions": self.max_reductions}

    def load_state_dict(self, state: dict) -> None:
        _check_name(self, state)
        self.epochs = int(state["epochs"])
        self.reductions = int(state["reductions"])


def _check_name(schedule, state: dict) -> None:
    if state.get("name", schedule.name) != schedule.name:
        raise OptimizerError(f"schedule state is for {state.get('name')!r}, not {schedule.name!r}")


SCHEDULES = {"plateau": ReduceOnPlateau, "step": StepSchedule}


def make_schedule(name: str, optimizer: SGD, **options):
    """``'plateau'`` or ``'step'`` with their options (unknown options for the other one are ignored)."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}: use one of {', '.join(SCHEDULES)}")
    cls = SCHEDULES[name]
    accepted = inspect.signature(cls).parameters
    return cls(optimizer, **{k: v for k, v in options.items() if k in accepted and v is not None})
