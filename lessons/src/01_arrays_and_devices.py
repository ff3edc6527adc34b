# %% [markdown]
# # Lesson 1 · Arrays on the CPU and the GPU
#
# **The idea.** A neural network is a pile of arrays (weights, activations, gradients) and a few
# operations on them. On a CPU the arrays are NumPy arrays; on an NVIDIA GPU they are CuPy arrays,
# which have the same interface. If every function picks its library *from its input*
# (`xp = get_array_module(x)`), the same code runs on both. The expensive part of using several
# devices is not the arithmetic but the **copies** between them, so minialex makes every copy
# explicit and logs it.
#
# **What [the paper](../docs/paper.md) says (§3.2).** AlexNet was trained on two GTX 580 GPUs with 3 GB each, because
# the network did not fit on one. Half of the kernels live on each GPU, and "the GPUs communicate
# only in certain layers" — the paper chose that connectivity to keep the traffic between GPUs
# small. GPUs of that era could read and write each other's memory directly, without going
# through host memory.
#
# In this lesson: NumPy and CuPy, the `xp` pattern, `minialex.Device` (including the two
# *logical* CPU devices `cpu:0` and `cpu:1` that stand in for two GPUs), `minialex.to_device`
# with its transfer log, and what a copy costs.
#
# **You will build** a function that runs on NumPy and CuPy alike (a stable sigmoid, checked) and
# the byte count of AlexNet's conv3 exchange. **You need** only Python and a little NumPy: this is
# where the course starts. Each lesson has tasks that check themselves: fill in the blank function,
# run the next cell, and it prints "correct", or where your answer differs and by how much (never
# the answer). Solved versions are in `lessons/solutions/`; try first.

# %%
import os
import time

import numpy as np
import matplotlib.pyplot as plt

import minialex
from minialex.backend import cupy, get_array_module
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops
print("CuPy installed:", cupy is not None, "| GPUs:", minialex.gpu_count())

# %% [markdown]
# ## 1. An array is a block of memory plus a shape and a dtype
#
# An AlexNet activation batch is a 4-D array `(N, C, H, W)`: images, channels, height, width
# ("NCHW"). Its size in bytes is the number of elements times the bytes per element: 4 for
# `float32` (training), 8 for `float64` (gradient checks, lesson 3).

# %%
x = np.zeros((128, 96, 55, 55), dtype=np.float32)  # conv1's output for one batch of 128 (§3.5)
print(x.shape, x.dtype, f"{x.nbytes / 2**20:.1f} MiB")
print("float64 would take", f"{x.astype(np.float64).nbytes / 2**20:.1f} MiB")

# %% [markdown]
# ## 2. The `xp` pattern: one function, two libraries
#
# Write each function once, asking the input which library it belongs to. minialex does this
# everywhere; `get_array_module` returns `numpy` for NumPy arrays and `cupy` for CuPy arrays.

# %%
def softplus(x):
    """log(1 + e^x), computed stably: max(x, 0) + log1p(e^-|x|)."""
    xp = get_array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


a = np.linspace(-3, 3, 7)
print(get_array_module(a).__name__, softplus(a).round(3))
if cupy is not None and minialex.gpu_available():
    a_gpu = cupy.asarray(a)  # a host -> device copy
    print(get_array_module(a_gpu).__name__, softplus(a_gpu).round(3))
else:
    print("(no GPU here: the same call on a cupy array would run on the GPU)")

# %% [markdown]
# ## 3. Devices
#
# `minialex.Device` names a place where arrays live: `'cpu'` (plain NumPy), `'cuda:0'`,
# `'cuda:1'` (CuPy), and the **logical** CPU devices `'cpu:0'` and `'cpu:1'`. The logical ones
# hold ordinary NumPy arrays, but a tensor remembers which one it belongs to and an operation
# refuses to mix them — exactly the discipline two real GPUs impose. That lets a laptop test the
# two-column AlexNet of §3.2.

# %%
for name in ["cpu", "cpu:0", "cpu:1", "cuda:0"]:
    d = minialex.Device(name)
    lib = d.xp.__name__ if (not d.is_cuda or minialex.gpu_available()) else "cupy (not here)"
    print(f"{str(d):7s} is_cuda={d.is_cuda!s:5s} library={lib}")
print("Device('cpu') == Device('cpu:0')?", minialex.Device("cpu") == minialex.Device("cpu:0"))
print("where AlexNet's two columns go by default here:", minialex.default_devices())

# %%
rng = np.random.default_rng(0)
left = minialex.Tensor(rng.standard_normal((2, 3)), device="cpu:0")
right = minialex.Tensor(rng.standard_normal((2, 3)), device="cpu:1")
try:
    left + right
except minialex.DeviceError as err:
    print("DeviceError:", err)

# %% [markdown]
# ## 4. Crossing devices: `to_device` and the transfer log
#
# `minialex.to_device(t, device, label=...)` is the only way across. It is a differentiable
# operation: its forward copies the values one way, its backward copies the gradient back the other
# way. Both are recorded in the transfer log, with their sizes in bytes.

# %%
w = minialex.Tensor(rng.standard_normal((2, 3)), device="cpu:1", requires_grad=True)
with minialex.transfer_log() as log:
    moved = minialex.to_device(left, "cpu:1", label="left -> column 1")
    y = (moved * w).sum()
    y.backward()
print(log.table())

x0 = minialex.Tensor(rng.standard_normal((2, 3)), device="cpu:0", requires_grad=True)
with minialex.transfer_log() as log:
    y = (minialex.to_device(x0, "cpu:1", label="x0 -> column 1") * w).sum()
    y.backward()
print()
print(log.table())
print("gradient came home to", x0.device, "with shape", x0.grad.shape)

# %% [markdown]
# Only the second example logs a backward copy: in the first, `left` did not need a gradient, so
# nothing had to travel back. Lesson 10 uses this log to count the bytes AlexNet's two columns
# exchange per step.
#
# ## 5. What a copy costs
#
# A copy moves every byte through memory, so its time grows with size; for big arrays the cost per
# byte settles to the memory bandwidth. Slicing does *not* copy (it makes a **view** sharing the
# memory), but some operations, such as making a transposed array contiguous, must copy.

# %%
big = np.ones((1024, 1024), dtype=np.float32)
view = big[:512]
print("a slice shares memory:", np.shares_memory(big, view))
print("transpose is a view too:", np.shares_memory(big, big.T))
print("...until made contiguous:", np.shares_memory(big, np.ascontiguousarray(big.T)))


def time_copy(nbytes, repeats):
    a = np.ones(nbytes // 4, dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a.copy()
        best = min(best, time.perf_counter() - t)
    return best


sizes = [2**k for k in range(10, 26 if CI else 29, 2)]  # 1 KiB .. 16 MiB (256 MiB without CI)
seconds = [time_copy(n, 3 if CI else 10) for n in sizes]
bandwidth = [n / s / 1e9 for n, s in zip(sizes, seconds)]
for n, s, b in zip(sizes, seconds, bandwidth):
    print(f"{n:>12,} bytes  {s * 1e6:10.1f} us  {b:6.2f} GB/s")

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
ax1.loglog(sizes, seconds, "o-")
ax1.set_xlabel("bytes copied"); ax1.set_ylabel("seconds (best of several)")
ax1.set_title("host memory copy: time")
ax2.semilogx(sizes, bandwidth, "o-")
ax2.set_xlabel("bytes copied"); ax2.set_ylabel("GB/s")
ax2.set_title("small copies are dominated by fixed overhead")
fig.tight_layout()
plt.show()

# %% [markdown]
# For tiny arrays the fixed overhead of a call dominates; mid-sized ones run at the speed of the
# CPU caches; large ones fall to main-memory bandwidth, and then time is proportional to size. The same shape appears for host↔GPU copies over PCIe and for GPU↔GPU copies, with
# larger overheads (microseconds) and different bandwidths.
#
# How much does AlexNet's conv3 exchange? Each column's conv2 output (after pooling) is
# 13×13×128 per image, and conv3 reads **both** columns, so each column receives the other's half:

# %%
batch = 128
per_direction = batch * 128 * 13 * 13 * 4  # float32 bytes, one column's pooled conv2 output
measured = bandwidth[-1]  # the largest copy: no longer fits in the CPU caches
print(f"conv3 exchange: {per_direction / 2**20:.1f} MiB each way per batch of {batch}")
print(f"at this machine's memory-copy bandwidth ({measured:.1f} GB/s): "
      f"{per_direction / measured / 1e9 * 1e3:.2f} ms")
print(f"at ~6 GB/s (a PCIe 2.0 x16 link, as in 2012): {per_direction / 6e9 * 1e3:.2f} ms")

# %% [markdown]
# ## 6. On a GPU (runs only when CuPy and a GPU are present)
#
# With CuPy the same measurements can be made for host→device copies. `Device.put` copies an array
# to a device; CuPy works asynchronously, so we synchronise before reading the clock.

# %%
if cupy is not None and minialex.gpu_available():
    gpu = minialex.Device("cuda:0")
    for n in [2**20, 2**24, 2**26]:
        a = np.ones(n // 4, dtype=np.float32)
        gpu.put(a); cupy.cuda.Device(0).synchronize()  # warm up
        t = time.perf_counter()
        g = gpu.put(a); cupy.cuda.Device(0).synchronize()
        s = time.perf_counter() - t
        print(f"host -> cuda:0 {n:>12,} bytes {s * 1e3:8.3f} ms {n / s / 1e9:6.2f} GB/s")
else:
    print("No GPU here; on a GPU machine this cell times host -> device copies.")

# %% [markdown]
# ## Your turn (checked)
#
# **Task 1.** Write `sigmoid(x)` = 1 / (1 + e^−x) with the `xp` pattern of section 2: it must
# return an array of the input's library and dtype, and never compute e^800, which overflows
# float64 (the check tries x = ±800 and counts an overflow as wrong). Hint: look at how `softplus`
# avoids e^x for large x.

# %%
def sigmoid(x):
    raise NotImplementedError  # your code here


exercises.check_sigmoid(sigmoid);

# %% [markdown]
# **Task 2.** Write `exchange_bytes(batch, dtype)`: the bytes one column sends the other before
# conv3 (section 5), for activations stored in `dtype` (`np.float16`, `np.float32`, ...).
# (Hint: `np.dtype(dtype).itemsize`.)

# %%
def exchange_bytes(batch, dtype):
    raise NotImplementedError  # your code here


exercises.check_exchange_bytes(exchange_bytes);

# %% [markdown]
# ## What you built
#
# A function that picks NumPy or CuPy from its input, the logical devices that stand in for two
# GPUs, a transfer log that counts every byte crossing between them, and the cost of a copy on
# this machine. Lesson 2 builds the machinery that computes gradients through all of it.
#
# ## Exercise
#
# 1. Run your `sigmoid` on a float32 array of a million elements and time it against
#    `1 / (1 + np.exp(-x))`. What does the stable form cost?
# 2. Make a tensor on `cpu:0` with `requires_grad=True`, move it to `cpu:1` twice (two separate
#    `to_device` calls), use both copies in one expression and call `backward()`. How many
#    transfers does the log show, in which directions, and how many bytes in total?
# 3. With `exchange_bytes` and the bandwidth measured in section 5, how long would conv3's
#    exchange take per batch in `float16`? Why did 2012's GPUs still train in float32?
