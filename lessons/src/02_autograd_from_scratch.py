# %% [markdown]
# # Lesson 2 · Autograd from scratch
#
# **The idea.** Training needs the gradient of the loss with respect to every weight: 60 million
# numbers for AlexNet. Nobody writes those derivatives by hand. Instead, every operation records
# *what it did* while computing forward (a graph), and knows its own local derivative. Going
# backward through the graph, the chain rule multiplies local derivatives together: that is
# **reverse-mode automatic differentiation**, or backpropagation.
#
# **What [the paper](../docs/paper.md) relies on (§5).** The update rule of §5 uses ⟨∂L/∂w⟩, "the average over the
# i-th batch of the derivative of the objective with respect to w" — computed by backpropagation
# through all eight layers. The paper gives no derivation: it is taken for granted. Here we build
# it.
#
# Plan: a 60-line scalar autograd (`Value`) written here, a drawing of its graph, then the same
# computation with `minialex.Tensor`, and a new operation written as a `minialex.Function`.
#
# **You will build** reverse-mode autograd for scalars, then two operations of your own for
# minialex (`Exp`, and `Mul` with two inputs), checked against minialex's. **You need** lesson 1's
# arrays and `xp` pattern, and the chain rule.

# %%
import math
import os

import numpy as np
import matplotlib.pyplot as plt

import minialex
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops

# %% [markdown]
# ## 1. A scalar with a memory
#
# A `Value` holds a number, its gradient, the values it was made from (`parents`) and a function
# `_backward` that pushes its own gradient to its parents using the local derivative:
#
# | op | forward | local derivatives |
# |---|---|---|
# | `a + b` | a + b | 1, 1 |
# | `a * b` | a · b | b, a |
# | `tanh(a)` | t = tanh a | 1 − t² |
# | `relu(a)` | max(0, a) | 1 if a > 0 else 0 |
#
# Note the `+=` in every `_backward`: a value used twice receives gradient from both uses.

# %%
class Value:
    def __init__(self, data, parents=(), op="", label=""):
        self.data = float(data)
        self.grad = 0.0
        self.parents = parents
        self.op = op
        self.label = label
        self._backward = lambda: None

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other), "+")
        def _backward():
            self.grad += out.grad
            other.grad += out.grad
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other), "*")
        def _backward():
            self.grad += other.data * out.grad
            other.grad += self.data * out.grad
        out._backward = _backward
        return out

    def tanh(self):
        t = math.tanh(self.data)
        out = Value(t, (self,), "tanh")
        def _backward():
            self.grad += (1 - t * t) * out.grad
        out._backward = _backward
        return out

    def relu(self):
        out = Value(max(0.0, self.data), (self,), "relu")
        def _backward():
            self.grad += (1.0 if self.data > 0 else 0.0) * out.grad
        out._backward = _backward
        return out

    def backward(self):
        order = topological_order(self)
        self.grad = 1.0
        for v in reversed(order):  # consumers before producers
            v._backward()

    def __repr__(self):
        return f"Value({self.label or self.op}: data={self.data:.4f}, grad={self.grad:.4f})"


def topological_order(root):
    """Every value reachable from root, each after all of its parents.

    An explicit stack instead of recursion: a deep network (or a long loop) would overflow
    Python's recursion limit (about 1000 frames).
    """
    order, seen, stack = [], set(), [(root, False)]
    while stack:
        v, expanded = stack.pop()
        if expanded:
            order.append(v)
        elif id(v) not in seen:
            seen.add(id(v))
            stack.append((v, True))
            stack.extend((p, False) for p in v.parents if id(p) not in seen)
    return order

# %% [markdown]
# ## 2. One neuron
#
# A neuron with two inputs: y = tanh(w1·x1 + w2·x2 + b). The order matters in backward: a node's
# `_backward` may run only after *every* consumer has added its share to the node's gradient. A
# topological order guarantees that.

# %%
x1, x2 = Value(2.0, label="x1"), Value(-1.0, label="x2")
w1, w2, b = Value(-0.5, label="w1"), Value(0.8, label="w2"), Value(0.3, label="b")
a1, a2 = x1 * w1, x2 * w2
a1.label, a2.label = "x1*w1", "x2*w2"
s = a1 + a2 + b
s.label = "s"
y = s.tanh()
y.label = "y"
y.backward()
for v in (x1, x2, w1, w2, b, s, y):
    print(v)

# %% [markdown]
# Check by hand: dy/ds = 1 − tanh²(s), and dy/dw1 = dy/ds · x1.

# %%
dy_ds = 1 - math.tanh(s.data) ** 2
print("dy/ds by hand:", round(dy_ds, 6), " autograd:", round(s.grad, 6))
print("dy/dw1 by hand:", round(dy_ds * x1.data, 6), " autograd:", round(w1.grad, 6))

# %% [markdown]
# ## 3. A picture of the graph
#
# Each box is a `Value` (label, value, gradient); arrows point from inputs to the operation's
# output. Backward walks the arrows in reverse.

# %%
def draw_graph(root, ax):
    order = topological_order(root)
    depth = {}
    for v in order:  # parents come first, so their depth is known
        depth[id(v)] = 1 + max((depth[id(p)] for p in v.parents), default=-1)
    columns = {}
    for v in order:
        columns.setdefault(depth[id(v)], []).append(v)
    pos = {}
    for d, vs in columns.items():
        for i, v in enumerate(vs):
            pos[id(v)] = (d, (len(vs) - 1) / 2 - i)
    for v in order:
        for p in v.parents:
            ax.annotate("", xy=pos[id(v)], xytext=pos[id(p)],
                        arrowprops=dict(arrowstyle="->", color="gray", shrinkA=28, shrinkB=28))
    for v in order:
        name = f"{v.label} [{v.op}]" if v.label and v.op else (v.label or f"[{v.op}]")
        text = f"{name}\ndata {v.data:.3f}\ngrad {v.grad:.3f}"
        ax.text(*pos[id(v)], text, ha="center", va="center", fontsize=8,
                bbox=dict(boxstyle="round", fc="lightyellow" if not v.parents else "lightblue"))
    ax.set_xlim(-0.6, max(columns) + 0.6)
    ax.set_ylim(-2.6, 2.6)
    ax.axis("off")


fig, ax = plt.subplots(figsize=(10, 4))
draw_graph(y, ax)
ax.set_title("y = tanh(x1*w1 + x2*w2 + b): leaves (yellow) and computed values (blue)")
plt.show()

# %% [markdown]
# ## 4. A value used twice
#
# For z = x·x + x, dz/dx = 2x + 1. The `+=` in `_backward` is what makes this right: x receives
# gradient along three edges.

# %%
x = Value(3.0, label="x")
z = x * x + x
z.backward()
print("dz/dx =", x.grad, " expected 2*3 + 1 =", 2 * 3 + 1)

# %% [markdown]
# ## 5. The same thing in minialex
#
# `minialex.Tensor` works on whole arrays instead of single numbers, but the mechanism is the one
# above: every operation is a `Function` with a `forward` and a `backward`; calling it records a node;
# `backward()` visits the nodes in reverse topological order (also with an explicit stack). The
# gradient of a leaf lands in `.grad`, a raw array.

# %%
X1 = minialex.Tensor(np.array(2.0), requires_grad=True)
X2 = minialex.Tensor(np.array(-1.0), requires_grad=True)
W1 = minialex.Tensor(np.array(-0.5), requires_grad=True)
W2 = minialex.Tensor(np.array(0.8), requires_grad=True)
B = minialex.Tensor(np.array(0.3), requires_grad=True)
S = X1 * W1 + X2 * W2 + B
E = (S * 2.0).exp()
Y = (E - 1.0) / (E + 1.0)  # tanh(s) from exp: the Tensor has no tanh yet (section 6 adds one)
Y.backward()
for name, ours, theirs in [("w1", w1.grad, W1.grad), ("w2", w2.grad, W2.grad), ("b", b.grad, B.grad)]:
    print(f"d y/d {name}: Value {ours:.6f}   minialex {float(theirs):.6f}")

# %% [markdown]
# ## 6. Writing a new operation
#
# A `minialex.Function` gets raw arrays (NumPy or CuPy) in `forward` and returns the output; it
# saves what `backward` needs; `backward` gets the gradient of the output and returns one gradient
# per input. Here is tanh, with its derivative 1 − y² computed from the saved *output*.

# %%
class Tanh(minialex.Function):
    def forward(self, x):
        xp = minialex.get_array_module(x)
        y = xp.tanh(x)
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return gy * (1 - y * y)


def tanh(x):
    return Tanh()(x)


S2 = X1 * W1 + X2 * W2 + B
for t in (X1, X2, W1, W2, B):
    t.zero_grad()
tanh(S2).backward()
print("with the new Tanh: d y/d w1 =", float(W1.grad), " (Value said", round(w1.grad, 6), ")")

# %% [markdown]
# ## 7. Arrays, and a long chain
#
# On arrays the local derivatives become array expressions (the gradient of `A @ B` with respect to
# `A` is `G @ B.T`), but nothing else changes. Because the backward pass uses an explicit stack, a
# chain of many thousands of operations is fine — a recursive version would stop at Python's
# recursion limit.

# %%
rng = np.random.default_rng(0)
A = minialex.Tensor(rng.standard_normal((4, 3)), requires_grad=True)
Bm = minialex.Tensor(rng.standard_normal((3, 2)), requires_grad=True)
G = rng.standard_normal((4, 2))
(A @ Bm).backward(G)
print("dL/dA equals G @ B.T:", np.allclose(A.grad, G @ Bm.data.T))

steps = 2_000 if CI else 50_000
v = minialex.Tensor(np.array(1.0), requires_grad=True)
h = v
for _ in range(steps):
    h = h * 1.0001
h.backward()
print(f"chain of {steps:,} multiplications: grad {float(v.grad):.6f}, exact {1.0001 ** steps:.6f}")

# %% [markdown]
# ## 8. Not recording: `no_grad`
#
# Evaluating a trained network needs no graph. Inside `minialex.no_grad()` no nodes are
# recorded, so the intermediate arrays can be freed at once.

# %%
with minialex.no_grad():
    out = A @ Bm
print("recorded a graph?", out.creator is not None, "| requires_grad:", out.requires_grad)

# %% [markdown]
# ## Your turn (checked)
#
# **Task 1.** Write `Exp` (y = eˣ) as a `minialex.Function`, like `Tanh` in section 6: its
# `backward` should use the saved *output*, since d eˣ/dx = eˣ. The check runs it and minialex's
# own `exp` on the same random float64 inputs and compares the output and the gradient.

# %%
class Exp(minialex.Function):
    def forward(self, x):
        raise NotImplementedError  # your code here

    def backward(self, gy):
        raise NotImplementedError  # your code here


exercises.check_exp_function(Exp);

# %% [markdown]
# **Task 2.** Write `Mul` (z = x·y, elementwise) with two inputs: `forward(self, x, y)` gets both
# arrays, and `backward` returns one gradient per input, in the inputs' order.

# %%
class Mul(minialex.Function):
    def forward(self, x, y):
        raise NotImplementedError  # your code here

    def backward(self, gz):
        raise NotImplementedError  # your code here


exercises.check_mul_function(Mul);

# %% [markdown]
# ## What you built
#
# A scalar autograd that records a graph and walks it backward in topological order, the same
# mechanism in `minialex.Tensor`, and new operations as `minialex.Function`s. Lesson 3 shows how
# to find out whether a hand-written `backward` is right when there is no reference to compare with.
#
# ## Exercise
#
# 1. Add `__pow__` (for a constant exponent) and `exp` to `Value`, and check
#    d/dx (x³ + eˣ) at x = 0.5 against 3x² + eˣ.
# 2. Write `Sigmoid` as a `minialex.Function` whose `backward` uses only the saved output
#    (σ' = σ(1 − σ)). Lesson 3 shows how to *check* it.
# 3. Replace `topological_order` by a recursive version and find the chain length at which it fails.
