"""A training run's options (``TrainConfig``) and what it gives back (``TrainResult``).

An option left ``None`` is settled once, by ``setup.settle``: the checkpoint's value on
``--resume``, else the data's measured recipe, else the paper's (``setup.DEFAULTS``).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple


@dataclasses.dataclass
class TrainConfig:
    """Options of a run. ``None`` means: the default, or on ``--resume`` the checkpoint's value."""

    data: Optional[str] = None            # None: "builtin"
    preset: Optional[str] = None          # None: 'paper' with a GPU, 'mini' without
    epochs: Optional[int] = None          # None: setup.settle (the data's recipe)
    batch_size: Optional[int] = None      # 128 (§5)
    lr: Optional[float] = None            # 0.01 (§5)
    momentum: Optional[float] = None      # 0.9 (§5)
    weight_decay: Optional[float] = None  # 0.0005 (§5)
    decay_biases: Optional[bool] = None   # False: biases not decayed (cuda-convnet2, Caffe)
    devices: Optional[str] = None         # 'cuda:0,cuda:1', 'cpu:0,cpu:1', 'cpu', ...
    precision: str = "fp32"               # 'fp32' or 'tf32' (GPU matmuls only)
    seed: Optional[int] = None            # None: 0
    out: Optional[str] = None
    resume: Optional[str] = None
    workers: int = 0
    schedule: Optional[str] = None        # 'plateau' (§5) or 'step'
    patience: Optional[int] = None        # plateau: epochs without improvement before lr / 10
    step_size: Optional[int] = None       # step: epochs between lr / 10
    limit_batches: Optional[int] = None   # at most this many training batches per epoch
    limit_val_batches: Optional[int] = None
    train_images: Optional[int] = None    # use only this many training images (quick runs)
    val_images: Optional[int] = None
    log_every: int = 10
    lr_scaling: Optional[str] = None      # 'none' or 'linear' (× processes, warm-up: tools/distributed.py)
    progress: bool = True                 # tqdm bars (off in tests)
    without: Optional[Tuple[str, ...]] = None  # tricks left out (models.common.WITHOUT); None: none
    base_size: Optional[int] = None       # side images are stored at before the random crops;
                                          # None: the data's recipe, else the paper's 256:224 (§2)

    def resolved(self) -> Dict:
        return {k: v for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass
class TrainResult:
    out_dir: str
    checkpoint: Optional[str]
    epochs_done: int
    steps: int
    history: List[Dict]
    losses: List[float]               # every training step's loss in this call, in order
    stopped: str                      # 'finished', 'schedule', 'interrupted'
    test: Optional[Dict] = None       # the test split's errors of best.h5, where there is one
    exit_status: int = 0              # interrupted: 128 + the signal (130 Ctrl-C, 143 SIGTERM)

    @property
    def best(self) -> Optional[Dict]:
        rows = [h for h in self.history if h.get("val_top1_error") is not None]
        return min(rows, key=lambda h: h["val_top1_error"]) if rows else None
