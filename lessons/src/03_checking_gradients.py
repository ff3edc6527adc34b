# %% [markdown]
# # Lesson 3 · Checking gradients with finite differences
#
# **The idea.** A `backward` written by hand (lesson 2) can be wrong and still train — badly. The
# definition of the derivative gives an independent check: nudge an input by a tiny ε, see how
# the output moves. If the slope measured that way matches the slope `backward` computed, the
# backward is right. This is how every operation in minialex is tested.
#
# **Why it matters for AlexNet.** [The paper's](../docs/paper.md) §3.3 (local response
# normalisation) and §3.4 (overlapping pooling) are exactly the places where a hand-written
# backward goes wrong: LRN couples neighbouring channels, and overlapping windows must *add* the gradients of every window a pixel
# belongs to. The paper does not discuss this; a reimplementation must check it.
#
# In this lesson: forward versus central differences, why float64, the relative error, why the
# upstream gradient must be random, and `minialex.gradcheck` catching a wrong backward.
#
# **You will build** a gradient check from scratch, with your own central difference (checked).
# **You need** lesson 2's `minialex.Function` and the idea of a `backward`.

# %%
import os

import numpy as np
import matplotlib.pyplot as plt

import minialex
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops

# %% [markdown]
# ## 1. Two ways to measure a slope
#
# Forward difference: f′(x) ≈ (f(x + ε) − f(x)) / ε, with truncation error about ε·f″/2.
#
# Central difference: f′(x) ≈ (f(x + ε) − f(x − ε)) / (2ε); the ε·f″ terms cancel, leaving
# an error about ε²·f‴/6 — far smaller for the same ε.
#
# But ε cannot be made arbitrarily small: f(x + ε) and f(x) agree in most of their digits, and
# subtracting them loses those digits. The rounding error is about u·|f| / ε, where u is the
# unit roundoff of the dtype: 6e-8 for float32, 1.1e-16 for float64. Total error = truncation +
# rounding, with a best ε in between.

# %%
def f(x):
    return np.sin(x) * np.exp(x)


def exact_derivative(x):
    return (np.sin(x) + np.cos(x)) * np.exp(x)


x0 = 0.7
epsilons = np.logspace(-12, -1, 23 if CI else 45)
errors = {}
for dtype in (np.float32, np.float64):
    x = dtype(x0)
    truth = exact_derivative(np.float64(x))  # derivative at the rounded point
    for kind in ("forward", "central"):
        errs = []
        for eps in epsilons:
            e = dtype(eps)
            if kind == "forward":
                slope = (f(x + e) - f(x)) / e
            else:
                slope = (f(x + e) - f(x - e)) / (dtype(2) * e)
            errs.append(abs(float(slope) - truth) / abs(truth) + 1e-17)
        errors[(np.dtype(dtype).name, kind)] = np.array(errs)

fig, ax = plt.subplots(figsize=(7, 4.5))
styles = {"forward": "--", "central": "-"}
colours = {"float32": "tab:red", "float64": "tab:blue"}
for (dt, kind), errs in errors.items():
    ax.loglog(epsilons, errs, styles[kind], color=colours[dt], marker=".", label=f"{dt}, {kind}")
ax.set_xlabel("eps"); ax.set_ylabel("relative error of the slope")
ax.set_title("f(x) = sin(x)·exp(x) at x = 0.7")
ax.legend(); ax.grid(True, which="major", alpha=0.3)
plt.show()

for (dt, kind), errs in errors.items():
    i = int(np.argmin(errs))
    at = errs[int(np.argmin(abs(np.log10(epsilons) + 6)))]
    print(f"{dt:8s} {kind:8s} best eps {epsilons[i]:.0e}: relative error {errs[i]:.1e}"
          f"   at eps 1e-6: {at:.1e}")
at_1e6 = {key: errs[int(np.argmin(abs(np.log10(epsilons) + 6)))] for key, errs in errors.items()}
# the next paragraph's two figures, checked against this run
assert at_1e6["float32", "central"] > 1e-2 and at_1e6["float64", "central"] < 1e-9

# %% [markdown]
# Read the plot from the right: the truncation error falls (slope 1 for forward, slope 2 for
# central) until rounding takes over and the error rises again as 1/ε. In float32 the best ε is
# large and the error there depends on luck (the rounding errors of two nearby values happen to
# cancel or not); at ε = 1e-6 the float32 slope is off by several percent — far too coarse to tell a
# subtly wrong backward from a right one. In float64 with central differences the error stays below
# about 1e-9 over a wide range of ε around 1e-6.
# That is why gradient checks run in **float64** and use **central** differences.
#
# ## 2. Relative error
#
# An absolute error of 1e-6 is excellent for a gradient of size 100 and terrible for one of size
# 1e-7. So compare |a − n| / max(|a|, |n|), with a small floor in the denominator so that two
# near-zero values do not produce a huge ratio. In float64 a correct backward gives about 1e-8 or
# less; a wrong one gives something of order 1 (at most 2).

# %%
def relative_error(a, n, floor=1e-7):
    return np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), floor)


print(relative_error(100.0, 100.0001))       # tiny: fine
print(relative_error(1e-7, 2e-7))            # large: these differ by a factor of two
print(relative_error(1e-12, 3e-12))          # both essentially zero: the floor keeps it small

# %% [markdown]
# ## 3. A gradient check from scratch, on a whole op
#
# An op maps arrays to an array. Pick a random upstream gradient g of the output's shape and check
# the scalar L = Σ f(x)·g: backprop gives ∂L/∂x (that is `backward(g)`), central differences give it
# element by element.

# %%
class Flip(minialex.Function):
    """y = x reversed along its last axis. Correct backward: flip the gradient too."""

    def forward(self, x):
        return x[..., ::-1].copy()

    def backward(self, gy):
        return gy[..., ::-1].copy()


class BadFlip(Flip):
    """The classic slip: forgets that the gradient must be flipped back."""

    def backward(self, gy):
        return gy.copy()


def check_from_scratch(op, x, g, eps=1e-6):
    xt = minialex.Tensor(x, requires_grad=True)
    op()(xt).backward(g)
    analytic = xt.grad
    numeric = np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        plus, minus = x.copy(), x.copy()
        plus[idx] += eps
        minus[idx] -= eps
        lp = (op()(minialex.Tensor(plus)).data * g).sum()
        lm = (op()(minialex.Tensor(minus)).data * g).sum()
        numeric[idx] = (lp - lm) / (2 * eps)
    return relative_error(analytic, numeric).max()


rng = np.random.default_rng(0)
x = rng.standard_normal((3, 4))
ones = np.ones((3, 4))
g = rng.standard_normal((3, 4))
for op in (Flip, BadFlip):
    print(f"{op.__name__:8s} upstream = ones: {check_from_scratch(op, x, ones):.1e}   "
          f"upstream = random: {check_from_scratch(op, x, g):.1e}")

# %% [markdown]
# The wrong `BadFlip` **passes** with an upstream gradient of ones — a reversed vector of ones is
# still a vector of ones — and fails at once with a random one. That is why minialex's checks
# always draw a random upstream gradient.
#
# ## 4. `minialex.gradcheck`
#
# `minialex.gradcheck(fn, inputs)` does all of the above: float64 required, central differences,
# random upstream gradient, element by element for small inputs or along random directions for
# large ones. It returns a report, and raises `GradcheckError` with a table of the worst elements
# when a backward is wrong.

# %%
class Sigmoid(minialex.Function):
    def forward(self, x):
        xp = minialex.get_array_module(x)
        y = 1 / (1 + xp.exp(-x))
        self.save_for_backward(y)
        return y

    def backward(self, gy):
        (y,) = self.saved
        return gy * y * (1 - y)


class BadSigmoid(Sigmoid):
    def backward(self, gy):
        (y,) = self.saved
        return gy * y  # forgot the (1 - y)


x64 = rng.standard_normal((4, 5))
print(minialex.gradcheck(lambda t: Sigmoid()(t), [x64], name="sigmoid"))
try:
    minialex.gradcheck(lambda t: BadSigmoid()(t), [x64], name="bad sigmoid")
except minialex.GradcheckError as err:
    print(err)

# %% [markdown]
# And in float32 it refuses, because the rounding error would swamp ε (section 1):

# %%
try:
    minialex.gradcheck(lambda t: Sigmoid()(t), [x64.astype(np.float32)], name="sigmoid32")
except TypeError as err:
    print("TypeError:", err)

# %% [markdown]
# ## 5. How the error depends on ε, for a whole op
#
# The same U-shaped curve as in section 1 appears for the correct sigmoid; the wrong one stays near
# 1 for every ε — no choice of ε can make a wrong backward look right.

# %%
eps_grid = np.logspace(-10, -2, 9 if CI else 17)
good, bad = [], []
for eps in eps_grid:
    good.append(minialex.gradcheck(lambda t: Sigmoid()(t), [x64], eps=eps,
                                   raise_on_failure=False).max_rel_error)
    bad.append(minialex.gradcheck(lambda t: BadSigmoid()(t), [x64], eps=eps,
                                  raise_on_failure=False).max_rel_error)
fig, ax = plt.subplots(figsize=(6, 4))
ax.loglog(eps_grid, good, "o-", label="Sigmoid (correct)")
ax.loglog(eps_grid, bad, "s-", label="BadSigmoid (wrong backward)")
ax.axhline(1e-5, color="gray", ls=":", label="gradcheck's default rtol")
ax.set_xlabel("eps"); ax.set_ylabel("max relative error")
ax.legend(); ax.set_title("gradcheck in float64")
plt.show()

# %% [markdown]
# ## Your turn (checked)
#
# **Task 1.** Write `central_difference(f, x, eps)`: for a function `f` that maps an array to a
# number, return an array of x's shape whose element i is (f(x + ε·eᵢ) − f(x − ε·eᵢ)) / (2ε), eᵢ
# nudging element i alone. Leave `x` as you found it. The check uses ε = 1e-4, where a forward
# difference is off by about 1e-4 and a central one by about 1e-9: only the central one passes.

# %%
def central_difference(f, x, eps):
    raise NotImplementedError  # your code here


exercises.check_central_difference(central_difference);

# %% [markdown]
# **Task 2.** With your `central_difference`, write `gradient_error(op, x, eps)`: section 3's check
# for a `minialex.Function` class `op` (call `op()(tensor)`), returning the largest relative error
# between its backward and the central differences of L = Σ op(x)·g. The check hands it two right
# backwards and two wrong ones — one of which a gradient of ones cannot see.

# %%
def gradient_error(op, x, eps):
    raise NotImplementedError  # your code here


exercises.check_gradient_checker(gradient_error);

# %% [markdown]
# ## What you built
#
# The forward and central differences and their errors, the relative error, a gradient check from
# scratch, and why it needs float64 and a random upstream gradient; then `minialex.gradcheck`,
# which every later lesson uses to check a backward (conv in lesson 4, LRN in 6, pooling in 7).
#
# ## Exercise
#
# 1. In section 1, replace sin·exp with f(x) = x³ at x = 0. Section 1's relative error divides by
#    the true derivative, which is 0 there: use section 2's `relative_error`, whose floor keeps the
#    ratio finite. Why are the forward and the central difference equally good at this point?
#    (Hint: both give exactly ε²; what is f″(0)?)
# 2. Write `Square` (y = x²) with a backward that returns `gy * x` (missing the 2). Does
#    `gradcheck` catch it? What maximum relative error does it report, and why is it about 0.5?
# 3. Max pooling is not differentiable where two inputs tie. Build an input with a tie, run
#    `gradcheck` on `x.max(axis=1)`, and explain the result. (minialex's tests use inputs without
#    ties at kinks.)
