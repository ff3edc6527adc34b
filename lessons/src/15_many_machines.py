# %% [markdown]
# # Lesson 15 · Many machines: model parallelism and data parallelism
#
# **The idea.** There are two ways to put one network on several devices.
#
# * **Model parallelism** splits *the network*: each device holds part of every layer and the
#   devices exchange **activations** (and their gradients) where the parts meet. This is what the
#   paper did with its two columns (§3.2, lesson 10): the network did not fit in one GPU's 3 GB.
# * **Data parallelism** splits *the batch*: each process holds the whole network, computes the
#   gradient on its own images, and the processes **average their gradients** (an *allreduce*)
#   before every update, so all copies take the same step and stay one model. This is how
#   networks are trained on many GPUs and machines today (ChainerMN, Horovod, PyTorch DDP).
#
# **What [the paper](../docs/paper.md) says (§3.2, §5).** Two GTX 580s and "five to six days" for 90 epochs; the
# columns "communicate only in certain layers", chosen so that the communication stays "an
# acceptable fraction of the amount of computation". Data parallelism asks a different question:
# what does an update cost to share? The answer is the size of the parameters, whatever the batch.
#
# minialex does both: `--devices cpu:0,cpu:1` (or two GPUs) splits the columns, and
# `mpiexec -n N python -m mpi4py cli.py train` replicates the pair of columns N times
# (`minialex/tools/distributed.py`, docs/distributed.md).
#
# **You will build** both schemes' byte counts per step, measured (the transfer log, and a real
# two-process allreduce when MPI is installed) and by arithmetic (checked). **You need** lesson
# 10's columns and transfer log, lesson 11's parameter count and lesson 12's training step.

# %%
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import matplotlib.pyplot as plt

import minialex
import minialex.functional as F
from minialex.models import AlexNet, count_parameters, get_preset
from minialex.tools import exercises

CI = os.environ.get("MINIALEX_CI") == "1"  # the test suite sets this to shrink loops
rng = np.random.default_rng(0)

# %% [markdown]
# ## 1. Model parallelism: what crosses per step, from the transfer log
#
# One training step with the columns on `cpu:0` and `cpu:1`; every copy between devices is
# logged (lesson 10). We count the crossings between the two columns (the image's copy from the
# host to each column is there in any scheme). They carry activations, so they grow with the
# batch: we measure one image and one batch of the `mini` preset, and one image of the paper's.

# %%
def crossing_bytes(preset, batch, num_classes=10):
    """Bytes the transfer log records between the columns in one forward + backward step."""
    model = AlexNet(num_classes=num_classes, preset=preset, devices=("cpu:0", "cpu:1"), seed=0)
    S = model.input_size
    x = minialex.Tensor(rng.standard_normal((batch, 3, S, S)).astype(np.float32))
    with minialex.transfer_log() as log:
        F.cross_entropy(model(x), rng.integers(0, num_classes, batch)).backward()
    return sum(t.nbytes for t in log.transfers if not t.label.startswith("image")), model

B = 16 if CI else 64
mini_step, mini = crossing_bytes("mini", B)
mini_one, _ = crossing_bytes("mini", 1)
n_params = sum(p.size for p in mini.parameters())
print(f"mini, batch {B}: {mini_step:,} bytes cross between the columns per step "
      f"({mini_one:,} for one image: {mini_step / mini_one:.1f}x)")
print(f"mini has {n_params:,} parameters = {4 * n_params:,} bytes of float32 gradients")
paper_one, paper = crossing_bytes("paper", 1, num_classes=1000)
paper_params = sum(p.size for p in paper.parameters())
print(f"paper: {paper_one:,} bytes per image, {128 * paper_one / 1e6:.0f} MB at batch 128; "
      f"{paper_params:,} parameters = {4 * paper_params / 1e6:.0f} MB of gradients")

# %% [markdown]
# ## 2. Data parallelism: two processes, run from this notebook
#
# The script below is what `train` does under `mpiexec`, cut to its core: every rank builds the
# model, rank 0's weights are broadcast, then each step a rank computes the gradient on *its own*
# images and `average_gradients` sums every gradient over the ranks (one flat buffer, one
# allreduce) and divides by 2. The communicator counts the bytes each rank hands to the
# allreduce; a checksum of the weights shows that the two copies are still byte for byte the same.

# %%
SCRIPT = '''
import numpy as np
import minialex, minialex.functional as F
from minialex.tools.distributed import checksum, world
from minialex.models import AlexNet
from minialex.optim import SGD
w = world()
model = AlexNet(num_classes=10, preset="mini", devices=("cpu", "cpu"), seed=w.rank)  # unequal
opt = SGD(model.named_parameters(), lr=0.01)
w.use_devices(model.devices)
w.broadcast_start(model, opt)               # now rank 0's weights everywhere
sent, steps, B = w.grads.bytes_sent, 3, {B}
rng = np.random.default_rng(w.rank)         # each rank its own images
S = model.input_size
for _ in range(steps):
    x = minialex.Tensor(rng.standard_normal((B, 3, S, S)).astype(np.float32))
    loss = F.cross_entropy(model(x), rng.integers(0, 10, B))
    opt.zero_grad(); loss.backward()
    w.average_gradients(opt)                # the only exchange of a step
    opt.step()
line = (f"rank {{w.rank}}: {{(w.grads.bytes_sent - sent) // steps:,}} bytes per step, "
        f"weights {{checksum(p.data for p in model.parameters())[:16]}}")
lines = w.comm.gather(line, root=0)         # rank 0 prints for both
if w.rank == 0:
    print("\\n".join(lines))
'''.format(B=B)

def run_two_processes(code):
    """``mpiexec -n 2 python -m mpi4py`` on ``code``; None when MPI is not installed."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return None
    if shutil.which("mpiexec") is None:
        return None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "HYDRA_"))}
    env["OMP_NUM_THREADS"] = "1"
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as fh:
        fh.write(code)
    out = subprocess.run(["mpiexec", "-n", "2", sys.executable, "-m", "mpi4py", fh.name],
                         env=env, capture_output=True, text=True, timeout=300)
    os.remove(fh.name)
    if out.returncode != 0:
        raise RuntimeError(out.stdout + out.stderr)
    return out.stdout

report = run_two_processes(SCRIPT)
if report is None:
    print('MPI is not installed here (pip install -e ".[mpi]"): by arithmetic, each rank would '
          f'hand {4 * n_params:,} bytes per step to the allreduce')
    dp_bytes = 4 * n_params
else:
    print(report)
    dp_bytes = int(report.split(": ")[1].split(" bytes")[0].replace(",", ""))
print("the communicator's count equals 4 x parameters:", dp_bytes == 4 * n_params)

# %% [markdown]
# Both lines print the same checksum: the ranks saw different images, yet hold the same weights.
# The count is what a rank hands in; an MPI or NCCL *ring* allreduce sends about 2·(N−1)/N times
# that over the wire per rank, whatever the number of ranks: the reason it scales.
#
# ## 3. The two schemes side by side
#
# Model parallelism moves activations: proportional to the batch. Data parallelism moves
# gradients: the size of the model, whatever the batch. For the `mini` preset:

# %%
batches = np.array([1, 8, 32, 64, 128, 256])
per_image = (mini_step - mini_one) / (B - 1)          # the log is linear in the batch
model_parallel = mini_one + per_image * (batches - 1)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.plot(batches, model_parallel / 1e6, "o-", label="model parallel: activations between columns")
ax.plot(batches, np.full(len(batches), dp_bytes / 1e6), "s--",
        label="data parallel: gradients per rank (allreduce)")
ax.set_xlabel("images per step (per process)")
ax.set_ylabel("MB per step")
ax.set_title("mini preset: bytes moved per training step")
ax.legend(fontsize=8)
plt.show()
cross = int(np.ceil((dp_bytes - mini_one) / per_image)) + 1
print(f"above about {cross} images per step the columns exchange more bytes than a replica sends")
paper_grads = 4 * paper_params
print(f"paper: {paper_grads / 1e6:.0f} MB of gradients per step, "
      f"{paper_grads / (128 * paper_one):.1f} times the columns' {128 * paper_one / 1e6:.0f} MB at "
      f"batch 128; they cross at about {paper_grads // paper_one + 1} images per step")

# %% [markdown]
# For the paper's network (the cell's last line) the gradients are several times the columns'
# crossings at the paper's batch of 128, and the two cross only at a batch of several hundred
# images. That is why 2012's answer was model parallelism over a fast local link, while today's
# data parallelism
# needs fast links between GPUs (NVLink, InfiniBand, which NCCL drives) and large batches to pay
# for it, with the learning rate scaled to the global batch (`--lr-scaling linear`, Goyal et al.
# 2017).
#
# ## Your turn (checked)
#
# **Task 1.** Write `allreduce_bytes(preset, num_classes, itemsize)`: the bytes of gradients one
# rank hands to the allreduce per step, for an AlexNet preset, without building the model.
# (Lesson 11's count, or `count_parameters(preset, num_classes)`.)

# %%
def allreduce_bytes(preset, num_classes, itemsize):
    raise NotImplementedError  # your code here


exercises.check_allreduce_bytes(allreduce_bytes);

# %% [markdown]
# **Task 2.** Write `crossover_batch(preset, num_classes)`: the smallest batch per process at which
# the two columns exchange more bytes per step than one rank's float32 gradients, by arithmetic
# from `get_preset(preset)` (lesson 10's `crossing_bytes` shows which outputs cross, and how often).

# %%
def crossover_batch(preset, num_classes):
    raise NotImplementedError  # your code here


exercises.check_crossover_batch(crossover_batch);

# %% [markdown]
# ## What you built
#
# Model parallelism (activations between columns, growing with the batch) against data parallelism
# (gradients between replicas, the size of the model), both counted by the framework and by hand,
# and the batch where they cross. That closes the course: from arrays to a network trained on
# several devices, every piece checked.
#
# ## Exercise
#
# 1. Run the script with 3 ranks (`mpiexec -n 3`). Does a rank's count change? Why not?
# 2. With `dropout` on (the model in training mode, as above) the ranks draw different masks: how
#    does `minialex/tools/distributed.py` make sure of it, and why would equal masks be a waste?
# 3. `benchmarks/scaling.py` times 1 process × 2 threads against 2 processes × 1 thread. Predict,
#    from this lesson's byte count and a memory bandwidth of ~10 GB/s, the allreduce's share of a
#    `mini` step of about 0.3 s, then measure it.
