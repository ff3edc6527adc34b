# %% [markdown]
# # Lesson 5 · ReLU versus tanh
#
# **The idea.** Each neuron applies a nonlinearity f to its weighted input. The classic choice was a
# *saturating* one, tanh(x) or the logistic sigmoid: for large |x| the curve goes flat, its
# derivative goes to 0, and gradient descent barely moves the weights feeding a saturated unit.
# The rectified linear unit, f(x) = max(0, x), does not saturate for x > 0: its derivative is exactly
# 1 there. It is also cheaper to compute.
#
# **What [the paper](../docs/paper.md) says (§3.1, Figure 1).** "Deep convolutional neural networks with ReLUs train
# several times faster than their equivalents with tanh units." Figure 1: a four-layer
# convolutional network on CIFAR-10 reaches 25% training error **six times faster** with ReLUs
# (solid line) than with tanh (dashed); "the learning rates for each network were chosen
# independently to make training as fast as possible. No regularization of any kind was employed."
# The architecture of that net is not given.
#
# Here: the two functions and their derivatives, then Figure 1 in miniature — a small four-layer
# CNN on a Fashion-MNIST subset, learning rate tuned separately for each nonlinearity, iterations
# to a fixed training error — and what it does and does not reproduce.
#
# **You will build** the race of Figure 1 on a small net, a measure of saturation, and a leaky
# ReLU of your own (checked). **You need** lesson 2's `Function`, lesson 3's gradient check and
# lesson 4's convolution (used here through `minialex.nn.Conv2d`).

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt

import minialex
import minialex.functional as F
import minialex.nn as nn
from minialex.data import DataLoader, open_dataset
from minialex.optim import SGD
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops

# %% [markdown]
# ## 1. The functions and their slopes
#
# Computed with minialex's own `F.relu` and `F.tanh` and their backward passes: the slope is the
# gradient of Σ f(x) with respect to x.

# %%
xs = np.linspace(-4, 4, 401)
curves = {}
for name, fn in (("ReLU", F.relu), ("tanh", F.tanh)):
    x = minialex.Tensor(xs, requires_grad=True)
    y = fn(x)
    y.sum().backward()
    curves[name] = (y.numpy(), x.grad)

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
for name, (y, dy) in curves.items():
    axes[0].plot(xs, y, label=name)
    axes[1].plot(xs, dy, label=name)
axes[0].set_title("f(x)"); axes[1].set_title("f'(x): what backward multiplies by")
for ax in axes:
    ax.axhline(0, color="gray", lw=0.5); ax.legend(); ax.set_xlabel("x")
plt.tight_layout(); plt.show()
print("tanh'(3) =", round(1 - np.tanh(3) ** 2, 4), "| ReLU'(3) = 1")

# %% [markdown]
# ## 2. Figure 1 in miniature: the setup
#
# * **Data:** a subset of Fashion-MNIST training images, downsampled to 14×14, mean subtracted and
#   scaled to unit variance. (CIFAR-10 is not available offline; Fashion-MNIST is.)
# * **Network:** four learned layers, like Figure 1's — conv 3×3 (16) → f → max-pool 2/2 → conv 3×3
#   (32) → f → max-pool 2/2 → fully connected 64 → f → fully connected 10 — with f = ReLU or tanh,
#   and the same initial weights for both (the same seed).
# * **Training:** SGD with momentum 0.9, batch 32, **no regularisation** (weight decay 0, no
#   dropout), as the paper says. Each nonlinearity gets its **own learning rate**, the best of a
#   small sweep.
# * **Measure:** training error on a fixed set of training images, every 10 iterations; the number
#   of iterations until it first falls below the target.

# %%
n_images = 1000 if CI else 2000
ds = open_dataset("fashion-mnist", "train", base_size=28, limit=n_images)
X, Y = next(iter(DataLoader(ds, batch_size=len(ds), input_size=28, train=False, scale=1.0)))
X = X[:, :1].reshape(-1, 1, 14, 2, 14, 2).mean(axis=(3, 5))   # grey, 2x2 average: 14x14
X = (X / X.std()).astype(np.float32)
print("training images:", X.shape, "| classes:", ", ".join(ds.classes))


def make_net(activation, seed=0):
    g = np.random.default_rng(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, generator=g), activation(), nn.MaxPool2d(2, 2),
        nn.Conv2d(16, 32, 3, generator=g), activation(), nn.MaxPool2d(2, 2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 64, generator=g), activation(),
        nn.Linear(64, 10, generator=g))


def training_error(model, count=300):
    with minialex.no_grad():
        logits = model(minialex.Tensor(X[:count])).numpy()
    return float((logits.argmax(axis=1) != Y[:count]).mean())


def train(activation, lr, iterations, seed=0, batch=32, every=10):
    model = make_net(activation, seed)
    opt = SGD(model.named_parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    rng = np.random.default_rng(seed)   # the same batches for every run
    steps, errors = [], []
    for it in range(1, iterations + 1):
        idx = rng.integers(0, len(X), batch)
        loss = F.cross_entropy(model(minialex.Tensor(X[idx])), Y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if it % every == 0:
            steps.append(it)
            errors.append(training_error(model))
    return np.array(steps), np.array(errors), model


def iterations_to(target, steps, errors, model=None):
    hit = np.nonzero(errors <= target)[0]
    return int(steps[hit[0]]) if len(hit) else None

# %% [markdown]
# ## 3. The sweep and the race

# %%
iterations = 100 if CI else 300
target = 0.30 if CI else 0.25           # the paper's target is 25%; CI runs are shorter
rates = [0.03, 0.1] if CI else [0.01, 0.03, 0.1]
runs = {}
start = time.perf_counter()
for name, activation in (("ReLU", nn.ReLU), ("tanh", nn.Tanh)):
    for lr in rates:
        runs[name, lr] = train(activation, lr, iterations)
        n = iterations_to(target, *runs[name, lr])
        print(f"{name:5s} lr={lr:<5} reaches {target:.0%} training error after "
              f"{n if n else f'more than {iterations}'} iterations")
print(f"({time.perf_counter() - start:.0f} s for {len(runs)} runs)")


def best(name):
    """The learning rate that reaches the target first (ties: lower final error)."""
    def key(lr):
        n = iterations_to(target, *runs[name, lr])
        return (n if n else 10 ** 9, runs[name, lr][1][-1])
    return min(rates, key=key)


best_lr = {name: best(name) for name in ("ReLU", "tanh")}
fig, ax = plt.subplots(figsize=(7, 4))
for name, style in (("ReLU", "-"), ("tanh", "--")):
    for lr in rates:
        steps, errors, _ = runs[name, lr]
        chosen = lr == best_lr[name]
        ax.plot(steps, errors, style, lw=2.2 if chosen else 0.8, alpha=1 if chosen else 0.4,
                color="tab:blue" if name == "ReLU" else "tab:red",
                label=f"{name}, lr {lr}" + (" (best)" if chosen else ""))
ax.axhline(target, color="gray", ls=":")
ax.set_xlabel("iterations"); ax.set_ylabel("training error"); ax.set_ylim(0, 0.9)
ax.set_title("Figure 1 in miniature: solid ReLU, dashed tanh")
ax.legend(fontsize=8); plt.show()

n_relu = iterations_to(target, *runs["ReLU", best_lr["ReLU"]])
n_tanh = iterations_to(target, *runs["tanh", best_lr["tanh"]])
print("best learning rates:", best_lr)
print("iterations to target: ReLU", n_relu, "| tanh", n_tanh,
      "| ratio tanh/ReLU:", round(n_tanh / n_relu, 2) if n_relu and n_tanh else "n/a")
# The text below says that tanh is not slower here: this line fails if a change makes that untrue.
assert n_relu and n_tanh and n_tanh <= n_relu, "the prose below no longer matches this run"

# %% [markdown]
# **What to make of it.** In this miniature the paper's result does **not** reproduce: the counts
# printed above (seed 0; the full-length run uses 2,000 images, 300 iterations and the paper's 25%
# target, the short `MINIALEX_CI` run 30%) put tanh as fast as ReLU or faster — nothing like the
# paper's factor of six in ReLU's favour (the cell's last line checks this sentence against the
# run). That is a real finding, not a bug: a net this small has only three hidden layers, so even
# with many of its tanh units saturated (next cell) the gradient reaching the first layer is not
# much reduced — and tanh's zero-centred outputs even help. The paper's advantage comes from
# **saturation**, which grows with depth, input scale and training time. Figure 1's net had four
# layers too, but learned CIFAR-10's colour images, and the paper gives no more of its architecture
# (its width, its inputs' scale): we cannot tell which of these made the difference. The next cell
# measures saturation here.
#
# ## 4. Saturation: where tanh loses
#
# For each hidden layer, the fraction of units whose slope is below 0.1 (|x| > 1.8 for tanh; for
# ReLU a zero slope means x < 0, which is a different thing: those units pass no gradient for this
# input but are not *stuck* — a small change of input or weights revives them).

# %%
def slopes(model):
    """The slope f'(x) of every hidden unit of a trained net, on 200 training images."""
    h = minialex.Tensor(X[:200])
    out = {}
    with minialex.no_grad():
        for layer in model:               # a Sequential iterates over its layers
            pre = h
            h = layer(h)
            if isinstance(layer, (nn.ReLU, nn.Tanh)):
                a = pre.numpy()
                d = (a > 0).astype(float) if isinstance(layer, nn.ReLU) else 1 - np.tanh(a) ** 2
                out[f"layer {len(out) + 1}"] = d
    return out


fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for ax, (layer, d_tanh) in zip(axes, slopes(runs["tanh", best_lr["tanh"]][2]).items()):
    ax.hist(d_tanh.ravel(), bins=40, color="tab:red", alpha=0.7)
    ax.set_title(f"tanh net, {layer}: {np.mean(d_tanh < 0.1):.0%} of units with slope < 0.1",
                 fontsize=9)
    ax.set_xlabel("tanh'(x) after training")
plt.tight_layout(); plt.show()

# %% [markdown]
# Every unit with a small slope scales down the gradient flowing through it, and in a deep network
# these factors multiply layer after layer. ReLU's slope is exactly 1 wherever the unit is on. That
# is the paper's argument, and why every large network since 2012 uses ReLU or one of its cousins.
#
# **On the whole AlexNet.** `python cli.py train --data fashion-mnist --without relu` trains the
# `fashion` AlexNet with tanh after every layer; `benchmarks/ablation.py` races it against ReLU with
# two seeds at a short budget ([docs/ablation.md](../docs/ablation.md)). There both reach 15%
# validation error in the same epoch and tanh ends 0.6 points behind (14.2% against 13.7% test
# error): at this shallow a start, with inputs of unit size, tanh units are seldom saturated, so
# the sixfold speed-up of Figure 1 does not appear.
#
# ## Your turn (checked)
#
# **Task.** Write the "leaky" ReLU f(x) = max(0.01·x, x) as a `minialex.Function` (lesson 2): its
# slope is 1 for x > 0 and 0.01 below, so no unit ever passes no gradient at all. The check runs it
# against the same function built from minialex's `F.relu`, on inputs away from the kink at 0.

# %%
class LeakyReLU(minialex.Function):
    def forward(self, x):
        raise NotImplementedError  # your code here

    def backward(self, gy):
        raise NotImplementedError  # your code here


exercises.check_leaky_relu(LeakyReLU);

# %% [markdown]
# ## What you built
#
# ReLU and tanh side by side, Figure 1's race in miniature with learning rates tuned for each, a
# measure of saturation, and a leaky ReLU of your own. Lesson 6 adds the next piece of AlexNet's
# conv1 and conv2 blocks: the normalisation that follows their ReLU.
#
# ## Exercise
#
# 1. Make the network deeper: three more 3×3 convolutions (with padding 1) before the first
#    pooling. Rerun the race. Does the ratio move toward the paper's?
# 2. Train on the 0–255 pixel scale (drop the division by `X.std()`), as the paper's network saw its
#    inputs (§2 subtracts the mean only). What learning rates win now, and what fraction of the
#    first layer's tanh units is saturated?
# 3. Wrap your `LeakyReLU` in a `minialex.nn.Module` and race it against ReLU and tanh. Is it
#    faster than ReLU here, and what fraction of its units has a slope of 0.01?
