"""What a training or evaluation run runs on: its devices, preset, precision, epochs and data.

``python cli.py train`` (``minialex.train``), ``evaluate`` and ``predict`` all start here:

    parse_devices('cuda:0,cuda:1')  -> the two columns' devices (one device: both columns on it)
    choose_preset(None, devices)    -> 'paper' with a GPU, 'mini' without, and the reason why
    set_precision('tf32')           -> TF32 for float32 matrix products on the GPU
    recipe(data, preset)            -> the epochs (and, where measured, the learning rate and
                                       schedule) a run takes when they are not given
    settle(config)                  -> every option still unset, filled once: the data's
                                       recipe, else the paper's DEFAULTS
    open_data(spec, split, ...)     -> a dataset split, optionally cut to a number of images
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

import numpy

from .. import data as D
from ..backend import Device, cupy, gpu_available, gpu_count
from ..data import base_size_for
from ..models import PRESETS


#: Epochs when --epochs is not given: the paper's ~90 (§5) for real data on the paper's net; far
#: fewer for the small presets on the small data sets (mini on the built-in data finishes in about
#: 6-8 minutes on a 2-core machine; the plateau schedule stops earlier when the error stalls).
DEFAULT_EPOCHS = {("builtin", "mini"): 12, ("builtin", "tiny"): 12, ("builtin", "paper"): 30,
                  ("fashion-mnist", "fashion"): 24, ("fashion-mnist", "mini"): 20,
                  ("fashion-mnist", "tiny"): 10}
PAPER_EPOCHS = 90
#: Where the paper's lr 0.01 and plateau schedule were measured to fall short: Fashion-MNIST on
#: 'mini' underfit with them (10 epochs: 12.0% test error, training error above validation error,
#: the rate lowered only in epoch 9). lr 0.03 trained faster on a 12,000-image subset (4 epochs:
#: validation error 23.1% at 0.01, 20.5% at 0.03, 20.9% at 0.06), and a fixed step schedule
#: spends the run's time at the high rate first (docs/training.md has the full runs).
#: On the 'fashion' preset (the one --data fashion-mnist takes) the paper's crop margin was the
#: strongest brake (the images are centred and size-normalised), so they are stored at 54x54 for
#: 51x51 crops; a batch of 64 was tried and not kept. docs/training.md has the trials' figures.
RECIPES = {("fashion-mnist", "fashion"): dict(lr=0.03, schedule="step", step_size=10, base_size=54),
           ("fashion-mnist", "mini"): dict(lr=0.03, schedule="step", step_size=8)}


#: The paper's choices (§5) and minialex's, for every option a run does not give, where the data
#: has no measured recipe (RECIPES).
DEFAULTS = dict(data="builtin", seed=0, decay_biases=False, batch_size=128, lr=0.01, momentum=0.9,
                weight_decay=5e-4, schedule="plateau", patience=2, step_size=30, lr_scaling="none")


def settle(config) -> List[str]:
    """Fill every option of ``config`` (a TrainConfig) that is still None, once: the data's
    measured recipe where it has one (``recipe``), else ``DEFAULTS``. Options given, and on
    --resume the checkpoint's (``resume.merge_resume``), were filled before and are kept. Returns
    the options the recipe set where they differ from the paper's (the banner names them)."""
    measured = recipe(config.data, config.preset)     # reads a cache's source once
    from_recipe = [k for k, v in measured.items()
                   if getattr(config, k) is None and v != DEFAULTS.get(k) and k != "epochs"]
    for key, value in {**DEFAULTS, **measured}.items():
        if getattr(config, key) is None:
            setattr(config, key, value)
    return from_recipe


def parse_devices(spec: Optional[str]) -> Optional[Tuple[Device, Device]]:
    """'cuda:0,cuda:1' -> (cuda:0, cuda:1); one device -> both columns on it; None -> None."""
    if spec is None or not str(spec).strip():
        return None
    names = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not names:
        raise ValueError(f"--devices {spec!r} names no device: give e.g. cpu, cuda:0 or "
                         "cuda:0,cuda:1")
    if len(names) > 2:
        raise ValueError(f"--devices takes one or two devices (one per column), got {len(names)}")
    devices = [Device(n) for n in names]
    for d in devices:
        if d.is_cuda and d.index >= gpu_count():
            raise ValueError(f"device {d} does not exist: "
                             + (f"CuPy sees {gpu_count()} GPU(s)" if gpu_count() else "no GPU found"
                                " (CuPy not installed or no CUDA driver)"))
    return (devices[0], devices[-1])


#: Data whose images are too small for the paper's 227-pixel network get a preset made for them,
#: on any device, when --preset is not given (presets.py says why it is sized so).
PRESET_FOR_DATA = {"fashion-mnist": "fashion"}


def choose_preset(preset: Optional[str], devices, data: Optional[str] = None) -> Tuple[str, str]:
    """(preset, why): the user's choice, else the data's own (PRESET_FOR_DATA), else 'paper' on
    a GPU and 'mini' on a CPU."""
    if preset is not None:
        return preset, "chosen with --preset"
    mine = PRESET_FOR_DATA.get(data_kind(data)) if data is not None else None
    if mine is not None:
        return mine, f"the preset made for this data, on any device ({PRESETS[mine].description})"
    on_gpu = any(d.is_cuda for d in devices) if devices else gpu_available()
    if on_gpu:
        return "paper", f"a GPU is available, so the paper's network ({PRESETS['paper'].description})"
    return "mini", ("no GPU found: the paper's network takes ~7 s per batch of 128 on a 2-core CPU, "
                    f"so 'mini', the same 8 layers and 2 columns made small "
                    f"({PRESETS['mini'].description})")


def set_precision(precision: str) -> str:
    """fp32 or tf32 for float32 matrix products on the GPU (a no-op on the CPU).

    TF32 keeps float32 storage but multiplies with a 10-bit mantissa on tensor cores (about 8x
    the fp32 rate on an H100/H200). CuPy reads CUPY_TF32 when it first multiplies float32
    matrices; setting its compute type directly also works after that.
    """
    if precision not in ("fp32", "tf32"):
        raise ValueError(f"unknown precision {precision!r}: use fp32 or tf32")
    os.environ["CUPY_TF32"] = "1" if precision == "tf32" else "0"
    if cupy is not None:
        try:
            from cupy._core import _routines_linalg as linalg
            linalg.set_compute_type(numpy.float32, linalg.COMPUTE_TYPE_TF32 if precision == "tf32"
                                    else linalg.COMPUTE_TYPE_DEFAULT)
        except Exception:  # another CuPy layout: the environment variable still applies
            pass
    return precision


def default_epochs(data: str, preset: str) -> int:
    """DEFAULT_EPOCHS for the kind of data (``data_kind``)."""
    return DEFAULT_EPOCHS.get((data_kind(data), preset), PAPER_EPOCHS)


def recipe(data: str, preset: str) -> dict:
    """The defaults a run on ``data`` with ``preset`` takes for what the user did not give:
    its epochs, and RECIPES' learning rate, batch, schedule and crops where there is one."""
    return dict(RECIPES.get((data_kind(data), preset), {}), epochs=default_epochs(data, preset))


def data_kind(data: str) -> str:
    """'builtin', 'fashion-mnist', a folder...: a prepared cache counts as the source it was made
    from (its 'source' attribute)."""
    kind = str(data).split(":")[0]
    if kind.lower().endswith((".h5", ".hdf5")) and os.path.isfile(kind):
        try:
            import h5py
            with h5py.File(kind, "r") as f:
                kind = str(f.attrs.get("source", "")).split(":")[0]
        except OSError:
            pass      # not readable here: opening the data will say so
    return kind


def stored_side(base_size: Optional[int], preset) -> int:
    """The side images are stored at before the crops: ``--base-size`` (or the data's recipe),
    else the paper's 256:224 (§2: 58 for 51x51 crops). The crops move within the margin."""
    base = base_size or base_size_for(preset.input_size)
    if base < preset.input_size:
        raise ValueError(f"--base-size {base} is smaller than preset '{preset.name}''s "
                         f"{preset.input_size}x{preset.input_size} crops")
    return base


def open_data(spec: str, split: str, seed: int, base_size: int, images: Optional[int] = None):
    """A dataset split with ``images`` images: the built-in set draws that many, other sources
    keep that many spread over the split (``None``: all, or the built-in set's default)."""
    if str(spec) == "builtin":
        key = "num_train" if split == "train" else "num_val"
        return D.open_dataset(spec, split, seed=seed, base_size=base_size, **{key: images})
    return D.open_dataset(spec, split, seed=seed, base_size=base_size, limit=images)


def describe_storage(dataset, base: int, size: int, augment: bool) -> str:
    """How the images reach the crops: 'stored 58x58, random 51x51 crops ...', with 'stored 256x256
    in the cache, resized to 58x58 on load' when a cache holds another size than the preset needs."""
    stored = getattr(dataset, "stored_size", None)
    crops = (f"random {size}x{size} crops with flips and PCA lighting (§4.1)" if augment
             else f"centre {size}x{size} crops")
    if stored is None or stored == base:
        return f"stored {base}x{base}, {crops}"
    return f"stored {stored}x{stored} in the cache, resized to {base}x{base} on load, {crops}"
